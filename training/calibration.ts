/**
 * Confidence calibration: temperature scaling (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of
 * Modern Neural Networks") fitted on the validation split, and the expected calibration error.
 */
import seedrandom from 'seedrandom';

/** Softmax of `logits / temperature`, row-wise over `[N,C]`. */
export function softmaxRows(logits: ArrayLike<number>, c: number, temperature = 1): Float32Array {
  const out = new Float32Array(logits.length);
  for (let i = 0; i < logits.length / c; i++) {
    let max = -Infinity;
    for (let j = 0; j < c; j++) max = Math.max(max, logits[i * c + j] / temperature);
    let sum = 0;
    for (let j = 0; j < c; j++) sum += out[i * c + j] = Math.exp(logits[i * c + j] / temperature - max);
    for (let j = 0; j < c; j++) out[i * c + j] /= sum;
  }
  return out;
}

/** Mean negative log-likelihood of the labels under `softmax(logits / T)`. */
export function nll(logits: ArrayLike<number>, labels: number[], c: number, temperature = 1): number {
  const p = softmaxRows(logits, c, temperature);
  return -labels.reduce((s, y, i) => s + Math.log(Math.max(p[i * c + y], 1e-12)), 0) / labels.length;
}

/**
 * The temperature T > 0 minimising validation NLL, by golden-section search over log T in
 * [log 0.05, log 20] (NLL is unimodal in T for fixed logits). T > 1 softens over-confident models.
 *
 * @param logits - `[N,C]` logits (log-probabilities work too: the per-row constant cancels).
 */
export function fitTemperature(logits: ArrayLike<number>, labels: number[], c: number): number {
  let lo = Math.log(0.05);
  let hi = Math.log(20);
  const phi = (Math.sqrt(5) - 1) / 2;
  const f = (logT: number) => nll(logits, labels, c, Math.exp(logT));
  let x1 = hi - phi * (hi - lo);
  let x2 = lo + phi * (hi - lo);
  let f1 = f(x1);
  let f2 = f(x2);
  for (let it = 0; it < 60; it++) {
    if (f1 < f2) {
      hi = x2;
      x2 = x1;
      f2 = f1;
      x1 = hi - phi * (hi - lo);
      f1 = f(x1);
    } else {
      lo = x1;
      x1 = x2;
      f1 = f2;
      x2 = lo + phi * (hi - lo);
      f2 = f(x2);
    }
  }
  return Math.exp((lo + hi) / 2);
}

/** One bin of a reliability diagram. */
export interface ReliabilityBin {
  /** Bin range of top-1 confidence, [lower, upper). */
  lower: number;
  upper: number;
  count: number;
  /** Mean top-1 probability in the bin. */
  confidence: number;
  /** Fraction of correct top-1 predictions in the bin. */
  accuracy: number;
}

/**
 * Expected calibration error with equal-width confidence bins (Naeini et al. 2015; Guo et al. 2017):
 * `ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|` over the top-1 predictions.
 *
 * @param probabilities - `[N,C]` probabilities.
 * @param bins - number of bins; 15 as in Guo et al.
 */
export function expectedCalibrationError(probabilities: ArrayLike<number>, labels: number[], c: number, bins = 15): { ece: number; bins: ReliabilityBin[] } {
  const { confidence, correct } = topOneOutcomes(probabilities, labels, c);
  return binnedCalibrationError(confidence, correct, bins);
}

/** Top-1 confidence and whether the top-1 class is the label, per row of `[N,C]` probabilities. */
export function topOneOutcomes(probabilities: ArrayLike<number>, labels: number[], c: number): { confidence: Float64Array; correct: Uint8Array } {
  const confidence = new Float64Array(labels.length);
  const correct = new Uint8Array(labels.length);
  labels.forEach((y, i) => {
    let k = 0;
    for (let j = 1; j < c; j++) if (probabilities[i * c + j] > probabilities[i * c + k]) k = j;
    confidence[i] = probabilities[i * c + k];
    correct[i] = k === y ? 1 : 0;
  });
  return { confidence, correct };
}

/** ECE and reliability bins of top-1 confidences and outcomes (equal-width bins, see {@link expectedCalibrationError}). */
export function binnedCalibrationError(confidences: ArrayLike<number>, correct: ArrayLike<number>, bins = 15): { ece: number; bins: ReliabilityBin[] } {
  const acc = new Array<number>(bins).fill(0);
  const conf = new Array<number>(bins).fill(0);
  const count = new Array<number>(bins).fill(0);
  for (let i = 0; i < confidences.length; i++) {
    const p = confidences[i];
    const b = Math.min(bins - 1, Math.floor(p * bins));
    count[b]++;
    conf[b] += p;
    acc[b] += correct[i];
  }
  const n = confidences.length;
  let ece = 0;
  const out: ReliabilityBin[] = [];
  for (let b = 0; b < bins; b++) {
    const nb = count[b];
    const confidence = nb ? conf[b] / nb : 0;
    const accuracy = nb ? acc[b] / nb : 0;
    if (nb) ece += (nb / n) * Math.abs(accuracy - confidence);
    out.push({ lower: b / bins, upper: (b + 1) / bins, count: nb, confidence, accuracy });
  }
  return { ece, bins: out };
}

