/**
 * Open-set maths on known inputs: the threshold rule, AUROC, the card entry, the verdicts the runtime
 * derives from model outputs, the threshold training fits on those same outputs (baseline, finetune,
 * ensemble), and the in-graph Mahalanobis score against the same sum done by hand.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import seedrandom from 'seedrandom';
import { TENSOR } from '../export/base.js';
import { node, valueInfo } from '../export/graph.js';
import { OPEN_SET_SCORE_OUTPUT, withOpenSetScore, type WhitenedCentres } from '../export/open-set-graph.js';
import * as tf from '@tensorflow/tfjs';
import { openSetOutputNames, openSetVerdicts } from '../src/inference/classifier.js';
import { outputOpenSetScores } from '../src/inference/open-set-score.js';
import { modelCardSchema } from '../src/model/card.js';
import { encodeModel, type ModelProto } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { Matrix, inverse } from 'ml-matrix';
import { DEFAULT_HEAD, fitStandardizer, predictHead, trainHead } from '../training/head.js';
import { acceptThreshold, acceptedFraction, auroc, denseSoftmaxLogits, fitHeadOpenSet, headLogits, fitOpenSet, fitOutputOpenSet, fitTiedGaussian, formatOpenSet, ledoitWolf, tiedGaussianScores } from '../training/open-set.js';

const close = (a: number, b: number, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

describe('threshold rule: accept at least the target fraction of known validation paintings', () => {
  it('picks the order statistic floor(n (1 - rate)) of the sorted scores', () => {
    assert.deepEqual(acceptThreshold([4, 1, 3, 2], 0.75), { threshold: 2, acceptRate: 0.75 });
    // 30 scores 1..30 at 95%: floor(30 * 0.05) = 1 -> threshold 2, 29/30 accepted.
    const thirty = Array.from({ length: 30 }, (_, i) => 30 - i);
    const t = acceptThreshold(thirty, 0.95);
    assert.equal(t.threshold, 2);
    close(t.acceptRate, 29 / 30);
    // 20 scores at 95%: exactly one may be rejected (n (1 - rate) = 1 must not round down to 0.999...).
    assert.equal(acceptThreshold(Array.from({ length: 20 }, (_, i) => i), 0.95).threshold, 1);
    assert.deepEqual(acceptThreshold([5, 6], 1), { threshold: 5, acceptRate: 1 });
  });
  it('with ties accepts every tied score, so the fraction may exceed the target', () => {
    const r = acceptThreshold([1, 1, 1, 1, 2], 0.5);
    assert.equal(r.threshold, 1);
    assert.equal(r.acceptRate, 1);
  });
  it('names the parameter and the value when refusing', () => {
    assert.throws(() => acceptThreshold([], 0.95), /Expected at least one score for scores but received an empty array/);
    assert.throws(() => acceptThreshold([1], 0), /Expected acceptRate in \(0, 1\] but received 0/);
    assert.throws(() => acceptThreshold([1, NaN], 0.9), /Expected finite open-set scores but received NaN/);
  });
  it('acceptedFraction counts score >= threshold', () => {
    assert.equal(acceptedFraction([1, 2, 3, 4], 3), 0.5);
  });
});

describe('AUROC (Mann-Whitney), higher = known', () => {
  it('is 1 for perfect separation, 0 for reversed, 0.5 for ties', () => {
    assert.equal(auroc([3, 4], [1, 2]), 1);
    assert.equal(auroc([1, 2], [3, 4]), 0);
    assert.equal(auroc([1, 1], [1, 1]), 0.5);
    assert.equal(auroc([1, 3], [2, 2]), 0.5);
  });
  it('matches the pair count on a hand-computed case', () => {
    // pairs (known > unknown): 2>1, 4>1, 4>3 = 3 of 4, plus no ties -> 0.75
    assert.equal(auroc([2, 4], [1, 3]), 0.75);
    // a tie counts one half: known [2,2], unknown [2,1]: pairs 2=2 (.5), 2>1, 2=2 (.5), 2>1 -> 3/4
    assert.equal(auroc([2, 2], [2, 1]), 0.75);
  });
  it('agrees with the O(n^2) definition on random data with ties', () => {
    const rng = seedrandom('auroc');
    const known = Array.from({ length: 57 }, () => Math.round(rng() * 20));
    const unknown = Array.from({ length: 31 }, () => Math.round(rng() * 20) - 3);
    let u = 0;
    for (const a of known) for (const b of unknown) u += a > b ? 1 : a === b ? 0.5 : 0;
    close(auroc(known, unknown), u / (known.length * unknown.length), 1e-12);
  });
  it('refuses empty sets', () => {
    assert.throws(() => auroc([], [1]), /Expected known and unknown scores but received 0 known and 1 unknown/);
  });
});

describe('card entry', () => {
  it('fitOpenSet gives a card field that the schema accepts, with the test false-unknown rate', () => {
    const entry = fitOpenSet({ score: 'energy', validationScores: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], testScores: [0, 5, 6, 7], targetAcceptRate: 0.9 });
    assert.equal(entry.threshold, 2);
    assert.equal(entry.validationAcceptRate, 0.9);
    assert.equal(entry.validationImages, 10);
    assert.equal(entry.testAcceptRate, 0.75); // false-unknown rate on test: 0.25
    const card = baseCard();
    assert.ok(modelCardSchema.safeParse({ ...card, openSet: entry }).success);
  });
  it('a graph score needs its output, in fitOpenSet and in the schema', () => {
    assert.throws(() => fitOpenSet({ score: 'mahalanobis', validationScores: [1] }), /Expected output \(the graph output holding the score\) for the open-set score mahalanobis but received none/);
    const parsed = modelCardSchema.safeParse({ ...baseCard(), openSet: { score: 'mahalanobis', threshold: 0, targetAcceptRate: 0.95, validationAcceptRate: 1, validationImages: 1 } });
    assert.equal(parsed.success, false);
    assert.match(JSON.stringify(parsed.error?.issues), /openSet\.output/);
  });
});

describe('verdicts from model outputs', () => {
  const outputs = { probabilities: 'probabilities', logits: 'logits', features: 'features' };
  const classes = ['a', 'b', 'c'];
  const openSet = (score: 'msp' | 'energy' | 'mahalanobis', threshold: number) => ({
    outputs,
    classes,
    openSet: { score, threshold, targetAcceptRate: 0.95, validationAcceptRate: 0.95, validationImages: 30, ...(score === 'mahalanobis' ? { output: OPEN_SET_SCORE_OUTPUT } : {}) },
  });
  it('msp is the largest probability; below the threshold is unknown', () => {
    const v = openSetVerdicts(openSet('msp', 0.5), 2, { probabilities: [0.7, 0.2, 0.1, 0.4, 0.35, 0.25] })!;
    assert.deepEqual(v.map((x) => x.unknown), [false, true]);
    close(v[0].score, 0.7, 1e-7);
    close(v[1].score, 0.4, 1e-7);
    assert.deepEqual(openSetOutputNames(openSet('msp', 0.5)), []);
  });
  it('energy is logsumexp of the logits', () => {
    const card = openSet('energy', 1.5);
    const v = openSetVerdicts(card, 1, { logits: [0, Math.log(2), Math.log(3)] })!;
    close(v[0].score, Math.log(6), 1e-6); // log(1 + 2 + 3)
    assert.equal(v[0].unknown, false);
    assert.deepEqual(openSetOutputNames(card), ['logits']);
  });
  it('graph scores are read from their output; NaN is unknown; no openSet means no verdicts', () => {
    const card = openSet('mahalanobis', -10);
    const v = openSetVerdicts(card, 3, { [OPEN_SET_SCORE_OUTPUT]: [-5, -10, NaN] })!;
    assert.deepEqual(v.map((x) => x.unknown), [false, false, true]);
    assert.deepEqual(openSetOutputNames(card), [OPEN_SET_SCORE_OUTPUT]);
    assert.equal(openSetVerdicts({ outputs, classes, openSet: undefined }, 1, {}), undefined);
    assert.throws(() => openSetVerdicts(card, 2, {}), /Expected output "open_set_score" with 2 values \(\[2,1\] float32\) for the open-set score mahalanobis but received no such output/);
  });
});

describe('fitOutputOpenSet: thresholds on the class outputs (baseline, finetune, ensemble)', () => {
  // Four validation paintings, C = 2, chosen so every score is exact by hand:
  //   logits [0, ln 3] [0, 0] [1, 1] [ln 7, 0] -> energy ln 4, ln 2, 1 + ln 2, ln 8
  //   softmax           3/4     1/2    1/2     7/8  -> msp (the largest probability)
  const logits = [0, Math.log(3), 0, 0, 1, 1, Math.log(7), 0];
  const probabilities = [0.25, 0.75, 0.5, 0.5, 0.5, 0.5, 0.875, 0.125];
  const energy = [Math.log(4), Math.log(2), 1 + Math.log(2), Math.log(8)];

  it('outputOpenSetScores: energy is logsumexp of each logits row, msp the largest probability', () => {
    Array.from(outputOpenSetScores('energy', logits, 2)).forEach((v, i) => close(v, energy[i], 1e-12));
    assert.deepEqual(Array.from(outputOpenSetScores('msp', probabilities, 2)), [0.75, 0.5, 0.5, 0.875]);
    // Large logits do not overflow: logsumexp(1000, 1000) = 1000 + ln 2.
    close(outputOpenSetScores('energy', [1000, 1000], 2)[0], 1000 + Math.log(2), 1e-9);
    assert.throws(() => outputOpenSetScores('msp', [0.5, 0.5, 1], 2), /Expected \[N,2\] values \(a multiple of 2\) for the msp score but received 3/);
  });

  it('energy from logits: the order statistic of the hand-computed scores, test accept rate included', () => {
    // Sorted energies ln 2 < ln 4 < 1 + ln 2 < ln 8; at 75%: index floor(4 * 0.25) = 1 -> ln 4, 3 of 4 accepted.
    // Test logits [0, 0] (ln 2, below) and [5, 0] (5 + ln(1 + e^-5), above): half accepted.
    const entry = fitOutputOpenSet({ classes: 2, validation: { logits }, test: { logits: [0, 0, 5, 0] }, targetAcceptRate: 0.75 });
    assert.equal(entry.score, 'energy');
    close(entry.threshold, Math.log(4), 1e-12);
    assert.equal(entry.validationAcceptRate, 0.75);
    assert.equal(entry.validationImages, 4);
    assert.equal(entry.testAcceptRate, 0.5);
    assert.equal(entry.output, undefined);
    assert.equal(entry.auroc, undefined, 'no AUROC unless the caller has a measured one');
    assert.ok(modelCardSchema.safeParse({ ...baseCard(), openSet: entry }).success);
    assert.equal(formatOpenSet(entry), 'open set: energy score, threshold 1.386 (accepts 75.0% of validation paintings, 50.0% of test paintings)');
  });

  it('msp from probabilities: ties at the threshold are all accepted', () => {
    // Sorted msp 0.5, 0.5, 0.75, 0.875; at 75%: index 1 -> 0.5, and both 0.5s pass: 4 of 4.
    const entry = fitOutputOpenSet({ classes: 2, validation: { probabilities }, targetAcceptRate: 0.75 });
    assert.deepEqual([entry.score, entry.threshold, entry.validationAcceptRate, entry.testAcceptRate], ['msp', 0.5, 1, undefined]);
    // At 50%: index 2 -> 0.75, 2 of 4.
    const half = fitOutputOpenSet({ classes: 2, validation: { probabilities }, targetAcceptRate: 0.5 });
    assert.deepEqual([half.threshold, half.validationAcceptRate], [0.75, 0.5]);
  });

  it('the runtime, given the same outputs, accepts exactly what the card says', () => {
    for (const [rows, name] of [[{ logits }, 'logits'], [{ probabilities }, 'probabilities']] as const) {
      const entry = fitOutputOpenSet({ classes: 2, validation: rows, targetAcceptRate: 0.75 });
      const card = { outputs: { probabilities: 'probabilities', logits: 'logits', features: 'features' }, classes: ['a', 'b'], openSet: entry };
      assert.deepEqual(openSetOutputNames(card), name === 'logits' ? ['logits'] : []);
      const verdicts = openSetVerdicts(card, 4, { [name]: name === 'logits' ? logits : probabilities })!;
      assert.equal(verdicts.filter((v) => !v.unknown).length / 4, entry.validationAcceptRate);
      assert.deepEqual(verdicts.map((v) => v.score), Array.from(outputOpenSetScores(entry.score as 'msp' | 'energy', name === 'logits' ? logits : probabilities, 2)));
    }
  });

  it('refuses a test split of the other output, rows of the wrong width, and no validation rows', () => {
    assert.throws(() => fitOutputOpenSet({ classes: 2, validation: { logits }, test: { probabilities } }), /Expected logits for the test split \(as for validation: the energy score\) but received probabilities/);
    assert.throws(() => fitOutputOpenSet({ classes: 3, validation: { logits } }), /Expected \[N,3\] values \(a multiple of 3\) for the energy score but received 8/);
    assert.throws(() => fitOutputOpenSet({ classes: 2, validation: { probabilities: [] } }), /Expected at least one score for scores but received an empty array/);
  });

  it('denseSoftmaxLogits: h W + b of the last Dense softmax layer (the exported logits), temperature included', async () => {
    await (await import('../training/backend.js')).initTrainingBackend('cpu');
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 2, activation: 'relu', name: 'hidden' }), tf.layers.dropout({ rate: 0.5, name: 'drop' }), tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' })] });
    try {
      // hidden: relu(x I) = relu(x); out: W = [[1, 0, -1], [0, 2, 1]] / T with T = 2, b = [0.5, 0, 0] / 2.
      model.layers[0].setWeights([tf.tensor2d([[1, 0], [0, 1]]), tf.tensor1d([0, 0])]);
      model.layers[2].setWeights([tf.tensor2d([[0.5, 0, -0.5], [0, 1, 0.5]]), tf.tensor1d([0.25, 0, 0])]);
      const x = new Float32Array([1, 2, -1, 3]);
      const z = denseSoftmaxLogits(model, (penultimate) => (penultimate.predict(tf.tensor2d(x, [2, 2])) as tf.Tensor).dataSync() as Float32Array);
      // Row 1: h = [1, 2] -> [0.75, 2, 0.5]; row 2: h = [0, 3] (relu, dropout off) -> [0.25, 3, 1.5].
      [0.75, 2, 0.5, 0.25, 3, 1.5].forEach((v, i) => close(z[i], v, 1e-6));
      const p = (model.predict(tf.tensor2d(x, [2, 2])) as tf.Tensor).dataSync();
      Array.from(softmax(z, 3)).forEach((v, i) => close(v, p[i], 1e-6));
      const plain = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 2, name: 'linear_out' })] });
      assert.throws(() => denseSoftmaxLogits(plain, () => new Float32Array(0)), /Expected the last layer \(linear_out\) to be Dense with softmax activation but it is Dense \(activation "linear"\)/);
      plain.dispose();
    } finally {
      model.dispose();
    }
  });
});

describe('Mahalanobis score in the ONNX graph', () => {
  const identityFeatures = identityModel;
  /** The score by its definition: -min_j ||x W - b - m_j||^2 (+ ||x W0 - b0||^2 for relative). */
  function byHand(x: number[], p: WhitenedCentres): number {
    const proj = (w: Float32Array, b: Float32Array, k: number) => Array.from({ length: k }, (_, i) => x.reduce((s, xv, r) => s + xv * w[r * k + i], 0) - b[i]);
    const z = proj(p.weight, p.bias, p.dim);
    const c = p.centres.length / p.dim;
    let min = Infinity;
    for (let j = 0; j < c; j++) min = Math.min(min, z.reduce((s, v, i) => s + (v - p.centres[j * p.dim + i]) ** 2, 0));
    if (!p.background) return -min;
    const z0 = proj(p.background.weight, p.background.bias, p.background.dim);
    return z0.reduce((s, v) => s + v * v, 0) - min;
  }
  for (const relative of [false, true]) {
    it(`equals the hand computation (${relative ? 'relative' : 'plain'})`, async () => {
      const rng = seedrandom(`graph-${relative}`);
      const d = 6;
      const k = 3;
      const c = 4;
      const rand = (n: number) => Float32Array.from({ length: n }, () => rng() * 2 - 1);
      const params: WhitenedCentres = { inputDim: d, dim: k, weight: rand(d * k), bias: rand(k), centres: rand(c * k), ...(relative ? { background: { dim: 2, weight: rand(d * 2), bias: rand(2) } } : {}) };
      const model = withOpenSetScore(identityFeatures(d), params);
      const session = await ort.InferenceSession.create(encodeModel(model));
      const n = 5;
      const x = rand(n * d);
      const out = await session.run({ x: new ort.Tensor('float32', x, [n, d]) });
      const score = out[OPEN_SET_SCORE_OUTPUT];
      assert.deepEqual(score.dims, [n]);
      for (let i = 0; i < n; i++) close((score.data as Float32Array)[i], byHand(Array.from(x.subarray(i * d, (i + 1) * d)), params), 1e-4);
      await session.release();
    });
  }
  it('refuses parameters of the wrong size, naming them', () => {
    assert.throws(() => withOpenSetScore(identityFeatures(2), { inputDim: 2, dim: 2, weight: new Float32Array(3), bias: new Float32Array(2), centres: new Float32Array(2) }), /Expected 4 values for weight \(\[D,K\]\) but received 3/);
  });
});

