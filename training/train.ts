/**
 * `artist-id train`: the training rungs, one entry point ({@link train}) dispatching on `method`:
 *
 * | method | what is trained | where |
 * |---|---|---|
 * | `baseline` | the slides' CNN from scratch on pixels | training/train-baseline.ts |
 * | `features` (default) | a dense head on frozen ImageNet bottleneck features | this file, {@link trainFeatures} |
 * | `finetune` | the top blocks of the base with the head, on augmented views | training/finetune.ts |
 * | `ensemble` | nothing: soft vote of already-trained models | training/ensemble.ts |
 *
 * Every method ends the same way (training/finish.ts): temperature scaling on validation, metrics, one
 * `model.onnx` with its card, parity-checked. The other methods' code is imported on demand.
 *
 * `features`: data -> seeded split -> bottleneck features (onnxruntime, cached) -> TF.js head (best epoch on
 * validation) -> ONNX splice -> parity check -> `<out>/model.onnx` + `MODEL_CARD.md` + `history.json`.
 */
import { readFile } from 'node:fs/promises';
import { buildFeatureModel } from '../export/base.js';
import { headToOnnx } from '../export/head-to-onnx.js';
import { MOBILENETV2_STYLE_LAYERS, buildStyleFeatureModel, styleFeatureDim } from '../export/style.js';
import { checkParity, type ParityResult } from '../export/parity.js';
import { spliceHead } from '../export/splice.js';
import { averageFeaturesOverFlip } from '../export/views.js';
import { createSession } from '../src/inference/session.js';
import { TTA_CHOICES, type HeadSolver, type ModelCard, type TtaChoice } from '../src/model/card.js';
import { decodeModel, encodeModel, type ModelProto } from '../src/onnx/model.js';
import { DEFAULT_PREPROCESS, type PreprocessSpec } from '../src/preprocess/spec.js';
import { invalidParameterError } from '../src/errors.js';
import { BASE_WEIGHTS, resolveBaseWeights, type BaseWeightsName } from '../src/weights/base-weights.js';
import { startTraining, type TrainingStart } from './start.js';
import { splitDigest, type Sample, type SplitOptions } from './dataset.js';
import { extractFeatures, featureModelKey, type FeatureExtractor } from './features.js';
import { DEFAULT_OPEN_SET_SCORE, fitHeadOpenSet, formatOpenSet, measuredOpenSetAuroc } from './open-set.js';
import { ADAM_ONLY, DEFAULT_HEAD, SOLVER_HEAD_DEFAULTS, hyperparametersOf, validateHeadConfig, applyTemperature, predictHead, trainHead, type FeatureSet, type HeadConfig, type TrainedHead } from './head.js';
import type { EnsembleOptions } from './ensemble.js';
import type { FinetuneOptions } from './finetune.js';
import type { BaselineOptions } from './train-baseline.js';
import { accuracyOf, calibrateOnValidation, cardIdentity, formatCalibration, pct, writeModelFolder, type SplitPredictions } from './finish.js';

/**
 * Head settings per feature route with the Adam solver, chosen on validation accuracy (docs/RESULTS.md): the
 * 5,920-d style statistics do best with softmax regression and light input dropout; the 1,280-d pooled
 * features with a 64-unit hidden layer. Explicit `head` options override them.
 */
export const ROUTE_HEAD_DEFAULTS: Record<'pooled' | 'style', Partial<HeadConfig>> = {
  pooled: {},
  style: { hidden: 0, dropout: 0.2 },
};

/**
 * Solver per feature route when none is given: the style statistics' softmax regression is solved to
 * convergence (L-BFGS), which beat Adam with the best epoch on validation over seeds 1-5 on all 11 artists
 * (docs/SEEDS.md, `features-lbfgs` vs `features`); the pooled route's hidden layer needs Adam.
 */
export const ROUTE_SOLVER: Record<'pooled' | 'style', HeadSolver> = { pooled: 'adam', style: 'lbfgs' };

