/**
 * Open set ("none of the trained artists"): the threshold rule, AUROC, and the card's `openSet` entry.
 *
 * Convention throughout: a score is "higher = more like the trained artists" (`OPEN_SET_SCORES` in
 * src/model/card.ts), and an image is `unknown` when its score is below the threshold.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { EigenvalueDecomposition, Matrix, QrDecomposition } from 'ml-matrix';
import seedrandom from 'seedrandom';
import { OPEN_SET_SCORE_OUTPUT, withOpenSetScore, type WhitenedCentres } from '../export/open-set-graph.js';
import { outputOpenSetScores } from '../src/inference/open-set-score.js';
import { GRAPH_OPEN_SET_SCORES, type HeadSolver, type ModelCard, type OpenSetScoreName } from '../src/model/card.js';
import type { ModelProto } from '../src/onnx/model.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { softmaxRows } from './calibration.js';
import type { FeatureSet, TrainedHead } from './head.js';

/** The card's `openSet` entry. */
export type OpenSetCard = NonNullable<ModelCard['openSet']>;

/**
 * The score training ships, chosen by mean leave-one-artist-out validation AUROC in docs/OPEN_SET.md
 * (scripts/open-set.ts).
 */
export const DEFAULT_OPEN_SET_SCORE: 'msp' | 'energy' | 'mahalanobis' | 'relative-mahalanobis' = 'energy';

/** Where scripts/open-set.ts writes its measurements. */
export const OPEN_SET_MEASUREMENTS = join(PACKAGE_ROOT, 'docs', 'open-set.json');

/** One leave-one-artist-out fold of scripts/open-set.ts: per score name, the figures for the left-out `artist`. */
export interface OpenSetFold {
  artist: string;
  scores: string[];
  validationAuroc: Record<string, number>;
  testAuroc: Record<string, number>;
  /** Known test paintings called unknown at the 95%-on-validation threshold. */
  falseUnknown: Record<string, number>;
  /** Left-out artist's test paintings called unknown at that threshold. */
  detected: Record<string, number>;
  shrinkage: Record<string, number>;
}

/** docs/open-set.json: what scripts/open-set.ts measured. */
export interface OpenSetMeasurements {
  seed: number;
  /** How every fold's head was fitted (HeadConfig.solver); absent in measurements made before solvers existed: `adam`. */
  solver?: HeadSolver;
  backend: string;
  acceptRate: number;
  artists: number;
  components: number[];
  folds: OpenSetFold[];
}

/** A score's figures, each the mean over the folds. */
export interface OpenSetScoreSummary {
  name: string;
  validationAuroc: number;
  testAuroc: number;
  falseUnknown: number;
  detected: number;
}

/** Scores a model can carry (see {@link ShippableOpenSetScore}), by their names in docs/open-set.json. */
export function isShippableOpenSetScore(name: string): boolean {
  return /^(msp|energy|mahalanobis-\d+|relative-mahalanobis-\d+)$/.test(name);
}

/**
 * Means over the folds per score; `chosen`: the score a model can carry ({@link isShippableOpenSetScore}) with
 * the best mean VALIDATION AUROC (the test column never chooses); `best`: the best on validation among all measured.
 *
 * @throws Error when there are no folds.
 */
export function summarizeOpenSet(m: OpenSetMeasurements): { scores: OpenSetScoreSummary[]; chosen: OpenSetScoreSummary; best: OpenSetScoreSummary } {
  if (!m.folds?.length) throw new Error('Expected open-set measurements with at least one fold but received none');
  const mean = (get: (f: OpenSetFold) => number) => m.folds.reduce((s, f) => s + get(f), 0) / m.folds.length;
  const scores = m.folds[0].scores.map((name) => ({
    name,
    validationAuroc: mean((f) => f.validationAuroc[name]),
    testAuroc: mean((f) => f.testAuroc[name]),
    falseUnknown: mean((f) => f.falseUnknown[name]),
    detected: mean((f) => f.detected[name]),
  }));
  const byValidation = (list: OpenSetScoreSummary[]) => list.reduce((best, s) => (s.validationAuroc > best.validationAuroc ? s : best));
  return { scores, chosen: byValidation(scores.filter((s) => isShippableOpenSetScore(s.name))), best: byValidation(scores) };
}

