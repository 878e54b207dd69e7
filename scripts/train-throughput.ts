/**
 * Training throughput (images/s) per training rung and TF.js backend, on random inputs of the real
 * shapes, with a time bound per measurement.
 *
 *   npx tsx scripts/train-throughput.ts [--rungs baseline,features,finetune,ensemble,vgg16]
 *     [--backends wasm,cpu,tensorflow] [--size 64] [--batch 20] [--seconds 20] [--classes 11]
 *     [--cpu-rungs baseline] [--cpu-size 48] [--cpu-batch 1]
 *
 * What is timed, per rung (what one epoch of `artist-id train --method <rung>` spends its time on):
 * - `baseline`: training steps of the CNN from scratch at `--size` x `--size`, batch `--batch`.
 * - `features`: (extract) the frozen base's style statistics in onnxruntime (once per image, then
 *   cached; independent of the TF.js backend), and (head) training steps of the softmax-regression
 *   head on 5,920-d features, batch 32.
 * - `finetune`: (extract) the frozen int8 bottom in onnxruntime up to the cut (once per image and
 *   augmented view, cached), and (top) training steps of the imported top (1 block + final conv +
 *   softmax) on the cut activations, batch 16.
 * - `ensemble`: trains nothing (its members are trained by the other rungs); not timed.
 * - `vgg16`: the slides' fine-tuning network (VGG16 conv base + Dense 256 + softmax), for reference.
 *
 * Per (rung, backend): build, one warm-up step (untimed; skipped on 'cpu'), then steps until
 * `--seconds` have passed (at least one). Prints wall-clock images/s and process CPU seconds per step
 * (user+sys: comparable across runs on a shared machine, where wall time is not). The pure-JS 'cpu'
 * backend is very slow at convolution gradients (374 s per 150x150 baseline step with batch 10), so it
 * runs its own small configuration (`--cpu-*`); a single step cannot be interrupted, so `--seconds`
 * bounds the number of steps, not the length of one. A backend that cannot be initialised (e.g.
 * 'tensorflow' without @tensorflow/tfjs-node) is reported and skipped.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { MOBILENETV2_STYLE_LAYERS, buildStyleFeatureModel, styleFeatureDim } from '../export/style.js';
import { createSession } from '../src/inference/session.js';
import { decodeModel, encodeModel, type ModelProto } from '../src/onnx/model.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { BASE_WEIGHTS, resolveBaseWeights } from '../src/weights/base-weights.js';
import { initTrainingBackend, type TrainingBackend } from '../training/backend.js';
import { DEFAULT_HEAD, buildHead } from '../training/head.js';
import { buildBaselineCnn } from '../training/models/baseline.js';
import { buildVgg16Base } from '../training/models/vgg16.js';

const RUNGS = ['baseline', 'features', 'finetune', 'ensemble', 'vgg16'] as const;
type Rung = (typeof RUNGS)[number];

const { values } = parseArgs({
  options: {
    rungs: { type: 'string', default: 'baseline,features,finetune,ensemble' },
    backends: { type: 'string', default: 'wasm,cpu' },
    size: { type: 'string', default: '64' },
    batch: { type: 'string', default: '20' },
    seconds: { type: 'string', default: '20' },
    classes: { type: 'string', default: '11' },
    'cpu-rungs': { type: 'string', default: 'baseline' },
    'cpu-size': { type: 'string', default: '48' },
    'cpu-batch': { type: 'string', default: '1' },
  },
});

function positiveInt(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`Expected --${name} a positive integer but received ${JSON.stringify(text)}`);
  return n;
}
function rungList(text: string, option: string): Rung[] {
  const list = text.split(',').filter(Boolean) as Rung[];
  for (const r of list) if (!RUNGS.includes(r)) throw new Error(`Expected --${option} among ${RUNGS.join(', ')} but received ${JSON.stringify(r)}`);
  return list;
}
const seconds = Number(values.seconds);
if (!(seconds > 0)) throw new Error(`Expected --seconds a positive number but received ${JSON.stringify(values.seconds)}`);
const classes = positiveInt(values.classes!, 'classes');
const rungs = rungList(values.rungs!, 'rungs');
const cpuRungs = rungList(values['cpu-rungs']!, 'cpu-rungs');
const backends = values.backends!.split(',').filter(Boolean) as TrainingBackend[];
const wasmConfig = { size: positiveInt(values.size!, 'size'), batch: positiveInt(values.batch!, 'batch') };
const cpuConfig = { size: positiveInt(values['cpu-size']!, 'cpu-size'), batch: positiveInt(values['cpu-batch']!, 'cpu-batch') };

/** One training step's inputs and model, ready to time. */
interface Workload {
  label: string;
  /** Shape of one input row, e.g. `[64, 64, 3]` or `[5920]`. */
  shape: string;
  batch: number;
  model: tf.LayersModel;
  x: tf.Tensor;
  y: tf.Tensor;
}

