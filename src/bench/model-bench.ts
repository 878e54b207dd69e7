/**
 * Model-only benchmarks, in process: session creation, first inference, then images/s and batch
 * latency p50/p90/p95/p99 over measurement windows repeated until three agree (perf_analyzer's
 * stability rule, see `stats.ts`), warm-up excluded. Runs artist-id's `Classifier.run` and a bare
 * onnxruntime-node `InferenceSession` on the same model file and batch, and bare sessions with
 * varied session options.
 */
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { Classifier } from '../inference/classifier.js';
import type { ExecutionProvider } from '../inference/session.js';
import { decodeModel, toNumber } from '../onnx/model.js';
import { decodeImage } from '../preprocess/decode.js';
import { DEFAULT_PREPROCESS, IMAGENET_MEAN, IMAGENET_STD, type PreprocessSpec } from '../preprocess/spec.js';
import { isStable, measureUntilStable, mergeWindows, seededRandom, stabilityDefaults, type LatencySummary, type MeasureOptions, type WindowSample } from './stats.js';

/** How long and how strictly to measure one configuration. */
export interface WindowOptions extends MeasureOptions {
  /** Length of one measurement window in ms (perf_analyzer `--measurement-interval`, default there 5000). */
  windowMs: number;
  /** Warm-up after the first inference, ms; excluded from every figure. */
  warmupMs: number;
}

/** Result of benchmarking one configuration (one runner at one batch). */
export interface ModelBenchResult {
  /** What ran, e.g. `artist-id Classifier.run` or `bare onnxruntime-node`. */
  runner: string;
  /** Session options or variant label. */
  variant: string;
  model: string;
  batch: number;
  provider: string;
  /** Session creation wall time, ms. */
  createMs: number;
  /** First inference (cold), ms. */
  firstInferenceMs: number;
  /** Images/s over the judged windows. */
  imagesPerSecond: number;
  /** Latency of one batch (one `run` call), ms. */
  latency: LatencySummary;
  /** Windows measured (warm-up excluded) and whether the last three agreed. */
  windows: number;
  stable: boolean;
  /** Throughput of every window, images/s (to show the spread). */
  windowImagesPerSecond: number[];
}

/** Something that runs one batch; created per configuration and disposed after it. */
export interface BatchRunner {
  runner: string;
  variant: string;
  model: string;
  batch: number;
  provider: string;
  createMs: number;
  run(): Promise<unknown>;
  dispose(): Promise<void>;
}

/** Times the first (cold) run alone, then warms up for `warmupMs` (at least one more run); returns the first run's ms. */
async function firstAndWarm(runner: BatchRunner, warmupMs: number): Promise<number> {
  const t0 = performance.now();
  await runner.run();
  const firstInferenceMs = performance.now() - t0;
  for (let n = 0, start = performance.now(); n < 1 || performance.now() - start < warmupMs; n++) await runner.run();
  return firstInferenceMs;
}

/** One window: back-to-back runs until at least `windowMs` has passed (at least one run). */
async function measureWindow(runner: BatchRunner, windowMs: number): Promise<WindowSample> {
  const latencies: number[] = [];
  const start = performance.now();
  let now = start;
  do {
    const s = performance.now();
    await runner.run();
    now = performance.now();
    latencies.push(now - s);
  } while (now - start < windowMs);
  return { durationMs: now - start, items: latencies.length * runner.batch, latenciesMs: latencies };
}

function resultOf(runner: BatchRunner, firstInferenceMs: number, windows: WindowSample[], stable: boolean, windowCount: number): ModelBenchResult {
  const summary = mergeWindows(windows.slice(-windowCount));
  return {
    runner: runner.runner,
    variant: runner.variant,
    model: runner.model,
    batch: runner.batch,
    provider: runner.provider,
    createMs: runner.createMs,
    firstInferenceMs,
    imagesPerSecond: summary.itemsPerSecond,
    latency: summary.latency,
    windows: windows.length,
    stable,
    windowImagesPerSecond: windows.map((w) => (w.items * 1000) / w.durationMs),
  };
}

