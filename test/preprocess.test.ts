/**
 * Preprocessing: what reaches the model for awkward but real inputs (EXIF orientation, alpha,
 * grayscale, CMYK, animated GIF) and clear errors for broken ones.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { decodeImage, DEFAULT_LIMIT_INPUT_PIXELS, ImageDecodeError } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS, type PreprocessSpec } from '../src/preprocess/spec.js';
import { anyPainting } from './fixtures.js';

const SMALL: PreprocessSpec = { ...DEFAULT_PREPROCESS, width: 32, height: 32 };

/** Mean RGB of a region [x0,x1) x [y0,y1) of an HWC uint8 image. */
function meanRgb(pixels: Uint8Array, width: number, x0: number, x1: number, y0: number, y1: number): number[] {
  const sum = [0, 0, 0];
  let n = 0;
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++, n++) for (let c = 0; c < 3; c++) sum[c] += pixels[(y * width + x) * 3 + c];
  return sum.map((s) => s / n);
}

/** A 64x32 image: left half red, right half blue. */
function redBlue(): ReturnType<typeof sharp> {
  const raw = Buffer.alloc(64 * 32 * 3);
  for (let y = 0; y < 32; y++) for (let x = 0; x < 64; x++) raw.set(x < 32 ? [255, 0, 0] : [0, 0, 255], (y * 64 + x) * 3);
  return sharp(raw, { raw: { width: 64, height: 32, channels: 3 } });
}

test('a real painting decodes to [224,224,3] uint8', async () => {
  const pixels = await decodeImage(await readFile(anyPainting()), DEFAULT_PREPROCESS);
  assert.equal(pixels.length, 224 * 224 * 3);
  const mean = pixels.reduce((a, b) => a + b, 0) / pixels.length;
  assert.ok(mean > 10 && mean < 245, `mean pixel ${mean} should be a real picture, not blank`);
});

test('EXIF orientation is applied: orientation 6 (rotate 90° clockwise) puts the red half on top', async () => {
  const jpeg = await redBlue().jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
  const pixels = await decodeImage(jpeg, SMALL);
  const top = meanRgb(pixels, 32, 0, 32, 2, 14);
  const bottom = meanRgb(pixels, 32, 0, 32, 18, 30);
  assert.ok(top[0] > 200 && top[2] < 60, `top should be red, got ${top}`);
  assert.ok(bottom[2] > 200 && bottom[0] < 60, `bottom should be blue, got ${bottom}`);
  // Without the EXIF tag the same pixels stay red-left / blue-right.
  const plain = await decodeImage(await redBlue().jpeg({ quality: 100 }).toBuffer(), SMALL);
  assert.ok(meanRgb(plain, 32, 2, 14, 0, 32)[0] > 200 && meanRgb(plain, 32, 18, 30, 0, 32)[2] > 200);
});

test('PNG alpha is flattened onto white', async () => {
  const rgba = Buffer.alloc(16 * 16 * 4);
  for (let i = 0; i < 16 * 16; i++) rgba.set(i < 128 ? [255, 0, 0, 0] : [255, 0, 0, 128], i * 4); // top: transparent red; bottom: half red
  const png = await sharp(rgba, { raw: { width: 16, height: 16, channels: 4 } }).png().toBuffer();
  const pixels = await decodeImage(png, { ...SMALL, width: 16, height: 16, kernel: 'nearest' });
  assert.deepEqual(meanRgb(pixels, 16, 0, 16, 0, 7).map(Math.round), [255, 255, 255]);
  const half = meanRgb(pixels, 16, 0, 16, 9, 16);
  assert.equal(Math.round(half[0]), 255);
  assert.ok(Math.abs(half[1] - 127) <= 2 && Math.abs(half[2] - 127) <= 2, `half-transparent red over white should be ~(255,127,127), got ${half}`);
});

test('grayscale becomes three equal channels', async () => {
  const gray = await sharp(await readFile(anyPainting())).toColourspace('b-w').jpeg().toBuffer();
  assert.equal((await sharp(gray).metadata()).channels, 1);
  const pixels = await decodeImage(gray, SMALL);
  assert.equal(pixels.length, 32 * 32 * 3);
  for (let i = 0; i < pixels.length; i += 3) {
    assert.ok(pixels[i] === pixels[i + 1] && pixels[i] === pixels[i + 2], `pixel ${i / 3} is not gray`);
  }
});

test('CMYK JPEG is converted to sRGB', async () => {
  const cmyk = await redBlue().toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
  assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
  const pixels = await decodeImage(cmyk, SMALL);
  const left = meanRgb(pixels, 32, 2, 14, 0, 32);
  assert.ok(left[0] > 180 && left[2] < 90, `left should stay red after CMYK round trip, got ${left}`);
});

test('animated GIF: the first frame is used', async () => {
  // Two frames stacked vertically: red then blue.
  const raw = Buffer.alloc(8 * 16 * 4);
  for (let i = 0; i < 8 * 16; i++) raw.set(i < 64 ? [255, 0, 0, 255] : [0, 0, 255, 255], i * 4);
  const gif = await sharp(raw, { raw: { width: 8, height: 16, channels: 4, pageHeight: 8 } as Parameters<typeof sharp>[1] extends { raw?: infer R } ? R : never }).gif().toBuffer();
  assert.equal((await sharp(gif).metadata()).pages, 2);
  const pixels = await decodeImage(gif, { ...SMALL, width: 8, height: 8 });
  const m = meanRgb(pixels, 8, 0, 8, 0, 8);
  assert.ok(m[0] > 200 && m[2] < 60, `first frame is red, got ${m}`);
});

