/**
 * Result files of an archive run: one row per attempted file, as JSON Lines or CSV, written in
 * order with backpressure, and read back to resume a run that was killed.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, stat, truncate } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { invalidParameterError } from '../errors.js';
import type { ArtistProbability } from '../inference/classifier.js';

/**
 * One output row. On success `error` is null; on failure `artist` and `probability` are null and
 * `top_k` is empty. Probabilities are in [0, 1].
 *
 * Rows of a model whose card has `openSet` also carry `unknown` and `open_set_score` (null on error
 * rows); rows of other models do not have these keys at all.
 */
export interface ArchiveRow {
  /** The file as walked (relative when the input was relative). */
  path: string;
  /** The most probable of the trained artists (also when `unknown` is true). */
  artist: string | null;
  probability: number | null;
  /** Most probable artists, most probable first. */
  top_k: ArtistProbability[];
  /**
   * Open-set models only: true when the open-set score is below the card's threshold, i.e. the
   * painting is probably by none of the trained artists; `artist` and `top_k` are then the closest ones.
   */
  unknown?: boolean | null;
  /** Open-set models only: the card's open-set score (higher = more like the trained artists). */
  open_set_score?: number | null;
  /** Why the file has no prediction (decode, read or inference failure), else null. */
  error: string | null;
  /**
   * The model that wrote the row, `<card name>@<first 12 hex of the sha256 of the model file>`:
   * on every row, so rows of different models can never be mixed unnoticed (see `readCompleted`).
   */
  model: string;
}

/** `jsonl`: one JSON object per line; `csv`: RFC 4180 with {@link CSV_HEADER}. */
export type OutputFormat = 'jsonl' | 'csv';

/**
 * First line of every CSV output. `model` comes last so that readers indexing the older columns
 * by position keep working.
 */
export const CSV_HEADER = 'path,artist,probability,top_k,error,model';

/**
 * First line of CSV outputs of models with an open-set threshold (`card.openSet`): {@link CSV_HEADER}
 * and then `unknown` (`true`/`false`, empty on error rows) and `open_set_score`.
 */
export const CSV_HEADER_OPEN_SET = `${CSV_HEADER},unknown,open_set_score`;

/** Header of CSV files written before rows named their model: recognised only to refuse them. */
const CSV_HEADER_WITHOUT_MODEL = 'path,artist,probability,top_k,error';

// No `.json`: the content is JSON Lines, which a JSON parser given a `.json` file rejects.
const FORMAT_BY_EXTENSION: Record<string, OutputFormat> = { '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.csv': 'csv' };

/**
 * The format for an output path, from its extension (case-insensitive); stdout (no path) is JSONL.
 *
 * @throws Error for any other extension, so `--out results.txt` fails before the run starts; for
 *   `.json` the message suggests `.jsonl`.
 * @example
 * outputFormat('out/results.CSV'); // 'csv'
 */
export function outputFormat(outPath?: string): OutputFormat {
  if (outPath === undefined) return 'jsonl';
  const ext = extname(outPath).toLowerCase();
  const format = FORMAT_BY_EXTENSION[ext];
  if (format) return format;
  const expected = 'a file name ending in .jsonl, .ndjson or .csv';
  if (ext === '.json') {
    const suggestion = `${outPath.slice(0, -ext.length)}.jsonl`;
    throw new Error(`${invalidParameterError('--out', expected, outPath).message}: rows are written as JSON Lines (one JSON object per line), not as one JSON document, so name the file ${JSON.stringify(suggestion)}`);
  }
  throw invalidParameterError('--out', expected, outPath);
}

/**
 * One JSONL line, keys in the order `path, artist, probability, top_k, [unknown, open_set_score,]
 * error, model` (the bracketed keys only on rows of open-set models, see {@link ArchiveRow}).
 *
 * @returns the line including its trailing `\n`.
 * @example
 * formatJsonlRow({ path: 'a.jpg', artist: 'claude-monet', probability: 0.9, top_k: [...], error: null, model: 'default@0123456789ab' });
 */
