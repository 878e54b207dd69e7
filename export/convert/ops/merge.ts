/**
 * ONNX Add/Sum/Mul/Concat of computed tensors -> tf.layers.add / multiply / concatenate.
 * Shapes must match (no broadcasting); Concat of constants/shape vectors is folded (see shape.ts).
 */
import * as tf from '@tensorflow/tfjs';
import type { NodeProto } from '../../../src/onnx/model.js';
import type { ImportContext, Layout } from '../import-context.js';
import { Attrs, describeNode } from '../onnx-values.js';
import { concatShapes } from './shape.js';
import type { OpConverter } from './types.js';

function sameLayoutInputs(ctx: ImportContext, n: NodeProto): { ts: tf.SymbolicTensor[]; layout: Layout } {
  const vs = n.input.map((i) => ctx.tensor(i, n));
  const layout = vs[0].layout;
  const shape = JSON.stringify(vs[0].t.shape);
  for (const v of vs) {
    if (v.layout !== layout || JSON.stringify(v.t.shape) !== shape) {
      throw new Error(`${describeNode(n)}: inputs must have equal shapes (broadcasting is not supported): ${vs.map((u) => `[${ctx.onnxShape(u).join(',')}]`).join(' vs ')}`);
    }
  }
  return { ts: vs.map((v) => v.t), layout };
}

function merge(kind: 'add' | 'multiply'): OpConverter {
  return (ctx, n) => {
    if (n.input.some((i) => ctx.get(i, n).kind !== 'tensor')) {
      throw new Error(`${describeNode(n)}: ${n.op_type} with a constant operand is not supported (only MatMul/Gemm bias adds are folded)`);
    }
    const { ts, layout } = sameLayoutInputs(ctx, n);
    if (ts.length === 1) return void ctx.setTensor(n.output[0], ts[0], layout);
    const layer = kind === 'add' ? tf.layers.add({ name: ctx.layerName(n) }) : tf.layers.multiply({ name: ctx.layerName(n) });
    ctx.setTensor(n.output[0], ctx.apply(layer, ts), layout);
  };
}

export const Add = merge('add');
export const Sum = merge('add');
export const Mul = merge('multiply');

export const Concat: OpConverter = (ctx, n) => {
  if (n.input.every((i) => ctx.get(i, n).kind !== 'tensor')) return concatShapes(ctx, n);
  const vs = n.input.map((i) => ctx.tensor(i, n));
  const rank = ctx.onnxShape(vs[0]).length;
  let axis = new Attrs(n).int('axis', 1);
  if (axis < 0) axis += rank;
  const layout = vs[0].layout;
  if (vs.some((v) => v.layout !== layout)) throw new Error(`${describeNode(n)}: inputs of mixed ranks are not supported`);
  // ONNX axis 1 (channels) is TF.js's last axis for [N,C,H,W] and [N,C].
  const tfAxis = layout === 'plain' ? axis : axis === 1 ? -1 : layout === 'nhwc' ? axis - 1 : NaN;
  if (Number.isNaN(tfAxis)) throw new Error(`${describeNode(n)}: Concat over axis ${axis} is not supported here`);
  ctx.setTensor(n.output[0], ctx.apply(tf.layers.concatenate({ axis: tfAxis, name: ctx.layerName(n) }), vs.map((v) => v.t)), layout);
};
