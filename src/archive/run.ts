/**
 * The archive engine: classifies every painting under some folders, streaming
 * walk -> read + decode (bounded, concurrent) -> batches -> model -> rows in walk order, so memory
 * stays flat on archives of hundreds of thousands of files and one bad file never stops a run.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import { expectInteger, invalidParameterError } from '../errors.js';
import { topK as topKOf, type Classifier, type OpenSetResult } from '../inference/classifier.js';
import { decodeImage, IMAGE_EXTENSIONS } from '../preprocess/decode.js';
import type { PreprocessSpec } from '../preprocess/spec.js';
import { checkOutputTarget, openRowWriter, outputFormat, readCompleted, type ArchiveRow } from './output.js';
import { checkInputs, createWalkStats, walkImages } from './walk.js';

/**
 * What the engine needs of a model: a loaded {@link Classifier} or anything shaped like one.
 * `path` (the model file) gives the rows' `model` id when `modelId` is not passed.
 */
export type ArchiveClassifier = Pick<Classifier, 'card' | 'run' | 'provider'> & Partial<Pick<Classifier, 'path'>>;

/** Options of {@link classifyArchive}. */
export interface ArchiveOptions {
  /** Files and folders; folders are walked recursively (see `walkImages`). */
  inputs: string[];
  classifier: ArchiveClassifier;
  /**
   * The `model` written on every row. Default: {@link modelIdOf} `classifier.path`; without a path
   * (a wrapper or test double), the card's name and the sha256 of the card's JSON.
   */
  modelId?: string;
  /** Output file (`.jsonl`/`.ndjson` or `.csv`); JSONL on stdout when absent. */
  out?: string;
  /** Replace `out` when it exists and is not empty; without it (or `resume`) that is refused. */
  overwrite?: boolean;
  /** Artists listed per row in `top_k`; default 3. */
  topK?: number;
  /** Images per `classifier.run` call; default 16. */
  batchSize?: number;
  /** Files read and decoded at once; default `os.availableParallelism()`. */
  decodeConcurrency?: number;
  /** Keep the rows already in `out`, classify only the files without one, and append. */
  resume?: boolean;
  /** Show a progress line on stderr; default {@link progressByDefault}. */
  progress?: boolean;
  /**
   * Stops the run when aborted (the CLI aborts on SIGINT/SIGTERM): no new batch starts, the batch
   * in flight is written, the output is closed on a complete row and the summary says
   * `interrupted`, so `resume` continues exactly there.
   */
  signal?: AbortSignal;
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
  /**
   * Open-set models only (card `openSet`): rows classified but reported `unknown` (probably none of the
   * trained artists); counted among `succeeded`.
   */
  unknown?: number;
  /** Non-image files found in folders and left out. */
  skippedNonImages: number;
  /** A few of those, for the summary. */
  skippedExamples: string[];
  /** Files left out because `out` already had their row (`resume`). */
  skippedResumed: number;
  /** Files given twice (on their own and inside a folder given too): one row, for the first. */
  skippedDuplicates: number;
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
  /** The `model` of the rows (see `ArchiveRow.model`). */
  model: string;
  /** The output file, or null for stdout. */
  outPath: string | null;
  /** True when `signal` stopped the run before every file had a row. */
  interrupted: boolean;
  /** Exit status for a CLI when not `interrupted`: see {@link exitCodeOf}. */
  exitCode: 0 | 1;
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
 * Every row names its model (`modelId`). With `resume`, rows already in `out` are matched by
 * resolved absolute path (`path.resolve` from the current folder), so `archive/a` and
 * `/abs/archive/a` are the same input; rows keep the path as the user typed it.
 *
 * @returns counts, wall time (s), throughput (images/s), provider, model, output path and whether
 *   `signal` interrupted the run.
 * @throws Error before anything is written for bad options (non-integer or < 1 `topK`,
 *   `batchSize`, `decodeConcurrency`; unknown `out` extension; `resume` without `out`; both
 *   `resume` and `overwrite`), missing inputs, an existing non-empty `out` without `resume` or
 *   `overwrite` (see `checkOutputTarget`), or an output file that cannot be resumed, or was written
 *   by another model or `topK` (see `readCompleted`); during the run only for output errors (disk
 *   full, closed pipe) or an `onRow` that throws.
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
  await checkOutputTarget(out, options);
  const model = options.modelId ?? (await defaultModelId(classifier));
  // The same clamp as `topK`: a 2-class model lists 2 artists whatever `topK` asks for.
  const openSet = classifier.card.openSet !== undefined;
  const expected = { model, topK: Math.max(1, Math.min(settings.topK, classifier.card.classes.length)), openSet };
  const written = options.resume ? await readCompleted(out as string, expected) : new Set<string>();
  // Absolute, so that resuming with the inputs typed another way still finds the rows.
  const completed = new Set(Array.from(written, (p) => resolve(p)));
  const writer = await openRowWriter(out, { append: options.resume === true, openSet });

