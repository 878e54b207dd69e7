/**
 * An artist-id model loaded for inference: its card (classes, preprocessing) and an onnxruntime
 * session, created once and disposed with {@link Classifier.dispose}.
 */
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ModelCard } from '../model/card.js';
import { cardOfBytes } from '../model/read-card.js';
import { DEFAULT_MODEL_NAME, MODELS_DIR } from '../paths.js';
import { imageBytes } from '../preprocess/spec.js';
import { outputOpenSetScores } from './open-set-score.js';
import { createSession, type ExecutionProvider, type SessionOptions } from './session.js';

/** One artist and its probability. */
export interface ArtistProbability {
  artist: string;
  probability: number;
}

/**
 * Open-set verdict of one image, for models whose card has `openSet` (see {@link openSetVerdicts}).
 */
export interface OpenSetResult {
  /** The card's open-set score (`card.openSet.score`); higher means more like the trained artists. */
  score: number;
  /**
   * True when `score` is below `card.openSet.threshold` (or not a number): the painting is probably by
   * none of the trained artists. The top-k artists are still reported.
   */
  unknown: boolean;
}

/** Output of one batch. */
export interface BatchResult {
  /** `[N][C]` softmax probabilities, rows in input order, columns in `card.classes` order. */
  probabilities: Float32Array[];
  /** `[N]` open-set verdicts in input order; present exactly when the card has `openSet`. */
  openSet?: OpenSetResult[];
  /** Wall time of `session.run` in ms. */
  inferenceMs: number;
}

/**
 * Resolves `--model`: a path to an `.onnx` file, a directory holding `model.onnx` (what
 * `artist-id train --out DIR` writes), or the name of a model under the package's `models/`.
 *
 * @throws Error naming the value and every place looked at, when none exists.
 */
export function resolveModelPath(model: string = DEFAULT_MODEL_NAME): string {
  const candidates: string[] = [];
  const asPath = isAbsolute(model) ? model : resolve(model);
  if (existsSync(asPath) && statSync(asPath).isFile()) return asPath;
  candidates.push(asPath);
  const inDir = join(asPath, 'model.onnx');
  if (existsSync(inDir)) return inDir;
  candidates.push(inDir);
  if (!model.includes('/') && !model.includes('\\')) {
    const named = join(MODELS_DIR, model, 'model.onnx');
    if (existsSync(named)) return named;
    candidates.push(named);
  }
  if (existsSync(asPath) && statSync(asPath).isDirectory()) {
    throw new Error(`Expected a model for --model but the folder ${JSON.stringify(model)} holds no model.onnx (train one with: artist-id train --out ${model})`);
  }
  throw new Error(`Expected a model file, a folder with model.onnx, or a model name under models/ for --model but received ${JSON.stringify(model)}: none of ${candidates.join(', ')} exists`);
}

/**
 * A loaded model.
 *
 * @example
 * const clf = await Classifier.load('default');
 * const { probabilities } = await clf.run([await decodeImage(bytes, clf.card.preprocessing)]);
 * console.log(topK(probabilities[0], clf.card.classes, 3));
 * await clf.dispose();
 */
export class Classifier {
  private constructor(
    /** The model's card, from its ONNX metadata. */
    readonly card: ModelCard,
    /** Path of the loaded `.onnx` file. */
    readonly path: string,
    private readonly session: ort.InferenceSession,
    /** Execution provider actually running the session. */
    readonly provider: ExecutionProvider,
    /** Why the provider is not the requested one, if it is not. */
    readonly fallbackReason: string | undefined,
    /** Session creation time in ms. */
    readonly createMs: number,
  ) {}

  /**
   * Loads a model (see {@link resolveModelPath}) and creates its session.
   *
   * @throws Error when the model is missing, is not an artist-id model (no card), or fails to load.
   */
  static async load(model?: string, options: SessionOptions = {}): Promise<Classifier> {
    const path = resolveModelPath(model);
    const bytes = await readFile(path);
    const card = cardOfBytes(bytes, path);
    const created = await createSession(bytes, options);
    return new Classifier(card, path, created.session, created.provider, created.fallbackReason, created.createMs);
  }

