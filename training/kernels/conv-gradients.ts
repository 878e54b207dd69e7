/**
 * Convolution gradients composed from forward kernels that the WASM backend already has
 * (`Conv2D`, `DepthwiseConv2dNative`, `BatchMatMul`, `StridedSlice`, `PadV2`, `Transpose`, ...).
 *
 * `@tensorflow/tfjs-backend-wasm` 4.22 registers `Conv2DBackpropInput`, `MaxPoolGrad` and
 * `AvgPoolGrad` but not `Conv2DBackpropFilter`, `DepthwiseConv2dNativeBackpropFilter` or
 * `DepthwiseConv2dNativeBackpropInput`, so training any convolution on WASM fails with
 * `Kernel 'Conv2DBackpropFilter' not registered for backend 'wasm'`. The functions here are plain
 * tf ops; `./index.ts` registers them as the missing WASM kernels.
 *
 * Notation (NHWC): x `[N,H,W,Cin]`, filter `[KH,KW,Cin,Cout]` (depthwise: `[KH,KW,C,M]`, output
 * channel `c*M+m`), dy `[N,OH,OW,Cout]`, stride s, dilation d, padding (top, left) from
 * `backend_util.computeConv2DInfo` (the same function every tfjs backend uses, so 'same',
 * 'valid', numeric and explicit padding and `dimRoundingMode` mean exactly what they mean for the
 * forward op). Forward: `y[n,oh,ow,co] = Σ x[n, oh*sh + kh*dh - top, ow*sw + kw*dw - left, ci] *
 * w[kh,kw,ci,co]` with out-of-range x read as 0.
 */
import * as tf from '@tensorflow/tfjs';

type Pad = 'valid' | 'same' | number | [[number, number], [number, number], [number, number], [number, number]];
type Rounding = 'floor' | 'round' | 'ceil' | undefined;
type Shape4 = [number, number, number, number];

/**
 * Pads with `value` (positive amounts) or crops (negative amounts) rows and columns of an NHWC tensor.
 *
 * @param x - `[N,H,W,C]`.
 * @returns `[N, H+top+bottom, W+left+right, C]`.
 */
export function padOrCrop(x: tf.Tensor4D, top: number, bottom: number, left: number, right: number, value = 0): tf.Tensor4D {
  return tf.tidy(() => {
    let out = x;
    if (top > 0 || bottom > 0 || left > 0 || right > 0) {
      out = tf.pad(out, [[0, 0], [Math.max(top, 0), Math.max(bottom, 0)], [Math.max(left, 0), Math.max(right, 0)], [0, 0]], value);
    }
    if (top < 0 || bottom < 0 || left < 0 || right < 0) {
      const [n, h, w, c] = out.shape;
      const t = Math.max(-top, 0);
      const l = Math.max(-left, 0);
      out = tf.slice(out, [0, t, l, 0], [n, h - t - Math.max(-bottom, 0), w - l - Math.max(-right, 0), c]);
    }
    return out === x ? x.clone() : out;
  });
}

/**
 * Gradient of `conv2d` with respect to its filter: `dW[kh,kw,ci,co] = Σ_{n,oh,ow}
 * x[n, oh*sh + kh - top, ow*sw + kw - left, ci] * dy[n,oh,ow,co]`.
 *
 * Computed as one forward convolution with batch and channels swapped: the zero-padded input
 * transposed to `[Cin, H', W', N]` is convolved (stride 1, dilation = the forward stride) with dy
 * transposed to `[OH, OW, N, Cout]` used as the filter, giving `[Cin, KH, KW, Cout]`, transposed
 * to `[KH, KW, Cin, Cout]`. No im2col buffer; the WASM backend runs it through XNNPACK.
 *
 * @param x - forward input, `[N,H,W,Cin]` (NHWC) or `[N,Cin,H,W]` (NCHW).
 * @param dy - gradient of the forward output, `[N,OH,OW,Cout]` or `[N,Cout,OH,OW]`.
 * @param filterShape - `[KH,KW,Cin,Cout]`.
 * @returns dW `[KH,KW,Cin,Cout]` float32.
 */