/** What an ECE measured on a finite split can tell: its sampling interval and the noise floor of a calibrated model. */
export interface EceUncertainty {
  /** 95% bootstrap interval of the measured ECE (images resampled with replacement). */
  interval: [number, number];
  /**
   * ECE a perfectly calibrated model with the same confidences would show on a split this size: mean and 95th
   * percentile over draws in which each image is correct with probability equal to its confidence
   * ("consistency resampling", Bröcker & Smith 2007, "Increasing the Reliability of Reliability Diagrams",
   * Weather and Forecasting 22). A measured ECE inside this range is indistinguishable from perfect calibration.
   */
  calibratedMean: number;
  calibrated95: number;
}

/**
 * Sampling uncertainty of the ECE of top-1 outcomes: bootstrap interval and the consistency-resampling
 * noise floor (see {@link EceUncertainty}).
 *
 * @param confidences - top-1 confidence per image (see {@link topOneOutcomes}).
 * @param correct - 1 where the top-1 class is the label.
 * @param draws - resamples for each estimate; default 2000.
 * @param seed - seeds the resampling (reproducible figures).
 */
export function eceUncertainty(confidences: ArrayLike<number>, correct: ArrayLike<number>, bins = 15, draws = 2000, seed = 'ece'): EceUncertainty {
  const rng = seedrandom(seed);
  const n = confidences.length;
  const conf = new Float64Array(n);
  const hit = new Uint8Array(n);
  const boot: number[] = [];
  const floor: number[] = [];
  for (let d = 0; d < draws; d++) {
    for (let i = 0; i < n; i++) {
      const j = Math.floor(rng() * n);
      conf[i] = confidences[j];
      hit[i] = correct[j];
    }
    boot.push(binnedCalibrationError(conf, hit, bins).ece);
    for (let i = 0; i < n; i++) hit[i] = rng() < confidences[i] ? 1 : 0;
    floor.push(binnedCalibrationError(confidences, hit, bins).ece);
  }
  const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
  return { interval: [quantile(boot, 0.025), quantile(boot, 0.975)], calibratedMean: floor.reduce((a, b) => a + b, 0) / draws, calibrated95: quantile(floor, 0.95) };
}

/** One curve of a reliability diagram: a name (e.g. "before: T = 1") and its bins. */
export interface ReliabilitySeries {
  name: string;
  /** ECE of these bins, shown in the legend. */
  ece: number;
  bins: ReliabilityBin[];
}

/**
 * A reliability diagram (Guo et al. 2017, fig. 1; DeGroot & Fienberg 1983) as a Vega-Lite spec: for each
 * series, the accuracy of each non-empty confidence bin plotted at the bin's mean confidence (point size =
 * images in the bin), joined by a line, over the diagonal of perfect calibration. Render it with vega
 * (`vega.View#toSVG`, headless, no native canvas), as scripts/reliability.ts does.
 *
 * @param title - chart title; `subtitle` - e.g. the model and split.
 * @returns the spec (Vega-Lite v6 top-level object).
 */
export function reliabilityDiagramSpec(series: ReliabilitySeries[], title: string, subtitle: string): object {
  const values = series.flatMap((s) =>
    s.bins
      .filter((b) => b.count > 0)
      .map((b) => ({ series: `${s.name} (ECE ${s.ece.toFixed(3)})`, confidence: round4(b.confidence), accuracy: round4(b.accuracy), images: b.count, bin: `[${b.lower.toFixed(3)}, ${b.upper.toFixed(3)})` })),
  );
  const axis = (title: string) => ({ type: 'quantitative', title, scale: { domain: [0, 1] } });
  // Legend in the order given (not alphabetical), with the ECE in full.
  const colour = { field: 'series', type: 'nominal', scale: { domain: series.map((s) => `${s.name} (ECE ${s.ece.toFixed(3)})`) } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle },
    width: 420,
    height: 420,
    layer: [
      {
        data: { values: [{ confidence: 0, accuracy: 0 }, { confidence: 1, accuracy: 1 }] },
        mark: { type: 'line', color: '#999', strokeDash: [4, 4] },
        encoding: { x: { field: 'confidence', ...axis('mean top-1 probability in the bin (confidence)') }, y: { field: 'accuracy', ...axis('fraction correct in the bin (accuracy)') } },
      },
      {
        data: { values },
        mark: { type: 'line', point: false, opacity: 0.7 },
        encoding: { x: { field: 'confidence', type: 'quantitative' }, y: { field: 'accuracy', type: 'quantitative' }, color: { ...colour, title: null, legend: { orient: 'bottom', direction: 'vertical', labelLimit: 500 } } },
      },
      {
        data: { values },
        mark: { type: 'circle', opacity: 0.85 },
        encoding: {
          x: { field: 'confidence', type: 'quantitative' },
          y: { field: 'accuracy', type: 'quantitative' },
          color: { ...colour, legend: null },
          size: { field: 'images', type: 'quantitative', title: 'images in bin', legend: { orient: 'right' } },
          tooltip: [{ field: 'series' }, { field: 'bin' }, { field: 'images' }, { field: 'confidence' }, { field: 'accuracy' }],
        },
      },
    ],
  };
}

function round4(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}
