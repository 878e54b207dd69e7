/**
 * Converts a trained TF.js dense head (standardiser + Dense/Dropout layers) to ONNX nodes that read
 * `features` `[N,D]` and write `logits` and `probabilities` `[N,C]`.
 *
 * Mapping (TF.js/Keras -> ONNX opset 12):
 * - standardiser: `Sub(mean)`, `Mul(invStd)`;
 * - Dense: `MatMul(kernel [in,out])`, `Add(bias)`, then the activation (`Relu`, `Sigmoid`, `Tanh`;
 *   `linear` adds nothing); a final `softmax` activation becomes `logits` -> `Softmax(axis=1)`;
 * - Dropout: identity at inference (Keras applies it only in training).
 */
import type * as tf from '@tensorflow/tfjs';
import type { NodeProto, TensorProto } from '../src/onnx/model.js';
import { TENSOR } from './base.js';
import { floatTensor, node } from './graph.js';

/** Per-feature standardisation applied before the first Dense: `(x - mean) * invStd`, `[D]` each. */
export interface Standardizer {
  mean: Float32Array;
  invStd: Float32Array;
}

/** ONNX nodes and initializers of a head. */
export interface HeadGraph {
  nodes: NodeProto[];
  initializers: TensorProto[];
}

const ACTIVATIONS: Record<string, string | null> = { linear: null, relu: 'Relu', sigmoid: 'Sigmoid', tanh: 'Tanh' };

/**
 * Emits the head as ONNX.
 *
 * @throws Error naming the layer when it is of a class or activation this exporter does not map,
 *   or when the last layer is not a softmax Dense.
 */
export function headToOnnx(model: tf.LayersModel, standardizer: Standardizer): HeadGraph {
  const d = standardizer.mean.length;
  const nodes: NodeProto[] = [
    node('Sub', [TENSOR.features, 'head/mean'], ['head/centred'], 'head/standardize_sub'),
    node('Mul', ['head/centred', 'head/inv_std'], ['head/standardized'], 'head/standardize_mul'),
  ];
  const initializers: TensorProto[] = [floatTensor('head/mean', [d], standardizer.mean), floatTensor('head/inv_std', [d], standardizer.invStd)];
  let current = 'head/standardized';
  const layers = model.layers;
  layers.forEach((layer, index) => {
    const cls = layer.getClassName();
    const isLast = index === layers.length - 1;
    if (cls === 'Dropout') {
      if (isLast) throw new Error(`Cannot export head: last layer "${layer.name}" is Dropout; expected a softmax Dense`);
      return;
    }
    if (cls !== 'Dense') throw new Error(`Cannot export head layer "${layer.name}" of class ${cls}: only Dense and Dropout are supported here`);
    const config = layer.getConfig() as { activation?: string; useBias?: boolean; units: number };
    const [kernel, bias] = layer.getWeights();
    const [inDim, outDim] = kernel.shape as [number, number];
    const name = `head/${layer.name}`;
    initializers.push(floatTensor(`${name}/kernel`, [inDim, outDim], kernel.dataSync()));
    nodes.push(node('MatMul', [current, `${name}/kernel`], [`${name}/matmul`], `${name}/matmul`));
    current = `${name}/matmul`;
    if (config.useBias !== false && bias) {
      initializers.push(floatTensor(`${name}/bias`, [outDim], bias.dataSync()));
      const out = isLast ? TENSOR.logits : `${name}/biased`;
      nodes.push(node('Add', [current, `${name}/bias`], [out], `${name}/bias_add`));
      current = out;
    }
    const activation = config.activation ?? 'linear';
    if (isLast) {
      if (activation !== 'softmax') throw new Error(`Cannot export head: last layer "${layer.name}" has activation ${activation}; expected softmax`);
      if (current !== TENSOR.logits) nodes.push(node('Identity', [current], [TENSOR.logits], 'head/logits'));
      nodes.push(node('Softmax', [TENSOR.logits], [TENSOR.probabilities], 'head/softmax', { axis: 1 }));
      return;
    }
    if (!(activation in ACTIVATIONS)) throw new Error(`Cannot export head layer "${layer.name}": activation ${activation} is not supported`);
    const op = ACTIVATIONS[activation];
    if (op) {
      nodes.push(node(op, [current], [`${name}/${activation}`], `${name}/${activation}`));
      current = `${name}/${activation}`;
    }
  });
  return { nodes, initializers };
}
