/**
 * Shape plumbing: constants and the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains that
 * exporters emit for `x.view(x.size(0), -1)`, folded at import time from static shapes (the batch
 * size stays symbolic, as NaN), plus Flatten/Reshape/Identity/Dropout.
 *
 * Flatten order: ONNX flattens `[N,C,H,W]` channel-major; TF.js holds `[N,H,W,C]`, so unless
 * H = W = 1 a Permute to `[N,C,H,W]` order precedes the Flatten layer.
 */
import * as tf from '@tensorflow/tfjs';
import type { NodeProto } from '../../../src/onnx/model.js';
import type { ImportContext } from '../import-context.js';
import { Attrs, constValues, describeNode } from '../onnx-values.js';
import type { OpConverter } from './types.js';

export const Constant: OpConverter = (ctx, n) => {
  const attr = (n.attribute ?? []).find((a) => a.name === 'value');
  if (!attr?.t) throw new Error(`${describeNode(n)}: only Constant with a tensor 'value' is supported`);
  ctx.values.set(n.output[0], { kind: 'const', c: constValues(attr.t) });
};

export const Shape: OpConverter = (ctx, n) => {
  const x = ctx.tensor(n.input[0], n);
  ctx.values.set(n.output[0], { kind: 'shape', values: ctx.onnxShape(x) });
};

export const Gather: OpConverter = (ctx, n) => {
  const data = ctx.get(n.input[0], n);
  if (data.kind === 'tensor') throw new Error(`${describeNode(n)}: Gather on computed tensors is not supported (only on shapes/constants)`);
  if (new Attrs(n).int('axis', 0) !== 0) throw new Error(`${describeNode(n)}: Gather on shape values needs axis 0`);
  const values = data.kind === 'shape' ? data.values : Array.from(data.c.values);
  const idx = ctx.constant(n.input[1], n);
  const picked = Array.from(idx.values, (i) => values[i < 0 ? i + values.length : i]);
  // A scalar index yields a scalar; keep it as a 1-element vector with dims [] semantics.
  ctx.values.set(n.output[0], { kind: 'shape', values: picked });
};

export const Unsqueeze: OpConverter = (ctx, n) => {
  const data = ctx.get(n.input[0], n);
  if (data.kind === 'tensor') throw new Error(`${describeNode(n)}: Unsqueeze of computed tensors is not supported (only of shape values)`);
  // Unsqueezing a scalar shape entry to a 1-vector does not change its values.
  ctx.values.set(n.output[0], data.kind === 'shape' ? data : { kind: 'shape', values: Array.from(data.c.values) });
};

/** Concat of constants / shape vectors (all inputs non-tensor). */
export function concatShapes(ctx: ImportContext, n: NodeProto): void {
  const values: number[] = [];
  for (const i of n.input) {
    const v = ctx.get(i, n);
    if (v.kind === 'shape') values.push(...v.values);
    else if (v.kind === 'const') values.push(...v.c.values);
  }
  ctx.values.set(n.output[0], { kind: 'shape', values });
}

/** `[N, C*H*W]` from any tensor, in ONNX (channel-major) order. */
function flattenToRows(ctx: ImportContext, n: NodeProto, name: string): void {
  const x = ctx.tensor(name, n);
  if (x.layout === 'plain' && x.t.shape.length === 2) return void ctx.setTensor(n.output[0], x.t, 'plain');
  if (x.layout === 'squeezed') return void ctx.setTensor(n.output[0], x.t, 'plain');
  let t = x.t;
  if (x.layout === 'nhwc' && !(t.shape[1] === 1 && t.shape[2] === 1)) {
    t = ctx.apply(tf.layers.permute({ dims: [3, 1, 2], name: ctx.layerName(n, '_to_nchw') }), t);
  }
  ctx.setTensor(n.output[0], ctx.apply(tf.layers.flatten({ name: ctx.layerName(n) }), t), 'plain');
}

export const Flatten: OpConverter = (ctx, n) => {
  const axis = new Attrs(n).int('axis', 1);
  if (axis !== 1) throw new Error(`${describeNode(n)}: Flatten axis ${axis} is not supported (axis 1 only)`);
  flattenToRows(ctx, n, n.input[0]);
};

export const Reshape: OpConverter = (ctx, n) => {
  const x = ctx.tensor(n.input[0], n);
  const target = Array.from(ctx.constant(n.input[1], n).values);
  const shape = ctx.onnxShape(x);
  const size = shape.slice(1).reduce((a, b) => a * b, 1);
  // [batch, -1], [0, -1], [batch, C*H*W], [-1, C*H*W]: a flatten to rows.
  const keepsBatch = target.length === 2 && (Number.isNaN(target[0]) || target[0] === 0 || (target[0] === -1 && target[1] === size));
  if (keepsBatch && (target[1] === -1 || target[1] === size)) return flattenToRows(ctx, n, n.input[0]);
  throw new Error(`${describeNode(n)}: Reshape of [${shape.map((d) => (Number.isNaN(d) ? 'N' : d)).join(',')}] to [${target.map((d) => (Number.isNaN(d) ? 'N' : d)).join(',')}] is not supported (only flattening to [N, -1])`);
};

export const Identity: OpConverter = (ctx, n) => {
  ctx.values.set(n.output[0], ctx.get(n.input[0], n));
};

/** Dropout is the identity at inference. */
export const Dropout = Identity;