describe('tied Gaussian (Mahalanobis) fitting', () => {
  it('Ledoit-Wolf shrinkage on a hand-computed 3x2 example', () => {
    // S = [[2/3, 2/3], [2/3, 8/3]], mu = 5/3, delta = 13/9, beta = (sum ||x||^4 / n - ||S||_F^2) / n / p = 25/27.
    const { covariance, shrinkage, mu } = ledoitWolf([[1, 2], [-1, 0], [0, -2]]);
    close(mu, 5 / 3);
    close(shrinkage, 25 / 39);
    close(covariance.get(0, 0), (14 / 39) * (2 / 3) + (25 / 39) * (5 / 3));
    close(covariance.get(0, 1), (14 / 39) * (2 / 3));
    close(covariance.get(1, 1), (14 / 39) * (8 / 3) + (25 / 39) * (5 / 3));
  });

  it('with every component kept, scores equal the exact shrunk Mahalanobis distance to the nearest class mean', async () => {
    await (await import('../training/backend.js')).initTrainingBackend('cpu');
    const rng = seedrandom('tied');
    const d = 5;
    const c = 3;
    const n = 240;
    const gauss = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
    const mix = Array.from({ length: d * d }, () => gauss());
    const x = new Float32Array(n * d);
    const y: number[] = [];
    for (let i = 0; i < n; i++) {
      const label = i % c;
      y.push(label);
      const e = Array.from({ length: d }, () => gauss());
      for (let j = 0; j < d; j++) x[i * d + j] = 3 * label * (j === label ? 1 : 0) + e.reduce((s, v, k) => s + v * mix[k * d + j], 0) + 10 * j;
    }
    const st = fitStandardizer(x, d);
    for (const relative of [false, true]) {
      const g = fitTiedGaussian(x, y, d, c, st, { components: d, relative });
      // Exact: standardise, class means, within-class scatter, Ledoit-Wolf, inverse.
      const z = Array.from({ length: n }, (_, i) => Array.from({ length: d }, (_, j) => (x[i * d + j] - st.mean[j]) * st.invStd[j]));
      const means = Array.from({ length: c }, (_, k) => Array.from({ length: d }, (_, j) => z.filter((_, i) => y[i] === k).reduce((s, r) => s + r[j], 0) / (n / c)));
      const inv = inverse(ledoitWolf(z.map((r, i) => r.map((v, j) => v - means[y[i]][j]))).covariance);
      const grand = Array.from({ length: d }, (_, j) => z.reduce((s, r) => s + r[j], 0) / n);
      const inv0 = inverse(ledoitWolf(z.map((r) => r.map((v, j) => v - grand[j]))).covariance);
      const maha = (v: number[], m: number[], a: Matrix) => {
        const diff = new Matrix([v.map((e, j) => e - m[j])]);
        return diff.mmul(a).mmul(diff.transpose()).get(0, 0);
      };
      const scores = tiedGaussianScores(g, x.subarray(0, 12 * d));
      for (let i = 0; i < 12; i++) {
        const nearest = Math.min(...means.map((m) => maha(z[i], m, inv)));
        const expected = (relative ? maha(z[i], grand, inv0) : 0) - nearest;
        assert.ok(Math.abs(scores[i] - expected) <= 1e-3 * Math.max(1, Math.abs(expected)), `${relative ? 'relative' : 'plain'} row ${i}: ${scores[i]} vs ${expected}`);
      }
    }
  });

  it('names the parameter when refusing', () => {
    const st = { mean: new Float32Array(2), invStd: new Float32Array(2).fill(1) };
    assert.throws(() => fitTiedGaussian(new Float32Array(4), [0, 1], 2, 2, st, { components: 3 }), /Expected an integer in \[1, 2\] for components but received 3/);
    assert.throws(() => fitTiedGaussian(new Float32Array(4), [0, 0], 2, 2, st, { components: 1 }), /Expected training features of every class for y but class 1 has none/);
    assert.throws(() => fitTiedGaussian(new Float32Array(3), [0, 1], 2, 2, st, { components: 1 }), /Expected 4 values \(\[2,2\]\) for x but received 3/);
  });
});

