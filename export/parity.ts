/**
 * The parity check run at the end of every export: the exported model against its source.
 */
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { decodeImage } from '../src/preprocess/decode.js';
import { imageBytes, type PreprocessSpec } from '../src/preprocess/spec.js';
import { TENSOR } from './base.js';

/**
 * Largest tolerated |p_onnx - p_source| over all probabilities. Both sides compute the same fp32
 * head (MatMul/Add/Relu/Softmax) on the same base features; observed differences are ~1e-7
 * (summation order), so 1e-4 only fails on a real conversion error.
 */
export const PARITY_TOLERANCE = 1e-4;

export interface ParityResult {
  images: number;
  maxAbsDiff: number;
  tolerance: number;
  /** Images whose top-1 differs between the two sides. */
  top1Disagreements: number;
}

/**
 * Runs real images through the exported model and through the source pipeline (the feature
 * extractor in onnxruntime, then `reference` = the TF.js head) and compares probabilities.
 *
 * @param exported - session of the exported `model.onnx`.
 * @param features - session of the feature model (input `image`, output `features`).
 * @param reference - source model: `[N,D]` features to `[N,C]` probabilities.
 * @param paths - real image files (held-out images are best).
 * @throws Error when the max abs difference exceeds `tolerance`, with the figure.
 */
export async function checkParity(
  exported: ort.InferenceSession,
  features: ort.InferenceSession,
  reference: (features: Float32Array) => Float32Array,
  paths: string[],
  spec: PreprocessSpec,
  tolerance = PARITY_TOLERANCE,
): Promise<ParityResult> {
  const size = imageBytes(spec);
  const batch = new Uint8Array(paths.length * size);
  for (const [i, path] of paths.entries()) batch.set(await decodeImage(await readFile(path), spec), i * size);
  const feeds = { [TENSOR.image]: new ort.Tensor('uint8', batch, [paths.length, spec.height, spec.width, 3]) };
  const onnxProbs = (await exported.run(feeds, [TENSOR.probabilities]))[TENSOR.probabilities].data as Float32Array;
  const feats = (await features.run(feeds))[TENSOR.features].data as Float32Array;
  const refProbs = reference(feats);
  const result = compareProbabilities(onnxProbs, refProbs, onnxProbs.length / paths.length, tolerance);
  if (!(result.maxAbsDiff <= tolerance)) {
    throw new Error(`Parity check failed: max |p_onnx - p_tfjs| = ${result.maxAbsDiff.toExponential(2)} over ${paths.length} images exceeds tolerance ${tolerance}`);
  }
  return result;
}

/**
 * Max |a - b| and top-1 disagreements of two `[N,C]` probability matrices (a: the exported model, b: its source).
 *
 * @throws Error when their sizes differ.
 */
export function compareProbabilities(a: Float32Array, b: ArrayLike<number>, c: number, tolerance = PARITY_TOLERANCE): ParityResult {
  if (a.length !== b.length) throw new Error(`Parity check failed: the exported model gives ${a.length} probabilities, the source ${b.length}`);
  const n = a.length / c;
  let maxAbsDiff = 0;
  let top1Disagreements = 0;
  for (let i = 0; i < n; i++) {
    let ia = 0;
    let ib = 0;
    for (let j = 0; j < c; j++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(a[i * c + j] - b[i * c + j]));
      if (a[i * c + j] > a[i * c + ia]) ia = j;
      if (b[i * c + j] > b[i * c + ib]) ib = j;
    }
    if (ia !== ib) top1Disagreements++;
  }
  return { images: n, maxAbsDiff, tolerance, top1Disagreements };
}
