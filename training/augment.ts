/**
 * Seeded random affine augmentation of decoded images, with the semantics of Keras'
 * `ImageDataGenerator` (keras-preprocessing 1.1.2, `image/affine_transformations.py`,
 * `apply_affine_transform`, and `image/image_data_generator.py`, `get_random_transform` /
 * `apply_transform`):
 *
 * - the transform maps each *output* pixel `(row, col)` to an *input* position (inverse warping, as
 *   `scipy.ndimage.affine_transform` does): `M = R(theta) · T(tx, ty) · S(shear) · Z(zx, zy)`, taken
 *   about the image centre, in `(row, col)` coordinates;
 *   R = `[[cos θ, -sin θ], [sin θ, cos θ]]`, T shifts by `tx` rows and `ty` columns,
 *   S = `[[1, -sin s], [0, cos s]]`, Z = `diag(zx, zy)` (zoom > 1 samples a larger input area, so the
 *   content appears smaller, as in Keras);
 * - random draws: `theta ~ U(-rotation, rotation)` degrees, `tx ~ U(-heightShift, heightShift) · H`,
 *   `ty ~ U(-widthShift, widthShift) · W`, `shear ~ U(-shear, shear)` degrees (keras-preprocessing
 *   takes `shear_range` in degrees), `zx, zy ~ U(1 - zoom, 1 + zoom)` independently, horizontal flip
 *   with probability 1/2, applied after the affine warp;
 * - interpolation: bilinear (`order=1`), then rounded to uint8; `fill: 'nearest'` (Keras' default:
 *   edge pixels repeated) or `'reflect'` (scipy's half-sample symmetric `d c b a | a b c d`).
 *
 * One deliberate deviation: the centre is the true pixel centre `((H-1)/2, (W-1)/2)`, whereas
 * keras-preprocessing's `transform_matrix_offset_center` uses `H/2 + 0.5` (one pixel off-centre), so
 * here a 90° rotation of a square image is an exact permutation of its pixels.
 *
 * Images are the output of `src/preprocess/decode.ts` (`[H,W,3] uint8` HWC sRGB, row-major): the
 * augmentation works on what the model sees, so preprocessing stays defined in one place.
 */
import seedrandom from 'seedrandom';
import { expectInteger, expectNumber, invalidParameterError } from '../src/errors.js';

/** One affine transform, Keras `apply_affine_transform` parameters (all optional: identity). */
export interface AffineParams {
  /** Rotation in degrees; positive turns the content clockwise as displayed (rows pointing down), as Keras does; default 0. */
  theta?: number;
  /** Shift in rows (input rows sampled at `row + tx`, so content moves up for tx > 0); default 0. */
  tx?: number;
  /** Shift in columns (content moves left for ty > 0); default 0. */
  ty?: number;
  /** Shear angle in degrees; default 0. */
  shear?: number;
  /** Zoom along rows (> 1: content appears smaller); default 1. */
  zx?: number;
  /** Zoom along columns; default 1. */
  zy?: number;
  /** Mirror left-right after the affine warp; default false. */
  flipHorizontal?: boolean;
}

/** How positions outside the input are filled. */
export type FillMode = 'nearest' | 'reflect';

/** Ranges of the random augmentation (Keras `ImageDataGenerator` arguments). */
export interface AugmentConfig {
  /** `rotation_range`: max |theta| in degrees. */
  rotation: number;
  /** `width_shift_range`: max |shift| as a fraction of the width. */
  widthShift: number;
  /** `height_shift_range`: max |shift| as a fraction of the height. */
  heightShift: number;
  /** `shear_range`: max |shear| in degrees. */
  shear: number;
  /** `zoom_range`: zoom drawn from `[1 - zoom, 1 + zoom]` per axis. */
  zoom: number;
  /** `horizontal_flip`. */
  horizontalFlip: boolean;
  /** `fill_mode`. */
  fill: FillMode;
}

/**
 * Defaults for paintings: milder than the slides (Chollet, Deep Learning with Python §5.2: rotation 40,
 * shifts 0.2, zoom 0.2, shear 0.2, flips), because a painting is a framed composition, not a
 * photographed object: large rotations and shifts mostly paint in edge pixels. Shear 5° (the slides'
 * 0.2 is in degrees in keras-preprocessing, i.e. nothing).
 */
export const DEFAULT_AUGMENT: AugmentConfig = {
  rotation: 20,
  widthShift: 0.1,
  heightShift: 0.1,
  shear: 5,
  zoom: 0.1,
  horizontalFlip: true,
  fill: 'nearest',
};