/** docs/open-set.json, or undefined when it has not been measured. */
export async function readOpenSetMeasurements(path = OPEN_SET_MEASUREMENTS): Promise<OpenSetMeasurements | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as OpenSetMeasurements);
}

/**
 * The leave-one-artist-out AUROC of a score as measured by scripts/open-set.ts (mean over the folds of
 * docs/open-set.json), for the card's `openSet.auroc`; undefined when the file or the score is missing.
 * It describes the route (style features, logistic regression fitted by `solver`, the file's seed), not one
 * trained model; undefined too when the file's heads were fitted by another solver, or when `classes` (the
 * model's artists) are not the artists the folds left out in turn.
 */
export async function measuredOpenSetAuroc(score: string, solver: HeadSolver, classes: readonly string[], path = OPEN_SET_MEASUREMENTS): Promise<OpenSetCard['auroc']> {
  const m = await readOpenSetMeasurements(path);
  if (!m?.folds?.length || m.folds.some((f) => f.validationAuroc[score] === undefined)) return undefined;
  // Heads fitted another way are another route, and a model of other artists another question: neither gets this AUROC.
  if ((m.solver ?? 'adam') !== solver) return undefined;
  const measured = m.folds.map((f) => f.artist).sort();
  if (measured.length !== classes.length || [...classes].sort().some((c, i) => c !== measured[i])) return undefined;
  const found = summarizeOpenSet(m).scores.find((s) => s.name === score)!;
  return {
    method: `leave-one-artist-out over ${m.artists} artists, style route (solver ${solver}), seed ${m.seed} (docs/OPEN_SET.md)`,
    validation: found.validationAuroc,
    test: found.testAuroc,
  };
}

/** Fraction of known-artist validation paintings the threshold must accept. */
export const DEFAULT_ACCEPT_RATE = 0.95;

/**
 * The threshold rule: the largest score value t such that at least `acceptRate` of `scores` satisfy
 * `score >= t`. With the scores sorted ascending `s[0] <= ... <= s[n-1]`, t = `s[floor(n (1 - acceptRate))]`
 * (so with 30 scores and 0.95, t is the second-lowest: 29 of 30 = 96.7% are accepted).
 *
 * @param scores - open-set scores of known-artist paintings (validation), higher = more known.
 * @param acceptRate - in (0, 1].
 * @returns the threshold and the fraction of `scores` it accepts (>= `acceptRate`).
 * @throws Error when `scores` is empty or holds a non-finite value, or `acceptRate` is outside (0, 1].
 * @example
 * acceptThreshold([1, 2, 3, 4], 0.75); // { threshold: 2, acceptRate: 0.75 }
 */
export function acceptThreshold(scores: ArrayLike<number>, acceptRate = DEFAULT_ACCEPT_RATE): { threshold: number; acceptRate: number } {
  if (!(acceptRate > 0 && acceptRate <= 1)) throw new Error(`Expected acceptRate in (0, 1] but received ${acceptRate}`);
  if (scores.length === 0) throw new Error('Expected at least one score for scores but received an empty array');
  const sorted = Float64Array.from(scores).sort();
  const bad = sorted.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`Expected finite open-set scores but received ${sorted[bad]}`);
  const n = sorted.length;
  // 1e-9 guards against n * (1 - rate) landing just above an integer in floating point (30 * 0.05).
  const index = Math.min(n - 1, Math.floor(n * (1 - acceptRate) + 1e-9));
  const threshold = sorted[index];
  return { threshold, acceptRate: acceptedFraction(sorted, threshold) };
}

/** Fraction of `scores` with `score >= threshold` (accepted as one of the trained artists). */
export function acceptedFraction(scores: ArrayLike<number>, threshold: number): number {
  let accepted = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i] >= threshold) accepted++;
  return scores.length === 0 ? NaN : accepted / scores.length;
}

/**
 * Area under the ROC curve of known vs unknown, with higher scores meaning "known": the probability
 * that a random known painting scores above a random unknown one, ties counting one half (the
 * Mann-Whitney U statistic divided by `n_known * n_unknown`). 0.5 is chance, 1 perfect separation.
 * Computed from ranks with average ranks for ties, O(n log n).
 *
 * @throws Error when either set is empty.
 * @example
 * auroc([3, 4], [1, 2]); // 1
 * auroc([1, 3], [2, 2]); // 0.5
 */
