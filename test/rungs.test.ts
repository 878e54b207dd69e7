/**
 * Every training rung trains a tiny real model (2 artists, 4/2/2 paintings each from ../shared/paintings,
 * 1-2 epochs, the baseline at 48x48) through `train({ method })`, and its exported `model.onnx`:
 * loads in onnxruntime with the outputs its card names (`probabilities`, `logits` `[N,C]`, `features`
 * `[N,D]`), says its method in the card and in MODEL_CARD.md, passed its export parity check on held-out
 * images, and classifies a real painting through src/inference (probabilities summing to 1, in card order).
 * Every rung's card carries an open-set threshold (`energy` of the logits; `msp` for the ensemble) that the
 * runtime reproduces from the ONNX outputs on the validation paintings, and classify rows add `unknown` and
 * `open_set_score`. Accuracy is not asserted here (too few images to mean anything): docs/RESULTS.md measures it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { classifyArchive } from '../src/archive/run.js';
import { Classifier } from '../src/inference/classifier.js';
import { createSession } from '../src/inference/session.js';
import { readModelCard } from '../src/model/read-card.js';
import { decodeModel } from '../src/onnx/model.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { initTrainingBackend } from '../training/backend.js';
import { loadDataset } from '../training/dataset.js';
import { DEFAULT_OPEN_SET_SCORE, acceptThreshold, measuredOpenSetAuroc } from '../training/open-set.js';
import { LR_SCHEDULES } from '../training/schedules.js';
import { BASELINE_DEFAULT_INPUT_SIZE } from '../training/train-baseline.js';
import { ROUTE_SOLVER, TRAIN_METHODS, train, type TrainMethod, type TrainRequest } from '../training/train.js';
import { PAINTINGS, WEIGHTS } from './fixtures.js';

const ARTISTS = ['alfred-sisley', 'claude-monet'];
const SPLIT: [number, number, number] = [4, 2, 2];
const SEED = 5;
const CLI = join(PACKAGE_ROOT, 'src', 'cli', 'main.ts');
let tmp: string;
const models: Partial<Record<TrainMethod, string>> = {};
const quiet = () => {};
/** The open-set score each method ships: energy where the logits are a Dense layer's, msp for the ensemble's log-mean "logits". */
const OPEN_SET_SCORE: Record<TrainMethod, string> = { features: DEFAULT_OPEN_SET_SCORE, baseline: 'energy', finetune: 'energy', ensemble: 'msp' };

before(async () => {
  tmp = await mkdtemp(join(os.tmpdir(), 'artist-id-rungs-'));
  process.env.ARTIST_ID_CACHE ??= join(tmp, 'cache');
  process.env.ARTIST_ID_WEIGHTS_DIR ??= WEIGHTS;
  assert.equal((await initTrainingBackend('wasm')).name, 'wasm');
});

after(() => rm(tmp, { recursive: true, force: true }));

