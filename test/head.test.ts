/**
 * The head's options of issue 3: learning-rate schedules (pure maths on known inputs, and their effect
 * on the optimizer's updates inside trainHead), and BatchNormalization (training updates its moving
 * statistics; the ONNX export folds it into the hidden Dense with TF.js parity).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import seedrandom from 'seedrandom';
import { TENSOR } from '../export/base.js';
import { valueInfo } from '../export/graph.js';
import { headToOnnx } from '../export/head-to-onnx.js';
import { encodeModel } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { initTrainingBackend } from '../training/backend.js';
import { batchTargets, buildHead, DEFAULT_HEAD, validateHeadConfig, fitStandardizer, predictHead, setLearningRate, trainHead, type FeatureSet, type HeadConfig, type TrainedHead } from '../training/head.js';
import { cosineAnnealing, createLrSchedule, plateauStart, plateauUpdate, stepDecay, type LrScheduleParams } from '../training/schedules.js';

const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

test('step decay: lr0 * 0.5^floor((epoch-1)/N) on known epochs', () => {
  close(stepDecay(1e-3, 1, 10, 0.5), 1e-3);
  close(stepDecay(1e-3, 10, 10, 0.5), 1e-3);
  close(stepDecay(1e-3, 11, 10, 0.5), 5e-4);
  close(stepDecay(1e-3, 21, 10, 0.5), 2.5e-4);
  close(stepDecay(0.1, 7, 3, 0.1), 0.001);
});

test('cosine (SGDR eq. 5, no restarts): lr0 at epoch 1, half way at the middle, lrMin after the last epoch', () => {
  close(cosineAnnealing(1, 1, 10), 1);
  close(cosineAnnealing(1, 6, 10), 0.5);
  close(cosineAnnealing(1, 11, 10), 0);
  close(cosineAnnealing(2, 3, 4), 1 + Math.cos(Math.PI / 2)); // (1 + cos(pi * 2/4)) = 1
  close(cosineAnnealing(1, 6, 10, 0.2), 0.6);
  // Monotone decreasing over the epochs.
  const rates = Array.from({ length: 10 }, (_, i) => cosineAnnealing(1e-3, i + 1, 10));
  rates.slice(1).forEach((r, i) => assert.ok(r < rates[i]));
});

test('plateau: Keras ReduceLROnPlateau (patience, factor, min_delta 1e-4, min_lr) on a known loss sequence', () => {
  const losses = [1, 0.9, 0.9, 0.89995, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8];
  let s = plateauStart(1);
  const rates: number[] = [];
  for (const l of losses) {
    s = plateauUpdate(s, l, 0.5, 2, 0.2);
    rates.push(s.learningRate);
  }
  // epoch 3: wait 1; epoch 4: 0.89995 is not better by > 1e-4, wait 2 -> 0.5; epochs 5,6 -> 0.25;
  // epoch 7 improves; 8, 9 -> 0.2 (clamped at min_lr); afterwards lr stays at min_lr.
  assert.deepEqual(rates, [1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2]);
  assert.equal(s.best, 0.8);
});

test('schedule parameters are checked, naming the parameter and the value', () => {
  const base: LrScheduleParams = { learningRate: 1e-3, schedule: 'step', stepEpochs: 10, factor: 0.5, patience: 5, minLearningRate: 0, epochs: 80 };
  assert.throws(() => createLrSchedule({ ...base, stepEpochs: 0 }), /Expected an integer >= 1 for lrStepEpochs but received 0/);
  assert.throws(() => createLrSchedule({ ...base, schedule: 'plateau', factor: 1 }), /for lrFactor but received 1/);
  assert.throws(() => createLrSchedule({ ...base, schedule: 'cyclic' as never }), /one of constant, step, cosine, plateau for lrSchedule but received "cyclic"/);
  const plateau = createLrSchedule({ ...base, schedule: 'plateau', patience: 1 });
  assert.equal(plateau.rateFor(1), 1e-3);
  plateau.observe(1);
  plateau.observe(1);
  assert.equal(plateau.rateFor(3), 5e-4);
});

/** Three Gaussian classes in d dimensions, seeded. */
function blobs(n: number, d: number, seed: string): FeatureSet {
  const rng = seedrandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  const x = new Float32Array(n * d);
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    y.push(c);
    for (let j = 0; j < d; j++) x[i * d + j] = 2 + gauss() + (j % 3 === c ? 1.5 : 0);
  }
  return { x, y };
}

