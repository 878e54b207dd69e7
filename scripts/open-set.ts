/**
 * Measures how well artist-id can tell "none of the trained artists" (open set), by leave-one-artist-out
 * over the 11 artists of ../shared/paintings, chooses the score on validation paintings, and writes
 * docs/OPEN_SET.md (and docs/open-set.json, the numbers).
 *
 * For each artist A: train the style-statistics logistic regression (the style route with `--solver`: standardise,
 * softmax; Adam with dropout 0.2, or L-BFGS; temperature-scaled on validation as training does) and the feature Gaussians on
 * the other 10 (seeded 240/30/30 split); then
 * - validation AUROC: the 10 artists' validation paintings (known) against A's validation paintings (unknown);
 * - test AUROC: the 10 artists' test paintings (known) against A's test paintings (unknown);
 * - at the threshold that accepts 95% of the 10 artists' validation paintings (training/open-set.ts):
 *   the false-unknown rate (known test paintings called unknown) and the unknown-detection rate (A's
 *   test paintings called unknown).
 * A's paintings never enter training, the threshold, or the choice of the score; the score is chosen by
 * mean validation AUROC, and its test AUROC is reported beside the others'.
 *
 * Scores (higher = more like the trained artists):
 * - `msp`: maximum softmax probability (Hendrycks & Gimpel 2017);
 * - `energy`: logsumexp of the logits (Liu et al. 2020);
 * - `mahalanobis-K`: tied-covariance Mahalanobis to the nearest class mean (Lee et al. 2018), in the top-K
 *   principal subspace of the standardised features with Ledoit-Wolf shrinkage;
 * - `relative-mahalanobis-K`: the same minus the distance to the all-class Gaussian (Ren et al. 2021);
 * - `energy+mahalanobis-K`: the sum of the two, each standardised on the known validation paintings (measured only:
 *   no model ships it);
 * - `knn-k`: cosine similarity to the k-th nearest training painting, standardised then L2-normalised
 *   features (Sun et al. 2022).
 *
 *   npx tsx scripts/open-set.ts [--data ../shared/paintings] [--seed 42] [--solver adam|lbfgs]
 *   npx tsx scripts/open-set.ts --render      # rewrite docs/OPEN_SET.md from docs/open-set.json only
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { MOBILENETV2_STYLE_LAYERS, buildStyleFeatureModel, styleFeatureDim } from '../export/style.js';
import { outputOpenSetScores } from '../src/inference/open-set-score.js';
import { createSession } from '../src/inference/session.js';
import { decodeModel, encodeModel } from '../src/onnx/model.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { BASE_WEIGHTS, resolveBaseWeights } from '../src/weights/base-weights.js';
import { initTrainingBackend } from '../training/backend.js';
import { fitTemperature, softmaxRows } from '../training/calibration.js';
import { loadDataset, type Sample } from '../training/dataset.js';
import { extractFeatures, featureModelKey } from '../training/features.js';
import { DEFAULT_HEAD, SOLVER_HEAD_DEFAULTS, trainHead, type FeatureSet, type HeadConfig } from '../training/head.js';
import { ROUTE_HEAD_DEFAULTS, ROUTE_SOLVER } from '../training/train.js';
import { HEAD_SOLVERS, type HeadSolver } from '../src/model/card.js';
import { acceptThreshold, acceptedFraction, auroc, fitTiedGaussian, headLogits, summarizeOpenSet, tiedGaussianScores, type OpenSetFold, type OpenSetMeasurements } from '../training/open-set.js';

const { values } = parseArgs({ options: { data: { type: 'string', default: resolve(PACKAGE_ROOT, '../shared/paintings') }, seed: { type: 'string', default: '42' }, solver: { type: 'string', default: ROUTE_SOLVER.style }, render: { type: 'boolean', default: false } } });
const JSON_PATH = join(PACKAGE_ROOT, 'docs', 'open-set.json');
const ACCEPT = 0.95;

type Scores = Record<string, number[]>;
type Fold = OpenSetFold;
type Measured = OpenSetMeasurements;

const measured: Measured = values.render ? JSON.parse(await readFile(JSON_PATH, 'utf8')) : await measure();
await mkdir(join(PACKAGE_ROOT, 'docs'), { recursive: true });
if (!values.render) await writeFile(JSON_PATH, `${JSON.stringify(measured, null, 1)}\n`);
await writeFile(join(PACKAGE_ROOT, 'docs', 'OPEN_SET.md'), render(measured));
process.stderr.write(`wrote docs/OPEN_SET.md${values.render ? '' : ' and docs/open-set.json'}\n`);

async function measure(): Promise<Measured> {
const seed = Number(values.seed);
const backend = await initTrainingBackend();
const weights = await resolveBaseWeights('mobilenetv2-12-int8', { weightsDir: process.env.ARTIST_ID_WEIGHTS_DIR ?? resolve(PACKAGE_ROOT, '../shared/weights') });
const layers = MOBILENETV2_STYLE_LAYERS;
const d = styleFeatureDim(layers);
const featureBytes = encodeModel(buildStyleFeatureModel(decodeModel(await readFile(weights.path)), BASE_WEIGHTS['mobilenetv2-12-int8'], DEFAULT_PREPROCESS, layers));
const { session } = await createSession(featureBytes, { provider: 'cpu' });
const extractor = { session, modelKey: featureModelKey(featureBytes), spec: DEFAULT_PREPROCESS, featureDim: d };
const all = await loadDataset(values.data!, { seed });
const featuresOf = async (s: Sample[]) => (await extractFeatures(extractor, s.map((q) => q.path))).features;
const x = { train: await featuresOf(all.train), validation: await featuresOf(all.validation), test: await featuresOf(all.test) };

const solver = values.solver as HeadSolver;
if (!HEAD_SOLVERS.includes(solver)) throw new Error(`Expected --solver ${HEAD_SOLVERS.join(' or ')} but received ${JSON.stringify(values.solver)}`);
/** The head settings of the style route (training/train.ts ROUTE_HEAD_DEFAULTS.style, then SOLVER_HEAD_DEFAULTS). */
const HEAD: HeadConfig = { ...DEFAULT_HEAD, ...ROUTE_HEAD_DEFAULTS.style, ...SOLVER_HEAD_DEFAULTS[solver], solver, seed };
const COMPONENTS = [64];
const KNN = [1, 10];

