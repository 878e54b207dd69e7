/**
 * Model conversion both ways (export/convert), on the real int8 MobileNetV2 and real paintings.
 *
 * Tolerances, and why:
 * - Exact int8 import (default for QOperator models) vs onnxruntime's int8 kernels: **0**, logits
 *   identical to the last bit. Both sides compute the same integers (float32 holds every accumulator
 *   of this model exactly: the importer checks the bound) and the same float32 requantisation
 *   (multiply by the same float32 multiplier, round half to even), so any difference is a bug. It
 *   matters: this int8 model is so sensitive that moving one of its 150,528 input values by one
 *   8-bit step changes onnxruntime's top-1 on 18% of the 3,300 paintings (scripts/import-parity.ts),
 *   so "close" logits would not mean a close top-1 agreement. The reference is
 *   onnxruntime on the same model with its weights stored as uint8 (spec arithmetic on every CPU),
 *   and onnxruntime on the original file with the arithmetic this CPU's onnxruntime uses
 *   (`onnxruntimeInt8Arithmetic`: int16 pair saturation on AVX2 without VNNI).
 * - TF.js float import vs the dequantised float ONNX graph in onnxruntime: the same fp32
 *   arithmetic in two engines (different summation order, WASM vs MLAS kernels); logits are O(10),
 *   observed max |diff| 4e-5 over 3,300 paintings, so 1e-3 fails only on a real conversion error (a wrong weight layout
 *   shifts logits by whole units).
 * - TF.js -> ONNX export of fp32 graphs: max |diff| <= 1e-4 (observed ~1e-6 on probabilities/small
 *   activations, ~2e-5 on MobileNetV2 logits of magnitude ~20).
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { clipLayer } from '../export/convert/clip-layer.js';
import { dequantizeModel } from '../export/convert/dequantize.js';
import { absDiff, argmaxRows, normalizedBatch } from '../export/convert/images.js';
import { PairSaturationLayer, QLinearAddLayer, qlinearAddTable, RequantizeLayer } from '../export/convert/int8-layers.js';
import { onnxruntimeInt8Arithmetic, withUint8Weights } from '../export/convert/int8-reference.js';
import { constValues } from '../export/convert/onnx-values.js';
import { importOnnxToTfjs, type ImportResult } from '../export/convert/onnx-to-tfjs.js';
import { samePadding } from '../export/convert/padding.js';
import { exportTfjsToOnnx } from '../export/convert/tfjs-to-onnx.js';
import { floatTensor, node, valueInfo } from '../export/graph.js';
import { decodeModel, encodeModel, type ModelProto } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { initTrainingBackend } from '../training/backend.js';
import { PAINTINGS, WEIGHTS } from './fixtures.js';

const K = 1000;
const SPEC = DEFAULT_PREPROCESS;
let source: ModelProto;
/** Default import of the int8 model: exact int8 arithmetic, spec accumulators. */
let imported: ImportResult;
/** The dequantised float import (int8: 'float'). */
let floatImport: ImportResult;