  const walkStats = createWalkStats();
  const counts = { attempted: 0, succeeded: 0, failed: 0, skippedResumed: 0, batches: 0, unknown: 0 };
  const bar = settings.progress ? startProgress() : undefined;
  const emit = async (rows: ArchiveRow[]): Promise<void> => {
    await writer.writeRows(rows);
    for (const row of rows) {
      counts.attempted++;
      if (row.error === null) counts.succeeded++;
      else counts.failed++;
      if (row.unknown === true) counts.unknown++;
      options.onRow?.(row);
    }
    updateProgress(bar, counts, walkStats.skipped, started);
  };

  // The previous batch's inference + writing. Awaited before the next batch starts, so at most one
  // `run` is active and rows stay in order; the next batch decodes while it runs.
  let previous: Promise<void> = Promise.resolve();
  let failed = false;
  let interrupted = false;
  const paths = skipCompleted(walkImages(options.inputs, { stats: walkStats }), completed, counts);
  const decoded = decodeInOrder(paths, classifier.card.preprocessing, 2 * settings.batchSize, settings.decodeConcurrency);
  const batches = batchesOf(decoded, settings.batchSize)[Symbol.asyncIterator]();
  const abort = whenAborted(options.signal);
  try {
    for (;;) {
      // Raced with the signal: decoding the next batch of large scans can take seconds.
      const next = await Promise.race([handled(batches.next()), abort.promise]);
      if (next === ABORTED) {
        interrupted = true;
        break;
      }
      if (next.done) break;
      await previous;
      if (options.signal?.aborted) {
        interrupted = true; // this batch's files get no row; `resume` does them
        break;
      }
      counts.batches += next.value.some((d) => d.pixels) ? 1 : 0;
      previous = handled(classifyBatch(next.value, classifier, settings.topK, model).then(emit));
    }
    await previous;
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    abort.dispose();
    await previous.catch(() => undefined); // never close the writer under a batch still writing
    // Closes the walk and decoding. After an interrupt a `next` may still be decoding: `return`
    // waits for it, so it is not awaited then (the process may exit meanwhile).
    const closing = batches.return(undefined).catch(() => undefined);
    if (!interrupted) await closing;
    bar?.stop(); // restores the cursor and line wrapping
    // After a failure the first error is the one to report, not a follow-up close error.
    await (failed ? writer.close().catch(() => undefined) : writer.close());
  }

  const seconds = (performance.now() - started) / 1000;
  const { unknown, ...rest } = counts;
  const summary: Omit<ArchiveSummary, 'exitCode'> = {
    ...rest,
    ...(openSet ? { unknown } : {}),
    skippedDuplicates: walkStats.duplicates,
    skippedNonImages: walkStats.skipped,
    skippedExamples: walkStats.skippedExamples,
    unreadableDirectories: walkStats.unreadableDirectories,
    unreadableExamples: walkStats.unreadableExamples,
    seconds,
    imagesPerSecond: seconds > 0 ? counts.attempted / seconds : 0,
    provider: classifier.provider,
    model,
    outPath: writer.path,
    interrupted,
  };
  return { ...summary, exitCode: exitCodeOf(summary) };
}

const ABORTED = Symbol('aborted');