/** Rows of `samples` (with their matrix) whose label passes `keep`, labels remapped by `map`. */
function subset(samples: Sample[], matrix: Float32Array, keep: (label: number) => boolean, map: (label: number) => number): FeatureSet {
  const idx = samples.map((s, i) => [s.label, i] as const).filter(([l]) => keep(l));
  const out = new Float32Array(idx.length * d);
  idx.forEach(([, r], i) => out.set(matrix.subarray(r * d, (r + 1) * d), i * d));
  return { x: out, y: idx.map(([l]) => map(l)) };
}

/** Row-wise max of softmax(logits / T) and logsumexp(logits / T), as the runtime computes them (src/inference/open-set-score.ts). */
function logitScores(logits: Float32Array, c: number, t: number): { msp: number[]; energy: number[] } {
  const scaled = logits.map((v) => v / t);
  return { msp: Array.from(outputOpenSetScores('msp', softmaxRows(scaled, c), c)), energy: Array.from(outputOpenSetScores('energy', scaled, c)) };
}

/**
 * A sum of scores, each standardised by its mean and standard deviation on the known validation paintings,
 * so that neither dominates by its scale: a measured combination of the logit-based and the feature-based view.
 */
function combinedScores(scores: Record<string, Scores>, parts: string[], sets: readonly string[]): void {
  const name = parts.join('+');
  for (const part of parts) if (!scores.valKnown[part]) return;
  const stats = parts.map((p) => {
    const v = scores.valKnown[p];
    const m = v.reduce((a, b) => a + b, 0) / v.length;
    return { m, s: Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length) || 1 };
  });
  for (const set of sets) scores[set][name] = scores[set][parts[0]].map((_, i) => parts.reduce((sum, p, j) => sum + (scores[set][p][i] - stats[j].m) / stats[j].s, 0));
}

