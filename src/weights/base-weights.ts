/**
 * Pretrained ImageNet base weights (ONNX, or Keras HDF5 for VGG16) for training: found in a local
 * folder, in the user cache, or downloaded from public mirrors — always checked against a pinned
 * checksum (sha256, or the md5 Keras itself pins where artist-id has no verified sha256).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { invalidParameterError } from '../errors.js';
import { cacheDir } from '../paths.js';

/** What artist-id knows about one base model file. */
export interface BaseWeightsInfo {
  /** File name, the same in a local folder, in the cache and at the end of each URL. */
  fileName: string;
  /**
   * Pinned sha256 (lower-case hex) of the revision artist-id was built and tested against; `null`
   * when not known (then {@link md5} pins the file).
   */
  sha256: string | null;
  /** Pinned md5 (lower-case hex) as published by the file's upstream, accepted like the sha256. */
  md5?: string;
  /** `onnx` (default): an ONNX graph; `keras-h5`: Keras HDF5 weights rebuilt in TF.js and exported. */
  format?: 'onnx' | 'keras-h5';
  /** Size in bytes of the pinned revision. */
  size: number;
  /** Download mirrors, tried in order. */
  urls: readonly string[];
  /** Name of the model's image input. */
  inputName: string;
  /** Internal tensor used as the feature map for transfer learning. */
  featureTensor: string;
  /** Channels of {@link featureTensor} (its length after global average pooling). */
  featureDim: number;
}

/** Known base models, by name. */
export const BASE_WEIGHTS = {
  /**
   * MobileNetV2 (width 1.0, 224x224, ImageNet-1k) from the ONNX Model Zoo, Apache-2.0: torchvision's
   * MobileNetV2 exported to ONNX (opset 12) and quantized to int8 by onnxruntime (QOperator format).
   */
  'mobilenetv2-12-int8': {
    /** Same name as in github.com/onnx/models `validated/vision/classification/mobilenet/model/`. */
    fileName: 'mobilenetv2-12-int8.onnx',
    /** sha256 of the 3,655,640-byte revision (other revisions circulate, e.g. 3,655,033 bytes). */
    sha256: '83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f',
    /** 3,655,640 bytes, the pinned revision. */
    size: 3_655_640,
    /** ONNX Model Zoo on GitHub (Git LFS, served through `raw/main/`), then its Hugging Face mirror. */
    urls: [
      'https://github.com/onnx/models/raw/main/validated/vision/classification/mobilenet/model/mobilenetv2-12-int8.onnx',
      'https://huggingface.co/onnxmodelzoo/mobilenetv2-12-int8/resolve/main/mobilenetv2-12-int8.onnx',
    ],
    /** `input`: [N,3,224,224] float32 NCHW, RGB in [0,1] normalised with ImageNet mean/std. */
    inputName: 'input',
    /** `627`: the 1280x7x7 float feature map before global average pooling. */
    featureTensor: '627',
    /** 1280 channels in tensor `627`. */
    featureDim: 1280,
  },
  /**
   * VGG16 (Simonyan & Zisserman 2014, configuration D; the slides' base), ImageNet-1k, the Keras
   * applications `include_top=False` weights (MIT-licensed Keras; weights from the VGG authors, CC BY 4.0).
   * Rebuilt in TF.js (training/models/vgg16.ts) and exported to ONNX by export/vgg16-base.ts.
   *
   * Checksum note: Keras pins this file by md5 only (keras/src/applications/vgg16.py,
   * `WEIGHTS_PATH_NO_TOP` with `file_hash="6d6bbae143d832006294945121d1f1fc"`). artist-id has not
   * downloaded the file, so its sha256 is not known here and is deliberately not invented: the file
   * is accepted when its md5 is Keras's, or when its sha256 is accepted explicitly
   * (`ARTIST_ID_WEIGHTS_SHA256` / option `acceptSha256`). Pin the sha256 here once verified.
   */
  vgg16: {
    fileName: 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
    sha256: null,
    md5: '6d6bbae143d832006294945121d1f1fc',
    /** 58,889,256 bytes (training/h5/vgg16-weights.ts). */
    size: 58_889_256,
    format: 'keras-h5',
    /** Keras applications bucket (what `keras.applications.VGG16(weights='imagenet', include_top=False)` fetches), then the original release. */
    urls: [
      'https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
      'https://github.com/fchollet/deep-learning-models/releases/download/v0.1/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
    ],
    /** Not an ONNX graph: the normalised NHWC input of the exported TF.js model (export/vgg16-base.ts). */
    inputName: 'artist_id/normalized',
    /** The Keras layer whose output is globally average pooled: `block5_pool`, [N,7,7,512] at 224. */
    featureTensor: 'block5_pool',
    /** 512 channels. */
    featureDim: 512,
  },
} as const satisfies Record<string, BaseWeightsInfo>;