test('setLearningRate changes the optimizer update: lr 0 leaves weights unchanged, Adam step scales with lr', async () => {
  await initTrainingBackend();
  const d = 12;
  const data = blobs(30, d, 'lr');
  const xb = tf.tensor2d(data.x, [30, d]);
  const yb = tf.oneHot(tf.tensor1d(data.y, 'int32'), 3);
  const step = async (lr: number) => {
    const model = buildHead(d, 3, { ...DEFAULT_HEAD, hidden: 8, dropout: 0, seed: 5 });
    const before = model.getWeights().map((w) => w.dataSync().slice());
    setLearningRate(model, lr);
    await model.trainOnBatch(xb, yb);
    const after = model.getWeights().map((w) => w.dataSync().slice());
    model.dispose();
    return before.map((b, i) => Array.from(b, (v, j) => after[i][j] - v));
  };
  const zero = await step(0);
  assert.ok(zero.flat().every((v) => v === 0), 'lr 0 must leave every weight unchanged');
  const small = (await step(1e-3)).flat();
  const large = (await step(2e-3)).flat();
  assert.ok(small.some((v) => Math.abs(v) > 1e-5), 'lr 1e-3 must move the weights');
  // Adam's first step is lr * m / (sqrt(v) + eps): doubling lr doubles every update.
  const moved = small.map((v, i) => [v, large[i]]).filter(([v]) => Math.abs(v) > 1e-5);
  for (const [a, b] of moved) assert.ok(Math.abs(b / a - 2) < 1e-2, `update ratio ${b / a}, expected 2`);
  tf.dispose([xb, yb]);
  assert.throws(() => setLearningRate(tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 2 })] }), 0.1), /compiled model whose optimizer has a numeric learningRate but received a model without optimizer/);
});

test('trainHead follows the schedule: history records it, and a rate of 0 from epoch 2 freezes the weights', async () => {
  await initTrainingBackend();
  const d = 12;
  const train = blobs(60, d, 'train');
  const validation = blobs(30, d, 'val');
  const config: HeadConfig = { ...DEFAULT_HEAD, hidden: 8, dropout: 0, epochs: 5, patience: 100, learningRate: 0.01, seed: 3 };
  const frozen = await trainHead(train, validation, d, 3, { ...config, lrSchedule: 'step', lrStepEpochs: 1, lrFactor: 0 });
  assert.deepEqual(frozen.history.map((e) => e.learningRate), [0.01, 0, 0, 0, 0]);
  // Validation loss after each epoch: weights updated in epoch 1 only, so epochs 2..5 repeat epoch 1.
  for (const e of frozen.history.slice(1)) assert.equal(e.valLoss, frozen.history[0].valLoss);
  const constant = await trainHead(train, validation, d, 3, config);
  assert.deepEqual(constant.history.map((e) => e.learningRate), [0.01, 0.01, 0.01, 0.01, 0.01]);
  assert.notEqual(constant.history[4].valLoss, constant.history[0].valLoss, 'with a constant rate training keeps moving');
  const cosine = await trainHead(train, validation, d, 3, { ...config, lrSchedule: 'cosine' });
  cosine.history.forEach((e) => close(e.learningRate, cosineAnnealing(0.01, e.epoch, 5)));
  [frozen, constant, cosine].forEach((h) => h.model.dispose());
});

test('batchNorm needs a hidden layer: the error names hidden', () => {
  assert.throws(() => buildHead(8, 3, { ...DEFAULT_HEAD, hidden: 0, batchNorm: true }), /Expected hidden > 0 with batchNorm .* received hidden 0/);
});

