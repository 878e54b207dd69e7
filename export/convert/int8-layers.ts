/**
 * TF.js layers for the exact integer import of QOperator int8 models ({@link ./ops/qlinear.ts}).
 *
 * Tensors between these layers hold **zero-point-free integers** `q - zero_point` as float32 (e.g.
 * a uint8 activation with zero point 119 is held as a value in `[-119, 136]`). Float32 holds every
 * integer below 2^24 exactly, so convolutions and dense layers with integer kernels compute the int32
 * accumulators of the int8 model exactly (the importer checks the bound per layer); these layers do
 * the rest: rounding back onto the 8-bit grid.
 *
 * Rounding rules (ONNX operator specs, onnx.ai/onnx/operators; onnxruntime's x86 kernels in
 * `onnxruntime/core/mlas/lib` for the float steps the specs leave open):
 * - QuantizeLinear: `q = saturate(round(x / y_scale) + y_zero_point)`, round half to even (spec);
 *   onnxruntime divides in float32 (quantize.cpp `MlasQuantizeLinearVector`).
 * - QLinearConv / QLinearMatMul / QLinearGlobalAveragePool output: `q = saturate(round(acc · M) +
 *   y_zero_point)` with the float32 multiplier `M = x_scale · w_scale / y_scale` (conv, matmul) or
 *   `x_scale / (y_scale · N)` (pool, N pixels), evaluated left to right in float32 as onnxruntime
 *   does (qlinearconv.cc `ComputeOutputScale`, qlinearmatmul, qlgavgpool.cpp), then `float(acc) · M`
 *   in float32 and round half to even (quantize.cpp `MlasRequantizeOutput`).
 * - QLinearAdd (com.microsoft): `c = saturate(round(a_scale/c_scale · (a - a_zp) + b_scale/c_scale ·
 *   (b - b_zp)) + c_zp)`; onnxruntime evaluates it as `fma(a, rA, fma(b, rB, F))` in float32 on raw
 *   uint8 a, b with `F = c_zp - fma(rA, a_zp, rB·b_zp)` (qladd_avx2.cpp). Only 256 × 256 input pairs
 *   exist: {@link qlinearAddTable} computes all of them with that exact float32 arithmetic, and
 *   {@link QLinearAddLayer} reproduces the table.
 * - onnxruntime's int16 pair saturation on AVX2 without VNNI ({@link ./avx2-saturation.ts}):
 *   {@link PairSaturationLayer}, the correction added to the accumulators.
 *
 * These layers are for inference: rounding has no useful gradient. Fine-tune the float import.
 */
import * as tf from '@tensorflow/tfjs';
import { INT16_MAX, INT16_MIN, type SaturablePairs } from './avx2-saturation.js';

type LayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;

/** Round half to even of a float64 value (what `cvtps2dq` does under the default MXCSR). */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * float32 fused multiply-add `fl(a·b + c)` (one rounding). `a·b + c` is exact in float64 (53
 * significant bits) for an integer `a < 2^8`, a float32 `b ≥ 2^-20` and `|c| < 2^10`: true of the
 * scale ratios and zero points it is used with.
 */
function fma32(a: number, b: number, c: number): number {
  return Math.fround(a * b + c);
}

export type RequantizeLayerArgs = LayerArgs & {
  /**
   * `'divide'`: `round(x / factors[0])` (QuantizeLinear of a float input, factors = [y_scale]);
   * `'multiply'`: `round(x · factors[c])` (requantisation of an int32 accumulator, factors = M per
   * channel of the last axis, or one value for all).
   */
  mode: 'divide' | 'multiply';
  factors: number[];
  /** Saturation bounds in zero-point-free units: `[qmin - zp, qmax - zp]`, e.g. `[-119, 136]`. */
  min: number;
  max: number;
};

/** `clamp(round_half_even(x ∘ factor), min, max)`: onto an 8-bit grid, zero point removed. */
export class RequantizeLayer extends tf.layers.Layer {
  static className = 'ArtistIdRequantize';
  readonly mode: 'divide' | 'multiply';
  readonly factors: number[];
  readonly min: number;
  readonly max: number;

