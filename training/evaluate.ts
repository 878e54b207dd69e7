/**
 * `artist-id evaluate`: rebuilds a model's held-out test split from the seed, split and classes in
 * its card, runs the exported ONNX model on it end to end (sharp decode -> onnxruntime), and reports
 * accuracy, per-artist precision/recall, the confusion matrix and the misclassified files.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { Classifier } from '../src/inference/classifier.js';
import type { ProviderRequest } from '../src/inference/session.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { loadDataset, splitDigest } from './dataset.js';
import { argmaxRows, classificationReport, formatReport, type ClassificationReport } from './metrics.js';

export interface EvaluateOptions {
  model: string;
  data: string;
  provider?: ProviderRequest;
  /** Write the full result as JSON here too. */
  json?: string;
  batchSize?: number;
  /** Evaluate even when the rebuilt test split differs from the one the model was trained with. */
  allowSplitMismatch?: boolean;
}

export interface Misclassified {
  path: string;
  artist: string;
  predicted: string;
  probability: number;
}

export interface EvaluationResult {
  model: string;
  provider: string;
  split: { seed: number; sizes: [number, number, number]; layout: string };
  report: ClassificationReport;
  misclassified: Misclassified[];
}

/**
 * Evaluates a model on its own held-out test split.
 *
 * @throws Error when the data folder does not hold the model's artists, or the split is empty.
 */
export async function evaluate(options: EvaluateOptions): Promise<EvaluationResult> {
  const classifier = await Classifier.load(options.model, { provider: options.provider });
  try {
    const { card } = classifier;
    const dataset = await loadDataset(options.data, { artists: card.classes, seed: card.training.seed, split: card.training.split });
    if (dataset.classes.join() !== card.classes.join()) {
      throw new Error(`Expected artists ${card.classes.join(', ')} in ${options.data} but found ${dataset.classes.join(', ')}`);
    }
    if (dataset.test.length === 0) throw new Error(`The model's split (${card.training.split.join('/')}) has no test images to evaluate`);
    const expected = card.training.splitDigest?.test;
    if (expected) {
      const actual = splitDigest(await Promise.all(dataset.test.map(async (s) => createHash('sha256').update(await readFile(s.path)).digest('hex'))));
      if (actual !== expected && !options.allowSplitMismatch) {
        throw new Error(
          `${options.data} does not reproduce the model's held-out test split (seed ${card.training.seed}, split ${card.training.split.join('/')}): files were added, removed, renamed or changed since training, so some "test" images may have been trained on. Evaluate on the folder the model was trained on, or pass --allow-split-mismatch to evaluate anyway (the figure is then not a held-out accuracy).`,
        );
      }
    }
    const batchSize = options.batchSize ?? 32;
    const predicted: number[] = [];
    const misclassified: Misclassified[] = [];
    const c = card.classes.length;
    for (let start = 0; start < dataset.test.length; start += batchSize) {
      const batch = dataset.test.slice(start, start + batchSize);
      const pixels = await Promise.all(batch.map(async (s) => decodeImage(await readFile(s.path), card.preprocessing)));
      const { probabilities } = await classifier.run(pixels);
      const top = argmaxRows(Float32Array.from(probabilities.flatMap((p) => Array.from(p))), c);
      top.forEach((k, i) => {
        predicted.push(k);
        if (k !== batch[i].label) {
          misclassified.push({ path: batch[i].path, artist: card.classes[batch[i].label], predicted: card.classes[k], probability: probabilities[i][k] });
        }
      });
    }
    const report = classificationReport(dataset.test.map((s) => s.label), predicted, card.classes);
    const result: EvaluationResult = {
      model: classifier.path,
      provider: classifier.provider,
      split: { seed: card.training.seed, sizes: card.training.split, layout: dataset.layout },
      report,
      misclassified,
    };
    if (options.json) await writeFile(options.json, `${JSON.stringify(result, null, 1)}\n`);
    return result;
  } finally {
    await classifier.dispose();
  }
}

/** Human-readable evaluation: header, report, misclassified files. */
export function formatEvaluation(result: EvaluationResult): string {
  const lines = [
    `model: ${result.model} (execution provider: ${result.provider})`,
    result.split.layout === 'keras'
      ? `test split: the test/ folder (Keras layout), ${result.report.images} held-out images`
      : `test split: seed ${result.split.seed}, split ${result.split.sizes.join('/')} per artist, ${result.report.images} held-out images`,
    '',
    formatReport(result.report),
    '',
    `misclassified (${result.misclassified.length}):`,
    ...result.misclassified.map((m) => `  ${m.path}: ${m.artist} -> ${m.predicted} (p=${m.probability.toFixed(3)})`),
  ];
  return lines.join('\n');
}