export function auroc(known: ArrayLike<number>, unknown: ArrayLike<number>): number {
  if (known.length === 0 || unknown.length === 0) {
    throw new Error(`Expected known and unknown scores but received ${known.length} known and ${unknown.length} unknown`);
  }
  const all = [...Array.from(known, (v) => ({ v, known: true })), ...Array.from(unknown, (v) => ({ v, known: false }))].sort((a, b) => a.v - b.v);
  let rankSumKnown = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j + 1 < all.length && all[j + 1].v === all[i].v) j++;
    const rank = (i + j) / 2 + 1; // average 1-based rank of the tie group
    for (let k = i; k <= j; k++) if (all[k].known) rankSumKnown += rank;
    i = j + 1;
  }
  const n1 = known.length;
  return (rankSumKnown - (n1 * (n1 + 1)) / 2) / (n1 * unknown.length);
}

/** Inputs of {@link fitOpenSet}. */
export interface FitOpenSetOptions {
  score: OpenSetScoreName;
  /** Graph output holding the score, for scores computed in the graph (see `OPEN_SET_SCORE_OUTPUT`). */
  output?: string;
  /** Scores of the validation paintings (all by trained artists), one per painting. */
  validationScores: ArrayLike<number>;
  /** Scores of the held-out test paintings, when there are any: gives `testAcceptRate`. */
  testScores?: ArrayLike<number>;
  /** Default {@link DEFAULT_ACCEPT_RATE}. */
  targetAcceptRate?: number;
  /** Leave-one-artist-out AUROC, where measured (scripts/open-set.ts). */
  auroc?: OpenSetCard['auroc'];
  parameters?: OpenSetCard['parameters'];
}

/**
 * The card's `openSet` entry: the threshold by {@link acceptThreshold} on the validation scores, and
 * the fractions of validation and test paintings it accepts (1 minus the test fraction is the
 * false-unknown rate on the held-out split).
 *
 * @throws Error as {@link acceptThreshold}; when a graph score has no `output`.
 */
export function fitOpenSet(options: FitOpenSetOptions): OpenSetCard {
  const target = options.targetAcceptRate ?? DEFAULT_ACCEPT_RATE;
  if (GRAPH_OPEN_SET_SCORES.includes(options.score) && !options.output) {
    throw new Error(`Expected output (the graph output holding the score) for the open-set score ${options.score} but received none`);
  }
  const { threshold, acceptRate } = acceptThreshold(options.validationScores, target);
  return {
    score: options.score,
    ...(options.output ? { output: options.output } : {}),
    threshold,
    targetAcceptRate: target,
    validationAcceptRate: acceptRate,
    validationImages: options.validationScores.length,
    ...(options.testScores && options.testScores.length > 0 ? { testAcceptRate: acceptedFraction(options.testScores, threshold) } : {}),
    ...(options.auroc ? { auroc: options.auroc } : {}),
    ...(options.parameters ? { parameters: options.parameters } : {}),
  };
}

/**
 * `[N,C]` rows of one of the final model's class outputs (temperature already folded in), as its ONNX
 * graph computes them: its `logits`, when they are the pre-softmax values of its output layer (the
 * score is then `energy`), or else its `probabilities` (the score is then `msp`).
 */
export type ClassOutputRows = { logits: ArrayLike<number>; probabilities?: undefined } | { probabilities: ArrayLike<number>; logits?: undefined };

/** Inputs of {@link fitOutputOpenSet}. */
export interface OutputOpenSetInput {
  /** Classes C (row width). */
  classes: number;
  /** The final model's outputs on the validation paintings: the threshold is chosen on them. */
  validation: ClassOutputRows;
  /** The same output on the held-out test paintings, when the split has any: gives `testAcceptRate`. */
  test?: ClassOutputRows;
  /** Default {@link DEFAULT_ACCEPT_RATE}. */
  targetAcceptRate?: number;
  /**
   * Leave-one-artist-out AUROC, only where it was measured for this route (`measuredOpenSetAuroc`
   * measured the `features` route; other methods leave it out rather than borrow it).
   */
  auroc?: OpenSetCard['auroc'];
}

