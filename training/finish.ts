/**
 * The steps every training method ends with, whatever it trained: temperature scaling on validation,
 * split metrics, and the model folder (`model.onnx`, `MODEL_CARD.md`, `history.json`).
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelCard } from '../src/model/card.js';
import type { PreprocessSpec } from '../src/preprocess/spec.js';
import { expectedCalibrationError, fitTemperature, softmaxRows } from './calibration.js';
import { argmaxRows } from './metrics.js';
import { renderModelCard } from './model-card-md.js';

/** A model's probabilities on one split: `probabilities` `[N,C]` float32 row-major, `labels` N class indices. */
export interface SplitPredictions {
  probabilities: Float32Array;
  labels: number[];
}

/** Top-1 accuracy of a split's predictions (0..1). */
export function accuracyOf(split: SplitPredictions, classes: number): number {
  const predicted = argmaxRows(split.probabilities, classes);
  return split.labels.reduce((n, y, i) => n + (predicted[i] === y ? 1 : 0), 0) / Math.max(1, split.labels.length);
}

/**
 * Fits a softmax temperature on validation (Guo et al. 2017) and measures ECE (15 bins) before and after
 * on validation and, when given, test. The caller folds T into its output layer (see `applyTemperature`).
 *
 * With no validation error NLL keeps falling as T -> 0: the data carry no evidence for a temperature,
 * so T = 1 is returned and `identifiable` is false.
 */
export function calibrateOnValidation(validation: SplitPredictions, test: SplitPredictions | undefined, classes: number): { calibration: NonNullable<ModelCard['calibration']>; identifiable: boolean } {
  const logProbs = (s: SplitPredictions) => s.probabilities.map((p) => Math.log(Math.max(p, 1e-12)));
  const identifiable = accuracyOf(validation, classes) < 1;
  const temperature = identifiable ? fitTemperature(logProbs(validation), validation.labels, classes) : 1;
  const ece = (s: SplitPredictions, t: number) => expectedCalibrationError(t === 1 ? s.probabilities : softmaxRows(logProbs(s), classes, t), s.labels, classes).ece;
  return {
    identifiable,
    calibration: {
      temperature,
      validationEceBefore: ece(validation, 1),
      validationEceAfter: ece(validation, temperature),
      ...(test ? { testEceBefore: ece(test, 1), testEceAfter: ece(test, temperature) } : {}),
    },
  };
}

/** One line for the training log. */
export function formatCalibration(c: NonNullable<ModelCard['calibration']>): string {
  return `temperature scaling: T = ${c.temperature.toFixed(3)}; validation ECE ${c.validationEceBefore.toFixed(3)} -> ${c.validationEceAfter.toFixed(3)}${c.testEceAfter !== undefined ? `; test ECE ${c.testEceBefore!.toFixed(3)} -> ${c.testEceAfter.toFixed(3)}` : ''}`;
}

/** Fails before any work when `out` is a file, or already holds a model and `overwrite` is false. */
export async function checkOutputFolder(out: string, overwrite: boolean): Promise<void> {
  const info = await stat(out).catch(() => undefined);
  if (!info) return;
  if (!info.isDirectory()) throw new Error(`Expected a folder for --out but received ${JSON.stringify(out)}, which is a file`);
  if (!overwrite && (await stat(join(out, 'model.onnx')).catch(() => undefined))) {
    throw new Error(`--out ${JSON.stringify(out)} already holds a model.onnx; choose another folder or pass --overwrite to replace it`);
  }
}

/**
 * Writes `<out>/model.onnx`, `<out>/history.json` (per-epoch loss/accuracy: the training curves) and
 * `<out>/MODEL_CARD.md`; returns the model path.
 */
export async function writeModelFolder(out: string, modelBytes: Uint8Array, card: ModelCard, history: unknown): Promise<string> {
  await mkdir(out, { recursive: true });
  const modelPath = join(out, 'model.onnx');
  await writeFile(modelPath, modelBytes);
  await writeFile(join(out, 'history.json'), `${JSON.stringify(history, null, 1)}\n`);
  await writeFile(join(out, 'MODEL_CARD.md'), renderModelCard(card));
  return modelPath;
}

/**
 * The card fields every artist-id model states the same way, whatever trained it: format, name (default:
 * the output folder's name), classes in output order, preprocessing, and the graph's tensor names
 * (`image` in; `probabilities`, `logits`, `features` out).
 */
export function cardIdentity(out: string, name: string | undefined, classes: string[], preprocessing: PreprocessSpec): Pick<ModelCard, 'format' | 'name' | 'classes' | 'preprocessing' | 'input' | 'outputs'> {
  return {
    format: 'artist-id/1',
    name: name ?? out.split(/[\\/]/).pop()!,
    classes,
    preprocessing,
    input: 'image',
    outputs: { probabilities: 'probabilities', logits: 'logits', features: 'features' },
  };
}

/** `0.8333` -> `83.3%`. */
export function pct(v: number): string {
  return `${(100 * v).toFixed(1)}%`;
}
