/**
 * ONNX pooling -> tf.layers pooling on NHWC tensors.
 *
 * - GlobalAveragePool / GlobalMaxPool: ONNX `[N,C,1,1]`, TF.js `[N,C]` (layout 'squeezed').
 * - MaxPool: pads must be none or TF 'same' (ONNX ignores padded cells in the max, as TF does);
 *   other explicit pads are refused (zero padding would change the max of negative inputs).
 * - AveragePool: none/'same' pads with count_include_pad=0 (TF excludes padding from the count);
 *   explicit pads with count_include_pad=1 -> ZeroPadding2D + 'valid'.
 */
import * as tf from '@tensorflow/tfjs';
import { Attrs, describeNode } from '../onnx-values.js';
import { isTfSame, isZero } from '../padding.js';
import { padFor, spatialAttrs } from './conv.js';
import type { OpConverter } from './types.js';

export const GlobalAveragePool: OpConverter = (ctx, n) => {
  const x = ctx.tensor(n.input[0], n);
  if (x.layout !== 'nhwc') throw new Error(`${describeNode(n)}: expected a [N,C,H,W] input`);
  ctx.setTensor(n.output[0], ctx.apply(tf.layers.globalAveragePooling2d({ name: ctx.layerName(n) }), x.t), 'squeezed');
};

export const GlobalMaxPool: OpConverter = (ctx, n) => {
  const x = ctx.tensor(n.input[0], n);
  if (x.layout !== 'nhwc') throw new Error(`${describeNode(n)}: expected a [N,C,H,W] input`);
  ctx.setTensor(n.output[0], ctx.apply(tf.layers.globalMaxPooling2d({ name: ctx.layerName(n) }), x.t), 'squeezed');
};

function pool(kind: 'max' | 'avg'): OpConverter {
  return (ctx, n) => {
    const a = new Attrs(n);
    a.only(['auto_pad', 'kernel_shape', 'pads', 'strides', 'count_include_pad', 'ceil_mode', 'dilations', 'storage_order']);
    if (a.int('ceil_mode', 0) !== 0) throw new Error(`${describeNode(n)}: ceil_mode=1 is not supported`);
    if (n.output.length > 1 && n.output[1]) throw new Error(`${describeNode(n)}: the Indices output is not supported`);
    const x = ctx.tensor(n.input[0], n);
    if (x.layout !== 'nhwc') throw new Error(`${describeNode(n)}: expected a [N,C,H,W] input`);
    const { kernel, strides, dilations, pads } = spatialAttrs(n, x.t);
    if (dilations.some((d) => d !== 1)) throw new Error(`${describeNode(n)}: dilated pooling is not supported`);
    const size: [number, number] = [x.t.shape[1] as number, x.t.shape[2] as number];
    let input = x.t;
    let padding: 'valid' | 'same' = 'valid';
    if (!isZero(pads)) {
      const includePad = a.int('count_include_pad', 0) === 1;
      if (isTfSame(pads, size, kernel, strides, dilations) && (kind === 'max' || !includePad)) padding = 'same';
      else if (kind === 'avg' && includePad) ({ x: input, padding } = padFor(ctx, n, x.t, pads, kernel, strides, dilations));
      else throw new Error(`${describeNode(n)}: pads [${pads.join(',')}] have no TF.js equivalent for ${kind} pooling (only TF 'same' pads${kind === 'avg' ? ', or any pads with count_include_pad=1' : ''})`);
    }
    const args = { poolSize: kernel, strides, padding, name: ctx.layerName(n) };
    const layer = kind === 'max' ? tf.layers.maxPooling2d(args) : tf.layers.averagePooling2d(args);
    ctx.setTensor(n.output[0], ctx.apply(layer, input), 'nhwc');
  };
}

export const MaxPool = pool('max');
export const AveragePool = pool('avg');
