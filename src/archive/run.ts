/**
 * The archive engine: classifies every painting under some folders, streaming
 * walk -> read + decode (bounded, concurrent) -> batches -> model -> rows in walk order, so memory
 * stays flat on archives of hundreds of thousands of files and one bad file never stops a run.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { SingleBar } from 'cli-progress';
import { expectInteger, invalidParameterError } from '../errors.js';
import { topK as topKOf, type Classifier } from '../inference/classifier.js';
import { decodeImage } from '../preprocess/decode.js';
import type { PreprocessSpec } from '../preprocess/spec.js';
import { openRowWriter, outputFormat, readCompleted, type ArchiveRow } from './output.js';
import { checkInputs, createWalkStats, walkImages } from './walk.js';

/** What the engine needs of a model: a loaded {@link Classifier} or anything shaped like one. */
export type ArchiveClassifier = Pick<Classifier, 'card' | 'run' | 'provider'>;

/** Options of {@link classifyArchive}. */
export interface ArchiveOptions {
  /** Files and folders; folders are walked recursively (see `walkImages`). */
  inputs: string[];
  classifier: ArchiveClassifier;
  /** Output file (`.jsonl`/`.json` or `.csv`); JSONL on stdout when absent. */
  out?: string;
  /** Artists listed per row in `top_k`; default 3. */
  topK?: number;
  /** Images per `classifier.run` call; default 16. */
  batchSize?: number;
  /** Files read and decoded at once; default `os.availableParallelism()`. */
  decodeConcurrency?: number;
  /** Keep the rows already in `out`, classify only the files without one, and append. */
  resume?: boolean;
  /** Show a progress line on stderr; default: when stderr is a TTY. */
  progress?: boolean;
  /** Called with each row, in output order, right after it is written. */
  onRow?: (row: ArchiveRow) => void;
}

/** Outcome of a run. Counts are files; `seconds` is wall time of the whole run. */
export interface ArchiveSummary {
  /** Files given a row in this run (`succeeded + failed`). */
  attempted: number;
  succeeded: number;
  /** Rows with an error: unreadable or undecodable files, failed batches. */
  failed: number;
  /** Non-image files found in folders and left out. */
  skippedNonImages: number;
  /** A few of those, for the summary. */
  skippedExamples: string[];
  /** Files left out because `out` already had their row (`resume`). */
  skippedResumed: number;
  /** Folders that could not be listed (their files are missing from the output). */
  unreadableDirectories: number;
  /** A few of those, with the reason. */
  unreadableExamples: string[];
  /** `classifier.run` calls. */
  batches: number;
  /** Wall time in s, walk and output included. */
  seconds: number;
  /** `attempted / seconds`, in images/s. */
  imagesPerSecond: number;
  provider: string;
  /** The output file, or null for stdout. */
  outPath: string | null;
}

/** A walked file after reading and decoding: pixels, or why there are none. */
type Decoded = { path: string; pixels: Uint8Array; error?: undefined } | { path: string; pixels?: undefined; error: string };

interface Settings {
  topK: number;
  batchSize: number;
  decodeConcurrency: number;
  progress: boolean;
}

/**
 * Classifies every image under `options.inputs` and writes one row per file, in walk order.
 *
 * Pipeline: `walkImages` -> (resume: drop paths already in `out`) -> read + `decodeImage` with
 * `card.preprocessing`, at most `decodeConcurrency` at once and at most `2 * batchSize` decoded
 * images waiting -> batches of `batchSize` -> `classifier.run`, one batch at a time while the next
 * batch decodes -> rows written with backpressure.
 *
 * Memory is bounded by `batchSize`, not by the archive: at most about 4 x `batchSize` decoded
 * images (~150 KB each at 224x224) are held at once (one batch in inference, the next one
 * collected, `2 * batchSize` decoding), plus one folder's sorted entry names per level of depth and,
 * with `resume`, the set of paths already done.
 *
 * Failures become rows, not exceptions: a file that cannot be read gets the errno message, one that
 * cannot be decoded gets the `ImageDecodeError` message, and when `classifier.run` throws, every
 * file of that batch gets `Inference failed ...`; the run goes on.
 *
 * @returns counts, wall time (s), throughput (images/s), provider and output path.
 * @throws Error before anything is written for bad options (non-integer or < 1 `topK`,
 *   `batchSize`, `decodeConcurrency`; unknown `out` extension; `resume` without `out`), missing
 *   inputs, or an output file that cannot be resumed (see `readCompleted`); during the run only
 *   for output errors (disk full, closed pipe) or an `onRow` that throws.
 * @example
 * const classifier = await Classifier.load('default');
 * const summary = await classifyArchive({ inputs: ['/archive'], classifier, out: 'results.csv', resume: true });
 * console.error(formatSummary(summary));
 */
