/**
 * `artist-id bench`: plans and runs every benchmark (model only, end to end, server), one
 * configuration at a time, and collects a {@link BenchReport}.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import { resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { expectInteger, invalidParameterError } from '../errors.js';
import { Classifier, resolveModelPath } from '../inference/classifier.js';
import { cudaProviderInstalled } from '../inference/session.js';
import type { ModelCard } from '../model/card.js';
import { cardOfModel } from '../model/read-card.js';
import { decodeModel } from '../onnx/model.js';
import { DEFAULT_PREPROCESS } from '../preprocess/spec.js';
import { PACKAGE_ROOT } from '../paths.js';
import { DEFAULT_LARGE_JPEG, defaultDataDir, largeJpegs, sampleImages, totalBytes } from './corpus.js';
import { benchArchiveGroup, benchDecode, bottleneck, sessionClassifier, type ArchiveConfig, type E2eResult } from './e2e-bench.js';
import { countModelFlops, type ModelFlops } from './flops.js';
import { DEFAULT_GEMM, gemmFlops, gemmRunner } from './gemm.js';
import { artistIdSessionOptions, bareRunner, classifierRunner, decodeImages, feedsFor, measure, measureGroup, measurePair, modelInputs, sessionVariants, type ModelBenchResult, type WindowOptions } from './model-bench.js';
import { profileModel, type OpProfile } from './profile.js';
import { machinePeak, microarchitectureOf, type MachinePeak, type PeakOptions } from './peak.js';
import { closedLoop, openLoop, resolveTarget, type ServerEncoding, type ServerInputKind, type ServerResult } from './server-bench.js';
import { pairedRatio, ratio } from './stats.js';
import { measureTwins, twinComparisons, type TwinReport } from './twin-bench.js';

/** Options of {@link runBench}; every field is optional. */
export interface BenchOptions {
  /** Model (`--model`): .onnx file, folder with model.onnx, or name under models/. Default `default`. */
  model?: string;
  /** Batch sizes of the model-only sweep; default 1, 8, 32, 64. */
  batches?: number[];
  /** Batch of the session-option sweep and reference model; default 8. */
  optionsBatch?: number;
  /** Folder of real paintings for end-to-end runs; default {@link defaultDataDir}. */
  data?: string;
  /** Real files per end-to-end pass; default 48 (thorough 600). */
  files?: number;
  /**
   * Generated large JPEGs per pass; default 24 (thorough 96); 0 skips them. Quick runs generate 8
   * distinct files and cycle them (generation is slow the first time; decode cost is per file either way).
   */
  largeFiles?: number;
  /** Decode concurrency levels of the decode-only sweep; default 1, 2, 4. */
  decodeConcurrency?: number[];
  /** Archive batch; default 16 (what `classify` uses). */
  archiveBatch?: number;
  /** Reference ONNX model run bare (e.g. the Model Zoo MobileNetV2 int8); default `../shared/weights/mobilenetv2-12-int8.onnx` when present. */
  referenceModel?: string | false;
  /**
   * Also measure the reference model's same-weights twins (dequantised fp32 graph in onnxruntime,
   * imported TF.js model) for the "onnxruntime-node vs TF.js" and "int8 vs fp32" comparisons.
   * Default: on with `thorough` (and in scripts/performance.ts), off in quick runs, where the step
   * (TF.js load, import and ~0.5 s batches on WASM) would add ~8-10 s to the < 1 min budget.
   */
  twins?: boolean;
  /** Longer windows and full sweeps (perf_analyzer-like rigour); default false: finishes in < 1 min. */
  thorough?: boolean;
  /** Window length in ms; default 200 (thorough 2000). */
  windowMs?: number;
  /** Warm-up in ms; default 150 (thorough 1500). */
  warmupMs?: number;
  /** perf_analyzer `--stability-percentage`; default 10. */
  stabilityPercentage?: number;
  /** perf_analyzer `--max-trials`; default 5 (thorough 10). */
  maxTrials?: number;
  /** Skip the dense-GEMM calibration (fraction of peak a compute-bound graph reaches). */
  skipCalibration?: boolean;
  /** Which parts run; default model + e2e (+ server when `url`). */
  skipModel?: boolean;
  skipE2e?: boolean;
  /** KServe v2 server to benchmark. */
  url?: string;
  /** Model name on the server; default `default` (the name `artist-id serve` gives its model). */
  serverModel?: string;
  serverInput?: ServerInputKind | 'auto';
  serverEncoding?: ServerEncoding;
  /** Images per server request; default 1. */
  serverBatch?: number;
  /** Closed-loop levels; default 1, 4, 16, 64. */
  concurrency?: number[];
  /** Open-loop rates (requests/s); default: 25, 50, 75, 90% of the best closed-loop rate. */
  requestRates?: number[];
  /** Arrival distributions of the open loop; default constant and poisson. */
  distributions?: ('constant' | 'poisson')[];
  /** Overrides of the peak computation. */
  peak?: PeakOptions;
  /** Called before each step with its label and position. */
  onStep?: (label: string, index: number, total: number) => void;
}

