/**
 * Image decoding with sharp: bytes in any supported format to the model's `[H,W,3] uint8` tensor.
 */
import sharp from 'sharp';
import { expectInteger } from '../errors.js';
import type { PreprocessSpec } from './spec.js';
import { imageBytes } from './spec.js';

/** Raster formats accepted, as sharp's `metadata().format` names them (detected from content). */
export const SUPPORTED_FORMATS = ['jpeg', 'png', 'webp', 'tiff', 'gif', 'avif', 'heif'] as const;

/** File extensions an archive walk takes as images (case-insensitive). */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif', '.heic', '.heif'];

/**
 * Largest image decoded by default, in pixels (width x height): 1 gigapixel, e.g. 31600 x 31600.
 *
 * Why not sharp's default (268 megapixels, 16383 x 16383): museum scans are often larger (a
 * 17000 x 17000 JPEG is common), and refusing them is worse than the cost of decoding them.
 *
 * What it costs: sharp reads sequentially and shrinks as it reads, so memory per decode stays far
 * below the full image for most files. A 17000 x 17000 (289 Mpx) image decoded to 224 x 224 peaks
 * at ~75 MB RSS as JPEG (shrink-on-load, ~0.3 s) and ~140 MB as PNG or TIFF (every pixel is still
 * decoded, ~1-4 s), measured with sharp 0.35 / libvips 8.18. Files that libvips must hold whole
 * (interlaced PNG) take ~3 bytes per pixel (4 with alpha): up to 3-4 GB at this limit, times
 * the number of decodes running at once. The limit is what bounds that worst case (and a
 * decompression bomb: a few KB of PNG can declare a gigapixel of one colour).
 */
export const DEFAULT_LIMIT_INPUT_PIXELS = 1_000_000_000;

/** Options of {@link decodeImage}. */
export interface DecodeOptions {
  /** Refuse images with more pixels (width x height); default {@link DEFAULT_LIMIT_INPUT_PIXELS}. */
  limitInputPixels?: number;
}

/** Thrown when bytes cannot be turned into an image tensor; `message` is meant for people. */
export class ImageDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageDecodeError';
  }
}

/**
 * Decodes an image and returns the model input for one painting.
 *
 * Steps, in order: detect the format from content; take the first frame (GIF, multi-page TIFF);
 * apply EXIF orientation; convert to sRGB (CMYK, grayscale and ICC profiles included); flatten
 * alpha onto `spec.background`; resize to `spec.width` x `spec.height` (`fill` squashes, `cover`
 * centre-crops); emit raw RGB.
 *
 * @param input - encoded image bytes (JPEG, PNG, WebP, TIFF, GIF, AVIF, HEIF).
 * @param spec - the model's preprocessing (read it from the model card).
 * @param options - `limitInputPixels`: see {@link DEFAULT_LIMIT_INPUT_PIXELS}.
 * @returns `[spec.height, spec.width, 3] uint8` HWC sRGB, row-major (length H*W*3).
 * @throws ImageDecodeError for empty input, unrecognised or unsupported formats, images above
 *   `limitInputPixels` (the message gives their size), headers sharp cannot read (with sharp's
 *   reason), and corrupt or truncated data (sharp is run with `failOn: 'truncated'` so a cut-off
 *   JPEG is an error, not a grey-padded image).
 * @example
 * const pixels = await decodeImage(await readFile('monet.jpg'), card.preprocessing);
 */
export async function decodeImage(input: Uint8Array, spec: PreprocessSpec, options: DecodeOptions = {}): Promise<Uint8Array> {
  const limitInputPixels = expectInteger('limitInputPixels', options.limitInputPixels ?? DEFAULT_LIMIT_INPUT_PIXELS);
  if (input.length === 0) throw new ImageDecodeError('Expected image bytes but received an empty file (0 bytes)');
  let format: string | undefined;
  try {
    format = (await sharp(input, { limitInputPixels }).metadata()).format;
  } catch (err) {
    throw await headerError(input, (err as Error).message, limitInputPixels);
  }
  if (!format || !(SUPPORTED_FORMATS as readonly string[]).includes(format)) {
    throw new ImageDecodeError(`Expected an image in one of ${SUPPORTED_FORMATS.join(', ')} but received ${format ?? 'unknown'} content`);
  }
  try {
    const { data, info } = await sharp(input, { failOn: 'truncated', pages: 1, page: 0, limitInputPixels })
      .rotate()
      .toColourspace('srgb')
      .flatten({ background: spec.background })
      .resize(spec.width, spec.height, { fit: spec.fit, kernel: spec.kernel, position: 'centre' })
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== imageBytes(spec)) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${spec.width}x${spec.height}x3`);
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  } catch (err) {
    // libvips keeps one error buffer per process: under concurrent decodes the detail can be lost
    // ("Unknown error") or doubled, so the stable part of the message comes first.
    const detail = (err as Error).message.trim().split('\n')[0];
    const why = !detail || /unknown error/i.test(detail) ? 'the data is corrupt or truncated' : detail;
    throw new ImageDecodeError(`Could not decode ${format} image: ${why}`);
  }
}

/**
 * Why sharp could not read an image's header, in words people can act on. Only sharp's "unsupported
 * image format" means the bytes are not an image; anything else (pixel limit, corrupt header) is
 * passed through, since "not an image" would send people looking for the wrong problem.
 */
async function headerError(input: Uint8Array, message: string, limitInputPixels: number): Promise<ImageDecodeError> {
  const detail = message.trim().split('\n')[0].replace(/:$/, '');
  if (/unsupported image format/i.test(detail)) {
    return new ImageDecodeError(`Expected an image (${SUPPORTED_FORMATS.join(', ')}) but the content is not a recognised image format (${input.length} bytes, starts with ${hexPrefix(input)})`);
  }
  if (/pixel limit/i.test(detail)) {
    // Reading the header without the limit is cheap and says how large the image is.
    const size = await sharp(input, { limitInputPixels: false }).metadata().then((m) => `a ${m.width}x${m.height} ${m.format} image (${m.width * m.height} pixels)`, () => 'a larger image');
    return new ImageDecodeError(`Expected an image of at most ${limitInputPixels} pixels but received ${size}: ${detail}`);
  }
  return new ImageDecodeError(`Could not read the image header: ${detail || 'unknown error'} (${input.length} bytes, starts with ${hexPrefix(input)})`);
}

function hexPrefix(bytes: Uint8Array): string {
  return Buffer.from(bytes.subarray(0, 8)).toString('hex') || 'nothing';
}