export interface TrainOptions extends SplitOptions {
  /** Dataset root (`<root>/<artist>/*.jpg` or Keras layout). */
  data: string;
  /** Output directory for model.onnx and its card. */
  out: string;
  /** Model name recorded in the card; default: the out folder's name. */
  name?: string;
  /**
   * Base weights name (see BASE_WEIGHTS): `mobilenetv2-12-int8` (default) or `vgg16` (Keras ImageNet
   * weights rebuilt in TF.js and exported to ONNX, export/vgg16-base.ts; pooled features only, with its
   * own caffe preprocessing VGG16_PREPROCESS recorded in the card).
   */
  base?: BaseWeightsName;
  /** Local folder holding base weights (else env ARTIST_ID_WEIGHTS_DIR, cache, download). */
  weightsDir?: string;
  /** Also accept base weights with this sha256 (another revision; see resolveBaseWeights). Default: `$ARTIST_ID_WEIGHTS_SHA256`. */
  acceptSha256?: string;
  /**
   * Bottleneck features: `style` (mean/std/Gram statistics, the default for MobileNetV2) or `pooled`
   * (global average pool of the final map; the default and only choice for VGG16, whose style layers are not defined).
   */
  features?: 'pooled' | 'style';
  /**
   * Test-time augmentation inside the exported graph: `flip` averages the bottleneck features of each image
   * and its horizontal mirror (export/views.ts), for training, evaluation and serving alike; `none` (default).
   */
  tta?: TtaChoice;
  /** Head hyperparameter overrides. */
  head?: Partial<HeadConfig>;
  /** Replace a model already in `out`; without it, an existing model.onnx there is an error. */
  overwrite?: boolean;
  /** Images used by the export parity check; default 32. */
  parityImages?: number;
  /** Progress and results, one line each; default stderr. */
  log?: (line: string) => void;
}

/** The training methods (rungs), cheapest first. */
export const TRAIN_METHODS = ['baseline', 'features', 'finetune', 'ensemble'] as const;
export type TrainMethod = (typeof TRAIN_METHODS)[number];

/** Options of {@link train}: the method and that method's options. */
export type TrainRequest =
  | ({ method?: 'features' } & TrainOptions)
  | ({ method: 'baseline' } & BaselineOptions)
  | ({ method: 'finetune' } & FinetuneOptions)
  | ({ method: 'ensemble' } & EnsembleOptions);

/**
 * Trains with the requested method (default `features`) and returns the written model.
 *
 * @throws Error naming `method` when it is not one of {@link TRAIN_METHODS}; otherwise what the method throws.
 */
export async function train(request: TrainRequest): Promise<TrainResult> {
  const method = request.method ?? 'features';
  if (request.method === undefined || request.method === 'features') return trainFeatures(request);
  if (request.method === 'baseline') return (await import('./train-baseline.js')).trainBaseline(request);
  if (request.method === 'finetune') return (await import('./finetune.js')).trainFinetune(request);
  if (request.method === 'ensemble') return (await import('./ensemble.js')).trainEnsemble(request);
  throw new Error(`Expected one of ${TRAIN_METHODS.join(', ')} for method but received ${JSON.stringify(method)}`);
}

export interface TrainResult {
  modelPath: string;
  card: ModelCard;
  parity: ParityResult;
}

/**
 * The `features` method: trains a head on frozen bottleneck features, exports and checks the model;
 * writes `<out>/model.onnx`, `<out>/MODEL_CARD.md` and `<out>/history.json` (per-epoch loss/accuracy, the training curves).
 *
 * @throws Error on bad data (see loadDataset), unavailable base weights, undecodable training
 *   images, or a failed parity check (nothing is written then).
 */