  constructor(args: RequantizeLayerArgs) {
    const { mode, factors, min, max, ...layerArgs } = args;
    super(layerArgs);
    if (mode !== 'divide' && mode !== 'multiply') throw new Error(`Requantize layer ${args.name ?? ''}: mode must be 'divide' or 'multiply', got ${JSON.stringify(mode)}`);
    if (!(factors.length >= 1) || factors.some((f) => !(f > 0) || !Number.isFinite(f))) throw new Error(`Requantize layer ${args.name ?? ''}: factors must be finite and > 0, got [${factors.slice(0, 4).join(', ')}${factors.length > 4 ? ', ...' : ''}]`);
    if (mode === 'divide' && factors.length !== 1) throw new Error(`Requantize layer ${args.name ?? ''}: 'divide' takes one scale, got ${factors.length}`);
    if (!(Number.isInteger(min) && Number.isInteger(max) && min <= max)) throw new Error(`Requantize layer ${args.name ?? ''}: min ${min} and max ${max} must be integers with min <= max`);
    this.mode = mode;
    this.factors = factors.map((f) => Math.fround(f));
    this.min = min;
    this.max = max;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const channels = shape[shape.length - 1];
    if (this.factors.length > 1 && channels !== this.factors.length) {
      throw new Error(`Requantize layer ${this.name}: ${this.factors.length} per-channel factors for ${channels} channels`);
    }
    super.build(inputShape);
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return tf.tidy(() => {
      const f = this.factors.length === 1 ? tf.scalar(this.factors[0]) : tf.tensor1d(this.factors);
      const scaled = this.mode === 'divide' ? tf.div(x, f) : tf.mul(x, f);
      // tf.round rounds half to even (TF semantics); bounds are integers, so clamping after rounding
      // equals onnxruntime's clamp-then-round.
      return tf.clipByValue(tf.round(scaled), this.min, this.max);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), mode: this.mode, factors: this.factors, min: this.min, max: this.max };
  }
}

/** Scale and zero point of one 8-bit tensor. */
export interface QuantParams {
  scale: number;
  zeroPoint: number;
}

export type QLinearAddLayerArgs = LayerArgs & {
  a: QuantParams;
  b: QuantParams;
  c: QuantParams;
  /** Raw uint8 values of a constant B operand along the last axis (e.g. a quantised bias); else B is the second input. */
  constantB?: number[];
};

/**
 * QLinearAdd of uint8 tensors, inputs and output zero-point-free: `c - c_zp` for every pair
 * `(a - a_zp, b - b_zp)`, exactly as onnxruntime computes it ({@link qlinearAddTable}).
 *
 * Two ways, chosen at construction: when the plain float32 form `round(fl(fl(a·rA) + fl(b·rB)))`
 * (a, b, c zero-point-free, `rA = a_scale/c_scale`) gives the table's value for all 65,536 input
 * pairs (checked exhaustively; true of 10 of the 11 QLinearAdd nodes of MobileNetV2-12-int8), the
 * layer computes that with three element-wise ops; otherwise it looks the table up (a gather, several
 * times slower on the WASM backend).
 */
export class QLinearAddLayer extends tf.layers.Layer {
  static className = 'ArtistIdQLinearAdd';
  readonly a: QuantParams;
  readonly b: QuantParams;
  readonly c: QuantParams;
  readonly constantB?: number[];
  /** True when the element-wise form reproduces the table exactly. */
  readonly elementwise: boolean;
  private readonly table: Float32Array;
  private readonly ratios: [number, number];
  private tensors?: { table?: tf.Tensor1D; constantB?: tf.Tensor1D };