/** Trains one rung and checks what every rung's model must satisfy; returns its folder. */
async function trainAndCheck(request: TrainRequest & { method: TrainMethod }): Promise<string> {
  const t0 = performance.now();
  const result = await train(request);
  const seconds = (performance.now() - t0) / 1000;
  const out = request.out;
  const card = await readModelCard(join(out, 'model.onnx'));
  assert.equal(card.training.method, request.method);
  assert.deepEqual(card.classes, ARTISTS);
  assert.equal(result.card.training.method, request.method);
  assert.ok(card.parity.images > 0, `parity ran on ${card.parity.images} images`);
  assert.ok(card.parity.maxAbsDiff <= 1e-4, `parity ${card.parity.maxAbsDiff} <= 1e-4`);
  assert.match(await readFile(join(out, 'MODEL_CARD.md'), 'utf8'), new RegExp(`Method: \`${request.method}\``));

  // The graph's outputs are the ones the card names, with the card's shapes.
  const bytes = await readFile(join(out, 'model.onnx'));
  const { session } = await createSession(bytes, { provider: 'cpu' });
  assert.deepEqual([...session.inputNames], [card.input]);
  assert.deepEqual([...session.outputNames].sort(), [card.outputs.features, card.outputs.logits, card.outputs.probabilities].sort());
  const dims = (name: string) => decodeModel(bytes).graph.output.find((o) => o.name === name)!.type!.tensor_type!.shape!.dim!.map((d) => d.dim_value ?? d.dim_param);
  assert.deepEqual(dims(card.outputs.features).map(Number).slice(1), [card.base.featureDim]);
  await session.release();

  // An open-set threshold fitted on validation; the features route alone has a measured AUROC (docs/open-set.json).
  const openSet = card.openSet;
  assert.ok(openSet, `${request.method} card has openSet`);
  assert.equal(openSet.score, OPEN_SET_SCORE[request.method]);
  assert.equal(openSet.output, undefined, 'msp and energy are read from probabilities/logits');
  assert.ok(Number.isFinite(openSet.threshold), `finite threshold ${openSet.threshold}`);
  assert.ok(openSet.validationAcceptRate >= 0.9, `validation accept rate ${openSet.validationAcceptRate}`);
  assert.equal(openSet.validationImages, SPLIT[1] * ARTISTS.length);
  assert.equal(typeof openSet.testAcceptRate, 'number');
  if (request.method !== 'features') assert.equal(openSet.auroc, undefined, 'no AUROC borrowed from the features route');

  // Classifies a held-out painting through the runtime, with the card's preprocessing; the validation
  // paintings in the same batch give the scores the threshold was chosen on, now from the ONNX outputs.
  const dataset = await loadDataset(PAINTINGS, { artists: ARTISTS, split: SPLIT, seed: SEED });
  const classifier = await Classifier.load(out, { provider: 'cpu' });
  try {
    const paths = [dataset.test[0].path, ...dataset.validation.map((s) => s.path)];
    const images = await Promise.all(paths.map(async (p) => decodeImage(await readFile(p), classifier.card.preprocessing)));
    const { probabilities, openSet: verdicts } = await classifier.run(images);
    assert.equal(probabilities.length, paths.length);
    assert.equal(probabilities[0].length, ARTISTS.length);
    assert.ok(Math.abs(probabilities[0].reduce((a, b) => a + b, 0) - 1) < 1e-5, `probabilities sum to 1: ${probabilities[0]}`);
    assert.ok(verdicts && verdicts.length === paths.length, 'one open-set verdict per image');
    assert.equal(typeof verdicts[0].unknown, 'boolean');
    const runtime = acceptThreshold(verdicts.slice(1).map((v) => v.score), openSet.targetAcceptRate).threshold;
    assert.ok(Math.abs(runtime - openSet.threshold) <= 1e-4 * Math.max(1, Math.abs(openSet.threshold)), `threshold from the runtime's validation scores ${runtime} vs the card's ${openSet.threshold}`);

    const rows = join(tmp, `${request.method}-${card.name}.jsonl`);
    await classifyArchive({ inputs: [dataset.test[0].path], classifier, out: rows, progress: false });
    const row = JSON.parse(await readFile(rows, 'utf8'));
    assert.equal(typeof row.unknown, 'boolean');
    assert.equal(typeof row.open_set_score, 'number');
    assert.equal(row.unknown, verdicts[0].unknown);
  } finally {
    await classifier.dispose();
  }
  console.log(`${request.method}: ${seconds.toFixed(1)} s, test ${card.metrics.test?.accuracy}, parity ${card.parity.maxAbsDiff.toExponential(2)}, open set ${openSet.score} >= ${openSet.threshold.toFixed(3)}`);
  return out;
}

const split = { data: PAINTINGS, artists: ARTISTS, split: SPLIT, seed: SEED, parityImages: 4, log: quiet };

test('baseline: the CNN from scratch at 48x48, x/255 once (in the graph prefix the card describes)', async () => {
  const out = await trainAndCheck({ method: 'baseline', out: join(tmp, 'baseline'), ...split, inputSize: 48, epochs: 2 });
  models.baseline = out;
  const card = await readModelCard(join(out, 'model.onnx'));
  assert.deepEqual([card.preprocessing.width, card.preprocessing.height], [48, 48]);
  assert.deepEqual([card.preprocessing.mean, card.preprocessing.std], [[0, 0, 0], [1, 1, 1]]);
  assert.deepEqual(card.base, { name: 'none', sha256: '', features: 'learned', featureDim: 512 });
  // No second rescaling inside the network: the only multiplication before the first Conv is the prefix's.
  const graph = decodeModel(await readFile(join(out, 'model.onnx'))).graph;
  const firstConv = graph.node.findIndex((n) => n.op_type === 'Conv');
  assert.deepEqual(graph.node.slice(0, firstConv).filter((n) => n.op_type === 'Mul').map((n) => n.name), ['artist_id/norm_mul']);
});