/** Checks an augmentation config; throws naming the field, expected range and received value. */
export function checkAugmentConfig(config: AugmentConfig): AugmentConfig {
  expectNumber('augment.rotation', config.rotation, 0, 180);
  expectNumber('augment.widthShift', config.widthShift, 0, 1);
  expectNumber('augment.heightShift', config.heightShift, 0, 1);
  expectNumber('augment.shear', config.shear, 0, 89);
  expectNumber('augment.zoom', config.zoom, 0, 0.99);
  if (typeof config.horizontalFlip !== 'boolean') throw invalidParameterError('augment.horizontalFlip', 'boolean', config.horizontalFlip);
  if (config.fill !== 'nearest' && config.fill !== 'reflect') throw invalidParameterError('augment.fill', "'nearest' or 'reflect'", config.fill);
  return config;
}

/**
 * Draws one random transform, in the order keras-preprocessing's `get_random_transform` draws
 * (theta, tx, ty, shear, zx/zy, flip), from a seeded generator.
 *
 * @param height - image height in pixels (shifts are fractions of it).
 * @param width - image width in pixels.
 * @param random - uniform `[0,1)` generator, e.g. `seedrandom('…')`.
 */
export function randomAffine(config: AugmentConfig, height: number, width: number, random: () => number): AffineParams {
  const u = (lo: number, hi: number) => lo + (hi - lo) * random();
  const theta = config.rotation ? u(-config.rotation, config.rotation) : 0;
  const tx = config.heightShift ? u(-config.heightShift, config.heightShift) * height : 0;
  const ty = config.widthShift ? u(-config.widthShift, config.widthShift) * width : 0;
  const shear = config.shear ? u(-config.shear, config.shear) : 0;
  const zx = config.zoom ? u(1 - config.zoom, 1 + config.zoom) : 1;
  const zy = config.zoom ? u(1 - config.zoom, 1 + config.zoom) : 1;
  const flipHorizontal = config.horizontalFlip ? random() < 0.5 : false;
  return { theta, tx, ty, shear, zx, zy, flipHorizontal };
}

/**
 * The 2x3 inverse map `[a, b, c; d, e, f]`: output `(r, c)` samples input
 * `(a·r + b·c + c0, d·r + e·c + f0)`, about the pixel centre (see module doc).
 */
export function affineMatrix(params: AffineParams, height: number, width: number): [number, number, number, number, number, number] {
  const rad = (deg: number) => (deg * Math.PI) / 180;
  const t = rad(params.theta ?? 0);
  const s = rad(params.shear ?? 0);
  // 3x3 as row-major arrays; compose R · T · S · Z like keras-preprocessing.
  const mul = (a: number[], b: number[]): number[] => {
    const o = new Array<number>(9).fill(0);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 3; k++) o[i * 3 + j] += a[i * 3 + k] * b[k * 3 + j];
    return o;
  };
  const R = [Math.cos(t), -Math.sin(t), 0, Math.sin(t), Math.cos(t), 0, 0, 0, 1];
  const T = [1, 0, params.tx ?? 0, 0, 1, params.ty ?? 0, 0, 0, 1];
  const S = [1, -Math.sin(s), 0, 0, Math.cos(s), 0, 0, 0, 1];
  const Z = [params.zx ?? 1, 0, 0, 0, params.zy ?? 1, 0, 0, 0, 1];
  const oR = (height - 1) / 2;
  const oC = (width - 1) / 2;
  const offset = [1, 0, oR, 0, 1, oC, 0, 0, 1];
  const reset = [1, 0, -oR, 0, 1, -oC, 0, 0, 1];
  const m = mul(mul(offset, mul(mul(mul(R, T), S), Z)), reset);
  return [m[0], m[1], m[2], m[3], m[4], m[5]];
}

/** Maps a coordinate outside `[0, n-1]` into it by the fill mode. */
function fold(x: number, n: number, fill: FillMode): number {
  if (x >= 0 && x <= n - 1) return x;
  if (fill === 'nearest' || n === 1) return x < 0 ? 0 : n - 1;
  // scipy 'reflect' (half-sample symmetric): period 2n about -0.5 and n - 0.5.
  const period = 2 * n;
  let y = (x + 0.5) % period;
  if (y < 0) y += period;
  y -= 0.5;
  if (y > n - 0.5) y = period - 1 - y;
  return Math.min(Math.max(y, 0), n - 1);
}

