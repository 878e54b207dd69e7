/**
 * The open-set score computed inside the ONNX graph, as one more output, so that serving needs nothing
 * but the model file: `open_set_score` `[N] float32`, higher = more like the trained artists.
 *
 * Tied-covariance Mahalanobis score (Lee et al. 2018, "A Simple Unified Framework for Detecting
 * Out-of-Distribution Samples and Adversarial Attacks", NeurIPS) in a whitened space: with a linear map
 * `z = x W - b` (`W` `[D,K]` folds standardisation, projection and whitening, see training/open-set.ts),
 * the squared Mahalanobis distance to class j is `||z - m_j||^2`, and
 *
 *   open_set_score = -min_j ||z - m_j||^2 = -min_j (||z||^2 - 2 z.m_j + ||m_j||^2)
 *
 * With `background` (relative Mahalanobis, Ren et al. 2021, "A Simple Fix to Mahalanobis Distance for
 * Improving Near-OOD Detection"), the distance to an all-class Gaussian, `||x W0 - b0||^2`, is added back:
 * `open_set_score = ||z0||^2 - min_j ||z - m_j||^2`.
 *
 * ONNX opset 12 ops: MatMul, Sub, Mul, Add, ReduceSumSquare, ReduceMin, Neg.
 */
import type { ModelProto } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { TENSOR } from './base.js';
import { floatTensor, node, valueInfo } from './graph.js';

/** Name of the graph output holding the open-set score. */
export const OPEN_SET_SCORE_OUTPUT = 'open_set_score';

/** A whitening map `z = x W - b` and centres in its space. */
export interface WhitenedCentres {
  /** Input width D (the features). */
  inputDim: number;
  /** Output width K. */
  dim: number;
  /** `[D,K]` row-major. */
  weight: Float32Array;
  /** `[K]`. */
  bias: Float32Array;
  /** `[C,K]` row-major: class means in the whitened space. */
  centres: Float32Array;
  /** Relative Mahalanobis: the all-class Gaussian's whitening (its centre is 0 in its space). */
  background?: { dim: number; weight: Float32Array; bias: Float32Array };
}

/**
 * Returns a copy of `model` with the output {@link OPEN_SET_SCORE_OUTPUT} `[N] float32` computed from
 * the graph's `features` output as described above. The other outputs and the metadata are unchanged.
 *
 * @throws Error when the model has no `features` tensor or already has the output, or the parameter
 *   sizes disagree (naming the parameter, expected and received lengths).
 */
export function withOpenSetScore(model: ModelProto, params: WhitenedCentres): ModelProto {
  const { inputDim: d, dim: k } = params;
  const c = params.centres.length / k;
  const check = (name: string, expected: number, received: number) => {
    if (expected !== received) throw new Error(`Expected ${expected} values for ${name} but received ${received}`);
  };
  check('weight ([D,K])', d * k, params.weight.length);
  check('bias ([K])', k, params.bias.length);
  if (!Number.isInteger(c) || c < 1) throw new Error(`Expected centres of [C,${k}] values but received ${params.centres.length}`);
  if (!model.graph.node.some((n) => n.output.includes(TENSOR.features))) throw new Error(`Expected a graph that computes ${TENSOR.features} but found none`);
  if (model.graph.output.some((o) => o.name === OPEN_SET_SCORE_OUTPUT)) throw new Error(`Expected a graph without an ${OPEN_SET_SCORE_OUTPUT} output but it has one`);

  const out: ModelProto = structuredClone(model);
  const g = out.graph;
  const p = 'open_set';
  const centresT = new Float32Array(k * c); // [K,C]
  const centreNorms = new Float32Array(c);
  for (let j = 0; j < c; j++) {
    for (let i = 0; i < k; i++) {
      const v = params.centres[j * k + i];
      centresT[i * c + j] = v;
      centreNorms[j] += v * v;
    }
  }
  g.initializer.push(
    floatTensor(`${p}/weight`, [d, k], params.weight),
    floatTensor(`${p}/bias`, [k], params.bias),
    floatTensor(`${p}/centres_t`, [k, c], centresT),
    floatTensor(`${p}/centre_norms`, [c], centreNorms),
    floatTensor(`${p}/minus_two`, [], [-2]),
  );
  g.node.push(
    node('MatMul', [TENSOR.features, `${p}/weight`], [`${p}/projected`], `${p}/project`),
    node('Sub', [`${p}/projected`, `${p}/bias`], [`${p}/z`], `${p}/centre`),
    node('ReduceSumSquare', [`${p}/z`], [`${p}/z_norm`], `${p}/z_norm`, { axes: [1], keepdims: 1 }),
    node('MatMul', [`${p}/z`, `${p}/centres_t`], [`${p}/dot`], `${p}/dot`),
    node('Mul', [`${p}/dot`, `${p}/minus_two`], [`${p}/minus_two_dot`], `${p}/scale_dot`),
    node('Add', [`${p}/minus_two_dot`, `${p}/z_norm`], [`${p}/partial`], `${p}/add_z_norm`),
    node('Add', [`${p}/partial`, `${p}/centre_norms`], [`${p}/distances`], `${p}/add_centre_norms`),
    node('ReduceMin', [`${p}/distances`], [`${p}/nearest`], `${p}/nearest`, { axes: [1], keepdims: 0 }),
  );
  if (params.background) {
    const b = params.background;
    check('background.weight ([D,K0])', d * b.dim, b.weight.length);
    check('background.bias ([K0])', b.dim, b.bias.length);
    g.initializer.push(floatTensor(`${p}/background_weight`, [d, b.dim], b.weight), floatTensor(`${p}/background_bias`, [b.dim], b.bias));
    g.node.push(
      node('MatMul', [TENSOR.features, `${p}/background_weight`], [`${p}/background_projected`], `${p}/background_project`),
      node('Sub', [`${p}/background_projected`, `${p}/background_bias`], [`${p}/background_z`], `${p}/background_centre`),
      node('ReduceSumSquare', [`${p}/background_z`], [`${p}/background_distance`], `${p}/background_distance`, { axes: [1], keepdims: 0 }),
      node('Sub', [`${p}/background_distance`, `${p}/nearest`], [OPEN_SET_SCORE_OUTPUT], `${p}/relative`),
    );
  } else {
    g.node.push(node('Neg', [`${p}/nearest`], [OPEN_SET_SCORE_OUTPUT], `${p}/score`));
  }
  g.output.push(valueInfo(OPEN_SET_SCORE_OUTPUT, DataType.FLOAT, ['N'], `open-set score, higher = more like the trained artists (${params.background ? 'relative ' : ''}Mahalanobis, tied covariance)`));
  return out;
}