export async function trainFeatures(options: TrainOptions): Promise<TrainResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const started = performance.now();
  const seed = options.seed ?? 42;
  const baseName = options.base ?? 'mobilenetv2-12-int8';
  if (!Object.hasOwn(BASE_WEIGHTS, baseName)) {
    throw invalidParameterError('base', `one of ${Object.keys(BASE_WEIGHTS).map((k) => JSON.stringify(k)).join(', ')}`, baseName);
  }
  const isVgg16 = baseName === 'vgg16';
  if (isVgg16 && options.features === 'style') {
    throw new Error('Expected features "pooled" with base vgg16 but received "style": the style statistics read MobileNetV2 layers (MOBILENETV2_STYLE_LAYERS); use --features pooled (the default for vgg16)');
  }
  const featureKind = options.features ?? (isVgg16 ? 'pooled' : 'style');
  const spec = isVgg16 ? (await import('../export/vgg16-base.js')).VGG16_PREPROCESS : DEFAULT_PREPROCESS;
  const solver = options.head?.solver ?? ROUTE_SOLVER[featureKind];
  if (solver === 'lbfgs') refuseAdamOnly(options.head ?? {}, options.head?.solver === undefined);
  const config: HeadConfig = { ...DEFAULT_HEAD, seed, ...ROUTE_HEAD_DEFAULTS[featureKind], ...SOLVER_HEAD_DEFAULTS[solver], solver, ...options.head };
  validateHeadConfig(config); // before minutes of feature extraction, not after
  const baseInfo = BASE_WEIGHTS[baseName];

  const start = await startTraining(options, seed, log);

  const weights = await resolveBaseWeights(baseName, { weightsDir: options.weightsDir, acceptSha256: options.acceptSha256, log });
  log(`base: ${baseName} (${weights.source}: ${weights.path})`);
  const tta = options.tta ?? 'none';
  if (!TTA_CHOICES.includes(tta)) throw invalidParameterError('tta', `one of ${TTA_CHOICES.map((t) => JSON.stringify(t)).join(', ')}`, tta);
  const plainFeatureModel = isVgg16
    ? await (await import('../export/vgg16-base.js')).buildVgg16FeatureModel(weights.path, spec)
    : featureKind === 'style'
      ? buildStyleFeatureModel(decodeModel(await readFile(weights.path), weights.path), baseInfo, spec, MOBILENETV2_STYLE_LAYERS)
      : buildFeatureModel(decodeModel(await readFile(weights.path), weights.path), baseInfo, spec);
  // With flip TTA the features themselves are view-averaged, so the head trains on what it will be served.
  const featureModel = tta === 'flip' ? averageFeaturesOverFlip(plainFeatureModel) : plainFeatureModel;
  const featureDim = featureKind === 'style' ? styleFeatureDim(MOBILENETV2_STYLE_LAYERS) : baseInfo.featureDim;
  log(`bottleneck features: ${featureKind}, ${featureDim}-d${tta === 'flip' ? ', averaged over the image and its mirror (TTA)' : ''}`);
  // docs/open-set.json measured the style route (softmax regression, no TTA, plain targets, one solver); any
  // other route's card states no AUROC rather than a borrowed one.
  const measuredRoute = !isVgg16 && featureKind === 'style' && tta === 'none' && config.hidden === 0 && config.labelSmoothing === 0 && config.mixup === 0 && !config.batchNorm;
  return trainHeadOnFeatureModel({
    featureModel,
    featureDim,
    spec,
    config,
    openSetAuroc: measuredRoute ? await measuredOpenSetAuroc(DEFAULT_OPEN_SET_SCORE, config.solver, start.dataset.classes) : undefined,
    base: { name: baseName, sha256: weights.sha256, features: featureKind, featureDim, ...(tta === 'flip' ? { tta } : {}) },
    describe: (head) => ({ method: 'features', seed, epochs: head.history.length, bestEpoch: head.bestEpoch, hyperparameters: hyperparametersOf(config) }),
    start,
    options,
    started,
    log,
  });
}

/** What {@link trainHeadOnFeatureModel} trains on and how its card describes the result. */
export interface HeadRoute {
  /** Input `image` `[N,H,W,3] uint8 NHWC`, output `features` `[N,featureDim] float32` (e.g. from buildStyleFeatureModel). */
  featureModel: ModelProto;
  featureDim: number;
  /** Decoding and in-graph preprocessing of `featureModel`, recorded in the card. */
  spec: PreprocessSpec;
  /** The head's settings, validated (validateHeadConfig). */
  config: HeadConfig;
  /** Leave-one-artist-out AUROC measured for this very route (measuredOpenSetAuroc, docs/open-set.json); absent: the card states none. */
  openSetAuroc?: Awaited<ReturnType<typeof measuredOpenSetAuroc>>;
  /** The card's `base`. */
  base: ModelCard['base'];
  /** The card's method, seed, epochs and hyperparameters, once the head is trained. */
  describe: (head: TrainedHead) => Pick<ModelCard['training'], 'method' | 'seed' | 'epochs' | 'bestEpoch' | 'hyperparameters'>;
  /** `history.json`: the head's per-epoch history alone (default), or these entries plus `head`. */
  history?: Record<string, unknown>;
  /** `features` output's doc string in the graph; default as spliceHead's. */
  featuresDoc?: string;
  start: TrainingStart;
  options: Pick<TrainOptions, 'data' | 'name' | 'parityImages'>;
  /** `performance.now()` when the run began (the card's training.seconds). */
  started: number;
  log: (line: string) => void;
}