  constructor(args: QLinearAddLayerArgs) {
    const { a, b, c, constantB, ...layerArgs } = args;
    super(layerArgs);
    for (const [key, p] of Object.entries({ a, b, c })) {
      if (!(p.scale > 0) || !Number.isInteger(p.zeroPoint) || p.zeroPoint < 0 || p.zeroPoint > 255) {
        throw new Error(`QLinearAdd layer ${args.name ?? ''}: ${key} needs scale > 0 and a uint8 zero point, got scale ${p.scale}, zero point ${p.zeroPoint}`);
      }
    }
    if (constantB?.some((v) => !Number.isInteger(v) || v < 0 || v > 255)) throw new Error(`QLinearAdd layer ${args.name ?? ''}: constantB must hold uint8 values`);
    this.a = a;
    this.b = b;
    this.c = c;
    this.constantB = constantB;
    this.table = qlinearAddTable(a, b, c);
    this.ratios = [Math.fround(Math.fround(a.scale) / Math.fround(c.scale)), Math.fround(Math.fround(b.scale) / Math.fround(c.scale))];
    this.elementwise = this.elementwiseMatchesTable();
  }

  /** Whether `clamp(round(fl(fl(a·rA) + fl(b·rB))))`, evaluated as the float32 ops do, equals the table everywhere. */
  private elementwiseMatchesTable(): boolean {
    const [rA, rB] = this.ratios;
    const [lo, hi] = [-this.c.zeroPoint, 255 - this.c.zeroPoint];
    for (let ia = 0; ia < 256; ia++) {
      const pa = Math.fround((ia - this.a.zeroPoint) * rA);
      for (let ib = 0; ib < 256; ib++) {
        const v = Math.fround(pa + Math.fround((ib - this.b.zeroPoint) * rB));
        if (Math.min(hi, Math.max(lo, roundHalfEven(v))) !== this.table[ia * 256 + ib]) return false;
      }
    }
    return true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return Array.isArray(inputShape[0]) ? (inputShape[0] as tf.Shape) : inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const [x, y] = Array.isArray(inputs) ? inputs : [inputs];
    const t = (this.tensors ??= this.makeTensors());
    return tf.tidy(() => {
      if (this.elementwise) {
        const [rA, rB] = this.ratios;
        // fl(b·rB) of a constant B is precomputed in float32: the same value.
        const bTerm = t.constantB ?? tf.mul(y, rB);
        return tf.clipByValue(tf.round(tf.add(tf.mul(x, rA), bTerm)), -this.c.zeroPoint, 255 - this.c.zeroPoint);
      }
      const rawA = tf.add(x, this.a.zeroPoint);
      const rawB = t.constantB ?? tf.add(y, this.b.zeroPoint);
      return tf.gather(t.table!, tf.cast(tf.add(tf.mul(rawA, 256), rawB), 'int32'));
    });
  }

  private makeTensors(): { table?: tf.Tensor1D; constantB?: tf.Tensor1D } {
    const made: { table?: tf.Tensor1D; constantB?: tf.Tensor1D } = {};
    if (!this.elementwise) made.table = tf.keep(tf.tensor1d(this.table));
    if (this.constantB) {
      const rB = this.ratios[1];
      // Elementwise: fl((b - b_zp)·rB); table lookup: the raw values.
      made.constantB = tf.keep(tf.tensor1d(this.elementwise ? this.constantB.map((v) => Math.fround((v - this.b.zeroPoint) * rB)) : this.constantB));
    }
    return made;
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = { ...super.getConfig(), a: { ...this.a }, b: { ...this.b }, c: { ...this.c } };
    if (this.constantB) config.constantB = this.constantB;
    return config;
  }

  override dispose(): ReturnType<tf.layers.Layer['dispose']> {
    if (this.tensors) tf.dispose(Object.values(this.tensors).filter((v): v is tf.Tensor1D => v !== undefined));
    this.tensors = undefined;
    return super.dispose();
  }
}

/**
 * The QLinearAdd result `c - c_zp` for raw `a, b ∈ [0, 255]`, index `a·256 + b`, computed as
 * onnxruntime's x86 kernel does (float32 ratios, two fused multiply-adds, round half to even,
 * saturation to uint8).
 */