/** `perArtist` paintings (first by name) of each of `artists` artists. */
function paintings(artists: number, perArtist: number): string[] {
  const dirs = readdirSync(PAINTINGS, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort().slice(0, artists);
  return dirs.flatMap((a) => readdirSync(join(PAINTINGS, a)).filter((f) => f.endsWith('.jpg')).sort().slice(0, perArtist).map((f) => join(PAINTINGS, a, f)));
}

function predict(model: tf.LayersModel, nhwc: Float32Array, n: number, h = SPEC.height, w = SPEC.width): Float32Array {
  return tf.tidy(() => (model.predict(tf.tensor4d(nhwc, [n, h, w, 3])) as tf.Tensor).dataSync() as Float32Array).slice();
}

before(async () => {
  await initTrainingBackend();
  source = decodeModel(await readFile(join(WEIGHTS, 'mobilenetv2-12-int8.onnx')));
  imported = await importOnnxToTfjs(source);
  floatImport = await importOnnxToTfjs(source, { int8: 'float' });
});

test('padding: TF "same" pads put the odd pixel at the end', () => {
  assert.deepEqual(samePadding(224, 3, 2), [0, 1]);
  assert.deepEqual(samePadding(224, 3, 1), [1, 1]);
  assert.deepEqual(samePadding(67, 3, 2), [1, 1]);
  assert.deepEqual(samePadding(5, 4, 1), [1, 2]);
  assert.deepEqual(samePadding(7, 3, 1, 2), [2, 2]);
});

test('import int8 MobileNetV2 (default: exact int8 arithmetic): NHWC [N,224,224,3] in, [N,1000] out; eagle.jpg is a bald eagle, dog.jpg a dog', async () => {
  assert.deepEqual(imported.inputShape, [null, 224, 224, 3]);
  assert.deepEqual(imported.model.outputs[0].shape, [null, K]);
  assert.ok(imported.notes.some((n) => /int8 imported exactly .*52 QLinearConv/.test(n)), imported.notes.join('\n'));
  const labels = (await readFile(join(WEIGHTS, 'imagenet-labels.txt'), 'utf8')).split('\n');
  const b = await normalizedBatch(['eagle.jpg', 'dog.jpg'].map((f) => join(WEIGHTS, 'imagenet-samples', f)), SPEC);
  const [eagle, dog] = argmaxRows(predict(imported.model, b.nhwc, 2), K);
  assert.equal(eagle, 22, `eagle.jpg -> ${labels[eagle]}`);
  assert.match(labels[eagle], /^bald eagle/);
  assert.ok(dog >= 151 && dog <= 268, `dog.jpg -> ${labels[dog]} (${dog}) is not a dog breed`);
});

test('exact int8 import on 8 real paintings: logits bit-identical to onnxruntime, spec arithmetic and this CPU\'s', async (t) => {
  const b = await normalizedBatch(paintings(8, 1), SPEC);
  const feeds = { input: new ort.Tensor('float32', b.nchw, [b.count, 3, SPEC.height, SPEC.width]) };
  const run = async (model: ModelProto | string) => {
    const session = typeof model === 'string' ? await ort.InferenceSession.create(model) : await ort.InferenceSession.create(encodeModel(model));
    const y = (await session.run(feeds)).output.data as Float32Array;
    await session.release();
    return y;
  };
  // Spec arithmetic: onnxruntime with the weights stored as uint8 (exact u8·u8 kernels on every CPU).
  const mine = predict(imported.model, b.nhwc, b.count);
  const reference = await run(withUint8Weights(source));
  const spec = absDiff(mine, reference);
  assert.deepEqual(argmaxRows(mine, K), argmaxRows(reference, K));
  assert.equal(spec.max, 0, `max |logit TF.js - onnxruntime (uint8 weights)| = ${spec.max}`);

  // The original file as this CPU's onnxruntime runs it.
  const arithmetic = onnxruntimeInt8Arithmetic();
  const local = arithmetic === 'spec' ? imported : await importOnnxToTfjs(source, { arithmetic });
  const mineLocal = predict(local.model, b.nhwc, b.count);
  const file = await run(join(WEIGHTS, 'mobilenetv2-12-int8.onnx'));
  const d = absDiff(mineLocal, file);
  const fileVsSpec = argmaxRows(file, K).filter((v, i) => v === argmaxRows(reference, K)[i]).length;
  t.diagnostic(`this CPU: onnxruntime int8 arithmetic '${arithmetic}'; the file's top-1 equals the spec arithmetic's on ${fileVsSpec}/${b.count} paintings`);
  assert.deepEqual(argmaxRows(mineLocal, K), argmaxRows(file, K));
  assert.equal(d.max, 0, `max |logit TF.js (${arithmetic}) - onnxruntime (int8 file)| = ${d.max}`);
  if (local !== imported) local.model.dispose();
});

test('float int8 import on 24 real paintings: matches the dequantised float ONNX graph in onnxruntime', async (t) => {
  const files = paintings(8, 3);
  const b = await normalizedBatch(files, SPEC);
  const mine = predict(floatImport.model, b.nhwc, b.count);
  const session = await ort.InferenceSession.create(encodeModel(dequantizeModel(source).model));
  const rf = (await session.run({ input: new ort.Tensor('float32', b.nchw, [b.count, 3, SPEC.height, SPEC.width]) })).output.data as Float32Array;
  await session.release();
  const df = absDiff(mine, rf);
  t.diagnostic(`TF.js float import vs float ONNX: max |Δlogit| ${df.max.toExponential(2)}, mean ${df.mean.toExponential(2)}`);
  assert.ok(df.max <= 1e-3, `max |logit TF.js - float ONNX| = ${df.max}`);
  assert.deepEqual(argmaxRows(mine, K), argmaxRows(rf, K));
});

test('int8 layers: round half to even, QLinearAdd as onnxruntime computes it, int16 pair saturation', async () => {
  const requantize = new RequantizeLayer({ mode: 'divide', factors: [0.5], min: -3, max: 136 });
  const x = tf.tensor2d([[-0.25, 0.25, 0.75, 1.25, 300, -300]]);
  assert.deepEqual(Array.from((requantize.apply(x) as tf.Tensor).dataSync()), [-0, 0, 2, 2, 136, -3]);
  const perChannel = new RequantizeLayer({ mode: 'multiply', factors: [1, 2, 0.5], min: -10, max: 10 });
  assert.deepEqual(Array.from((perChannel.apply(tf.tensor2d([[2.5, 2.5, 2.5]])) as tf.Tensor).dataSync()), [2, 5, 1]);
  assert.throws(() => new RequantizeLayer({ mode: 'divide', factors: [0], min: 0, max: 1 }), /factors must be finite and > 0/);

  // Every QLinearAdd node of the model, both evaluation paths, all 65,536 input pairs.
  const inits = new Map(source.graph.initializer.map((i) => [i.name ?? '', i]));
  const value = (name: string) => constValues(inits.get(name)!).values[0];
  const pairs = tf.tidy(() => {
    const a = tf.tile(tf.range(0, 256).reshape([256, 1]), [1, 256]).reshape([1, 65536]);
    return [a, tf.tile(tf.range(0, 256), [256]).reshape([1, 65536])];
  });
  let elementwise = 0;
  for (const n of source.graph.node.filter((node) => node.op_type === 'QLinearAdd' && !inits.has(node.input[3]))) {
    const [a, b, c] = [1, 4, 6].map((i) => ({ scale: value(n.input[i]), zeroPoint: value(n.input[i + 1]) }));
    const layer = new QLinearAddLayer({ a, b, c });
    elementwise += layer.elementwise ? 1 : 0;
    const out = tf.tidy(() => (layer.apply([tf.sub(pairs[0], a.zeroPoint), tf.sub(pairs[1], b.zeroPoint)]) as tf.Tensor).dataSync());
    // + 0: rounding can give -0, which equals 0 everywhere but in deepEqual.
    assert.deepEqual(Array.from(out, (v) => v + 0), Array.from(qlinearAddTable(a, b, c), (v) => v + 0), `${n.name} (${layer.elementwise ? 'element-wise' : 'table'})`);
    layer.dispose();
  }
  assert.equal(elementwise, 9, 'element-wise QLinearAdd layers among the 10 tensor+tensor nodes');

  // Pair saturation against a direct computation: raw u8 a, int8 w, pairs (0,1) and (2,3) into 2 channels.
  const zp = 10;
  const sat = new PairSaturationLayer({ k0: [0, 2, 0], k1: [1, 3, 1], w0: [127, -128, 100], w1: [120, -100, 60], out: [0, 1, 1], upper: [true, false, true], zeroPoint: zp, units: 2 });
  const raw = [[255, 255, 255, 255, 0], [130, 200, 250, 240, 9], [0, 0, 0, 0, 0]];
  const got = (sat.apply(tf.tensor2d(raw.map((r) => r.map((v) => v - zp)))) as tf.Tensor).arraySync() as number[][];
  const excess = (p: number) => Math.min(32767, Math.max(-32768, p)) - p;
  const expected = raw.map((a) => [excess(a[0] * 127 + a[1] * 120), excess(a[2] * -128 + a[3] * -100) + excess(a[0] * 100 + a[1] * 60)]);
  assert.deepEqual(got, expected);
  assert.ok(expected[0][0] < 0 && expected[0][1] > 0, 'the case saturates both ways');
  tf.dispose(pairs);
});

test('QLinearAdd table equals onnxruntime on all 65,536 input pairs of each QLinearAdd node', async () => {
  const inits = new Map(source.graph.initializer.map((i) => [i.name ?? '', i]));
  const value = (name: string) => constValues(inits.get(name)!).values[0];
  const a = Uint8Array.from({ length: 65536 }, (_, i) => i >> 8);
  const b = Uint8Array.from({ length: 65536 }, (_, i) => i & 255);
  const vi = (name: string) => ({ name, type: { tensor_type: { elem_type: DataType.UINT8, shape: { dim: [{ dim_value: 65536 }] } } } });
  for (const n of source.graph.node.filter((node) => node.op_type === 'QLinearAdd')) {
    const graph = { name: 'add', node: [structuredClone(n)], initializer: source.graph.initializer.filter((i) => n.input.includes(i.name ?? '') && i.name !== n.input[3]), input: [vi(n.input[0]), vi(n.input[3])], output: [vi(n.output[0])] };
    const session = await ort.InferenceSession.create(encodeModel({ ...source, graph }));
    const out = (await session.run({ [n.input[0]]: new ort.Tensor('uint8', a, [65536]), [n.input[3]]: new ort.Tensor('uint8', b, [65536]) }))[n.output[0]].data as Uint8Array;
    await session.release();
    const [pa, pb, pc] = [1, 4, 6].map((i) => ({ scale: value(n.input[i]), zeroPoint: value(n.input[i + 1]) }));
    const table = qlinearAddTable(pa, pb, pc);
    const wrong = out.filter((q, i) => q - pc.zeroPoint !== table[i]).length;
    assert.equal(wrong, 0, `${n.name}: ${wrong} of 65,536 pairs differ from onnxruntime`);
  }
});

test('int8 layers survive save and load', async () => {
  const input = tf.input({ shape: [4] });
  const q = new RequantizeLayer({ mode: 'divide', factors: [0.1], min: -10, max: 245 }).apply(input) as tf.SymbolicTensor;
  const add = new QLinearAddLayer({ a: { scale: 0.1, zeroPoint: 10 }, b: { scale: 0.2, zeroPoint: 0 }, c: { scale: 0.25, zeroPoint: 128 }, constantB: [0, 255, 7, 100] }).apply(q) as tf.SymbolicTensor;
  const sat = new PairSaturationLayer({ k0: [0], k1: [1], w0: [127], w1: [127], out: [1], upper: [true], zeroPoint: 10, units: 2 }).apply(q) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: [add, sat] });
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    saved = artifacts;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
  const x = tf.tensor2d([[24.5, -3, 0.26, 13.1], [-1, 1, 2, 3]]);
  const before = (model.predict(x) as tf.Tensor[]).map((t) => t.arraySync());
  const after = (loaded.predict(x) as tf.Tensor[]).map((t) => t.arraySync());
  assert.deepEqual(after, before);
});

