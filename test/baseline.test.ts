/**
 * The baseline CNN: architecture, and real training steps on the WASM backend with the supplied
 * gradient kernels on a tiny batch of real paintings (decoded at the model's input size).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { initTrainingBackend } from '../training/backend.js';
import { registerWasmGradientKernels } from '../training/kernels/index.js';
import { buildBaselineCnn, imagesToBatch } from '../training/models/baseline.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { paintingOf } from './fixtures.js';

before(async () => {
  const backend = await initTrainingBackend('wasm');
  assert.equal(backend.name, 'wasm');
  registerWasmGradientKernels();
});

test('the baseline CNN is the book architecture at 150x150', () => {
  const model = buildBaselineCnn({ classes: 3 });
  assert.deepEqual(
    model.layers.map((l) => `${l.name}:${(l.outputShape as number[]).slice(1).join('x')}`),
    ['rescale:150x150x3', 'conv1:148x148x32', 'pool1:74x74x32', 'conv2:72x72x64', 'pool2:36x36x64', 'conv3:34x34x128', 'pool3:17x17x128', 'conv4:15x15x128', 'pool4:7x7x128', 'flatten:6272', 'dropout:6272', 'dense:512', 'output:3'],
  );
  assert.equal(model.countParams(), 3_452_608 + 513 * 3);
  model.dispose();
  assert.throws(() => buildBaselineCnn({ classes: 3, inputSize: 45 }), /inputSize an integer >= 46 .* received 45/);
  assert.throws(() => buildBaselineCnn({ classes: 1 }), /classes an integer >= 2 but received 1/);
});

test('training steps on WASM run and lower the loss on a tiny batch of real paintings', async () => {
  // 100x100 rather than the default 150 keeps the test short on 2 shared cores (a 150x150 step is
  // about 2.2x the work; scripts/train-throughput.ts measures that size).
  const size = 100;
  const artists = ['claude-monet', 'vincent-van-gogh', 'edgar-degas'];
  const spec = { ...DEFAULT_PREPROCESS, width: size, height: size };
  const images: Uint8Array[] = [];
  const labels: number[] = [];
  for (const [label, artist] of artists.entries()) {
    for (const i of [0, 1]) {
      images.push(await decodeImage(await readFile(paintingOf(artist, i)), spec));
      labels.push(label);
    }
  }
  const x = imagesToBatch(images, size);
  const y = tf.oneHot(tf.tensor1d(labels, 'int32'), artists.length);
  const model = buildBaselineCnn({ classes: artists.length, inputSize: size, seed: 7 });
  // Loss without dropout (evaluate), so the comparison is deterministic.
  const evalLoss = () => {
    const t = model.evaluate(x, y, { batchSize: images.length }) as tf.Scalar[];
    const v = t[0].dataSync()[0];
    tf.dispose(t);
    return v;
  };
  const initial = evalLoss();
  const times: number[] = [];
  let tensors = 0;
  for (let step = 0; step < 3; step++) {
    const t0 = performance.now();
    await model.trainOnBatch(x, y);
    times.push(performance.now() - t0);
    if (step === 0) tensors = tf.memory().numTensors;
  }
  assert.equal(tf.memory().numTensors, tensors, 'training steps leak no tensors');
  const final = evalLoss();
  console.log(`baseline CNN ${size}x${size}, batch ${images.length}, WASM: step times ${times.map((t) => (t / 1000).toFixed(2)).join(' ')} s; loss ${initial.toFixed(4)} -> ${final.toFixed(4)}`);
  assert.ok(Number.isFinite(final));
  assert.ok(final < initial, `loss should decrease on the training batch: ${initial} -> ${final}`);
  tf.dispose([x, y]);
  model.dispose();
});
