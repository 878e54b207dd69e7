/**
 * The dense classifier trained on frozen bottleneck features (the slides' "frozen conv base + new
 * dense classifier"): standardise -> Dense(hidden, relu, L2) -> Dropout -> Dense(C, softmax, L2).
 * `hidden: 0` gives multinomial logistic regression.
 *
 * With `batchNorm`, the hidden block is Dense(hidden, linear, no bias, L2) -> BatchNormalization ->
 * ReLU -> Dropout: the normalisation sits between the affine map and the non-linearity, as Ioffe &
 * Szegedy 2015 ("Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate
 * Shift", ICML, sec. 3.2) place it ("we add the BN transform immediately before the nonlinearity, by
 * normalizing x = Wu + b"), and the Dense bias is dropped because BN's mean subtraction cancels it
 * (same section; BN's beta takes its role). Keras defaults: momentum 0.99, epsilon 1e-3.
 *
 * The learning rate follows `lrSchedule` (training/schedules.ts), set on the Adam optimizer before
 * each epoch and recorded per epoch in the history.
 *
 * `solver: 'lbfgs'` instead fits the softmax regression (`hidden: 0`) to convergence on the full training set
 * (training/softmax-regression.ts): a convex problem with one minimiser, so no epoch is picked on validation.
 *
 * Two regularisers of the targets, both off by default and each a row in docs/RESULTS.md:
 * - label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", sec. 7): the one-hot
 *   target becomes `(1 - eps) * onehot + eps / C`, as Keras' `CategoricalCrossentropy(label_smoothing=eps)`;
 * - mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization", ICLR), here on the bottleneck
 *   features: each batch is mixed with a shuffled copy of itself, `x = lam * x_i + (1 - lam) * x_j` and the
 *   same for the targets, with one `lam ~ Beta(alpha, alpha)` per batch (the paper's reference code).
 */
import * as tf from '@tensorflow/tfjs';
import { randomBeta } from 'd3-random';
import seedrandom from 'seedrandom';
import type { Standardizer } from '../export/head-to-onnx.js';
import { HEAD_SOLVERS, type HeadSolver } from '../src/model/card.js';
import { seededShuffle } from './dataset.js';
import { reseedDropout } from './dropout.js';
import { LR_SCHEDULES, createLrSchedule, type LrScheduleName } from './schedules.js';
import { fitSoftmaxRegression } from './softmax-regression.js';

/** Hyperparameters of the head and its training. */
export interface HeadConfig {
  /** Units of the hidden Dense layer; 0 for none (logistic regression). */
  hidden: number;
  /** Dropout rate after the hidden layer (and on the inputs when hidden is 0). */
  dropout: number;
  /** L2 penalty on Dense kernels (Keras `regularizers.l2`). */
  l2: number;
  /** Adam learning rate (epoch 1; later epochs follow `lrSchedule`). */
  learningRate: number;
  /**
   * BatchNormalization between the hidden Dense and its ReLU (Ioffe & Szegedy 2015); needs `hidden > 0`.
   * Exported folded into the hidden Dense (inference mode, moving statistics).
   */
  batchNorm: boolean;
  /** Learning-rate schedule over epochs: `constant`, `step`, `cosine` (SGDR without restarts, to `lrMin`), `plateau` (Keras ReduceLROnPlateau on validation loss). */
  lrSchedule: LrScheduleName;
  /** step: multiply the rate by `lrFactor` every this many epochs. */
  lrStepEpochs: number;
  /** step and plateau: the multiplier (Keras ReduceLROnPlateau `factor`). */
  lrFactor: number;
  /** plateau: epochs without a validation-loss improvement > 1e-4 before the rate is multiplied by `lrFactor` (Keras `patience`). */
  lrPatience: number;
  /** cosine: rate reached after the last epoch; plateau: Keras `min_lr`. */
  lrMin: number;
  /** Label smoothing eps in [0,1): targets `(1 - eps) * onehot + eps / C` (Szegedy et al. 2016); 0 = off. */
  labelSmoothing: number;
  /** Mixup alpha >= 0: batches mixed with `lam ~ Beta(alpha, alpha)` (Zhang et al. 2018; they use 0.1-0.4); 0 = off. */
  mixup: number;
  /** Maximum epochs. */
  epochs: number;
  /** Stop after this many epochs without a better validation score. */
  patience: number;
  batchSize: number;
  /** Seeds weight initialisation, dropout and batch order. */
  seed: number;
  /**
   * How the weights are fitted: `adam`, mini-batches with the best epoch on validation accuracy (the
   * Keras way, any head); `lbfgs`, softmax regression solved to convergence on the whole training set
   * (training/softmax-regression.ts; `hidden` 0, no dropout, batch norm or mixup; `l2` > 0). With
   * `lbfgs`, learningRate, lr*, epochs, patience and batchSize are not used.
   */
  solver: HeadSolver;
}

