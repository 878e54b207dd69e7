/**
 * `train --method finetune --features style`: the features route's head on the style statistics of the base
 * with its fine-tuned top. Which cuts allow it, and a tiny real run (2 artists x 8 paintings) whose exported
 * `features` are the frozen base's statistics below the cut and those of the fine-tuned final map above it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { FINETUNED_MAP, MOBILENETV2_INT8_CUTS, buildBottomModel } from '../export/finetune-export.js';
import { valueInfo } from '../export/graph.js';
import { MOBILENETV2_STYLE_LAYERS, buildStyleFeatureModel, styleFeatureDim } from '../export/style.js';
import { readModelCard } from '../src/model/read-card.js';
import { decodeModel, encodeModel, type ModelProto } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { BASE_WEIGHTS } from '../src/weights/base-weights.js';
import { initTrainingBackend } from '../training/backend.js';
import { STYLE_TRAIN_BLOCKS, trainFinetune } from '../training/finetune.js';
import { PAINTINGS, WEIGHTS, paintingOf } from './fixtures.js';

const INFO = BASE_WEIGHTS['mobilenetv2-12-int8'];
/** The style maps read below the cut: every one but the final map. */
const LOWER = MOBILENETV2_STYLE_LAYERS.filter((l) => l.tensor !== INFO.featureTensor);
let base: ModelProto;
let work: string;