export function conv2dBackpropFilter(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: Shape4,
  strides: [number, number] | number,
  pad: Pad,
  dataFormat: 'NHWC' | 'NCHW' = 'NHWC',
  dimRoundingMode?: Rounding,
): tf.Tensor4D {
  return tf.tidy(() => {
    const xh = dataFormat === 'NCHW' ? tf.transpose(x, [0, 2, 3, 1]) : x;
    const dyh = dataFormat === 'NCHW' ? tf.transpose(dy, [0, 2, 3, 1]) : dy;
    const info = tf.backend_util.computeConv2DInfo(xh.shape, filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
    const { strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw, outHeight: oh, outWidth: ow, padInfo } = info;
    checkDy('Conv2DBackpropFilter', dyh.shape, [xh.shape[0], oh, ow, filterShape[3]]);
    const [, h, w] = xh.shape;
    // Rows a tap can touch: [-top, -top + (KH-1) + (OH-1)*sh]; pad (or crop) x to exactly those.
    const needH = kh + (oh - 1) * sh;
    const needW = kw + (ow - 1) * sw;
    const xp = padOrCrop(xh, padInfo.top, needH - h - padInfo.top, padInfo.left, needW - w - padInfo.left);
    const xt = tf.transpose(xp, [3, 1, 2, 0]); // [Cin, H', W', N]
    const dyt = tf.transpose(dyh, [1, 2, 0, 3]); // [OH, OW, N, Cout]
    const r = tf.conv2d(xt, dyt, 1, 'valid', 'NHWC', [sh, sw]); // [Cin, KH, KW, Cout]
    return tf.transpose(r, [1, 2, 0, 3]);
  });
}

/**
 * Gradient of `conv2d` with respect to its input: `dx[n,i,j,ci] = Σ dy[n,oh,ow,co] * w[kh,kw,ci,co]`
 * over `oh*sh + kh - top = i`, `ow*sw + kw - left = j`.
 *
 * Computed as one forward convolution (stride 1) of dy, zero-stuffed by the stride (s-1 zeros
 * between rows/columns) and padded by `K-1-pad`, with the filter rotated 180° and its channel
 * axes swapped (`[KH,KW,Cout,Cin]`). Replaces the WASM backend's native kernel, a scalar loop
 * 4–8x slower than its XNNPACK forward convolution on the baseline CNN's layers.
 *
 * @param inputShape - forward input shape, `[N,H,W,Cin]` (NHWC) or `[N,Cin,H,W]` (NCHW).
 * @param dy - `[N,OH,OW,Cout]` or `[N,Cout,OH,OW]`.
 * @param filter - `[KH,KW,Cin,Cout]`.
 * @returns dx of `inputShape`, float32.
 */
export function conv2dBackpropInput(
  inputShape: Shape4,
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  strides: [number, number] | number,
  pad: Pad,
  dataFormat: 'NHWC' | 'NCHW' = 'NHWC',
  dimRoundingMode?: Rounding,
): tf.Tensor4D {
  return tf.tidy(() => {
    const shapeNhwc: Shape4 = dataFormat === 'NCHW' ? [inputShape[0], inputShape[2], inputShape[3], inputShape[1]] : inputShape;
    const dyh = dataFormat === 'NCHW' ? tf.transpose(dy, [0, 2, 3, 1]) : dy;
    const info = tf.backend_util.computeConv2DInfo(shapeNhwc, filter.shape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
    const { strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw, outHeight: oh, outWidth: ow, padInfo } = info;
    const [n, h, w, cin] = shapeNhwc;
    const cout = filter.shape[3];
    checkDy('Conv2DBackpropInput', dyh.shape, [n, oh, ow, cout]);
    const dyd = strideStuff(dyh, sh, sw);
    const padTop = kh - 1 - padInfo.top;
    const padLeft = kw - 1 - padInfo.left;
    const dydp = padOrCrop(dyd, padTop, h + kh - 1 - padTop - dyd.shape[1], padLeft, w + kw - 1 - padLeft - dyd.shape[2]);
    const wRot = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]); // [KH,KW,Cout,Cin]
    const dx = tf.conv2d(dydp, wRot, 1, 'valid'); // [N,H,W,Cin]
    if (dx.shape[3] !== cin) throw new Error(`Conv2DBackpropInput: filter in-channels ${filter.shape[2]} do not match inputShape channels ${cin}`);
    return dataFormat === 'NCHW' ? tf.transpose(dx, [0, 3, 1, 2]) : dx;
  });
}