test('int8 import options are checked; the CPU arithmetic is read from /proc/cpuinfo flags', async () => {
  await assert.rejects(importOnnxToTfjs(source, { int8: 'fake' as never }), /int8 must be 'exact' or 'float', got "fake"/);
  await assert.rejects(importOnnxToTfjs(source, { arithmetic: 'avx' as never }), /arithmetic must be 'spec' or 'ort-avx2', got "avx"/);
  await assert.rejects(importOnnxToTfjs(source, { clip: 'relu' }), /clip applies to int8: 'float' imports only/);
  await assert.rejects(importOnnxToTfjs(source, { int8: 'float', arithmetic: 'ort-avx2' }), /arithmetic applies to int8: 'exact' imports only/);
  const qdq = dequantizeModel(source, { qdq: true }).model;
  await assert.rejects(importOnnxToTfjs(qdq, { int8: 'exact' }), /needs a QOperator model .* use int8: 'float'/);
  if (process.arch === 'x64') {
    const dir = mkdtempSync(join(tmpdir(), 'cpuinfo-'));
    const cpu = (flags: string) => {
      writeFileSync(join(dir, 'cpuinfo'), `processor\t: 0\nflags\t\t: fpu sse2 ${flags}\n`);
      return onnxruntimeInt8Arithmetic(join(dir, 'cpuinfo'));
    };
    assert.equal(cpu('avx avx2 fma'), 'ort-avx2');
    assert.equal(cpu('avx2 avx512f avx512bw'), 'ort-avx2');
    assert.equal(cpu('avx2 avx512f avx512_vnni'), 'spec');
    assert.equal(cpu('avx2 avx_vnni'), 'spec');
    assert.equal(cpu('sse4_2'), 'spec');
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A small random-weight CNN using every layer the exporter supports, with two outputs. */
function everyLayerModel(size: number): tf.LayersModel {
  const L = tf.layers;
  const ap = (layer: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]) => layer.apply(x) as tf.SymbolicTensor;
  const input = tf.input({ shape: [size, size, 3] });
  let x = ap(L.rescaling({ scale: 0.5, offset: 0.1 }), input);
  x = ap(L.zeroPadding2d({ padding: [[1, 2], [0, 1]] }), x);
  x = ap(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu' }), x);
  x = ap(L.batchNormalization(), x);
  x = ap(L.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthMultiplier: 2, activation: 'relu6' }), x);
  const a = ap(L.conv2d({ filters: 8, kernelSize: 1, activation: 'swish' }), x);
  const b = ap(L.conv2d({ filters: 8, kernelSize: 3, padding: 'same', dilationRate: 2, activation: 'elu' }), x);
  x = ap(L.add(), [a, b]);
  x = ap(L.reLU({ maxValue: 6 }), x);
  x = ap(L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }), x);
  x = ap(L.averagePooling2d({ poolSize: 2, strides: 2, padding: 'same' }), x);
  const c1 = ap(L.conv2d({ filters: 4, kernelSize: 3, activation: 'sigmoid' }), x);
  const c2 = ap(L.separableConv2d({ filters: 4, kernelSize: 3, activation: 'tanh' }), x);
  x = ap(L.concatenate(), [c1, c2]);
  x = ap(L.leakyReLU({ alpha: 0.2 }), x);
  x = ap(L.activation({ activation: 'selu' }), x);
  x = ap(L.activation({ activation: 'softplus' }), x);
  x = ap(L.maxPooling2d({ poolSize: 2, padding: 'valid' }), x);
  x = ap(L.averagePooling2d({ poolSize: 2, strides: 1, padding: 'valid' }), x);
  x = ap(L.elu(), x); // tfjs 4.22 refuses alpha != 1 for the ELU layer
  x = ap(L.reLU(), x);
  x = ap(clipLayer({ min: -0.5, max: 2 }), x);
  const gap = ap(L.globalAveragePooling2d({}), x);
  const gmp = ap(L.globalMaxPooling2d({}), x);
  let f = ap(L.flatten(), x);
  f = ap(L.dropout({ rate: 0.5 }), f);
  f = ap(L.dense({ units: 16, activation: 'gelu' }), f);
  f = ap(L.batchNormalization(), f);
  let y = ap(L.concatenate(), [gap, gmp, f]);
  y = ap(L.dense({ units: 12, activation: 'hardSigmoid' }), y);
  y = ap(L.dense({ units: 12, activation: 'mish' }), y);
  const logits = ap(L.dense({ units: 5, name: 'logits' }), y);
  const probs = ap(L.softmax(), logits);
  const model = tf.model({ inputs: input, outputs: [logits, probs] });
  const names = model.weights.map((v) => v.name);
  model.setWeights(model.getWeights().map((w, i) => (names[i].includes('variance') ? tf.randomUniform(w.shape, 0.5, 2, 'float32', i) : tf.randomNormal(w.shape, 0, 0.3, 'float32', i))));
  return model;
}

