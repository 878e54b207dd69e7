/**
 * training/dropout.ts: per-step reseeding of TF.js Dropout layers, and the upstream behaviour that makes
 * it necessary (a Dropout layer with a fixed seed draws the same mask at every call).
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initTrainingBackend } from '../training/backend.js';
import { dropoutLayers, dropoutSeed, reseedDropout } from '../training/dropout.js';
import { DEFAULT_HEAD, trainHead } from '../training/head.js';
import { buildTop, fineTune } from '../training/finetune/top.js';

const UNITS = 256;

before(async () => {
  await initTrainingBackend();
});

/** A model whose only layer is a Dropout(0.5) with a fixed seed. */
function dropoutModel(seed = 7): tf.Sequential {
  const model = tf.sequential();
  model.add(tf.layers.dropout({ inputShape: [UNITS], rate: 0.5, seed, name: 'dropout' }));
  return model;
}

/** The kept-units mask (1 kept, 0 dropped) of one training-mode call on a row of ones. */
function mask(model: tf.LayersModel): number[] {
  return tf.tidy(() => {
    const y = model.layers[0].apply(tf.ones([1, UNITS]), { training: true }) as tf.Tensor;
    return Array.from(y.dataSync(), (v) => (v !== 0 ? 1 : 0));
  });
}

const dropped = (m: number[]) => m.filter((v) => v === 0).length;

test('upstream: a fixed-seed TF.js Dropout draws the same mask at every training-mode call (if this fails, upstream fixed it)', () => {
  const model = dropoutModel();
  const first = mask(model);
  assert.ok(dropped(first) > 0 && dropped(first) < UNITS, 'the mask drops some units and keeps others');
  for (let i = 0; i < 3; i++) assert.deepEqual(mask(model), first);
  model.dispose();
});

test('reseedDropout: consecutive training-mode calls draw different masks', () => {
  const model = dropoutModel();
  assert.equal(reseedDropout(model, 42, 0), 1);
  const a = mask(model);
  reseedDropout(model, 42, 1);
  const b = mask(model);
  reseedDropout(model, 42, 2);
  const c = mask(model);
  assert.notDeepEqual(a, b);
  assert.notDeepEqual(b, c);
  assert.notDeepEqual(a, c);
  for (const m of [a, b, c]) assert.ok(dropped(m) > UNITS * 0.35 && dropped(m) < UNITS * 0.65, `about half dropped, got ${dropped(m)}`);
  model.dispose();
});

test('reseedDropout: the same seed and step give the same mask (reproducible), whatever came before', () => {
  const one = dropoutModel(7);
  const other = dropoutModel(123);
  reseedDropout(one, 42, 5);
  const a = mask(one);
  reseedDropout(one, 42, 6);
  mask(one);
  reseedDropout(one, 42, 5);
  assert.deepEqual(mask(one), a);
  reseedDropout(other, 42, 5);
  assert.deepEqual(mask(other), a, 'a second model reseeded alike draws the same mask');
  reseedDropout(other, 43, 5);
  assert.notDeepEqual(mask(other), a, 'another run seed gives another mask');
  one.dispose();
  other.dispose();
});

test('reseedDropout: several Dropout layers of one model get distinct seeds; first layer keeps the baseline formula', () => {
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [4], units: 8, name: 'd1' }));
  model.add(tf.layers.dropout({ rate: 0.5, seed: 1, name: 'drop1' }));
  model.add(tf.layers.dense({ units: 8, name: 'd2' }));
  model.add(tf.layers.dropout({ rate: 0.5, seed: 1, name: 'drop2' }));
  const layers = dropoutLayers(model);
  assert.deepEqual(layers.map((l) => l.name), ['drop1', 'drop2']);
  assert.equal(reseedDropout(model, 42, 9), 2);
  const seeds = layers.map((l) => (l.getConfig() as { seed?: number }).seed);
  assert.deepEqual(seeds, [42 * 1_000_003 + 9, dropoutSeed(42, 9, 1)]);
  assert.notEqual(seeds[0], seeds[1]);
  assert.equal(reseedDropout(tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 1 })] }), 42, 0), 0);
  model.dispose();
});

/** `n` rows of `d` features, class = which half of the features is larger. */
function toyFeatures(n: number, d: number) {
  const x = new Float32Array(n * d);
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 2;
    y.push(c);
    for (let j = 0; j < d; j++) x[i * d + j] = Math.sin(i * 7.3 + j * 1.7) + (Math.floor((j * 2) / d) === c ? 1 : 0);
  }
  return { x, y };
}

test('trainHead reseeds its Dropout at every step', async () => {
  const train = toyFeatures(20, 6);
  const config = { ...DEFAULT_HEAD, hidden: 4, epochs: 2, patience: 5, batchSize: 8, seed: 3 };
  const head = await trainHead(train, toyFeatures(6, 6), 6, 2, config);
  const [layer] = dropoutLayers(head.model);
  const steps = config.epochs * Math.ceil(train.y.length / config.batchSize);
  assert.equal((layer.getConfig() as { seed?: number }).seed, dropoutSeed(config.seed, steps - 1));
  head.model.dispose();
});

test('fineTune reseeds the top\'s Dropout at every step', async () => {
  const input = tf.input({ shape: [2, 2, 3] });
  const conv = tf.layers.conv2d({ filters: 4, kernelSize: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }).apply(input) as tf.SymbolicTensor;
  const top = buildTop(tf.model({ inputs: input, outputs: conv }), 2, { dropout: 0.5, l2: 0, seed: 5 });
  const n = 10;
  const set = { codes: Uint8Array.from({ length: n * 12 }, (_, i) => (i * 37) % 256), viewsPerImage: 1, labels: Array.from({ length: n }, (_, i) => i % 2) };
  const shape = { hwc: [2, 2, 3] as [number, number, number], quantization: { scale: 0.02, zeroPoint: 128 } };
  const config = { optimizer: 'adam' as const, learningRate: 1e-3, epochs: 2, batchSize: 4, patience: 10, seed: 11, maxSeconds: 0 };
  await fineTune(top, set, set, shape, 2, config);
  const [layer] = dropoutLayers(top.classifier);
  const steps = config.epochs * Math.ceil(n / config.batchSize);
  assert.equal((layer.getConfig() as { seed?: number }).seed, dropoutSeed(config.seed, steps - 1));
  top.classifier.dispose();
});
