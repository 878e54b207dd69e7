/**
 * The `finetune` rung: cutting the int8 base, the float top in TF.js, the splice back to one ONNX
 * model, and a tiny real training run (2 artists x 8 paintings) end to end.
 */
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { buildFeatureModel } from '../export/base.js';
import { importOnnxToTfjs } from '../export/convert/onnx-to-tfjs.js';
import { MOBILENETV2_INT8_CUTS, buildBottomModel, buildTopModel, cutQuantization } from '../export/finetune-export.js';
import { readModelCard } from '../src/model/read-card.js';
import { decodeModel, encodeModel, type ModelProto } from '../src/onnx/model.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { BASE_WEIGHTS } from '../src/weights/base-weights.js';
import { initTrainingBackend } from '../training/backend.js';
import { trainFinetune } from '../training/finetune.js';
import { toCodes } from '../training/finetune/activations.js';
import { foldStandardizer } from '../training/finetune/top.js';
import { PAINTINGS, WEIGHTS, paintingOf } from './fixtures.js';

const INFO = BASE_WEIGHTS['mobilenetv2-12-int8'];
let base: ModelProto;
let work: string;

before(async () => {
  await initTrainingBackend();
  base = decodeModel(await readFile(join(WEIGHTS, 'mobilenetv2-12-int8.onnx')));
  work = await mkdtemp(join(tmpdir(), 'aid-finetune-'));
  process.env.ARTIST_ID_CACHE ??= join(work, 'cache');
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function images(n: number): Promise<Uint8Array> {
  const px = new Uint8Array(n * 224 * 224 * 3);
  for (let i = 0; i < n; i++) px.set(await decodeImage(await readFile(paintingOf(i % 2 ? 'alfred-sisley' : 'claude-monet', i)), DEFAULT_PREPROCESS), i * 224 * 224 * 3);
  return px;
}

test('cut points are block boundaries with uint8 quantisation; a cut inside a residual block is refused', () => {
  for (const cut of MOBILENETV2_INT8_CUTS) {
    const q = cutQuantization(base, cut, INFO.featureTensor);
    assert.ok(q.scale > 0 && Number.isInteger(q.zeroPoint) && q.zeroPoint >= 0 && q.zeroPoint <= 255, `${cut}: ${JSON.stringify(q)}`);
  }
  // 606_quantized is block 15's projection, added to the skip connection 597_quantized by Add_83.
  assert.throws(() => cutQuantization(base, '606_quantized', INFO.featureTensor), /Cut "606_quantized" is not a block boundary: node .* reads "597_quantized"/);
  assert.throws(() => cutQuantization(base, 'nope', INFO.featureTensor), /Expected cut tensor "nope" to feed a QLinearConv\/QLinearAdd .* but no node reads it/);
});

test('bottom (ORT, int8) + top (TF.js, dequantised) reproduce the int8 base features up to quantisation noise', async () => {
  const n = 4;
  const feeds = { image: new ort.Tensor('uint8', await images(n), [n, 224, 224, 3]) };
  const full = await ort.InferenceSession.create(encodeModel(buildFeatureModel(base, INFO, DEFAULT_PREPROCESS)));
  const reference = (await full.run(feeds)).features.data as Float32Array;
  const cut = MOBILENETV2_INT8_CUTS[1];
  const q = cutQuantization(base, cut, INFO.featureTensor);
  const bottom = await ort.InferenceSession.create(encodeModel(buildBottomModel(base, INFO, DEFAULT_PREPROCESS, cut)));
  const act = (await bottom.run(feeds)).features;
  assert.deepEqual(act.dims, [n, 160, 7, 7]);
  // Every value is on the int8 model's uint8 grid, so caching codes loses nothing.
  const codes = toCodes(act.data as Float32Array, [160, 7, 7], q);
  assert.equal(codes.length, n * 7840);
  assert.throws(() => toCodes(Float32Array.of(q.scale * 0.5), [1, 1, 1], q), /Expected cut activations on the uint8 grid/);

  const { model } = await importOnnxToTfjs(buildTopModel(base, INFO, cut, [160, 7, 7]));
  const pooled = tf.tidy(() => (model.predict(tf.tensor4d(act.data as Float32Array, [n, 160, 7, 7]).transpose([0, 2, 3, 1])) as tf.Tensor).mean([1, 2]).dataSync());
  let diff = 0;
  let mag = 0;
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < pooled.length; i++) {
    diff += Math.abs(pooled[i] - reference[i]);
    mag += Math.abs(reference[i]);
    dot += pooled[i] * reference[i];
    na += pooled[i] ** 2;
    nb += reference[i] ** 2;
  }
  // The float top differs from the int8 one only by activation rounding (observed ~2-3% relative).
  assert.ok(diff / mag < 0.08, `relative L1 difference ${(diff / mag).toFixed(3)}`);
  assert.ok(dot / Math.sqrt(na * nb) > 0.99, `cosine ${(dot / Math.sqrt(na * nb)).toFixed(4)}`);
  model.dispose();
  await Promise.all([full.release(), bottom.release()]);
});

test('folding the standardiser into the Dense layer gives the same logits', () => {
  const d = 3;
  const k = 2;
  const x = [0.5, -1, 2];
  const kernel = Float32Array.of(1, 2, -1, 0.5, 0.25, 3);
  const bias = Float32Array.of(0.1, -0.2);
  const s = { mean: Float32Array.of(1, 0, -1), invStd: Float32Array.of(2, 0.5, 4) };
  const folded = foldStandardizer(kernel, bias, s);
  for (let j = 0; j < k; j++) {
    let a = bias[j];
    let b = folded.bias[j];
    for (let i = 0; i < d; i++) {
      a += (x[i] - s.mean[i]) * s.invStd[i] * kernel[i * k + j];
      b += x[i] * folded.kernel[i * k + j];
    }
    assert.ok(Math.abs(a - b) < 1e-5, `logit ${j}: ${a} vs ${b}`);
  }
  assert.throws(() => foldStandardizer(kernel.subarray(1), bias, s), /Expected a \[3,2\] kernel \(6 values\) but received 5 values/);
});

test('bad options name the option, the expectation and the value', async () => {
  const base = { data: PAINTINGS, out: join(work, 'never') };
  await assert.rejects(trainFinetune({ ...base, trainBlocks: 9 }), /Expected integer between 0 and 4 for trainBlocks but received 9/);
  await assert.rejects(trainFinetune({ ...base, features: 'gram' as never }), /Expected 'pooled' \(or nothing\) or 'style' for --method finetune for features but received "gram"/);
  await assert.rejects(trainFinetune({ ...base, optimizer: 'sgd' as never }), /Expected 'adam' or 'rmsprop' for optimizer but received "sgd"/);
  await assert.rejects(trainFinetune({ ...base, head: { hidden: 64 } }), /for head\.hidden but received 64/);
});

test('tiny real run: model.onnx loads in onnxruntime, card says finetune, parity holds, outputs as every artist-id model', async () => {
  const data = join(work, 'data');
  for (const artist of ['claude-monet', 'alfred-sisley']) {
    await mkdir(join(data, artist), { recursive: true });
    for (const f of (await readdir(join(PAINTINGS, artist))).filter((f) => f.endsWith('.jpg')).sort().slice(0, 8)) await symlink(join(PAINTINGS, artist, f), join(data, artist, f));
  }
  const lines: string[] = [];
  const out = join(work, 'model');
  const result = await trainFinetune({ data, out, split: [4, 2, 2], views: 1, epochs: 2, parityImages: 4, head: { epochs: 5 }, weightsDir: WEIGHTS, log: (l) => lines.push(l) });
  assert.ok(result.parity.maxAbsDiff <= 1e-4, `parity ${result.parity.maxAbsDiff}`);
  assert.equal(result.parity.images, 4);

  const session = await ort.InferenceSession.create(result.modelPath);
  assert.deepEqual(session.inputNames, ['image']);
  assert.deepEqual([...session.outputNames].sort(), ['features', 'logits', 'probabilities']);
  const card = await readModelCard(result.modelPath);
  assert.equal(card.training.method, 'finetune');
  assert.equal(card.base.features, 'pooled');
  assert.equal(card.base.featureDim, 1280);
  assert.deepEqual(card.classes, ['alfred-sisley', 'claude-monet']);
  assert.equal(card.training.hyperparameters.cut, MOBILENETV2_INT8_CUTS[1]);
  assert.equal(card.training.hyperparameters.views, 1);
  assert.ok(card.parity.maxAbsDiff <= 1e-4 && card.parity.images === 4);
  assert.ok(card.metrics.test && card.metrics.test.images === 4);

  const n = 2;
  const res = await session.run({ image: new ort.Tensor('uint8', await images(n), [n, 224, 224, 3]) });
  assert.deepEqual(res.probabilities.dims, [n, 2]);
  assert.deepEqual(res.logits.dims, [n, 2]);
  assert.deepEqual(res.features.dims, [n, 1280]);
  const p = res.probabilities.data as Float32Array;
  const l = res.logits.data as Float32Array;
  for (let i = 0; i < n; i++) {
    assert.ok(Math.abs(p[2 * i] + p[2 * i + 1] - 1) < 1e-5);
    // probabilities = softmax(logits)
    const e = Math.exp(l[2 * i] - l[2 * i + 1]);
    assert.ok(Math.abs(p[2 * i] - e / (1 + e)) < 1e-5);
  }
  await session.release();
  assert.ok(lines.some((l) => /^fine-tune epoch 2:/.test(l)), lines.join('\n'));

  // A second run reuses every cached activation (clean + 1 augmented view per training image).
  const again: string[] = [];
  await trainFinetune({ data, out, overwrite: true, split: [4, 2, 2], views: 1, epochs: 0, parityImages: 2, head: { epochs: 2 }, weightsDir: WEIGHTS, log: (l) => again.push(l) });
  assert.ok(again.some((l) => /^cut activations \(train\): 8 images x 2 view\(s\) \(the image itself and 1 augmented\), 16 from cache,/.test(l)), again.join('\n'));
});
