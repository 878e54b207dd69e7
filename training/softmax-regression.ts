/**
 * Multinomial logistic (softmax) regression solved to convergence on the whole training set, the way
 * it is fitted in statistics (scikit-learn's `LogisticRegression` with its default L-BFGS solver),
 * rather than by mini-batch Adam stopped early on a noisy validation accuracy.
 *
 * Objective (convex; the loss and penalty of the Keras head, so `l2` means the same there and here):
 *
 *   J(W, b) = -(1/N) Σ_i Σ_c t_ic log softmax(x_i W + b)_c  +  l2 · Σ W²
 *
 * with `t` the (optionally label-smoothed) targets; gradient `∂J/∂W = Xᵀ(P - T)/N + 2·l2·W`,
 * `∂J/∂b = Σ_i (P - T)_i / N`. Minimised by L-BFGS (training/lbfgs.ts) from zero, the matrix products
 * in TF.js. With `l2 > 0` the minimiser is unique, so the fit depends on neither a seed nor the
 * initialisation, and no epoch has to be chosen on validation.
 */
import * as tf from '@tensorflow/tfjs';
import { expectInteger, expectNumber } from '../src/errors.js';
import { minimizeLbfgs, type LbfgsResult } from './lbfgs.js';

/** Options of {@link fitSoftmaxRegression}. */
export interface SoftmaxRegressionOptions {
  /** L2 penalty on the kernel (Keras `regularizers.l2` convention: `l2 · Σ W²`); > 0. */
  l2: number;
  /** Label smoothing eps in [0,1): targets `(1 - eps) · onehot + eps / C`; default 0. */
  labelSmoothing?: number;
  /** L-BFGS iterations at most; default 500. */
  maxIterations?: number;
  /** Standardised validation rows, measured after every iteration for the history (never used to fit). */
  validation?: { x: Float32Array; labels: readonly number[] };
}

/** One L-BFGS iteration, in the units of the Adam head's epoch log. */
export interface SoftmaxRegressionStep {
  /** 1-based. */
  iteration: number;
  /** J (cross-entropy + penalty) on the training rows. */
  objective: number;
  /** Training accuracy, 0-1. */
  accuracy: number;
  /** Validation cross-entropy (no penalty) and accuracy; NaN without `validation`. */
  valLoss: number;
  valAccuracy: number;
  /** Step length the line search accepted along the L-BFGS direction. */
  step: number;
}

/** The fitted map `logits = x W + b`. */
export interface SoftmaxRegressionFit {
  /** `[D,C]` float32 row-major. */
  kernel: Float32Array;
  /** `[C]` float32. */
  bias: Float32Array;
  /** J at the solution. */
  objective: number;
  /** `max |∂J/∂w|` at the solution. */
  gradientMax: number;
  /** Objective (and gradient) evaluations used. */
  evaluations: number;
  stoppedBy: LbfgsResult['stoppedBy'];
  history: SoftmaxRegressionStep[];
}

/**
 * Fits softmax regression on standardised features.
 *
 * @param x - `[N,D]` float32 row-major, already standardised (training/head.ts `standardize`).
 * @param labels - N class indices in [0, classes).
 * @returns the kernel and bias minimising J (see the file comment) and the per-iteration history.
 * @throws Error naming the parameter when `x` is not N×D, a label is out of range, `l2` is not > 0,
 *   `labelSmoothing` is not in [0,1) or `maxIterations` is not a positive integer.
 * @example
 * const fit = fitSoftmaxRegression(standardize(train.x, s), train.y, 1280, 11, { l2: 1e-3 });
 * dense.setWeights([tf.tensor2d(fit.kernel, [1280, 11]), tf.tensor1d(fit.bias)]);
 */
