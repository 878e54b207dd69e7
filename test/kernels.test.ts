/**
 * The WASM gradient kernels of training/kernels against references:
 * - the pure-JS CPU backend's own kernels (`tf.setBackend('cpu')`) on seeded random inputs across
 *   strides, padding (valid, same, numeric, explicit), dilations, channel counts, batch sizes,
 *   rectangular filters and NCHW;
 * - a float64 numerical gradient of a plain-JS convolution, for conv2d and depthwise conv2d;
 * - the native WASM kernels a training step uses (`Conv2DBackpropInput`, `MaxPoolGrad`,
 *   `AvgPoolGrad`) against the CPU backend as well.
 *
 * Tolerance (the same for every kernel, stated once): each output element is a sum of K products
 * accumulated in float32 in a different order by each backend, so the two results may differ by
 * about K·ε·Σ|products| (ε = 2^-24). We allow |wasm − cpu| ≤ 2^-14 · Σ|products| + 1e-7 per element
 * (Σ|products| computed exactly by running the CPU kernel on |inputs|); 2^-14 = 1024 ε covers K up
 * to ~1000 in the worst case, while a wrong index or a missing tap gives an error of the order of a
 * whole product, i.e. orders of magnitude above the bound. The observed worst ratio is printed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { registerWasmGradientKernels, unregisterWasmGradientKernels, WASM_GRADIENT_KERNELS } from '../training/kernels/index.js';

type Shape = number[];
interface Input {
  data: Float32Array;
  shape: Shape;
}
type Attrs = Record<string, unknown>;

const REL = 2 ** -14;
const ABS = 1e-7;

function random(shape: Shape, seed: string): Input {
  const rng = seedrandom(seed);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng() * 2 - 1;
  return { data, shape };
}

function abs(input: Input): Input {
  return { data: input.data.map(Math.abs), shape: input.shape };
}

/** Runs one kernel on a backend and returns its output values; checks nothing leaks. */
async function run(backend: string, kernelName: string, inputs: Record<string, Input>, attrs: Attrs): Promise<{ values: Float32Array; shape: Shape }> {
  assert.ok(await tf.setBackend(backend), `backend ${backend}`);
  const before = tf.memory().numTensors;
  const tensors = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
  const out = tf.engine().runKernel(kernelName, tensors, attrs as tf.NamedAttrMap) as tf.Tensor;
  const values = (await out.data()) as Float32Array;
  const shape = out.shape;
  tf.dispose([out, ...Object.values(tensors)]);
  assert.equal(tf.memory().numTensors, before, `${kernelName} on ${backend} leaked tensors`);
  return { values, shape };
}

let worst = 0;

/** Compares the WASM kernel with the CPU kernel under the stated tolerance. */
type Reference = (inputs: Record<string, Input>) => { values: Float32Array | Float64Array; shape: Shape };

/**
 * Compares the WASM kernel with a reference under the stated tolerance: the CPU backend's kernel,
 * or `reference` (float64 plain JS) where the CPU kernel itself is wrong.
 */
async function compare(kernelName: string, inputs: Record<string, Input>, absInputs: Record<string, Input>, attrs: Attrs, label: string, reference?: Reference): Promise<void> {
  const cpu = reference ? reference(inputs) : await run('cpu', kernelName, inputs, attrs);
  const bound = reference ? reference(absInputs) : await run('cpu', kernelName, absInputs, attrs);
  const wasm = await run('wasm', kernelName, inputs, attrs);
  assert.deepEqual(wasm.shape, cpu.shape, `${label}: shape`);
  for (let i = 0; i < cpu.values.length; i++) {
    const err = Math.abs(wasm.values[i] - cpu.values[i]);
    const tol = REL * bound.values[i] + ABS;
    worst = Math.max(worst, err / tol);
    if (!(err <= tol)) assert.fail(`${label}: element ${i} wasm ${wasm.values[i]} cpu ${cpu.values[i]} (|diff| ${err.toExponential(2)} > tol ${tol.toExponential(2)})`);
  }
}

interface ConvCase {
  x: Shape; // NHWC (converted for NCHW cases)
  filter: Shape;
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | number[][];
  dataFormat?: 'NHWC' | 'NCHW';
}