/**
 * The card's `openSet` entry of a score read from the class outputs: `energy` (logsumexp of the
 * logits, Liu et al. 2020) when `validation` gives `logits`, `msp` (the largest probability, Hendrycks &
 * Gimpel 2017) when it gives `probabilities`. Scores are computed by `outputOpenSetScores`
 * (src/inference/open-set-score.ts), the function the runtime's `openSetVerdicts` applies to the ONNX
 * outputs, and the threshold by {@link fitOpenSet}. The graph needs no extra output for either.
 *
 * Pass `logits` only when they are the model's true pre-softmax values (a Dense softmax output layer,
 * temperature-scaled: `features`, `baseline`, `finetune`); an ensemble's `logits` are `log(mean p) / T`,
 * whose logsumexp is the constant 0 at T = 1, so it passes `probabilities`.
 *
 * @throws Error when `test` gives the other output than `validation`, a row count is not a whole number
 *   of `classes`-wide rows, or as {@link acceptThreshold} (no validation rows, a non-finite score).
 * @example
 * // logits [[0, ln 3], [0, 0]]: energy ln 4 and ln 2; at 50% the threshold is the larger one.
 * fitOutputOpenSet({ classes: 2, validation: { logits: [0, Math.log(3), 0, 0] }, targetAcceptRate: 0.5 });
 * // -> { score: 'energy', threshold: Math.log(4), validationAcceptRate: 0.5, validationImages: 2, ... }
 */
export function fitOutputOpenSet(input: OutputOpenSetInput): OpenSetCard {
  const score = input.validation.logits !== undefined ? 'energy' : 'msp';
  const scoresOf = (rows: ClassOutputRows, split: string) => {
    const data = score === 'energy' ? rows.logits : rows.probabilities;
    if (data === undefined) throw new Error(`Expected ${score === 'energy' ? 'logits' : 'probabilities'} for the ${split} split (as for validation: the ${score} score) but received ${score === 'energy' ? 'probabilities' : 'logits'}`);
    return outputOpenSetScores(score, data, input.classes);
  };
  return fitOpenSet({
    score,
    validationScores: scoresOf(input.validation, 'validation'),
    testScores: input.test ? scoresOf(input.test, 'test') : undefined,
    targetAcceptRate: input.targetAcceptRate,
    ...(input.auroc ? { auroc: input.auroc } : {}),
  });
}

/** One line for the training log: the score, the threshold and what it accepts. */
export function formatOpenSet(o: OpenSetCard): string {
  const pc = (v: number) => `${(100 * v).toFixed(1)}%`;
  return `open set: ${o.score} score, threshold ${o.threshold.toFixed(3)} (accepts ${pc(o.validationAcceptRate)} of validation paintings${o.testAcceptRate !== undefined ? `, ${pc(o.testAcceptRate)} of test paintings` : ''})`;
}

/**
 * The logits of a TF.js model whose last layer is a Dense softmax layer, as the exporters write them to
 * the `logits` output (the input of the graph's Softmax node: `h W + b` of that layer, with its weights
 * as they are now, i.e. after `applyTemperature`): `h` (the layer's input, in inference mode) from
 * `predict` run on a model sharing `model`'s layers, then `h W + b`.
 *
 * @param predict - runs the given model on the split (in batches, say) and returns its `[N,H]` rows.
 * @returns `[N,C]` logits, row-major.
 * @throws Error when the last layer is not a Dense layer with softmax activation, or `predict` returns
 *   rows of another width.
 */
export function denseSoftmaxLogits(model: tf.LayersModel, predict: (penultimate: tf.LayersModel) => Float32Array): Float32Array {
  const last = model.layers[model.layers.length - 1];
  const activation = (last.getConfig() as { activation?: unknown }).activation;
  if (last.getClassName() !== 'Dense' || activation !== 'softmax') {
    throw new Error(`Expected the last layer (${last.name}) to be Dense with softmax activation but it is ${last.getClassName()} (activation ${JSON.stringify(activation)})`);
  }
  // Inbound node 0 is the one `model` was built with (exporting may apply the layers again). The
  // container owns no weights and is not disposed: disposing it would dispose `model`'s layers.
  const penultimate = tf.model({ inputs: model.inputs, outputs: last.getInputAt(0) as tf.SymbolicTensor, name: `${model.name}_penultimate` });
  const h = predict(penultimate);
  const [kernel, bias] = last.getWeights();
  const hidden = kernel.shape[0];
  if (h.length % hidden !== 0) throw new Error(`Expected [N,${hidden}] values (the input of ${last.name}) from predict but received ${h.length}`);
  return tf.tidy(() => tf.add(tf.matMul(tf.tensor2d(h, [h.length / hidden, hidden]), kernel as tf.Tensor2D), bias).dataSync() as Float32Array);
}

