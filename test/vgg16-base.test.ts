/**
 * VGG16 as the features rung's base (export/vgg16-base.ts, `train --base vgg16`), with a generated
 * random-weights file of the official notop layout (test/vgg16-fixtures.ts; never the real download).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import h5wasm from 'h5wasm/node';
import { writeRandomVgg16H5 } from './vgg16-fixtures.js';
import { PAINTINGS, paintingOf } from './fixtures.js';
import { initTrainingBackend } from '../training/backend.js';
import { buildVgg16Base, vgg16Preprocess } from '../training/models/vgg16.js';
import { loadVgg16Weights, VGG16_NOTOP_FILE } from '../training/h5/vgg16-weights.js';
import { buildVgg16FeatureModel, VGG16_PREPROCESS } from '../export/vgg16-base.js';
import { TENSOR } from '../export/base.js';
import { encodeModel } from '../src/onnx/model.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { train } from '../training/train.js';
import { Classifier } from '../src/inference/classifier.js';
import { resolveBaseWeights } from '../src/weights/base-weights.js';

let dir: string;
let weightsDir: string;
let h5: string;

before(async () => {
  await initTrainingBackend('wasm');
  await h5wasm.ready;
  dir = mkdtempSync(join(tmpdir(), 'artist-id-vgg16-base-'));
  weightsDir = join(dir, 'weights');
  mkdirSync(weightsDir);
  h5 = join(weightsDir, VGG16_NOTOP_FILE);
  writeRandomVgg16H5(h5);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('VGG16_PREPROCESS is Keras caffe preprocessing on RGB: x - [123.68, 116.779, 103.939]', () => {
  const x = [10, 200, 255];
  const got = x.map((v, c) => (v / 255 - VGG16_PREPROCESS.mean[c]) / VGG16_PREPROCESS.std[c]);
  [10 - 123.68, 200 - 116.779, 255 - 103.939].forEach((e, c) => assert.ok(Math.abs(got[c] - e) < 1e-9, `channel ${c}`));
});

test('the exported VGG16 feature model (uint8 RGB in, features out) matches TF.js with Keras caffe preprocessing on 2 paintings', async () => {
  const t0 = performance.now();
  const onnx = await buildVgg16FeatureModel(h5);
  assert.deepEqual(onnx.graph.input.map((v) => v.name), [TENSOR.image]);
  assert.deepEqual(onnx.graph.output.map((v) => v.name), [TENSOR.features]);
  const session = await ort.InferenceSession.create(encodeModel(onnx));
  const paths = [paintingOf('claude-monet'), paintingOf('vincent-van-gogh')];
  const pixels = await Promise.all(paths.map(async (p) => decodeImage(await readFile(p), VGG16_PREPROCESS)));
  const batch = new Uint8Array(pixels.length * 224 * 224 * 3);
  pixels.forEach((p, i) => batch.set(p, i * p.length));
  const out = await session.run({ [TENSOR.image]: new ort.Tensor('uint8', batch, [2, 224, 224, 3]) });
  const features = out[TENSOR.features];
  assert.deepEqual(features.dims, [2, 512]);
  await session.release();

  // Reference: the unflipped Keras model with Keras's own preprocessing (BGR, minus the BGR means).
  const model = buildVgg16Base({ inputSize: 224 });
  await loadVgg16Weights(model, h5);
  const expected = tf.tidy(() => {
    const x = vgg16Preprocess(tf.tensor4d(batch, [2, 224, 224, 3], 'int32'));
    return tf.mean(model.predict(x) as tf.Tensor4D, [1, 2]);
  });
  const ref = await expected.data();
  expected.dispose();
  model.dispose();
  const got = features.data as Float32Array;
  let maxAbs = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(got[i] - ref[i]));
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  assert.ok(maxRef > 0, 'features are not all zero');
  assert.ok(maxAbs <= 1e-4 * maxRef + 1e-4, `max |onnx - tfjs| ${maxAbs} vs max |tfjs| ${maxRef}`);
  console.log(`vgg16 parity: max abs diff ${maxAbs.toExponential(2)} (max |feature| ${maxRef.toExponential(2)}), ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});

test('resolveBaseWeights("vgg16") refuses an unpinned file unless its sha256 is accepted', async () => {
  const sha = createHash('sha256').update(await readFile(h5)).digest('hex');
  await assert.rejects(resolveBaseWeights('vgg16', { weightsDir, cacheDir: dir, offline: true, acceptSha256: undefined }), /checksum mismatch.*\n.*md5 6d6bbae143d832006294945121d1f1fc/);
  const got = await resolveBaseWeights('vgg16', { weightsDir, cacheDir: dir, offline: true, acceptSha256: sha });
  assert.deepEqual(got, { path: h5, sha256: sha, source: 'local' });
});

test('train --base vgg16 on 2 artists x 4/2/2 paintings writes a model that loads and classifies', async () => {
  const t0 = performance.now();
  const sha = createHash('sha256').update(await readFile(h5)).digest('hex');
  const out = join(dir, 'model');
  await assert.rejects(
    train({ data: PAINTINGS, out, base: 'vgg16', features: 'style', weightsDir, acceptSha256: sha, log: () => {} }),
    /features "pooled" with base vgg16 but received "style"/,
  );
  const lines: string[] = [];
  const result = await train({ data: PAINTINGS, out, artists: ['claude-monet', 'vincent-van-gogh'], split: [4, 2, 2], seed: 42, base: 'vgg16', weightsDir, acceptSha256: sha, head: { epochs: 3 }, parityImages: 4, log: (l) => lines.push(l) });
  assert.equal(result.card.base.name, 'vgg16');
  assert.equal(result.card.base.features, 'pooled');
  assert.equal(result.card.base.featureDim, 512);
  assert.deepEqual(result.card.preprocessing.mean, VGG16_PREPROCESS.mean);
  assert.ok(result.parity.maxAbsDiff <= result.parity.tolerance, lines.join('\n'));
  const classifier = await Classifier.load(result.modelPath, { provider: 'cpu' });
  const image = await decodeImage(await readFile(paintingOf('vincent-van-gogh', 10)), classifier.card.preprocessing);
  const { probabilities } = await classifier.run([image]);
  assert.equal(probabilities[0].length, 2);
  assert.ok(Math.abs(probabilities[0][0] + probabilities[0][1] - 1) < 1e-5);
  await classifier.dispose();
  console.log(`train --base vgg16 (8 images + parity): ${((performance.now() - t0) / 1000).toFixed(1)} s\n${lines.filter((l) => /bottleneck|parity|wrote/.test(l)).join('\n')}`);
});