describe('fitHeadOpenSet: what training calls', () => {
  it('msp from the head logits equals the largest predicted probability; the threshold follows the rule', async () => {
    await (await import('../training/backend.js')).initTrainingBackend('cpu');
    const rng = seedrandom('head');
    const d = 4;
    const make = (n: number) => {
      const y = Array.from({ length: n }, (_, i) => i % 3);
      const x = Float32Array.from({ length: n * d }, (_, k) => (k % d === y[Math.floor(k / d)] ? 1.5 : 0) + rng() - 0.5);
      return { x, y };
    };
    const train = make(90);
    const validation = make(30);
    const test = make(30);
    const head = await trainHead(train, validation, d, 3, { ...DEFAULT_HEAD, hidden: 0, dropout: 0.2, epochs: 5, patience: 5 });
    try {
      const msp = fitHeadOpenSet({ head, train, validation, test, score: 'msp' });
      const p = predictHead(head, validation.x);
      const expected = acceptThreshold(Array.from({ length: 30 }, (_, i) => Math.max(...p.subarray(i * 3, i * 3 + 3))), 0.95);
      close(msp.openSet.threshold, expected.threshold, 1e-5);
      assert.ok(msp.openSet.validationAcceptRate >= 0.95);
      assert.equal(msp.openSet.validationImages, 30);
      assert.equal(typeof msp.openSet.testAcceptRate, 'number');
      const model = identityModel();
      assert.equal(msp.addToModel(model), model, 'msp needs no graph change');

      // energy: logsumexp of the head's logits (the exported `logits`), by the function the runtime uses.
      const energy = fitHeadOpenSet({ head, train, validation, test, score: 'energy' });
      const z = headLogits(head, validation.x);
      const byHand = Array.from({ length: 30 }, (_, i) => Math.log(z.subarray(i * 3, i * 3 + 3).reduce((s, v) => s + Math.exp(v), 0)));
      close(energy.openSet.threshold, acceptThreshold(byHand, 0.95).threshold, 1e-9);
      assert.equal(energy.openSet.score, 'energy');

      const rel = fitHeadOpenSet({ head, train, validation, score: 'relative-mahalanobis', components: 3 });
      assert.equal(rel.openSet.output, OPEN_SET_SCORE_OUTPUT);
      assert.equal(rel.openSet.parameters?.components, 3);
      assert.deepEqual(rel.addToModel(identityModel(d)).graph.output.map((o) => o.name), ['features', OPEN_SET_SCORE_OUTPUT]);
    } finally {
      head.model.dispose();
    }
  });
});