test('batchNorm head: Dense(no bias) -> BN -> ReLU; training moves the moving statistics; early stopping still applies', async () => {
  await initTrainingBackend();
  const d = 12;
  const config: HeadConfig = { ...DEFAULT_HEAD, hidden: 8, batchNorm: true, epochs: 30, patience: 3, learningRate: 0.01, seed: 4 };
  const head = await trainHead(blobs(60, d, 'train'), blobs(30, d, 'val'), d, 3, config);
  assert.deepEqual(head.model.layers.map((l) => l.getClassName()), ['Dense', 'BatchNormalization', 'Activation', 'Dropout', 'Dense']);
  assert.equal(head.model.layers[0].getWeights().length, 1, 'the hidden Dense has no bias (BN beta replaces it)');
  const [, , movingMean, movingVariance] = head.model.layers[1].getWeights().map((w) => w.dataSync());
  assert.ok(movingMean.some((v) => Math.abs(v) > 1e-6), 'moving mean left its initial zeros (inputs are standardised and the Dense has no bias, so it stays near 0)');
  assert.ok(movingVariance.some((v) => Math.abs(v - 1) > 1e-3), 'moving variance left its initial ones');
  assert.ok(head.history.length < 30 || head.bestEpoch === 30, 'stops early after patience epochs without improvement, or uses every epoch');
  assert.ok(head.history.length - head.bestEpoch <= config.patience);
  assert.ok(head.history[head.bestEpoch - 1].valAccuracy > 0.8, `val acc ${head.history[head.bestEpoch - 1].valAccuracy}`);
  head.model.dispose();
});

/** A standalone ONNX model of just the head: features [N,D] -> probabilities, logits. */
function headOnlyModel(head: TrainedHead): { bytes: Uint8Array; ops: string[] } {
  const graph = headToOnnx(head.model, head.standardizer);
  const bytes = encodeModel({
    ir_version: 7,
    opset_import: [{ domain: '', version: 12 }],
    graph: {
      name: 'head',
      node: graph.nodes,
      initializer: graph.initializers,
      input: [valueInfo(TENSOR.features, DataType.FLOAT, ['N', head.featureDim])],
      output: [valueInfo(TENSOR.probabilities, DataType.FLOAT, ['N', head.classes]), valueInfo(TENSOR.logits, DataType.FLOAT, ['N', head.classes])],
    },
  });
  return { bytes, ops: graph.nodes.map((n) => n.op_type) };
}

test('BatchNormalization export: folded into the hidden Dense, ONNX vs TF.js max |Δp| <= 1e-5 with non-trivial statistics', async () => {
  await initTrainingBackend();
  const d = 256;
  const classes = 5;
  const model = buildHead(d, classes, { ...DEFAULT_HEAD, hidden: 32, batchNorm: true, seed: 9 });
  // Random weights; BN moving variance far from 1 and moving mean far from 0, so a wrong fold shows.
  model.setWeights(
    model.getWeights().map((w, i) => {
      const name = model.weights[i].name;
      if (name.includes('moving_variance')) return tf.randomUniform(w.shape, 0.05, 4, 'float32', 200 + i);
      if (name.includes('moving_mean')) return tf.randomNormal(w.shape, 0, 2, 'float32', 200 + i);
      if (name.includes('gamma')) return tf.randomUniform(w.shape, 0.5, 2, 'float32', 200 + i);
      return tf.randomNormal(w.shape, 0, 0.3, 'float32', 100 + i);
    }),
  );
  const n = 24;
  const x = (tf.randomUniform([n, d], 0, 6, 'float32', 3).dataSync() as Float32Array).slice();
  const head: TrainedHead = { model, standardizer: fitStandardizer(x, d), history: [], bestEpoch: 1, featureDim: d, classes };
  const reference = predictHead(head, x);
  const { bytes, ops } = headOnlyModel(head);
  assert.ok(!ops.includes('BatchNormalization'), `BN must be folded, got ops ${ops.join(',')}`);
  assert.deepEqual(ops, ['Sub', 'Mul', 'MatMul', 'Add', 'Relu', 'MatMul', 'Add', 'Softmax']);
  const session = await ort.InferenceSession.create(bytes);
  const probs = (await session.run({ features: new ort.Tensor('float32', x, [n, d]) })).probabilities.data as Float32Array;
  const maxDiff = probs.reduce((m, v, i) => Math.max(m, Math.abs(v - reference[i])), 0);
  assert.ok(maxDiff <= 1e-5, `max |Δp| = ${maxDiff}`);
  const top = new Set(Array.from({ length: n }, (_, i) => { const r = Array.from(reference.subarray(i * classes, (i + 1) * classes)); return r.indexOf(Math.max(...r)); }));
  assert.ok(top.size > 1, 'reference predictions are not degenerate');
  // The same head exported without folding knowledge would differ: dropping BN changes the output a lot.
  const withoutBn = tf.tidy(() => {
    const h = tf.matMul(tf.tensor2d(x.map((v, i) => (v - head.standardizer.mean[i % d]) * head.standardizer.invStd[i % d]), [n, d]), model.layers[0].getWeights()[0]).relu();
    const [k, b] = model.layers[4].getWeights();
    return tf.softmax(tf.add(tf.matMul(h, k), b)).dataSync();
  });
  assert.ok(withoutBn.some((v, i) => Math.abs(v - reference[i]) > 1e-2), 'the BN statistics matter for this test to mean anything');
  await session.release();
  model.dispose();
});

