/**
 * Bottleneck features of the frozen base, computed once with onnxruntime-node and cached on disk.
 *
 * Cache key: sha256 of the image file's bytes + a key of the feature model (sha256 of its ONNX
 * bytes, which covers the base weights and the in-graph preprocessing), so renaming files reuses the
 * cache and changing the base or the preprocessing never reads stale features.
 * Layout: `<cacheDir>/features/<modelKey>/<sha[0:2]>/<sha>.f32` (D float32 little-endian).
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { cacheDir } from '../src/paths.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { imageBytes, type PreprocessSpec } from '../src/preprocess/spec.js';
import { TENSOR } from '../export/base.js';

/** A feature extractor session over the feature model from `buildFeatureModel`. */
export interface FeatureExtractor {
  session: ort.InferenceSession;
  /** sha256 (hex, 16 chars) of the feature model bytes. */
  modelKey: string;
  spec: PreprocessSpec;
  featureDim: number;
}

export interface ExtractOptions {
  /** Images per `session.run`; default 32. */
  batchSize?: number;
  /** Called after each batch with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** Short key of a feature model's bytes, used to name its cache folder. */
export function featureModelKey(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

/**
 * Bottleneck features for each path, from cache where present, else computed and cached.
 *
 * @returns `[N,D] float32` row-major, rows in `paths` order, and how many came from the cache.
 * @throws Error naming the file when an image cannot be read or decoded (training data must be clean).
 */
export async function extractFeatures(
  extractor: FeatureExtractor,
  paths: string[],
  options: ExtractOptions = {},
): Promise<{ features: Float32Array; cached: number; sha256: string[] }> {
  const { featureDim: d, spec } = extractor;
  const batchSize = options.batchSize ?? 32;
  const features = new Float32Array(paths.length * d);
  const dir = join(cacheDir(), 'features', extractor.modelKey);
  const missing: { index: number; path: string; bytes: Buffer; file: string }[] = [];
  const shas: string[] = [];
  let cached = 0;

  for (const [index, path] of paths.entries()) {
    const bytes = await readFile(path);
    const sha = createHash('sha256').update(bytes).digest('hex');
    shas.push(sha);
    const file = join(dir, sha.slice(0, 2), `${sha}.f32`);
    const hit = await readFile(file).catch(() => undefined);
    if (hit && hit.length === d * 4) {
      features.set(new Float32Array(hit.buffer, hit.byteOffset, d), index * d);
      cached++;
    } else {
      missing.push({ index, path, bytes, file });
    }
  }

  // Decode everything first so that every unusable image is reported at once, not one per run.
  const size = imageBytes(spec);
  const failures: string[] = [];
  await Promise.all(
    missing.map(async (m) => {
      try {
        await decodeImage(m.bytes, spec);
      } catch (err) {
        failures.push(`${m.path}: ${(err as Error).message}`);
      }
    }),
  );
  if (failures.length > 0) {
    const shown = failures.sort().slice(0, 20);
    throw new Error(`Cannot use ${failures.length} training image(s); fix or remove them:\n  ${shown.join('\n  ')}${failures.length > shown.length ? `\n  ... and ${failures.length - shown.length} more` : ''}`);
  }
  for (let start = 0; start < missing.length; start += batchSize) {
    const batch = missing.slice(start, start + batchSize);
    const pixels = await Promise.all(batch.map((m) => decodeImage(m.bytes, spec)));
    const input = new Uint8Array(batch.length * size);
    pixels.forEach((p, i) => input.set(p, i * size));
    const out = await extractor.session.run({ [TENSOR.image]: new ort.Tensor('uint8', input, [batch.length, spec.height, spec.width, 3]) });
    const data = out[TENSOR.features].data as Float32Array;
    await Promise.all(
      batch.map(async (m, i) => {
        const row = data.slice(i * d, (i + 1) * d);
        features.set(row, m.index * d);
        await mkdir(dirname(m.file), { recursive: true });
        // Write then rename: a killed run never leaves a short cache file behind.
        const tmp = `${m.file}.${process.pid}.tmp`;
        await writeFile(tmp, new Uint8Array(row.buffer));
        await rename(tmp, m.file);
      }),
    );
    options.onProgress?.(cached + start + batch.length, paths.length);
  }
  return { features, cached, sha256: shas };
}