test('WebP and TIFF decode to the same pixels as PNG', async () => {
  // At the model's own size (the painting is 224x224) no format-specific shrink-on-load applies.
  const source = await readFile(anyPainting());
  const reference = await decodeImage(await sharp(source).png().toBuffer(), DEFAULT_PREPROCESS);
  for (const encoded of [await sharp(source).webp({ lossless: true }).toBuffer(), await sharp(source).tiff({ compression: 'lzw' }).toBuffer()]) {
    const pixels = await decodeImage(encoded, DEFAULT_PREPROCESS);
    const maxDiff = pixels.reduce((m, v, i) => Math.max(m, Math.abs(v - reference[i])), 0);
    assert.ok(maxDiff <= 1, `lossless re-encodings must decode to the same pixels (max diff ${maxDiff})`);
  }
});

test('fill squashes the whole image; cover crops the centre', async () => {
  // 96x32: red | green | blue thirds. Squashed to 32x32 all three remain; cover keeps only green.
  const raw = Buffer.alloc(96 * 32 * 3);
  for (let y = 0; y < 32; y++) for (let x = 0; x < 96; x++) raw.set(x < 32 ? [255, 0, 0] : x < 64 ? [0, 255, 0] : [0, 0, 255], (y * 96 + x) * 3);
  const png = await sharp(raw, { raw: { width: 96, height: 32, channels: 3 } }).png().toBuffer();
  const filled = await decodeImage(png, SMALL);
  assert.ok(meanRgb(filled, 32, 0, 8, 0, 32)[0] > 200 && meanRgb(filled, 32, 24, 32, 0, 32)[2] > 200);
  const covered = await decodeImage(png, { ...SMALL, fit: 'cover' });
  const m = meanRgb(covered, 32, 0, 32, 0, 32);
  assert.ok(m[1] > 200 && m[0] < 30 && m[2] < 30, `cover keeps the green centre, got ${m}`);
});

test('truncated JPEG is an error, not a grey-padded image', async () => {
  const bytes = await readFile(anyPainting());
  await assert.rejects(decodeImage(bytes.subarray(0, Math.floor(bytes.length * 0.4)), SMALL), (err: Error) => {
    assert.ok(err instanceof ImageDecodeError);
    assert.match(err.message, /^Could not decode jpeg image: /);
    return true;
  });
});

test('empty, non-image and unsupported content get clear errors', async () => {
  await assert.rejects(decodeImage(new Uint8Array(0), SMALL), /empty file \(0 bytes\)/);
  await assert.rejects(decodeImage(new TextEncoder().encode('title,artist\nWater Lilies,Monet\n'), SMALL), /not a recognised image format/);
  const svg = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>');
  await assert.rejects(decodeImage(svg, SMALL), (err: Error) => err instanceof ImageDecodeError && /svg|not a recognised/.test(err.message));
});

/** CRC-32 of PNG chunks (zlib.crc32 needs Node >= 20.15). */
function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/**
 * A white 1-bit greyscale PNG of any size, built by hand: sharp would take ~10 s to encode a
 * 17000 x 17000 image, this takes ~0.1 s and ~40 MB, and the file is ~200 KB.
 */
function whitePng(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), body.length + 4);
    return out;
  };
  const header = Buffer.alloc(13); // bit depth 1, colour type 0 (grey), no interlace
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 1;
  const row = Buffer.alloc(1 + Math.ceil(width / 8), 0xff);
  row[0] = 0; // filter: none
  const pixels = deflateSync(Buffer.concat(Array.from({ length: height }, () => row)), { level: 1 });
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), chunk('IHDR', header), chunk('IDAT', pixels), chunk('IEND', Buffer.alloc(0))]);
}

test('a 17000x17000 museum-scale image (above sharp\'s default 268 Mpx limit) decodes', async () => {
  assert.ok(17000 * 17000 > 268_402_689 && 17000 * 17000 < DEFAULT_LIMIT_INPUT_PIXELS);
  const png = whitePng(17000, 17000);
  const pixels = await decodeImage(png, SMALL);
  assert.ok(pixels.every((v) => v === 255), 'white all over');
  // Still above a lower limit: the message gives sharp's reason and the size, not "not an image".
  await assert.rejects(decodeImage(png, SMALL, { limitInputPixels: 100_000_000 }), (err: Error) => {
    assert.ok(err instanceof ImageDecodeError);
    assert.equal(err.message, 'Expected an image of at most 100000000 pixels but received a 17000x17000 png image (289000000 pixels): Input image exceeds pixel limit');
    return true;
  });
});

test('a real painting above a lowered pixel limit, or with a corrupt header, says why (not "not an image")', async () => {
  const bytes = await readFile(anyPainting());
  const { width, height } = await sharp(bytes).metadata();
  await assert.rejects(decodeImage(bytes, SMALL, { limitInputPixels: 1000 }), { message: `Expected an image of at most 1000 pixels but received a ${width}x${height} jpeg image (${width * height} pixels): Input image exceeds pixel limit` });
  const header = (await sharp(bytes).png().toBuffer()).subarray(0, 40);
  await assert.rejects(decodeImage(header, SMALL), (err: Error) => {
    assert.ok(err instanceof ImageDecodeError);
    assert.match(err.message, /^Could not read the image header: Input buffer has corrupt header \(40 bytes, starts with 89504e470d0a1a0a\)$/);
    return true;
  });
  await assert.rejects(decodeImage(bytes, SMALL, { limitInputPixels: 0 }), /Expected positive integer for limitInputPixels/);
});