test('export: random CNN with every supported layer, TF.js vs onnxruntime on real paintings, max |diff| <= 1e-4, dynamic batch', async (t) => {
  const size = 67; // odd: exercises asymmetric 'same' pads
  const model = everyLayerModel(size);
  const onnx = exportTfjsToOnnx(model, { inputName: 'image', outputName: 'y' });
  assert.deepEqual(onnx.graph.input.map((v) => v.name), ['image']);
  assert.equal(onnx.graph.input[0].type?.tensor_type?.shape?.dim[0].dim_param, 'N');
  const session = await ort.InferenceSession.create(encodeModel(onnx));
  const files = paintings(3, 2);
  const b = await normalizedBatch(files, { ...SPEC, width: size, height: size });
  const refs = tf.tidy(() => (model.predict(tf.tensor4d(b.nhwc, [b.count, size, size, 3])) as tf.Tensor[]).map((t) => t.dataSync().slice() as Float32Array));
  const out = await session.run({ image: new ort.Tensor('float32', b.nhwc, [b.count, size, size, 3]) });
  const maxDiffs = ['y_0', 'y_1'].map((name, i) => absDiff(out[name].data as Float32Array, refs[i]).max);
  t.diagnostic(`every-layer CNN on ${b.count} paintings: max |diff| logits ${maxDiffs[0].toExponential(2)}, probabilities ${maxDiffs[1].toExponential(2)}; ${onnx.graph.node.length} ONNX nodes`);
  assert.ok(maxDiffs.every((d) => d <= 1e-4), `max |diff| logits ${maxDiffs[0]}, probabilities ${maxDiffs[1]}`);
  // Not degenerate: logits vary across paintings.
  assert.ok(new Set(Array.from(refs[0]).map((v) => v.toFixed(3))).size > 10);
  // Batch of one gives the same row.
  const one = await session.run({ image: new ort.Tensor('float32', b.nhwc.slice(0, size * size * 3), [1, size, size, 3]) });
  assert.ok(absDiff(one.y_0.data as Float32Array, refs[0].slice(0, 5)).max <= 1e-4);
  await session.release();
  model.dispose();
});