/** Name of a known base model. */
export type BaseWeightsName = keyof typeof BASE_WEIGHTS;

/** Where {@link resolveBaseWeights} found the file. */
export type WeightsSource = 'local' | 'cache' | 'download';

/** A base model file ready to load. */
export interface ResolvedBaseWeights {
  /** Absolute or caller-relative path of the verified file. */
  path: string;
  /** sha256 (lower-case hex) of the file at {@link path}. */
  sha256: string;
  source: WeightsSource;
}

export interface ResolveBaseWeightsOptions {
  /** Folder that may hold the file, checked first. Default: `$ARTIST_ID_WEIGHTS_DIR`. */
  weightsDir?: string;
  /** Cache root; the file lives in `<cacheDir>/weights/`. Default: {@link cacheDir}(). */
  cacheDir?: string;
  /** Download URLs, tried in order. Default: `$ARTIST_ID_WEIGHTS_URL` (one URL), else the registry's. */
  urls?: readonly string[];
  /** Also accept a file with this sha256 (another revision). Default: `$ARTIST_ID_WEIGHTS_SHA256`. */
  acceptSha256?: string;
  /** Never download. Default: `$ARTIST_ID_OFFLINE` is `1` or `true`. */
  offline?: boolean;
  /** Called as download bytes arrive; `totalBytes` is undefined when the server does not say. */
  onProgress?: (bytesReceived: number, totalBytes: number | undefined) => void;
  /** Receives human-readable status lines; nothing is printed otherwise. */
  log?: (message: string) => void;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
const HINT_DIR = 'pass --weights-dir <folder> or set ARTIST_ID_WEIGHTS_DIR=<folder> to a folder holding';

/** A file's digests (lower-case hex). */
interface Digests {
  sha256: string;
  md5: string;
}

/** Streams a file through sha256 and md5 (the files are megabytes; no need to hold them in memory). */
async function hashFile(path: string): Promise<Digests> {
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  for await (const chunk of createReadStream(path)) {
    sha.update(chunk as Buffer);
    md5.update(chunk as Buffer);
  }
  return { sha256: sha.digest('hex'), md5: md5.digest('hex') };
}

/** Turns a fetch failure into a short reason; undici hides the real cause (ECONNREFUSED...) in `cause`. */
function describeFetchError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause as { code?: string; message?: string } | undefined;
  const detail = cause?.code ?? cause?.message;
  return detail && !error.message.includes(detail) ? `${error.message} (${detail})` : error.message;
}

/**
 * Downloads `url` into a temp file in `dir`, hashing as it streams. Returns the temp path and its
 * sha256; the caller decides whether to keep it. The temp file is removed if the transfer fails.
 */
