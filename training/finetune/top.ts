/**
 * The trainable top of the `finetune` rung in TF.js: the base's last blocks (imported from the
 * dequantised ONNX graph, weights = the int8 base's dequantised weights) -> GlobalAveragePooling2D
 * (`features`, `[N,1280]`) -> Dropout -> Dense softmax with L2 (the slides' classifier).
 *
 * Training follows the slides' two steps (Chollet, Deep Learning with Python §5.3: "fine-tune only
 * after the classifier on top has been trained"):
 * 1. warm-up: the classifier alone, on the pooled features of the (still ImageNet) top for every
 *    cached view, with training/head.ts (`trainHead`, `hidden: 0`), its standardiser folded into the
 *    Dense weights;
 * 2. fine-tuning: top blocks + classifier together at a low learning rate; each epoch shows every
 *    training image once, as one of its cached views drawn at random (the way a Keras
 *    `ImageDataGenerator` shows each image once per epoch, freshly augmented), validation after every
 *    epoch, best epoch kept (epoch 0 = after warm-up, so fine-tuning is kept only if validation says so).
 */
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import type { CutQuantization } from '../../export/finetune-export.js';
import type { Standardizer } from '../../export/head-to-onnx.js';
import { seededShuffle } from '../dataset.js';
import { reseedDropout } from '../dropout.js';
import { trainHead, type EpochLog, type HeadConfig, type TrainedHead } from '../head.js';

/** Names of the layers added on top of the imported blocks. */
export const TOP_LAYER = { pool: 'finetune_pool', dropout: 'finetune_dropout', output: 'output' } as const;

/** The top in two views sharing every layer. */
export interface TopModels {
  /** `[N,h,w,C]` cut activations -> `[N,K]` probabilities; last layer the Dense softmax. */
  classifier: tf.LayersModel;
  /** Same input -> `[features [N,D], probabilities [N,K]]` (what gets exported). */
  exportable: tf.LayersModel;
  /** Same input -> pooled features `[N,D]`. */
  features: tf.LayersModel;
  featureDim: number;
}

/**
 * Adds pooling, dropout and the Dense softmax to the imported blocks.
 *
 * @param blocks - imported top: input `[N,h,w,C]` NHWC, output the final map `[N,h',w',D]` NHWC.
 */
export function buildTop(blocks: tf.LayersModel, classes: number, config: { dropout: number; l2: number; seed: number }): TopModels {
  if (blocks.outputs.length !== 1 || blocks.outputs[0].shape.length !== 4) {
    throw new Error(`Expected the imported blocks to have one rank-4 NHWC output but they have ${blocks.outputs.map((o) => `[${o.shape.join(',')}]`).join(', ')}`);
  }
  const input = blocks.inputs[0];
  const pooled = tf.layers.globalAveragePooling2d({ name: TOP_LAYER.pool }).apply(blocks.outputs[0]) as tf.SymbolicTensor;
  const dropped = tf.layers.dropout({ rate: config.dropout, seed: config.seed + 2, name: TOP_LAYER.dropout }).apply(pooled) as tf.SymbolicTensor;
  const probs = tf.layers
    .dense({
      units: classes,
      activation: 'softmax',
      kernelInitializer: tf.initializers.glorotUniform({ seed: config.seed + 3 }),
      kernelRegularizer: config.l2 > 0 ? tf.regularizers.l2({ l2: config.l2 }) : undefined,
      name: TOP_LAYER.output,
    })
    .apply(dropped) as tf.SymbolicTensor;
  return {
    classifier: tf.model({ inputs: input, outputs: probs, name: 'finetune_top' }),
    exportable: tf.model({ inputs: input, outputs: [pooled, probs], name: 'finetune_top_export' }),
    features: tf.model({ inputs: input, outputs: pooled, name: 'finetune_top_features' }),
    featureDim: pooled.shape[1] as number,
  };
}

/** Cut activations of a split: uint8 codes `[N, V, h, w, C]` (see activations.ts), labels per image. */
export interface ActivationSet {
  codes: Uint8Array;
  viewsPerImage: number;
  labels: number[];
}

/** Shape `[h, w, C]` (NHWC without N) and quantisation of the activations. */
export interface ActivationShape {
  hwc: [number, number, number];
  quantization: CutQuantization;
}

/** Float `[B,h,w,C]` tensor of the given (image, view) pairs: `(code - zeroPoint) * scale`. */
export function batchTensor(set: ActivationSet, items: { image: number; view: number }[], shape: ActivationShape): tf.Tensor4D {
  const [h, w, c] = shape.hwc;
  const per = h * w * c;
  const buf = new Float32Array(items.length * per);
  const { scale, zeroPoint } = shape.quantization;
  const s = Math.fround(scale);
  items.forEach(({ image, view }, i) => {
    const off = (image * set.viewsPerImage + view) * per;
    for (let k = 0; k < per; k++) buf[i * per + k] = Math.fround((set.codes[off + k] - zeroPoint) * s);
  });
  return tf.tensor4d(buf, [items.length, h, w, c]);
}