/**
 * The head pipeline after "which feature model": bottleneck features of every split (onnxruntime, cached by
 * image content and feature-model bytes), head trained in TF.js (best epoch on validation), temperature
 * scaling, open-set threshold (energy), export (`featureModel` + head spliced, card in metadata), parity check
 * on held-out images, then `<out>/model.onnx`, `MODEL_CARD.md`, `history.json`. Used by the `features` method
 * and by `finetune --features style` (on the style statistics of the fine-tuned base).
 *
 * @throws Error on undecodable images or a failed parity check (nothing is written then).
 */
export async function trainHeadOnFeatureModel(route: HeadRoute): Promise<TrainResult> {
  const { featureModel, featureDim, spec, config, log, options } = route;
  const { out, backend, dataset, split } = route.start;
  const featureBytes = encodeModel(featureModel);
  const { session: featureSession } = await createSession(featureBytes, { provider: 'auto' });
  const extractor: FeatureExtractor = { session: featureSession, modelKey: featureModelKey(featureBytes), spec, featureDim };

  const digests: Record<string, string> = {};
  const contents: Record<string, string[]> = {};
  const featuresOf = async (samples: Sample[], label: 'train' | 'validation' | 'test'): Promise<FeatureSet> => {
    const t0 = performance.now();
    const { features, cached, sha256 } = await extractFeatures(extractor, samples.map((s) => s.path));
    digests[label] = splitDigest(sha256);
    contents[label] = sha256;
    log(`bottleneck features (${label}): ${samples.length} images, ${cached} from cache, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return { x: features, y: samples.map((s) => s.label) };
  };
  const trainSet = await featuresOf(dataset.train, 'train');
  const valSet = await featuresOf(dataset.validation, 'validation');
  const testSet = dataset.test.length > 0 ? await featuresOf(dataset.test, 'test') : undefined;
  digests.test ??= splitDigest([]);
  warnOnRepeatedImages(contents, log);

  // An L-BFGS step is one pass over the whole training set but not an epoch of mini-batches: say which.
  const step = config.solver === 'lbfgs' ? 'L-BFGS iteration' : 'epoch';
  const head = await trainHead(trainSet, valSet, featureDim, dataset.classes.length, config, (e) => {
    if (e.epoch % 10 === 0) log(`${step} ${e.epoch}: loss ${e.loss.toFixed(4)} acc ${pct(e.accuracy)} | val loss ${e.valLoss.toFixed(4)} val acc ${pct(e.valAccuracy)}`);
  });
  // Temperature scaling on validation, folded into the output layer before anything is measured or exported.
  const c = dataset.classes.length;
  const predictionsOf = (set: FeatureSet): SplitPredictions => ({ probabilities: predictHead(head, set.x), labels: set.y });
  const { calibration, identifiable } = calibrateOnValidation(predictionsOf(valSet), testSet && predictionsOf(testSet), c);
  if (!identifiable) log('temperature scaling skipped: every validation image is classified correctly, so T is not identifiable (T = 1)');
  applyTemperature(head.model, calibration.temperature);
  // The open-set score reads the temperature-scaled logits, so it is fitted after the temperature is folded in.
  const openSetFit = fitHeadOpenSet({ head, train: trainSet, validation: valSet, test: testSet, auroc: route.openSetAuroc });
  log(formatOpenSet(openSetFit.openSet));
  log(formatCalibration(calibration));
  const accuracyOn = (set: FeatureSet) => accuracyOf(predictionsOf(set), c);
  const best = head.history[head.bestEpoch - 1];
  const metrics: ModelCard['metrics'] = {
    train: { images: trainSet.y.length, accuracy: accuracyOn(trainSet) },
    validation: { images: valSet.y.length, accuracy: best.valAccuracy, loss: best.valLoss },
    ...(testSet ? { test: { images: testSet.y.length, accuracy: accuracyOn(testSet) } } : {}),
  };
  const kept = config.solver === 'lbfgs' ? `L-BFGS converged after ${head.history.length} iterations` : `best epoch ${head.bestEpoch}/${head.history.length}`;
  log(`${kept}: validation ${pct(metrics.validation.accuracy)}${metrics.test ? `, test ${pct(metrics.test.accuracy)} (held out)` : ''}`);

  const described = route.describe(head);
  const card: ModelCard = {
    ...cardIdentity(out, options.name, dataset.classes, spec),
    base: route.base,
    training: {
      method: described.method,
      data: options.data,
      layout: dataset.layout,
      seed: described.seed,
      split,
      epochs: described.epochs,
      bestEpoch: described.bestEpoch,
      backend: backend.name,
      hyperparameters: described.hyperparameters,
      splitDigest: { train: digests.train, validation: digests.validation, test: digests.test },
      seconds: 0,
    },
    metrics,
    calibration,
    parity: { images: 0, maxAbsDiff: 0, tolerance: 0 },
    openSet: openSetFit.openSet,
    createdAt: new Date().toISOString(),
  };

  // Export, then check the exported graph against its source on real held-out images.
  const headGraph = headToOnnx(head.model, head.standardizer);
  const draft = encodeModel(openSetFit.addToModel(spliceHead(featureModel, headGraph, card, route.featuresDoc)));
  const { session: exported } = await createSession(draft, { provider: 'cpu' });
  const parityPaths = (dataset.test.length ? dataset.test : dataset.validation).map((s) => s.path).slice(0, options.parityImages ?? 32);
  const parity = await checkParity(exported, featureSession, (f) => predictHead(head, f), parityPaths, spec);
  log(`export parity: max |p_onnx - p_tfjs| = ${parity.maxAbsDiff.toExponential(2)} over ${parity.images} images (tolerance ${parity.tolerance}), top-1 disagreements ${parity.top1Disagreements}`);
  await Promise.all([exported.release(), featureSession.release()]);

  card.parity = { images: parity.images, maxAbsDiff: parity.maxAbsDiff, tolerance: parity.tolerance };
  card.training.seconds = Math.round((performance.now() - route.started) / 100) / 10;
  const modelBytes = encodeModel(openSetFit.addToModel(spliceHead(featureModel, headGraph, card, route.featuresDoc)));
  const modelPath = await writeModelFolder(out, modelBytes, card, route.history ? { ...route.history, head: head.history } : head.history);
  head.model.dispose();
  log(`wrote ${modelPath} (${(modelBytes.length / 1e6).toFixed(1)} MB) in ${card.training.seconds} s`);
  return { modelPath, card, parity };
}


/**
 * Refuses settings that L-BFGS would silently ignore (epochs, learning rate, schedule, batches, batch norm):
 * an option that does nothing is an error, as for options given to a method they do not apply to.
 *
 * @throws Error naming the first such setting (and its CLI flag), when `head` sets one.
 */
function refuseAdamOnly(head: Partial<HeadConfig>, defaulted: boolean): void {
  const set = ADAM_ONLY.find((k) => head[k] !== undefined);
  if (set === undefined) return;
  const flag = `--${set.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  throw new Error(`Expected no ${set} (${flag}) with solver lbfgs${defaulted ? ' (the default for style features)' : ''}: L-BFGS has no epochs, learning rate or mini-batches, so it would be ignored; add --solver adam to use it, but received ${JSON.stringify(head[set])}`);
}

/**
 * Warns when the same image bytes sit in two splits (a Keras-layout folder filled by copying, or a
 * painting saved twice under two names): the "held-out" figures then include images the model trained on.
 */
function warnOnRepeatedImages(contents: Record<string, string[]>, log: (line: string) => void): void {
  const train = new Set(contents.train ?? []);
  for (const label of ['validation', 'test']) {
    const repeated = (contents[label] ?? []).filter((sha) => train.has(sha)).length;
    if (repeated > 0) log(`WARNING: ${repeated} of ${contents[label].length} ${label} images have the same bytes as a training image; the ${label} figures are not held out for them`);
  }
}
