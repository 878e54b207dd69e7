/**
 * Converts a trained TF.js dense head (standardiser + Dense/BatchNormalization/Activation/Dropout
 * layers) to ONNX nodes that read `features` `[N,D]` and write `logits` and `probabilities` `[N,C]`.
 *
 * Mapping (TF.js/Keras -> ONNX opset 12):
 * - standardiser: `Sub(mean)`, `Mul(invStd)`;
 * - Dense: `MatMul(kernel [in,out])`, `Add(bias)`, then the activation (`Relu`, `Sigmoid`, `Tanh`;
 *   `linear` adds nothing); a final `softmax` activation becomes `logits` -> `Softmax(axis=1)`;
 * - BatchNormalization (inference mode: moving statistics, Keras semantics
 *   `y = gamma * (x - movingMean) / sqrt(movingVariance + epsilon) + beta`, Ioffe & Szegedy 2015 sec. 3.1):
 *   after a linear Dense it is folded into that Dense, `W' = W * s`, `b' = (b - movingMean) * s + beta`
 *   with `s = gamma / sqrt(movingVariance + epsilon)` per output unit (computed in float64, so the
 *   exported graph has no BN node); elsewhere it becomes `Mul(s)`, `Add(beta - movingMean * s)`;
 * - Activation: `Relu`, `Sigmoid`, `Tanh` (not as last layer);
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
  const emitActivation = (activation: string, layerName: string, name: string) => {
    if (!(activation in ACTIVATIONS)) throw new Error(`Cannot export head layer "${layerName}": activation ${activation} is not supported`);
    const op = ACTIVATIONS[activation];
    if (op) {
      nodes.push(node(op, [current], [`${name}/${activation}`], `${name}/${activation}`));
      current = `${name}/${activation}`;
    }
  };
  for (let index = 0; index < layers.length; index++) {
    const layer = layers[index];
    const cls = layer.getClassName();
    const isLast = index === layers.length - 1;
    const name = `head/${layer.name}`;
    if (cls === 'Dropout') {
      if (isLast) throw new Error(`Cannot export head: last layer "${layer.name}" is Dropout; expected a softmax Dense`);
      continue;
    }
    if (cls === 'Activation') {
      const activation = (layer.getConfig() as { activation?: string }).activation ?? 'linear';
      if (isLast) throw new Error(`Cannot export head: last layer "${layer.name}" is Activation(${activation}); expected a softmax Dense`);
      emitActivation(activation, layer.name, name);
      continue;
    }
    if (cls === 'BatchNormalization') {
      if (isLast) throw new Error(`Cannot export head: last layer "${layer.name}" is BatchNormalization; expected a softmax Dense`);
      const { scale, shift } = batchNormAffine(layer);
      initializers.push(floatTensor(`${name}/scale`, [scale.length], scale), floatTensor(`${name}/shift`, [shift.length], shift));
      nodes.push(node('Mul', [current, `${name}/scale`], [`${name}/scaled`], `${name}/mul`));
      nodes.push(node('Add', [`${name}/scaled`, `${name}/shift`], [`${name}/out`], `${name}/add`));
      current = `${name}/out`;
      continue;
    }
    if (cls !== 'Dense') throw new Error(`Cannot export head layer "${layer.name}" of class ${cls}: only Dense, BatchNormalization, Activation and Dropout are supported here`);
    const config = layer.getConfig() as { activation?: string; useBias?: boolean; units: number };
    const activation = config.activation ?? 'linear';
    const [kernelTensor, biasTensor] = layer.getWeights();
    const [inDim, outDim] = kernelTensor.shape as [number, number];
    let kernel: ArrayLike<number> = kernelTensor.dataSync();
    let bias: ArrayLike<number> | undefined = config.useBias !== false && biasTensor ? biasTensor.dataSync() : undefined;
    const next = layers[index + 1];
    if (!isLast && next?.getClassName() === 'BatchNormalization' && activation === 'linear') {
      // Fold BN (inference mode) into this Dense: y = (xW + b - m) * s + beta = x (W s) + ((b - m) s + beta).
      const { scale, shift } = batchNormAffine(next);
      if (scale.length !== outDim) throw new Error(`Cannot fold BatchNormalization "${next.name}" (${scale.length} channels) into Dense "${layer.name}" (${outDim} units)`);
      const folded = new Float64Array(inDim * outDim);
      for (let i = 0; i < inDim; i++) for (let j = 0; j < outDim; j++) folded[i * outDim + j] = kernel[i * outDim + j] * scale[j];
      const foldedBias = new Float64Array(outDim);
      for (let j = 0; j < outDim; j++) foldedBias[j] = (bias ? bias[j] : 0) * scale[j] + shift[j];
      kernel = folded;
      bias = foldedBias;
      index++;
    }
    initializers.push(floatTensor(`${name}/kernel`, [inDim, outDim], kernel));
    nodes.push(node('MatMul', [current, `${name}/kernel`], [`${name}/matmul`], `${name}/matmul`));
    current = `${name}/matmul`;
    if (bias) {
      initializers.push(floatTensor(`${name}/bias`, [outDim], bias));
      const out = isLast ? TENSOR.logits : `${name}/biased`;
      nodes.push(node('Add', [current, `${name}/bias`], [out], `${name}/bias_add`));
      current = out;
    }
    if (isLast) {
      if (activation !== 'softmax') throw new Error(`Cannot export head: last layer "${layer.name}" has activation ${activation}; expected softmax`);
      if (current !== TENSOR.logits) nodes.push(node('Identity', [current], [TENSOR.logits], 'head/logits'));
      nodes.push(node('Softmax', [TENSOR.logits], [TENSOR.probabilities], 'head/softmax', { axis: 1 }));
      continue;
    }
    emitActivation(activation, layer.name, name);
  }
  return { nodes, initializers };
}

/**
 * A BatchNormalization layer in inference mode as a per-channel affine map `y = x * scale + shift`:
 * `scale = gamma / sqrt(movingVariance + epsilon)`, `shift = beta - movingMean * scale` (float64;
 * gamma = 1 when `scale: false`, beta = 0 when `center: false`).
 *
 * @throws Error naming the layer when it does not normalise the last axis of a 2-D input or lacks its
 *   moving statistics.
 */