/** What a solver implies unless set explicitly: `lbfgs` fits softmax regression without dropout. */
export const SOLVER_HEAD_DEFAULTS: Record<HeadSolver, Partial<HeadConfig>> = { adam: {}, lbfgs: { hidden: 0, dropout: 0 } };

export const DEFAULT_HEAD: HeadConfig = {
  hidden: 64,
  dropout: 0.5,
  l2: 1e-3,
  learningRate: 1e-3,
  batchNorm: false,
  lrSchedule: 'constant',
  lrStepEpochs: 20,
  lrFactor: 0.5,
  lrPatience: 5,
  lrMin: 0,
  labelSmoothing: 0,
  mixup: 0,
  epochs: 80,
  patience: 20,
  batchSize: 32,
  seed: 42,
  solver: 'adam',
};


/** A labelled feature matrix: `x` `[N,D]` float32 row-major, `y` N class indices. */
export interface FeatureSet {
  x: Float32Array;
  y: number[];
}

export interface EpochLog {
  epoch: number;
  loss: number;
  accuracy: number;
  valLoss: number;
  valAccuracy: number;
  /** Adam learning rate used for every update of this epoch (the schedule's value); with solver lbfgs, the step length the line search accepted. */
  learningRate: number;
}

/** A trained head: the TF.js model, its standardiser, and the training history. */
export interface TrainedHead {
  model: tf.Sequential;
  standardizer: Standardizer;
  history: EpochLog[];
  /** 1-based epoch whose weights were kept (best validation accuracy, then lowest loss). */
  bestEpoch: number;
  featureDim: number;
  classes: number;
}

/** Fits mean and 1/std per feature (std floored at 1e-6 so dead ReLU channels stay finite). */
export function fitStandardizer(x: Float32Array, d: number): Standardizer {
  const n = x.length / d;
  const mean = new Float64Array(d);
  const sq = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) sq[j] += (x[i * d + j] - mean[j]) ** 2;
  const invStd = new Float32Array(d);
  for (let j = 0; j < d; j++) invStd[j] = 1 / Math.max(Math.sqrt(sq[j] / n), 1e-6);
  return { mean: Float32Array.from(mean), invStd };
}

/** `(x - mean) · invStd` per feature, `[N,D]` row-major in and out. */
export function standardize(x: Float32Array, s: Standardizer): Float32Array {
  const d = s.mean.length;
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = (x[i] - s.mean[i % d]) * s.invStd[i % d];
  return out;
}

/**
 * Checks a head configuration.
 *
 * @throws Error naming the parameter, what was expected and what was received.
 */
export function validateHeadConfig(config: HeadConfig): void {
  const fail = (name: string, expected: string, value: unknown) => {
    throw new Error(`Expected ${expected} for ${name} but received ${JSON.stringify(value)}`);
  };
  if (!(Number.isInteger(config.hidden) && config.hidden >= 0)) fail('hidden', 'an integer >= 0', config.hidden);
  if (!(config.dropout >= 0 && config.dropout < 1)) fail('dropout', 'a rate in [0,1)', config.dropout);
  if (!(Number.isInteger(config.epochs) && config.epochs >= 1)) fail('epochs', 'an integer >= 1', config.epochs);
  if (!(Number.isInteger(config.batchSize) && config.batchSize >= 1)) fail('batchSize', 'an integer >= 1', config.batchSize);
  if (!(config.labelSmoothing >= 0 && config.labelSmoothing < 1)) fail('labelSmoothing', 'a number in [0,1)', config.labelSmoothing);
  if (!(config.mixup >= 0 && Number.isFinite(config.mixup))) fail('mixup', 'a finite number >= 0 (the Beta(alpha, alpha) parameter; 0 = off)', config.mixup);
  if (typeof config.batchNorm !== 'boolean') fail('batchNorm', 'true or false', config.batchNorm);
  if (config.batchNorm && config.hidden === 0) {
    throw new Error('Expected hidden > 0 with batchNorm (BatchNormalization goes between the hidden Dense and its ReLU) but received hidden 0; pass --hidden N or drop --batch-norm');
  }
  if (!LR_SCHEDULES.includes(config.lrSchedule)) fail('lrSchedule', `one of ${LR_SCHEDULES.join(', ')}`, config.lrSchedule);
  if (!HEAD_SOLVERS.includes(config.solver)) fail('solver', `one of ${HEAD_SOLVERS.join(', ')}`, config.solver);
  if (config.solver === 'lbfgs') {
    // The convex problem L-BFGS solves is softmax regression with an L2 penalty; anything stochastic or deeper is Adam's.
    const why = 'with solver lbfgs (the default for style features: softmax regression solved to convergence; --solver adam trains hidden layers, dropout and mixup)';
    if (config.hidden !== 0) fail('hidden', `0 ${why}`, config.hidden);
    if (config.dropout !== 0) fail('dropout', `0 ${why}`, config.dropout);
    if (config.mixup !== 0) fail('mixup', `0 ${why}`, config.mixup);
    if (!(config.l2 > 0)) fail('l2', `a penalty > 0 ${why}: without it the minimiser need not exist (separable classes)`, config.l2);
  }
}

