/**
 * Real images as normalised float batches for conversion checks: decoded with the one
 * preprocessing ({@link decodeImage}, e.g. DEFAULT_PREPROCESS: 224x224 squash, sRGB), then
 * `x/255`, `(x - mean)/std` per channel — what the ONNX base's `input` expects.
 */
import { readFile } from 'node:fs/promises';
import { decodeImage } from '../../src/preprocess/decode.js';
import type { PreprocessSpec } from '../../src/preprocess/spec.js';

export interface NormalizedBatch {
  /** `[N,H,W,3] float32 NHWC` (TF.js layout). */
  nhwc: Float32Array;
  /** `[N,3,H,W] float32 NCHW` (ONNX layout), same values. */
  nchw: Float32Array;
  count: number;
}

export async function normalizedBatch(paths: string[], spec: PreprocessSpec): Promise<NormalizedBatch> {
  const { width: w, height: h } = spec;
  const plane = w * h;
  const nhwc = new Float32Array(paths.length * plane * 3);
  const nchw = new Float32Array(paths.length * plane * 3);
  for (const [b, path] of paths.entries()) {
    const px = await decodeImage(await readFile(path), spec);
    const base = b * plane * 3;
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        const v = (px[i * 3 + c] / 255 - spec.mean[c]) / spec.std[c];
        nhwc[base + i * 3 + c] = v;
        nchw[base + c * plane + i] = v;
      }
    }
  }
  return { nhwc, nchw, count: paths.length };
}

/** Index of the largest value of each row of a `[N,K]` row-major array. */
export function argmaxRows(values: Float32Array, k: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < values.length / k; r++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (values[r * k + j] > values[r * k + best]) best = j;
    out.push(best);
  }
  return out;
}

/** Max and mean absolute difference of two equal-length arrays. */
export function absDiff(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  if (a.length !== b.length) throw new Error(`Cannot compare arrays of ${a.length} and ${b.length} values`);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    if (d > max) max = d;
  }
  return { max, mean: a.length ? sum / a.length : 0 };
}