/** A promise that resolves to {@link ABORTED} once `signal` aborts (never without a signal). */
function whenAborted(signal: AbortSignal | undefined): { promise: Promise<typeof ABORTED>; dispose(): void } {
  let onAbort = (): void => undefined;
  const promise = new Promise<typeof ABORTED>((resolve) => {
    onAbort = () => resolve(ABORTED);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
  return { promise, dispose: () => signal?.removeEventListener('abort', onAbort) };
}

/**
 * Marks a rejection as handled while we are busy elsewhere (a race lost to the signal, a batch
 * running during decoding); whoever awaits the returned promise still gets the error.
 */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/**
 * The rows' `model` id: {@link modelIdOf} the classifier's file, or, for a classifier without a
 * file (a wrapper, a test double), the card's name and the sha256 of the card, which still tells
 * two trained models apart (it holds their creation time, seed and metrics).
 */
async function defaultModelId(classifier: ArchiveClassifier): Promise<string> {
  if (typeof classifier.path === 'string') return modelIdOf(classifier.card.name, classifier.path);
  return `${classifier.card.name}@${createHash('sha256').update(JSON.stringify(classifier.card)).digest('hex').slice(0, 12)}`;
}

/**
 * The id written in every row's `model`: `<card name>@<first 12 hex of the sha256 of the model
 * file's bytes>`. The name alone is not enough: retraining keeps the name and changes the weights.
 * Streamed, since a model file can be hundreds of MB.
 *
 * @example
 * await modelIdOf('default', 'models/default/model.onnx'); // 'default@3f2a9c0d1b7e'
 */
export async function modelIdOf(name: string, modelFile: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(modelFile)) hash.update(chunk as Buffer);
  return `${name}@${hash.digest('hex').slice(0, 12)}`;
}

/** Applies defaults and checks every option before any file is touched. */
function validateOptions(options: ArchiveOptions): Settings {
  if (typeof options !== 'object' || options === null) throw invalidParameterError('options', 'an object', options);
  const { classifier } = options;
  if (typeof classifier?.run !== 'function' || !Array.isArray(classifier.card?.classes)) {
    throw invalidParameterError('classifier', 'a loaded Classifier (card and run)', classifier);
  }
  if (options.resume && options.out === undefined) {
    throw new Error('Expected --out <file> with --resume (the output file to continue) but received no --out');
  }
  if (options.resume && options.overwrite) {
    throw new Error('Expected either --resume (continue the output file) or --overwrite (replace it) but received both');
  }
  if (options.modelId !== undefined && (typeof options.modelId !== 'string' || options.modelId === '')) {
    throw invalidParameterError('modelId', 'a non-empty string', options.modelId);
  }
  outputFormat(options.out);
  return {
    topK: expectInteger('topK', options.topK ?? 3),
    batchSize: expectInteger('batchSize', options.batchSize ?? 16),
    decodeConcurrency: expectInteger('decodeConcurrency', options.decodeConcurrency ?? os.availableParallelism()),
    progress: options.progress ?? progressByDefault(options.out),
  };
}

/**
 * Whether to show the progress line when not told: only when stderr is a terminal and the rows do
 * not go to that terminal too (`out` given, or stdout redirected), since the line redraws itself
 * and would garble rows printed under it.
 *
 * @param streams - whose `isTTY` to read; default `process`.
 */
export function progressByDefault(out: string | undefined, streams: { stdout: { isTTY?: boolean }; stderr: { isTTY?: boolean } } = process): boolean {
  return streams.stderr.isTTY === true && (out !== undefined || streams.stdout.isTTY !== true);
}

/** Drops paths that already have a row (resume; `completed` holds absolute paths), counting them. */
async function* skipCompleted(paths: AsyncIterable<string>, completed: ReadonlySet<string>, counts: { skippedResumed: number }): AsyncGenerator<string> {
  for await (const path of paths) {
    if (completed.size > 0 && completed.has(resolve(path))) counts.skippedResumed++;
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
async function classifyBatch(batch: Decoded[], classifier: ArchiveClassifier, k: number, model: string): Promise<ArchiveRow[]> {
  const images = batch.flatMap((d) => (d.pixels ? [d.pixels] : []));
  const withOpenSet = classifier.card.openSet !== undefined;
  let probabilities: ArrayLike<number>[] = [];
  let verdicts: OpenSetResult[] | undefined;
  let batchError: string | undefined;
  if (images.length > 0) {
    try {
      const result = await classifier.run(images);
      probabilities = result.probabilities;
      checkShape(probabilities, images.length, classifier.card.classes.length);
      verdicts = result.openSet;
      if (withOpenSet && (!Array.isArray(verdicts) || verdicts.length !== images.length)) {
        throw new Error(`Expected ${images.length} open-set verdicts from the model (its card has openSet) but received ${Array.isArray(verdicts) ? verdicts.length : 'none'}`);
      }
    } catch (err) {
      batchError = `Inference failed for a batch of ${images.length} images: ${(err as Error)?.message ?? String(err)}`;
    }
  }
  let next = 0;
  return batch.map((d) => {
    if (!d.pixels) return errorRow(d.path, d.error, model, withOpenSet);
    const i = next++;
    if (batchError !== undefined) return errorRow(d.path, batchError, model, withOpenSet);
    return predictionRow(d.path, probabilities[i], classifier.card.classes, k, model, withOpenSet ? verdicts![i] : undefined);
  });
}

/** A model returning the wrong shape must fail its batch, not write misaligned rows. */
function checkShape(probabilities: ArrayLike<number>[], images: number, classes: number): void {
  if (!Array.isArray(probabilities) || probabilities.length !== images || probabilities.some((p) => p?.length !== classes)) {
    throw new Error(`Expected ${images} rows of ${classes} probabilities from the model but received ${Array.isArray(probabilities) ? probabilities.length : typeof probabilities} rows`);
  }
}

/** A row with a prediction; `verdict` (open-set models only) adds `unknown` and `open_set_score`. */
function predictionRow(path: string, probabilities: ArrayLike<number>, classes: readonly string[], k: number, model: string, verdict?: OpenSetResult): ArchiveRow {
  // 6 decimals: float32 carries ~7 significant digits, the rest is noise that bloats the output.
  const top = topKOf(probabilities, classes, k).map((t) => ({ artist: t.artist, probability: round6(t.probability) }));
  const openSet = verdict ? { unknown: verdict.unknown, open_set_score: round6(verdict.score) } : {};
  return { path, artist: top[0].artist, probability: top[0].probability, top_k: top, ...openSet, error: null, model };
}

/** A row without prediction; rows of open-set models keep the open-set keys, as null. */
function errorRow(path: string, error: string, model: string, withOpenSet = false): ArchiveRow {
  return { path, artist: null, probability: null, top_k: [], ...(withOpenSet ? { unknown: null, open_set_score: null } : {}), error, model };
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
 * Exit status of a finished (not interrupted) run, for the CLI:
 * - 1 when no image was found in the inputs (nothing attempted and nothing resumed): a typo'd
 *   folder or a folder of other files must not look like success to a script;
 * - 1 when every attempted file failed (the model or the files are unusable);
 * - 0 otherwise: at least one file succeeded, or nothing failed (e.g. a resume with nothing left).
 *   Individual failures are in the rows' `error`.
 */
export function exitCodeOf(summary: Pick<ArchiveSummary, 'attempted' | 'succeeded' | 'skippedResumed'>): 0 | 1 {
  if (summary.attempted === 0) return summary.skippedResumed === 0 ? 1 : 0;
  return summary.succeeded === 0 ? 1 : 0;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * Human-readable summary of a run, one fact per line; starts with a warning when no image was
 * found, and ends with the exit status when it is not 0 and with what to do after an interrupt.
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
  const lines: string[] = [];
  const noImages = summary.attempted === 0 && summary.skippedResumed === 0 && !summary.interrupted;
  if (noImages) {
    lines.push(`warning: no images found in the inputs (${plural(summary.skippedNonImages, 'non-image file')} skipped, ${plural(summary.unreadableDirectories, 'unreadable folder')}); image extensions: ${IMAGE_EXTENSIONS.join(' ')}`);
  }
  lines.push(
    `Classified ${plural(summary.attempted, 'file')} in ${summary.seconds.toFixed(1)} s (${summary.imagesPerSecond.toFixed(1)} images/s, provider ${summary.provider})`,
    `  attempted:             ${summary.attempted}`,
    `  ok:                    ${summary.succeeded}`,
    `  failed:                ${summary.failed}${summary.failed > 0 ? ' (see the error column)' : ''}`,
    ...(summary.unknown !== undefined ? [`  unknown:               ${summary.unknown} (open-set score below the model's threshold: probably none of its artists; counted as ok)`] : []),
    `  skipped, not images:   ${summary.skippedNonImages}${examples}`,
    `  skipped, resumed:      ${summary.skippedResumed}`,
  );
  if (summary.skippedDuplicates > 0) {
    lines.push(`  skipped, duplicates:   ${summary.skippedDuplicates} (given twice, e.g. on their own and inside a folder given too)`);
  }
  if (summary.unreadableDirectories > 0) {
    lines.push(`  unreadable folders:    ${summary.unreadableDirectories} (${summary.unreadableExamples.join('; ')})`);
  }
  lines.push(`  model:                 ${summary.model}`, `  output:                ${summary.outPath ?? 'stdout'}`);
  if (summary.interrupted) {
    lines.push(summary.outPath === null
      ? `interrupted after ${plural(summary.attempted, 'file')}; rows went to stdout, so there is nothing to resume: use --out <file> to be able to continue a run`
      : `interrupted after ${plural(summary.attempted, 'file')}; rerun the same command with --resume to continue`);
  } else if (summary.exitCode !== 0) {
    lines.push(`exit status 1: ${noImages ? 'no images found in the inputs' : 'every attempted file failed'}`);
  }
  return lines.join('\n');
}