const CONV_CASES: ConvCase[] = [
  { x: [2, 7, 7, 3], filter: [3, 3, 3, 4], strides: 1, pad: 'valid' },
  { x: [2, 7, 7, 3], filter: [3, 3, 3, 4], strides: 1, pad: 'same' },
  { x: [1, 9, 8, 2], filter: [3, 3, 2, 5], strides: 2, pad: 'valid' },
  { x: [1, 9, 8, 2], filter: [3, 3, 2, 5], strides: 2, pad: 'same' },
  { x: [3, 10, 11, 1], filter: [2, 3, 1, 2], strides: [1, 2], pad: 'same' },
  { x: [2, 11, 10, 4], filter: [3, 2, 4, 3], strides: 3, pad: 'valid' },
  { x: [1, 8, 8, 5], filter: [5, 5, 5, 7], strides: 1, pad: 'same' },
  { x: [2, 6, 7, 3], filter: [3, 3, 3, 2], strides: 2, pad: 1 },
  { x: [2, 6, 7, 3], filter: [3, 3, 3, 2], strides: 1, pad: [[0, 0], [2, 0], [1, 3], [0, 0]] },
  { x: [2, 7, 6, 3], filter: [3, 3, 3, 4], strides: 2, pad: 'same', dataFormat: 'NCHW' },
  { x: [4, 16, 16, 8], filter: [3, 3, 8, 16], strides: 1, pad: 'valid' },
];

function convOut(c: ConvCase): Shape {
  const info = tf.backend_util.computeConv2DInfo(c.x as [number, number, number, number], c.filter as [number, number, number, number], c.strides, 1, c.pad as 'valid', undefined, false, 'channelsLast');
  return info.outShape;
}

const nchw = (s: Shape): Shape => [s[0], s[3], s[1], s[2]];
const fmtCase = (c: ConvCase) => `x ${c.x} f ${c.filter} s ${c.strides} pad ${JSON.stringify(c.pad)} ${c.dataFormat ?? 'NHWC'}`;

