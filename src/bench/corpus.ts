/**
 * Benchmark data: real paintings from a folder, and archive-like large JPEGs generated from them
 * into the user cache (never into the repository).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { expectInteger, invalidParameterError } from '../errors.js';
import { walkImages } from '../archive/walk.js';
import { PACKAGE_ROOT, cacheDir } from '../paths.js';

/**
 * The folder of real paintings benchmarked when `--data` is not given: the shared paintings beside
 * a development clone (`../shared/paintings`, 3,300 WikiArt crops of 224–256 px) when present,
 * else the package's `samples/` (a dozen paintings, cycled).
 */
export function defaultDataDir(): string {
  const shared = resolve(PACKAGE_ROOT, '..', 'shared', 'paintings');
  return existsSync(shared) ? shared : join(PACKAGE_ROOT, 'samples');
}

/**
 * Up to `count` image files under `dir`, spread over its sub-folders (round-robin over artists, in
 * name order), so a small sample is not all one painter's. Fewer files are cycled to reach
 * `count` when `cycle` is true.
 *
 * @throws Error naming `data` when the folder holds no image.
 */
export async function sampleImages(dir: string, count: number, cycle = true): Promise<string[]> {
  expectInteger('count', count);
  const byFolder = new Map<string, string[]>();
  for await (const path of walkImages([dir])) {
    const folder = path.slice(0, path.lastIndexOf('/'));
    if (!byFolder.has(folder)) byFolder.set(folder, []);
    byFolder.get(folder)!.push(path);
  }
  const folders = [...byFolder.keys()].sort().map((f) => byFolder.get(f)!.sort());
  const picked: string[] = [];
  for (let i = 0; picked.length < count && folders.some((f) => i < f.length); i++) {
    for (const f of folders) if (i < f.length && picked.length < count) picked.push(f[i]);
  }
  if (picked.length === 0) throw invalidParameterError('data', 'a folder holding image files', dir);
  const out = [...picked];
  while (cycle && out.length < count) out.push(picked[out.length % picked.length]);
  return out;
}

/** Size and quality of generated archive-like JPEGs. */
export interface LargeJpegSpec {
  /** Pixels; default 2000 x 1500 (a typical archive scan / camera frame). */
  width: number;
  height: number;
  /** JPEG quality; default 90. */
  quality: number;
  /**
   * Gaussian grain (standard deviation, 0–255 scale) overlaid after upscaling, so the file has the
   * entropy of a real scan (~1 MB at 2000 x 1500, q90) rather than the smooth, cheap-to-decode
   * content of a plain upscale (~0.2 MB); default 16.
   */
  grain: number;
}

export const DEFAULT_LARGE_JPEG: LargeJpegSpec = { width: 2000, height: 1500, quality: 90, grain: 16 };

/**
 * Archive-like JPEGs made from real paintings: each source is upscaled (lanczos3) to
 * `spec.width` x `spec.height`, given a fixed grain overlay and written at `spec.quality`. Files
 * are kept in `<cache>/bench/<key>/` (`ARTIST_ID_CACHE`, else the user cache; see `cacheDir`), keyed
 * by the sources and the spec, and reused by later runs.
 *
 * @returns absolute paths of the generated files, one per source, in source order.
 */
export async function largeJpegs(sources: readonly string[], spec: LargeJpegSpec = DEFAULT_LARGE_JPEG, root = join(cacheDir(), 'bench')): Promise<string[]> {
  expectInteger('width', spec.width);
  expectInteger('height', spec.height);
  expectInteger('quality', spec.quality, 1, 100);
  const key = createHash('sha256').update(JSON.stringify({ spec, sources: sources.map((s) => resolve(s)) })).digest('hex').slice(0, 16);
  const dir = join(root, `large-${spec.width}x${spec.height}-q${spec.quality}-${key}`);
  await mkdir(dir, { recursive: true });
  const existing = new Set(await readdir(dir));
  let grain: Buffer | undefined;
  const out: string[] = [];
  for (let i = 0; i < sources.length; i++) {
    const name = `${String(i).padStart(5, '0')}.jpg`;
    const path = join(dir, name);
    out.push(path);
    if (existing.has(name) && (await stat(path)).size > 0) continue;
    grain ??= await sharp({ create: { width: spec.width, height: spec.height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: Math.max(spec.grain, 0.01) } } }).raw().toBuffer();
    let img = sharp(sources[i]).rotate().toColourspace('srgb').resize(spec.width, spec.height, { fit: 'fill', kernel: 'lanczos3' });
    if (spec.grain > 0) {
      img = sharp(await img.raw().toBuffer(), { raw: { width: spec.width, height: spec.height, channels: 3 } })
        .composite([{ input: grain, raw: { width: spec.width, height: spec.height, channels: 3 }, blend: 'overlay' }]);
    }
    const bytes = await img.jpeg({ quality: spec.quality }).toBuffer();
    await writeFile(`${path}.part`, bytes);
    await rename(`${path}.part`, path); // a killed run never leaves a truncated file under the final name
  }
  return out;
}

/** Total size of files in bytes. */
export async function totalBytes(paths: readonly string[]): Promise<number> {
  let sum = 0;
  for (const p of new Set(paths)) sum += (await stat(p)).size;
  return sum;
}