export function formatJsonlRow(row: ArchiveRow): string {
  const { path, artist, probability, top_k, error, model } = row;
  const openSet = hasOpenSet(row) ? { unknown: row.unknown ?? null, open_set_score: row.open_set_score ?? null } : {};
  return `${JSON.stringify({ path, artist, probability, top_k: top_k.map(({ artist, probability }) => ({ artist, probability })), ...openSet, error, model })}\n`;
}

/** Whether a row belongs to an open-set model (has the `unknown` key, even when null). */
function hasOpenSet(row: ArchiveRow): boolean {
  return row.unknown !== undefined;
}

/**
 * One CSV record: `path,artist,probability,top_k,error,model` with `top_k` as
 * `artist:prob;artist:prob` and nulls as empty fields; rows of open-set models add
 * `unknown,open_set_score` (see {@link CSV_HEADER_OPEN_SET}).
 *
 * @returns the record including its trailing `\n`.
 * @example
 * formatCsvRow(row); // 'a.jpg,claude-monet,0.9,claude-monet:0.9;edgar-degas:0.05,,default@0123456789ab\n'
 */
export function formatCsvRow(row: ArchiveRow): string {
  const topK = row.top_k.map((t) => `${t.artist}:${t.probability}`).join(';');
  const fields = [row.path, row.artist ?? '', row.probability === null ? '' : String(row.probability), topK, row.error ?? '', row.model];
  if (hasOpenSet(row)) fields.push(row.unknown == null ? '' : String(row.unknown), row.open_set_score == null ? '' : String(row.open_set_score));
  return `${fields.map(csvField).join(',')}\n`;
}