function oneHotBatch(batch: number): tf.Tensor {
  return tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % classes), 'int32'), classes);
}

let baseModel: ModelProto | undefined;
async function base(): Promise<ModelProto> {
  if (!baseModel) {
    const weights = await resolveBaseWeights('mobilenetv2-12-int8', { log: () => {} });
    baseModel = decodeModel(await readFile(weights.path), weights.path);
  }
  return baseModel;
}

/** TF.js training workloads of a rung at the given size and batch. */
async function workloads(rung: Rung, size: number, batch: number): Promise<Workload[]> {
  switch (rung) {
    case 'baseline': {
      const model = buildBaselineCnn({ inputSize: size, classes });
      return [{ label: 'baseline', shape: `${size}x${size}x3`, batch, model, x: tf.randomUniform([batch, size, size, 3], 0, 255), y: oneHotBatch(batch) }];
    }
    case 'features': {
      const d = styleFeatureDim(MOBILENETV2_STYLE_LAYERS);
      const model = buildHead(d, classes, { ...DEFAULT_HEAD, hidden: 0, dropout: 0.2 });
      return [{ label: 'features (head)', shape: `${d}`, batch: 32, model, x: tf.randomNormal([32, d]), y: oneHotBatch(32) }];
    }
    case 'finetune': {
      // Imported lazily: the finetune rung's own modules (training/finetune.ts and its helpers).
      const { MOBILENETV2_INT8_CUTS, buildTopModel } = await import('../export/finetune-export.js');
      const { importOnnxToTfjs } = await import('../export/convert/index.js');
      const { buildTop } = await import('../training/finetune/top.js');
      const chw: [number, number, number] = [160, 7, 7]; // the cut of trainBlocks = 1 (the default), see MOBILENETV2_INT8_CUTS
      const imported = await importOnnxToTfjs(buildTopModel(await base(), BASE_WEIGHTS['mobilenetv2-12-int8'], MOBILENETV2_INT8_CUTS[1], chw), { name: 'finetune_blocks' });
      const top = buildTop(imported.model, classes, { dropout: 0.5, l2: 1e-3, seed: 42 });
      top.classifier.compile({ optimizer: tf.train.adam(1e-4), loss: 'categoricalCrossentropy' });
      return [{ label: 'finetune (top)', shape: `7x7x160`, batch: 16, model: top.classifier, x: tf.randomUniform([16, 7, 7, 160], 0, 6), y: oneHotBatch(16) }];
    }
    case 'vgg16': {
      const vgg = buildVgg16Base({ inputSize: size });
      const model = tf.sequential({ name: 'vgg16_finetune' });
      model.add(vgg);
      model.add(tf.layers.flatten());
      model.add(tf.layers.dense({ units: 256, activation: 'relu' }));
      model.add(tf.layers.dropout({ rate: 0.5 }));
      model.add(tf.layers.dense({ units: classes, activation: 'softmax' }));
      model.compile({ optimizer: tf.train.rmsprop(1e-5), loss: 'categoricalCrossentropy' });
      return [{ label: 'vgg16 (slides)', shape: `${size}x${size}x3`, batch, model, x: tf.randomUniform([batch, size, size, 3], 0, 255), y: oneHotBatch(batch) }];
    }
    case 'ensemble':
      return [];
  }
}