/** Per-feature standardisation `(x - mean) * invStd`, `[D]` each (the head's, see training/head.ts). */
export interface FeatureStandardizer {
  mean: Float32Array;
  invStd: Float32Array;
}

/** Options of {@link fitTiedGaussian}. */
export interface TiedGaussianOptions {
  /** Principal components K kept of the standardised features (Lee et al. use the full space; D = 5,920 here exceeds the ~2,600 training paintings, so the covariance is estimated in a K-d subspace). */
  components: number;
  /** Add the all-class Gaussian term: relative Mahalanobis (Ren et al. 2021). */
  relative?: boolean;
  /** Seeds the random start of the randomized PCA. */
  seed?: number | string;
}

/** A fitted tied-covariance Gaussian: the whitening map and centres, and how much each covariance was shrunk. */
export interface TiedGaussian extends WhitenedCentres {
  /** Ledoit-Wolf shrinkage intensity of the within-class covariance, in [0, 1]. */
  shrinkage: number;
  /** Ledoit-Wolf shrinkage intensity of the all-class covariance (relative only). */
  backgroundShrinkage?: number;
}

/**
 * Fits the class-conditional Gaussians with one shared (tied) covariance on training features (Lee et
 * al. 2018), in the subspace of the top `components` principal axes of the within-class scatter of the
 * standardised features, with the covariance shrunk towards a multiple of the identity by Ledoit & Wolf
 * (2004, "A well-conditioned estimator for large-dimensional covariance matrices"). Returns it as a
 * whitening map `z = x W - b` (standardisation, projection and whitening folded into `W`, `[D,K]`) and
 * class centres in that space, so the squared Mahalanobis distance to class j is `||z - m_j||^2`
 * (what export/open-set-graph.ts computes in the graph). With `relative`, the all-class Gaussian
 * (Ren et al. 2021) is fitted the same way on the standardised features, centred on their mean.
 *
 * @param x - `[N,D]` raw features, row-major; `y` - N labels in [0, c).
 * @param standardizer - the per-feature standardisation (the head's, fitted on the same `x`).
 * @throws Error naming the parameter when sizes disagree, a class has no sample, or `components` is not
 *   an integer in [1, min(N, D)].
 */
export function fitTiedGaussian(x: Float32Array, y: number[], d: number, c: number, standardizer: FeatureStandardizer, options: TiedGaussianOptions): TiedGaussian {
  const n = y.length;
  if (x.length !== n * d) throw new Error(`Expected ${n * d} values ([${n},${d}]) for x but received ${x.length}`);
  if (standardizer.mean.length !== d || standardizer.invStd.length !== d) throw new Error(`Expected a standardizer of ${d} features but received ${standardizer.mean.length}`);
  const k = options.components;
  if (!Number.isInteger(k) || k < 1 || k > Math.min(n, d)) throw new Error(`Expected an integer in [1, ${Math.min(n, d)}] for components but received ${k}`);
  const counts = new Array<number>(c).fill(0);
  for (const label of y) {
    if (!Number.isInteger(label) || label < 0 || label >= c) throw new Error(`Expected labels in [0, ${c}) for y but received ${label}`);
    counts[label]++;
  }
  const empty = counts.findIndex((v) => v === 0);
  if (empty >= 0) throw new Error(`Expected training features of every class for y but class ${empty} has none`);

  let fitted: TiedGaussian | undefined;
  tf.tidy(() => {
    const z = tf.mul(tf.sub(tf.tensor2d(x, [n, d]), tf.tensor1d(standardizer.mean)), tf.tensor1d(standardizer.invStd)) as tf.Tensor2D;
    const oneHot = tf.oneHot(tf.tensor1d(y, 'int32'), c).toFloat() as tf.Tensor2D; // [N,C]
    const means = tf.div(tf.matMul(oneHot, z, true, false), tf.tensor2d(counts, [c, 1])) as tf.Tensor2D; // [C,D]
    const within = tf.sub(z, tf.matMul(oneHot, means)) as tf.Tensor2D;
    const w = whitening(within, k, `${options.seed ?? 42}`);
    const weightZ = w.map; // [D,K], applies to standardised features
    const fold = foldStandardizer(weightZ, standardizer);
    const centres = tf.matMul(means, weightZ);
    const result: TiedGaussian = { inputDim: d, dim: k, weight: fold.weight, bias: fold.bias, centres: centres.dataSync() as Float32Array, shrinkage: w.shrinkage };
    if (options.relative) {
      const globalMean = tf.mean(z, 0, true);
      const b = whitening(tf.sub(z, globalMean) as tf.Tensor2D, k, `${options.seed ?? 42}:background`);
      const bf = foldStandardizer(b.map, standardizer);
      const shift = tf.matMul(globalMean, b.map).dataSync();
      result.background = { dim: k, weight: bf.weight, bias: Float32Array.from(bf.bias, (v, i) => v + shift[i]) };
      result.backgroundShrinkage = b.shrinkage;
    }
    fitted = result;
  });
  return fitted!;
}

