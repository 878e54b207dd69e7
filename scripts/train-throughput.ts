/**
 * Training throughput (images/s) per model and TF.js backend, on random pixels, with a time bound.
 *
 *   npx tsx scripts/train-throughput.ts [--models baseline,vgg16] [--backends wasm,cpu]
 *     [--size 64] [--batch 4] [--seconds 20] [--classes 11]
 *     [--cpu-models baseline] [--cpu-size 48] [--cpu-batch 1]
 *
 * Per (model, backend): build, one warm-up step (untimed; skipped on 'cpu'), then training steps
 * until `--seconds` have passed (at least one). The 'cpu' backend runs its own, smaller
 * configuration (`--cpu-*`), since one baseline step there at 64x64, batch 4 already takes minutes
 * on 2 shared cores. Prints wall-clock images/s and the process CPU seconds per step
 * (user+sys: comparable across runs on a shared machine, where wall time is not). On the WASM
 * backend the gradient kernels of training/kernels are registered first. The pure-JS CPU backend
 * is very slow at convolution gradients (374 s per 150x150 baseline step with batch 10), so the
 * defaults are a tiny run; a single step cannot be interrupted, so `--seconds` bounds the number
 * of steps, not the length of one.
 */
import * as tf from '@tensorflow/tfjs';
import { parseArgs } from 'node:util';
import { initTrainingBackend, type TrainingBackend } from '../training/backend.js';
import { registerWasmGradientKernels } from '../training/kernels/index.js';
import { buildBaselineCnn } from '../training/models/baseline.js';
import { buildVgg16Base } from '../training/models/vgg16.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'baseline,vgg16' },
    backends: { type: 'string', default: 'wasm,cpu' },
    size: { type: 'string', default: '64' },
    batch: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '20' },
    classes: { type: 'string', default: '11' },
    'cpu-models': { type: 'string', default: 'baseline' },
    'cpu-size': { type: 'string', default: '48' },
    'cpu-batch': { type: 'string', default: '1' },
  },
});
let size = positiveInt(values.size!, 'size');
let batch = positiveInt(values.batch!, 'batch');
const seconds = Number(values.seconds);
const classes = positiveInt(values.classes!, 'classes');
const MODELS = ['baseline', 'vgg16'] as const;
type ModelName = (typeof MODELS)[number];

function positiveInt(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`Expected --${name} a positive integer but received ${JSON.stringify(text)}`);
  return n;
}

/** A trainable model: the baseline CNN, or the VGG16 base with the slides' dense head (Flatten, Dense 256, Dropout 0.5, softmax). */
function build(name: ModelName): tf.LayersModel {
  if (name === 'baseline') return buildBaselineCnn({ inputSize: size, classes });
  const base = buildVgg16Base({ inputSize: size });
  const model = tf.sequential({ name: 'vgg16_finetune' });
  model.add(base);
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units: 256, activation: 'relu' }));
  model.add(tf.layers.dropout({ rate: 0.5 }));
  model.add(tf.layers.dense({ units: classes, activation: 'softmax' }));
  model.compile({ optimizer: tf.train.rmsprop(1e-5), loss: 'categoricalCrossentropy' });
  return model;
}

function modelList(text: string, option: string): ModelName[] {
  const list = text.split(',').filter(Boolean) as ModelName[];
  for (const m of list) if (!MODELS.includes(m)) throw new Error(`Expected --${option} among ${MODELS.join(', ')} but received ${m}`);
  return list;
}
const models = modelList(values.models!, 'models');
const cpuModels = modelList(values['cpu-models']!, 'cpu-models');
const backends = values.backends!.split(',') as TrainingBackend[];
const wasmConfig = { size, batch };
const cpuConfig = { size: positiveInt(values['cpu-size']!, 'cpu-size'), batch: positiveInt(values['cpu-batch']!, 'cpu-batch') };

console.log(`training throughput: ${classes} classes, ~${seconds} s per run`);
console.log('model     backend  size  batch  steps  s/step(wall)  cpu-s/step  images/s');
for (const backend of backends) {
  await initTrainingBackend(backend);
  if (backend === 'wasm') registerWasmGradientKernels();
  ({ size, batch } = backend === 'cpu' ? cpuConfig : wasmConfig);
  for (const name of backend === 'cpu' ? cpuModels : models) {
    const model = build(name);
    const x = tf.randomUniform([batch, size, size, 3], 0, 255);
    const y = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % classes), 'int32'), classes);
    if (backend !== 'cpu') await model.trainOnBatch(x, y); // warm-up: compiles kernels, allocates optimizer slots
    let steps = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    do {
      await model.trainOnBatch(x, y);
      steps++;
    } while (performance.now() - t0 < seconds * 1000);
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuPerStep = (cpu.user + cpu.system) / 1e6 / steps;
    console.log(`${name.padEnd(9)} ${backend.padEnd(8)} ${String(size).padStart(4)}  ${String(batch).padStart(5)}  ${String(steps).padStart(5)}  ${(wall / steps).toFixed(2).padStart(12)}  ${cpuPerStep.toFixed(2).padStart(10)}  ${((steps * batch) / wall).toFixed(2).padStart(8)}`);
    tf.dispose([x, y]);
    model.dispose();
  }
}
