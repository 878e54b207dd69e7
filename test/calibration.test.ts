/** Calibration maths on known inputs. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import seedrandom from 'seedrandom';
import { eceUncertainty, expectedCalibrationError, fitTemperature, nll, reliabilityDiagramSpec, softmaxRows } from '../training/calibration.js';

test('softmax rows sum to one and temperature flattens them', () => {
  const p1 = softmaxRows([2, 0, -1, 0, 0, 0], 3);
  assert.ok(Math.abs(p1[0] + p1[1] + p1[2] - 1) < 1e-6);
  assert.ok(Math.abs(p1[3] - 1 / 3) < 1e-6);
  const p2 = softmaxRows([2, 0, -1], 3, 4);
  assert.ok(p2[0] < p1[0] && p2[0] > 1 / 3);
});

test('ECE: perfectly calibrated bins give 0; a known miscalibration gives its gap', () => {
  // 10 predictions at confidence 0.8 of which 8 are right: calibrated.
  const probs: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < 10; i++) {
    probs.push(0.8, 0.2);
    labels.push(i < 8 ? 0 : 1);
  }
  assert.ok(expectedCalibrationError(probs, labels, 2).ece < 1e-9);
  // Same confidence, all wrong: gap 0.8.
  assert.ok(Math.abs(expectedCalibrationError(probs, labels.map(() => 1), 2).ece - 0.8) < 1e-9);
  // Two bins: 0.95 with 100% right (gap .05) and 0.6 with 50% right (gap .1), equal weight: 0.075.
  const { ece, bins } = expectedCalibrationError([0.95, 0.05, 0.95, 0.05, 0.6, 0.4, 0.6, 0.4], [0, 0, 0, 1], 2, 15);
  assert.ok(Math.abs(ece - 0.075) < 1e-9, `ece ${ece}`);
  assert.equal(bins.reduce((s, b) => s + b.count, 0), 4);
});

test('temperature scaling recovers the temperature that generated the labels', () => {
  // Labels sampled from softmax(z / 2.5): the NLL-optimal temperature for logits z is ~2.5.
  const rng = seedrandom('calibration');
  const c = 4;
  const n = 4000;
  const logits: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: c }, () => (rng() - 0.5) * 12);
    logits.push(...z);
    const p = softmaxRows(z, c, 2.5);
    let u = rng();
    let y = 0;
    while (y < c - 1 && u > p[y]) u -= p[y++];
    labels.push(y);
  }
  const t = fitTemperature(logits, labels, c);
  assert.ok(Math.abs(t - 2.5) < 0.25, `fitted T = ${t}`);
  assert.ok(nll(logits, labels, c, t) < nll(logits, labels, c, 1));
  const before = expectedCalibrationError(softmaxRows(logits, c), labels, c).ece;
  const after = expectedCalibrationError(softmaxRows(logits, c, t), labels, c).ece;
  assert.ok(after < before / 2, `ECE ${before} -> ${after}`);
});

test('ECE of an over-confident toy set equals the hand-computed value', () => {
  // 10 answers at confidence 0.9 of which 6 are right: |0.6 - 0.9| = 0.3.
  const probs: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < 10; i++) {
    probs.push(0.9, 0.1);
    labels.push(i < 6 ? 0 : 1);
  }
  assert.ok(Math.abs(expectedCalibrationError(probs, labels, 2).ece - 0.3) < 1e-9);
  // 4 at 0.95 with 2 right (gap 0.45, bin 14) and 6 at 0.55 with 3 right (gap 0.05, bin 8):
  // ECE = 0.4 * 0.45 + 0.6 * 0.05 = 0.21.
  const mixed = [...Array(4).fill([0.95, 0.05]), ...Array(6).fill([0.55, 0.45])].flat();
  const y = [0, 0, 1, 1, 0, 0, 0, 1, 1, 1];
  const { ece, bins } = expectedCalibrationError(mixed, y, 2, 15);
  assert.ok(Math.abs(ece - 0.21) < 1e-9, `ece ${ece}`);
  assert.deepEqual(bins.flatMap((b, i) => (b.count ? [[i, b.count, b.accuracy]] : [])), [[8, 6, 0.5], [14, 4, 0.5]]);
  assert.ok(Math.abs(bins[14].confidence - 0.95) < 1e-9 && Math.abs(bins[8].confidence - 0.55) < 1e-9);
});

test('reliability diagram spec: one point per non-empty bin, series in the order given, renders to SVG', async () => {
  const calibrated = expectedCalibrationError([0.8, 0.2, 0.8, 0.2, 0.8, 0.2, 0.8, 0.2, 0.8, 0.2], [0, 0, 0, 0, 1], 2);
  const over = expectedCalibrationError([0.95, 0.05, 0.95, 0.05], [0, 1], 2);
  const spec = reliabilityDiagramSpec([{ name: 'after', ...calibrated }, { name: 'before', ...over }], 't', 's') as { layer: { data: { values: { series: string; confidence: number; accuracy: number; images: number }[] } }[] };
  const points = spec.layer[2].data.values;
  assert.deepEqual(points.map((p) => [p.series, p.confidence, p.accuracy, p.images]), [['after (ECE 0.000)', 0.8, 0.8, 5], ['before (ECE 0.450)', 0.95, 0.5, 2]]);
  const vega = await import('vega');
  const vl = await import('vega-lite');
  const view = new vega.View(vega.parse(vl.compile(spec as never).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  assert.match(svg, /^<svg[\s\S]*before \(ECE 0\.450\)[\s\S]*<\/svg>$/);
});

test('ECE uncertainty: all-correct at confidence 1 has no noise; the noise floor of a calibrated 0.5 model matches the binomial expectation', () => {
  const n = 100;
  const certain = eceUncertainty(new Float64Array(n).fill(1), new Uint8Array(n).fill(1), 15, 200, 's');
  assert.deepEqual(certain.interval, [0, 0]);
  assert.equal(certain.calibratedMean, 0);
  // Confidence 0.5 for every image: one bin, ECE = |k/n - 0.5| with k ~ Binomial(n, 0.5); E|k/n - 0.5| = C(n, n/2) / 2^(n+1).
  let logBinom = 0;
  for (let i = 1; i <= n / 2; i++) logBinom += Math.log(n / 2 + i) - Math.log(i);
  const expected = Math.exp(logBinom - (n + 1) * Math.log(2)); // = 0.0398 for n = 100
  const half = eceUncertainty(new Float64Array(n).fill(0.5), Uint8Array.from({ length: n }, (_, i) => i % 2), 15, 4000, 's');
  assert.ok(Math.abs(half.calibratedMean - expected) < 0.004, `noise floor ${half.calibratedMean} vs ${expected}`);
  assert.ok(half.calibrated95 > half.calibratedMean);
  // Measured ECE is 0 (50 of 100 correct), and its bootstrap interval covers it and is non-degenerate.
  assert.ok(half.interval[0] === 0 && half.interval[1] > 0.05, `interval ${half.interval}`);
});

test('ECE uncertainty: an over-confident model (confidence 0.9, 60% correct) lies far above the calibrated noise floor', () => {
  const n = 300;
  const u = eceUncertainty(new Float64Array(n).fill(0.9), Uint8Array.from({ length: n }, (_, i) => (i % 5 < 3 ? 1 : 0)), 15, 1000, 's');
  assert.ok(u.interval[0] > 0.2 && u.interval[1] < 0.4, `interval ${u.interval} around the measured 0.3`);
  assert.ok(u.calibrated95 < 0.05, `noise floor ${u.calibrated95}`);
});
