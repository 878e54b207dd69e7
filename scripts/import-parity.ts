/**
 * Import parity of the int8 MobileNetV2 over the paintings: onnxruntime-node running the ONNX file
 * against its TF.js imports (export/convert), ImageNet top-1 agreement and logits.
 *
 *   npx tsx scripts/import-parity.ts [--data ../shared/paintings] [--weights ../shared/weights] [--limit N] [--batch 16]
 *
 * onnxruntime references, on the same normalised `[N,3,224,224]` batches:
 * - `int8 file`: the original QOperator file, as onnxruntime runs it on this CPU (on x86 with AVX2
 *   and no VNNI its u8·s8 kernels saturate pairs of products to int16: see
 *   export/convert/avx2-saturation.ts);
 * - `int8 spec`: the same file with its int8 weights stored as uint8 + 128 (withUint8Weights): same
 *   real model, but onnxruntime's exact u8·u8 kernels, i.e. the int8 arithmetic the ONNX spec
 *   defines (what onnxruntime computes for the original file on VNNI CPUs);
 * - `float`: the dequantised float graph (dequantizeModel);
 * - `qdq`: the dequantised graph with QuantizeLinear -> DequantizeLinear on every activation
 *   (graph optimisations off): the 8-bit rounding, but float accumulation. Its agreement with
 *   `int8 spec` shows what rounding alone, without exact accumulators, achieves.
 * TF.js models (WASM or native backend, whichever training/backend.ts picks):
 * - `exact/spec`: importOnnxToTfjs default (int8 'exact', arithmetic 'spec');
 * - `exact/ort-avx2`: int8 'exact' with onnxruntime's AVX2 pair saturation;
 * - `float`: int8 'float' (the dequantised graph, for fine-tuning).
 *
 * Logits of the int8 models are on the output's 8-bit grid (steps of 0.16); "identical" counts
 * images whose 1000 logits are equal to the last bit.
 *
 * Sensitivity: how often each onnxruntime model's top-1 changes when one input value (the centre
 * pixel's red channel) moves by one step of the model's input quantisation, i.e. the smallest
 * change the int8 model can see. It bounds the top-1 agreement any implementation that is not
 * bit-identical can expect.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { dequantizeModel } from '../export/convert/dequantize.js';
import { argmaxRows, normalizedBatch } from '../export/convert/images.js';
import { onnxruntimeInt8Arithmetic, withUint8Weights } from '../export/convert/int8-reference.js';
import { constValues } from '../export/convert/onnx-values.js';
import { importOnnxToTfjs, type ImportResult } from '../export/convert/onnx-to-tfjs.js';
import { decodeModel, encodeModel } from '../src/onnx/model.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { initTrainingBackend } from '../training/backend.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: resolve(PACKAGE_ROOT, '../shared/paintings') },
    weights: { type: 'string', default: resolve(PACKAGE_ROOT, '../shared/weights') },
    limit: { type: 'string' },
    batch: { type: 'string', default: '16' },
  },
});
const K = 1000;
const spec = DEFAULT_PREPROCESS;
const backend = await initTrainingBackend();
const bytes = await readFile(join(values.weights!, 'mobilenetv2-12-int8.onnx'));
const source = decodeModel(bytes);
const cpuArithmetic = onnxruntimeInt8Arithmetic();

const tfjs: Record<string, ImportResult> = {
  'exact/spec': await importOnnxToTfjs(source),
  'exact/ort-avx2': await importOnnxToTfjs(source, { arithmetic: 'ort-avx2' }),
  float: await importOnnxToTfjs(source, { int8: 'float' }),
};
const opts = { intraOpNumThreads: 1 };
const onnx: Record<string, ort.InferenceSession> = {
  'int8 file': await ort.InferenceSession.create(bytes, opts),
  'int8 spec': await ort.InferenceSession.create(encodeModel(withUint8Weights(source)), opts),
  float: await ort.InferenceSession.create(encodeModel(dequantizeModel(source).model), opts),
  qdq: await ort.InferenceSession.create(encodeModel(dequantizeModel(source, { qdq: true }).model), { ...opts, graphOptimizationLevel: 'disabled' }),
};

/** [label, left, right]: `tfjs:` / `ort:` prefixes name the model. */
const COMPARISONS: Array<[string, string, string]> = [
  ['TF.js default import (exact/spec) vs int8 file', 'tfjs:exact/spec', 'ort:int8 file'],
  ['TF.js exact/spec vs int8 spec (uint8 weights)', 'tfjs:exact/spec', 'ort:int8 spec'],
  ['TF.js exact/ort-avx2 vs int8 file', 'tfjs:exact/ort-avx2', 'ort:int8 file'],
  ['TF.js float vs dequantised float', 'tfjs:float', 'ort:float'],
  ['TF.js float vs int8 file', 'tfjs:float', 'ort:int8 file'],
  ['onnxruntime: int8 file vs int8 spec', 'ort:int8 file', 'ort:int8 spec'],
  ['onnxruntime: int8 spec vs dequantised float', 'ort:int8 spec', 'ort:float'],
  ['onnxruntime: float with 8-bit rounding (qdq) vs int8 spec', 'ort:qdq', 'ort:int8 spec'],
];
const stats = COMPARISONS.map(() => ({ top1: 0, identical: 0, maxDiff: 0, sumDiff: 0 }));
/** Scale of the graph input's QuantizeLinear: one step of the int8 model's input grid. */
const inputStep = (() => {
  const q = source.graph.node.find((n) => n.op_type === 'QuantizeLinear' && n.input[0] === source.graph.input[0].name);
  const scale = q && source.graph.initializer.find((t) => t.name === q.input[1]);
  if (!scale) throw new Error('The model has no QuantizeLinear on its input');
  return constValues(scale).values[0];
})();
const sensitivity: Record<string, number> = Object.fromEntries(Object.keys(onnx).map((k) => [k, 0]));