/** Runs `model` over every (image, view) of a set in batches; returns the rows concatenated. */
export function predictRows(model: tf.LayersModel, set: ActivationSet, items: { image: number; view: number }[], shape: ActivationShape, batchSize = 32): Float32Array {
  const chunks: Float32Array[] = [];
  for (let start = 0; start < items.length; start += batchSize) {
    const x = batchTensor(set, items.slice(start, start + batchSize), shape);
    const y = model.predict(x) as tf.Tensor;
    chunks.push(y.dataSync() as Float32Array);
    tf.dispose([x, y]);
  }
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** Every image of a set in one view (0 = clean). */
export function viewItems(set: ActivationSet, view = 0): { image: number; view: number }[] {
  return set.labels.map((_, image) => ({ image, view }));
}

/** Every (image, view) pair of a set. */
export function allItems(set: ActivationSet): { image: number; view: number }[] {
  return set.labels.flatMap((_, image) => Array.from({ length: set.viewsPerImage }, (_, view) => ({ image, view })));
}

/**
 * Folds a standardiser into a following Dense layer: `((x - m) * s) W + b = x (s ∘ W) + (b - (m * s) W)`.
 *
 * @param kernel - `[D,K]` row-major.
 * @returns the folded kernel `[D,K]` and bias `[K]`.
 */
export function foldStandardizer(kernel: Float32Array, bias: Float32Array, standardizer: Standardizer): { kernel: Float32Array; bias: Float32Array } {
  const d = standardizer.mean.length;
  const k = bias.length;
  if (kernel.length !== d * k) throw new Error(`Expected a [${d},${k}] kernel (${d * k} values) but received ${kernel.length} values`);
  const outK = new Float32Array(d * k);
  const outB = Float64Array.from(bias);
  for (let i = 0; i < d; i++) {
    const s = standardizer.invStd[i];
    const m = standardizer.mean[i];
    for (let j = 0; j < k; j++) {
      const w = kernel[i * k + j] * s;
      outK[i * k + j] = w;
      outB[j] -= m * w;
    }
  }
  return { kernel: outK, bias: Float32Array.from(outB) };
}

/**
 * Step 1: trains the classifier alone on the top's pooled features of every training view (clean and
 * augmented) and sets it into the top's output layer. The warm-up head's Dropout is reseeded at every
 * step by `trainHead` (training/dropout.ts).
 *
 * @returns the trained head (history, best epoch).
 */
export async function warmUpClassifier(top: TopModels, train: ActivationSet, validation: ActivationSet, shape: ActivationShape, classes: number, config: HeadConfig, onEpoch?: (e: EpochLog) => void): Promise<TrainedHead> {
  if (config.hidden !== 0) throw new Error(`Expected head.hidden 0 for fine-tuning (the classifier is one Dense softmax layer on the pooled features) but received ${config.hidden}`);
  const trainItems = allItems(train);
  const xTrain = predictRows(top.features, train, trainItems, shape);
  const xVal = predictRows(top.features, validation, viewItems(validation), shape);
  const head = await trainHead({ x: xTrain, y: trainItems.map((it) => train.labels[it.image]) }, { x: xVal, y: validation.labels }, top.featureDim, classes, config, onEpoch);
  const dense = head.model.layers[head.model.layers.length - 1];
  const [k, b] = dense.getWeights();
  const folded = foldStandardizer(k.dataSync() as Float32Array, b.dataSync() as Float32Array, head.standardizer);
  const output = top.classifier.getLayer(TOP_LAYER.output);
  const weights = [tf.tensor2d(folded.kernel, [top.featureDim, classes]), tf.tensor1d(folded.bias)];
  output.setWeights(weights);
  tf.dispose(weights);
  head.model.dispose();
  return head;
}

/** Settings of step 2. */
export interface FinetuneLoopConfig {
  optimizer: 'adam' | 'rmsprop';
  learningRate: number;
  epochs: number;
  batchSize: number;
  patience: number;
  seed: number;
  /** Stop after the epoch during which this many seconds of fine-tuning have passed; 0 = no limit. */
  maxSeconds: number;
}

/** One epoch of step 2 (epoch 0: after warm-up, before any fine-tuning). */
export interface FinetuneEpochLog {
  epoch: number;
  /** Mean training loss (cross-entropy + L2, dropout on) over the epoch's batches; epoch 0: cross-entropy on the clean training images. */
  loss: number;
  /** Mean training accuracy over the epoch's batches (augmented views, dropout on). */
  accuracy: number;
  /** Cross-entropy on the clean validation images (dropout off, no L2 term). */
  valLoss: number;
  valAccuracy: number;
  /** Seconds of fine-tuning so far. */
  seconds: number;
}

/** Loss and accuracy of the classifier on the clean view of every image of a set (dropout off). */
export function evaluateSet(top: TopModels, set: ActivationSet, shape: ActivationShape, classes: number): { loss: number; accuracy: number; probabilities: Float32Array } {
  const probabilities = predictRows(top.classifier, set, viewItems(set), shape);
  let loss = 0;
  let correct = 0;
  set.labels.forEach((y, i) => {
    const row = probabilities.subarray(i * classes, (i + 1) * classes);
    loss -= Math.log(Math.max(row[y], 1e-7));
    let arg = 0;
    for (let j = 1; j < classes; j++) if (row[j] > row[arg]) arg = j;
    if (arg === y) correct++;
  });
  return { loss: loss / Math.max(1, set.labels.length), accuracy: correct / Math.max(1, set.labels.length), probabilities };
}

/**
 * Step 2: trains the whole top (blocks + classifier) with categorical cross-entropy (+ the Dense L2),
 * keeping the weights of the best epoch on validation accuracy (then lower validation loss), epoch 0
 * included. The top's Dropout (and any in the imported blocks) is reseeded before every step from
 * `config.seed` and the step number (training/dropout.ts), so its mask changes from step to step.
 *
 * @returns history (epoch 0 first) and the kept epoch.
 */
export async function fineTune(top: TopModels, train: ActivationSet, validation: ActivationSet, shape: ActivationShape, classes: number, config: FinetuneLoopConfig, onEpoch?: (e: FinetuneEpochLog) => void): Promise<{ history: FinetuneEpochLog[]; bestEpoch: number; stoppedBy: 'epochs' | 'patience' | 'time' }> {
  const model = top.classifier;
  const optimizer = config.optimizer === 'rmsprop' ? tf.train.rmsprop(config.learningRate) : tf.train.adam(config.learningRate);
  model.compile({ optimizer, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const started = performance.now();
  const v0 = evaluateSet(top, validation, shape, classes);
  const t0 = evaluateSet(top, train, shape, classes);
  const history: FinetuneEpochLog[] = [{ epoch: 0, loss: t0.loss, accuracy: t0.accuracy, valLoss: v0.loss, valAccuracy: v0.accuracy, seconds: 0 }];
  onEpoch?.(history[0]);
  let best = { epoch: 0, acc: v0.accuracy, loss: v0.loss, weights: model.getWeights().map((w) => w.clone()) };
  const rng = seedrandom(`finetune:${config.seed}`);
  let stoppedBy: 'epochs' | 'patience' | 'time' = 'epochs';
  let step = 0;
  for (let epoch = 1; epoch <= config.epochs; epoch++) {
    const order = seededShuffle(train.labels.map((_, i) => i), `${rng()}`);
    let lossSum = 0;
    let accSum = 0;
    for (let start = 0; start < order.length; start += config.batchSize) {
      const idx = order.slice(start, start + config.batchSize);
      const items = idx.map((image) => ({ image, view: Math.floor(rng() * train.viewsPerImage) }));
      const xb = batchTensor(train, items, shape);
      const yb = tf.tidy(() => tf.oneHot(tf.tensor1d(idx.map((i) => train.labels[i]), 'int32'), classes));
      // A seeded TF.js Dropout repeats its mask at every call: a fresh, reproducible seed per step (training/dropout.ts).
      reseedDropout(model, config.seed, step++);
      const [l, a] = (await model.trainOnBatch(xb, yb)) as number[];
      tf.dispose([xb, yb]);
      lossSum += l * idx.length;
      accSum += a * idx.length;
    }
    const v = evaluateSet(top, validation, shape, classes);
    const log = { epoch, loss: lossSum / order.length, accuracy: accSum / order.length, valLoss: v.loss, valAccuracy: v.accuracy, seconds: Math.round((performance.now() - started) / 100) / 10 };
    history.push(log);
    onEpoch?.(log);
    if (v.accuracy > best.acc || (v.accuracy === best.acc && v.loss < best.loss)) {
      best.weights.forEach((w) => w.dispose());
      best = { epoch, acc: v.accuracy, loss: v.loss, weights: model.getWeights().map((w) => w.clone()) };
    } else if (epoch - best.epoch >= config.patience) {
      stoppedBy = 'patience';
      break;
    }
    if (config.maxSeconds > 0 && (performance.now() - started) / 1000 >= config.maxSeconds && epoch < config.epochs) {
      stoppedBy = 'time';
      break;
    }
  }
  model.setWeights(best.weights);
  best.weights.forEach((w) => w.dispose());
  optimizer.dispose();
  return { history, bestEpoch: best.epoch, stoppedBy };
}