before(async () => {
  await initTrainingBackend();
  base = decodeModel(await readFile(join(WEIGHTS, 'mobilenetv2-12-int8.onnx')));
  work = await mkdtemp(join(tmpdir(), 'aid-finetune-style-'));
  process.env.ARTIST_ID_CACHE ??= join(work, 'cache');
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('STYLE_TRAIN_BLOCKS are exactly the cuts whose frozen bottom computes every style map but the final one', () => {
  assert.equal(LOWER.length, MOBILENETV2_STYLE_LAYERS.length - 1);
  MOBILENETV2_INT8_CUTS.forEach((cut, blocks) => {
    const produced = new Set(buildBottomModel(base, INFO, DEFAULT_PREPROCESS, cut).graph.node.flatMap((n) => n.output));
    const all = LOWER.every((l) => produced.has(`${l.tensor}_quantized`) || produced.has(l.tensor));
    assert.equal(STYLE_TRAIN_BLOCKS.includes(blocks), all, `trainBlocks ${blocks} (cut ${cut})`);
  });
});

test('--features style with a cut below a style map is refused, naming trainBlocks, the allowed values and the value', async () => {
  const message = /Expected 0 or 1 with features 'style' \(cuts 624_quantized, 452_quantized: .*\) for trainBlocks but received 2 of type number/;
  await assert.rejects(trainFinetune({ data: PAINTINGS, out: join(work, 'never'), features: 'style', trainBlocks: 2 }), message);
  // The CLI passes --features to finetune and reports the same error before any work.
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(PACKAGE_ROOT, 'src', 'cli', 'main.ts'), 'train', '--method', 'finetune', '--features', 'style', '--train-blocks', '2', '--data', PAINTINGS, '--out', join(work, 'never')], { cwd: PACKAGE_ROOT, encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, message);
});

test('tiny real run: card says finetune + style (5920-d), both parity checks pass, features = style statistics of the fine-tuned graph', async () => {
  const data = join(work, 'data');
  for (const artist of ['claude-monet', 'alfred-sisley']) {
    await mkdir(join(data, artist), { recursive: true });
    for (const f of (await readdir(join(PAINTINGS, artist))).filter((f) => f.endsWith('.jpg')).sort().slice(0, 8)) await symlink(join(PAINTINGS, artist, f), join(data, artist, f));
  }
  const lines: string[] = [];
  const result = await trainFinetune({ data, out: join(work, 'model'), features: 'style', split: [4, 2, 2], views: 1, epochs: 1, parityImages: 4, head: { epochs: 5 }, weightsDir: WEIGHTS, log: (l) => lines.push(l) });
  assert.ok(result.parity.maxAbsDiff <= 1e-4 && result.parity.images === 4, `parity ${JSON.stringify(result.parity)}`);

  const card = await readModelCard(result.modelPath);
  assert.equal(card.training.method, 'finetune');
  assert.equal(card.base.features, 'style');
  assert.equal(card.base.featureDim, 5920);
  assert.equal(card.training.hyperparameters.cut, MOBILENETV2_INT8_CUTS[1]);
  assert.equal(card.training.hyperparameters.views, 1);
  assert.equal(card.training.hyperparameters['styleHead.hidden'], 0);
  assert.equal(card.training.hyperparameters['styleHead.dropout'], 0.2);
  assert.ok((card.training.hyperparameters.topParity as number) <= 1e-4, `top parity ${card.training.hyperparameters.topParity}`);
  assert.ok(card.parity.maxAbsDiff <= 1e-4 && card.parity.images === 4);
  assert.equal(card.openSet?.score, 'energy');
  assert.equal(card.openSet?.auroc, undefined, 'not measured for this route');
  assert.ok(lines.some((l) => /^fine-tune epoch 1:/.test(l)), lines.join('\n'));
  assert.match(await readFile(join(work, 'model', 'MODEL_CARD.md'), 'utf8'), /per-channel mean\/std of the fine-tuned final map/);
  const history = JSON.parse(await readFile(join(work, 'model', 'history.json'), 'utf8'));
  assert.deepEqual(Object.keys(history).sort(), ['finetune', 'head', 'warmup']);

  // The exported graph, with its fine-tuned final map exposed as an extra output, on two real paintings.
  const model = decodeModel(await readFile(result.modelPath));
  model.graph.output.push(valueInfo(FINETUNED_MAP, DataType.FLOAT, ['N', 1280, 7, 7]));
  const n = 2;
  const px = new Uint8Array(n * 224 * 224 * 3);
  for (let i = 0; i < n; i++) px.set(await decodeImage(await readFile(paintingOf(i ? 'alfred-sisley' : 'claude-monet', 20)), DEFAULT_PREPROCESS), i * 224 * 224 * 3);
  const feeds = { image: new ort.Tensor('uint8', px, [n, 224, 224, 3]) };
  const exported = await ort.InferenceSession.create(encodeModel(model));
  const out = await exported.run(feeds);
  const features = out.features.data as Float32Array;
  const map = out[FINETUNED_MAP].data as Float32Array;
  const frozen = await ort.InferenceSession.create(encodeModel(buildStyleFeatureModel(base, INFO, DEFAULT_PREPROCESS, MOBILENETV2_STYLE_LAYERS)));
  const reference = (await frozen.run(feeds)).features.data as Float32Array;
  await Promise.all([exported.release(), frozen.release()]);

  const d = 5920;
  const lower = styleFeatureDim(LOWER);
  assert.equal(d - lower, 2 * 1280);
  for (let i = 0; i < n; i++) {
    // Below the cut: the frozen int8 base's statistics, unchanged.
    for (let k = 0; k < lower; k++) assert.ok(Math.abs(features[i * d + k] - reference[i * d + k]) <= 1e-5 * (1 + Math.abs(reference[i * d + k])), `image ${i} feature ${k}: ${features[i * d + k]} vs frozen ${reference[i * d + k]}`);
    // Final map: per-channel mean and std (sqrt(var + 1e-6), as export/style.ts) of the fine-tuned map, computed here.
    let changed = 0;
    for (let c = 0; c < 1280; c++) {
      const v = map.subarray((i * 1280 + c) * 49, (i * 1280 + c + 1) * 49);
      const mean = v.reduce((a, b) => a + b, 0) / 49;
      const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / 49 + 1e-6);
      const got = [features[i * d + lower + c], features[i * d + lower + 1280 + c]];
      assert.ok(Math.abs(got[0] - mean) <= 1e-4 * (1 + Math.abs(mean)), `image ${i} channel ${c} mean: ${got[0]} vs ${mean}`);
      assert.ok(Math.abs(got[1] - std) <= 1e-4 * (1 + std), `image ${i} channel ${c} std: ${got[1]} vs ${std}`);
      if (Math.abs(mean - reference[i * d + lower + c]) > 1e-3) changed++;
    }
    // ... and that map is not the frozen base's final map (float, fine-tuned top).
    assert.ok(changed > 100, `image ${i}: only ${changed} of 1280 channel means differ from the frozen base's`);
  }
});