export function qlinearAddTable(a: QuantParams, b: QuantParams, c: QuantParams): Float32Array {
  const rA = Math.fround(Math.fround(a.scale) / Math.fround(c.scale));
  const rB = Math.fround(Math.fround(b.scale) / Math.fround(c.scale));
  // onnxruntime's x86-64 build contracts `rA·a_zp + rB·b_zp` into fma(rA, a_zp, rB·b_zp): this
  // form, and neither the uncontracted one nor fma(rB, b_zp, rA·a_zp), reproduced onnxruntime-node
  // 1.30 on all 65,536 input pairs of each of the 11 QLinearAdd nodes of MobileNetV2-12-int8.
  const fixed = Math.fround(c.zeroPoint - fma32(rA, a.zeroPoint, Math.fround(rB * b.zeroPoint)));
  const table = new Float32Array(256 * 256);
  for (let ia = 0; ia < 256; ia++) {
    for (let ib = 0; ib < 256; ib++) {
      const v = fma32(ia, rA, fma32(ib, rB, fixed));
      table[ia * 256 + ib] = Math.min(255, Math.max(0, roundHalfEven(v))) - c.zeroPoint;
    }
  }
  return table;
}

export type PairSaturationLayerArgs = LayerArgs &
  SaturablePairs & {
    /** Zero point of the uint8 activation (the kernels multiply raw values `x + zeroPoint`). */
    zeroPoint: number;
    /** Output channels of the accumulator the correction is added to. */
    units: number;
  };

/** Per-pair constants laid out `[J, slots, 1]`: pair group j = k0 / 2, slot = its rank within the group. */
interface PairConstants {
  w0: tf.Tensor3D;
  w1: tf.Tensor3D;
  bias: tf.Tensor3D;
  sign: tf.Tensor3D;
  /** Output channel of each (group, slot), `[J·slots, 1]` (unused slots: channel 0, sign 0). */
  out: tf.Tensor2D;
  groups: number;
  slots: number;
}

/**
 * `sat_int16(p) - p` of every saturable pair `p = a[k]·w0 + a[k+1]·w1` (k even; a raw uint8 =
 * input + zero point), summed into its output channel. Input `[..., K]` with the reduction axis last
 * in MLAS's K order (a conv's im2col patches, or a MatMul's input rows); output `[..., units]`, the
 * correction to add to the int32 accumulators. Exact: every value is an integer below 2^24 (checked
 * per channel at construction).
 *
 * Computed without gathers (slow on the WASM backend): the even and odd input channels are
 * multiplied by per-group weight columns (`[J, slots, rows]`, slots = most pairs sharing one input
 * channel pair), and `scatterND` sums each pair's correction into its output channel.
 */
export class PairSaturationLayer extends tf.layers.Layer {
  static className = 'ArtistIdPairSaturation';
  readonly pairs: SaturablePairs;
  readonly zeroPoint: number;
  readonly units: number;
  private constants?: PairConstants;

