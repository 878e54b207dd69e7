/**
 * QOperator int8 ops -> TF.js layers that compute the int8 model's integer arithmetic exactly
 * (importer option `int8: 'exact'`).
 *
 * Every quantised tensor is held as float32 integers `q - zero_point` ({@link ../int8-layers.ts});
 * type-agnostic ops between QLinear nodes (Reshape, Flatten, Identity, Shape) therefore work
 * unchanged. Per op (ONNX operator specs at onnx.ai/onnx/operators; com.microsoft contrib ops in
 * onnxruntime's ContribOperators.md; float steps as onnxruntime's x86 kernels do them):
 * - QuantizeLinear (float -> uint8/int8, per tensor): {@link RequantizeLayer} `round(x / scale)`.
 * - QLinearConv: conv2d / depthwiseConv2d with kernel `w - w_zero_point` and the int32 bias, i.e.
 *   `acc = Σ (x - x_zp)(w - w_zp) + bias` exactly; with arithmetic `'ort-avx2'` plus the int16
 *   pair saturation of group-1 u8·s8 convolutions ({@link ../avx2-saturation.ts},
 *   {@link PairSaturationLayer} on the im2col patches); then
 *   `round(acc · x_scale·w_scale/y_scale)` onto the output grid.
 * - QLinearMatMul (constant 2-D B): dense with kernel `B - b_zero_point`, same requantisation.
 * - QLinearAdd (com.microsoft): {@link QLinearAddLayer} (B a tensor of the same shape, or a 1-D
 *   constant along the last axis).
 * - QLinearGlobalAveragePool (com.microsoft, NCHW): the integer sum over H×W (a depthwise conv with
 *   a kernel of ones), then `round(sum · x_scale/(y_scale·H·W))`.
 * - DequantizeLinear (per tensor): `(q - zp) · scale`, a Rescaling layer.
 *
 * Exactness needs every accumulator below 2^24 in magnitude; each conv/matmul is checked against
 * its worst case `Σ|w - w_zp|·255 + |bias|` and refused otherwise.
 */
import * as tf from '@tensorflow/tfjs';
import type { NodeProto } from '../../../src/onnx/model.js';
import { DataType } from '../../../src/onnx/schema.js';
import { convSaturablePairs, matMulSaturablePairs, usesU8S8, type SaturablePairs } from '../avx2-saturation.js';
import type { ImportContext } from '../import-context.js';
import { PairSaturationLayer, QLinearAddLayer, RequantizeLayer, type QuantParams } from '../int8-layers.js';
import { Attrs, describeNode, type ConstTensor } from '../onnx-values.js';
import { convolve, padFor, spatialAttrs } from './conv.js';
import type { OpConverter } from './types.js';

/**
 * Integer arithmetic reproduced in QLinearConv / QLinearMatMul accumulators.
 * - `'spec'`: exact int32 accumulation, as the ONNX specs define it (and as onnxruntime computes with
 *   VNNI, on ARM, for depthwise convolutions, and for uint8 weights);
 * - `'ort-avx2'`: onnxruntime's u8·s8 kernels on x86 CPUs with AVX2 and no VNNI, which saturate
 *   each product pair to int16 ({@link ../avx2-saturation.ts}).
 */
export type Int8Arithmetic = 'spec' | 'ort-avx2';

/** Largest integer float32 holds exactly (every integer of smaller magnitude is exact too). */
const FLOAT32_EXACT = 2 ** 24;

function range(dataType: number, n: NodeProto, what: string): [number, number] {
  if (dataType === DataType.UINT8) return [0, 255];
  if (dataType === DataType.INT8) return [-128, 127];
  throw new Error(`${describeNode(n)}: ${what} zero point of ONNX data type ${dataType} is not supported (uint8 or int8 expected)`);
}

/** Scale and zero point of a per-tensor quantised activation (inputs `scale`, `zp` of node n). */
function tensorQuant(ctx: ImportContext, n: NodeProto, scale: string, zp: string): QuantParams & { min: number; max: number; dataType: number } {
  const s = ctx.constant(scale, n);
  const z = ctx.constant(zp, n);
  if (s.values.length !== 1 || z.values.length !== 1) {
    throw new Error(`${describeNode(n)}: activation "${scale}"/"${zp}" must be per tensor (one scale, one zero point), got ${s.values.length} and ${z.values.length} values`);
  }
  const [qmin, qmax] = range(z.dataType, n, `"${zp}"`);
  return { scale: s.values[0], zeroPoint: z.values[0], min: qmin - z.values[0], max: qmax - z.values[0], dataType: z.dataType };
}

