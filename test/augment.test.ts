/**
 * training/augment.ts: Keras ImageDataGenerator-style affine augmentation on decoded images.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import seedrandom from 'seedrandom';
import { decodeImage } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { DEFAULT_AUGMENT, affineMatrix, applyAffine, augmentView, augmentViews, checkAugmentConfig, randomAffine } from '../training/augment.js';
import { paintingOf } from './fixtures.js';

/** A `[h,w,3]` image whose every pixel is distinct: R = row, G = col, B = (row * 7 + col) % 256. */
function pattern(h: number, w: number): Uint8Array {
  const out = new Uint8Array(h * w * 3);
  for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) out.set([r, c, (r * 7 + c) % 256], (r * w + c) * 3);
  return out;
}

const px = (img: Uint8Array, w: number, r: number, c: number) => Array.from(img.subarray((r * w + c) * 3, (r * w + c) * 3 + 3));

test('identity parameters return the same pixels (a copy)', () => {
  const img = pattern(9, 12);
  const out = applyAffine(img, 9, 12, {});
  assert.deepEqual(out, img);
  assert.notEqual(out, img);
  // Explicit neutral values too.
  assert.deepEqual(applyAffine(img, 9, 12, { theta: 0, tx: 0, ty: 0, shear: 0, zx: 1, zy: 1 }), img);
});

test('horizontal flip mirrors columns exactly, and twice is the identity', () => {
  const img = pattern(5, 7);
  const out = applyAffine(img, 5, 7, { flipHorizontal: true });
  for (let r = 0; r < 5; r++) for (let c = 0; c < 7; c++) assert.deepEqual(px(out, 7, r, c), px(img, 7, r, 6 - c));
  assert.deepEqual(applyAffine(out, 5, 7, { flipHorizontal: true }), img);
});

test('rotation by 90 degrees of a square image is an exact pixel permutation (positive theta turns content clockwise, as in Keras)', () => {
  const n = 8;
  const img = pattern(n, n);
  const out = applyAffine(img, n, n, { theta: 90 });
  // Inverse map of R(90°) about the centre: output (r, c) samples input (n-1-c, r): the input's bottom-left
  // corner lands top-left, its top row becomes the right column (a clockwise turn on screen).
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) assert.deepEqual(px(out, n, r, c), px(img, n, n - 1 - c, r), `pixel (${r},${c})`);
  // Four quarter turns come back to the start.
  let x = img;
  for (let i = 0; i < 4; i++) x = applyAffine(x, n, n, { theta: 90 });
  assert.deepEqual(x, img);
});

test('shifts move content by whole pixels and fill with the nearest edge; reflect mirrors', () => {
  const img = pattern(6, 6);
  const out = applyAffine(img, 6, 6, { ty: 2 });
  // Output column c samples input column c + 2: content moves left by 2; the last columns repeat column 5.
  for (let r = 0; r < 6; r++) {
    for (let c = 0; c < 4; c++) assert.deepEqual(px(out, 6, r, c), px(img, 6, r, c + 2));
    assert.deepEqual(px(out, 6, r, 4), px(img, 6, r, 5));
    assert.deepEqual(px(out, 6, r, 5), px(img, 6, r, 5));
  }
  const refl = applyAffine(img, 6, 6, { ty: 2 }, 'reflect');
  // scipy 'reflect': ... | 0 1 2 3 4 5 | 5 4 ...: input column 6 -> 5, 7 -> 4.
  for (let r = 0; r < 6; r++) {
    assert.deepEqual(px(refl, 6, r, 4), px(img, 6, r, 5));
    assert.deepEqual(px(refl, 6, r, 5), px(img, 6, r, 4));
  }
});