test('label smoothing: targets (1 - eps) * onehot + eps / C, as Keras CategoricalCrossentropy(label_smoothing)', () => {
  const targets = batchTargets(4, { labelSmoothing: 0.2, mixup: 0, seed: 1 });
  const [x, y] = targets(new Float32Array([1, 2, 3, 4]), [0, 3]);
  assert.deepEqual(Array.from(x.dataSync()), [1, 2, 3, 4]);
  const got = Array.from(y.dataSync());
  [0.85, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.85].forEach((v, i) => close(got[i], v, 1e-7));
  tf.dispose([x, y]);
});

test('mixup: each row is lam * row_i + (1 - lam) * row_j of the batch, targets mixed with the same lam, reproducible from the seed', () => {
  const b = 8;
  const d = 3;
  const labels = [0, 1, 2, 0, 1, 2, 0, 1];
  const xs = Float32Array.from({ length: b * d }, (_, i) => (i * 7919) % 101);
  const run = (seed: number) => {
    const targets = batchTargets(3, { labelSmoothing: 0, mixup: 0.4, seed });
    const out: number[][][] = [];
    for (let step = 0; step < 3; step++) {
      const [x, y] = targets(xs, labels);
      out.push([Array.from(x.dataSync()), Array.from(y.dataSync())]);
      tf.dispose([x, y]);
    }
    return out;
  };
  const first = run(5);
  assert.deepEqual(run(5), first, 'same seed, same batches');
  assert.notDeepEqual(run(6), first, 'another seed, other batches');
  let mixedRows = 0;
  for (const [x, y] of first) {
    // One lam per batch: read it off a row whose partner has another label (its own label's weight).
    const lam = labels.map((own, i) => y[i * 3 + own]).find((w) => w < 1 - 1e-6) ?? 1;
    for (let i = 0; i < b; i++) {
      const row = y.slice(i * 3, i * 3 + 3);
      close(row.reduce((s, v) => s + v, 0), 1, 1e-6);
      const found = labels.some((lj, j) => {
        const xOk = Array.from({ length: d }, (_, k) => k).every((k) => Math.abs(lam * xs[i * d + k] + (1 - lam) * xs[j * d + k] - x[i * d + k]) < 1e-3);
        const yOk = [0, 1, 2].every((k) => Math.abs(lam * Number(labels[i] === k) + (1 - lam) * Number(lj === k) - row[k]) < 1e-6);
        if (xOk && yOk && lj !== labels[i]) mixedRows++;
        return xOk && yOk;
      });
      assert.ok(found, `row ${i} is not lam * x_i + (1 - lam) * x_j (with targets to match) for any j, lam ${lam}`);
    }
  }
  assert.ok(mixedRows > 0, 'some rows were mixed with another class');
});

test('label smoothing and mixup are checked, naming the parameter', () => {
  assert.throws(() => validateHeadConfig({ ...DEFAULT_HEAD, labelSmoothing: 1 }), /labelSmoothing.*received 1/);
  assert.throws(() => validateHeadConfig({ ...DEFAULT_HEAD, mixup: -0.1 }), /mixup.*received -0.1/);
});