test('export: a Sequential dense model and the float import of MobileNetV2 re-exported (fp32), TF.js vs onnxruntime', async (t) => {
  const seq = tf.sequential({ layers: [tf.layers.dense({ inputShape: [6], units: 4, activation: 'tanh' }), tf.layers.dropout({ rate: 0.2 }), tf.layers.dense({ units: 3, activation: 'softmax' })] });
  const xs = tf.randomNormal([5, 6], 0, 1, 'float32', 1).dataSync() as Float32Array;
  const seqSession = await ort.InferenceSession.create(encodeModel(exportTfjsToOnnx(seq)));
  const seqOut = (await seqSession.run({ input: new ort.Tensor('float32', xs, [5, 6]) })).output.data as Float32Array;
  assert.ok(absDiff(seqOut, tf.tidy(() => (seq.predict(tf.tensor2d(xs, [5, 6])) as tf.Tensor).dataSync() as Float32Array)).max <= 1e-6);

  const onnx = exportTfjsToOnnx(floatImport.model);
  const session = await ort.InferenceSession.create(encodeModel(onnx));
  const b = await normalizedBatch(paintings(8, 1), SPEC);
  const mine = predict(floatImport.model, b.nhwc, b.count);
  const out = (await session.run({ input: new ort.Tensor('float32', b.nhwc, [b.count, SPEC.height, SPEC.width, 3]) })).output.data as Float32Array;
  const d = absDiff(out, mine);
  t.diagnostic(`re-exported MobileNetV2: max |Δlogit| ${d.max.toExponential(2)}, mean ${d.mean.toExponential(2)} over ${b.count} paintings`);
  assert.ok(d.max <= 1e-4, `max |Δlogit| = ${d.max}`);
  assert.deepEqual(argmaxRows(out, K), argmaxRows(mine, K));
  await Promise.all([session.release(), seqSession.release()]);
});

