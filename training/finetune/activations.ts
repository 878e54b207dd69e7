/**
 * Activations of the frozen bottom at the cut (export/finetune-export.ts), computed once with
 * onnxruntime-node for the clean image and `views` augmented copies of it (training/augment.ts), and
 * cached on disk as the int8 model's own uint8 codes.
 *
 * Storage: one image-view is `h*w*C` uint8 codes in NHWC order (TF.js's layout, so batches need no
 * transpose); the float activation is `(code - zeroPoint) * scale` (the bottom's DequantizeLinear),
 * which the codes reproduce exactly.
 * Cache key: `<cacheDir>/finetune/<bottomKey>/<viewKey>/<sha[0:2]>/<sha>.u8`, where `bottomKey` is
 * the sha256 prefix of the bottom model's bytes (covers base weights, preprocessing and cut),
 * `viewKey` is `clean` or a hash of (augmentation config, seed, view index), `sha` the sha256 of the
 * image file's bytes. Renamed files hit the cache; any change of base, cut, augmentation or seed misses.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { CutQuantization } from '../../export/finetune-export.js';
import { CUT_TENSOR } from '../../export/finetune-export.js';
import { TENSOR } from '../../export/base.js';
import { cacheDir } from '../../src/paths.js';
import { decodeImage } from '../../src/preprocess/decode.js';
import { imageBytes, type PreprocessSpec } from '../../src/preprocess/spec.js';
import { augmentView, type AugmentConfig } from '../augment.js';

/** The bottom's onnxruntime session and what it produces. */
export interface BottomExtractor {
  /** Session of `buildBottomModel` (input `image`, output `features` = `[N,C,h,w]` float32). */
  session: ort.InferenceSession;
  /** sha256 prefix (16 hex) of the bottom model's bytes. */
  modelKey: string;
  spec: PreprocessSpec;
  /** Shape of one image's cut activations, `[C, h, w]`. */
  chw: [number, number, number];
  quantization: CutQuantization;
}

/** Cut activations of a list of images, `views + 1` per image. */
export interface ViewActivations {
  /**
   * `[N, V, h, w, C]` uint8 codes (NHWC per view), row-major: image i, view v starts at
   * `(i * V + v) * h*w*C`. View 0 is the clean image; views 1..V-1 are augmented.
   */
  codes: Uint8Array;
  /** V = augmented views + 1. */
  viewsPerImage: number;
  /** sha256 of each image file's bytes, in input order. */
  sha256: string[];
  /** Image-views read from the cache. */
  cached: number;
}

/** Key of a view: `clean`, or a hash of (augmentation config, seed, view index). */
export function viewKey(view: number, augment: AugmentConfig, seed: number): string {
  if (view === 0) return 'clean';
  return `aug-${createHash('sha256').update(JSON.stringify({ augment, seed, view })).digest('hex').slice(0, 16)}`;
}

/**
 * `[N,C,h,w]` float activations -> `[N,h,w,C]` uint8 codes (`round(x / scale) + zeroPoint`).
 *
 * @throws Error when a value is not on the uint8 grid (more than 1e-3 of a step off): the bottom
 *   did not end in the expected DequantizeLinear.
 */
export function toCodes(x: Float32Array, chw: [number, number, number], q: CutQuantization): Uint8Array {
  const [c, h, w] = chw;
  const per = c * h * w;
  if (x.length % per !== 0) throw new Error(`Expected a multiple of ${per} activations (C=${c}, h=${h}, w=${w}) but received ${x.length}`);
  const out = new Uint8Array(x.length);
  for (let n = 0; n < x.length / per; n++) {
    for (let ch = 0; ch < c; ch++) {
      for (let p = 0; p < h * w; p++) {
        const v = x[n * per + ch * h * w + p] / q.scale + q.zeroPoint;
        const r = Math.round(v);
        if (Math.abs(v - r) > 1e-3 || r < 0 || r > 255) throw new Error(`Expected cut activations on the uint8 grid (scale ${q.scale}, zero point ${q.zeroPoint}) but received ${x[n * per + ch * h * w + p]}`);
        out[n * per + p * c + ch] = r;
      }
    }
  }
  return out;
}