const manifest = (await readFile(join(values.data!, 'manifest.csv'), 'utf8')).trim().split('\n').slice(1).map((l) => l.split(',')[0]);
const files = manifest.slice(0, values.limit ? Number(values.limit) : undefined).map((f) => join(values.data!, f));
const batchSize = Number(values.batch);
console.log(`backend ${backend.name}; onnxruntime-node ${ort.env.versions.common}; this CPU's onnxruntime int8 arithmetic: ${cpuArithmetic}; ${files.length} paintings`);
for (const [name, r] of Object.entries(tfjs)) console.log(`TF.js ${name}:\n  ${r.notes.join('\n  ')}`);

const predict = (model: tf.LayersModel, nhwc: Float32Array, n: number): Float32Array =>
  tf.tidy(() => (model.predict(tf.tensor4d(nhwc, [n, spec.height, spec.width, 3])) as tf.Tensor).dataSync() as Float32Array).slice();

let n = 0;
const t0 = performance.now();
for (let i = 0; i < files.length; i += batchSize) {
  const b = await normalizedBatch(files.slice(i, i + batchSize), spec);
  const out: Record<string, Float32Array> = {};
  for (const [name, r] of Object.entries(tfjs)) out[`tfjs:${name}`] = predict(r.model, b.nhwc, b.count);
  const feeds = { input: new ort.Tensor('float32', b.nchw, [b.count, 3, spec.height, spec.width]) };
  for (const [name, s] of Object.entries(onnx)) out[`ort:${name}`] = (await s.run(feeds)).output.data as Float32Array;
  const top1 = Object.fromEntries(Object.entries(out).map(([k, v]) => [k, argmaxRows(v, K)]));
  const nudged = b.nchw.slice();
  const plane = spec.height * spec.width;
  for (let r = 0; r < b.count; r++) nudged[r * 3 * plane + (spec.height >> 1) * spec.width + (spec.width >> 1)] += inputStep;
  for (const [name, s] of Object.entries(onnx)) {
    const moved = argmaxRows((await s.run({ input: new ort.Tensor('float32', nudged, feeds.input.dims as number[]) })).output.data as Float32Array, K);
    sensitivity[name] += moved.filter((c, r) => c !== top1[`ort:${name}`][r]).length;
  }
  COMPARISONS.forEach(([, left, right], c) => {
    for (let r = 0; r < b.count; r++) {
      stats[c].top1 += top1[left][r] === top1[right][r] ? 1 : 0;
      let rowMax = 0;
      let rowSum = 0;
      for (let j = r * K; j < (r + 1) * K; j++) {
        const d = Math.abs(out[left][j] - out[right][j]);
        rowMax = Math.max(rowMax, d);
        rowSum += d;
      }
      stats[c].identical += rowMax === 0 ? 1 : 0;
      stats[c].maxDiff = Math.max(stats[c].maxDiff, rowMax);
      stats[c].sumDiff += rowSum / K;
    }
  });
  n += b.count;
  if ((i / batchSize) % 20 === 0) console.log(`  ${n}/${files.length}  default import vs int8 file ${((stats[0].top1 / n) * 100).toFixed(1)}%, exact/spec vs int8 spec ${((stats[1].top1 / n) * 100).toFixed(1)}%  ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

const pct = (k: number) => `${((k / n) * 100).toFixed(2).padStart(6)}% (${k}/${n})`;
const width = Math.max(...COMPARISONS.map(([label]) => label.length));
console.log(`\nImageNet top-1 agreement and logits, ${n} paintings (onnxruntime int8 arithmetic on this CPU: ${cpuArithmetic}):`);
console.log(`  ${'comparison'.padEnd(width)}  top-1 agreement        identical logits       max |Δlogit|  mean |Δlogit|`);
COMPARISONS.forEach(([label], c) => {
  const s = stats[c];
  console.log(`  ${label.padEnd(width)}  ${pct(s.top1)}  ${pct(s.identical)}  ${s.maxDiff.toExponential(2).padStart(12)}  ${(s.sumDiff / n).toExponential(2).padStart(13)}`);
});

console.log(`\nSensitivity: top-1 changed by moving one input value (centre pixel, red) by one input step (${inputStep.toPrecision(5)}):`);
for (const [name, k] of Object.entries(sensitivity)) console.log(`  onnxruntime ${name.padEnd(9)} ${pct(k)}`);

const labels = (await readFile(join(values.weights!, 'imagenet-labels.txt'), 'utf8')).split('\n');
const eagle = await normalizedBatch([join(values.weights!, 'imagenet-samples', 'eagle.jpg')], spec);
for (const [name, r] of Object.entries(tfjs)) {
  const [cls] = argmaxRows(predict(r.model, eagle.nhwc, 1), K);
  console.log(`eagle.jpg, TF.js ${name}: class ${cls} (${labels[cls]})`);
}
console.log(`${((performance.now() - t0) / 1000).toFixed(0)} s`);
for (const r of Object.values(tfjs)) r.model.dispose();
await Promise.all(Object.values(onnx).map((s) => s.release()));