/** `z W` for standardised z = `(x - mean) * invStd` as `x W' - b'`: W' = diag(invStd) W, b' = (mean * invStd) W. */
function foldStandardizer(map: tf.Tensor2D, s: FeatureStandardizer): { weight: Float32Array; bias: Float32Array } {
  return tf.tidy(() => {
    const invStd = tf.tensor2d(s.invStd, [s.invStd.length, 1]);
    const weight = tf.mul(map, invStd);
    const bias = tf.matMul(tf.tensor2d(Float32Array.from(s.mean, (m, i) => m * s.invStd[i]), [1, s.mean.length]), map);
    return { weight: weight.dataSync() as Float32Array, bias: bias.dataSync() as Float32Array };
  });
}

/**
 * Whitening of centred samples `[N,D]` in their top-K principal subspace: `map` `[D,K]` such that
 * `||v map||^2 = v^T V Σ^{-1} V^T v`, where V holds the K axes and Σ is the Ledoit-Wolf-shrunk covariance
 * of the projections.
 */
function whitening(centred: tf.Tensor2D, k: number, seed: string): { map: tf.Tensor2D; shrinkage: number } {
  const [n] = centred.shape;
  const axes = principalAxes(centred, k, seed); // [D,K]
  const projected = tf.matMul(centred, axes); // [N,K]
  const { covariance, shrinkage } = ledoitWolf(projected.arraySync() as number[][], n);
  const eig = new EigenvalueDecomposition(covariance, { assumeSymmetric: true });
  const vectors = eig.eigenvectorMatrix; // columns
  const scale = eig.realEigenvalues.map((e) => 1 / Math.sqrt(Math.max(e, 1e-12)));
  const rotation = vectors.clone();
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) rotation.set(i, j, vectors.get(i, j) * scale[j]);
  return { map: tf.matMul(axes, tf.tensor2d(rotation.to2DArray())) as tf.Tensor2D, shrinkage };
}

/**
 * Ledoit-Wolf shrinkage of the covariance of zero-mean samples towards `mu I` (mu = mean variance), as
 * scikit-learn's `ledoit_wolf_shrinkage(X, assume_centered=True)` computes it:
 * `S = X^T X / n`; `delta = ||S - mu I||_F^2 / p`; `beta = min(delta, (sum_i ||x_i x_i^T - S||_F^2) / n^2 / p)`;
 * shrinkage `beta / delta`; covariance `(1 - shrinkage) S + shrinkage mu I`.
 *
 * @param samples - `n` rows of p values, already centred.
 */
export function ledoitWolf(samples: number[][], n = samples.length): { covariance: Matrix; shrinkage: number; mu: number } {
  const x = new Matrix(samples);
  const p = x.columns;
  const s = x.transpose().mmul(x).div(n);
  const mu = s.trace() / p;
  const x2 = x.clone().apply(function (this: Matrix, i: number, j: number) { this.set(i, j, this.get(i, j) ** 2); });
  // sum_i ||x_i x_i^T||_F^2 = sum_i ||x_i||^4 = sum of (X∘X)^T (X∘X).
  const fourth = x2.transpose().mmul(x2).sum();
  const sFrob = s.clone().apply(function (this: Matrix, i: number, j: number) { this.set(i, j, this.get(i, j) ** 2); }).sum();
  const delta = (sFrob - 2 * mu * s.trace() + p * mu * mu) / p;
  // (1/n^2) sum_i ||x_i x_i^T - S||_F^2 = (sum_i ||x_i||^4 / n - ||S||_F^2) / n
  const beta = Math.min(delta, (fourth / n - sFrob) / n / p);
  const shrinkage = delta > 0 ? Math.max(0, beta) / delta : 0;
  const covariance = s.mul(1 - shrinkage);
  for (let i = 0; i < p; i++) covariance.set(i, i, covariance.get(i, i) + shrinkage * mu);
  return { covariance, shrinkage, mu };
}

