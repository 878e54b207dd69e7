/**
 * The int16 saturation of onnxruntime's u8·s8 kernels on x86 CPUs with AVX2 but without VNNI, and
 * which weight pairs it can hit, so that an exact int8 import ({@link ./ops/qlinear.ts}, arithmetic
 * `'ort-avx2'`) computes what onnxruntime computes there rather than what the ONNX spec says.
 *
 * Where it comes from (onnxruntime's MLAS, `onnxruntime/core/mlas/lib`):
 * - QLinearConv with int8 weights of zero point 0 and group 1 runs `MlasConvSymKernelAvx2`
 *   (x86_64/ConvSymKernelAvx2.S) when the input channels are a multiple of 4, otherwise the QGEMM
 *   kernel `MlasGemmU8S8KernelAvx2` on an NHWC im2col buffer; QLinearMatMul runs the same QGEMM
 *   kernel (or `MlasGemvU8S8KernelAvx2` for one row). All three multiply the raw uint8 activations
 *   (zero point not subtracted: it is corrected afterwards through the weight sums) by the raw int8
 *   weights with `vpmaddubsw`, which adds each product pair `a[k]·w[k] + a[k+1]·w[k+1]` (k even)
 *   into an int16 **with signed saturation**, then widens the pairs with `vpmaddwd`. With AVX-VNNI /
 *   AVX512-VNNI the same kernels use `vpdpbusd(s)`, which accumulates in int32: no pair saturation.
 *   (onnxruntime's quantization docs recommend `reduce_range`, i.e. 7-bit weights, on non-VNNI x86
 *   for this reason; this model was quantised with full 8-bit weights.)
 * - K order: NHWC im2col, `k = (ky·kw + kx)·C + c` (channel fastest); the ConvSym kernel reads 4
 *   channels of one kernel tap at a time, which gives the same pairs when C is a multiple of 4.
 *   For a MatMul `B [K,N]`, k is the row of B.
 * - Depthwise QLinearConv (`MlasConvSymDepthwiseKernelAvx2`) widens both operands to 32 bits and
 *   multiplies with `vpmaddwd` against a zero high half: exact, nothing to model. uint8 weights take
 *   the u8·u8 kernels, which widen to int16 first: exact too.
 *
 * Which pairs can saturate: with `a ∈ [0,255]`, `|a0·w0 + a1·w1| ≤ 255·(|w0|+|w1|)`. Pairs of
 * opposite signs stay within `[255·(-128), 255·127]`, inside int16; same-sign pairs with
 * `|w0|+|w1| ≥ 129` can leave it: upwards (both > 0, past 32767) or downwards (both < 0, past -32768).
 *
 * The correction itself ({@link PairSaturationLayer}): in zero-point-free integer units
 * (`x = a - a_zp`) the pair sum is `p = x0·w0 + x1·w1 + a_zp·(w0 + w1)` (padding x = 0 is a = a_zp,
 * as in onnxruntime's padding), and `sat(p) - p = -relu(p - 32767)` (upper) or `+relu(-p - 32768)`
 * (lower), added to the pair's output channel before requantisation.
 */
import { DataType } from '../../src/onnx/schema.js';
import type { ConstTensor } from './onnx-values.js';

export const INT16_MAX = 32767;
export const INT16_MIN = -32768;
/** Largest uint8 activation. */
const A_MAX = 255;

/** Weight pairs whose u8·s8 sum can leave int16, as parallel arrays (one entry per pair). */
export interface SaturablePairs {
  /** Reduction indices `k` and `k + 1` (k even) of each pair, in MLAS's K order. */
  k0: number[];
  k1: number[];
  /** Raw weights at k0 and k1. */
  w0: number[];
  w1: number[];
  /** Output channel the pair's product sum belongs to. */
  out: number[];
  /** True when the pair can exceed +32767 (both weights > 0), false when it can fall below -32768. */
  upper: boolean[];
}

/**
 * Same-sign weight pairs `(k, k+1)`, k even, that `vpmaddubsw` can saturate.
 *
 * @param count - number of output channels; `kLength` the reduction length K.
 * @param weightAt - `(out, k)` -> the raw weight.
 */
export function saturablePairs(count: number, kLength: number, weightAt: (out: number, k: number) => number): SaturablePairs {
  const pairs: SaturablePairs = { k0: [], k1: [], w0: [], w1: [], out: [], upper: [] };
  for (let o = 0; o < count; o++) {
    for (let k = 0; k + 1 < kLength; k += 2) {
      const w0 = weightAt(o, k);
      const w1 = weightAt(o, k + 1);
      const upper = w0 > 0 && w1 > 0 && A_MAX * (w0 + w1) > INT16_MAX;
      const lower = w0 < 0 && w1 < 0 && A_MAX * (w0 + w1) < INT16_MIN;
      if (!upper && !lower) continue;
      pairs.k0.push(k);
      pairs.k1.push(k + 1);
      pairs.w0.push(w0);
      pairs.w1.push(w1);
      pairs.out.push(o);
      pairs.upper.push(upper);
    }
  }
  return pairs;
}

/** Pairs of a group-1 conv weight `[M, C, kh, kw]`; K order `k = tap·C + channel` (tap = ky·kw + kx). */
export function convSaturablePairs(w: ConstTensor): SaturablePairs {
  const [m, c, kh, kw] = w.dims;
  const taps = kh * kw;
  return saturablePairs(m, c * taps, (o, k) => w.values[(o * c + (k % c)) * taps + Math.floor(k / c)]);
}

/** Pairs of a MatMul weight `B [K, N]`; k is the row. */
export function matMulSaturablePairs(b: ConstTensor): SaturablePairs {
  const [k, n] = b.dims;
  return saturablePairs(n, k, (o, kk) => b.values[kk * n + o]);
}

/** True when onnxruntime runs this node with its u8·s8 kernels: uint8 activations and int8 weights. */
export function usesU8S8(activationZeroPoint: ConstTensor, weight: ConstTensor): boolean {
  return activationZeroPoint.dataType === DataType.UINT8 && weight.dataType === DataType.INT8;
}