test('features: head on frozen bottleneck features', async () => {
  models.features = await trainAndCheck({ method: 'features', out: join(tmp, 'features'), ...split, features: 'pooled', head: { epochs: 2 } });
});

test('finetune: the top of the base trained with the head', async () => {
  models.finetune = await trainAndCheck({ method: 'finetune', out: join(tmp, 'finetune'), ...split, views: 1, epochs: 1, trainBlocks: 0, head: { epochs: 2 } });
});

test('ensemble: soft vote of two feature-route models', async () => {
  // Members must share preprocessing and opset: the pooled model above and a style-statistics one.
  const style = await trainAndCheck({ method: 'features', out: join(tmp, 'features-style'), ...split, features: 'style' }); // L-BFGS (the style default) has no epochs to cap
  assert.ok(models.features, 'the features test ran first');
  // The leave-one-artist-out AUROC (docs/open-set.json) was measured for the style route on the 11 artists of
  // ../shared/paintings: only cards of that route and those artists carry it, not these 2-artist models.
  const aurocOf = async (folder: string) => (await readModelCard(join(folder, 'model.onnx'))).openSet?.auroc;
  assert.equal(await aurocOf(models.features), undefined, 'pooled features: no borrowed AUROC');
  assert.equal(await aurocOf(style), undefined, 'style route on 2 artists: no AUROC measured on 11');
  const eleven = (await loadDataset(PAINTINGS, { split: SPLIT, seed: SEED })).classes;
  assert.equal(typeof (await measuredOpenSetAuroc(DEFAULT_OPEN_SET_SCORE, ROUTE_SOLVER.style, eleven))?.test, 'number', 'style route on the 11 measured artists: the AUROC');
  assert.equal(await measuredOpenSetAuroc(DEFAULT_OPEN_SET_SCORE, ROUTE_SOLVER.style === 'lbfgs' ? 'adam' : 'lbfgs', eleven), undefined, 'another solver: none');
  await trainAndCheck({ method: 'ensemble', out: join(tmp, 'ensemble'), members: [models.features, style], data: PAINTINGS, parityImages: 4, log: quiet });
});

test('artist-id train refuses options that do not apply to the method, naming them', () => {
  const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', CLI, 'train', ...args], { cwd: PACKAGE_ROOT, encoding: 'utf8' });
  const cases: [string[], RegExp][] = [
    [['--method', 'features', '--input-size', '64', '--data', PAINTINGS, '--out', join(tmp, 'x')], /--input-size does not apply to --method features; it applies to: baseline/],
    [['--method', 'baseline', '--features', 'style', '--data', PAINTINGS, '--out', join(tmp, 'x')], /--features does not apply to --method baseline/],
    [['--method', 'ensemble', '--members', 'a,b', '--epochs', '3', '--out', join(tmp, 'x')], /--epochs does not apply to --method ensemble/],
    [['--data', PAINTINGS, '--epochs', '3', '--out', join(tmp, 'x')], /Expected no epochs \(--epochs\) with solver lbfgs \(the default for style features\): L-BFGS has no epochs, learning rate or mini-batches/],
    [['--method', 'ensemble', '--out', join(tmp, 'x')], /Expected --members/],
    [['--method', 'baseline', '--out', join(tmp, 'x')], /Expected --data <dir>/],
  ];
  for (const [args, message] of cases) {
    const r = run(args);
    assert.equal(r.status, 1, `exit status of train ${args.join(' ')}`);
    assert.match(r.stderr, message);
  }
  // The CLI's copies of the method names, schedule names and baseline input size (src/ loads no training
  // code until a command runs) match training/'s.
  const help = run(['--help']).stdout.replace(/\s+/g, ' ');
  assert.ok(help.includes(`choices: ${TRAIN_METHODS.map((m) => `"${m}"`).join(', ')}`), help);
  assert.ok(help.includes(`choices: ${LR_SCHEDULES.map((m) => `"${m}"`).join(', ')}`), help);
  assert.ok(help.includes(`(default ${BASELINE_DEFAULT_INPUT_SIZE};`), help);
});