/**
 * Measures one runner: first inference (timed alone), warm-up for `warmupMs` (at least 1 run),
 * then windows of back-to-back runs of at least `windowMs` each until stable or `maxTrials`.
 */
export async function benchRunner(runner: BatchRunner, options: WindowOptions): Promise<ModelBenchResult> {
  const firstInferenceMs = await firstAndWarm(runner, options.warmupMs);
  const measured = await measureUntilStable(() => measureWindow(runner, options.windowMs), options);
  return resultOf(runner, firstInferenceMs, measured.windows, measured.stable, stabilityDefaults(options).windowCount);
}

/**
 * Measures runners meant to be compared: windows go round-robin (a, b, c, a, b, c, ...), so
 * anything else on the machine (load coming and going, clock changes) weighs on all alike and their
 * ratios stay fair. Stops when every runner meets the stability rule on its own last windows, or
 * after `maxTrials` windows each.
 */
export async function benchGroup(runners: readonly BatchRunner[], options: WindowOptions): Promise<ModelBenchResult[]> {
  const stability = stabilityDefaults(options);
  const maxTrials = options.maxTrials ?? 10;
  const first: number[] = [];
  for (const r of runners) first.push(await firstAndWarm(r, options.warmupMs));
  const windows: WindowSample[][] = runners.map(() => []);
  let stable = runners.map(() => false);
  while (windows[0].length < maxTrials && !stable.every(Boolean)) {
    for (let i = 0; i < runners.length; i++) windows[i].push(await measureWindow(runners[i], options.windowMs));
    stable = windows.map((w) => isStable(w, stability));
  }
  return runners.map((r, i) => resultOf(r, first[i], windows[i], stable[i], stability.windowCount));
}

/** Two runners measured with alternating windows (see {@link benchGroup}). */
export async function benchPair(a: BatchRunner, b: BatchRunner, options: WindowOptions): Promise<[ModelBenchResult, ModelBenchResult]> {
  const [ra, rb] = await benchGroup([a, b], options);
  return [ra, rb];
}

/** Creates runners, measures them as a group (see {@link benchGroup}), disposes them all. */
export async function measureGroup(makers: readonly (() => Promise<BatchRunner>)[], options: WindowOptions): Promise<ModelBenchResult[]> {
  const runners: BatchRunner[] = [];
  try {
    for (const make of makers) runners.push(await make());
    return await benchGroup(runners, options);
  } finally {
    for (const r of runners) await r.dispose();
  }
}

/** Two runners created, measured with alternating windows, and disposed. */
export async function measurePair(makeA: () => Promise<BatchRunner>, makeB: () => Promise<BatchRunner>, options: WindowOptions): Promise<[ModelBenchResult, ModelBenchResult]> {
  const [a, b] = await measureGroup([makeA, makeB], options);
  return [a, b];
}

/** Decodes `count` paintings (cycling through `files`) with the model's preprocessing. */
export async function decodeImages(files: readonly string[], count: number, spec: PreprocessSpec = DEFAULT_PREPROCESS): Promise<Uint8Array[]> {
  const unique = [...new Set(files.slice(0, count))];
  const decoded = new Map<string, Uint8Array>();
  for (const f of unique) decoded.set(f, await decodeImage(await readFile(f), spec));
  return Array.from({ length: count }, (_, i) => decoded.get(files[i % Math.min(files.length, count)])!);
}

/** A graph input as declared in the ONNX file. */
export interface ModelInput {
  name: string;
  /** onnxruntime tensor type, e.g. `uint8`, `float32`. */
  type: string;
  /** Dims; symbolic dims as their name. */
  dims: (number | string)[];
}