/** `values[c]` of a per-tensor (1 value) or per-channel (`count` values) parameter. */
function perChannel(c: ConstTensor, count: number, n: NodeProto, what: string): (i: number) => number {
  if (c.values.length === 1) return () => c.values[0];
  if (c.values.length === count) return (i) => c.values[i];
  throw new Error(`${describeNode(n)}: ${what} has ${c.values.length} values, expected 1 or ${count}`);
}

/** float32 `x_scale · w_scale[o] / y_scale`, left to right, as onnxruntime computes the multiplier. */
function multipliers(xScale: number, wScale: (o: number) => number, yScale: number, count: number): number[] {
  return Array.from({ length: count }, (_, o) => Math.fround(Math.fround(Math.fround(xScale) * Math.fround(wScale(o))) / Math.fround(yScale)));
}

/** Refuses accumulators that float32 could not hold exactly; `weightsOf(o)` lists output o's weights. */
function checkExact(n: NodeProto, count: number, weightsOf: (o: number) => number[], bias?: ConstTensor): void {
  for (let o = 0; o < count; o++) {
    const bound = weightsOf(o).reduce((s, w) => s + Math.abs(w), 0) * 255 + (bias ? Math.abs(bias.values[o]) : 0);
    if (bound >= FLOAT32_EXACT) {
      throw new Error(`${describeNode(n)}: output channel ${o} can accumulate up to ${bound}, beyond 2^24, where float32 stops being exact; import it with int8: 'float'`);
    }
  }
}

function requantize(ctx: ImportContext, n: NodeProto, x: tf.SymbolicTensor, factors: number[], out: { min: number; max: number }): tf.SymbolicTensor {
  return ctx.apply(new RequantizeLayer({ mode: 'multiply', factors, min: out.min, max: out.max, name: ctx.layerName(n, '_requantize') }), x);
}

function sameFactors(f: number[]): number[] {
  return f.every((v) => v === f[0]) ? [f[0]] : f;
}

export const QuantizeLinear: OpConverter = (ctx, n) => {
  const x = ctx.get(n.input[0], n);
  if (x.kind !== 'tensor') throw new Error(`${describeNode(n)}: quantising a constant is a QDQ-format model; import it with int8: 'float'`);
  if (!n.input[2]) throw new Error(`${describeNode(n)}: a zero point input is required (its type sets the 8-bit range)`);
  const q = tensorQuant(ctx, n, n.input[1], n.input[2]);
  const layer = new RequantizeLayer({ mode: 'divide', factors: [q.scale], min: q.min, max: q.max, name: ctx.layerName(n) });
  ctx.setTensor(n.output[0], ctx.apply(layer, x.t), x.layout);
};

export const DequantizeLinear: OpConverter = (ctx, n) => {
  const x = ctx.get(n.input[0], n);
  if (x.kind !== 'tensor') throw new Error(`${describeNode(n)}: dequantising a constant is a QDQ-format model; import it with int8: 'float'`);
  const s = ctx.constant(n.input[1], n);
  if (s.values.length !== 1) throw new Error(`${describeNode(n)}: only per-tensor dequantisation is supported (scale has ${s.values.length} values)`);
  // The input already holds q - zero_point.
  const layer = tf.layers.rescaling({ scale: Math.fround(s.values[0]), offset: 0, name: ctx.layerName(n) });
  ctx.setTensor(n.output[0], ctx.apply(layer, x.t), x.layout);
};

/**
 * `acc` plus onnxruntime's AVX2 pair-saturation correction of `pairs` read from `patches` (the
 * reduction axis last, in MLAS's K order); `acc` unchanged when no pair can saturate.
 */
function withSaturation(ctx: ImportContext, n: NodeProto, acc: tf.SymbolicTensor, pairs: SaturablePairs, patches: () => tf.SymbolicTensor, zeroPoint: number, units: number): tf.SymbolicTensor {
  if (pairs.k0.length === 0) return acc;
  const fix = ctx.apply(new PairSaturationLayer({ ...pairs, zeroPoint, units, name: ctx.layerName(n, '_saturation') }), patches());
  return ctx.apply(tf.layers.add({ name: ctx.layerName(n, '_saturated') }), [acc, fix]);
}

/**
 * The im2col patches of conv node `n` on `x` `[N,H,W,C]`: `[N,H',W',taps·C]`, channel `tap·C + c`
 * (MLAS's K order; tap = ky·kw + kx), by a conv2d with one-hot kernels (exact; `(taps·C)²` weights,
 * small for the first layers of image models, where group-1 convs wider than 1x1 sit). Returns `x`
 * itself for a 1x1 conv with stride 1 and no padding.
 */
