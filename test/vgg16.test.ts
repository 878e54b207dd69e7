/**
 * VGG16 conv base and the Keras HDF5 weights loader. The official
 * `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` is never downloaded: the test writes a file
 * of its exact layout (same `layer_names`, groups, `weight_names`, dataset names and full shapes;
 * random values) with h5wasm into a temp dir and loads that.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import h5wasm from 'h5wasm/node';
import { uniform, vgg16Layers, writeKerasH5, type LayerSpec } from './vgg16-fixtures.js';
import { initTrainingBackend } from '../training/backend.js';
import { buildVgg16Base, VGG16_CONV_LAYERS, vgg16Preprocess, VGG16_CAFFE_MEAN_BGR } from '../training/models/vgg16.js';
import { loadVgg16Weights, readKerasH5Weights, VGG16_NOTOP_FILE } from '../training/h5/vgg16-weights.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { paintingOf } from './fixtures.js';

let dir: string;
/** The values written per weight (`layer/weightName`), to compare with the model. */
const written = new Map<string, Float32Array>();

before(async () => {
  await initTrainingBackend('wasm');
  await h5wasm.ready;
  dir = mkdtempSync(join(tmpdir(), 'artist-id-vgg16-'));
  const layers = vgg16Layers();
  for (const l of layers) for (const w of l.weights) written.set(`${l.name}/${w.name}`, w.values);
  writeKerasH5(join(dir, VGG16_NOTOP_FILE), layers);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the VGG16 base has the Keras layer names, shapes and 14,714,688 parameters', () => {
  const model = buildVgg16Base({ inputSize: 224 });
  const names = model.layers.map((l) => l.name);
  assert.deepEqual(names, [
    'block1_conv1', 'block1_conv2', 'block1_pool',
    'block2_conv1', 'block2_conv2', 'block2_pool',
    'block3_conv1', 'block3_conv2', 'block3_conv3', 'block3_pool',
    'block4_conv1', 'block4_conv2', 'block4_conv3', 'block4_pool',
    'block5_conv1', 'block5_conv2', 'block5_conv3', 'block5_pool',
  ]);
  assert.equal(model.countParams(), 14_714_688);
  assert.deepEqual(model.outputs[0].shape, [null, 7, 7, 512]);
  assert.deepEqual(buildVgg16Base({ inputSize: 150 }).outputs[0].shape, [null, 4, 4, 512]);
  assert.throws(() => buildVgg16Base({ inputSize: 16 }), /inputSize an integer >= 32 .* received 16/);
  model.dispose();
});

test('the generated file has the official layout', async () => {
  const file = await readKerasH5Weights(join(dir, VGG16_NOTOP_FILE));
  assert.equal(file.layerNames.length, 19);
  assert.deepEqual(file.layerNames.slice(0, 4), ['input_1', 'block1_conv1', 'block1_conv2', 'block1_pool']);
  assert.equal(file.layerNames.at(-1), 'block5_pool');
  assert.deepEqual(file.layers.get('block1_conv1')!.map((w) => [w.name, w.shape]), [['block1_conv1_W_1:0', [3, 3, 3, 64]], ['block1_conv1_b_1:0', [64]]]);
  assert.deepEqual(file.layers.get('block5_conv3')!.map((w) => w.shape), [[3, 3, 512, 512], [512]]);
  assert.deepEqual(file.layers.get('block3_pool'), []);
});