  /**
   * Runs one batch.
   *
   * @param images - N decoded images, each `[H,W,3] uint8` as returned by `decodeImage` with
   *   `card.preprocessing` (length H*W*3).
   * @returns probabilities `[N][C]`.
   * @throws Error when `images` is empty or an image has the wrong byte length.
   */
  async run(images: Uint8Array[]): Promise<BatchResult> {
    const { width, height } = this.card.preprocessing;
    const size = imageBytes(this.card.preprocessing);
    if (images.length === 0) throw new Error('Expected at least one image for images but received an empty array');
    const batch = new Uint8Array(images.length * size);
    images.forEach((img, i) => {
      if (img.length !== size) {
        throw new Error(`Expected ${size} bytes ([${height},${width},3] uint8) for images[${i}] but received ${img.length} bytes`);
      }
      batch.set(img, i * size);
    });
    const input = new ort.Tensor('uint8', batch, [images.length, height, width, 3]);
    const start = performance.now();
    const extra = openSetOutputNames(this.card);
    const out = await this.session.run({ [this.card.input]: input }, [this.card.outputs.probabilities, ...extra]);
    const inferenceMs = performance.now() - start;
    const probs = out[this.card.outputs.probabilities].data as Float32Array;
    const c = this.card.classes.length;
    const probabilities = images.map((_, i) => probs.slice(i * c, (i + 1) * c));
    const tensors: Record<string, Float32Array> = { [this.card.outputs.probabilities]: probs };
    for (const name of extra) tensors[name] = out[name].data as Float32Array;
    input.dispose?.();
    const openSet = openSetVerdicts(this.card, images.length, tensors);
    return { probabilities, inferenceMs, ...(openSet ? { openSet } : {}) };
  }

  /** Releases the native session. */
  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/**
 * The k most probable artists, most probable first (ties keep class order).
 *
 * @param probabilities - `[C]` probabilities in `classes` order.
 * @param k - how many; clamped to C.
 */
export function topK(probabilities: ArrayLike<number>, classes: readonly string[], k: number): ArtistProbability[] {
  return Array.from(probabilities, (probability, i) => ({ artist: classes[i], probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, Math.max(1, Math.min(k, classes.length)));
}

/**
 * Graph outputs, besides `probabilities`, that a card's open-set score is computed from: none for
 * `msp`, `logits` for `energy`, `openSet.output` for the scores computed in the graph; none without
 * `openSet`.
 */
export function openSetOutputNames(card: Pick<ModelCard, 'openSet' | 'outputs'>): string[] {
  const openSet = card.openSet;
  if (!openSet || openSet.score === 'msp') return [];
  if (openSet.score === 'energy') return [card.outputs.logits];
  return [openSet.output!];
}

/**
 * Open-set verdicts of a batch from its output tensors (the one place the score is derived from model
 * outputs, so the CLI, the API and the web page agree).
 *
 * Scores (see `OPEN_SET_SCORES` in model/card.ts): `msp` = max over the row of `probabilities`;
 * `energy` = logsumexp over the row of `logits` (both by `outputOpenSetScores`, which training uses to
 * choose the threshold); graph scores = element i of `openSet.output`
 * (`[N]` or `[N,1]`). `unknown` = `!(score >= threshold)`, so a NaN score is unknown.
 *
 * @param n - images in the batch.
 * @param tensors - output data by graph name, row-major: `probabilities` `[N,C]` and the outputs
 *   {@link openSetOutputNames} lists.
 * @returns `[N]` verdicts, or undefined when the card has no `openSet`.
 * @throws Error naming the output when a needed tensor is missing or has the wrong length.
 */
export function openSetVerdicts(card: Pick<ModelCard, 'openSet' | 'outputs' | 'classes'>, n: number, tensors: Record<string, ArrayLike<number>>): OpenSetResult[] | undefined {
  const openSet = card.openSet;
  if (!openSet) return undefined;
  const c = card.classes.length;
  const name = openSet.score === 'msp' ? card.outputs.probabilities : openSet.score === 'energy' ? card.outputs.logits : openSet.output!;
  const data = tensors[name];
  const width = openSet.score === 'msp' || openSet.score === 'energy' ? c : 1;
  if (!data || data.length !== n * width) {
    throw new Error(`Expected output ${JSON.stringify(name)} with ${n * width} values ([${n},${width}] float32) for the open-set score ${openSet.score} but received ${data ? data.length : 'no such output'}`);
  }
  const scores = openSet.score === 'msp' || openSet.score === 'energy' ? outputOpenSetScores(openSet.score, data, c) : data;
  return Array.from({ length: n }, (_, i) => {
    const score = scores[i];
    return { score, unknown: !(score >= openSet.threshold) };
  });
}
