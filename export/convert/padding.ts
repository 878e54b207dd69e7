/**
 * Padding arithmetic shared by both directions.
 *
 * TensorFlow `padding: 'same'` (https://www.tensorflow.org/api_docs/python/tf/nn#same_padding):
 * `out = ceil(in / stride)`, `total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0)`,
 * `begin = floor(total / 2)`, `end = total - begin` (the odd pixel goes at the end, like ONNX
 * `auto_pad = SAME_UPPER`). ONNX `pads` are `[x1_begin, x2_begin, ..., x1_end, x2_end]`
 * (onnx.ai/onnx/operators/onnx__Conv).
 */

/** Begin/end padding of one spatial axis under TF 'same'. */
export function samePadding(inSize: number, kernel: number, stride: number, dilation = 1): [number, number] {
  const out = Math.ceil(inSize / stride);
  const effective = (kernel - 1) * dilation + 1;
  const total = Math.max((out - 1) * stride + effective - inSize, 0);
  const begin = Math.floor(total / 2);
  return [begin, total - begin];
}

/**
 * ONNX 2-D pads `[top, left, bottom, right]` for TF 'same' on an `[H, W]` input.
 */
export function samePads2d(size: [number, number], kernel: [number, number], strides: [number, number], dilations: [number, number] = [1, 1]): number[] {
  const [top, bottom] = samePadding(size[0], kernel[0], strides[0], dilations[0]);
  const [left, right] = samePadding(size[1], kernel[1], strides[1], dilations[1]);
  return [top, left, bottom, right];
}

/**
 * Explicit ONNX pads of a 2-D Conv/Pool node from its `auto_pad` and `pads` attributes.
 *
 * `SAME_LOWER` puts the odd pixel at the start; it is returned as explicit pads (a TF model then
 * needs a ZeroPadding2D in front of a 'valid' layer).
 *
 * @throws Error for an unknown `auto_pad` mode.
 */
export function onnxPads2d(autoPad: string, pads: number[], size: [number, number], kernel: [number, number], strides: [number, number], dilations: [number, number]): number[] {
  switch (autoPad) {
    case 'NOTSET':
      return pads.length === 4 ? pads : [0, 0, 0, 0];
    case 'VALID':
      return [0, 0, 0, 0];
    case 'SAME_UPPER':
      return samePads2d(size, kernel, strides, dilations);
    case 'SAME_LOWER': {
      const [t, l, b, r] = samePads2d(size, kernel, strides, dilations);
      return [b, r, t, l];
    }
    default:
      throw new Error(`Unknown auto_pad "${autoPad}"`);
  }
}

/** True when all pads are zero. */
export function isZero(pads: number[]): boolean {
  return pads.every((p) => p === 0);
}

/** True when the ONNX pads equal TF 'same' for this input (so a TF layer can use padding 'same'). */
export function isTfSame(pads: number[], size: [number, number], kernel: [number, number], strides: [number, number], dilations: [number, number]): boolean {
  const same = samePads2d(size, kernel, strides, dilations);
  return pads.every((p, i) => p === same[i]);
}
