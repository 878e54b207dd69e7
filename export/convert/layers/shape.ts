/**
 * Shape and inference-time identity layers: Flatten, Dropout family, ZeroPadding2D, Rescaling.
 *
 * Flatten takes its input in NHWC so the element order is TF's (H, W, C): a Dense after it uses the
 * Keras kernel unchanged.
 */
import { configOf, describeLayer, type LayerExporter } from './types.js';

export const Flatten: LayerExporter = (ctx, layer, [input], out) => {
  if (input.shape.length === 2) return input;
  const x = ctx.as(input, 'nhwc');
  return { name: ctx.op('Flatten', [x.name], layer.name, { axis: 1 }), layout: 'plain', shape: out.shape.slice() };
};

/** Dropout and noise layers only act in training: the identity at inference. */
export const Identity: LayerExporter = (_ctx, _layer, [input]) => input;

export const ZeroPadding2D: LayerExporter = (ctx, layer, [input], out) => {
  const c = configOf(layer) as { padding: number | [number, number] | [[number, number], [number, number]]; dataFormat?: string };
  if (c.dataFormat && c.dataFormat !== 'channelsLast') throw new Error(`Cannot export ${describeLayer(layer)}: dataFormat ${c.dataFormat} is not supported`);
  const p = c.padding;
  const [[top, bottom], [left, right]] = typeof p === 'number' ? [[p, p], [p, p]] : typeof p[0] === 'number' ? [[p[0], p[0]], [p[1] as number, p[1] as number]] : (p as [[number, number], [number, number]]);
  const x = ctx.as(input, 'nchw');
  const pads = ctx.int64(`${layer.name}/pads`, [8], [0, 0, top, left, 0, 0, bottom, right]);
  return { name: ctx.op('Pad', [x.name, pads], layer.name, { mode: 'constant' }), layout: 'nchw', shape: out.shape.slice() };
};

/** Rescaling: `x * scale + offset` (scalars). */
export const Rescaling: LayerExporter = (ctx, layer, [x], out) => {
  const c = configOf(layer) as { scale: number; offset?: number };
  let y = ctx.op('Mul', [x.name, ctx.float(`${layer.name}/scale`, [], [c.scale])], `${layer.name}/scale`);
  if (c.offset) y = ctx.op('Add', [y, ctx.float(`${layer.name}/offset`, [], [c.offset])], `${layer.name}/offset`);
  return { name: y, layout: x.layout, shape: out.shape.slice() };
};
