/**
 * Benchmark statistics: latency percentiles, measurement windows and the stability rule, as
 * NVIDIA's perf_analyzer defines them, so artist-id's figures read like perf_analyzer's.
 *
 * Sources:
 * - perf_analyzer CLI (`--measurement-interval` 5000 ms, `--stability-percentage` 10,
 *   `--max-trials` 10): https://github.com/triton-inference-server/perf_analyzer/blob/main/docs/cli.md
 * - measurement windows and stability check, percentile index:
 *   `InferenceProfiler::ProfileHelper` and `SummarizeLatency` in perf_analyzer's
 *   `inference_profiler.cc` (https://github.com/triton-inference-server/perf_analyzer/blob/main/src/inference_profiler.cc).
 */
import { expectInteger, invalidParameterError } from '../errors.js';

/** The percentiles every latency summary reports (perf_analyzer's fixed set). */
export const PERCENTILES = [50, 90, 95, 99] as const;

/** Latency summary of one set of samples; all times in ms. */
export interface LatencySummary {
  /** Samples summarised. */
  count: number;
  mean: number;
  /** Population standard deviation. */
  std: number;
  min: number;
  max: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
}

/**
 * The `p`-th percentile of ascending-sorted samples, by perf_analyzer's rule: the sample at index
 * `floor(p / 100 * (n - 1) + 0.5)` (nearest rank on the 0..n-1 scale, no interpolation, so the
 * value is always one that was measured).
 *
 * @param sorted - samples in ascending order (not checked, for speed; use {@link summarizeLatencies}
 *   on unsorted data).
 * @param p - percentile in [0, 100].
 * @throws Error naming `p` when it is outside [0, 100], or `sorted` when it is empty.
 * @example percentileOfSorted([1, 2, 3, 4], 50) // 3 (index floor(1.5 + 0.5) = 2)
 */
export function percentileOfSorted(sorted: ArrayLike<number>, p: number): number {
  if (typeof p !== 'number' || !Number.isFinite(p) || p < 0 || p > 100) throw invalidParameterError('p', 'a percentile between 0 and 100', p);
  if (sorted.length === 0) throw invalidParameterError('samples', 'at least one sample', '[]');
  return sorted[Math.floor((p / 100) * (sorted.length - 1) + 0.5)];
}

/**
 * Mean, standard deviation, extremes and p50/p90/p95/p99 of latency samples.
 *
 * @param samples - latencies in ms, any order; not modified.
 * @throws Error when `samples` is empty or holds a non-finite value.
 */
export function summarizeLatencies(samples: ArrayLike<number>): LatencySummary {
  if (samples.length === 0) throw invalidParameterError('samples', 'at least one latency sample', '[]');
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const x of sorted) {
    if (!Number.isFinite(x)) throw invalidParameterError('samples', 'finite latencies in ms', x);
    sum += x;
  }
  const mean = sum / sorted.length;
  let sq = 0;
  for (const x of sorted) sq += (x - mean) ** 2;
  return {
    count: sorted.length,
    mean,
    std: Math.sqrt(sq / sorted.length),
    min: sorted[0],
    max: sorted[sorted.length - 1],
    p50: percentileOfSorted(sorted, 50),
    p90: percentileOfSorted(sorted, 90),
    p95: percentileOfSorted(sorted, 95),
    p99: percentileOfSorted(sorted, 99),
  };
}

/** What one measurement window saw. */
export interface WindowSample {
  /** Wall time of the window in ms. */
  durationMs: number;
  /** Items (images) completed in the window. */
  items: number;
  /** Latency of each request/batch that ended in the window, ms. */
  latenciesMs: number[];
  /** Failed requests in the window (server runs); 0 in process. */
  errors?: number;
}

/** Throughput of a window in items/s (images/s). */
export function throughputOf(window: Pick<WindowSample, 'durationMs' | 'items'>): number {
  return window.durationMs > 0 ? (window.items * 1000) / window.durationMs : 0;
}

/** Which latency figure the stability rule checks besides throughput. */
export type StabilityLatency = 'mean' | 'p50' | 'p90' | 'p95' | 'p99';