/** Row-wise softmax of `[N,C]` values. */
function softmax(z: ArrayLike<number>, c: number): Float64Array {
  const out = new Float64Array(z.length);
  for (let i = 0; i < z.length / c; i++) {
    const row = Array.from({ length: c }, (_, j) => Math.exp(z[i * c + j]));
    const sum = row.reduce((a, b) => a + b, 0);
    row.forEach((v, j) => (out[i * c + j] = v / sum));
  }
  return out;
}

/** An ONNX model passing `x` [N,D] through as `features`. */
function identityModel(d = 2): ModelProto {
  return {
    ir_version: 7,
    opset_import: [{ domain: '', version: 12 }],
    producer_name: 'test',
    graph: {
      name: 'features',
      node: [node('Identity', ['x'], [TENSOR.features], 'identity')],
      initializer: [],
      input: [valueInfo('x', DataType.FLOAT, ['N', d])],
      output: [valueInfo(TENSOR.features, DataType.FLOAT, ['N', d])],
    },
  } as unknown as ModelProto;
}

/** A minimal valid card (fields as the schema requires). */
function baseCard(): object {
  return {
    format: 'artist-id/1',
    name: 't',
    classes: ['a', 'b'],
    preprocessing: { width: 224, height: 224, fit: 'fill', kernel: 'cubic', background: '#000', layout: 'NHWC', dtype: 'uint8', mean: [0, 0, 0], std: [1, 1, 1] },
    input: 'image',
    outputs: { probabilities: 'probabilities', logits: 'logits', features: 'features' },
    base: { name: 'b', sha256: 'x', features: 'style', featureDim: 2 },
    training: { method: 'features', data: 'd', layout: 'flat', seed: 1, split: [1, 1, 1], epochs: 1, bestEpoch: 1, backend: 'cpu', hyperparameters: {}, seconds: 1 },
    metrics: { train: { images: 1, accuracy: 1 }, validation: { images: 1, accuracy: 1 } },
    parity: { images: 1, maxAbsDiff: 0, tolerance: 1e-4 },
    createdAt: 'now',
  };
}