/**
 * The top-K principal axes (`[D,K]`, orthonormal columns, largest variance first) of centred samples
 * `[N,D]` by randomized subspace iteration (Halko, Martinsson & Tropp 2011, "Finding structure with
 * randomness", algorithms 4.4 and 5.1): K + 10 random directions, 2 power iterations with QR
 * re-orthonormalisation, then the exact eigenvectors of the small projected Gram matrix.
 */
export function principalAxes(centred: tf.Tensor2D, k: number, seed = '42'): tf.Tensor2D {
  const [n, d] = centred.shape;
  const l = Math.min(k + 10, n, d);
  const orth = (m: tf.Tensor2D): tf.Tensor2D => {
    const q = new QrDecomposition(new Matrix(m.arraySync() as number[][])).orthogonalMatrix;
    return tf.tensor2d(q.to2DArray());
  };
  const rng = seedrandom(`principal-axes:${seed}`);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  const omega = tf.tensor2d(Float32Array.from({ length: d * l }, gauss), [d, l]);
  let q = orth(tf.matMul(centred, omega));
  for (let it = 0; it < 2; it++) {
    const back = orth(tf.matMul(centred, q, true, false)); // [D,L]
    q = orth(tf.matMul(centred, back)); // [N,L]
  }
  const b = tf.matMul(q, centred, true, false); // [L,D]
  const gram = new Matrix(tf.matMul(b, b, false, true).arraySync() as number[][]);
  const eig = new EigenvalueDecomposition(gram, { assumeSymmetric: true });
  const order = eig.realEigenvalues.map((v, i) => [v, i] as const).sort((a, c) => c[0] - a[0]).slice(0, k);
  const u = tf.tensor2d(order.map(([, i]) => eig.eigenvectorMatrix.getColumn(i)), [k, l]).transpose(); // [L,K]
  const inv = tf.tensor1d(order.map(([v]) => 1 / Math.sqrt(Math.max(v, 1e-20))));
  return tf.mul(tf.matMul(b, u, true, false), inv) as tf.Tensor2D; // [D,K] = B^T U S^-1
}

/**
 * Open-set scores of raw features under a fitted {@link WhitenedCentres}, the same sum the graph does:
 * `-min_j ||x W - b - m_j||^2`, plus `||x W0 - b0||^2` for relative Mahalanobis. Higher = more known.
 *
 * @param x - `[N,D]` raw features.
 * @returns `[N]` scores.
 */
export function tiedGaussianScores(params: WhitenedCentres, x: Float32Array): Float32Array {
  const n = x.length / params.inputDim;
  return tf.tidy(() => {
    const xt = tf.tensor2d(x, [n, params.inputDim]);
    const z = tf.sub(tf.matMul(xt, tf.tensor2d(params.weight, [params.inputDim, params.dim])), tf.tensor1d(params.bias));
    const m = tf.tensor2d(params.centres, [params.centres.length / params.dim, params.dim]);
    const dist = tf.add(tf.sub(tf.sum(tf.square(z), 1, true), tf.mul(2, tf.matMul(z, m, false, true))), tf.sum(tf.square(m), 1));
    let score = tf.neg(tf.min(dist, 1));
    if (params.background) {
      const b = params.background;
      const z0 = tf.sub(tf.matMul(xt, tf.tensor2d(b.weight, [params.inputDim, b.dim])), tf.tensor1d(b.bias));
      score = tf.add(score, tf.sum(tf.square(z0), 1));
    }
    return score.dataSync() as Float32Array;
  });
}

/**
 * Pre-softmax outputs of a trained head (what the exported graph's `logits` output holds, temperature
 * included once it is folded in): the standardisation, every layer but the last in inference mode
 * (dropout off, batch normalisation on moving statistics), then `h W + b` of the last Dense.
 *
 * @param features - `[N,D]` raw features. @returns `[N,C]` logits, row-major.
 */