/** One comparison written as a ratio. */
export interface Comparison {
  name: string;
  /** What is divided by what. */
  numerator: string;
  denominator: string;
  ratio?: number;
  /** `measured`, or why there is no figure. */
  status: 'measured' | 'not available';
  note?: string;
}

/** Everything a bench run measured. */
export interface BenchReport {
  format: 'artist-id-bench/1';
  startedAt: string;
  seconds: number;
  thorough: boolean;
  machine: {
    cpu: MachinePeak['cpu'];
    microarchitecture?: string;
    peak: MachinePeak;
    node: string;
    onnxruntime: string;
    sharp: string;
    libvips: string;
    /** Load average (1, 5, 15 min) before and after the run: other work on the machine skews figures. */
    loadBefore: number[];
    loadAfter: number[];
    /** Share of all CPUs busy in the second before the run (any process). */
    busyBefore: number;
    /**
     * Share of all CPU capacity used by other processes during the run: machine CPU time (os.cpus)
     * minus this process's (process.cpuUsage), over wall time × CPUs.
     */
    otherCpuShare: number;
    memoryGB: number;
  };
  settings: { windowMs: number; warmupMs: number; stabilityPercentage: number; maxTrials: number; batches: number[]; optionsBatch: number; archiveBatch: number };
  model: { path: string; name: string; classes: number; flopsPerImage?: ModelFlops; flopsError?: string; reference?: { path: string; flopsPerImage?: ModelFlops } };
  modelRuns: ModelBenchResult[];
  sessionOptions: ModelBenchResult[];
  referenceRuns: ModelBenchResult[];
  /**
   * The reference model as int8 file and dequantised fp32 graph in onnxruntime-node and as the
   * imported TF.js model (same weights), measured as one group; absent when not run.
   */
  twins?: TwinReport;
  /** Why {@link twins} is absent (no reference model, or the conversion failed). */
  twinsUnavailable?: string;
  /** onnxruntime's per-node kernel times for the model (artist-id options, options batch). */
  profile?: OpProfile;
  /** Wall time of every step, s. */
  steps: { label: string; seconds: number }[];
  /** Dense GEMM in onnxruntime: achieved GFLOP/s (fp32) and GOP/s (int8) of a compute-bound graph. */
  calibration: (ModelBenchResult & { precision: 'fp32' | 'int8'; opsPerRun: number; gops: number; fractionOfPeak: number })[];
  e2e: E2eResult[];
  corpora: { name: string; files: number; uniqueFiles: number; megabytes: number; source: string }[];
  bottlenecks: { corpus: string; decodeImagesPerSecond: number; inferenceImagesPerSecond: number; decodeShare: number; inferenceShare: number; serial: number; overlapBound: number; bottleneck: string; archiveImagesPerSecond?: number }[];
  server?: { url: string; model: string; input: string; encoding: string; batch: number; results: ServerResult[] };
  comparisons: Comparison[];
  notes: string[];
}

