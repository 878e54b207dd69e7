/**
 * Limited-memory BFGS for smooth unconstrained minimisation: the two-loop recursion of Nocedal &
 * Wright 2006 ("Numerical Optimization", 2nd ed., Algorithm 7.4) with the initial Hessian scaling
 * `γ = sᵀy / yᵀy` of their eq. 7.20, and a backtracking line search on the Armijo condition
 * (`c1 = 1e-4`, their Algorithm 3.1). It is the solver scikit-learn's `LogisticRegression` uses by
 * default; here it fits the softmax-regression head (training/softmax-regression.ts).
 *
 * npm had no usable L-BFGS: `fmin` (benfred) offers only non-linear conjugate gradient, and its
 * releases are either an ESM package whose entry is a UMD bundle (0.0.4, no exports under Node) or pull
 * rollup/tape/uglify in as runtime dependencies (0.0.2).
 */
import { expectInteger, expectNumber } from '../src/errors.js';

/** Options of {@link minimizeLbfgs}. */
export interface LbfgsOptions {
  /** Correction pairs kept (m); default 10. */
  memory?: number;
  /** Iterations at most; default 500. */
  maxIterations?: number;
  /** Stop when `max_i |∂f/∂x_i|` falls to this; default 1e-5. */
  gradientTolerance?: number;
  /** Stop when an iteration lowers f by less than this times `max(|f|, 1)`; default 1e-10. */
  relativeDecrease?: number;
  /** Called after every accepted step with the new point (do not keep or modify it), f there, the 1-based iteration and the step length taken along the direction. */
  onIteration?: (x: Float64Array, value: number, iteration: number, step: number) => void;
}

/** Where {@link minimizeLbfgs} stopped. */
export interface LbfgsResult {
  x: Float64Array;
  /** f(x). */
  value: number;
  /** `max_i |∂f/∂x_i|` at x. */
  gradientMax: number;
  iterations: number;
  /** Calls of f (one per line-search trial). */
  evaluations: number;
  /** Which test stopped it. */
  stoppedBy: 'gradient' | 'decrease' | 'max-iterations' | 'line-search';
}

/**
 * Minimises `f` from `x0`.
 *
 * @param f - returns f(x) and writes ∇f(x) into its second argument (same length as x).
 * @param x0 - the starting point (not modified).
 * @returns the last accepted point, its value, and why the iteration stopped (`line-search` when no
 *   step along a descent direction lowered f, i.e. f is flat to rounding there).
 * @throws Error naming the option when an option is out of range, or when f returns a non-finite value at x0.
 * @example
 * // f(x) = (x0 - 3)² + 10 (x1 + 1)²  ->  x ≈ [3, -1]
 * minimizeLbfgs((x, g) => { g[0] = 2 * (x[0] - 3); g[1] = 20 * (x[1] + 1); return (x[0] - 3) ** 2 + 10 * (x[1] + 1) ** 2; }, new Float64Array(2)).x;
 */
export function minimizeLbfgs(f: (x: Float64Array, gradient: Float64Array) => number, x0: Float64Array, options: LbfgsOptions = {}): LbfgsResult {
  const m = expectInteger('memory', options.memory ?? 10, 1, 1000);
  const maxIterations = expectInteger('maxIterations', options.maxIterations ?? 500, 1);
  const gtol = expectNumber('gradientTolerance', options.gradientTolerance ?? 1e-5, 0);
  const ftol = expectNumber('relativeDecrease', options.relativeDecrease ?? 1e-10, 0);
  const n = x0.length;
  let x = Float64Array.from(x0);
  let g = new Float64Array(n);
  let value = f(x, g);
  let evaluations = 1;
  if (!Number.isFinite(value)) throw new Error(`Expected a finite objective at the starting point but received ${value}`);
  const s: Float64Array[] = [];
  const y: Float64Array[] = [];
  const rho: number[] = [];
  const direction = new Float64Array(n);
  const alpha = new Float64Array(m);
  let xNext = new Float64Array(n);
  let gNext = new Float64Array(n);

  for (let iteration = 0; iteration < maxIterations; iteration++) {
    if (maxAbs(g) <= gtol) return { x, value, gradientMax: maxAbs(g), iterations: iteration, evaluations, stoppedBy: 'gradient' };
    // Two-loop recursion: direction = -H g.
    direction.set(g);
    for (let i = s.length - 1; i >= 0; i--) {
      alpha[i] = rho[i] * dot(s[i], direction);
      axpy(-alpha[i], y[i], direction);
    }
    const k = s.length - 1;
    const gamma = k >= 0 ? dot(s[k], y[k]) / dot(y[k], y[k]) : 1 / Math.max(1, Math.sqrt(dot(g, g)));
    for (let i = 0; i < n; i++) direction[i] *= gamma;
    for (let i = 0; i < s.length; i++) axpy(alpha[i] - rho[i] * dot(y[i], direction), s[i], direction);
    for (let i = 0; i < n; i++) direction[i] = -direction[i];
    let slope = dot(direction, g);
    if (!(slope < 0)) {
      // Not a descent direction (rounding in the curvature pairs): restart from steepest descent.
      s.length = y.length = rho.length = 0;
      const scale = 1 / Math.max(1, Math.sqrt(dot(g, g)));
      for (let i = 0; i < n; i++) direction[i] = -g[i] * scale;
      slope = dot(direction, g);
    }
    // Backtracking on the Armijo condition f(x + t d) <= f(x) + c1 t ∇fᵀd.
    let t = 1;
    let next = NaN;
    for (let trial = 0; trial < 50; trial++, t *= 0.5) {
      for (let i = 0; i < n; i++) xNext[i] = x[i] + t * direction[i];
      next = f(xNext, gNext);
      evaluations++;
      if (Number.isFinite(next) && next <= value + 1e-4 * t * slope) break;
    }
    if (!(Number.isFinite(next) && next <= value + 1e-4 * t * slope)) {
      return { x, value, gradientMax: maxAbs(g), iterations: iteration, evaluations, stoppedBy: 'line-search' };
    }
    const sk = new Float64Array(n);
    const yk = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      sk[i] = xNext[i] - x[i];
      yk[i] = gNext[i] - g[i];
    }
    const sy = dot(sk, yk);
    // Keep the pair only with positive curvature, so the implicit inverse Hessian stays positive definite.
    if (sy > 1e-12 * Math.sqrt(dot(sk, sk) * dot(yk, yk))) {
      if (s.length === m) {
        s.shift();
        y.shift();
        rho.shift();
      }
      s.push(sk);
      y.push(yk);
      rho.push(1 / sy);
    }
    const decrease = value - next;
    [x, xNext] = [xNext, x];
    [g, gNext] = [gNext, g];
    value = next;
    options.onIteration?.(x, value, iteration + 1, t);
    if (decrease <= ftol * Math.max(Math.abs(value), 1)) {
      return { x, value, gradientMax: maxAbs(g), iterations: iteration + 1, evaluations, stoppedBy: 'decrease' };
    }
  }
  return { x, value, gradientMax: maxAbs(g), iterations: maxIterations, evaluations, stoppedBy: 'max-iterations' };
}

function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

/** y += a x. */
function axpy(a: number, x: Float64Array, y: Float64Array): void {
  for (let i = 0; i < x.length; i++) y[i] += a * x[i];
}

function maxAbs(a: Float64Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]));
  return max;
}