/** Settings that only Adam reads (optimizer, schedule, epochs, batches). */
export const ADAM_ONLY: readonly (keyof HeadConfig)[] = ['learningRate', 'lrSchedule', 'lrStepEpochs', 'lrFactor', 'lrPatience', 'lrMin', 'epochs', 'patience', 'batchSize', 'batchNorm', 'mixup'];

/**
 * The settings a head was actually fitted with, for a model card: with solver lbfgs, Adam's optimizer,
 * schedule, epoch and batch settings are left out (they played no part).
 */
export function hyperparametersOf(config: HeadConfig): Record<string, number | string | boolean> {
  const used = Object.entries(config).filter(([k]) => config.solver !== 'lbfgs' || !ADAM_ONLY.includes(k as keyof HeadConfig));
  return Object.fromEntries(used);
}

/** The schedule parameters of a head configuration. */
function scheduleOf(config: HeadConfig) {
  return createLrSchedule({
    learningRate: config.learningRate,
    schedule: config.lrSchedule,
    stepEpochs: config.lrStepEpochs,
    factor: config.lrFactor,
    patience: config.lrPatience,
    minLearningRate: config.lrMin,
    epochs: config.epochs,
  });
}

/**
 * Sets the learning rate of a compiled model's optimizer for the following updates. TF.js optimizers
 * (Adam, SGD, RMSProp, ...) read their `learningRate` field at every `applyGradients`; it is not part
 * of the public typings, hence the check.
 *
 * @throws Error when the model has no optimizer with a numeric learning rate.
 */
export function setLearningRate(model: tf.LayersModel, learningRate: number): void {
  const optimizer = model.optimizer as unknown as { learningRate?: unknown } | undefined;
  if (!optimizer || typeof optimizer.learningRate !== 'number') {
    throw new Error(`Expected a compiled model whose optimizer has a numeric learningRate but received ${optimizer ? `an optimizer with learningRate ${String(optimizer.learningRate)}` : 'a model without optimizer'}`);
  }
  optimizer.learningRate = learningRate;
}

