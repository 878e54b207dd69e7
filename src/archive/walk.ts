/**
 * Streaming, deterministic walk of the files and folders given to `artist-id classify`: yields
 * image paths one at a time so an archive of hundreds of thousands of paintings never has to be
 * listed in memory first.
 */
import type { Dirent } from 'node:fs';
import { opendir, realpath, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { invalidParameterError } from '../errors.js';
import { IMAGE_EXTENSIONS } from '../preprocess/decode.js';

/** What a walk passed over; filled in while it runs (read it after the walk ends). */
export interface WalkStats {
  /** Files whose extension is not an image extension (and other non-regular entries). */
  skipped: number;
  /** The first few skipped paths, to show people what was left out. */
  skippedExamples: string[];
  /** Folders that could not be listed (permissions, vanished mid-walk); the walk goes on. */
  unreadableDirectories: number;
  /** The first few unreadable folders, with the reason. */
  unreadableExamples: string[];
  /**
   * Folders not entered because their real path was already walked: symlink loops, links to a
   * folder seen elsewhere, the same folder given twice.
   */
  revisitedFolders: number;
  /**
   * Files not yielded again because an earlier input already yielded the same real file: a file
   * given on its own and inside a folder given too, or the same file given twice.
   */
  duplicates: number;
}

/** Options of {@link walkImages}. */
export interface WalkOptions {
  /** Receives the counts of what was skipped; pass one in and read it after the walk. */
  stats?: WalkStats;
  /** How many example paths to keep in `stats`; default 5. */
  maxExamples?: number;
}

/** A fresh, zeroed {@link WalkStats}. */
export function createWalkStats(): WalkStats {
  return { skipped: 0, skippedExamples: [], unreadableDirectories: 0, unreadableExamples: [], revisitedFolders: 0, duplicates: 0 };
}

const IMAGE_EXTENSION_SET = new Set(IMAGE_EXTENSIONS.map((e) => e.toLowerCase()));

/** True when the file name has an image extension (case-insensitive: `.JPG` counts). */
export function hasImageExtension(path: string): boolean {
  return IMAGE_EXTENSION_SET.has(extname(path).toLowerCase());
}

/**
 * Checks that every input exists, so a typo fails before any output file is opened or truncated.
 *
 * @returns for each input, whether it is a folder (`true`) or a file (`false`).
 * @throws Error `Expected at least one file or folder for inputs ...` when `inputs` is empty, and
 *   `Expected an existing file or folder for input "nope" but it does not exist` for a missing path
 *   (named as the user typed it, since that is what they can find in their command).
 * @example
 * await checkInputs(['scans/', 'extra.jpg']); // throws before any work if one is missing
 */
export async function checkInputs(inputs: readonly string[]): Promise<boolean[]> {
  if (!Array.isArray(inputs) || inputs.length === 0) {
    throw invalidParameterError('inputs', 'at least one file or folder', inputs);
  }
  const kinds: boolean[] = [];
  for (const input of inputs) {
    if (typeof input !== 'string') throw invalidParameterError('input', 'a file or folder path', input);
    // stat (not lstat): a symlink given on the command line is taken to mean its target.
    const info = input === '' ? undefined : await stat(input).catch((err: NodeJS.ErrnoException) => err);
    if (info === undefined || info instanceof Error) {
      // ENOENT/ENOTDIR: missing. Anything else (EACCES, ELOOP...) says more in its own words.
      const missing = info === undefined || info.code === 'ENOENT' || info.code === 'ENOTDIR';
      throw new Error(`Expected an existing file or folder for input ${JSON.stringify(input)} but ${missing ? 'it does not exist' : `it cannot be read (${info.message})`}`);
    }
    kinds.push(info.isDirectory());
  }
  return kinds;
}

/**
 * Yields the image files under `inputs`, depth-first, each folder's entries in code-unit order of
 * their names (the same order on every machine and locale).
 *
 * - Folders are walked recursively; a file is yielded when its extension is one of
 *   `IMAGE_EXTENSIONS` (case-insensitive), otherwise it is counted in `opts.stats.skipped`.
 * - A file named in `inputs` is always yielded, whatever its extension, also when a folder given contains it
 *   (once: at its first occurrence).
 * - Symlinks to files are followed. A folder (linked or not) is entered only if its real path has
 *   not been walked yet, so symlink loops end and no file is yielded twice through links or
 *   overlapping inputs (counted in `stats.revisitedFolders`).
 * - A file given as an input is yielded once even when a folder input contains it too, or it is
 *   given twice: the first occurrence wins, compared by real path (counted in `stats.duplicates`).
 * - Folders that cannot be listed are counted in `stats.unreadableDirectories`; the walk goes on.
 *
 * Paths are `path.join(input, ...names)`, i.e. relative when the input is relative. Memory holds
 * one folder's sorted names per level of depth, never the whole archive.
 *
 * @param inputs - files and folders, as given by the user.
 * @throws Error from {@link checkInputs} (before the first yield) when an input is missing.
 * @example
 * const stats = createWalkStats();
 * for await (const file of walkImages(['archive/'], { stats })) console.log(file);
 * console.log(`${stats.skipped} non-image files skipped`);
 */
export async function* walkImages(inputs: readonly string[], opts: WalkOptions = {}): AsyncGenerator<string, void, undefined> {
  const stats = opts.stats ?? createWalkStats();
  const maxExamples = opts.maxExamples ?? 5;
  const isFolder = await checkInputs(inputs);
  // Only the file inputs can be met twice (folders already dedupe by real path), so only their
  // real paths are tracked: memory stays at the size of the command line, not of the archive.
  const fileReal = await Promise.all(inputs.map((input, i) => (isFolder[i] ? '' : realpath(input).catch(() => resolve(input)))));
  const state: WalkState = { stats, maxExamples, visited: new Set(), inputFiles: new Set(fileReal.filter(Boolean)), yielded: new Set() };
  for (const [i, input] of inputs.entries()) {
    if (!isFolder[i]) {
      if (firstOccurrence(fileReal[i], state)) yield normalize(input);
      continue;
    }
    const root = normalize(input);
    yield* walkFolder(root, await realpath(root), state);
  }
}

interface WalkState {
  stats: WalkStats;
  maxExamples: number;
  /** Real paths of the folders entered so far: what stops symlink loops. */
  visited: Set<string>;
  /** Real paths of the files given as inputs. */
  inputFiles: ReadonlySet<string>;
  /** Those of `inputFiles` yielded so far, under any name. */
  yielded: Set<string>;
}

/**
 * False (and counted) when `real` is the real path of a file input that was already yielded;
 * other files cannot repeat, since no folder is entered twice.
 */
function firstOccurrence(real: string, state: WalkState): boolean {
  if (!state.inputFiles.has(real)) return true;
  if (state.yielded.has(real)) {
    state.stats.duplicates++;
    return false;
  }
  state.yielded.add(real);
  return true;
}

/** @param real - real path of `dir`, tracked along the walk (no realpath call per plain folder). */
async function* walkFolder(dir: string, real: string, state: WalkState): AsyncGenerator<string, void, undefined> {
  if (state.visited.has(real)) {
    state.stats.revisitedFolders++;
    return;
  }
  state.visited.add(real);
  const entries = await listSorted(dir, state);
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (isUnknownType(entry)) {
      // Some network and FUSE file systems report no type in the listing: ask for it.
      yield* walkSymlink(path, state);
    } else if (entry.isDirectory()) {
      yield* walkFolder(path, join(real, entry.name), state);
    } else if (entry.isFile()) {
      const realFile = join(real, entry.name);
      // A file also named as an input is that input, whatever its extension: one row, counted once.
      if (!hasImageExtension(path) && !state.inputFiles.has(realFile)) skip(path, state);
      else if (firstOccurrence(realFile, state)) yield path;
    } else if (entry.isSymbolicLink()) {
      yield* walkSymlink(path, state);
    } else {
      // FIFOs, sockets and devices: reading a FIFO named `x.jpg` would block forever.
      skip(path, state);
    }
  }
}