/**
 * Warps one image by `params` (bilinear, `fill` outside), then flips it if asked.
 *
 * @param pixels - `[height, width, 3] uint8` HWC, row-major (decodeImage's output).
 * @returns a new `[height, width, 3] uint8` HWC image; `pixels` is not modified.
 * @throws Error when `pixels.length !== height * width * 3`.
 */
export function applyAffine(pixels: Uint8Array, height: number, width: number, params: AffineParams, fill: FillMode = 'nearest'): Uint8Array {
  expectInteger('height', height);
  expectInteger('width', width);
  if (pixels.length !== height * width * 3) {
    throw invalidParameterError('pixels', `${height}x${width}x3 = ${height * width * 3} bytes (HWC uint8)`, `${pixels.length} bytes`);
  }
  const out = new Uint8Array(pixels.length);
  const identity = !params.theta && !params.tx && !params.ty && !params.shear && (params.zx ?? 1) === 1 && (params.zy ?? 1) === 1;
  if (identity) {
    out.set(pixels);
  } else {
    const [a, b, c, d, e, f] = affineMatrix(params, height, width);
    for (let r = 0; r < height; r++) {
      for (let col = 0; col < width; col++) {
        const y = fold(a * r + b * col + c, height, fill);
        const x = fold(d * r + e * col + f, width, fill);
        // Snap to the grid when within float noise of a pixel (exact permutations stay exact).
        const ys = Math.abs(y - Math.round(y)) < 1e-6 ? Math.round(y) : y;
        const xs = Math.abs(x - Math.round(x)) < 1e-6 ? Math.round(x) : x;
        const y0 = Math.floor(ys);
        const x0 = Math.floor(xs);
        const y1 = Math.min(y0 + 1, height - 1);
        const x1 = Math.min(x0 + 1, width - 1);
        const wy = ys - y0;
        const wx = xs - x0;
        const o = (r * width + col) * 3;
        const p00 = (y0 * width + x0) * 3;
        const p01 = (y0 * width + x1) * 3;
        const p10 = (y1 * width + x0) * 3;
        const p11 = (y1 * width + x1) * 3;
        for (let ch = 0; ch < 3; ch++) {
          const top = pixels[p00 + ch] * (1 - wx) + pixels[p01 + ch] * wx;
          const bottom = pixels[p10 + ch] * (1 - wx) + pixels[p11 + ch] * wx;
          out[o + ch] = Math.round(top * (1 - wy) + bottom * wy);
        }
      }
    }
  }
  if (params.flipHorizontal) flipHorizontalInPlace(out, height, width);
  return out;
}

/** Mirrors an `[H,W,3]` image left-right in place. */
export function flipHorizontalInPlace(pixels: Uint8Array, height: number, width: number): void {
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width >> 1; c++) {
      const a = (r * width + c) * 3;
      const b = (r * width + (width - 1 - c)) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const t = pixels[a + ch];
        pixels[a + ch] = pixels[b + ch];
        pixels[b + ch] = t;
      }
    }
  }
}

/**
 * One augmented view of an image, reproducible from `(seed, key, view)`: the transform is drawn from
 * `seedrandom(\`augment:${seed}:${key}:${view}\`)`, so a view does not depend on how many other views
 * or images were drawn (the activation cache keys on it).
 *
 * @param pixels - `[height, width, 3] uint8` HWC.
 * @param key - identifies the image, e.g. the sha256 of its file bytes.
 */
export function augmentView(pixels: Uint8Array, height: number, width: number, config: AugmentConfig, seed: number, key: string, view: number): { image: Uint8Array; params: AffineParams } {
  const params = randomAffine(config, height, width, seedrandom(`augment:${seed}:${key}:${view}`));
  return { image: applyAffine(pixels, height, width, params, config.fill), params };
}

/** Views `0..views-1` of {@link augmentView}. */
export function augmentViews(
  pixels: Uint8Array,
  height: number,
  width: number,
  views: number,
  config: AugmentConfig,
  seed: number,
  key: string,
): { images: Uint8Array[]; params: AffineParams[] } {
  expectInteger('views', views);
  const images: Uint8Array[] = [];
  const params: AffineParams[] = [];
  for (let v = 0; v < views; v++) {
    const one = augmentView(pixels, height, width, config, seed, key, v);
    images.push(one.image);
    params.push(one.params);
  }
  return { images, params };
}
