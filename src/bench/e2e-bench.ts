/**
 * End-to-end benchmarks on real files: read + decode + preprocess alone (decode-only), and the
 * archive engine (`classifyArchive`: decode overlapping inference, rows written), with the share of
 * wall time spent in inference, so a user sees whether decoding or the model is the bottleneck.
 * Each pass over the files is one measurement window; passes repeat until three agree.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { classifyArchive, type ArchiveClassifier } from '../archive/run.js';
import { expectInteger } from '../errors.js';
import { cardOfBytes } from '../model/read-card.js';
import { decodeImage } from '../preprocess/decode.js';
import { imageBytes, type PreprocessSpec } from '../preprocess/spec.js';
import type { WindowOptions } from './model-bench.js';
import { isStable, measureUntilStable, mergeWindows, stabilityDefaults, type LatencySummary, type WindowSample } from './stats.js';

/** Figures of one end-to-end or decode-only configuration. */
export interface E2eResult {
  /** `decode-only` or `archive` (classifyArchive). */
  kind: 'decode-only' | 'archive';
  /** Which files: e.g. `real 224-256 px` or `large 2000x1500 q90`. */
  corpus: string;
  /** Variant label (what differs from the default). */
  variant: string;
  files: number;
  /** Reads + decodes in flight. */
  decodeConcurrency: number;
  /** libvips threads per image (sharp.concurrency). */
  vipsThreads: number;
  /** Images per inference batch (archive runs). */
  batch?: number;
  imagesPerSecond: number;
  /** decode-only: latency of one read + decode; archive: of one classifier.run batch; ms. */
  latency: LatencySummary;
  /** archive runs: share of wall time inside classifier.run (the rest: decoding, I/O, rows). */
  inferenceShare?: number;
  /**
   * archive runs with `inferenceOnly`: images/s of the same classifier on already-decoded images at
   * the same batch, measured just before the passes (so decode-only, inference-only and archive
   * figures are close in time).
   */
  inferenceImagesPerSecond?: number;
  passes: number;
  stable: boolean;
  /** Images/s of every pass. */
  passImagesPerSecond: number[];
}