export async function classifyArchive(options: ArchiveOptions): Promise<ArchiveSummary> {
  const started = performance.now();
  const settings = validateOptions(options);
  const { classifier, out } = options;
  await checkInputs(options.inputs); // a typo must not truncate an existing output file
  const completed = options.resume ? await readCompleted(out as string) : new Set<string>();
  const writer = await openRowWriter(out, { append: options.resume === true });

  const walkStats = createWalkStats();
  const counts = { attempted: 0, succeeded: 0, failed: 0, skippedResumed: 0, batches: 0 };
  const bar = settings.progress ? startProgress() : undefined;
  const emit = async (rows: ArchiveRow[]): Promise<void> => {
    await writer.writeRows(rows);
    for (const row of rows) {
      counts.attempted++;
      if (row.error === null) counts.succeeded++;
      else counts.failed++;
      options.onRow?.(row);
    }
    updateProgress(bar, counts, walkStats.skipped, started);
  };

  // The previous batch's inference + writing. Awaited before the next batch starts, so at most one
  // `run` is active and rows stay in order; the next batch decodes while it runs.
  let previous: Promise<void> = Promise.resolve();
  let failed = false;
  try {
    const paths = skipCompleted(walkImages(options.inputs, { stats: walkStats }), completed, counts);
    const decoded = decodeInOrder(paths, classifier.card.preprocessing, 2 * settings.batchSize, settings.decodeConcurrency);
    for await (const batch of batchesOf(decoded, settings.batchSize)) {
      await previous;
      counts.batches += batch.some((d) => d.pixels) ? 1 : 0;
      previous = classifyBatch(batch, classifier, settings.topK).then(emit);
      // Marks the rejection handled while we are busy decoding; the `await` above or below rethrows.
      previous.catch(() => undefined);
    }
    await previous;
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await previous.catch(() => undefined); // never close the writer under a batch still writing
    bar?.stop();
    // After a failure the first error is the one to report, not a follow-up close error.
    await (failed ? writer.close().catch(() => undefined) : writer.close());
  }

  const seconds = (performance.now() - started) / 1000;
  return {
    ...counts,
    skippedNonImages: walkStats.skipped,
    skippedExamples: walkStats.skippedExamples,
    unreadableDirectories: walkStats.unreadableDirectories,
    unreadableExamples: walkStats.unreadableExamples,
    seconds,
    imagesPerSecond: seconds > 0 ? counts.attempted / seconds : 0,
    provider: classifier.provider,
    outPath: writer.path,
  };
}

/** Applies defaults and checks every option before any file is touched. */
function validateOptions(options: ArchiveOptions): Settings {
  if (typeof options !== 'object' || options === null) throw invalidParameterError('options', 'an object', options);
  const { classifier } = options;
  if (typeof classifier?.run !== 'function' || !Array.isArray(classifier.card?.classes)) {
    throw invalidParameterError('classifier', 'a loaded Classifier (card and run)', classifier);
  }
  if (options.resume && options.out === undefined) {
    throw invalidParameterError('out', 'an output file to resume (resume is true)', options.out);
  }
  outputFormat(options.out);
  return {
    topK: expectInteger('topK', options.topK ?? 3),
    batchSize: expectInteger('batchSize', options.batchSize ?? 16),
    decodeConcurrency: expectInteger('decodeConcurrency', options.decodeConcurrency ?? os.availableParallelism()),
    progress: options.progress ?? process.stderr.isTTY === true,
  };
}

/** Drops paths that already have a row (resume), counting them. */
async function* skipCompleted(paths: AsyncIterable<string>, completed: ReadonlySet<string>, counts: { skippedResumed: number }): AsyncGenerator<string> {
  for await (const path of paths) {
    if (completed.has(path)) counts.skippedResumed++;
    else yield path;
  }
}

/**
 * Reads and decodes paths concurrently, yielding results in input order.
 *
 * @param window - most files started but not yet taken by the consumer: bounds memory, since each
 *   holds a decoded `[H,W,3]` image (~150 KB at 224x224).
 * @param concurrency - most reads + decodes running at once.
 */
async function* decodeInOrder(paths: AsyncIterable<string>, spec: PreprocessSpec, window: number, concurrency: number): AsyncGenerator<Decoded> {
  const limit = limiter(concurrency);
  const queue: Promise<Decoded>[] = [];
  const source = paths[Symbol.asyncIterator]();
  let exhausted = false;
  try {
    for (;;) {
      while (!exhausted && queue.length < window) {
        const next = await source.next();
        if (next.done) exhausted = true;
        else queue.push(limit(() => decodeFile(next.value, spec)));
      }
      const head = queue.shift();
      if (!head) return;
      yield await head;
    }
  } finally {
    await source.return?.(undefined);
  }
}

/** Reads and decodes one file; never rejects, a failure is the row's error message. */
async function decodeFile(path: string, spec: PreprocessSpec): Promise<Decoded> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    return { path, error: (err as Error).message }; // e.g. "EACCES: permission denied, open '...'"
  }
  try {
    return { path, pixels: await decodeImage(bytes, spec) };
  } catch (err) {
    return { path, error: (err as Error).message };
  }
}

