/**
 * ONNX Gemm / MatMul with a constant weight on `[N,K]` -> tf.layers.dense.
 *
 * Gemm: `Y = alpha * A' * B' + beta * C`, transA must be 0; transB selects `B [N,K]` (torch
 * Linear) or `B [K,N]`; alpha and beta are folded into kernel and bias. MatMul has no bias; a
 * following Add of a constant is folded in beforehand by {@link ../fuse.ts}.
 */
import * as tf from '@tensorflow/tfjs';
import { Attrs, describeNode } from '../onnx-values.js';
import type { OpConverter } from './types.js';

function asFlat(ctx: Parameters<OpConverter>[0], n: Parameters<OpConverter>[1]): tf.SymbolicTensor {
  const x = ctx.tensor(n.input[0], n);
  if (x.layout !== 'plain') throw new Error(`${describeNode(n)}: input must be [N,K] (flatten the [N,C,H,W] tensor first)`);
  if (x.t.shape.length !== 2) throw new Error(`${describeNode(n)}: only a rank-2 input [N,K] is supported`);
  return x.t;
}

export const Gemm: OpConverter = (ctx, n) => {
  const a = new Attrs(n);
  if (a.int('transA', 0) !== 0) throw new Error(`${describeNode(n)}: transA=1 is not supported`);
  const x = asFlat(ctx, n);
  const b = ctx.constant(n.input[1], n);
  const transB = a.int('transB', 0) === 1;
  const alpha = a.float('alpha', 1);
  const beta = a.float('beta', 1);
  const [k, units] = transB ? [b.dims[1], b.dims[0]] : b.dims;
  if (k !== x.shape[1]) throw new Error(`${describeNode(n)}: weight has ${k} inputs, tensor has ${x.shape[1]}`);
  const kernel = new Float32Array(k * units);
  for (let i = 0; i < k; i++) for (let j = 0; j < units; j++) kernel[i * units + j] = alpha * b.values[transB ? j * k + i : i * units + j];
  const weights: tf.Tensor[] = [tf.tensor2d(kernel, [k, units])];
  let useBias = false;
  if (n.input[2]) {
    const c = ctx.constant(n.input[2], n);
    if (c.values.length !== units && c.values.length !== 1) throw new Error(`${describeNode(n)}: bias C of ${c.values.length} values is not broadcastable to [${units}]`);
    weights.push(tf.tensor1d(Float32Array.from({ length: units }, (_, j) => beta * c.values[c.values.length === 1 ? 0 : j])));
    useBias = true;
  }
  const layer = tf.layers.dense({ units, useBias, name: ctx.layerName(n) });
  ctx.setTensor(n.output[0], ctx.apply(layer, x, weights), 'plain');
};

export const MatMul: OpConverter = (ctx, n) => {
  const x = asFlat(ctx, n);
  const b = ctx.constant(n.input[1], n);
  if (b.dims.length !== 2) throw new Error(`${describeNode(n)}: only a 2-D constant B is supported`);
  const [k, units] = b.dims;
  if (k !== x.shape[1]) throw new Error(`${describeNode(n)}: weight has ${k} inputs, tensor has ${x.shape[1]}`);
  const layer = tf.layers.dense({ units, useBias: false, name: ctx.layerName(n) });
  ctx.setTensor(n.output[0], ctx.apply(layer, x, [tf.tensor2d(Float32Array.from(b.values), [k, units])]), 'plain');
};