export function fitSoftmaxRegression(x: Float32Array, labels: readonly number[], featureDim: number, classes: number, options: SoftmaxRegressionOptions): SoftmaxRegressionFit {
  const d = expectInteger('featureDim', featureDim, 1);
  const c = expectInteger('classes', classes, 2);
  const l2 = expectNumber('l2', options.l2, Number.MIN_VALUE);
  const eps = expectNumber('labelSmoothing', options.labelSmoothing ?? 0, 0, 0.999);
  const maxIterations = expectInteger('maxIterations', options.maxIterations ?? 500, 1);
  checkRows('x', x, labels, d, c);
  if (options.validation) checkRows('validation.x', options.validation.x, options.validation.labels, d, c);
  const n = labels.length;

  const X = tf.tensor2d(x, [n, d]);
  const T = tf.tidy(() => tf.oneHot(tf.tensor1d(labels as number[], 'int32'), c).toFloat().mul(1 - eps).add(eps / c));
  const yTrain = tf.tensor1d(labels as number[], 'int32');
  const val = options.validation && {
    X: tf.tensor2d(options.validation.x, [options.validation.labels.length, d]),
    y: tf.tensor1d(options.validation.labels as number[], 'int32'),
  };
  const weightsOf = (w: Float64Array) => ({ W: tf.tensor2d(Float32Array.from(w.subarray(0, d * c)), [d, c]), b: tf.tensor1d(Float32Array.from(w.subarray(d * c))) });
  const history: SoftmaxRegressionStep[] = [];
  let lastAccuracy = NaN;
  let evaluations = 0;

  // The parameters are one vector: the kernel row-major, then the bias.
  const objective = (w: Float64Array, gradient: Float64Array): number =>
    tf.tidy(() => {
      const { W, b } = weightsOf(w);
      const logP = tf.logSoftmax(X.matMul(W).add(b));
      const loss = T.mul(logP).sum().neg().div(n).add(W.square().sum().mul(l2));
      const g = logP.exp().sub(T).div(n);
      gradient.set(X.matMul(g, true, false).add(W.mul(2 * l2)).dataSync());
      gradient.set(g.sum(0).dataSync(), d * c);
      // The line search's last evaluation is the accepted point, so this is its training accuracy.
      lastAccuracy = logP.argMax(1).equal(yTrain).mean().dataSync()[0];
      evaluations++;
      return loss.dataSync()[0];
    });
  const onIteration = (w: Float64Array, value: number, iteration: number, step: number): void => {
    const [valLoss, valAccuracy] = val
      ? tf.tidy(() => {
          const { W, b } = weightsOf(w);
          const logP = tf.logSoftmax(val.X.matMul(W).add(b));
          const picked = logP.mul(tf.oneHot(val.y, c)).sum(1);
          return [picked.mean().neg().dataSync()[0], logP.argMax(1).equal(val.y).mean().dataSync()[0]];
        })
      : [NaN, NaN];
    history.push({ iteration, objective: value, accuracy: lastAccuracy, valLoss, valAccuracy, step });
  };
  try {
    const solution = minimizeLbfgs(objective, new Float64Array(d * c + c), { maxIterations, onIteration });
    return {
      kernel: Float32Array.from(solution.x.subarray(0, d * c)),
      bias: Float32Array.from(solution.x.subarray(d * c)),
      objective: solution.value,
      gradientMax: solution.gradientMax,
      evaluations,
      stoppedBy: solution.stoppedBy,
      history,
    };
  } finally {
    tf.dispose([X, T, yTrain, ...(val ? [val.X, val.y] : [])]);
  }
}

function checkRows(name: string, x: Float32Array, labels: readonly number[], d: number, c: number): void {
  if (labels.length === 0 || x.length !== labels.length * d) {
    throw new Error(`Expected ${name} of ${labels.length}×${d} = ${labels.length * d} values (one row of ${d} per label) but received ${x.length}`);
  }
  labels.forEach((y, i) => {
    if (!Number.isInteger(y) || y < 0 || y >= c) throw new Error(`Expected labels[${i}] of ${name} to be a class index in [0, ${c - 1}] but received ${y}`);
  });
}