function patchesOf(ctx: ImportContext, n: NodeProto, x: tf.SymbolicTensor, kh: number, kw: number): tf.SymbolicTensor {
  const { strides, dilations, pads } = spatialAttrs(n, x, [kh, kw]);
  const taps = kh * kw;
  if (taps === 1 && strides.every((v) => v === 1) && pads.every((v) => v === 0)) return x;
  const c = x.shape[3] as number;
  const padded = padFor(ctx, n, x, pads, [kh, kw], strides, dilations);
  const kernel = tf.buffer([kh, kw, c, taps * c]);
  for (let y = 0; y < kh; y++) for (let z = 0; z < kw; z++) for (let ch = 0; ch < c; ch++) kernel.set(1, y, z, ch, (y * kw + z) * c + ch);
  const layer = tf.layers.conv2d({ filters: taps * c, kernelSize: [kh, kw], strides, dilationRate: dilations, padding: padded.padding, useBias: false, name: ctx.layerName(n, '_patches') });
  return ctx.apply(layer, padded.x, [kernel.toTensor()]);
}

export function qlinearConv(arithmetic: Int8Arithmetic): OpConverter {
  return (ctx, n) => {
    const a = new Attrs(n);
    a.only(['auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides', 'channels_last']);
    if (a.int('channels_last', 0) !== 0) throw new Error(`${describeNode(n)}: channels_last=1 is not supported (NCHW expected)`);
    const [xName, xScale, xZp, wName, wScale, wZp, yScale, yZp, bName] = n.input;
    const x = ctx.tensor(xName, n);
    const xq = tensorQuant(ctx, n, xScale, xZp);
    const yq = tensorQuant(ctx, n, yScale, yZp);
    const w = ctx.constant(wName, n);
    if (w.dims.length !== 4) throw new Error(`${describeNode(n)}: only 2-D convolution is supported (weight dims [${w.dims.join(',')}])`);
    const [m] = w.dims;
    const perFilter = w.values.length / m;
    const wz = perChannel(ctx.constant(wZp, n), m, n, `weight zero point "${wZp}"`);
    const ws = perChannel(ctx.constant(wScale, n), m, n, `weight scale "${wScale}"`);
    const kernel: ConstTensor = { dims: w.dims, dataType: DataType.FLOAT, values: w.values.map((v, i) => v - wz(Math.floor(i / perFilter))) };
    const bias = bName ? ctx.constant(bName, n) : undefined;
    checkExact(n, m, (o) => Array.from(kernel.values.subarray(o * perFilter, (o + 1) * perFilter)), bias);
    const group = a.int('group', 1);
    let acc = convolve(ctx, n, x, kernel, bias, group);
    if (arithmetic === 'ort-avx2' && group === 1 && usesU8S8(ctx.constant(xZp, n), w)) {
      const [, , kh, kw] = w.dims;
      acc = withSaturation(ctx, n, acc, convSaturablePairs(w), () => patchesOf(ctx, n, x.t, kh, kw), xq.zeroPoint, m);
    }
    const factors = sameFactors(multipliers(xq.scale, ws, yq.scale, m));
    ctx.setTensor(n.output[0], requantize(ctx, n, acc, factors, yq), 'nhwc');
  };
}

export function qlinearMatMul(arithmetic: Int8Arithmetic): OpConverter {
  return (ctx, n) => {
    const [aName, aScale, aZp, bName, bScale, bZp, yScale, yZp] = n.input;
    const x = ctx.tensor(aName, n);
    if (x.layout === 'nhwc' || x.t.shape.length !== 2) throw new Error(`${describeNode(n)}: only a rank-2 input [N,K] is supported`);
    const aq = tensorQuant(ctx, n, aScale, aZp);
    const yq = tensorQuant(ctx, n, yScale, yZp);
    const b = ctx.constant(bName, n);
    if (b.dims.length !== 2) throw new Error(`${describeNode(n)}: only a 2-D constant B is supported, got dims [${b.dims.join(',')}]`);
    const [k, units] = b.dims;
    if (k !== x.t.shape[1]) throw new Error(`${describeNode(n)}: B has ${k} rows, the input has ${x.t.shape[1]} columns`);
    const bz = perChannel(ctx.constant(bZp, n), units, n, `B zero point "${bZp}"`);
    const bs = perChannel(ctx.constant(bScale, n), units, n, `B scale "${bScale}"`);
    const kernel = Float32Array.from(b.values, (v, i) => v - bz(i % units));
    checkExact(n, units, (o) => Array.from({ length: k }, (_, r) => kernel[r * units + o]));
    let acc = ctx.apply(tf.layers.dense({ units, useBias: false, name: ctx.layerName(n) }), x.t, [tf.tensor2d(kernel, [k, units])]);
    if (arithmetic === 'ort-avx2' && usesU8S8(ctx.constant(aZp, n), b)) {
      acc = withSaturation(ctx, n, acc, matMulSaturablePairs(b), () => x.t, aq.zeroPoint, units);
    }
    const factors = sameFactors(multipliers(aq.scale, bs, yq.scale, units));
    ctx.setTensor(n.output[0], requantize(ctx, n, acc, factors, yq), x.layout);
  };
}