/** kNN scores: cosine similarity of standardised, L2-normalised features to the k-th nearest training row. */
function knnScores(bank: tf.Tensor2D, standardize: (f: Float32Array) => tf.Tensor2D, f: Float32Array, ks: number[]): number[][] {
  return tf.tidy(() => {
    const q = standardize(f);
    const unit = tf.div(q, tf.norm(q, 2, 1, true));
    const sims = tf.matMul(unit, bank, false, true);
    const top = tf.topk(sims, Math.max(...ks)).values.arraySync() as number[][];
    return ks.map((k) => top.map((row) => row[k - 1]));
  });
}

const folds: Fold[] = [];
const started = performance.now();
for (const [held, artist] of all.classes.entries()) {
  const map = (l: number) => (l > held ? l - 1 : l);
  const known = (l: number) => l !== held;
  const sets = {
    train: subset(all.train, x.train, known, map),
    valKnown: subset(all.validation, x.validation, known, map),
    valUnknown: subset(all.validation, x.validation, (l) => l === held, () => 0),
    testKnown: subset(all.test, x.test, known, map),
    testUnknown: subset(all.test, x.test, (l) => l === held, () => 0),
  };
  const evalSets = ['valKnown', 'valUnknown', 'testKnown', 'testUnknown'] as const;
  const c = all.classes.length - 1;
  const head = await trainHead(sets.train, sets.valKnown, d, c, { ...HEAD, patience: 10 });
  const temperature = fitTemperature(headLogits(head, sets.valKnown.x), sets.valKnown.y, c);
  const scores = Object.fromEntries(evalSets.map((s) => [s, {} as Scores])) as Record<(typeof evalSets)[number], Scores>;
  for (const s of evalSets) Object.assign(scores[s], logitScores(headLogits(head, sets[s].x), c, temperature));
  const shrinkage: Record<string, number> = {};
  for (const k of COMPONENTS) {
    // One fit gives both: the relative score adds the background term to the plain one.
    const g = fitTiedGaussian(sets.train.x, sets.train.y, d, c, head.standardizer, { components: k, relative: true, seed: String(seed) });
    shrinkage[`mahalanobis-${k}`] = g.shrinkage;
    for (const s of evalSets) {
      scores[s][`mahalanobis-${k}`] = Array.from(tiedGaussianScores({ ...g, background: undefined }, sets[s].x));
      scores[s][`relative-mahalanobis-${k}`] = Array.from(tiedGaussianScores(g, sets[s].x));
    }
  }
  tf.tidy(() => {
    const { mean, invStd } = head.standardizer;
    const standardize = (f: Float32Array) => tf.mul(tf.sub(tf.tensor2d(f, [f.length / d, d]), tf.tensor1d(mean)), tf.tensor1d(invStd)) as tf.Tensor2D;
    const train = standardize(sets.train.x);
    const bank = tf.div(train, tf.norm(train, 2, 1, true)) as tf.Tensor2D;
    for (const s of evalSets) knnScores(bank, standardize, sets[s].x, KNN).forEach((v, i) => (scores[s][`knn-${KNN[i]}`] = v));
  });
  head.model.dispose();
  combinedScores(scores, ['energy', `mahalanobis-${COMPONENTS[0]}`], evalSets);
  const names = Object.keys(scores.valKnown);
  const fold: Fold = { artist, scores: names, validationAuroc: {}, testAuroc: {}, falseUnknown: {}, detected: {}, shrinkage };
  for (const name of names) {
    fold.validationAuroc[name] = auroc(scores.valKnown[name], scores.valUnknown[name]);
    fold.testAuroc[name] = auroc(scores.testKnown[name], scores.testUnknown[name]);
    const { threshold } = acceptThreshold(scores.valKnown[name], ACCEPT);
    fold.falseUnknown[name] = 1 - acceptedFraction(scores.testKnown[name], threshold);
    fold.detected[name] = 1 - acceptedFraction(scores.testUnknown[name], threshold);
  }
  folds.push(fold);
  process.stderr.write(`${artist} (${((performance.now() - started) / 1000).toFixed(0)} s): ${names.map((n) => `${n} ${fold.validationAuroc[n].toFixed(3)}/${fold.testAuroc[n].toFixed(3)}`).join(', ')}\n`);
}
return { seed, solver, backend: backend.name, acceptRate: ACCEPT, artists: all.classes.length, components: COMPONENTS, folds };
}