test('registerWasmGradientKernels registers the missing kernels once', async () => {
  await import('@tensorflow/tfjs-backend-wasm');
  assert.ok(await tf.setBackend('wasm'));
  unregisterWasmGradientKernels();
  assert.equal(tf.getKernel('Conv2DBackpropFilter', 'wasm'), undefined, 'tfjs-backend-wasm 4.22 lacks Conv2DBackpropFilter');
  assert.deepEqual(registerWasmGradientKernels(), ['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'DepthwiseConv2dNativeBackpropFilter', 'DepthwiseConv2dNativeBackpropInput', 'MaxPoolGrad']);
  assert.deepEqual(registerWasmGradientKernels(), []);
  for (const k of WASM_GRADIENT_KERNELS) assert.equal(tf.getKernel(k.config.kernelName, 'wasm'), k.config);
});

test('Conv2DBackpropFilter (supplied) matches the CPU backend', async () => {
  registerWasmGradientKernels();
  for (const [i, c] of CONV_CASES.entries()) {
    const nhwcDy = convOut(c);
    const f = c.dataFormat === 'NCHW' ? nchw : (s: Shape) => s;
    const x = random(f(c.x), `fx${i}`);
    const dy = random(f(nhwcDy), `fdy${i}`);
    const attrs = { strides: c.strides, pad: c.pad, dataFormat: c.dataFormat ?? 'NHWC', filterShape: c.filter };
    await compare('Conv2DBackpropFilter', { x, dy }, { x: abs(x), dy: abs(dy) }, attrs, `Conv2DBackpropFilter ${fmtCase(c)}`);
  }
});

test('Conv2DBackpropInput (supplied, and the native WASM one) matches the CPU backend', async () => {
  for (const variant of ['supplied', 'native'] as const) {
    unregisterWasmGradientKernels();
    registerWasmGradientKernels({ replaceSlowNative: variant === 'supplied' });
    for (const [i, c] of CONV_CASES.entries()) {
      if (variant === 'native' && c.dataFormat === 'NCHW') continue; // the native kernel supports it too, but once is enough
      const f = c.dataFormat === 'NCHW' ? nchw : (s: Shape) => s;
      const dy = random(f(convOut(c)), `idy${i}`);
      const filter = random(c.filter, `iw${i}`);
      const attrs = { strides: c.strides, pad: c.pad, dataFormat: c.dataFormat ?? 'NHWC', inputShape: f(c.x) };
      await compare('Conv2DBackpropInput', { dy, filter }, { dy: abs(dy), filter: abs(filter) }, attrs, `Conv2DBackpropInput (${variant}) ${fmtCase(c)}`);
    }
  }
  registerWasmGradientKernels();
});

interface DepthwiseCase {
  x: Shape;
  filter: Shape;
  strides: number | [number, number];
  dilations: number | [number, number];
  pad: 'valid' | 'same' | number;
}

const DEPTHWISE_CASES: DepthwiseCase[] = [
  { x: [2, 7, 7, 3], filter: [3, 3, 3, 1], strides: 1, dilations: 1, pad: 'same' },
  { x: [2, 7, 7, 3], filter: [3, 3, 3, 1], strides: 1, dilations: 1, pad: 'valid' },
  { x: [1, 9, 8, 4], filter: [3, 3, 4, 1], strides: 2, dilations: 1, pad: 'same' },
  { x: [2, 9, 10, 2], filter: [3, 2, 2, 3], strides: [2, 1], dilations: 1, pad: 'valid' },
  { x: [1, 10, 9, 3], filter: [3, 3, 3, 2], strides: 1, dilations: 2, pad: 'same' },
  { x: [1, 11, 11, 2], filter: [2, 3, 2, 1], strides: 1, dilations: [2, 3], pad: 'valid' },
  { x: [3, 8, 8, 6], filter: [5, 5, 6, 1], strides: 3, dilations: 1, pad: 2 },
];

function depthwiseOut(c: DepthwiseCase): Shape {
  return tf.backend_util.computeConv2DInfo(c.x as [number, number, number, number], c.filter as [number, number, number, number], c.strides, c.dilations, c.pad, undefined, true, 'channelsLast').outShape;
}

/**
 * Float64 adjoints of a (depthwise) convolution: dW = Σ x·dy and dx = Σ dy·W over the index
 * relation of {@link forEachTap}.
 */
function depthwiseReference(c: DepthwiseCase, which: 'filter' | 'input'): Reference {
  const info = tf.backend_util.computeConv2DInfo(c.x as [number, number, number, number], c.filter as [number, number, number, number], c.strides, c.dilations, c.pad, undefined, true, 'channelsLast');
  return (inputs) => {
    const out = new Float64Array((which === 'filter' ? c.filter : c.x).reduce((a, b) => a * b, 1));
    forEachTap(c.x, c.filter, info, true, (xi, wi, yi) => {
      if (which === 'filter') out[wi] += inputs.x.data[xi] * inputs.dy.data[yi];
      else out[xi] += inputs.dy.data[yi] * inputs.filter.data[wi];
    });
    return { values: out, shape: which === 'filter' ? c.filter : c.x };
  };
}

test('DepthwiseConv2dNativeBackpropFilter and BackpropInput (supplied) match the CPU backend (float64 reference for dilations > 1)', async () => {
  registerWasmGradientKernels();
  for (const [i, c] of DEPTHWISE_CASES.entries()) {
    const label = `x ${c.x} f ${c.filter} s ${c.strides} d ${c.dilations} pad ${c.pad}`;
    const x = random(c.x, `dx${i}`);
    const dy = random(depthwiseOut(c), `ddy${i}`);
    const filter = random(c.filter, `dw${i}`);
    // The CPU backend's depthwise backprop kernels ignore `dilations` (tfjs gradients never pass
    // dilations > 1), so dilated cases are checked against float64 adjoints instead.
    const dilated = c.dilations !== 1;
    await compare('DepthwiseConv2dNativeBackpropFilter', { x, dy }, { x: abs(x), dy: abs(dy) }, { strides: c.strides, dilations: c.dilations, pad: c.pad, filterShape: c.filter }, `DepthwiseConv2dNativeBackpropFilter ${label}`, dilated ? depthwiseReference(c, 'filter') : undefined);
    await compare('DepthwiseConv2dNativeBackpropInput', { dy, filter }, { dy: abs(dy), filter: abs(filter) }, { strides: c.strides, dilations: c.dilations, pad: c.pad, inputShape: c.x }, `DepthwiseConv2dNativeBackpropInput ${label}`, dilated ? depthwiseReference(c, 'input') : undefined);
  }
});

const POOL_CASES = [
  { x: [2, 8, 8, 3], filterSize: 2, strides: 2, pad: 'valid' as const },
  { x: [1, 7, 9, 4], filterSize: 2, strides: 2, pad: 'valid' as const },
  { x: [2, 7, 7, 2], filterSize: 3, strides: 2, pad: 'same' as const },
  { x: [1, 6, 6, 3], filterSize: [3, 2] as [number, number], strides: 1, pad: 'valid' as const },
  { x: [1, 9, 8, 2], filterSize: 2, strides: 2, pad: 'same' as const },
];

/** Inputs for pooling gradients; `ties` rounds x to {-1, 0, 1} so windows have equal maxima. */
async function poolInputs(c: (typeof POOL_CASES)[number], i: number, ties: boolean): Promise<{ x: Input; out: Input; dy: Input }> {
  const x = random(c.x, `px${i}${ties}`);
  if (ties) x.data = x.data.map((v) => Math.round(v));
  assert.ok(await tf.setBackend('cpu'));
  const output = tf.tidy(() => tf.maxPool(tf.tensor4d(x.data, c.x as [number, number, number, number]), c.filterSize, c.strides, c.pad));
  const out: Input = { data: (await output.data()) as Float32Array, shape: output.shape };
  output.dispose();
  return { x, out, dy: random(out.shape, `pdy${i}`) };
}

test('MaxPoolGrad (supplied; the native one drops all-negative windows) and native AvgPoolGrad match the CPU backend', async () => {
  registerWasmGradientKernels();
  for (const [i, c] of POOL_CASES.entries()) {
    const attrs = { filterSize: c.filterSize, strides: c.strides, pad: c.pad };
    const label = `x ${c.x} k ${c.filterSize} s ${c.strides} ${c.pad}`;
    for (const ties of [false, true]) {
      const { x, out, dy } = await poolInputs(c, i, ties);
      // With ties (x in {-1,0,1}) the gradient must go to the first maximum in row-major window order, as on CPU.
      await compare('MaxPoolGrad', { dy, input: x, output: out }, { dy: abs(dy), input: x, output: out }, attrs, `MaxPoolGrad ${label}${ties ? ' ties' : ''}`);
      if (!ties) await compare('AvgPoolGrad', { dy, input: x }, { dy: abs(dy), input: x }, attrs, `AvgPoolGrad ${label}`);
    }
  }
  // Document the native kernel's defect (informational: a fixed tfjs-backend-wasm would make this 0).
  unregisterWasmGradientKernels();
  const { x, out, dy } = await poolInputs(POOL_CASES[0], 0, false);
  const cpu = await run('cpu', 'MaxPoolGrad', { dy, input: x, output: out }, { filterSize: 2, strides: 2, pad: 'valid' });
  const native = await run('wasm', 'MaxPoolGrad', { dy, input: x, output: out }, { filterSize: 2, strides: 2, pad: 'valid' });
  const wrong = cpu.values.filter((v, k) => Math.abs(v - native.values[k]) > 1e-6).length;
  console.log(`native WASM MaxPoolGrad: ${wrong} of ${cpu.values.length} input gradients differ from CPU (all-negative windows)`);
  registerWasmGradientKernels();
  console.log(`worst |wasm - reference| / tolerance over all kernel comparisons: ${worst.toFixed(4)}`);
});

/**
 * Calls `f(xIndex, wIndex, yIndex)` for every product x·w that enters a (depthwise) NHWC
 * convolution output, by the definition y[n,i,j,co] = Σ x[n, i*sh + p*dh - top, j*sw + q*dw - left, ci]
 * · w[p,q,ci,co'] (out-of-range x is zero and skipped).
 */
function forEachTap(xs: Shape, ws: Shape, info: ReturnType<typeof tf.backend_util.computeConv2DInfo>, depthwise: boolean, f: (xi: number, wi: number, yi: number) => void): void {
  const [n, h, wd, cin] = xs;
  const [kh, kw, , m] = ws;
  const { outHeight: oh, outWidth: ow, outChannels: cout, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, padInfo } = info;
  for (let b = 0; b < n; b++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++)
        for (let co = 0; co < cout; co++)
          for (let p = 0; p < kh; p++)
            for (let q = 0; q < kw; q++) {
              const r = i * sh + p * dh - padInfo.top;
              const c = j * sw + q * dw - padInfo.left;
              if (r < 0 || r >= h || c < 0 || c >= wd) continue;
              const yi = ((b * oh + i) * ow + j) * cout + co;
              if (depthwise) {
                const ci = Math.floor(co / m);
                f(((b * h + r) * wd + c) * cin + ci, ((p * kw + q) * cin + ci) * m + (co % m), yi);
              } else {
                for (let ci = 0; ci < cin; ci++) f(((b * h + r) * wd + c) * cin + ci, ((p * kw + q) * cin + ci) * cout + co, yi);
              }
            }
}

/**
 * Numerical gradient check of L(x, W) = Σ conv(x, W) ⊙ R: tf.grad on WASM (through the supplied
 * kernels) against central differences of the float64 reference. L is bilinear, so central
 * differences are exact up to float64 rounding; the tolerance 1e-4·(1 + |g|) is float32 rounding
 * of the WASM gradient (sums of ≤ 100 products of magnitude ≤ 1).
 */
async function numericalCheck(depthwise: boolean): Promise<void> {
  registerWasmGradientKernels();
  assert.ok(await tf.setBackend('wasm'));
  const xs = [2, 6, 7, 3];
  const ws = depthwise ? [3, 3, 3, 2] : [3, 3, 3, 4];
  const stride = 2;
  const x = random(xs, `nx${depthwise}`);
  const w = random(ws, `nw${depthwise}`);
  const info = tf.backend_util.computeConv2DInfo(xs as [number, number, number, number], ws as [number, number, number, number], stride, 1, 'same', undefined, depthwise, 'channelsLast');
  const r = random(info.outShape, `nr${depthwise}`);
  const [gx, gw] = tf.tidy(() => {
    const R = tf.tensor(r.data, r.shape);
    const loss = (a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(depthwise ? tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, 'same') : tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, 'same'), R));
    return tf.grads(loss)([tf.tensor(x.data, xs), tf.tensor(w.data, ws)]);
  });
  const g = { x: (await gx.data()) as Float32Array, w: (await gw.data()) as Float32Array };
  tf.dispose([gx, gw]);
  const L = (xv: Float64Array, wv: Float64Array) => {
    let s = 0;
    forEachTap(xs, ws, info, depthwise, (xi, wi, yi) => (s += xv[xi] * wv[wi] * r.data[yi]));
    return s;
  };
  const x64 = Float64Array.from(x.data);
  const w64 = Float64Array.from(w.data);
  const eps = 1e-3;
  for (const [name, v, grad] of [['filter', w64, g.w], ['input', x64, g.x]] as const) {
    let maxErr = 0;
    for (let i = 0; i < v.length; i++) {
      const orig = v[i];
      v[i] = orig + eps;
      const up = L(x64, w64);
      v[i] = orig - eps;
      const down = L(x64, w64);
      v[i] = orig;
      const numeric = (up - down) / (2 * eps);
      const err = Math.abs(numeric - grad[i]);
      maxErr = Math.max(maxErr, err);
      assert.ok(err <= 1e-4 * (1 + Math.abs(numeric)), `${depthwise ? 'depthwise ' : ''}conv2d d/d${name}[${i}]: tf.grad ${grad[i]} numerical ${numeric}`);
    }
    console.log(`${depthwise ? 'depthwiseConv2d' : 'conv2d'} numerical gradient wrt ${name}: ${v.length} entries, max |diff| ${maxErr.toExponential(2)}`);
  }
}

test('conv2d gradients on WASM equal float64 numerical gradients', () => numericalCheck(false));
test('depthwiseConv2d gradients on WASM equal float64 numerical gradients', () => numericalCheck(true));

test('a dy of the wrong shape is reported with both shapes', async () => {
  registerWasmGradientKernels();
  assert.ok(await tf.setBackend('wasm'));
  const x = tf.zeros([1, 5, 5, 2]);
  const dy = tf.zeros([1, 4, 4, 3]);
  assert.throws(
    () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape: [3, 3, 2, 3] }),
    /Conv2DBackpropFilter: expected dy of shape \[1,3,3,3\].*received \[1,4,4,3\]/,
  );
  tf.dispose([x, dy]);
});
