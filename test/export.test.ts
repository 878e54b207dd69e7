/**
 * ONNX export: the in-graph preprocessing against ImageNet ground truth, the head conversion against
 * TF.js, and the model file's self-description.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { buildFeatureModel, prependPreprocessing, TENSOR } from '../export/base.js';
import { valueInfo } from '../export/graph.js';
import { headToOnnx } from '../export/head-to-onnx.js';
import { decodeModel, encodeModel, type ModelProto } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { BASE_WEIGHTS } from '../src/weights/base-weights.js';
import { initTrainingBackend } from '../training/backend.js';
import { buildHead, DEFAULT_HEAD, fitStandardizer, predictHead, type TrainedHead } from '../training/head.js';
import { WEIGHTS, paintingOf } from './fixtures.js';

const BASE_PATH = join(WEIGHTS, 'mobilenetv2-12-int8.onnx');
const INFO = BASE_WEIGHTS['mobilenetv2-12-int8'];

async function imagenetTop1(model: ModelProto, file: string): Promise<{ index: number; label: string }> {
  const session = await ort.InferenceSession.create(encodeModel(model));
  const pixels = await decodeImage(await readFile(file), DEFAULT_PREPROCESS);
  const out = await session.run({ image: new ort.Tensor('uint8', pixels, [1, 224, 224, 3]) });
  const logits = out.output.data as Float32Array;
  const index = logits.indexOf(Math.max(...logits));
  const labels = (await readFile(join(WEIGHTS, 'imagenet-labels.txt'), 'utf8')).split('\n');
  await session.release();
  return { index, label: labels[index] };
}

test('in-graph preprocessing feeds the base correctly: eagle.jpg is a bald eagle, dog.jpg a dog', async () => {
  // The ImageNet classifier with our uint8 NHWC input and in-graph normalisation in front of it.
  const model = decodeModel(await readFile(BASE_PATH));
  prependPreprocessing(model, INFO.inputName, DEFAULT_PREPROCESS);
  const eagle = await imagenetTop1(model, join(WEIGHTS, 'imagenet-samples', 'eagle.jpg'));
  assert.match(eagle.label, /^bald eagle/, `eagle.jpg -> ${eagle.label}`);
  assert.equal(eagle.index, 22);
  // ImageNet classes 151-268 are dog breeds.
  const dog = await imagenetTop1(model, join(WEIGHTS, 'imagenet-samples', 'dog.jpg'));
  assert.ok(dog.index >= 151 && dog.index <= 268, `dog.jpg -> ${dog.label} (${dog.index}) is not a dog breed`);
});

test('feature model: [N,224,224,3] uint8 in, [N,1280] pooled features out, ImageNet classifier pruned', async () => {
  const base = decodeModel(await readFile(BASE_PATH));
  const model = buildFeatureModel(base, INFO, DEFAULT_PREPROCESS);
  assert.deepEqual(model.graph.input.map((v) => v.name), [TENSOR.image]);
  assert.deepEqual(model.graph.output.map((v) => v.name), [TENSOR.features]);
  assert.ok(!model.graph.node.some((n) => n.op_type === 'QLinearMatMul'), 'the ImageNet classifier must be pruned');
  assert.ok(model.graph.initializer.length < base.graph.initializer.length);
  const session = await ort.InferenceSession.create(encodeModel(model));
  const a = await decodeImage(await readFile(paintingOf('claude-monet')), DEFAULT_PREPROCESS);
  const b = await decodeImage(await readFile(paintingOf('vincent-van-gogh')), DEFAULT_PREPROCESS);
  const batch = new Uint8Array(a.length * 2);
  batch.set(a);
  batch.set(b, a.length);
  const out = await session.run({ image: new ort.Tensor('uint8', batch, [2, 224, 224, 3]) });
  assert.deepEqual(out.features.dims, [2, 1280]);
  const f = out.features.data as Float32Array;
  assert.ok(f.every(Number.isFinite));
  assert.ok(f.every((v) => v >= 0 && v <= 6.0001), 'pooled ReLU6 features lie in [0,6]');
  // The batch dimension is dynamic and rows are independent: image 2 alone gives row 2.
  const single = await session.run({ image: new ort.Tensor('uint8', b, [1, 224, 224, 3]) });
  const row2 = f.subarray(1280);
  const maxDiff = (single.features.data as Float32Array).reduce((m, v, i) => Math.max(m, Math.abs(v - row2[i])), 0);
  assert.ok(maxDiff < 1e-5, `batched vs single features differ by ${maxDiff}`);
  await session.release();
});

/** A standalone ONNX model of just the head: features [N,D] -> probabilities, logits. */
function headOnlyModel(head: TrainedHead): Uint8Array {
  const graph = headToOnnx(head.model, head.standardizer);
  return encodeModel({
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
}

for (const hidden of [0, 64]) {
  test(`head export parity (hidden ${hidden}): ONNX vs TF.js max |Δp| <= 1e-5 on random weights and inputs`, async () => {
    await initTrainingBackend();
    const d = 1280;
    const classes = 5;
    const config = { ...DEFAULT_HEAD, hidden, seed: 7 };
    const model = buildHead(d, classes, config);
    // Random non-trivial weights (initialisers alone would make near-uniform outputs).
    model.setWeights(model.getWeights().map((w, i) => tf.randomNormal(w.shape, 0, 0.2, 'float32', 100 + i)));
    const x = (tf.randomUniform([16, d], 0, 6, 'float32', 3).dataSync() as Float32Array).slice();
    const head: TrainedHead = { model, standardizer: fitStandardizer(x, d), history: [], bestEpoch: 1, featureDim: d, classes };
    const reference = predictHead(head, x);
    const session = await ort.InferenceSession.create(headOnlyModel(head));
    const out = await session.run({ features: new ort.Tensor('float32', x, [16, d]) });
    const probs = out.probabilities.data as Float32Array;
    const maxDiff = probs.reduce((m, v, i) => Math.max(m, Math.abs(v - reference[i])), 0);
    assert.ok(maxDiff <= 1e-5, `max |Δp| = ${maxDiff}`);
    // The reference is not degenerate: rows disagree on their argmax.
    const top = new Set(Array.from({ length: 16 }, (_, i) => Array.from(reference.subarray(i * classes, (i + 1) * classes)).indexOf(Math.max(...reference.subarray(i * classes, (i + 1) * classes)))));
    assert.ok(top.size > 1, 'random head should not predict one class for every input');
    // Softmax of the exported logits is the exported probabilities.
    const logits = out.logits.data as Float32Array;
    const row = Array.from(logits.subarray(0, classes));
    const z = row.map((v) => Math.exp(v - Math.max(...row)));
    const sum = z.reduce((a, b) => a + b, 0);
    z.forEach((v, j) => assert.ok(Math.abs(v / sum - probs[j]) < 1e-6));
    await session.release();
    model.dispose();
  });
}

test('head export refuses layers it cannot map, naming them', async () => {
  await initTrainingBackend();
  const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 3, activation: 'elu', name: 'odd' }), tf.layers.dense({ units: 2, activation: 'softmax' })] });
  const standardizer = { mean: new Float32Array(4), invStd: new Float32Array(4).fill(1) };
  assert.throws(() => headToOnnx(model, standardizer), /layer "odd": activation elu is not supported/);
  const noSoftmax = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 2, name: 'last' })] });
  assert.throws(() => headToOnnx(noSoftmax, standardizer), /last layer "last" has activation linear; expected softmax/);
});
