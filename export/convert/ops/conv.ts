/**
 * ONNX Conv (NCHW, weights `[M, C/group, kh, kw]`) -> tf.layers.conv2d (group 1) or
 * tf.layers.depthwiseConv2d (group == C), on NHWC tensors.
 *
 * Padding: no pads -> 'valid'; pads equal to TF 'same' for this input size -> 'same'; any other
 * explicit (e.g. symmetric 1,1,1,1 with stride 2 on an even size, which TF 'same' would pad 0,1)
 * -> ZeroPadding2D then 'valid'.
 */
import * as tf from '@tensorflow/tfjs';
import type { NodeProto } from '../../../src/onnx/model.js';
import { type ImportContext, oihwToHwio } from '../import-context.js';
import { Attrs, describeNode, type ConstTensor } from '../onnx-values.js';
import { isTfSame, isZero, onnxPads2d } from '../padding.js';
import type { OpConverter } from './types.js';

/**
 * Pads `x` (NHWC) as ONNX `pads` say, returning the tensor to feed and the TF padding mode.
 * Zero padding is right for Conv and for AveragePool with count_include_pad=1 only; callers check.
 */
export function padFor(ctx: ImportContext, n: NodeProto, x: tf.SymbolicTensor, pads: number[], kernel: [number, number], strides: [number, number], dilations: [number, number]): { x: tf.SymbolicTensor; padding: 'valid' | 'same' } {
  if (isZero(pads)) return { x, padding: 'valid' };
  const size: [number, number] = [x.shape[1] as number, x.shape[2] as number];
  if (isTfSame(pads, size, kernel, strides, dilations)) return { x, padding: 'same' };
  const [top, left, bottom, right] = pads;
  const layer = tf.layers.zeroPadding2d({ padding: [[top, bottom], [left, right]], name: ctx.layerName(n, '_pad') });
  return { x: ctx.apply(layer, x), padding: 'valid' };
}

/** Spatial attributes of a 2-D Conv/Pool node. */
export function spatialAttrs(n: NodeProto, x: tf.SymbolicTensor, kernelDefault?: [number, number]) {
  const a = new Attrs(n);
  const kernel = a.ints('kernel_shape', kernelDefault ?? []) as [number, number];
  if (kernel.length !== 2) throw new Error(`${describeNode(n)}: only 2-D kernels are supported (kernel_shape [${kernel.join(',')}])`);
  const strides = a.ints('strides', [1, 1]) as [number, number];
  const dilations = a.ints('dilations', [1, 1]) as [number, number];
  const h = x.shape[1];
  const w = x.shape[2];
  if (h === null || w === null) throw new Error(`${describeNode(n)}: spatial size must be static`);
  const pads = onnxPads2d(a.string('auto_pad', 'NOTSET'), a.ints('pads', [0, 0, 0, 0]), [h, w], kernel, strides, dilations);
  return { kernel, strides, dilations, pads };
}

export const Conv: OpConverter = (ctx, n) => {
  const a = new Attrs(n);
  a.only(['auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides']);
  const x = ctx.tensor(n.input[0], n);
  const w = ctx.constant(n.input[1], n);
  const bias = n.input[2] ? ctx.constant(n.input[2], n) : undefined;
  ctx.setTensor(n.output[0], convolve(ctx, n, x, w, bias, a.int('group', 1)), 'nhwc');
};

/**
 * conv2d (group 1) or depthwiseConv2d (group == channels) of `x` with the ONNX weight
 * `w [M, C/group, kh, kw]` and optional bias `[M]`, padded as node `n`'s attributes say. Shared by
 * Conv and QLinearConv (whose weights are then the integers `w - w_zero_point`).
 *
 * @returns the NHWC output `[N, H', W', M]`.
 */
export function convolve(ctx: ImportContext, n: NodeProto, x: { t: tf.SymbolicTensor; layout: string }, w: ConstTensor, bias: ConstTensor | undefined, group: number, suffix = ''): tf.SymbolicTensor {
  if (x.layout !== 'nhwc') throw new Error(`${describeNode(n)}: only 2-D convolution on [N,C,H,W] input is supported`);
  if (w.dims.length !== 4) throw new Error(`${describeNode(n)}: only 2-D convolution is supported (weight dims [${w.dims.join(',')}])`);
  const cin = x.t.shape[3] as number;
  const [m, cPerGroup, kh, kw] = w.dims;
  const { strides, dilations, pads } = spatialAttrs(n, x.t, [kh, kw]);
  const padded = padFor(ctx, n, x.t, pads, [kh, kw], strides, dilations);
  const kernelSize: [number, number] = [kh, kw];
  const common = { kernelSize, strides, dilationRate: dilations, padding: padded.padding, useBias: bias !== undefined, name: ctx.layerName(n, suffix) };
  const biasWeights = bias ? [tf.tensor1d(Float32Array.from(bias.values))] : [];
  if (group === 1) {
    if (cPerGroup !== cin) throw new Error(`${describeNode(n)}: weight expects ${cPerGroup} input channels, input has ${cin}`);
    return ctx.apply(tf.layers.conv2d({ ...common, filters: m }), padded.x, [oihwToHwio(w), ...biasWeights]);
  }
  if (group === cin && cPerGroup === 1 && m % cin === 0) {
    return ctx.apply(tf.layers.depthwiseConv2d({ ...common, depthMultiplier: m / cin }), padded.x, [depthwiseKernel(w, cin), ...biasWeights]);
  }
  throw new Error(`${describeNode(n)}: grouped convolution with group ${group} on ${cin} channels is not supported (only group 1 or depthwise group == channels)`);
}

/** ONNX depthwise weight `[C*mult, 1, kh, kw]` (output channel c*mult + j) -> TF `[kh, kw, C, mult]`. */
function depthwiseKernel(w: ConstTensor, channels: number): tf.Tensor4D {
  const [m, , kh, kw] = w.dims;
  const mult = m / channels;
  const out = new Float32Array(w.values.length);
  for (let c = 0; c < channels; c++) for (let j = 0; j < mult; j++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
    out[((y * kw + x) * channels + c) * mult + j] = w.values[(c * mult + j) * kh * kw + y * kw + x];
  }
  return tf.tensor4d(out, [kh, kw, channels, mult]);
}

export const BatchNormalization: OpConverter = (ctx, n) => {
  const a = new Attrs(n);
  if (n.output.length > 1 && n.output.slice(1).some(Boolean)) throw new Error(`${describeNode(n)}: training-mode outputs are not supported`);
  const x = ctx.tensor(n.input[0], n);
  const [scale, bias, mean, variance] = n.input.slice(1, 5).map((i) => ctx.constant(i, n));
  const layer = tf.layers.batchNormalization({ axis: -1, epsilon: a.float('epsilon', 1e-5), momentum: a.float('momentum', 0.9), name: ctx.layerName(n) });
  const f = (c: ConstTensor) => tf.tensor1d(Float32Array.from(c.values));
  const out = ctx.apply(layer, x.t, [f(scale), f(bias), f(mean), f(variance)]);
  ctx.setTensor(n.output[0], out, x.layout);
};