test('zoom > 1 samples a larger area about the centre (content appears smaller), bilinear between pixels', () => {
  const m = affineMatrix({ zx: 2, zy: 2 }, 5, 5);
  // Centre (2,2) is fixed; output (0,0) samples input (-2,-2).
  assert.deepEqual(m.map((v) => Math.round(v * 1e9) / 1e9), [2, 0, -2, 0, 2, -2]);
  const img = new Uint8Array(1 * 2 * 3);
  img.set([0, 0, 0, 100, 100, 100]);
  // Zoom 0.5 about column centre 0.5: output col 0 samples 0.25, col 1 samples 0.75.
  const out = applyAffine(img, 1, 2, { zy: 0.5 });
  assert.deepEqual(Array.from(out), [25, 25, 25, 75, 75, 75]);
});

test('shear follows keras-preprocessing: [[1, -sin s], [0, cos s]]', () => {
  const s = 30;
  const m = affineMatrix({ shear: s }, 11, 11);
  const rad = (s * Math.PI) / 180;
  assert.ok(Math.abs(m[0] - 1) < 1e-12 && Math.abs(m[1] + Math.sin(rad)) < 1e-12 && Math.abs(m[3]) < 1e-12 && Math.abs(m[4] - Math.cos(rad)) < 1e-12);
  // About the centre: the centre maps to itself.
  assert.ok(Math.abs(m[0] * 5 + m[1] * 5 + m[2] - 5) < 1e-9 && Math.abs(m[3] * 5 + m[4] * 5 + m[5] - 5) < 1e-9);
});

test('random draws stay within the configured ranges and are reproducible from the seed', () => {
  const rng = seedrandom('t');
  for (let i = 0; i < 500; i++) {
    const p = randomAffine(DEFAULT_AUGMENT, 224, 224, rng);
    assert.ok(Math.abs(p.theta!) <= 20 && Math.abs(p.tx!) <= 22.4 && Math.abs(p.ty!) <= 22.4 && Math.abs(p.shear!) <= 5);
    assert.ok(p.zx! >= 0.9 && p.zx! <= 1.1 && p.zy! >= 0.9 && p.zy! <= 1.1);
  }
  const a = randomAffine(DEFAULT_AUGMENT, 224, 224, seedrandom('x'));
  const b = randomAffine(DEFAULT_AUGMENT, 224, 224, seedrandom('x'));
  assert.deepEqual(a, b);
  const none = randomAffine({ ...DEFAULT_AUGMENT, rotation: 0, widthShift: 0, heightShift: 0, shear: 0, zoom: 0, horizontalFlip: false }, 224, 224, seedrandom('y'));
  assert.deepEqual(applyAffine(pattern(4, 4), 4, 4, none), pattern(4, 4));
});

test('augmented views of a real painting: deterministic per (seed, key, view), different across views, still close to the image', async () => {
  const pixels = await decodeImage(await readFile(paintingOf('claude-monet')), DEFAULT_PREPROCESS);
  const { images, params } = augmentViews(pixels, 224, 224, 3, DEFAULT_AUGMENT, 42, 'k');
  assert.equal(images.length, 3);
  assert.deepEqual(augmentView(pixels, 224, 224, DEFAULT_AUGMENT, 42, 'k', 1).image, images[1]);
  assert.notDeepEqual(images[0], images[1]);
  assert.notDeepEqual(augmentView(pixels, 224, 224, DEFAULT_AUGMENT, 43, 'k', 1).params, params[1]);
  // Mean colour is nearly preserved by a mild affine transform.
  const mean = (x: Uint8Array) => x.reduce((a, b) => a + b, 0) / x.length;
  for (const img of images) assert.ok(Math.abs(mean(img) - mean(pixels)) < 15, `mean ${mean(img)} vs ${mean(pixels)}`);
});

test('bad arguments name the parameter, the expectation and the value', () => {
  assert.throws(() => applyAffine(new Uint8Array(10), 2, 2, {}), /Expected 2x2x3 = 12 bytes \(HWC uint8\) for pixels but received "10 bytes"/);
  assert.throws(() => checkAugmentConfig({ ...DEFAULT_AUGMENT, rotation: -1 }), /for augment\.rotation but received -1/);
  assert.throws(() => checkAugmentConfig({ ...DEFAULT_AUGMENT, fill: 'wrap' as never }), /'nearest' or 'reflect' for augment\.fill but received "wrap"/);
});
