/**
 * In-graph style statistics (export/style.ts) against a reference computed in TypeScript from the
 * same dequantised feature map, on real paintings.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { prependPreprocessing } from '../export/base.js';
import { node, prune, valueInfo } from '../export/graph.js';
import { MOBILENETV2_STYLE_LAYERS, buildStyleFeatureModel, styleFeatureDim } from '../export/style.js';
import { decodeModel, encodeModel } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { BASE_WEIGHTS } from '../src/weights/base-weights.js';
import { initTrainingBackend } from '../training/backend.js';
import { WEIGHTS, paintingOf } from './fixtures.js';

const INFO = BASE_WEIGHTS['mobilenetv2-12-int8'];

/** Reference: mean, population std, and signed-sqrt upper-triangle Gram of x [C,H*W]. */
function referenceStats(x: Float32Array, c: number, hw: number, gram: boolean): number[] {
  const out: number[] = [];
  const means: number[] = [];
  for (let k = 0; k < c; k++) {
    let s = 0;
    for (let i = 0; i < hw; i++) s += x[k * hw + i];
    means.push(s / hw);
  }
  const stds = means.map((m, k) => {
    let v = 0;
    for (let i = 0; i < hw; i++) v += (x[k * hw + i] - m) ** 2;
    return Math.sqrt(v / hw + 1e-6);
  });
  out.push(...means, ...stds);
  if (gram) {
    for (let a = 0; a < c; a++) {
      for (let b = a; b < c; b++) {
        let g = 0;
        for (let i = 0; i < hw; i++) g += x[a * hw + i] * x[b * hw + i];
        g /= hw;
        out.push(Math.sign(g) * Math.sqrt(Math.abs(g)));
      }
    }
  }
  return out;
}

test('style statistics in the ONNX graph match a TypeScript reference on real paintings', async () => {
  const base = decodeModel(await readFile(join(WEIGHTS, 'mobilenetv2-12-int8.onnx')));
  const layer = { tensor: '365', channels: 32, gram: true };
  const styleModel = buildStyleFeatureModel(base, INFO, DEFAULT_PREPROCESS, [layer]);
  // The same map, dequantised, as a plain output.
  const mapModel = structuredClone(base);
  prependPreprocessing(mapModel, INFO.inputName, DEFAULT_PREPROCESS);
  mapModel.graph.node.push(node('DequantizeLinear', ['365_quantized', '365_scale', '365_zero_point'], ['map'], 'map'));
  mapModel.graph.output = [valueInfo('map', DataType.FLOAT, ['N', 32, 28, 28])];
  prune(mapModel.graph, ['map']);
  const [style, map] = await Promise.all([ort.InferenceSession.create(encodeModel(styleModel)), ort.InferenceSession.create(encodeModel(mapModel))]);
  for (const artist of ['claude-monet', 'vincent-van-gogh', 'edgar-degas']) {
    const pixels = await decodeImage(await readFile(paintingOf(artist)), DEFAULT_PREPROCESS);
    const feeds = { image: new ort.Tensor('uint8', pixels, [1, 224, 224, 3]) };
    const got = (await style.run(feeds)).features.data as Float32Array;
    const x = (await map.run(feeds)).map.data as Float32Array;
    const want = referenceStats(x, 32, 28 * 28, true);
    assert.equal(got.length, styleFeatureDim([layer]));
    assert.equal(got.length, want.length);
    // fp32 reductions over 784 positions vs float64 reference: relative error well under 1e-4.
    const scale = Math.max(...want.map(Math.abs));
    const maxDiff = want.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i])), 0);
    assert.ok(maxDiff / scale < 1e-4, `${artist}: max diff ${maxDiff} (scale ${scale})`);
    assert.ok(want.slice(32, 64).some((s) => s > 0.01), 'the map is not constant: std must be informative');
  }
  await Promise.all([style.release(), map.release()]);
});

test('the MobileNetV2 style layers exist in the base and give a 5,920-d feature vector', async () => {
  const base = decodeModel(await readFile(join(WEIGHTS, 'mobilenetv2-12-int8.onnx')));
  const model = buildStyleFeatureModel(base, INFO, DEFAULT_PREPROCESS, MOBILENETV2_STYLE_LAYERS);
  const session = await ort.InferenceSession.create(encodeModel(model));
  const pixels = await decodeImage(await readFile(paintingOf('alfred-sisley')), DEFAULT_PREPROCESS);
  const out = await session.run({ image: new ort.Tensor('uint8', pixels, [1, 224, 224, 3]) });
  assert.deepEqual(out.features.dims, [1, 5920]);
  assert.ok((out.features.data as Float32Array).every(Number.isFinite));
  await session.release();
});

test('WASM BatchMatMul override: transposed products equal explicit transposes', async () => {
  await initTrainingBackend();
  const a = tf.randomNormal([2, 7, 5], 0, 1, 'float32', 1);
  const b = tf.randomNormal([2, 4, 7], 0, 1, 'float32', 2);
  const viaFlags = tf.matMul(a, b, true, true);
  const explicit = tf.matMul(tf.transpose(a, [0, 2, 1]), tf.transpose(b, [0, 2, 1]));
  assert.deepEqual(viaFlags.shape, [2, 5, 4]);
  const diff = tf.max(tf.abs(tf.sub(viaFlags, explicit))).dataSync()[0];
  assert.ok(diff < 1e-6, `max diff ${diff}`);
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    tf.matMul(a, b.reshape([2, 7, 4]), true, false);
  });
  assert.equal(tf.memory().numTensors, before, 'no tensors leak');
});