function isUnknownType(e: Dirent): boolean {
  return !(e.isFile() || e.isDirectory() || e.isSymbolicLink() || e.isFIFO() || e.isSocket() || e.isBlockDevice() || e.isCharacterDevice());
}

/** A symlink (or an entry of unknown type): decided by what it points to. */
async function* walkSymlink(path: string, state: WalkState): AsyncGenerator<string, void, undefined> {
  const target = await stat(path).catch(() => undefined);
  const real = target?.isDirectory() ? await realpath(path).catch(() => undefined) : undefined;
  if (real !== undefined) {
    yield* walkFolder(path, real, state);
  } else if (hasImageExtension(path) && (target === undefined || target.isFile())) {
    // A dangling `x.jpg` link is still yielded: its read error becomes a row people can see. A
    // link is resolved only when some file input could be its target (no syscall otherwise).
    const realFile = target && state.inputFiles.size > 0 ? await realpath(path).catch(() => '') : '';
    if (firstOccurrence(realFile, state)) yield path;
  } else {
    skip(path, state);
  }
}

/**
 * One folder's entries sorted by name. A folder that cannot be listed is recorded and yields what
 * was read before the failure (usually nothing), so one bad folder does not end a long run.
 */
async function listSorted(dir: string, state: WalkState): Promise<Dirent[]> {
  const entries: Dirent[] = [];
  try {
    for await (const entry of await opendir(dir, { bufferSize: 256 })) entries.push(entry);
  } catch (err) {
    state.stats.unreadableDirectories++;
    if (state.stats.unreadableExamples.length < state.maxExamples) {
      state.stats.unreadableExamples.push(`${dir}: ${(err as Error).message}`);
    }
  }
  // Code-unit comparison, not localeCompare: the order must not depend on the machine's locale.
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function skip(path: string, state: WalkState): void {
  state.stats.skipped++;
  if (state.stats.skippedExamples.length < state.maxExamples) state.stats.skippedExamples.push(path);
}