/** Quotes a CSV field when it needs it (comma, quote, CR/LF, edge spaces), doubling inner quotes. */
export function csvField(value: string): string {
  return /[",\r\n]|^\s|\s$/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/**
 * Splits one CSV record (without its line ending) into fields, RFC 4180 style.
 *
 * @throws Error when a quoted field is not closed or a quote appears inside an unquoted field.
 * @example
 * parseCsvRecord('"a, ""b"".jpg",x'); // ['a, "b".jpg', 'x']
 */
export function parseCsvRecord(record: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (record[i] === '"') {
      i++;
      for (;;) {
        const q = record.indexOf('"', i);
        if (q < 0) throw new Error('Expected a closing quote in CSV record but reached its end');
        field += record.slice(i, q);
        if (record[q + 1] === '"') {
          field += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      if (i < record.length && record[i] !== ',') throw new Error(`Expected "," after a quoted CSV field but found ${JSON.stringify(record[i])}`);
    } else {
      const comma = record.indexOf(',', i);
      field = record.slice(i, comma < 0 ? record.length : comma);
      if (field.includes('"')) throw new Error('Expected no quote inside an unquoted CSV field');
      i = comma < 0 ? record.length : comma;
    }
    fields.push(field);
    if (i >= record.length) return fields;
    i++; // past the comma
  }
}

/** How to start over; part of every refusal to reuse an existing output file. */
const START_FRESH = 'start a fresh output instead: another --out file, or --overwrite to replace this one';

/**
 * Refuses to replace an existing output file by accident: a non-empty file at `outPath` may be
 * the result of a long run. Missing or empty files are fine; so is anything that is not a file
 * (opening it fails later with its own error).
 *
 * @param mode - `resume` (the file will be continued) or `overwrite` (replacing it is intended)
 *   lifts the refusal.
 * @throws Error `Expected a new or empty file for --out but received "r.jsonl", which already
 *   holds N bytes: ...` naming both `--resume` and `--overwrite`.
 */
export async function checkOutputTarget(outPath: string | undefined, mode: { resume?: boolean; overwrite?: boolean }): Promise<void> {
  if (outPath === undefined || mode.resume || mode.overwrite) return;
  const info = await stat(outPath).catch(() => undefined);
  if (info?.isFile() && info.size > 0) {
    throw new Error(`${invalidParameterError('--out', 'a new or empty file', outPath).message}, which already holds ${info.size} bytes: add --resume to continue it, or --overwrite to replace it`);
  }
}

/**
 * What the rows of a resumed file must agree with, so that one file never mixes models or row
 * shapes.
 */
export interface ResumeExpectation {
  /** The `model` of this run's rows (see {@link ArchiveRow.model}). */
  model: string;
  /** Entries in `top_k` of a row without error (the requested `--top-k`, at most the classes). */
  topK: number;
  /**
   * Whether this run's model has an open-set threshold (rows with `unknown`, CSV header
   * {@link CSV_HEADER_OPEN_SET}); default false.
   */
  openSet?: boolean;
}

/**
 * Reads an existing output file for `--resume`: returns the paths that already have a row (error
 * rows included, so each file keeps exactly one row), and cuts off what a killed run left
 * half-written, so appending continues on a clean record boundary.
 *
 * Cut off: a last record with no trailing newline, or a last record that does not parse. A bad
 * record followed by more records means the file was damaged some other way (and a file with no
 * good row at all is probably not ours): both throw rather than delete rows. A missing or empty
 * file means nothing is done.
 *
 * With `expected`, every complete row must name `expected.model` and every row without error must
 * list `expected.topK` artists; otherwise this throws before anything is cut off, since appending
 * would mix two models (or two row shapes) in one file. Rows without a model (files from before
 * rows named it) are refused too: whether they match cannot be known.
 *
 * @param outPath - a `.jsonl`/`.ndjson`/`.csv` output file (format from its extension).
 * @returns the set of `path` values found, as written (the caller decides how to compare them).
 * @throws Error when the extension is not an output format, a CSV file does not start with
 *   {@link CSV_HEADER}, a damaged record is not the last one, no record is a valid row, or a row
 *   disagrees with `expected` (the message names both models or both sizes, and how to start fresh).
 * @example
 * const done = await readCompleted('results.jsonl', { model: 'default@0123456789ab', topK: 3 });
 * if (!done.has(path)) classify(path); // the file now ends on a complete line
 */
export async function readCompleted(outPath: string, expected?: ResumeExpectation): Promise<Set<string>> {
  const format = outputFormat(outPath);
  const done = new Set<string>();
  const size = await stat(outPath).then((s) => s.size, (err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return 0;
    throw err;
  });
  if (size === 0) return done;
  let goodEnd = 0; // byte offset just past the last complete, valid record
  let damage: string | undefined; // first invalid complete record, if any
  let index = 0;
  const csv: CsvState = { columns: 6 };
  for await (const record of readRecords(outPath, format === 'csv')) {
    if (damage) {
      throw new Error(`Cannot resume from ${outPath}: ${damage} is damaged but more rows follow it; fix or remove that record, or ${START_FRESH}`);
    }
    if (!record.terminated) break; // half-written by a killed run: always dropped
    const problem = checkRecord(record.text, index++, format, outPath, done, expected, csv);
    if (problem) damage = `record ${index} (${problem})`;
    else goodEnd = record.end;
  }
  if (damage && goodEnd === 0) {
    // Not one good row: likely some other file; truncating it to nothing would destroy it.
    throw new Error(`Expected ${outPath} to be an artist-id ${format.toUpperCase()} output to resume it, but ${damage} is not a result row`);
  }
  // Cutting the tail is what makes the appended rows start on a fresh line with no half row.
  if (goodEnd < size) await truncate(outPath, goodEnd);
  return done;
}

/** What the CSV header said: how many fields each record has (6, or 8 with the open-set columns). */
interface CsvState {
  columns: number;
}

/**
 * Validates one complete record and records its path in `done`.
 *
 * @returns why the record is invalid, or undefined when it is fine.
 * @throws Error when a CSV file's first record is not the header (not our file: do not touch), or
 *   a valid row disagrees with `expected` (see {@link checkProvenance}).
 */
function checkRecord(text: string, index: number, format: OutputFormat, outPath: string, done: Set<string>, expected: ResumeExpectation | undefined, csv: CsvState): string | undefined {
  if (format === 'jsonl') {
    if (text.trim() === '') return undefined;
    let row: unknown;
    try {
      row = JSON.parse(text);
    } catch (err) {
      return (err as Error).message;
    }
    const { path, model, error, top_k } = (row ?? {}) as { path?: unknown; model?: unknown; error?: unknown; top_k?: unknown };
    if (typeof path !== 'string') return 'no "path" string';
    if (expected) checkProvenance({ model, topK: error === null && Array.isArray(top_k) ? top_k.length : undefined }, index + 1, expected, outPath);
    done.add(path);
    return undefined;
  }
  const line = text.endsWith('\r') ? text.slice(0, -1) : text;
  if (index === 0) {
    if (line === CSV_HEADER_WITHOUT_MODEL) {
      throw new Error(`Expected the CSV header "${CSV_HEADER}" in ${outPath} to resume it but it has no model column: the file was written before rows named their model, so whether it was written by this run's model cannot be checked; ${START_FRESH}`);
    }
    if (line !== CSV_HEADER && line !== CSV_HEADER_OPEN_SET) throw new Error(`Expected ${outPath} to start with the CSV header "${CSV_HEADER}" (or "${CSV_HEADER_OPEN_SET}") to resume it, but it starts with ${JSON.stringify(line.slice(0, 80))}`);
    csv.columns = line === CSV_HEADER ? 6 : 8;
    const wanted = expected?.openSet ? CSV_HEADER_OPEN_SET : CSV_HEADER;
    if (expected && line !== wanted) {
      throw new Error(`Expected the CSV header "${wanted}" in ${outPath} to resume it (this run's model ${expected.openSet ? 'has' : 'has no'} open-set columns) but it is "${line}"; ${START_FRESH}`);
    }
    return undefined;
  }
  let fields: string[];
  try {
    fields = parseCsvRecord(line);
  } catch (err) {
    return (err as Error).message;
  }
  if (fields.length !== csv.columns) return `${fields.length} fields instead of ${csv.columns}`;
  // A record index counts the header; people count data rows.
  if (expected) checkProvenance({ model: fields[5], topK: fields[4] === '' ? (fields[3] === '' ? 0 : fields[3].split(';').length) : undefined }, index, expected, outPath);
  done.add(fields[0]);
  return undefined;
}

/**
 * Throws when an existing row was not written by the same model, with the same `top_k` size, as
 * this run (`found.topK` is undefined for error rows, which list no artists).
 */
function checkProvenance(found: { model: unknown; topK: number | undefined }, row: number, expected: ResumeExpectation, outPath: string): void {
  if (typeof found.model !== 'string' || found.model === '') {
    throw new Error(`Expected rows naming their model in ${outPath} to resume it but row ${row} has no "model": the file was written before rows named their model, so whether it was written by this run's model (${expected.model}) cannot be checked; ${START_FRESH}`);
  }
  if (found.model !== expected.model) {
    throw new Error(`Expected rows of model ${expected.model} (this run's --model) in ${outPath} to resume it but row ${row} was written by model ${found.model}; resume with the --model that wrote the file, or ${START_FRESH}`);
  }
  if (found.topK !== undefined && found.topK !== expected.topK) {
    throw new Error(`Expected rows with ${expected.topK} artists in top_k (this run's --top-k) in ${outPath} to resume it but row ${row} lists ${found.topK}; resume with --top-k ${found.topK}, or ${START_FRESH}`);
  }
}

interface RawRecord {
  /** The record's text without its `\n`. */
  text: string;
  /** Byte offset just past the record's `\n`. */
  end: number;
  /** False for a last record with no `\n` (cut off). */
  terminated: boolean;
}

/**
 * Streams a file's records, split on `\n` bytes; with `csvQuotes`, newlines inside quoted fields do
 * not split (a path may contain one). Byte-level splitting is safe in UTF-8: `\n` and `"` never
 * occur inside multi-byte characters.
 */
async function* readRecords(path: string, csvQuotes: boolean): AsyncGenerator<RawRecord> {
  let pending: Buffer[] = [];
  let offset = 0; // file offset of the current chunk
  let inQuotes = false;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    let start = 0;
    for (let i = csvQuotes ? 0 : chunk.indexOf(0x0a); i >= 0 && i < chunk.length; ) {
      const byte = chunk[i];
      if (byte === 0x22 && csvQuotes) inQuotes = !inQuotes;
      if (byte === 0x0a && !inQuotes) {
        pending.push(chunk.subarray(start, i));
        yield { text: Buffer.concat(pending).toString('utf8'), end: offset + i + 1, terminated: true };
        pending = [];
        start = i + 1;
      }
      i = csvQuotes ? i + 1 : chunk.indexOf(0x0a, i + 1);
    }
    if (start < chunk.length) pending.push(chunk.subarray(start));
    offset += chunk.length;
  }
  if (pending.length > 0) yield { text: Buffer.concat(pending).toString('utf8'), end: offset, terminated: false };
}

/** Writes rows in the order given; see {@link openRowWriter}. */
export interface RowWriter {
  readonly format: OutputFormat;
  /** The output file, or null for stdout. */
  readonly path: string | null;
  /**
   * Writes rows and resolves once the stream can take more (backpressure: a slow disk or pipe
   * pauses the run instead of buffering rows in memory).
   * @throws the stream's error (disk full, EPIPE, ...).
   */
  writeRows(rows: readonly ArchiveRow[]): Promise<void>;
  /**
   * Flushes everything; for a file, resolves when it is closed and complete on disk.
   * @throws the stream's error.
   */
  close(): Promise<void>;
}

/** Options of {@link openRowWriter}. */
export interface RowWriterOptions {
  /** Append to the file (for `--resume`, after {@link readCompleted}) instead of replacing it. */
  append?: boolean;
  /** Stream used when `outPath` is undefined; default `process.stdout` (never ended). */
  stdout?: Writable;
  /** The rows carry the open-set columns: a new CSV file starts with {@link CSV_HEADER_OPEN_SET}. */
  openSet?: boolean;
}

/**
 * Opens the output: a file whose extension picks the format, or stdout (JSONL) when `outPath` is
 * undefined. A new or replaced CSV file starts with {@link CSV_HEADER} (or {@link CSV_HEADER_OPEN_SET}
 * with `openSet`); an appended one gets the
 * header only if it is empty. Parent folders are created.
 *
 * @throws Error for an unknown extension or when the file cannot be opened.
 * @example
 * const writer = await openRowWriter('results.csv');
 * await writer.writeRows(rows);
 * await writer.close();
 */
export async function openRowWriter(outPath: string | undefined, options: RowWriterOptions = {}): Promise<RowWriter> {
  const format = outputFormat(outPath);
  if (outPath === undefined) return new StreamRowWriter(options.stdout ?? process.stdout, false, format, null);
  await mkdir(dirname(outPath), { recursive: true });
  const existing = options.append ? await stat(outPath).then((s) => s.size, () => 0) : 0;
  const stream = createWriteStream(outPath, { flags: options.append ? 'a' : 'w' });
  await once(stream, 'open'); // surfaces EACCES/EISDIR here rather than at the first row
  const writer = new StreamRowWriter(stream, true, format, outPath);
  if (format === 'csv' && existing === 0) await writer.writeText(`${options.openSet ? CSV_HEADER_OPEN_SET : CSV_HEADER}\n`);
  return writer;
}

class StreamRowWriter implements RowWriter {
  /** First stream error; kept so an error between writes is not an unhandled 'error' event. */
  private failure: Error | undefined;

  constructor(
    private readonly stream: Writable,
    private readonly owned: boolean,
    readonly format: OutputFormat,
    readonly path: string | null,
  ) {
    stream.on('error', (err: Error) => {
      this.failure ??= err;
    });
  }

  async writeRows(rows: readonly ArchiveRow[]): Promise<void> {
    const toText = this.format === 'csv' ? formatCsvRow : formatJsonlRow;
    // One write per batch: fewer syscalls, and a batch's rows land together.
    if (rows.length > 0) await this.writeText(rows.map(toText).join(''));
  }

  async writeText(text: string): Promise<void> {
    this.throwIfFailed();
    if (!this.stream.write(text)) await once(this.stream, 'drain');
    this.throwIfFailed();
  }

  async close(): Promise<void> {
    this.throwIfFailed();
    if (this.owned) {
      this.stream.end();
      await finished(this.stream);
    } else if (this.stream.writableNeedDrain) {
      await once(this.stream, 'drain');
    }
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }
}
