/**
 * End to end on real paintings, through the CLI as a user runs it: train on a small real subset,
 * export (with its parity check), classify the held-out images with onnxruntime-node, evaluate.
 *
 * Three artists from the same source (claude-monet, alfred-sisley, edgar-degas), 60/20/40 per
 * artist. Chance is 33.3%; the test demands >= 75% on the 120 held-out images. A broken pipeline
 * (wrong normalisation or channel order, labels misaligned with features, a head that did not
 * train, class order lost between training and serving) lands near chance and fails.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, symlink, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readModelCard } from '../src/model/read-card.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { resolveModelPath } from '../src/inference/classifier.js';
import { loadDataset } from '../training/dataset.js';
import { PAINTINGS, WEIGHTS } from './fixtures.js';

const CLI = join(PACKAGE_ROOT, 'src', 'cli', 'main.ts');
const ARTISTS = ['alfred-sisley', 'claude-monet', 'edgar-degas'];
const SPLIT: [number, number, number] = [60, 20, 40];
const SEED = 7;
const MIN_ACCURACY = 0.75;

function run(args: string[], env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: PACKAGE_ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 600_000 });
}

function cli(args: string[], env: NodeJS.ProcessEnv): { stdout: string; stderr: string } {
  const result = run(args, env);
  assert.equal(result.status, 0, `artist-id ${args.join(' ')} failed:\n${result.stderr}`);
  return { stdout: result.stdout, stderr: result.stderr };
}

test('train -> export -> classify held-out real paintings -> evaluate', async (t) => {
  const tmp = await mkdtemp(join(os.tmpdir(), 'artist-id-e2e-'));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  const env = { ARTIST_ID_WEIGHTS_DIR: WEIGHTS, ARTIST_ID_CACHE: join(tmp, 'cache'), ARTIST_ID_OFFLINE: '1' };
  const out = join(tmp, 'model');

  const trained = cli(['train', '--data', PAINTINGS, '--artists', ARTISTS.join(','), '--split', SPLIT.join(','), '--seed', String(SEED), '--out', out], env);
  assert.match(trained.stderr, /export parity: max \|p_onnx - p_tfjs\| = /);

  // The model file alone says what it is and how it was made.
  const card = await readModelCard(join(out, 'model.onnx'));
  assert.deepEqual(card.classes, ARTISTS);
  assert.deepEqual(card.training.split, SPLIT);
  assert.equal(card.training.seed, SEED);
  assert.equal(card.input, 'image');
  assert.ok(card.parity.images > 0 && card.parity.maxAbsDiff <= 1e-4, `parity ${JSON.stringify(card.parity)}`);
  assert.ok(card.metrics.test && card.metrics.test.images === 120);

  // Held-out images: the same seeded split, rebuilt independently here.
  const dataset = await loadDataset(PAINTINGS, { artists: ARTISTS, split: SPLIT, seed: SEED });
  const trainPaths = new Set([...dataset.train, ...dataset.validation].map((s) => s.path));
  assert.ok(dataset.test.every((s) => !trainPaths.has(s.path)), 'test images must be unseen in training');

  const preds = join(tmp, 'preds.jsonl');
  const classified = cli(['classify', ...dataset.test.map((s) => s.path), '--model', out, '--out', preds, '--top-k', '2'], env);
  assert.match(classified.stderr, /execution provider: cpu/);
  const rows = (await readFile(preds, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(rows.length, dataset.test.length);
  const truth = new Map(dataset.test.map((s) => [s.path, ARTISTS[s.label]]));
  let correct = 0;
  for (const row of rows) {
    assert.equal(row.error, null);
    assert.equal(row.top_k.length, 2);
    assert.equal(row.top_k[0].artist, row.artist);
    if (row.artist === truth.get(row.path)) correct++;
  }
  const accuracy = correct / rows.length;
  assert.ok(accuracy >= MIN_ACCURACY, `held-out accuracy ${(100 * accuracy).toFixed(1)}% < ${100 * MIN_ACCURACY}% (chance 33.3%)`);

  // evaluate rebuilds the same split from the card and must agree with classify exactly.
  const evaluated = cli(['evaluate', '--model', out, '--data', PAINTINGS, '--json', join(tmp, 'eval.json')], env);
  const report = JSON.parse(await readFile(join(tmp, 'eval.json'), 'utf8'));
  assert.equal(report.report.images, 120);
  assert.equal(Math.round(report.report.accuracy * 120), correct);
  assert.equal(report.misclassified.length, 120 - correct);
  assert.match(evaluated.stdout, /confusion matrix/);

  // A folder that no longer reproduces the split (one painting added) must not pass for held out.
  const changed = join(tmp, 'changed');
  for (const artist of ARTISTS) {
    await mkdir(join(changed, artist), { recursive: true });
    for (const f of await readdir(join(PAINTINGS, artist))) await symlink(join(PAINTINGS, artist, f), join(changed, artist, f));
  }
  await copyFile(join(PAINTINGS, 'camille-pissarro', (await readdir(join(PAINTINGS, 'camille-pissarro')))[0]), join(changed, 'claude-monet', '000-added.jpg'));
  const refused = run(['evaluate', '--model', out, '--data', changed], env);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /does not reproduce the model's held-out test split/);
  cli(['evaluate', '--model', out, '--data', changed, '--allow-split-mismatch'], env);

  // An existing model is not overwritten by accident.
  const again = run(['train', '--data', PAINTINGS, '--artists', ARTISTS.join(','), '--out', out], env);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already holds a model\.onnx; choose another folder or pass --overwrite/);
});

test('classify the whole shared paintings tree with the shipped model: one row per painting, others skipped and counted', async (t) => {
  const tmp = await mkdtemp(join(os.tmpdir(), 'artist-id-tree-'));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  const out = join(tmp, 'all.csv');
  const { stderr } = cli(['classify', PAINTINGS, '--out', out, '--batch-size', '32'], {});
  const lines = (await readFile(out, 'utf8')).trim().split('\n');
  const shipped = await readModelCard(resolveModelPath('default'));
  assert.equal(lines[0], `path,artist,probability,top_k,error,model${shipped.openSet ? ',unknown,open_set_score' : ''}`);
  const rows = lines.slice(1);
  assert.equal(rows.length, 3300, 'one row per painting');
  assert.equal(new Set(rows.map((r) => r.split(',')[0])).size, 3300, 'no duplicate rows');
  const rowEnd = shipped.openSet ? /,,[^,]+@[0-9a-f]{12},(true|false),-?[0-9.]+(e[-+]?[0-9]+)?$/ : /,,[^,]+@[0-9a-f]{12}$/;
  assert.ok(rows.every((r) => rowEnd.test(r)), `no row has an error, every row names the model${shipped.openSet ? ' and gives the open-set verdict and score' : ''}: ${rows.find((r) => !rowEnd.test(r))}`);
  assert.match(stderr, /skipped, not images: +2 /);
  assert.match(stderr, /manifest\.csv/);
});

test('classify reports a mistyped input path before it loads the model', () => {
  const r = run(['classify', 'no-such-folder', '--model', 'no-such-model'], {});
  assert.equal(r.status, 1);
  assert.match(r.stderr, /Expected an existing file or folder for input "no-such-folder" but it does not exist/);
  assert.doesNotMatch(r.stderr, /no-such-model/, 'the input is checked first');
});