/**
 * Cut activations for each path: the clean image and `views` augmented copies, from cache where
 * present, else computed with the bottom and cached.
 *
 * @param paths - image files (decoded with `extractor.spec`, i.e. src/preprocess/decode.ts).
 * @param views - augmented views per image (0: clean only, e.g. for validation and test).
 * @param seed - augmentation seed; view v of an image depends only on (seed, file sha256, v).
 * @throws Error naming every file that cannot be read or decoded.
 */
export async function extractViews(
  extractor: BottomExtractor,
  paths: string[],
  views: number,
  augment: AugmentConfig,
  seed: number,
  options: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<ViewActivations> {
  const [c, h, w] = extractor.chw;
  const per = c * h * w;
  const v = views + 1;
  const codes = new Uint8Array(paths.length * v * per);
  const root = join(cacheDir(), 'finetune', extractor.modelKey);
  const keys = Array.from({ length: v }, (_, i) => viewKey(i, augment, seed));
  const sha256: string[] = [];
  const missing: { index: number; path: string; bytes: Buffer; sha: string; views: number[] }[] = [];
  let cached = 0;
  for (const [index, path] of paths.entries()) {
    const bytes = await readFile(path);
    const sha = createHash('sha256').update(bytes).digest('hex');
    sha256.push(sha);
    const absent: number[] = [];
    for (let view = 0; view < v; view++) {
      const hit = await readFile(join(root, keys[view], sha.slice(0, 2), `${sha}.u8`)).catch(() => undefined);
      if (hit && hit.length === per) {
        codes.set(hit, (index * v + view) * per);
        cached++;
      } else {
        absent.push(view);
      }
    }
    if (absent.length) missing.push({ index, path, bytes, sha, views: absent });
  }

  const { spec } = extractor;
  const size = imageBytes(spec);
  const decoded = new Map<number, Uint8Array>();
  const failures: string[] = [];
  for (const m of missing) {
    try {
      decoded.set(m.index, await decodeImage(m.bytes, spec));
    } catch (err) {
      failures.push(`${m.path}: ${(err as Error).message}`);
    }
  }
  if (failures.length) throw new Error(`Cannot use ${failures.length} training image(s); fix or remove them:\n  ${failures.sort().slice(0, 20).join('\n  ')}`);

  // Flatten (image, view) jobs; augment lazily per batch to keep memory at one batch of images.
  const jobs = missing.flatMap((m) => m.views.map((view) => ({ m, view })));
  const batchSize = options.batchSize ?? 16;
  let done = cached;
  for (let start = 0; start < jobs.length; start += batchSize) {
    const batch = jobs.slice(start, start + batchSize);
    const input = new Uint8Array(batch.length * size);
    batch.forEach(({ m, view }, i) => {
      const pixels = decoded.get(m.index)!;
      const image = view === 0 ? pixels : augmentView(pixels, spec.height, spec.width, augment, seed, m.sha, view).image;
      input.set(image, i * size);
    });
    const out = await extractor.session.run({ [TENSOR.image]: new ort.Tensor('uint8', input, [batch.length, spec.height, spec.width, 3]) });
    const q = toCodes(out[CUT_TENSOR.activations].data as Float32Array, extractor.chw, extractor.quantization);
    await Promise.all(
      batch.map(async ({ m, view }, i) => {
        const row = q.slice(i * per, (i + 1) * per);
        codes.set(row, (m.index * v + view) * per);
        const file = join(root, keys[view], m.sha.slice(0, 2), `${m.sha}.u8`);
        await mkdir(dirname(file), { recursive: true });
        const tmp = `${file}.${process.pid}.tmp`;
        await writeFile(tmp, row);
        await rename(tmp, file);
      }),
    );
    done += batch.length;
    options.onProgress?.(done, paths.length * v);
  }
  return { codes, viewsPerImage: v, sha256, cached };
}
