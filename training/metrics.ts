/** Classification metrics on a held-out split. */

/** Per-class precision and recall, and their support (true images of the class). */
export interface ClassMetrics {
  artist: string;
  precision: number;
  recall: number;
  support: number;
}

export interface ClassificationReport {
  images: number;
  accuracy: number;
  perClass: ClassMetrics[];
  /** `confusion[true][predicted]` counts. */
  confusion: number[][];
}

/**
 * Accuracy, per-class precision/recall and the confusion matrix.
 * Precision of a class never predicted is reported as 0 (scikit-learn's `zero_division=0`).
 *
 * @param truth - true class indices.
 * @param predicted - predicted class indices, same length.
 */
export function classificationReport(truth: number[], predicted: number[], classes: string[]): ClassificationReport {
  if (truth.length !== predicted.length) throw new Error(`Expected as many predictions as labels but received ${predicted.length} for ${truth.length}`);
  const c = classes.length;
  const confusion = Array.from({ length: c }, () => new Array<number>(c).fill(0));
  truth.forEach((t, i) => confusion[t][predicted[i]]++);
  const correct = truth.filter((t, i) => t === predicted[i]).length;
  const perClass = classes.map((artist, k) => {
    const tp = confusion[k][k];
    const predictedK = confusion.reduce((s, row) => s + row[k], 0);
    const support = confusion[k].reduce((s, v) => s + v, 0);
    return { artist, precision: predictedK ? tp / predictedK : 0, recall: support ? tp / support : 0, support };
  });
  return { images: truth.length, accuracy: truth.length ? correct / truth.length : 0, perClass, confusion };
}

/** Index of the largest value in each row of a `[N,C]` row-major matrix. */
export function argmaxRows(values: ArrayLike<number>, c: number): number[] {
  const n = values.length / c;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < c; j++) if (values[i * c + j] > values[i * c + best]) best = j;
    out.push(best);
  }
  return out;
}

/**
 * Wilson score interval for a binomial proportion (Wilson 1927), the usual choice for accuracy on
 * small test sets: it stays inside [0,1] and is not degenerate at 0% or 100%.
 *
 * @param successes - correct predictions.
 * @param n - images.
 * @param z - normal quantile; 1.96 for 95%.
 * @returns `[low, high]` as fractions.
 */
export function wilsonInterval(successes: number, n: number, z = 1.96): [number, number] {
  if (n === 0) return [0, 1];
  const p = successes / n;
  const denom = 1 + (z * z) / n;
  const centre = (p + (z * z) / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / denom;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** Accuracy as `93.3% (28/30; 95% CI 78.7–98.2%)`. */
export function formatAccuracy(accuracy: number, images: number): string {
  const k = Math.round(accuracy * images);
  const [lo, hi] = wilsonInterval(k, images);
  return `${(100 * accuracy).toFixed(1)}% (${k}/${images}; 95% CI ${(100 * lo).toFixed(1)}–${(100 * hi).toFixed(1)}%)`;
}

/** Formats a report as aligned text: accuracy, per-artist table, confusion matrix. */
export function formatReport(report: ClassificationReport): string {
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  const width = Math.max(...report.perClass.map((m) => m.artist.length), 6);
  const lines = [`accuracy: ${formatAccuracy(report.accuracy, report.images)}`, '', `${'artist'.padEnd(width)}  precision  recall  support`];
  for (const m of report.perClass) lines.push(`${m.artist.padEnd(width)}  ${pct(m.precision).padStart(9)}  ${pct(m.recall).padStart(6)}  ${String(m.support).padStart(7)}`);
  lines.push('', 'confusion matrix (rows: true artist, columns: predicted, in the order above):');
  report.confusion.forEach((row, i) => lines.push(`${report.perClass[i].artist.padEnd(width)}  ${row.map((v) => String(v).padStart(3)).join(' ')}`));
  return lines.join('\n');
}