/** Options of the stability rule; defaults are perf_analyzer's. */
export interface StabilityOptions {
  /**
   * Allowed deviation of each window from the mean of the last `windowCount` windows, in percent
   * (perf_analyzer `--stability-percentage`, default 10).
   */
  stabilityPercentage?: number;
  /** Windows that must agree (perf_analyzer's `stability_window`, fixed at 3). */
  windowCount?: number;
  /** Latency figure checked: perf_analyzer uses the mean, or the `--percentile` when given. */
  latency?: StabilityLatency;
}

/** Checked stability options with defaults applied. */
export function stabilityDefaults(options: StabilityOptions = {}): Required<StabilityOptions> {
  const stabilityPercentage = options.stabilityPercentage ?? 10;
  if (typeof stabilityPercentage !== 'number' || !Number.isFinite(stabilityPercentage) || stabilityPercentage <= 0 || stabilityPercentage >= 100) {
    throw invalidParameterError('stabilityPercentage', 'a percentage greater than 0 and below 100', stabilityPercentage);
  }
  const latency = options.latency ?? 'mean';
  if (!['mean', 'p50', 'p90', 'p95', 'p99'].includes(latency)) throw invalidParameterError('latency', 'one of mean, p50, p90, p95, p99', latency);
  return { stabilityPercentage, windowCount: expectInteger('windowCount', options.windowCount ?? 3, 1), latency };
}

/**
 * perf_analyzer's stability rule: the last `windowCount` windows are stable when each one's
 * throughput and latency lie within ±`stabilityPercentage`% of the mean of those windows (both
 * figures, every window). A window with no completed item, or with errors and nothing completed,
 * is never stable.
 *
 * @param windows - windows in the order measured; only the last `windowCount` are looked at.
 * @returns false while fewer than `windowCount` windows exist.
 * @example
 * isStable([w(100), w(104), w(97)])  // true: 100, 104, 97 are within 10% of 100.3
 * isStable([w(100), w(130), w(97)])  // false: 130 is 18% above 109
 */
export function isStable(windows: readonly WindowSample[], options: StabilityOptions = {}): boolean {
  const { stabilityPercentage, windowCount, latency } = stabilityDefaults(options);
  if (windows.length < windowCount) return false;
  const last = windows.slice(-windowCount);
  if (last.some((w) => w.items === 0 || w.latenciesMs.length === 0)) return false;
  const tolerance = stabilityPercentage / 100;
  const throughputs = last.map(throughputOf);
  const latencies = last.map((w) => summarizeLatencies(w.latenciesMs)[latency]);
  return withinTolerance(throughputs, tolerance) && withinTolerance(latencies, tolerance);
}

/** True when every value lies within ±tolerance (a fraction) of the values' mean. */
export function withinTolerance(values: readonly number[], tolerance: number): boolean {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return values.every((v) => v >= mean * (1 - tolerance) && v <= mean * (1 + tolerance));
}

/** Options of {@link measureUntilStable}. */
export interface MeasureOptions extends StabilityOptions {
  /** Most windows measured before giving up on stability (perf_analyzer `--max-trials`, default 10). */
  maxTrials?: number;
}

/** Outcome of windows measured until stable. */
export interface StableMeasurement {
  /** Every window measured, in order. */
  windows: WindowSample[];
  /** True when the last `windowCount` windows met the stability rule. */
  stable: boolean;
  /** Merged figures of the last `windowCount` windows (the ones the rule judged). */
  summary: WindowSummary;
}

/** Throughput and latency over merged windows. */
export interface WindowSummary {
  /** Items over total wall time of the merged windows, images/s. */
  itemsPerSecond: number;
  /** Items completed. */
  items: number;
  /** Total wall time of the merged windows, ms. */
  durationMs: number;
  errors: number;
  /** Latency over every sample of the merged windows, ms. */
  latency: LatencySummary;
}

/**
 * Merges windows: throughput is total items over total time (not a mean of rates), percentiles are
 * taken over all their samples. perf_analyzer prints the last window; merging the judged windows
 * uses three times the samples for p99 and is equal to it within the stability tolerance.
 *
 * @throws Error when the windows hold no latency sample at all.
 */
