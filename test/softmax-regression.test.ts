/**
 * The `--solver lbfgs` head: L-BFGS on problems with known minimisers, softmax regression checked by its
 * first-order optimality condition (gradient recomputed here in float64, independently of TF.js), and the
 * head built from the fit (predictions, history, refused options).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import seedrandom from 'seedrandom';
import { initTrainingBackend } from '../training/backend.js';
import { DEFAULT_HEAD, SOLVER_HEAD_DEFAULTS, fitStandardizer, hyperparametersOf, predictHead, standardize, trainHead, validateHeadConfig, type HeadConfig } from '../training/head.js';
import { minimizeLbfgs } from '../training/lbfgs.js';
import { fitSoftmaxRegression } from '../training/softmax-regression.js';

await initTrainingBackend();

test('L-BFGS: the minimiser of an ill-conditioned quadratic and of Rosenbrock\'s function', () => {
  // f = (x0 - 3)² + 100 (x1 + 1)² + (x2 - x0)²: minimum 0 at (3, -1, 3).
  const quadratic = minimizeLbfgs((x, g) => {
    g[0] = 2 * (x[0] - 3) - 2 * (x[2] - x[0]);
    g[1] = 200 * (x[1] + 1);
    g[2] = 2 * (x[2] - x[0]);
    return (x[0] - 3) ** 2 + 100 * (x[1] + 1) ** 2 + (x[2] - x[0]) ** 2;
  }, new Float64Array(3), { gradientTolerance: 1e-9, relativeDecrease: 0 });
  [3, -1, 3].forEach((v, i) => assert.ok(Math.abs(quadratic.x[i] - v) < 1e-7, `x[${i}] = ${quadratic.x[i]}, expected ${v}`));
  assert.equal(quadratic.stoppedBy, 'gradient');
  // Rosenbrock from the classic start (-1.2, 1): minimum 0 at (1, 1) at the end of a curved valley.
  const rosenbrock = minimizeLbfgs((x, g) => {
    g[0] = -400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]);
    g[1] = 200 * (x[1] - x[0] ** 2);
    return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2;
  }, Float64Array.from([-1.2, 1]), { gradientTolerance: 1e-8, relativeDecrease: 0, maxIterations: 1000 });
  assert.ok(Math.abs(rosenbrock.x[0] - 1) < 1e-5 && Math.abs(rosenbrock.x[1] - 1) < 1e-5, `stopped at ${Array.from(rosenbrock.x)} (${rosenbrock.stoppedBy})`);
  assert.throws(() => minimizeLbfgs(() => 0, new Float64Array(1), { memory: 0 }), /Expected integer between 1 and 1000 for memory but received 0/);
  assert.throws(() => minimizeLbfgs(() => NaN, new Float64Array(1)), /Expected a finite objective at the starting point but received NaN/);
});

/** N rows of D features from C overlapping Gaussian clusters (so the minimiser is finite even without a penalty). */
function clusters(n: number, d: number, c: number, seed: string): { x: Float32Array; y: number[] } {
  const rng = seedrandom(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  const centres = Array.from({ length: c }, () => Array.from({ length: d }, normal));
  const y = Array.from({ length: n }, (_, i) => i % c);
  const x = new Float32Array(n * d);
  y.forEach((label, i) => centres[label].forEach((m, j) => (x[i * d + j] = m + 1.5 * normal())));
  return { x, y };
}

/** ∇J of the softmax regression in float64, written out from the formula (not from TF.js). */
function gradientMax(x: Float32Array, y: number[], d: number, c: number, kernel: Float32Array, bias: Float32Array, l2: number): number {
  const n = y.length;
  const gW = new Float64Array(d * c).map((_, k) => 2 * l2 * kernel[k]);
  const gb = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: c }, (_, k) => bias[k] + Array.from({ length: d }, (_, j) => x[i * d + j] * kernel[j * c + k]).reduce((a, b) => a + b, 0));
    const m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    for (let k = 0; k < c; k++) {
      const r = (e[k] / s - (y[i] === k ? 1 : 0)) / n;
      gb[k] += r;
      for (let j = 0; j < d; j++) gW[j * c + k] += x[i * d + j] * r;
    }
  }
  return Math.max(...Array.from(gW, Math.abs), ...Array.from(gb, Math.abs));
}