test('loadVgg16Weights assigns every weight exactly, and a forward pass on a painting runs', async () => {
  const model = buildVgg16Base({ inputSize: 64 });
  const report = await loadVgg16Weights(model, join(dir, VGG16_NOTOP_FILE));
  assert.equal(report.layers.length, 13);
  assert.equal(report.parameters, 14_714_688);
  for (const { name } of VGG16_CONV_LAYERS) {
    const [kernel, bias] = model.getLayer(name).getWeights();
    for (const [tensor, suffix] of [[kernel, 'W'], [bias, 'b']] as const) {
      const expected = written.get(`${name}/${name}_${suffix}_1:0`)!;
      const actual = tensor.dataSync();
      assert.equal(actual.length, expected.length, `${name} ${suffix} size`);
      // Spot checks: first, last, and seven spread indices (float32 in, float32 out: exact).
      const idx = [0, expected.length - 1, ...[0.13, 0.29, 0.41, 0.5, 0.67, 0.83, 0.97].map((p) => Math.floor(p * (expected.length - 1)))];
      for (const i of idx) assert.equal(actual[i], expected[i], `${name} ${suffix}[${i}]`);
    }
  }
  // Keras kernels are HWIO, as TF.js: check one element by its 4-D index too.
  const k = model.getLayer('block2_conv1').getWeights()[0];
  const [h, w, ci, co] = [2, 1, 37, 101];
  assert.equal((await k.slice([h, w, ci, co], [1, 1, 1, 1]).data())[0], written.get('block2_conv1/block2_conv1_W_1:0')![((h * 3 + w) * 64 + ci) * 128 + co]);

  const spec = { ...DEFAULT_PREPROCESS, width: 64, height: 64 };
  const pixels = await decodeImage(await readFile(paintingOf('vincent-van-gogh')), spec);
  const out = tf.tidy(() => {
    const x = vgg16Preprocess(tf.tensor4d(pixels, [1, 64, 64, 3], 'int32'));
    return model.predict(x) as tf.Tensor;
  });
  assert.deepEqual(out.shape, [1, 2, 2, 512]);
  const values = await out.data();
  assert.ok(values.every(Number.isFinite), 'features are finite');
  assert.ok(values.some((v) => v > 0), 'some ReLU features are positive');
  out.dispose();
  model.dispose();
});

test('vgg16Preprocess flips RGB to BGR and subtracts the caffe means', async () => {
  const out = vgg16Preprocess(tf.tensor4d([10, 20, 30], [1, 1, 1, 3]));
  assert.deepEqual(Array.from(await out.data()), [30 - VGG16_CAFFE_MEAN_BGR[0], 20 - VGG16_CAFFE_MEAN_BGR[1], 10 - VGG16_CAFFE_MEAN_BGR[2]].map(Math.fround));
  out.dispose();
});

test('loader errors name the layer, the weight and both shapes, and assign nothing', async () => {
  const conv = (name: string, cin: number, cout: number): LayerSpec => ({
    name,
    weights: [
      { name: `${name}_W_1:0`, shape: [3, 3, cin, cout], values: uniform(9 * cin * cout, 0.1, 7) },
      { name: `${name}_b_1:0`, shape: [cout], values: uniform(cout, 0.1, 8) },
    ],
  });
  const model = buildVgg16Base({ inputSize: 32 });
  const before = model.getLayer('block1_conv1').getWeights()[0].dataSync().slice(0, 4);

  const wrongShape = join(dir, 'wrong-shape.h5');
  writeKerasH5(wrongShape, [conv('block1_conv1', 3, 64), conv('block1_conv2', 64, 32)]);
  await assert.rejects(loadVgg16Weights(model, wrongShape), /kernel "block1_conv2_W_1:0" of layer "block1_conv2" to have shape \[3,3,64,64\] but received \[3,3,64,32\]/);

  const missing = join(dir, 'missing-layer.h5');
  writeKerasH5(missing, [conv('block1_conv1', 3, 64)]);
  await assert.rejects(loadVgg16Weights(model, missing), /Expected layer "block1_conv2" in .*missing-layer\.h5 but its layer_names are: block1_conv1/);

  await assert.rejects(loadVgg16Weights(model, join(dir, 'nope.h5')), /Expected a Keras HDF5 weights file at .*nope\.h5 but there is no such file/);
  assert.deepEqual(model.getLayer('block1_conv1').getWeights()[0].dataSync().slice(0, 4), before, 'a failed load assigns nothing');
  model.dispose();
});