  constructor(args: PairSaturationLayerArgs) {
    const { k0, k1, w0, w1, out, upper, zeroPoint, units, ...layerArgs } = args;
    super(layerArgs);
    const r = k0.length;
    const where = `PairSaturation layer ${args.name ?? ''}`;
    if ([k1, w0, w1, out, upper].some((a) => a.length !== r)) throw new Error(`${where}: k0, k1, w0, w1, out and upper must have one entry per pair (${r})`);
    if (r === 0) throw new Error(`${where}: no pairs (leave the layer out)`);
    if (k0.some((k, j) => k % 2 !== 0 || k1[j] !== k + 1)) throw new Error(`${where}: pairs must be (k, k + 1) with k even`);
    if (out.some((o) => !Number.isInteger(o) || o < 0 || o >= units)) throw new Error(`${where}: output channels must be integers in [0, ${units})`);
    // Largest correction per channel: every pair at its largest excess 255·(|w0|+|w1|) - 32767.
    const worst = new Float64Array(units);
    for (let j = 0; j < r; j++) worst[out[j]] += 255 * (Math.abs(w0[j]) + Math.abs(w1[j])) - INT16_MAX;
    const channel = worst.findIndex((v) => v >= 2 ** 24);
    if (channel >= 0) throw new Error(`${where}: channel ${channel} can accumulate a correction of ${worst[channel]}, beyond 2^24 where float32 stops being exact`);
    this.pairs = { k0, k1, w0, w1, out, upper };
    this.zeroPoint = zeroPoint;
    this.units = units;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const k = shape[shape.length - 1];
    if (k === null || Math.max(...this.pairs.k1) >= k) throw new Error(`PairSaturation layer ${this.name}: pairs reach index ${Math.max(...this.pairs.k1)}, the input has ${k} channels`);
    super.build(inputShape);
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [...shape.slice(0, -1), this.units];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const c = (this.constants ??= this.makeConstants());
    return tf.tidy(() => {
      const k = x.shape[x.shape.length - 1];
      const rows = x.size / k;
      // The first 2J channels as [2, J, rows]: even channels, then odd ones (strided slices are slow on WASM).
      let flat = tf.reshape(x, [rows, k]);
      if (k !== 2 * c.groups) flat = tf.slice(flat, [0, 0], [rows, 2 * c.groups]);
      const [even, odd] = tf.unstack(tf.transpose(tf.reshape(flat, [rows, c.groups, 2]), [2, 1, 0])).map((t) => tf.reshape(t, [c.groups, 1, rows]));
      // ±(p - bound), p = x0·w0 + x1·w1 + zp·(w0 + w1), negated for pairs that saturate downwards.
      const signed = tf.add(tf.add(tf.mul(even, c.w0), tf.mul(odd, c.w1)), c.bias);
      const correction = tf.reshape(tf.mul(tf.relu(signed), c.sign), [c.groups * c.slots, rows]);
      // scatterND adds the updates of repeated indices: each pair into its output channel.
      const perChannel = tf.scatterND(c.out, correction, [this.units, rows]);
      return tf.reshape(tf.transpose(perChannel), [...x.shape.slice(0, -1), this.units]);
    });
  }

  private makeConstants(): PairConstants {
    const { k0, w0, w1, out, upper } = this.pairs;
    const groups = Math.max(...k0) / 2 + 1;
    const slotOf = new Int32Array(k0.length);
    const used = new Int32Array(groups);
    k0.forEach((k, j) => (slotOf[j] = used[k / 2]++));
    const slots = Math.max(...used);
    const size = groups * slots;
    // Unused slots: weights 0, bias -1 (relu -> 0), sign 0, channel 0.
    const [a0, a1, bias, sign, channel] = [new Float32Array(size), new Float32Array(size), new Float32Array(size).fill(-1), new Float32Array(size), new Int32Array(size)];
    k0.forEach((k, j) => {
      const at = (k / 2) * slots + slotOf[j];
      const s = upper[j] ? 1 : -1;
      a0[at] = s * w0[j];
      a1[at] = s * w1[j];
      bias[at] = s * this.zeroPoint * (w0[j] + w1[j]) - (upper[j] ? INT16_MAX : -INT16_MIN);
      // sat(p) - p = -(p - 32767) above, +(-p - 32768) below: the negated sign.
      sign[at] = -s;
      channel[at] = out[j];
    });
    const made = {
      w0: tf.tensor3d(a0, [groups, slots, 1]),
      w1: tf.tensor3d(a1, [groups, slots, 1]),
      bias: tf.tensor3d(bias, [groups, slots, 1]),
      sign: tf.tensor3d(sign, [groups, slots, 1]),
      out: tf.tensor2d(channel, [size, 1], 'int32'),
    };
    Object.values(made).forEach((t) => tf.keep(t));
    return { ...made, groups, slots };
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.pairs, zeroPoint: this.zeroPoint, units: this.units };
  }

  override dispose(): ReturnType<tf.layers.Layer['dispose']> {
    if (this.constants) tf.dispose([this.constants.w0, this.constants.w1, this.constants.bias, this.constants.sign, this.constants.out]);
    this.constants = undefined;
    return super.dispose();
  }
}

tf.serialization.registerClass(RequantizeLayer);
tf.serialization.registerClass(QLinearAddLayer);
tf.serialization.registerClass(PairSaturationLayer);