test('softmax regression: the gradient vanishes at the fit, and the fit does not depend on the order of the rows', () => {
  const [d, c, l2] = [6, 3, 1e-3];
  const { x, y } = clusters(90, d, c, 'optimality');
  const fit = fitSoftmaxRegression(x, y, d, c, { l2 });
  assert.ok(gradientMax(x, y, d, c, fit.kernel, fit.bias, l2) < 1e-4, `max |∇J| = ${gradientMax(x, y, d, c, fit.kernel, fit.bias, l2)} (${fit.stoppedBy})`);
  assert.ok(fit.history.length > 0 && fit.history.every((h, i) => i === 0 || h.objective <= fit.history[i - 1].objective), 'J decreases at every iteration');
  // Rows reversed: the same convex problem, so the same minimiser.
  const order = y.map((_, i) => y.length - 1 - i);
  const xr = new Float32Array(x.length);
  order.forEach((from, to) => xr.set(x.subarray(from * d, (from + 1) * d), to * d));
  const reversed = fitSoftmaxRegression(xr, order.map((i) => y[i]), d, c, { l2 });
  fit.kernel.forEach((w, k) => assert.ok(Math.abs(w - reversed.kernel[k]) < 1e-3, `kernel[${k}]: ${w} vs ${reversed.kernel[k]}`));
  // A larger penalty gives a smaller kernel.
  const strong = fitSoftmaxRegression(x, y, d, c, { l2: 1 });
  const norm = (w: Float32Array) => Math.hypot(...w);
  assert.ok(norm(strong.kernel) < norm(fit.kernel));
  assert.throws(() => fitSoftmaxRegression(x, y.map((v) => (v === 2 ? 3 : v)), d, c, { l2 }), /Expected labels\[2\] of x to be a class index in \[0, 2\] but received 3/);
  assert.throws(() => fitSoftmaxRegression(x, y, d, c, { l2: 0 }), /for l2 but received 0/);
  assert.throws(() => fitSoftmaxRegression(x.subarray(1), y, d, c, { l2 }), /Expected x of 90×6 = 540 values/);
});

test('head with solver lbfgs: predictions are softmax(standardised x · W + b) of the fit; Adam-only options are refused', async () => {
  const [d, c] = [5, 3];
  const train = clusters(60, d, c, 'head-train');
  const validation = clusters(30, d, c, 'head-validation');
  const config: HeadConfig = { ...DEFAULT_HEAD, ...SOLVER_HEAD_DEFAULTS.lbfgs, solver: 'lbfgs', l2: 1e-2 };
  const epochs: number[] = [];
  const head = await trainHead(train, validation, d, c, config, (e) => epochs.push(e.epoch));
  assert.equal(head.bestEpoch, head.history.length, 'the kept weights are the minimiser, the last iteration');
  assert.deepEqual(epochs, head.history.map((h) => h.epoch));
  const s = fitStandardizer(train.x, d);
  const fit = fitSoftmaxRegression(standardize(train.x, s), train.y, d, c, { l2: 1e-2 });
  const p = predictHead(head, validation.x);
  const z = standardize(validation.x, s);
  for (let i = 0; i < validation.y.length; i++) {
    const logits = Array.from({ length: c }, (_, k) => fit.bias[k] + Array.from({ length: d }, (_, j) => z[i * d + j] * fit.kernel[j * c + k]).reduce((a, b) => a + b, 0));
    const m = Math.max(...logits);
    const e = logits.map((v) => Math.exp(v - m));
    const sum = e.reduce((a, b) => a + b, 0);
    e.forEach((v, k) => assert.ok(Math.abs(v / sum - p[i * c + k]) < 1e-5, `row ${i} class ${k}: ${v / sum} vs ${p[i * c + k]}`));
  }
  assert.throws(() => validateHeadConfig({ ...config, hidden: 64 }), /Expected 0 with solver lbfgs \(the default for style features: softmax regression solved to convergence; --solver adam trains hidden layers, dropout and mixup\) for hidden but received 64/);
  assert.throws(() => validateHeadConfig({ ...config, dropout: 0.2 }), /for dropout but received 0.2/);
  assert.throws(() => validateHeadConfig({ ...config, mixup: 0.4 }), /for mixup but received 0.4/);
  assert.throws(() => validateHeadConfig({ ...config, solver: 'sgd' as HeadConfig['solver'] }), /Expected one of adam, lbfgs for solver but received "sgd"/);
  // The card lists what the fit used: no Adam settings for an L-BFGS head, all of them for an Adam one.
  assert.deepEqual(Object.keys(hyperparametersOf(config)).sort(), ['dropout', 'hidden', 'l2', 'labelSmoothing', 'seed', 'solver']);
  assert.equal(hyperparametersOf(DEFAULT_HEAD).learningRate, DEFAULT_HEAD.learningRate);
});