/** Builds the (untrained) TF.js head. */
export function buildHead(featureDim: number, classes: number, config: HeadConfig): tf.Sequential {
  validateHeadConfig(config);
  const model = tf.sequential();
  const init = (k: number) => tf.initializers.glorotUniform({ seed: config.seed + k });
  const reg = config.l2 > 0 ? tf.regularizers.l2({ l2: config.l2 }) : undefined;
  if (config.hidden > 0 && config.batchNorm) {
    model.add(tf.layers.dense({ inputShape: [featureDim], units: config.hidden, activation: 'linear', useBias: false, kernelInitializer: init(1), kernelRegularizer: reg, name: 'hidden' }));
    model.add(tf.layers.batchNormalization({ name: 'hidden_bn' }));
    model.add(tf.layers.activation({ activation: 'relu', name: 'hidden_relu' }));
    if (config.dropout > 0) model.add(tf.layers.dropout({ rate: config.dropout, seed: config.seed + 2, name: 'dropout' }));
  } else if (config.hidden > 0) {
    model.add(tf.layers.dense({ inputShape: [featureDim], units: config.hidden, activation: 'relu', kernelInitializer: init(1), kernelRegularizer: reg, name: 'hidden' }));
    if (config.dropout > 0) model.add(tf.layers.dropout({ rate: config.dropout, seed: config.seed + 2, name: 'dropout' }));
  } else if (config.dropout > 0) {
    model.add(tf.layers.dropout({ inputShape: [featureDim], rate: config.dropout, seed: config.seed + 2, name: 'dropout' }));
  }
  model.add(tf.layers.dense({ ...(model.layers.length === 0 ? { inputShape: [featureDim] } : {}), units: classes, activation: 'softmax', kernelInitializer: init(3), kernelRegularizer: reg, name: 'output' }));
  model.compile({ optimizer: tf.train.adam(config.learningRate), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return model;
}

/**
 * Trains the head (`solver: 'lbfgs'`: see trainHeadLbfgs below; `adam`, the default: as follows) with seeded mini-batches, evaluates on validation after every epoch, keeps the
 * best epoch's weights (including BatchNormalization's moving statistics), and stops early after
 * `patience` epochs without improvement. Each step reseeds the Dropout layer (training/dropout.ts) so
 * that its mask changes from step to step, reproducibly. Before each epoch the optimizer's learning rate is set from
 * `config.lrSchedule`; `plateau` is fed each epoch's validation loss.
 *
 * @param train - training features `[N,D]` and labels.
 * @param validation - validation features and labels (chooses the epoch; never the test split).
 */
export async function trainHead(
  train: FeatureSet,
  validation: FeatureSet,
  featureDim: number,
  classes: number,
  config: HeadConfig = DEFAULT_HEAD,
  onEpoch?: (log: EpochLog) => void,
): Promise<TrainedHead> {
  validateHeadConfig(config);
  if (config.solver === 'lbfgs') return trainHeadLbfgs(train, validation, featureDim, classes, config, onEpoch);
  const standardizer = fitStandardizer(train.x, featureDim);
  const xTrain = standardize(train.x, standardizer);
  const xVal = tf.tensor2d(standardize(validation.x, standardizer), [validation.y.length, featureDim]);
  const yVal = tf.oneHot(tf.tensor1d(validation.y, 'int32'), classes);
  const model = buildHead(featureDim, classes, config);
  const history: EpochLog[] = [];
  let best: { epoch: number; acc: number; loss: number; weights: tf.Tensor[] } | undefined;
  const rng = seedrandom(`head:${config.seed}`);
  const targetsOf = batchTargets(classes, config);
  const order = train.y.map((_, i) => i);
  const schedule = scheduleOf(config);
  let step = 0;

  for (let epoch = 1; epoch <= config.epochs; epoch++) {
    const learningRate = schedule.rateFor(epoch);
    setLearningRate(model, learningRate);
    const perm = seededShuffle(order, `${rng()}`);
    let lossSum = 0;
    let accSum = 0;
    for (let start = 0; start < perm.length; start += config.batchSize) {
      const idx = perm.slice(start, start + config.batchSize);
      const [xb, yb] = targetsOf(gatherRows(xTrain, idx, featureDim), idx.map((i) => train.y[i]));
      // A seeded TF.js Dropout repeats its mask at every call: a fresh, reproducible seed per step (training/dropout.ts).
      reseedDropout(model, config.seed, step++);
      const [l, a] = (await model.trainOnBatch(xb, yb)) as number[];
      tf.dispose([xb, yb]);
      lossSum += l * idx.length;
      accSum += a * idx.length;
    }
    const [valLoss, valAccuracy] = (model.evaluate(xVal, yVal, { batchSize: 256 }) as tf.Scalar[]).map((t) => {
      const v = t.dataSync()[0];
      t.dispose();
      return v;
    });
    const log = { epoch, loss: lossSum / perm.length, accuracy: accSum / perm.length, valLoss, valAccuracy, learningRate };
    history.push(log);
    schedule.observe(valLoss);
    onEpoch?.(log);
    if (!best || valAccuracy > best.acc || (valAccuracy === best.acc && valLoss < best.loss)) {
      best?.weights.forEach((w) => w.dispose());
      best = { epoch, acc: valAccuracy, loss: valLoss, weights: model.getWeights().map((w) => w.clone()) };
    } else if (epoch - best.epoch >= config.patience) {
      break;
    }
  }
  model.setWeights(best!.weights);
  best!.weights.forEach((w) => w.dispose());
  tf.dispose([xVal, yVal]);
  return { model, standardizer, history, bestEpoch: best!.epoch, featureDim, classes };
}

/**
 * `solver: 'lbfgs'`: the softmax regression of training/softmax-regression.ts, its weights set into the
 * same one-layer TF.js head `buildHead` makes (so prediction, temperature scaling and export are shared).
 * The history has one entry per L-BFGS iteration (each a pass over the whole training set, hence
 * "epoch"; `learningRate` is the accepted step length), and the kept weights are the last: the minimiser.
 */
async function trainHeadLbfgs(train: FeatureSet, validation: FeatureSet, featureDim: number, classes: number, config: HeadConfig, onEpoch?: (log: EpochLog) => void): Promise<TrainedHead> {
  const standardizer = fitStandardizer(train.x, featureDim);
  const fit = fitSoftmaxRegression(standardize(train.x, standardizer), train.y, featureDim, classes, {
    l2: config.l2,
    labelSmoothing: config.labelSmoothing,
    validation: { x: standardize(validation.x, standardizer), labels: validation.y },
  });
  if (fit.history.length === 0) {
    throw new Error(`Expected L-BFGS to take at least one step but the gradient at zero weights is already below its tolerance (${fit.gradientMax.toExponential(2)}): are all features constant?`);
  }
  const history: EpochLog[] = fit.history.map((h) => ({ epoch: h.iteration, loss: h.objective, accuracy: h.accuracy, valLoss: h.valLoss, valAccuracy: h.valAccuracy, learningRate: h.step }));
  history.forEach((h) => onEpoch?.(h));
  const model = buildHead(featureDim, classes, config);
  const weights = [tf.tensor2d(fit.kernel, [featureDim, classes]), tf.tensor1d(fit.bias)];
  model.getLayer('output').setWeights(weights);
  tf.dispose(weights);
  return { model, standardizer, history, bestEpoch: history.length, featureDim, classes };
}

/**
 * Probabilities of the trained head for raw (unstandardised) features.
 *
 * @param x - `[N,D]` float32 bottleneck features.
 * @returns `[N,C]` float32 softmax probabilities, row-major.
 */
export function predictHead(head: TrainedHead, x: Float32Array): Float32Array {
  const n = x.length / head.featureDim;
  return tf.tidy(() => {
    const input = tf.tensor2d(standardize(x, head.standardizer), [n, head.featureDim]);
    return (head.model.predict(input, { batchSize: 256 }) as tf.Tensor).dataSync() as Float32Array;
  });
}

/**
 * The per-batch inputs and targets: one-hot, label-smoothed, and mixed (see the file comment); seeded
 * by `config.seed`, so a run is reproducible.
 *
 * @returns a function of a batch's standardised rows `[B,D]` and labels giving `x` `[B,D]` and soft targets `[B,C]`.
 */
export function batchTargets(classes: number, config: Pick<HeadConfig, 'labelSmoothing' | 'mixup' | 'seed'>): (x: Float32Array, labels: number[]) => [tf.Tensor2D, tf.Tensor2D] {
  const eps = config.labelSmoothing;
  const rng = seedrandom(`mixup:${config.seed}`);
  const lambda = config.mixup > 0 ? randomBeta.source(rng)(config.mixup, config.mixup) : () => 1;
  return (x, labels) => {
    const b = labels.length;
    const d = x.length / b;
    const y = new Float32Array(b * classes).fill(eps / classes);
    labels.forEach((label, i) => (y[i * classes + label] += 1 - eps));
    const lam = lambda();
    if (lam === 1) return [tf.tensor2d(x, [b, d]), tf.tensor2d(y, [b, classes])];
    // A seeded shuffle of the batch is the partner of each row (the reference code's `index = randperm(B)`).
    const partner = seededShuffle(labels.map((_, i) => i), `${rng()}`);
    const xm = new Float32Array(x.length);
    const ym = new Float32Array(y.length);
    for (let i = 0; i < b; i++) {
      const j = partner[i];
      for (let k = 0; k < d; k++) xm[i * d + k] = lam * x[i * d + k] + (1 - lam) * x[j * d + k];
      for (let k = 0; k < classes; k++) ym[i * classes + k] = lam * y[i * classes + k] + (1 - lam) * y[j * classes + k];
    }
    return [tf.tensor2d(xm, [b, d]), tf.tensor2d(ym, [b, classes])];
  };
}

function gatherRows(x: Float32Array, rows: number[], d: number): Float32Array {
  const out = new Float32Array(rows.length * d);
  rows.forEach((r, i) => out.set(x.subarray(r * d, (r + 1) * d), i * d));
  return out;
}

/**
 * Folds a softmax temperature into a model's output layer: kernel and bias divided by T, so the model's
 * logits become `logits / T` and its probabilities `softmax(logits / T)` (temperature scaling, Guo et al.
 * 2017). The top-1 prediction is unchanged.
 *
 * @param model - a model whose last layer is a Dense softmax layer (every artist-id head and network).
 * @throws Error when the last layer has no kernel and bias.
 */
export function applyTemperature(model: tf.LayersModel, temperature: number): void {
  const output = model.layers[model.layers.length - 1];
  const weights = output.getWeights();
  if (weights.length !== 2) throw new Error(`Expected the last layer (${output.name}) to be Dense with kernel and bias but it has ${weights.length} weights`);
  const scaled = weights.map((w) => tf.tidy(() => tf.div(w, temperature)));
  output.setWeights(scaled);
  tf.dispose(scaled);
}
