/**
 * Painting datasets on disk and their seeded train/validation/test split.
 *
 * Two layouts are read:
 * - flat: `<root>/<artist>/*.jpg`, split per artist by a seeded shuffle (default 240/30/30, as in
 *   the original study: 300 WikiArt paintings per artist);
 * - keras: `<root>/{train,validation,test}/<artist>/*.jpg` (Keras `flow_from_directory`), used as
 *   given.
 */
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import seedrandom from 'seedrandom';
import { IMAGE_EXTENSIONS } from '../src/preprocess/decode.js';

/** One labelled painting. */
export interface Sample {
  path: string;
  /** Index into the dataset's `classes`. */
  label: number;
}

/** A split dataset. */
export interface SplitDataset {
  root: string;
  layout: 'flat' | 'keras';
  /** Artist names, sorted; label i is classes[i]. */
  classes: string[];
  train: Sample[];
  validation: Sample[];
  test: Sample[];
}

export interface SplitOptions {
  /** Artists to keep (folder names); default all. */
  artists?: string[];
  /** Per-artist train/validation/test counts for the flat layout. */
  split?: [number, number, number];
  /** Seed of the per-artist shuffle. */
  seed?: number;
}

export const DEFAULT_SPLIT: [number, number, number] = [240, 30, 30];
export const DEFAULT_SEED = 42;
const KERAS_DIRS = ['train', 'validation', 'test'] as const;

/**
 * Reads a dataset folder and splits it.
 *
 * The flat split is deterministic in (file names, seed): each artist's images are sorted by name,
 * shuffled with a seeded PRNG (seedrandom's ARC4, keyed by `${seed}:${artist}`), and cut into
 * train, validation and test. The same call always returns the same split, which is how
 * `artist-id evaluate` rebuilds a model's held-out test set.
 *
 * @throws Error when the folder is missing, has fewer than two artists, names unknown artists, or an
 *   artist has fewer images than the split asks for.
 */
/**
 * The layout of a dataset folder: `keras` when it holds train/, validation/ and test/ (whose folders are
 * the split), else `flat`. Does not validate the folder (see {@link loadDataset}).
 */
export async function datasetLayout(root: string): Promise<'flat' | 'keras'> {
  const top = await subfolders(root).catch(() => [] as string[]);
  return KERAS_DIRS.every((d) => top.includes(d)) ? 'keras' : 'flat';
}

export async function loadDataset(root: string, options: SplitOptions = {}): Promise<SplitDataset> {
  const split = options.split ?? DEFAULT_SPLIT;
  const seed = options.seed ?? DEFAULT_SEED;
  const top = await subfolders(root).catch((err: Error) => {
    throw new Error(`Expected a dataset folder for data but could not read ${JSON.stringify(root)}: ${err.message}`);
  });
  const layout: 'flat' | 'keras' = KERAS_DIRS.every((d) => top.includes(d)) ? 'keras' : 'flat';
  const kerasDirs = KERAS_DIRS.filter((d) => top.includes(d));
  if (layout === 'flat' && kerasDirs.length > 0) {
    throw new Error(`Expected either artist folders or the Keras layout train/, validation/, test/ in ${root} but found only ${kerasDirs.join('/, ')}/: add the missing split folder(s)`);
  }
  const available = layout === 'keras' ? await subfolders(join(root, 'train')) : top;
  const classes = selectArtists(available, options.artists, root);

  if (layout === 'keras') {
    const parts = await Promise.all(
      KERAS_DIRS.map(async (dir) =>
        (
          await Promise.all(
            classes.map(async (artist, label) => {
              const folder = join(root, dir, artist);
              const files = await images(folder).catch(() => {
                throw new Error(`Expected a folder of images for artist "${artist}" in the ${dir} split but ${folder} cannot be read (Keras layout needs every artist in train/, validation/ and test/)`);
              });
              return files.map((path) => ({ path, label }));
            }),
          )
        ).flat(),
      ),
    );
    return { root, layout, classes, train: parts[0], validation: parts[1], test: parts[2] };
  }

  const out: SplitDataset = { root, layout, classes, train: [], validation: [], test: [] };
  const [nTrain, nVal, nTest] = split;
  for (const [label, artist] of classes.entries()) {
    const files = await images(join(root, artist));
    if (files.length < nTrain + nVal + nTest) {
      throw new Error(`Expected at least ${nTrain + nVal + nTest} images (split ${split.join('/')}) for artist "${artist}" but found ${files.length} in ${join(root, artist)}`);
    }
    const shuffled = seededShuffle(files, `${seed}:${artist}`);
    const take = (from: number, n: number) => shuffled.slice(from, from + n).map((path) => ({ path, label }));
    out.train.push(...take(0, nTrain));
    out.validation.push(...take(nTrain, nVal));
    out.test.push(...take(nTrain + nVal, nTest));
  }
  return out;
}

function selectArtists(available: string[], wanted: string[] | undefined, root: string): string[] {
  const classes = wanted && wanted.length > 0 ? [...new Set(wanted)].sort() : available;
  const unknown = classes.filter((a) => !available.includes(a));
  if (unknown.length > 0) {
    throw new Error(`Expected artists among the folders of ${root} for artists but received ${unknown.map((a) => JSON.stringify(a)).join(', ')}; available: ${available.join(', ')}`);
  }
  if (classes.length < 2) {
    throw new Error(`Expected at least 2 artists (folders of images) in ${root} but found ${classes.length}: ${classes.join(', ') || 'none'}`);
  }
  return classes;
}

async function subfolders(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory() || (e.isSymbolicLink() && (await stat(join(dir, e.name))).isDirectory())) out.push(e.name);
  }
  return out.sort();
}

async function images(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory() && IMAGE_EXTENSIONS.includes(extname(e.name).toLowerCase()))
    .map((e) => join(dir, e.name))
    .sort();
}

/** Fisher–Yates shuffle driven by seedrandom (ARC4), so a split depends only on names and seed. */
export function seededShuffle<T>(items: readonly T[], seed: string): T[] {
  const rng = seedrandom(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * Digest of a split's content: sha256 over the sorted sha256 hex digests of its files' bytes. It does
 * not depend on file names or order, only on which images are in the split.
 */
export function splitDigest(contentSha256: string[]): string {
  return createHash('sha256').update([...contentSha256].sort().join('\n')).digest('hex');
}