export const QLinearAdd: OpConverter = (ctx, n) => {
  const [aName, aScale, aZp, bName, bScale, bZp, cScale, cZp] = n.input;
  const x = ctx.tensor(aName, n);
  const params = [[aScale, aZp], [bScale, bZp], [cScale, cZp]].map(([s, z]) => tensorQuant(ctx, n, s, z));
  if (params.some((p) => p.dataType !== DataType.UINT8)) throw new Error(`${describeNode(n)}: only uint8 QLinearAdd is supported`);
  const [ap, bp, cp] = params.map(({ scale, zeroPoint }) => ({ scale, zeroPoint }));
  const bValue = ctx.get(bName, n);
  const name = ctx.layerName(n);
  let out: tf.SymbolicTensor;
  if (bValue.kind === 'tensor') {
    if (bValue.layout !== x.layout || JSON.stringify(bValue.t.shape) !== JSON.stringify(x.t.shape)) {
      throw new Error(`${describeNode(n)}: inputs must have equal shapes (broadcasting is not supported): [${ctx.onnxShape(x).join(',')}] vs [${ctx.onnxShape(bValue).join(',')}]`);
    }
    out = ctx.apply(new QLinearAddLayer({ a: ap, b: bp, c: cp, name }), [x.t, bValue.t]);
  } else {
    const b = ctx.constant(bName, n);
    const channels = x.t.shape[x.t.shape.length - 1];
    // onnxruntime takes another code path (separate multiply and add) for a one-element operand.
    if (x.layout === 'nhwc' || b.dims.length !== 1 || b.values.length !== channels || channels === 1) {
      throw new Error(`${describeNode(n)}: a constant B must be 1-D along the last axis of an [N,C] input (got dims [${b.dims.join(',')}] for input [${ctx.onnxShape(x).join(',')}])`);
    }
    out = ctx.apply(new QLinearAddLayer({ a: ap, b: bp, c: cp, constantB: Array.from(b.values), name }), x.t);
  }
  ctx.setTensor(n.output[0], out, x.layout);
};

export const QLinearGlobalAveragePool: OpConverter = (ctx, n) => {
  if (new Attrs(n).int('channels_last', 0) !== 0) throw new Error(`${describeNode(n)}: channels_last=1 is not supported (NCHW expected)`);
  const [xName, xScale, xZp, yScale, yZp] = n.input;
  const x = ctx.tensor(xName, n);
  if (x.layout !== 'nhwc') throw new Error(`${describeNode(n)}: expected a [N,C,H,W] input`);
  const [, h, w, c] = x.t.shape as number[];
  const xq = tensorQuant(ctx, n, xScale, xZp);
  const yq = tensorQuant(ctx, n, yScale, yZp);
  if (h * w * 255 >= FLOAT32_EXACT) throw new Error(`${describeNode(n)}: ${h}x${w} pixels can sum beyond 2^24, where float32 stops being exact`);
  // Σ (q - zp) over H×W: a depthwise convolution with a kernel of ones, exact for these integers.
  const sum = ctx.apply(tf.layers.depthwiseConv2d({ kernelSize: [h, w], padding: 'valid', useBias: false, name: ctx.layerName(n, '_sum') }), x.t, [tf.ones([h, w, c, 1])]);
  const flat = ctx.apply(tf.layers.flatten({ name: ctx.layerName(n, '_flatten') }), sum);
  // onnxruntime: scale = x_scale / (y_scale · (float)(H·W)) in float32 (qlgavgpool.cpp).
  const factor = Math.fround(Math.fround(xq.scale) / Math.fround(Math.fround(yq.scale) * (h * w)));
  ctx.setTensor(n.output[0], requantize(ctx, n, flat, [factor], yq), 'squeezed');
};

/** Converters of the QOperator ops for the exact import (keys: ONNX op types). */
export function qlinearConverters(arithmetic: Int8Arithmetic): Record<string, OpConverter> {
  return {
    QuantizeLinear,
    DequantizeLinear,
    QLinearConv: qlinearConv(arithmetic),
    QLinearMatMul: qlinearMatMul(arithmetic),
    QLinearAdd,
    QLinearGlobalAveragePool,
  };
}
