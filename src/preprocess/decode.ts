/**
 * Image decoding with sharp: bytes in any supported format to the model's `[H,W,3] uint8` tensor.
 */
import sharp from 'sharp';
import type { PreprocessSpec } from './spec.js';
import { imageBytes } from './spec.js';

/** Raster formats accepted, as sharp's `metadata().format` names them (detected from content). */
export const SUPPORTED_FORMATS = ['jpeg', 'png', 'webp', 'tiff', 'gif', 'avif', 'heif'] as const;

/** File extensions an archive walk takes as images (case-insensitive). */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif', '.heic', '.heif'];

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
 * @returns `[spec.height, spec.width, 3] uint8` HWC sRGB, row-major (length H*W*3).
 * @throws ImageDecodeError for empty input, unrecognised or unsupported formats, and corrupt or
 *   truncated data (sharp is run with `failOn: 'truncated'` so a cut-off JPEG is an error, not a
 *   grey-padded image).
 * @example
 * const pixels = await decodeImage(await readFile('monet.jpg'), card.preprocessing);
 */
export async function decodeImage(input: Uint8Array, spec: PreprocessSpec): Promise<Uint8Array> {
  if (input.length === 0) throw new ImageDecodeError('Expected image bytes but received an empty file (0 bytes)');
  let format: string | undefined;
  try {
    format = (await sharp(input).metadata()).format;
  } catch {
    throw new ImageDecodeError(`Expected an image (${SUPPORTED_FORMATS.join(', ')}) but the content is not a recognised image format (${input.length} bytes, starts with ${hexPrefix(input)})`);
  }
  if (!format || !(SUPPORTED_FORMATS as readonly string[]).includes(format)) {
    throw new ImageDecodeError(`Expected an image in one of ${SUPPORTED_FORMATS.join(', ')} but received ${format ?? 'unknown'} content`);
  }
  try {
    const { data, info } = await sharp(input, { failOn: 'truncated', pages: 1, page: 0 })
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

function hexPrefix(bytes: Uint8Array): string {
  return Buffer.from(bytes.subarray(0, 8)).toString('hex') || 'nothing';
}