function versionOf(pkg: string): string {
  try {
    const require = createRequire(import.meta.url);
    const main = require.resolve(pkg);
    let dir = main;
    for (let i = 0; i < 6; i++) {
      dir = resolve(dir, '..');
      try {
        const json = JSON.parse(readFileSync(resolve(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (json.name === pkg) return json.version ?? 'unknown';
      } catch {
        // keep looking upward
      }
    }
  } catch {
    // not installed
  }
  return 'unknown';
}

function positiveList(name: string, values: number[] | undefined, fallback: number[]): number[] {
  const list = values ?? fallback;
  if (!Array.isArray(list) || list.length === 0) throw invalidParameterError(name, 'a non-empty list of positive integers', list);
  return list.map((v) => expectInteger(name, v));
}

/** The ImageNet MobileNetV2 beside a development clone, if present. */
function defaultReferenceModel(): string | undefined {
  const p = resolve(PACKAGE_ROOT, '..', 'shared', 'weights', 'mobilenetv2-12-int8.onnx');
  try {
    readFileSync(p, { flag: 'r' }).subarray(0, 1);
    return p;
  } catch {
    return undefined;
  }
}

/**
 * Runs the benchmark and returns its report. Steps run one at a time (never two measurements at
 * once), each configuration creating and releasing its own session.
 *
 * @throws Error for bad options (naming the option), a missing model or data folder, or an
 *   unreachable server.
 */
export async function runBench(options: BenchOptions = {}): Promise<BenchReport> {
  const loadBefore = os.loadavg();
  const busyBefore = await cpuBusy(1000);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const machineBefore = machineCpuMs();
  const selfBefore = process.cpuUsage();
  const thorough = options.thorough === true;
  const cores = os.availableParallelism();
  const win: WindowOptions = {
    windowMs: expectInteger('windowMs', options.windowMs ?? (thorough ? 2000 : 200), 10),
    warmupMs: expectInteger('warmupMs', options.warmupMs ?? (thorough ? 1500 : 150), 0),
    stabilityPercentage: options.stabilityPercentage ?? 10,
    maxTrials: expectInteger('maxTrials', options.maxTrials ?? (thorough ? 10 : 5), 3),
  };
  const batches = positiveList('batches', options.batches, [1, 8, 32, 64]);
  const optionsBatch = expectInteger('optionsBatch', options.optionsBatch ?? 8);
  const archiveBatch = expectInteger('archiveBatch', options.archiveBatch ?? 16);
  const decodeLevels = positiveList('decodeConcurrency', options.decodeConcurrency, [1, 2, 4]);
  const fileCount = expectInteger('files', options.files ?? (thorough ? 600 : 48));
  const largeCount = expectInteger('largeFiles', options.largeFiles ?? (thorough ? 96 : 24), 0);
  const peak = machinePeak(options.peak ?? {});

  const modelPath = resolveModelPath(options.model);
  const modelBytes = await readFile(modelPath);
  const modelProto = decodeModel(modelBytes, modelPath);
  let card: ModelCard | undefined;
  try {
    card = cardOfModel(modelProto, modelPath);
  } catch {
    card = undefined; // a bare ONNX model: bare sessions only
  }
  const spec = card?.preprocessing ?? DEFAULT_PREPROCESS;
  let flops: ModelFlops | undefined;
  let flopsError: string | undefined;
  try {
    flops = countModelFlops(modelProto);
  } catch (err) {
    flopsError = (err as Error).message; // the rest of the bench does not need FLOPs
  }
  const referencePath = options.referenceModel === false ? undefined : options.referenceModel ?? defaultReferenceModel();
  let referenceFlops: ModelFlops | undefined;
  try {
    referenceFlops = referencePath ? countModelFlops(decodeModel(await readFile(referencePath), referencePath)) : undefined;
  } catch {
    referenceFlops = undefined;
  }

  const dataDir = options.data ?? defaultDataDir();
  const realFiles = await sampleImages(dataDir, fileCount);
  const images = await decodeImages(realFiles, Math.min(64, realFiles.length), spec);

  const report: BenchReport = {
    format: 'artist-id-bench/1',
    startedAt,
    seconds: 0,
    thorough,
    machine: {
      cpu: peak.cpu,
      microarchitecture: microarchitectureOf(peak.cpu),
      peak,
      node: process.version,
      onnxruntime: versionOf('onnxruntime-node'),
      sharp: sharp.versions.sharp ?? 'unknown',
      libvips: sharp.versions.vips,
      loadBefore,
      loadAfter: [],
      busyBefore,
      otherCpuShare: 0,
      memoryGB: os.totalmem() / 2 ** 30,
    },
    settings: { windowMs: win.windowMs, warmupMs: win.warmupMs, stabilityPercentage: win.stabilityPercentage ?? 10, maxTrials: win.maxTrials ?? 6, batches, optionsBatch, archiveBatch },
    model: { path: modelPath, name: card?.name ?? modelPath, classes: card?.classes.length ?? 0, flopsPerImage: flops, flopsError, ...(referencePath ? { reference: { path: referencePath, flopsPerImage: referenceFlops } } : {}) },
    modelRuns: [],
    sessionOptions: [],
    referenceRuns: [],
    calibration: [],
    steps: [],
    e2e: [],
    corpora: [],
    bottlenecks: [],
    comparisons: [],
    notes: [],
  };

  const steps: { label: string; run: () => Promise<void> }[] = [];
  if (!options.skipModel) {
    for (const batch of batches) {
      if (card) {
        // Paired, alternating windows: the ratio artist-id / bare is not skewed by load drifting between them.
        steps.push({ label: `model: artist-id Classifier.run vs bare onnxruntime-node, batch ${batch}`, run: async () => void report.modelRuns.push(...(await measurePair(() => classifierRunner(modelPath, batch, images, 'cpu'), () => bareRunner(modelPath, batch, images, {}, 'onnxruntime defaults'), win))) });
      } else {
        steps.push({ label: `model: bare onnxruntime-node, batch ${batch}`, run: async () => void report.modelRuns.push(await measure(() => bareRunner(modelPath, batch, images, {}, 'onnxruntime defaults'), win)) });
      }
    }
    steps.push({
      label: `model: operator profile, batch ${optionsBatch}`,
      run: async () => {
        report.profile = await profileModel(modelPath, feedsFor(modelInputs(modelBytes, modelPath), optionsBatch, images), optionsBatch, artistIdSessionOptions(cores), thorough ? 30 : 10);
      },
    });
    const variants = sessionVariants(cores, thorough);
    steps.push({
      label: `session options: ${variants.length} variants, batch ${optionsBatch}, windows round-robin`,
      run: async () => void report.sessionOptions.push(...(await measureGroup(variants.map((v) => () => bareRunner(modelPath, optionsBatch, images, v.options, v.label)), win))),
    });
    if (thorough) {
      for (const batch of batches.filter((b) => b !== optionsBatch)) {
        steps.push({ label: `session options: intraOpNumThreads=1, batch ${batch}`, run: async () => void report.sessionOptions.push(await measure(() => bareRunner(modelPath, batch, images, { ...artistIdSessionOptions(cores), intraOpNumThreads: 1 }, 'intraOpNumThreads=1'), win)) });
      }
    }
    if (!options.skipCalibration) {
      for (const precision of ['fp32', 'int8'] as const) {
        steps.push({
          label: `calibration: dense ${precision} GEMM ${DEFAULT_GEMM.m}x${DEFAULT_GEMM.k}x${DEFAULT_GEMM.n}`,
          run: async () => {
            const r = await measure(() => gemmRunner(precision), win);
            const opsPerRun = gemmFlops(DEFAULT_GEMM);
            const gops = (r.imagesPerSecond * opsPerRun) / 1e9;
            report.calibration.push({ ...r, precision, opsPerRun, gops, fractionOfPeak: gops / (precision === 'fp32' ? peak.fp32GFlops : peak.int8GOps) });
          },
        });
      }
    }
    if (referencePath && !(options.twins ?? thorough)) {
      report.twinsUnavailable = 'not measured in quick runs (adds ~10 s): run `artist-id bench --thorough` or `npx tsx scripts/performance.ts`';
      steps.push({ label: `reference: ${referencePath.split('/').pop()} bare, batch ${optionsBatch}`, run: async () => void report.referenceRuns.push(await measure(() => bareRunner(referencePath, optionsBatch, images, {}, 'onnxruntime defaults'), win)) });
    } else if (referencePath) {
      // The twin group's int8 run is the bare reference run (same file, batch and default options).
      // Quick runs cap it at 3 windows: the TF.js twin (WASM) takes ~0.6 s per batch of 8 here.
      const twinWin: WindowOptions = thorough ? win : { ...win, maxTrials: 3 };
      steps.push({
        label: `reference: ${referencePath.split('/').pop()} int8 vs dequantised fp32 (onnxruntime-node) vs TF.js twin, batch ${optionsBatch}, windows round-robin`,
        run: async () => {
          try {
            report.twins = await measureTwins(referencePath, optionsBatch, images, twinWin);
            report.referenceRuns.push(report.twins.int8);
          } catch (err) {
            report.twinsUnavailable = `not available: ${(err as Error).message.split('\n')[0].slice(0, 300)}`;
            report.referenceRuns.push(await measure(() => bareRunner(referencePath, optionsBatch, images, {}, 'onnxruntime defaults'), win));
          }
        },
      });
    } else {
      report.twinsUnavailable = options.referenceModel === false ? 'not measured: --no-reference-model' : 'not available: the reference model ../shared/weights/mobilenetv2-12-int8.onnx is not present';
    }
  }

  if (!options.skipE2e && card) {
    const corpora: { name: string; files: () => Promise<string[]>; source: string }[] = [
      { name: 'real 224-256 px', files: async () => realFiles, source: dataDir },
    ];
    if (largeCount > 0) {
      corpora.push({
        name: `large ${DEFAULT_LARGE_JPEG.width}x${DEFAULT_LARGE_JPEG.height} q${DEFAULT_LARGE_JPEG.quality}`,
        files: async () => {
          const unique = await largeJpegs(await sampleImages(dataDir, thorough ? largeCount : Math.min(8, largeCount), true));
          return Array.from({ length: largeCount }, (_, i) => unique[i % unique.length]);
        },
        source: `generated from ${dataDir} into the user cache (upscaled lanczos3 + grain σ=${DEFAULT_LARGE_JPEG.grain})`,
      });
    }
    const spinningOff: ort.InferenceSession.SessionOptions = { ...artistIdSessionOptions(cores), extra: { session: { intra_op: { allow_spinning: '0' } } } };
    for (const corpus of corpora) {
      let files: string[] = [];
      steps.push({
        label: `e2e: prepare ${corpus.name}`,
        run: async () => {
          files = await corpus.files();
          report.corpora.push({ name: corpus.name, files: files.length, uniqueFiles: new Set(files).size, megabytes: (await totalBytes(files)) / 1e6, source: corpus.source });
        },
      });
      for (const c of decodeLevels) {
        steps.push({ label: `e2e: decode-only ${corpus.name}, ${c} in flight`, run: async () => void report.e2e.push(await benchDecode(files, spec, { ...win, corpus: corpus.name, decodeConcurrency: c })) });
      }
      steps.push({
        label: `e2e: archive runs ${corpus.name} (as shipped and tuned, passes round-robin)`,
        run: async () => {
          const best = bestDecode(report.e2e, corpus.name) ?? cores;
          const shipped = await Classifier.load(modelPath, { provider: 'cpu' });
          const disposers: (() => Promise<void>)[] = [() => shipped.dispose()];
          try {
            const configs: ArchiveConfig[] = [{ classifier: shipped, batch: archiveBatch, decodeConcurrency: cores, variant: `as shipped: Classifier, batch ${archiveBatch}, decode concurrency ${cores}`, inferenceOnly: true }];
            if (best !== cores) configs.push({ classifier: shipped, batch: archiveBatch, decodeConcurrency: best, variant: `decode concurrency ${best}: Classifier, batch ${archiveBatch}` });
            const tunedBatches = thorough ? [8, 16, 32, 64] : [archiveBatch];
            const spinning = await sessionClassifier(modelPath, spinningOff);
            disposers.push(() => spinning.dispose());
            for (const batch of tunedBatches) configs.push({ classifier: spinning, batch, decodeConcurrency: best, variant: `allow_spinning=0, decode concurrency ${best}, batch ${batch}` });
            if (thorough) {
              const oneThread = await sessionClassifier(modelPath, { ...spinningOff, intraOpNumThreads: 1 });
              disposers.push(() => oneThread.dispose());
              configs.push({ classifier: oneThread, batch: archiveBatch, decodeConcurrency: best, variant: `allow_spinning=0, intraOpNumThreads=1, decode concurrency ${best}, batch ${archiveBatch}` });
            }
            report.e2e.push(...(await benchArchiveGroup(files, configs, { ...win, corpus: corpus.name })));
          } finally {
            for (const d of disposers) await d();
          }
        },
      });
    }
  }

  let server: BenchReport['server'];
  if (options.url) {
    const target = await resolveTarget({ url: options.url, model: options.serverModel ?? 'default', input: options.serverInput, encoding: options.serverEncoding, batch: options.serverBatch ?? 1 });
    server = { url: options.url, model: target.model, input: target.input, encoding: target.encoding, batch: target.batch, results: [] };
    const encoded = await Promise.all([...new Set(realFiles)].slice(0, 16).map((f) => readFile(f)));
    const payloads = { encoded, decoded: images.slice(0, 16), width: spec.width, height: spec.height };
    const levels = positiveList('concurrency', options.concurrency, [1, 4, 16, 64]);
    const distributions = options.distributions ?? ['constant', 'poisson'];
    for (const c of levels) {
      steps.push({ label: `server: concurrency ${c}`, run: async () => void server!.results.push(await closedLoop(target, payloads, c, win)) });
    }
    steps.push({
      label: 'server: request-rate sweep',
      run: async () => {
        const best = Math.max(...server!.results.filter((r) => r.mode === 'concurrency').map((r) => r.requestsPerSecond), 1);
        const rates = options.requestRates ?? [0.25, 0.5, 0.75, 0.9].map((f) => Math.max(1, Math.round(best * f)));
        for (const rate of rates) for (const d of distributions) server!.results.push(await openLoop(target, payloads, rate, d, win));
      },
    });
  }

  for (let i = 0; i < steps.length; i++) {
    options.onStep?.(steps[i].label, i, steps.length);
    const t0 = performance.now();
    await steps[i].run();
    report.steps.push({ label: steps[i].label, seconds: (performance.now() - t0) / 1000 });
  }
  options.onStep?.('done', steps.length, steps.length);

  report.server = server;
  report.bottlenecks = bottlenecksOf(report);
  report.comparisons = comparisonsOf(report, cores);
  report.machine.loadAfter = os.loadavg();
  report.seconds = (performance.now() - started) / 1000;
  const self = process.cpuUsage(selfBefore);
  const machineMs = machineCpuMs() - machineBefore;
  report.machine.otherCpuShare = Math.max(0, (machineMs - (self.user + self.system) / 1000) / (report.seconds * 1000 * os.cpus().length));
  report.notes = notesOf(report);
  return report;
}

/** The decode concurrency with the highest decode-only images/s on a corpus. */
function bestDecode(results: readonly E2eResult[], corpus: string): number | undefined {
  const decode = results.filter((r) => r.kind === 'decode-only' && r.corpus === corpus);
  if (decode.length === 0) return undefined;
  return decode.reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond * 1.02 ? b : a)).decodeConcurrency;
}

/** Best images/s of a runner at a batch. */
export function modelRun(report: Pick<BenchReport, 'modelRuns'>, runner: string, batch: number): ModelBenchResult | undefined {
  return report.modelRuns.find((r) => r.runner === runner && r.batch === batch);
}

function bottlenecksOf(report: BenchReport): BenchReport['bottlenecks'] {
  const out: BenchReport['bottlenecks'] = [];
  const batch = report.settings.archiveBatch;
  const modelOnly = modelRun(report, 'artist-id Classifier.run', batch) ?? report.modelRuns.filter((r) => r.runner === 'artist-id Classifier.run').sort((a, b) => Math.abs(a.batch - batch) - Math.abs(b.batch - batch))[0];
  for (const corpus of report.corpora) {
    const decode = report.e2e.filter((r) => r.kind === 'decode-only' && r.corpus === corpus.name).sort((a, b) => b.imagesPerSecond - a.imagesPerSecond)[0];
    if (!decode) continue;
    const archives = report.e2e.filter((r) => r.kind === 'archive' && r.corpus === corpus.name);
    const archive = [...archives].sort((a, b) => b.imagesPerSecond - a.imagesPerSecond)[0];
    // Prefer inference-only measured on the archive's own classifier right before its passes.
    const inference = archives.find((a) => a.inferenceImagesPerSecond !== undefined)?.inferenceImagesPerSecond ?? modelOnly?.imagesPerSecond;
    if (inference === undefined) continue;
    out.push({ corpus: corpus.name, decodeImagesPerSecond: decode.imagesPerSecond, inferenceImagesPerSecond: inference, ...bottleneck(decode.imagesPerSecond, inference), archiveImagesPerSecond: archive?.imagesPerSecond });
  }
  return out;
}

function comparisonsOf(report: BenchReport, cores: number): Comparison[] {
  const out: Comparison[] = [];
  for (const batch of report.settings.batches) {
    const a = modelRun(report, 'artist-id Classifier.run', batch);
    const b = modelRun(report, 'bare onnxruntime-node', batch);
    if (a && b) out.push({ name: `artist-id in process vs bare onnxruntime-node, batch ${batch}`, numerator: 'Classifier.run images/s', denominator: 'bare InferenceSession.run images/s (median of paired windows)', ratio: pairedRatio(a.windowImagesPerSecond, b.windowImagesPerSecond), status: 'measured' });
  }
  const base = report.sessionOptions[0];
  for (const v of report.sessionOptions.slice(1)) {
    if (v.batch !== base?.batch) continue;
    out.push({ name: `session option ${v.variant}, batch ${v.batch}`, numerator: `${v.variant} images/s`, denominator: 'artist-id options images/s (median of paired windows)', ratio: pairedRatio(v.windowImagesPerSecond, base.windowImagesPerSecond), status: 'measured' });
  }
  out.push(...twinComparisons(report.twins, report.twinsUnavailable ?? (report.modelRuns.length === 0 ? 'not measured: model-only steps skipped' : undefined)));
  const cuda = cudaProviderInstalled();
  out.push({ name: 'execution provider cuda vs cpu', numerator: 'cuda images/s', denominator: 'cpu images/s', status: 'not available', note: cuda ? 'not measured: the CUDA execution provider is installed, but this bench runs the CPU provider only (a cuda runner is not implemented yet)' : 'not available: the CUDA execution provider is not installed on this machine (npm run install:cuda on a CUDA 12 host)' });
  for (const corpus of report.corpora) {
    const decode = report.e2e.filter((r) => r.kind === 'decode-only' && r.corpus === corpus.name).sort((a, b) => b.imagesPerSecond - a.imagesPerSecond)[0];
    for (const archive of report.e2e.filter((r) => r.kind === 'archive' && r.corpus === corpus.name)) {
      out.push({ name: `archive vs decode-only, ${corpus.name}, ${archive.variant}`, numerator: 'archive images/s', denominator: `decode-only images/s (best: ${decode?.decodeConcurrency} in flight)`, ratio: ratio(archive.imagesPerSecond, decode?.imagesPerSecond), status: 'measured' });
    }
    const shipped = report.e2e.find((r) => r.kind === 'archive' && r.corpus === corpus.name && r.variant.startsWith('as shipped'));
    for (const archive of report.e2e.filter((r) => r.kind === 'archive' && r.corpus === corpus.name && r !== shipped)) {
      if (shipped) out.push({ name: `archive ${archive.variant} vs as shipped, ${corpus.name}`, numerator: `${archive.variant} images/s`, denominator: 'as shipped images/s (median of paired passes)', ratio: pairedRatio(archive.passImagesPerSecond, shipped.passImagesPerSecond), status: 'measured' });
    }
    const one = report.e2e.find((r) => r.kind === 'decode-only' && r.corpus === corpus.name && r.decodeConcurrency === 1);
    for (const d of report.e2e.filter((r) => r.kind === 'decode-only' && r.corpus === corpus.name && r.decodeConcurrency !== 1)) {
      out.push({ name: `decode concurrency ${d.decodeConcurrency} vs 1, ${corpus.name}`, numerator: `${d.decodeConcurrency} in flight images/s`, denominator: '1 in flight images/s', ratio: ratio(d.imagesPerSecond, one?.imagesPerSecond), status: 'measured' });
    }
  }
  void cores;
  return out;
}

/** Busy CPU time of the whole machine so far, ms (all CPUs, all processes). */
function machineCpuMs(): number {
  return os.cpus().reduce((a, c) => a + c.times.user + c.times.nice + c.times.sys + c.times.irq, 0);
}

/** Share of all CPUs busy over the next `ms` milliseconds. */
async function cpuBusy(ms: number): Promise<number> {
  const idle = () => os.cpus().reduce((a, c) => a + c.times.idle, 0);
  const b0 = machineCpuMs();
  const i0 = idle();
  await new Promise((r) => setTimeout(r, ms));
  const busy = machineCpuMs() - b0;
  const total = busy + idle() - i0;
  return total > 0 ? busy / total : 0;
}

function notesOf(report: BenchReport): string[] {
  const notes: string[] = [];
  const m = report.machine;
  if (m.busyBefore > 0.1) notes.push(`${(m.busyBefore * 100).toFixed(0)}% of the CPUs were busy in the second before the run: other processes were running.`);
  if (m.otherCpuShare > 0.05) notes.push(`Other processes used ${(m.otherCpuShare * 100).toFixed(0)}% of the machine's CPU capacity during the run, so figures may be low and less stable than on a quiet machine.`);
  if (report.twins) notes.push(twinNote(report.twins));
  if (report.model.flopsError) notes.push(`FLOPs could not be counted, so no fraction of peak is shown: ${report.model.flopsError}`);
  const twins = report.twins ? [report.twins.fp32, report.twins.tfjs] : [];
  const unstable = [...report.modelRuns, ...report.sessionOptions, ...report.referenceRuns, ...twins, ...report.calibration, ...report.e2e, ...(report.server?.results ?? [])].filter((r) => !r.stable).length;
  if (unstable > 0) notes.push(`${unstable} configuration(s) did not reach three windows within ±${report.settings.stabilityPercentage}% in ${report.settings.maxTrials} trials; they are marked "unstable" and their figures are the last three windows merged.`);
  return notes;
}

/** How the TF.js twin ran, and whether the two fp32 forms compute the same logits. */
export function twinNote(t: Pick<TwinReport, 'backend' | 'backendThreads' | 'agreement' | 'batch'>): string {
  const a = t.agreement;
  return `onnxruntime-node vs TF.js: TF.js ran on its ${t.backend} backend${t.backendThreads !== undefined ? ` with ${t.backendThreads} thread${t.backendThreads === 1 ? '' : 's'}` : ''} (tfjs-node, i.e. libtensorflow, is used instead when installed); onnxruntime-node with its default session options (intra-op threads = cores). The dequantised fp32 ONNX graph and the imported TF.js model agree on the top-1 class for ${Math.round(a.top1 * a.images)}/${a.images} images of the measured batch (largest logit difference ${a.maxAbsLogitDiff.toExponential(1)}).`;
}