/** Runs at most `n` tasks at once, the rest wait in call order. */
function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (task) => {
    while (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await task();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

/** Groups items into arrays of `size` (the last may be shorter). */
async function* batchesOf<T>(items: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let batch: T[] = [];
  for await (const item of items) {
    batch.push(item);
    if (batch.length === size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

/**
 * Classifies the decoded images of a batch and returns its rows in batch order; files that failed
 * to decode keep their error, and a `run` failure becomes the error of every image in the batch.
 */
async function classifyBatch(batch: Decoded[], classifier: ArchiveClassifier, k: number): Promise<ArchiveRow[]> {
  const images = batch.flatMap((d) => (d.pixels ? [d.pixels] : []));
  let probabilities: ArrayLike<number>[] = [];
  let batchError: string | undefined;
  if (images.length > 0) {
    try {
      probabilities = (await classifier.run(images)).probabilities;
      checkShape(probabilities, images.length, classifier.card.classes.length);
    } catch (err) {
      batchError = `Inference failed for a batch of ${images.length} images: ${(err as Error)?.message ?? String(err)}`;
    }
  }
  let next = 0;
  return batch.map((d) => {
    if (!d.pixels) return errorRow(d.path, d.error);
    const probs = probabilities[next++];
    return batchError !== undefined ? errorRow(d.path, batchError) : predictionRow(d.path, probs, classifier.card.classes, k);
  });
}

/** A model returning the wrong shape must fail its batch, not write misaligned rows. */
function checkShape(probabilities: ArrayLike<number>[], images: number, classes: number): void {
  if (!Array.isArray(probabilities) || probabilities.length !== images || probabilities.some((p) => p?.length !== classes)) {
    throw new Error(`Expected ${images} rows of ${classes} probabilities from the model but received ${Array.isArray(probabilities) ? probabilities.length : typeof probabilities} rows`);
  }
}

function predictionRow(path: string, probabilities: ArrayLike<number>, classes: readonly string[], k: number): ArchiveRow {
  // 6 decimals: float32 carries ~7 significant digits, the rest is noise that bloats the output.
  const top = topKOf(probabilities, classes, k).map((t) => ({ artist: t.artist, probability: round6(t.probability) }));
  return { path, artist: top[0].artist, probability: top[0].probability, top_k: top, error: null };
}

function errorRow(path: string, error: string): ArchiveRow {
  return { path, artist: null, probability: null, top_k: [], error };
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** A progress line on stderr: the total is unknown while streaming, so count and rate, no ETA. */
function startProgress(): SingleBar {
  const bar = new SingleBar({
    format: 'classifying {value} images | {rate} images/s | {failed} failed | {skipped} non-images skipped | {resumed} resumed',
    stream: process.stderr,
    hideCursor: true,
    fps: 5,
    // Asked for explicitly on a non-TTY (CI logs): print a line every few seconds instead of nothing.
    noTTYOutput: process.stderr.isTTY !== true,
    notTTYSchedule: 5000,
  });
  bar.start(0, 0, { rate: '0.0', failed: 0, skipped: 0, resumed: 0 });
  return bar;
}

function updateProgress(bar: SingleBar | undefined, counts: { attempted: number; failed: number; skippedResumed: number }, skipped: number, started: number): void {
  if (!bar) return;
  const seconds = (performance.now() - started) / 1000;
  const rate = seconds > 0 ? (counts.attempted / seconds).toFixed(1) : '0.0';
  bar.update(counts.attempted, { rate, failed: counts.failed, skipped, resumed: counts.skippedResumed });
}

/**
 * Human-readable summary of a run, one fact per line.
 *
 * @example
 * console.error(formatSummary(summary));
 * // Classified 1200 files in 12.0 s (100.0 images/s, provider cpu)
 * //   ok:                    1196
 * //   failed:                4
 * //   ...
 */
export function formatSummary(summary: ArchiveSummary): string {
  const examples = summary.skippedExamples.length > 0 ? ` (e.g. ${summary.skippedExamples.join(', ')})` : '';
  const lines = [
    `Classified ${summary.attempted} files in ${summary.seconds.toFixed(1)} s (${summary.imagesPerSecond.toFixed(1)} images/s, provider ${summary.provider})`,
    `  attempted:             ${summary.attempted}`,
    `  ok:                    ${summary.succeeded}`,
    `  failed:                ${summary.failed}${summary.failed > 0 ? ' (see the error column)' : ''}`,
    `  skipped, not images:   ${summary.skippedNonImages}${examples}`,
    `  skipped, resumed:      ${summary.skippedResumed}`,
  ];
  if (summary.unreadableDirectories > 0) {
    lines.push(`  unreadable folders:    ${summary.unreadableDirectories} (${summary.unreadableExamples.join('; ')})`);
  }
  lines.push(`  output:                ${summary.outPath ?? 'stdout'}`);
  return lines.join('\n');
}
