/**
 * Import parity of the int8 MobileNetV2 over every painting: the ONNX file in onnxruntime-node
 * against its TF.js import (export/convert), ImageNet top-1 and logits.
 *
 *   npx tsx scripts/import-parity.ts [--data ../shared/paintings] [--weights ../shared/weights] [--limit N] [--batch 32]
 *
 * Three references are run on the same normalised `[N,3,224,224]` batches:
 * - `int8`: the original QOperator file (what the product ships);
 * - `float`: the dequantised float ONNX graph (dequantizeModel), which is what the TF.js import
 *   computes, so TF.js vs float isolates conversion error from quantisation error;
 * - `int8-spec`: the dequantised graph with QuantizeLinear/DequantizeLinear on every activation,
 *   graph optimisations off: the int8 arithmetic exactly as the ONNX spec defines it (onnxruntime's
 *   own x86 int8 kernels may deviate from it on CPUs without VNNI, see the report).
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { dequantizeModel } from '../export/convert/dequantize.js';
import { absDiff, argmaxRows, normalizedBatch } from '../export/convert/images.js';
import { importOnnxToTfjs } from '../export/convert/onnx-to-tfjs.js';
import { decodeModel, encodeModel } from '../src/onnx/model.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { initTrainingBackend } from '../training/backend.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: resolve(PACKAGE_ROOT, '../shared/paintings') },
    weights: { type: 'string', default: resolve(PACKAGE_ROOT, '../shared/weights') },
    limit: { type: 'string' },
    batch: { type: 'string', default: '32' },
  },
});
const K = 1000;
const spec = DEFAULT_PREPROCESS;
const backend = await initTrainingBackend();
const bytes = await readFile(join(values.weights!, 'mobilenetv2-12-int8.onnx'));
const source = decodeModel(bytes);
const imported = await importOnnxToTfjs(source);
const opts = { intraOpNumThreads: 1 };
const int8 = await ort.InferenceSession.create(bytes, opts);
const float = await ort.InferenceSession.create(encodeModel(dequantizeModel(source).model), opts);
const spec8 = await ort.InferenceSession.create(encodeModel(dequantizeModel(source, { qdq: true }).model), { ...opts, graphOptimizationLevel: 'disabled' });

const manifest = (await readFile(join(values.data!, 'manifest.csv'), 'utf8')).trim().split('\n').slice(1).map((l) => l.split(',')[0]);
const files = manifest.slice(0, values.limit ? Number(values.limit) : undefined).map((f) => join(values.data!, f));
const batchSize = Number(values.batch);
console.log(`backend ${backend.name}; ${files.length} paintings; notes:\n  ${imported.notes.join('\n  ')}`);

const stats = { n: 0, agreeInt8: 0, int8InTop5: 0, agreeFloat: 0, agreeSpec: 0, specAgreeInt8: 0, maxInt8: 0, sumInt8: 0, maxFloat: 0, sumFloat: 0 };
const top5 = (v: Float32Array, row: number): number[] => Array.from(v.subarray(row * K, (row + 1) * K)).map((x, j) => [x, j]).sort((a, b) => b[0] - a[0]).slice(0, 5).map(([, j]) => j);
const t0 = performance.now();
for (let i = 0; i < files.length; i += batchSize) {
  const paths = files.slice(i, i + batchSize);
  const b = await normalizedBatch(paths, spec);
  const x = tf.tensor4d(b.nhwc, [b.count, spec.height, spec.width, 3]);
  const y = imported.model.predict(x) as tf.Tensor;
  const mine = (await y.data()) as Float32Array;
  tf.dispose([x, y]);
  const feeds = { input: new ort.Tensor('float32', b.nchw, [b.count, 3, spec.height, spec.width]) };
  const r8 = (await int8.run(feeds)).output.data as Float32Array;
  const rf = (await float.run(feeds)).output.data as Float32Array;
  const rs = (await spec8.run(feeds)).output.data as Float32Array;
  const [t1, t8, tfl, ts] = [mine, r8, rf, rs].map((v) => argmaxRows(v, K));
  for (let r = 0; r < b.count; r++) {
    stats.agreeInt8 += t1[r] === t8[r] ? 1 : 0;
    stats.int8InTop5 += top5(mine, r).includes(t8[r]) ? 1 : 0;
    stats.agreeFloat += t1[r] === tfl[r] ? 1 : 0;
    stats.agreeSpec += t1[r] === ts[r] ? 1 : 0;
    stats.specAgreeInt8 += ts[r] === t8[r] ? 1 : 0;
  }
  const d8 = absDiff(mine, r8);
  const df = absDiff(mine, rf);
  stats.maxInt8 = Math.max(stats.maxInt8, d8.max);
  stats.sumInt8 += d8.mean * b.count;
  stats.maxFloat = Math.max(stats.maxFloat, df.max);
  stats.sumFloat += df.mean * b.count;
  stats.n += b.count;
  if ((i / batchSize) % 10 === 0) console.log(`  ${stats.n}/${files.length}  top-1 vs int8 ${(stats.agreeInt8 / stats.n * 100).toFixed(1)}%  ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
const pct = (k: number) => `${(k / stats.n * 100).toFixed(2)}% (${k}/${stats.n})`;
console.log(`
TF.js import vs onnxruntime, ${stats.n} paintings, ImageNet top-1 agreement:
  vs int8 file (ORT)              ${pct(stats.agreeInt8)}   int8 top-1 within TF.js top-5: ${pct(stats.int8InTop5)}
  vs dequantised float (ORT)      ${pct(stats.agreeFloat)}
  vs int8 spec-exact emulation    ${pct(stats.agreeSpec)}
  (int8 spec-exact vs int8 file   ${pct(stats.specAgreeInt8)})
logits |TF.js - int8 file|:   max ${stats.maxInt8.toFixed(3)}  mean ${(stats.sumInt8 / stats.n).toFixed(4)}
logits |TF.js - float ONNX|:  max ${stats.maxFloat.toExponential(2)}  mean ${(stats.sumFloat / stats.n).toExponential(2)}
${((performance.now() - t0) / 1000).toFixed(0)} s`);
await Promise.all([int8.release(), float.release(), spec8.release()]);