/** Runs `task` over `items` with at most `concurrency` at once; resolves when all are done. */
async function pool<T>(items: readonly T[], concurrency: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Sets libvips' threads per image for the duration of `fn` (sharp.concurrency is process-wide). */
async function withVipsThreads<T>(threads: number | undefined, fn: () => Promise<T>): Promise<T> {
  const before = sharp.concurrency();
  if (threads !== undefined) sharp.concurrency(threads);
  try {
    return await fn();
  } finally {
    sharp.concurrency(before);
  }
}

/**
 * Decode-only throughput: each pass reads and decodes every file with `decodeImage` (the one
 * preprocessing) and `decodeConcurrency` files in flight.
 */
export async function benchDecode(files: readonly string[], spec: PreprocessSpec, options: WindowOptions & { corpus: string; decodeConcurrency: number; vipsThreads?: number; variant?: string }): Promise<E2eResult> {
  const concurrency = expectInteger('decodeConcurrency', options.decodeConcurrency);
  return withVipsThreads(options.vipsThreads, async () => {
    const pass = async (): Promise<WindowSample> => {
      const latencies: number[] = [];
      const start = performance.now();
      await pool(files, concurrency, async (file) => {
        const s = performance.now();
        await decodeImage(await readFile(file), spec);
        latencies.push(performance.now() - s);
      });
      return { durationMs: performance.now() - start, items: files.length, latenciesMs: latencies };
    };
    await warm(pass, options.warmupMs);
    const m = await measureUntilStable(pass, options);
    return {
      kind: 'decode-only',
      corpus: options.corpus,
      variant: options.variant ?? `decode concurrency ${concurrency}`,
      files: files.length,
      decodeConcurrency: concurrency,
      vipsThreads: sharp.concurrency(),
      imagesPerSecond: m.summary.itemsPerSecond,
      latency: m.summary.latency,
      passes: m.windows.length,
      stable: m.stable,
      passImagesPerSecond: m.windows.map((w) => (w.items * 1000) / w.durationMs),
    };
  });
}

/** One pass at least, then more until `warmupMs` has passed. */
async function warm(pass: () => Promise<unknown>, warmupMs: number): Promise<void> {
  const start = performance.now();
  do await pass();
  while (performance.now() - start < warmupMs);
}

/** An archive classifier whose `run` calls are timed (the sum is the inference share). */
interface TimedClassifier extends ArchiveClassifier {
  busyMs: number;
  batchMs: number[];
}

function timed(inner: ArchiveClassifier): TimedClassifier {
  const t: TimedClassifier = {
    card: inner.card,
    provider: inner.provider,
    busyMs: 0,
    batchMs: [],
    run: async (images) => {
      const s = performance.now();
      const out = await inner.run(images);
      const ms = performance.now() - s;
      t.busyMs += ms;
      t.batchMs.push(ms);
      return out;
    },
  };
  return t;
}

/** One archive configuration of {@link benchArchiveGroup}. */
export interface ArchiveConfig {
  classifier: ArchiveClassifier;
  batch: number;
  decodeConcurrency: number;
  /** Label of what differs from the default. */
  variant: string;
  /** Also measure the classifier's images/s on decoded images at `batch` first. */
  inferenceOnly?: boolean;
}

/** Inference-only images/s of a classifier on `batch` decoded files, windows until stable. */
async function inferenceOnlyRate(files: readonly string[], classifier: ArchiveClassifier, batchSize: number, options: WindowOptions): Promise<number> {
  const batch = await Promise.all(Array.from({ length: batchSize }, async (_, i) => decodeImage(await readFile(files[i % files.length]), classifier.card.preprocessing)));
  await classifier.run(batch);
  const m = await measureUntilStable(async () => {
    const latencies: number[] = [];
    const start = performance.now();
    do {
      const s = performance.now();
      await classifier.run(batch);
      latencies.push(performance.now() - s);
    } while (performance.now() - start < options.windowMs);
    return { durationMs: performance.now() - start, items: latencies.length * batch.length, latenciesMs: latencies };
  }, options);
  return m.summary.itemsPerSecond;
}

/**
 * Archive throughput of several configurations compared on the same files: each pass runs
 * `classifyArchive` over the files (rows to a temporary JSONL file, no progress line), timing every
 * `classifier.run`; passes go round-robin over the configurations (a, b, a, b, ...) so that load
 * changing on the machine weighs on all alike, until each is stable or `maxTrials` passes each.
 */
export async function benchArchiveGroup(files: readonly string[], configs: readonly ArchiveConfig[], options: WindowOptions & { corpus: string; vipsThreads?: number }): Promise<E2eResult[]> {
  const dir = await mkdtemp(join(os.tmpdir(), 'artist-id-bench-'));
  try {
    const inference: (number | undefined)[] = [];
    for (const c of configs) inference.push(c.inferenceOnly ? await inferenceOnlyRate(files, c.classifier, c.batch, options) : undefined);
    return await withVipsThreads(options.vipsThreads, async () => {
      let passes = 0;
      const pass = async (c: ArchiveConfig): Promise<{ window: WindowSample; share: number }> => {
        const t = timed(c.classifier);
        // A new file per pass: the engine refuses to overwrite rows it did not write in this run.
        const out = join(dir, `rows-${passes++}.jsonl`);
        const start = performance.now();
        const summary = await classifyArchive({ inputs: [...files], classifier: t, out, batchSize: c.batch, decodeConcurrency: c.decodeConcurrency, progress: false });
        const durationMs = performance.now() - start;
        await rm(out, { force: true });
        if (summary.failed > 0) throw new Error(`The archive bench expected every file to classify but ${summary.failed} of ${summary.attempted} failed`);
        return { window: { durationMs, items: summary.attempted, latenciesMs: t.batchMs }, share: t.busyMs / durationMs };
      };
      // Warm-up: whole passes of the first configuration (files in the page cache, libvips and the
      // pipeline warm), then one batch through every other classifier (its session warm).
      await warm(() => pass(configs[0]), options.warmupMs);
      for (const c of configs.slice(1)) {
        if (c.classifier !== configs[0].classifier) await c.classifier.run(await Promise.all(files.slice(0, c.batch).map(async (f) => decodeImage(await readFile(f), c.classifier.card.preprocessing))));
      }
      const stability = stabilityDefaults(options);
      const maxTrials = options.maxTrials ?? 10;
      const windows: WindowSample[][] = configs.map(() => []);
      const shares: number[][] = configs.map(() => []);
      let stable = configs.map(() => false);
      while (windows[0].length < maxTrials && !stable.every(Boolean)) {
        for (let i = 0; i < configs.length; i++) {
          const r = await pass(configs[i]);
          windows[i].push(r.window);
          shares[i].push(r.share);
        }
        stable = windows.map((w) => isStable(w, stability));
      }
      return configs.map((c, i) => {
        const judged = windows[i].slice(-stability.windowCount);
        const summary = mergeWindows(judged);
        const share = shares[i].slice(-stability.windowCount);
        return {
          kind: 'archive' as const,
          corpus: options.corpus,
          variant: c.variant,
          files: files.length,
          decodeConcurrency: c.decodeConcurrency,
          vipsThreads: sharp.concurrency(),
          batch: c.batch,
          imagesPerSecond: summary.itemsPerSecond,
          latency: summary.latency,
          inferenceShare: share.reduce((a, b) => a + b, 0) / share.length,
          inferenceImagesPerSecond: inference[i],
          passes: windows[i].length,
          stable: stable[i],
          passImagesPerSecond: windows[i].map((w) => (w.items * 1000) / w.durationMs),
        };
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One archive configuration alone (see {@link benchArchiveGroup}). */
export async function benchArchive(files: readonly string[], classifier: ArchiveClassifier, options: WindowOptions & { corpus: string; batch: number; decodeConcurrency: number; vipsThreads?: number; variant: string; inferenceOnly?: boolean }): Promise<E2eResult> {
  const [r] = await benchArchiveGroup(files, [{ classifier, batch: options.batch, decodeConcurrency: options.decodeConcurrency, variant: options.variant, inferenceOnly: options.inferenceOnly }], options);
  return r;
}

/**
 * An archive classifier on a bare onnxruntime session with the given options, doing what
 * `Classifier.run` does (assemble `[N,H,W,3] uint8`, fetch probabilities, split per image): used to
 * show the end-to-end effect of session options that `createSession` does not expose.
 */
export async function sessionClassifier(modelPath: string, options: ort.InferenceSession.SessionOptions): Promise<ArchiveClassifier & { dispose(): Promise<void> }> {
  const bytes = await readFile(modelPath);
  const card = cardOfBytes(bytes, modelPath);
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], ...options });
  const size = imageBytes(card.preprocessing);
  const { width, height } = card.preprocessing;
  const c = card.classes.length;
  return {
    card,
    provider: 'cpu',
    run: async (images) => {
      const batch = new Uint8Array(images.length * size);
      images.forEach((img, i) => batch.set(img, i * size));
      const start = performance.now();
      const out = await session.run({ [card.input]: new ort.Tensor('uint8', batch, [images.length, height, width, 3]) }, [card.outputs.probabilities]);
      const inferenceMs = performance.now() - start;
      const probs = out[card.outputs.probabilities].data as Float32Array;
      return { probabilities: images.map((_, i) => probs.slice(i * c, (i + 1) * c)), inferenceMs };
    },
    dispose: () => session.release(),
  };
}

/**
 * Where the time goes, from decode-only and inference-only rates measured apart (images/s):
 * decode share = (1/decode) / (1/decode + 1/inference). When both compete for the same cores the
 * end-to-end rate is about `serial` = 1 / (1/decode + 1/inference); with perfect overlap on
 * separate resources it would reach `overlapBound` = min(decode, inference).
 */
export function bottleneck(decodeImagesPerSecond: number, inferenceImagesPerSecond: number): { decodeShare: number; inferenceShare: number; serial: number; overlapBound: number; bottleneck: 'decode' | 'inference' } {
  const d = 1 / decodeImagesPerSecond;
  const i = 1 / inferenceImagesPerSecond;
  return {
    decodeShare: d / (d + i),
    inferenceShare: i / (d + i),
    serial: 1 / (d + i),
    overlapBound: Math.min(decodeImagesPerSecond, inferenceImagesPerSecond),
    bottleneck: d >= i ? 'decode' : 'inference',
  };
}
