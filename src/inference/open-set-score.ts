/**
 * Open-set scores computed from a model's class outputs, `msp` from `probabilities` and `energy` from
 * `logits` (see `OPEN_SET_SCORES` in model/card.ts). Pure maths with no runtime dependency: serving
 * (`openSetVerdicts` in classifier.ts) and training (the thresholds in training/open-set.ts) both call
 * it, so a threshold is chosen on exactly the numbers it is later compared with.
 */

/** The scores read from the `[N,C]` class outputs rather than from a graph output of their own. */
export type OutputOpenSetScore = 'msp' | 'energy';

/**
 * The open-set score of every row of a `[N,C]` output, higher = more like the trained artists:
 * `msp` = the largest value of the row (of `probabilities`, Hendrycks & Gimpel 2017); `energy` =
 * logsumexp of the row (of `logits`, the negative free energy of Liu et al. 2020), computed as
 * `max + log(sum exp(v - max))`. Arithmetic in float64 on the values as given (float32 model outputs).
 *
 * @param data - `[N,C]` row-major: `probabilities` for `msp`, `logits` for `energy`.
 * @param c - classes per row.
 * @returns `[N]` scores; a row holding NaN scores NaN (for `energy` also a row holding +Infinity or only
 *   -Infinity), which the runtime reports `unknown`.
 * @throws Error when `c` is not a positive integer or `data.length` is not a multiple of it.
 * @example
 * outputOpenSetScores('energy', [0, Math.log(2), Math.log(3)], 3); // [log 6]
 * outputOpenSetScores('msp', [0.7, 0.2, 0.1, 0.4, 0.35, 0.25], 3); // [0.7, 0.4]
 */
export function outputOpenSetScores(score: OutputOpenSetScore, data: ArrayLike<number>, c: number): Float64Array {
  if (!Number.isInteger(c) || c < 1) throw new Error(`Expected a positive integer for c (classes per row) but received ${c}`);
  if (data.length % c !== 0) throw new Error(`Expected [N,${c}] values (a multiple of ${c}) for the ${score} score but received ${data.length}`);
  const n = data.length / c;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let j = 0; j < c; j++) max = Math.max(max, data[i * c + j]);
    if (score === 'msp') {
      out[i] = max;
      continue;
    }
    let sum = 0;
    for (let j = 0; j < c; j++) sum += Math.exp(data[i * c + j] - max);
    out[i] = max + Math.log(sum);
  }
  return out;
}