const ONNX_TYPES: Record<number, string> = { 1: 'float32', 2: 'uint8', 3: 'int8', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64' };

/** The graph inputs of a model (initializers excluded). */
export function modelInputs(bytes: Uint8Array, source = 'model'): ModelInput[] {
  const model = decodeModel(bytes, source);
  const inits = new Set(model.graph.initializer.map((t) => t.name));
  return model.graph.input
    .filter((i) => !inits.has(i.name))
    .map((i) => ({
      name: i.name,
      type: ONNX_TYPES[i.type?.tensor_type?.elem_type ?? 1] ?? 'float32',
      dims: (i.type?.tensor_type?.shape?.dim ?? []).map((d) => (d.dim_value !== undefined && toNumber(d.dim_value) > 0 ? toNumber(d.dim_value) : d.dim_param ?? 'N')),
    }));
}

/**
 * Feeds for one batch of any model: image-shaped inputs get real decoded paintings
 * (`[N,H,W,3] uint8` as is; `[N,3,H,W] float32` scaled to [0,1] and ImageNet-normalised, as the
 * Model Zoo MobileNetV2 expects), other inputs seeded random values; the first dim is the batch.
 */
export function feedsFor(inputs: readonly ModelInput[], batch: number, images: readonly Uint8Array[], spec: PreprocessSpec = DEFAULT_PREPROCESS): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  const random = seededRandom(7);
  for (const input of inputs) {
    const dims = input.dims.map((d, i) => (typeof d === 'number' ? d : i === 0 ? batch : 1));
    const size = dims.reduce((a, b) => a * b, 1);
    const { width: w, height: h } = spec;
    const nhwc = dims.length === 4 && dims[1] === h && dims[2] === w && dims[3] === 3;
    const nchw = dims.length === 4 && dims[1] === 3 && dims[2] === h && dims[3] === w;
    if (input.type === 'uint8' && nhwc) {
      const data = new Uint8Array(size);
      for (let n = 0; n < batch; n++) data.set(images[n % images.length], n * h * w * 3);
      feeds[input.name] = new ort.Tensor('uint8', data, dims);
    } else if (input.type === 'float32' && nchw) {
      const data = new Float32Array(size);
      for (let n = 0; n < batch; n++) {
        const img = images[n % images.length];
        for (let c = 0; c < 3; c++) {
          for (let p = 0; p < h * w; p++) data[((n * 3 + c) * h * w) + p] = (img[p * 3 + c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
      }
      feeds[input.name] = new ort.Tensor('float32', data, dims);
    } else if (input.type === 'float32') {
      feeds[input.name] = new ort.Tensor('float32', Float32Array.from({ length: size }, () => random() * 2 - 1), dims);
    } else if (input.type === 'uint8' || input.type === 'int8') {
      const data = input.type === 'uint8' ? Uint8Array.from({ length: size }, () => Math.floor(random() * 256)) : Int8Array.from({ length: size }, () => Math.floor(random() * 256) - 128);
      feeds[input.name] = new ort.Tensor(input.type, data, dims);
    } else {
      throw new Error(`Expected float32, uint8 or int8 for the type of model input ${input.name} but received ${input.type}`);
    }
  }
  return feeds;
}

/** A named set of onnxruntime session options, one change from a base. */
export interface SessionVariant {
  /** Short label, e.g. `intraOpNumThreads=1`. */
  label: string;
  options: ort.InferenceSession.SessionOptions;
}

/**
 * artist-id's session options (`src/inference/session.ts` `baseOptions`, CPU): all graph
 * optimisations, sequential execution, intra-op threads = cores, 1 inter-op thread, memory arena
 * and pattern on.
 */
export function artistIdSessionOptions(cores: number): ort.InferenceSession.SessionOptions {
  return { graphOptimizationLevel: 'all', executionMode: 'sequential', intraOpNumThreads: cores, interOpNumThreads: 1, enableCpuMemArena: true, enableMemPattern: true, logSeverityLevel: 3 };
}

/**
 * The session-option sweep: artist-id's options, then one change at a time (intra-op threads 1,
 * graph optimisation disabled/basic/extended, arena off, memory pattern off, thread spinning off,
 * parallel execution), so each change's effect is its ratio to the first.
 * Option meanings: https://onnxruntime.ai/docs/performance/tune-performance/ and
 * `onnxruntime_session_options_config_keys.h` (`session.intra_op.allow_spinning`).
 */
export function sessionVariants(cores: number, thorough: boolean): SessionVariant[] {
  const base = artistIdSessionOptions(cores);
  const variants: SessionVariant[] = [
    { label: `artist-id options (intraOpNumThreads=${cores}, graph all, arena on, spinning on)`, options: base },
    { label: 'intraOpNumThreads=1', options: { ...base, intraOpNumThreads: 1 } },
    { label: 'graphOptimizationLevel=disabled', options: { ...base, graphOptimizationLevel: 'disabled' } },
    { label: 'graphOptimizationLevel=basic', options: { ...base, graphOptimizationLevel: 'basic' } },
    { label: 'enableCpuMemArena=false', options: { ...base, enableCpuMemArena: false } },
    { label: 'allow_spinning=0', options: { ...base, extra: { session: { intra_op: { allow_spinning: '0' } } } } },
  ];
  if (thorough) {
    variants.push(
      { label: 'graphOptimizationLevel=extended', options: { ...base, graphOptimizationLevel: 'extended' } },
      { label: 'enableMemPattern=false', options: { ...base, enableMemPattern: false } },
      { label: 'executionMode=parallel', options: { ...base, executionMode: 'parallel', interOpNumThreads: cores } },
    );
  }
  return variants;
}

/**
 * A bare onnxruntime-node session on `modelPath`, running the whole graph (all outputs) on
 * prebuilt feeds: what a user of onnxruntime-node alone would measure.
 *
 * @param options - session options; `{}` is onnxruntime's own defaults.
 */
export async function bareRunner(modelPath: string, batch: number, images: readonly Uint8Array[], options: ort.InferenceSession.SessionOptions, variant: string): Promise<BatchRunner> {
  return bytesRunner(await readFile(modelPath), modelPath, batch, images, options, variant);
}

/**
 * {@link bareRunner} on model bytes held in memory (e.g. a graph converted in process); `model` is
 * the label reported for it.
 */
export async function bytesRunner(bytes: Uint8Array, model: string, batch: number, images: readonly Uint8Array[], options: ort.InferenceSession.SessionOptions, variant: string): Promise<BatchRunner> {
  const inputs = modelInputs(bytes, model);
  const start = performance.now();
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], ...options });
  const createMs = performance.now() - start;
  const feeds = feedsFor(inputs, batch, images);
  return {
    runner: 'bare onnxruntime-node',
    variant,
    model,
    batch,
    provider: 'cpu',
    createMs,
    run: () => session.run(feeds),
    dispose: () => session.release(),
  };
}

/**
 * artist-id's own path: `Classifier.load` (its session options and provider choice) and
 * `Classifier.run` on decoded images (batch assembly, probabilities split per image included).
 */
export async function classifierRunner(modelPath: string, batch: number, images: readonly Uint8Array[], provider: 'auto' | ExecutionProvider = 'cpu'): Promise<BatchRunner> {
  const classifier = await Classifier.load(modelPath, { provider, onWarning: () => undefined });
  const batchImages = Array.from({ length: batch }, (_, i) => images[i % images.length]);
  return {
    runner: 'artist-id Classifier.run',
    variant: `provider ${classifier.provider}`,
    model: modelPath,
    batch,
    provider: classifier.provider,
    createMs: classifier.createMs,
    run: () => classifier.run(batchImages),
    dispose: () => classifier.dispose(),
  };
}

/** Creates, measures and disposes a runner. */
export async function measure(make: () => Promise<BatchRunner>, options: WindowOptions): Promise<ModelBenchResult> {
  const runner = await make();
  try {
    return await benchRunner(runner, options);
  } finally {
    await runner.dispose();
  }
}