/** onnxruntime extraction workloads (once per image, cached; the same on every TF.js backend). */
async function extraction(rung: Rung): Promise<{ label: string; bytes: Uint8Array } | undefined> {
  if (rung === 'features') return { label: 'features (extract)', bytes: encodeModel(buildStyleFeatureModel(await base(), BASE_WEIGHTS['mobilenetv2-12-int8'], DEFAULT_PREPROCESS, MOBILENETV2_STYLE_LAYERS)) };
  if (rung === 'finetune') {
    const { MOBILENETV2_INT8_CUTS, buildBottomModel } = await import('../export/finetune-export.js');
    return { label: 'finetune (extract)', bytes: encodeModel(buildBottomModel(await base(), BASE_WEIGHTS['mobilenetv2-12-int8'], DEFAULT_PREPROCESS, MOBILENETV2_INT8_CUTS[1])) };
  }
  return undefined;
}

const header = 'rung                 backend      input  batch  steps  s/step(wall)  cpu-s/step  images/s';
function line(label: string, backend: string, shape: string, batch: number, steps: number, wall: number, cpu: number): string {
  return `${label.padEnd(20)} ${backend.padEnd(11)} ${shape.padStart(7)}  ${String(batch).padStart(5)}  ${String(steps).padStart(5)}  ${(wall / steps).toFixed(3).padStart(12)}  ${(cpu / steps).toFixed(3).padStart(10)}  ${((steps * batch) / wall).toFixed(1).padStart(8)}`;
}

/** Runs `step` until `seconds` have passed (at least once); wall and CPU seconds. */
async function timed(step: () => Promise<unknown>): Promise<{ steps: number; wall: number; cpu: number }> {
  let steps = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  do {
    await step();
    steps++;
  } while (performance.now() - t0 < seconds * 1000);
  const cpu = process.cpuUsage(cpu0);
  return { steps, wall: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6 };
}

console.log(`training throughput: ${classes} classes, ~${seconds} s per measurement`);
console.log(header);
for (const rung of rungs) {
  if (rung === 'ensemble') {
    console.log(`${'ensemble'.padEnd(20)} ${'-'.padEnd(11)} trains nothing: soft vote of models trained by the other rungs`);
    continue;
  }
  const ex = await extraction(rung);
  if (ex) {
    const { session } = await createSession(ex.bytes, { provider: 'cpu' });
    const batch = 16;
    const feeds = { image: new ort.Tensor('uint8', Uint8Array.from({ length: batch * 224 * 224 * 3 }, (_, i) => (i * 2654435761) % 251), [batch, 224, 224, 3]) };
    await session.run(feeds);
    const r = await timed(() => session.run(feeds));
    console.log(line(ex.label, 'onnxruntime', '224x224', batch, r.steps, r.wall, r.cpu));
    await session.release();
  }
}
for (const backend of backends) {
  try {
    await initTrainingBackend(backend);
  } catch (err) {
    console.log(`(backend ${backend} not available: ${(err as Error).message.split('\n')[0].slice(0, 160)})`);
    continue;
  }
  const { size, batch } = backend === 'cpu' ? cpuConfig : wasmConfig;
  for (const rung of backend === 'cpu' ? cpuRungs : rungs) {
    for (const w of await workloads(rung, size, batch)) {
      if (backend !== 'cpu') await w.model.trainOnBatch(w.x, w.y); // warm-up: compiles kernels, allocates optimizer slots
      const r = await timed(() => w.model.trainOnBatch(w.x, w.y));
      console.log(line(w.label, backend, w.shape, w.batch, r.steps, r.wall, r.cpu));
      tf.dispose([w.x, w.y]);
      w.model.dispose();
    }
  }
}