test('the Clip layer survives save and load', async () => {
  const model = tf.sequential({ layers: [clipLayer({ inputShape: [3], min: -1, max: 0.5, name: 'clip' })] });
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    saved = artifacts;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
  const y = tf.tidy(() => (loaded.predict(tf.tensor2d([[-3, 0.2, 9]])) as tf.Tensor).dataSync());
  assert.deepEqual(Array.from(y), [-1, Math.fround(0.2), 0.5]);
});

test('unsupported layers and ops are refused by name', async () => {
  const conv1d = tf.sequential({ layers: [tf.layers.conv1d({ inputShape: [8, 2], filters: 2, kernelSize: 3, name: 'my_conv1d' })] });
  assert.throws(() => exportTfjsToOnnx(conv1d), /layer "my_conv1d" \(Conv1D\): layer class Conv1D is not supported/);
  const odd = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 2, activation: 'logSoftmax' as never, name: 'odd' })] });
  assert.throws(() => exportTfjsToOnnx(odd), /layer "odd" \(Dense\): activation "logSoftmax" is not supported/);
  const model: ModelProto = {
    ir_version: 8,
    opset_import: [{ domain: '', version: 13 }],
    graph: {
      name: 'g',
      node: [node('Sin', ['x'], ['y'], 'my_sin')],
      initializer: [floatTensor('unused', [1], [0])],
      input: [valueInfo('x', DataType.FLOAT, ['N', 4])],
      output: [valueInfo('y', DataType.FLOAT, ['N', 4])],
    },
  };
  await assert.rejects(importOnnxToTfjs(model), /ONNX node "my_sin" \(Sin\): op Sin is not supported/);
});