/** Inserts s-1 zero rows/columns between the rows/columns of `[N,OH,OW,C]`: `[N,(OH-1)*sh+1,(OW-1)*sw+1,C]`. */
function strideStuff(dy: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) return dy;
  const [n, oh, ow, c] = dy.shape;
  const stuffed = tf.pad(tf.reshape(dy, [n, oh, 1, ow, 1, c]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  return tf.slice(tf.reshape(stuffed, [n, oh * sh, ow * sw, c]) as tf.Tensor4D, [0, 0, 0, 0], [n, (oh - 1) * sh + 1, (ow - 1) * sw + 1, c]);
}

/**
 * Gradient of `depthwiseConv2d` with respect to its filter: `dW[kh,kw,c,m] = Σ_{n,oh,ow}
 * x[n, oh*sh + kh*dh - top, ow*sw + kw*dw - left, c] * dy[n,oh,ow,c*M+m]`.
 *
 * Per filter tap (KH*KW of them): a strided slice of the padded input, `[C, 1, N*OH*OW]`,
 * batch-matmul'd (one batch per channel) with dy as `[C, N*OH*OW, M]`.
 *
 * @param x - `[N,H,W,C]` NHWC (the only layout tfjs depthwise convolution has).
 * @param dy - `[N,OH,OW,C*M]`.
 * @param filterShape - `[KH,KW,C,M]`.
 * @returns dW `[KH,KW,C,M]` float32.
 */
export function depthwiseConv2dBackpropFilter(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: Shape4,
  strides: [number, number] | number,
  pad: Pad,
  dilations: [number, number] | number = 1,
  dimRoundingMode?: Rounding,
): tf.Tensor4D {
  return tf.tidy(() => {
    const info = tf.backend_util.computeConv2DInfo(x.shape, filterShape, strides, dilations, pad, dimRoundingMode, true, 'channelsLast');
    const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, filterHeight: kh, filterWidth: kw, outHeight: oh, outWidth: ow, padInfo } = info;
    const [n, h, w, c] = x.shape;
    const m = filterShape[3];
    checkDy('DepthwiseConv2dNativeBackpropFilter', dy.shape, [n, oh, ow, c * m]);
    const needH = (kh - 1) * dh + (oh - 1) * sh + 1;
    const needW = (kw - 1) * dw + (ow - 1) * sw + 1;
    const xp = tf.transpose(padOrCrop(x, padInfo.top, needH - h - padInfo.top, padInfo.left, needW - w - padInfo.left), [3, 0, 1, 2]); // [C,N,H',W']
    const count = n * oh * ow;
    const dyc = tf.transpose(tf.reshape(dy, [count, c, m]), [1, 0, 2]); // [C, N*OH*OW, M]
    const taps: tf.Tensor[] = [];
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const patch = tf.stridedSlice(xp, [0, 0, i * dh, j * dw], [c, n, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1], [1, 1, sh, sw]);
        taps.push(tf.matMul(tf.reshape(patch, [c, 1, count]), dyc)); // [C,1,M]
      }
    }
    return tf.reshape(tf.stack(taps), [kh, kw, c, m]);
  });
}

/**
 * Gradient of `depthwiseConv2d` with respect to its input: a depthwise convolution (dilation d,
 * stride 1) of dy, zero-stuffed by the stride and padded by `(K-1)*d - pad`, with the filter
 * rotated 180°; with channel multiplier M > 1 the `C*M` results are summed over m.
 *
 * @param inputShape - `[N,H,W,C]` of the forward input.
 * @param dy - `[N,OH,OW,C*M]`.
 * @param filter - `[KH,KW,C,M]`.
 * @returns dx `[N,H,W,C]` float32.
 */
export function depthwiseConv2dBackpropInput(
  inputShape: Shape4,
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  strides: [number, number] | number,
  pad: Pad,
  dilations: [number, number] | number = 1,
  dimRoundingMode?: Rounding,
): tf.Tensor4D {
  return tf.tidy(() => {
    const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape, strides, dilations, pad, dimRoundingMode, true, 'channelsLast');
    const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, filterHeight: kh, filterWidth: kw, outHeight: oh, outWidth: ow, padInfo } = info;
    const [n, h, w, c] = inputShape;
    const m = filter.shape[3];
    checkDy('DepthwiseConv2dNativeBackpropInput', dy.shape, [n, oh, ow, c * m]);
    const dyd = strideStuff(dy, sh, sw); // dyd[j] = dy[j/s] when s divides j, else 0
    // dx[i] = Σ_k dyd[i + top - k*d] w[k] = Σ_k' dydp[i + k'*d] wRot[k'], dydp padded by (K-1)*d - top.
    const padTop = (kh - 1) * dh - padInfo.top;
    const padLeft = (kw - 1) * dw - padInfo.left;
    const dydp = padOrCrop(dyd, padTop, h + (kh - 1) * dh - padTop - dyd.shape[1], padLeft, w + (kw - 1) * dw - padLeft - dyd.shape[2]);
    const wRot = tf.reshape(tf.reverse(filter, [0, 1]), [kh, kw, c * m, 1]) as tf.Tensor4D;
    const dx = tf.depthwiseConv2d(dydp, wRot, 1, 'valid', 'NHWC', [dh, dw]); // [N,H,W,C*M]
    return m === 1 ? dx : tf.sum(tf.reshape(dx, [n, h, w, c, m]), 4);
  });
}