export function batchNormAffine(layer: tf.layers.Layer): { scale: Float64Array; shift: Float64Array } {
  const config = layer.getConfig() as { axis?: number | number[]; epsilon?: number };
  const axis = Array.isArray(config.axis) ? config.axis : [config.axis ?? -1];
  if (!(axis.length === 1 && (axis[0] === -1 || axis[0] === 1))) {
    throw new Error(`Cannot export BatchNormalization "${layer.name}": expected axis -1 (features of [N,D]) but received ${JSON.stringify(config.axis)}`);
  }
  const epsilon = config.epsilon ?? 1e-3;
  const values = new Map<string, Float32Array>();
  layer.weights.forEach((w, i) => values.set(w.name.split('/').pop()!.replace(/_\d+$/, ''), layer.getWeights()[i].dataSync() as Float32Array));
  const mean = values.get('moving_mean');
  const variance = values.get('moving_variance');
  if (!mean || !variance) throw new Error(`Cannot export BatchNormalization "${layer.name}": expected weights moving_mean and moving_variance but it has ${[...values.keys()].join(', ')}`);
  const gamma = values.get('gamma');
  const beta = values.get('beta');
  const scale = new Float64Array(mean.length);
  const shift = new Float64Array(mean.length);
  for (let j = 0; j < mean.length; j++) {
    scale[j] = (gamma ? gamma[j] : 1) / Math.sqrt(variance[j] + epsilon);
    shift[j] = (beta ? beta[j] : 0) - mean[j] * scale[j];
  }
  return { scale, shift };
}
