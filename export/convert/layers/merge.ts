/**
 * Merge layers -> ONNX Sum / Mul / Mean / Max / Min / Concat. Inputs are brought to one layout
 * (NCHW when any is NCHW, so conv branches need no transposes).
 */
import type { ExportContext, OnnxValue } from '../export-context.js';
import { configOf, describeLayer, type LayerExporter } from './types.js';

function common(ctx: ExportContext, inputs: OnnxValue[]): OnnxValue[] {
  const target = inputs.some((v) => v.layout === 'nchw') ? 'nchw' : 'nhwc';
  return inputs.map((v) => ctx.as(v, target));
}

function variadic(op: 'Sum' | 'Mean' | 'Max' | 'Min'): LayerExporter {
  return (ctx, layer, inputs, out) => {
    const xs = common(ctx, inputs);
    return { name: ctx.op(op, xs.map((v) => v.name), layer.name), layout: xs[0].layout, shape: out.shape.slice() };
  };
}

export const Add = variadic('Sum');
export const Average = variadic('Mean');
export const Maximum = variadic('Max');
export const Minimum = variadic('Min');

export const Multiply: LayerExporter = (ctx, layer, inputs, out) => {
  const xs = common(ctx, inputs);
  let acc = xs[0].name;
  for (let i = 1; i < xs.length; i++) acc = ctx.op('Mul', [acc, xs[i].name], `${layer.name}/mul${i}`);
  return { name: acc, layout: xs[0].layout, shape: out.shape.slice() };
};

export const Concatenate: LayerExporter = (ctx, layer, inputs, out) => {
  const xs = common(ctx, inputs);
  const rank = out.shape.length;
  let axis = (configOf(layer).axis as number) ?? -1;
  if (axis < 0) axis += rank;
  if (axis === 0) throw new Error(`Cannot export ${describeLayer(layer)}: concatenation over the batch axis`);
  const onnxAxis = xs[0].layout === 'nchw' ? [0, 2, 3, 1][axis] : axis;
  return { name: ctx.op('Concat', xs.map((v) => v.name), layer.name, { axis: onnxAxis }), layout: xs[0].layout, shape: out.shape.slice() };
};