function checkDy(kernel: string, received: number[], expected: number[]): void {
  if (received.length !== 4 || received.some((v, i) => v !== expected[i])) {
    throw new Error(`${kernel}: expected dy of shape [${expected.join(',')}] (from the input shape, filter, strides and padding) but received [${received.join(',')}]`);
  }
}

/**
 * Gradient of 2-D max pooling: each dy value goes to the first (row-major within the window)
 * input position holding the window's maximum, summed where windows overlap — the semantics of
 * TensorFlow and of the tfjs CPU backend (`maxPoolPositions`, strict `>`).
 *
 * Replaces the WASM backend's native `MaxPoolGrad`, which in 4.22 drops the gradient of every
 * window whose values are all negative (it returns 0 there; found by test/kernels.test.ts).
 *
 * Per window tap: a strided slice of the input (padded with -Infinity) compared with the pooled
 * output, masked to the first hit; the masked dy is put back by interleaving (stride = window, the
 * usual 2x2/2 case) or by zero-stuffing and offsetting (overlapping windows).
 *
 * @param dy - `[N,OH,OW,C]`.
 * @param input - forward input `[N,H,W,C]`.
 * @param output - forward output `[N,OH,OW,C]` (= maxPool(input)).
 * @returns dx `[N,H,W,C]` float32.
 */
export function maxPoolGrad(
  dy: tf.Tensor4D,
  input: tf.Tensor4D,
  output: tf.Tensor4D,
  filterSize: [number, number] | number,
  strides: [number, number] | number,
  pad: Pad,
  dimRoundingMode?: Rounding,
): tf.Tensor4D {
  return tf.tidy(() => {
    const info = tf.backend_util.computePool2DInfo(input.shape, filterSize, strides, 1, pad, dimRoundingMode);
    const { strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw, outHeight: oh, outWidth: ow, padInfo } = info;
    const [n, h, w, c] = input.shape;
    checkDy('MaxPoolGrad', dy.shape, [n, oh, ow, c]);
    const needH = kh + (oh - 1) * sh;
    const needW = kw + (ow - 1) * sw;
    const xp = padOrCrop(input, padInfo.top, needH - h - padInfo.top, padInfo.left, needW - w - padInfo.left, -Infinity);
    let found: tf.Tensor4D = tf.zerosLike(dy).cast('bool') as tf.Tensor4D;
    const parts: tf.Tensor4D[] = [];
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const tap = tf.stridedSlice(xp, [0, i, j, 0], [n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c], [1, sh, sw, 1]) as tf.Tensor4D;
        const hit = tf.logicalAnd(tf.equal(tap, output), tf.logicalNot(found)) as tf.Tensor4D;
        found = tf.logicalOr(found, hit) as tf.Tensor4D;
        parts.push(tf.where(hit, dy, tf.zerosLike(dy)) as tf.Tensor4D);
      }
    }
    let dxp: tf.Tensor4D;
    if (sh === kh && sw === kw) {
      // Non-overlapping windows tile [OH*KH, OW*KW]: interleave the taps.
      const stacked = tf.reshape(tf.stack(parts), [kh, kw, n, oh, ow, c]);
      dxp = tf.reshape(tf.transpose(stacked, [2, 3, 0, 4, 1, 5]), [n, oh * kh, ow * kw, c]) as tf.Tensor4D;
    } else {
      dxp = tf.addN(parts.map((part, t) => {
        const i = Math.floor(t / kw);
        const j = t % kw;
        const stuffed = strideStuff(part, sh, sw);
        return padOrCrop(stuffed, i, needH - i - stuffed.shape[1], j, needW - j - stuffed.shape[2]);
      })) as tf.Tensor4D;
    }
    return padOrCrop(dxp, -padInfo.top, h + padInfo.top - needH, -padInfo.left, w + padInfo.left - needW);
  });
}