export function headLogits(head: TrainedHead, features: Float32Array): Float32Array {
  const d = head.featureDim;
  const n = features.length / d;
  return tf.tidy(() => {
    const { mean, invStd } = head.standardizer;
    let h: tf.Tensor = tf.mul(tf.sub(tf.tensor2d(features, [n, d]), tf.tensor1d(mean)), tf.tensor1d(invStd));
    const stack = head.model.layers;
    for (const layer of stack.slice(0, -1)) h = layer.apply(h, { training: false }) as tf.Tensor;
    const [kernel, bias] = stack[stack.length - 1].getWeights();
    return tf.add(tf.matMul(h as tf.Tensor2D, kernel as tf.Tensor2D), bias).dataSync() as Float32Array;
  });
}

/** Scores a trained model can ship (kNN is measured, not shipped: its bank of training features would multiply the model's size). */
export type ShippableOpenSetScore = Exclude<OpenSetScoreName, 'knn'>;

/** Inputs of {@link fitHeadOpenSet}. */
export interface HeadOpenSetInput {
  /** The trained head, temperature already applied (its logits are the exported ones). */
  head: TrainedHead;
  /** Features the head was trained on (the Gaussians are fitted on them). */
  train: FeatureSet;
  /** Validation features: the threshold is chosen on them. */
  validation: FeatureSet;
  /** Held-out test features, when the split has any: gives `testAcceptRate`. */
  test?: FeatureSet;
  /** Default {@link DEFAULT_OPEN_SET_SCORE}. */
  score?: ShippableOpenSetScore;
  /** Principal components of the Gaussian scores; default 64 (as measured in docs/OPEN_SET.md). */
  components?: number;
  /** Default {@link DEFAULT_ACCEPT_RATE}. */
  targetAcceptRate?: number;
  /** Leave-one-artist-out AUROC of this route, if the caller has it (docs/open-set.json). */
  auroc?: OpenSetCard['auroc'];
}

/**
 * Fits the open-set score of a trained model: the card's `openSet` entry (threshold accepting
 * `targetAcceptRate` of the validation paintings) and, for the Gaussian scores, the graph change that
 * adds the `open_set_score` output. Apply `addToModel` to the spliced model before writing it, and put
 * `openSet` in the card before splicing (the card is the model's metadata).
 *
 * @example
 * const fitted = fitHeadOpenSet({ head, train: trainSet, validation: valSet, test: testSet });
 * card.openSet = fitted.openSet;
 * const model = fitted.addToModel(spliceHead(featureModel, headGraph, card));
 */
export function fitHeadOpenSet(input: HeadOpenSetInput): { openSet: OpenSetCard; addToModel: (model: ModelProto) => ModelProto } {
  const score = input.score ?? DEFAULT_OPEN_SET_SCORE;
  const { head } = input;
  const c = head.classes;
  const common = { targetAcceptRate: input.targetAcceptRate, ...(input.auroc ? { auroc: input.auroc } : {}) };
  if (score === 'msp' || score === 'energy') {
    // What the exported graph outputs: `logits`, and `probabilities` = Softmax of them.
    const rows = (set: FeatureSet): ClassOutputRows => {
      const logits = headLogits(head, set.x);
      return score === 'energy' ? { logits } : { probabilities: softmaxRows(logits, c) };
    };
    const openSet = fitOutputOpenSet({ classes: c, validation: rows(input.validation), test: input.test ? rows(input.test) : undefined, ...common });
    return { openSet, addToModel: (model) => model };
  }
  const components = input.components ?? 64;
  const g = fitTiedGaussian(input.train.x, input.train.y, head.featureDim, c, head.standardizer, { components, relative: score === 'relative-mahalanobis' });
  const params: WhitenedCentres = { inputDim: g.inputDim, dim: g.dim, weight: g.weight, bias: g.bias, centres: g.centres, ...(g.background ? { background: g.background } : {}) };
  const openSet = fitOpenSet({
    score,
    output: OPEN_SET_SCORE_OUTPUT,
    validationScores: tiedGaussianScores(params, input.validation.x),
    testScores: input.test ? tiedGaussianScores(params, input.test.x) : undefined,
    parameters: { components, shrinkage: g.shrinkage, ...(g.backgroundShrinkage !== undefined ? { backgroundShrinkage: g.backgroundShrinkage } : {}) },
    ...common,
  });
  return { openSet, addToModel: (model) => withOpenSetScore(model, params) };
}