export function mergeWindows(windows: readonly WindowSample[]): WindowSummary {
  const items = windows.reduce((a, w) => a + w.items, 0);
  const durationMs = windows.reduce((a, w) => a + w.durationMs, 0);
  const errors = windows.reduce((a, w) => a + (w.errors ?? 0), 0);
  return {
    itemsPerSecond: durationMs > 0 ? (items * 1000) / durationMs : 0,
    items,
    durationMs,
    errors,
    latency: summarizeLatencies(windows.flatMap((w) => w.latenciesMs)),
  };
}

/**
 * Measures windows one after another until the last `windowCount` agree (see {@link isStable}) or
 * `maxTrials` windows were measured; the load must already be warmed up.
 *
 * @param measureWindow - measures one window; called at most `maxTrials` times, in sequence.
 */
export async function measureUntilStable(measureWindow: (index: number) => Promise<WindowSample>, options: MeasureOptions = {}): Promise<StableMeasurement> {
  const stability = stabilityDefaults(options);
  const maxTrials = expectInteger('maxTrials', options.maxTrials ?? 10, stability.windowCount);
  const windows: WindowSample[] = [];
  let stable = false;
  while (windows.length < maxTrials && !stable) {
    windows.push(await measureWindow(windows.length));
    stable = isStable(windows, stability);
  }
  const judged = windows.slice(-stability.windowCount).filter((w) => w.latenciesMs.length > 0);
  return { windows, stable, summary: mergeWindows(judged.length > 0 ? judged : windows) };
}

/**
 * `a / b` as a ratio, or undefined when either is missing or `b` is 0.
 */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return undefined;
  return a / b;
}

/**
 * Ratio of two configurations measured with alternating windows: the median over window pairs of
 * a[i] / b[i] (each pair measured back to back, so a burst of load on the machine hits both), which
 * one disturbed window cannot move much. Falls back to the ratio of the means when the window
 * counts differ.
 *
 * @param a - images/s of each window of the numerator, in measurement order.
 * @param b - the same for the denominator.
 */
export function pairedRatio(a: readonly number[], b: readonly number[]): number | undefined {
  if (a.length === 0 || b.length === 0) return undefined;
  if (a.length !== b.length) return ratio(a.reduce((x, y) => x + y, 0) / a.length, b.reduce((x, y) => x + y, 0) / b.length);
  const r = a.map((x, i) => x / b[i]).filter(Number.isFinite).sort((x, y) => x - y);
  if (r.length === 0) return undefined;
  const mid = r.length >> 1;
  return r.length % 2 === 1 ? r[mid] : (r[mid - 1] + r[mid]) / 2;
}

/** A ratio written as `N×` with 2 decimals (e.g. `1.07×`); `n/a` when undefined. */
export function formatRatio(r: number | undefined, digits = 2): string {
  return r === undefined ? 'n/a' : `${r.toFixed(digits)}×`;
}

/**
 * A seeded pseudo-random generator (mulberry32), uniform in [0, 1); used for Poisson arrivals so
 * an open-loop schedule is reproducible.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Send times of an open-loop schedule, ms from its start: `constant` spaces requests 1000/rate ms
 * apart; `poisson` draws exponential gaps with mean 1000/rate ms (a Poisson process of `rate`
 * requests/s), as perf_analyzer's `--request-distribution constant|poisson`.
 *
 * @param rate - requests/s, > 0.
 * @param durationMs - schedule length in ms; times are < durationMs.
 */
export function arrivalTimes(rate: number, durationMs: number, distribution: 'constant' | 'poisson', seed = 1): number[] {
  if (typeof rate !== 'number' || !Number.isFinite(rate) || rate <= 0) throw invalidParameterError('rate', 'requests/s greater than 0', rate);
  if (typeof durationMs !== 'number' || !Number.isFinite(durationMs) || durationMs < 0) throw invalidParameterError('durationMs', 'a duration in ms >= 0', durationMs);
  if (distribution !== 'constant' && distribution !== 'poisson') throw invalidParameterError('distribution', 'constant or poisson', distribution);
  const mean = 1000 / rate;
  const random = seededRandom(seed);
  const times: number[] = [];
  for (let t = 0; t < durationMs; ) {
    times.push(t);
    t += distribution === 'constant' ? mean : -mean * Math.log(1 - random());
  }
  return times;
}