async function download(
  url: string,
  dir: string,
  fileName: string,
  onProgress: ResolveBaseWeightsOptions['onProgress'],
): Promise<{ tempPath: string } & Digests> {
  // fetch follows redirects by default (GitHub raw -> LFS media, Hugging Face -> CDN).
  const response = await fetch(url, { redirect: 'follow' });
  if (!response.ok || !response.body) {
    throw new Error(`HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
  }
  const lengthHeader = Number(response.headers.get('content-length'));
  const total = Number.isFinite(lengthHeader) && lengthHeader > 0 ? lengthHeader : undefined;
  // A unique temp name in the destination folder: concurrent runs never clash, and the final
  // rename stays on one file system, so it is atomic.
  const tempPath = join(dir, `.${fileName}.${process.pid}.${randomBytes(4).toString('hex')}.part`);
  const hash = createHash('sha256');
  const md5 = createHash('md5');
  let received = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      md5.update(chunk);
      received += chunk.length;
      onProgress?.(received, total);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(response.body as NodeReadableStream<Uint8Array>), meter, createWriteStream(tempPath));
  } catch (error) {
    await rm(tempPath, { force: true });
    throw error;
  }
  return { tempPath, sha256: hash.digest('hex'), md5: md5.digest('hex') };
}

/**
 * Finds or fetches the ONNX file of a known base model and verifies its sha256.
 *
 * Looks, in order, in the local folder (`options.weightsDir` / `$ARTIST_ID_WEIGHTS_DIR`), in the
 * user cache (`<cacheDir>/weights/`), then downloads from each URL in turn into the cache. A file is
 * accepted when its sha256 is the pinned one or `options.acceptSha256` / `$ARTIST_ID_WEIGHTS_SHA256`.
 *
 * @param name - a key of {@link BASE_WEIGHTS}, e.g. `'mobilenetv2-12-int8'`.
 * @throws if `name` is unknown or `acceptSha256` is not 64 hex digits (via {@link invalidParameterError});
 *   if the file in the local folder has the wrong checksum; if offline and no verified copy exists;
 *   if every download fails (one error listing each URL and why, including checksum mismatches).
 * @example
 * const weights = await resolveBaseWeights('mobilenetv2-12-int8', {
 *   weightsDir: '../shared/weights',
 *   onProgress: (got, total) => bar.update(got, { total }),
 * });
 * // { path: '../shared/weights/mobilenetv2-12-int8.onnx', sha256: '8353…', source: 'local' }
 */
export async function resolveBaseWeights(name: string, options: ResolveBaseWeightsOptions = {}): Promise<ResolvedBaseWeights> {
  if (!Object.hasOwn(BASE_WEIGHTS, name)) {
    const known = Object.keys(BASE_WEIGHTS).map((k) => JSON.stringify(k)).join(', ');
    throw invalidParameterError('base weights name', `one of ${known}`, name);
  }
  const info: BaseWeightsInfo = BASE_WEIGHTS[name as BaseWeightsName];
  const env = process.env;
  const log = options.log ?? (() => {});

  const acceptRaw = options.acceptSha256 ?? (env.ARTIST_ID_WEIGHTS_SHA256 || undefined);
  const acceptParam = options.acceptSha256 !== undefined ? 'acceptSha256' : 'ARTIST_ID_WEIGHTS_SHA256';
  const accepted = acceptRaw === undefined ? undefined : acceptRaw.trim().toLowerCase();
  if (accepted !== undefined && !SHA256_HEX.test(accepted)) {
    throw invalidParameterError(acceptParam, 'sha256 as 64 hexadecimal digits', acceptRaw);
  }
  const isAccepted = (d: Digests) => (info.sha256 !== null && d.sha256 === info.sha256) || (info.md5 !== undefined && d.md5 === info.md5) || d.sha256 === accepted;
  const pinned = [info.sha256 !== null ? `sha256 ${info.sha256}` : undefined, info.md5 !== undefined ? `md5 ${info.md5}` : undefined].filter(Boolean).join(' or ');
  const acceptedText = accepted ? `${pinned} (pinned) or sha256 ${accepted} (accepted)` : pinned;
  const offline = options.offline ?? ['1', 'true'].includes((env.ARTIST_ID_OFFLINE ?? '').toLowerCase());
  const lookedAt: string[] = [];

  // 1. Local folder: the user said "use this file", so a wrong checksum is an error, not a reason
  //    to silently download something else.
  const weightsDir = options.weightsDir ?? (env.ARTIST_ID_WEIGHTS_DIR || undefined);
  if (weightsDir !== undefined) {
    // A mistyped folder must not turn into a silent download.
    if (!statSync(weightsDir, { throwIfNoEntry: false })?.isDirectory()) {
      throw invalidParameterError(options.weightsDir !== undefined ? 'weights folder (--weights-dir)' : 'ARTIST_ID_WEIGHTS_DIR', 'an existing folder', weightsDir);
    }
    const localPath = join(weightsDir, info.fileName);
    if (existsSync(localPath)) {
      const digests = await hashFile(localPath);
      const { sha256 } = digests;
      if (isAccepted(digests)) return { path: localPath, sha256, source: 'local' };
      throw new Error(
        `Base weights "${name}": checksum mismatch for ${localPath}\n` +
          `  expected: ${acceptedText}\n` +
          `  file sha256:     ${sha256}${info.md5 !== undefined ? ` (md5 ${digests.md5})` : ''}\n` +
          `The file is corrupt or another revision. Replace it with the pinned file, or accept this ` +
          `revision explicitly with ARTIST_ID_WEIGHTS_SHA256=${sha256} (option acceptSha256).`,
      );
    }
    lookedAt.push(`${localPath} (not found)`);
  }

  // 2. User cache. A mismatching cached file is stale or half-written by an old version: ignore it,
  //    a successful download below replaces it.
  const cacheWeightsDir = join(options.cacheDir ?? cacheDir(), 'weights');
  const cachePath = join(cacheWeightsDir, info.fileName);
  if (existsSync(cachePath)) {
    const digests = await hashFile(cachePath);
    const { sha256 } = digests;
    if (isAccepted(digests)) return { path: cachePath, sha256, source: 'cache' };
    log(`Ignoring cached ${cachePath}: sha256 ${sha256} is not ${acceptedText}.`);
    lookedAt.push(`${cachePath} (sha256 ${sha256} does not match)`);
  } else {
    lookedAt.push(`${cachePath} (not found)`);
  }

  if (offline) {
    throw new Error(
      `Base weights "${name}" (${info.fileName}) not found and downloads are off (offline mode, ARTIST_ID_OFFLINE).\n` +
        `Looked at:\n${lookedAt.map((p) => `  - ${p}`).join('\n')}\n` +
        `To use a local copy, ${HINT_DIR} ${info.fileName}.`,
    );
  }

  // 3. Download, mirror by mirror; any failure (HTTP, network, checksum) moves on to the next.
  const envUrl = env.ARTIST_ID_WEIGHTS_URL || undefined;
  const urls = options.urls ?? (envUrl ? [envUrl] : info.urls);
  await mkdir(cacheWeightsDir, { recursive: true });
  const failures: string[] = [];
  let checksumRefused = false;
  for (const url of urls) {
    log(`Downloading base weights "${name}" from ${url}`);
    let result: { tempPath: string } & Digests;
    try {
      result = await download(url, cacheWeightsDir, info.fileName, options.onProgress);
    } catch (error) {
      const reason = describeFetchError(error);
      log(`Download failed: ${url}: ${reason}`);
      failures.push(`${url}: ${reason}`);
      continue;
    }
    if (!isAccepted(result)) {
      // Pinning: never keep a file we did not agree to, even in the cache.
      await rm(result.tempPath, { force: true });
      checksumRefused = true;
      const reason = `refused, sha256 mismatch: expected ${acceptedText}, received ${result.sha256}`;
      log(`Download refused: ${url}: ${reason}`);
      failures.push(`${url}: ${reason}`);
      continue;
    }
    await rename(result.tempPath, cachePath);
    log(`Saved ${cachePath} (sha256 ${result.sha256})`);
    return { path: cachePath, sha256: result.sha256, source: 'download' };
  }

  const acceptHint = checksumRefused
    ? `\nA mirror served a different revision of the file (public copies exist in more than one). ` +
      `If you trust it, accept it explicitly with ARTIST_ID_WEIGHTS_SHA256=<received sha256> (option acceptSha256).`
    : '';
  throw new Error(
    `Base weights "${name}" (${info.fileName}) could not be obtained.\n` +
      `Looked at:\n${lookedAt.map((p) => `  - ${p}`).join('\n')}\n` +
      (urls.length === 0 ? 'No download URL configured.\n' : `Downloads failed:\n${failures.map((f) => `  - ${f}`).join('\n')}\n`) +
      `Download the file elsewhere and ${HINT_DIR} it.` +
      acceptHint,
  );
}