/** docs/OPEN_SET.md from the measurements. */
function render(m: Measured): string {
const { folds, seed } = m;

const mean = (get: (f: Fold) => number) => folds.reduce((s, f) => s + get(f), 0) / folds.length;
const { scores: summary, chosen, best: bestMeasured } = summarizeOpenSet(m);
const names = folds[0].scores;
const f3 = (v: number) => v.toFixed(3);
const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
const bold = (name: string, text: string) => (name === chosen.name ? `**${text}**` : text);

return `# Open set: a painting by none of the trained artists

Generated by \`npx tsx scripts/open-set.ts --seed ${seed} --solver ${m.solver ?? 'adam'}\` (TF.js backend ${m.backend}); do not edit by hand.
Numbers: [open-set.json](open-set.json).

**Protocol.** Leave-one-artist-out over the ${m.artists} artists of \`../shared/paintings\` (split 240/30/30 per
artist, seed ${seed}). For each artist A, everything is fitted on the other ${c10()} artists' training paintings: the
style-statistics logistic regression (fitted by ${m.solver === 'lbfgs' ? 'L-BFGS to convergence' : 'Adam, best epoch on validation'}, temperature-scaled on their validation paintings) and the
class Gaussians. A's paintings are used only as "unknown" examples. Scores are "higher = more like the trained
artists"; AUROC is the probability that a known painting scores above an unknown one (0.5 chance, 1.0 perfect).
- validation AUROC: the ${c10()} artists' 300 validation paintings vs A's 30 validation paintings. **The score is
  chosen on this column** (mean over the ${m.artists} folds).
- test AUROC: the ${c10()} artists' 300 test paintings vs A's 30 test paintings.
- threshold rule (what a model ships): the largest score that still accepts at least ${pct(ACCEPT)} of the known
  artists' validation paintings. At it: the false-unknown rate (known test paintings answered \`unknown\`) and
  the share of A's test paintings answered \`unknown\`.

Scores: \`msp\` maximum softmax probability (Hendrycks & Gimpel 2017); \`energy\` logsumexp of the logits (Liu
et al. 2020); \`mahalanobis-K\` distance to the nearest class mean under a shared covariance (Lee et al. 2018),
in the top-K principal subspace of the standardised 5,920 features, covariance shrunk by Ledoit-Wolf
(mean intensity ${m.components.map((k) => `K=${k}: ${f3(mean((f) => f.shrinkage[`mahalanobis-${k}`]))}`).join(', ')});
\`relative-mahalanobis-K\` the same minus the distance to the all-class Gaussian (Ren et al. 2021); \`knn-k\` cosine
similarity to the k-th nearest training painting of standardised, L2-normalised features (Sun et al. 2022);
\`energy+mahalanobis-K\` the sum of the two, each standardised on the known validation paintings. kNN and the sum are
measured, not shipped (kNN would carry the training features in the model; the sum needs both in the runtime).

## Mean over the ${m.artists} left-out artists

| score | validation AUROC | test AUROC | false-unknown rate (test) | left-out artist called unknown (test) |
|---|---|---|---|---|
${summary.map((s) => `| ${bold(s.name, s.name)} | ${bold(s.name, f3(s.validationAuroc))} | ${bold(s.name, f3(s.testAuroc))} | ${pct(s.falseUnknown)} | ${pct(s.detected)} |`).join('\n')}

Chosen on validation among the scores a model can carry (msp, energy, the Mahalanobis scores): **${chosen.name}** (validation AUROC ${f3(chosen.validationAuroc)}, test AUROC ${f3(chosen.testAuroc)}).${bestMeasured.name !== chosen.name ? ` The best measured on validation is ${bestMeasured.name} (${f3(bestMeasured.validationAuroc)}, test ${f3(bestMeasured.testAuroc)}), which no model ships.` : ''}
Target: AUROC >= 0.90. ${chosen.testAuroc >= 0.9 ? 'Reached.' : `Not reached: ${f3(chosen.testAuroc)} on test.`}

## Test AUROC per left-out artist

| left-out artist | ${names.join(' | ')} |
|---|${names.map(() => '---').join('|')}|
${folds.map((f) => `| ${f.artist} | ${names.map((n) => bold(n, f3(f.testAuroc[n]))).join(' | ')} |`).join('\n')}

## Validation AUROC per left-out artist

| left-out artist | ${names.join(' | ')} |
|---|${names.map(() => '---').join('|')}|
${folds.map((f) => `| ${f.artist} | ${names.map((n) => bold(n, f3(f.validationAuroc[n]))).join(' | ')} |`).join('\n')}

## Reading

${reading()}

## What a model ships

Training (the \`features\` route) fits the score chosen here (\`DEFAULT_OPEN_SET_SCORE\` in training/open-set.ts) on
the model's own data and stores it in the card (\`openSet\`: score, threshold, \`targetAcceptRate\`,
\`validationAcceptRate\`, \`testAcceptRate\`);
\`baseline\` and \`finetune\` models fit energy on their own logits, \`ensemble\` models the maximum softmax
probability (their \`logits\` are log(mean member probability) / T, whose logsumexp is constant at T = 1). The
AUROC measured here goes only into the cards of the route it was measured for (\`features\` with style statistics, softmax regression, no TTA, label smoothing or mixup).
Threshold rule: the largest score value that still accepts at least ${pct(m.acceptRate)} of the validation paintings
(all by trained artists); \`1 - testAcceptRate\` is that model's false-unknown rate on its held-out test split.
Maximum softmax probability and energy are computed from the \`probabilities\`/\`logits\` outputs; the Gaussian
scores are one more graph output, \`open_set_score\` \`[N] float32\` (export/open-set-graph.ts), so serving
needs nothing but \`model.onnx\`. \`classify\` rows, the HTTP API (\`unknown\`, \`open_set_score\`; KServe outputs
\`open_set_score\` FP32 and \`unknown\` BOOL) and the web page then say \`unknown\` below the threshold and still give
the top-k artists. Models without \`openSet\` answer as before.
`;

function c10(): number {
  return m.artists - 1;
}

function reading(): string {
  const best = summary.reduce((b, s) => (s.testAuroc > b.testAuroc ? s : b));
  return [
    `Among eleven painters of one movement, a painting by a twelfth often looks like one of them to these features. The best`,
    `score on validation, ${chosen.name}, separates known from unknown with AUROC ${f3(chosen.testAuroc)} on the test paintings`,
    `(${best.name === chosen.name ? 'also the best on test' : `the best on test is ${best.name} at ${f3(best.testAuroc)}`}). At the threshold that accepts ${pct(ACCEPT)} of`,
    `known validation paintings, ${pct(chosen.falseUnknown)} of known test paintings are answered \`unknown\` and ${pct(chosen.detected)} of the`,
    `left-out artists' test paintings are. A model trained with an \`openSet\` entry in its card answers \`unknown\` (with`,
    `its top-k artists and the score) below that threshold; read \`unknown: false\` as "not ruled out", not as "certainly one`,
    `of the trained artists".`,
  ].join('\n');
}
}
