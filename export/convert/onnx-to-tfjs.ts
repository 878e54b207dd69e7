/**
 * ONNX image classifier -> TF.js LayersModel (functional, tf.layers only plus the registered
 * {@link ClipLayer}).
 *
 * - Input: ONNX `[N,C,H,W] float32 NCHW` becomes TF.js `[N,H,W,C] float32 NHWC` (same values,
 *   transposed; e.g. MobileNetV2 `input [N,3,224,224]` normalised -> `[N,224,224,3]` normalised).
 * - Outputs: `[N,K]` unchanged; rank-4 outputs stay NHWC.
 * - QOperator int8 models are first dequantised to float ONNX ({@link dequantizeModel}).
 *
 * Supported ONNX ops: Conv (group 1 or depthwise), BatchNormalization, Relu, Clip, LeakyRelu, Elu,
 * Selu, Sigmoid, Tanh, Softplus, Softsign, Softmax, Add/Sum/Mul (same shapes), Concat,
 * GlobalAveragePool, GlobalMaxPool, MaxPool, AveragePool, Gemm, MatMul, Flatten, Reshape (to
 * `[N,-1]`), Identity, Dropout, Constant, and Shape/Gather/Unsqueeze/Concat on static shapes.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelProto } from '../../src/onnx/model.js';
import { toNumber } from '../../src/onnx/model.js';
import { type ClipPolicy, dequantizeModel, isQuantized } from './dequantize.js';
import { fuseMatMulAdd } from './fuse.js';
import { ImportContext } from './import-context.js';
import { constValues, describeNode } from './onnx-values.js';
import * as activation from './ops/activation.js';
import * as conv from './ops/conv.js';
import * as dense from './ops/dense.js';
import * as merge from './ops/merge.js';
import * as pool from './ops/pool.js';
import * as shape from './ops/shape.js';
import type { OpConverter } from './ops/types.js';
import './clip-layer.js';

const CONVERTERS: Record<string, OpConverter> = {
  Conv: conv.Conv,
  BatchNormalization: conv.BatchNormalization,
  Relu: activation.Relu,
  Clip: activation.Clip,
  LeakyRelu: activation.LeakyRelu,
  Elu: activation.Elu,
  Selu: activation.Selu,
  Sigmoid: activation.Sigmoid,
  Tanh: activation.Tanh,
  Softplus: activation.Softplus,
  Softsign: activation.Softsign,
  Softmax: activation.Softmax,
  Add: merge.Add,
  Sum: merge.Sum,
  Mul: merge.Mul,
  Concat: merge.Concat,
  GlobalAveragePool: pool.GlobalAveragePool,
  GlobalMaxPool: pool.GlobalMaxPool,
  MaxPool: pool.MaxPool,
  AveragePool: pool.AveragePool,
  Gemm: dense.Gemm,
  MatMul: dense.MatMul,
  Flatten: shape.Flatten,
  Reshape: shape.Reshape,
  Identity: shape.Identity,
  Dropout: shape.Dropout,
  Constant: shape.Constant,
  Shape: shape.Shape,
  Gather: shape.Gather,
  Unsqueeze: shape.Unsqueeze,
};

/** ONNX op types the importer converts (after dequantisation). */
export const SUPPORTED_ONNX_OPS = Object.keys(CONVERTERS);

export interface ImportOptions {
  /** Saturation of dequantised activations (int8 models only); default 'all'. */
  clip?: ClipPolicy;
  /** Name of the TF.js model. */
  name?: string;
}

export interface ImportResult {
  model: tf.LayersModel;
  /** TF.js input shape, e.g. `[null, 224, 224, 3]` (NHWC, dynamic batch). */
  inputShape: (number | null)[];
  /** ONNX graph input / output names, in TF.js model order. */
  inputNames: string[];
  outputNames: string[];
  /** What was done beyond a 1:1 op mapping (dequantisation, fusions, dropped nodes). */
  notes: string[];
}

/**
 * Converts an ONNX model (float, or QOperator int8) to a TF.js LayersModel with the weights loaded.
 * Needs an initialised TF.js backend (`initTrainingBackend()`).
 *
 * @throws Error naming the ONNX node and op type for anything not supported, e.g.
 *   `ONNX node "Resize_3" (Resize): op Resize is not supported`.
 */
export async function importOnnxToTfjs(source: ModelProto, opts: ImportOptions = {}): Promise<ImportResult> {
  await tf.ready();
  const notes: string[] = [];
  let model = source;
  if (isQuantized(source)) {
    const dq = dequantizeModel(source, { clip: opts.clip });
    model = dq.model;
    notes.push(...dq.notes);
  } else {
    model = structuredClone(source);
  }
  const graph = model.graph;
  notes.push(...fuseMatMulAdd(graph));

  const ctx = new ImportContext();
  for (const t of graph.initializer) ctx.values.set(t.name ?? '', { kind: 'const', c: constValues(t) });
  const inputs: tf.SymbolicTensor[] = [];
  const inputNames: string[] = [];
  let inputShape: (number | null)[] = [];
  for (const vi of graph.input) {
    if (ctx.values.has(vi.name)) continue; // initializers listed as inputs (IR < 4)
    const dims = (vi.type?.tensor_type?.shape?.dim ?? []).map((d) => (d.dim_value !== undefined && d.dim_value !== null ? toNumber(d.dim_value) : null));
    if (vi.type?.tensor_type?.elem_type !== 1) throw new Error(`Graph input "${vi.name}" must be float32`);
    let tfShape: (number | null)[];
    let layout: 'nhwc' | 'plain';
    if (dims.length === 4) {
      const [, c, h, w] = dims;
      if (c === null || h === null || w === null) throw new Error(`Graph input "${vi.name}" needs static C, H, W (got [${dims.join(',')}])`);
      tfShape = [h, w, c];
      layout = 'nhwc';
    } else if (dims.length === 2 && dims[1] !== null) {
      tfShape = [dims[1]];
      layout = 'plain';
    } else {
      throw new Error(`Graph input "${vi.name}" of shape [${dims.join(',')}] is not supported ([N,C,H,W] or [N,K])`);
    }
    const input = tf.input({ shape: tfShape, name: ctx.layerName({ name: vi.name, input: [], output: [], op_type: 'Input' }) });
    ctx.setTensor(vi.name, input, layout);
    inputs.push(input);
    inputNames.push(vi.name);
    if (inputShape.length === 0) inputShape = [null, ...tfShape];
  }

  try {
    for (const n of graph.node) {
      const convert = CONVERTERS[n.op_type];
      if (!convert || (n.domain && n.domain !== 'ai.onnx')) {
        throw new Error(`Cannot import ${describeNode(n)}: op ${n.domain ? `${n.domain}.` : ''}${n.op_type} is not supported (supported: ${SUPPORTED_ONNX_OPS.join(', ')})`);
      }
      convert(ctx, n);
    }
    const outputs = graph.output.map((vi) => {
      const v = ctx.values.get(vi.name);
      if (!v || v.kind !== 'tensor') throw new Error(`Graph output "${vi.name}" is not a computed tensor`);
      if (v.layout === 'nhwc') notes.push(`output "${vi.name}" is rank 4: the TF.js model returns it NHWC`);
      return v.t;
    });
    const tfModel = tf.model({ inputs, outputs, name: opts.name ?? (graph.name ? graph.name.replace(/[^A-Za-z0-9_]/g, '_') : 'imported') });
    ctx.loadWeights();
    return { model: tfModel, inputShape, inputNames, outputNames: graph.output.map((v) => v.name), notes };
  } catch (err) {
    ctx.disposePending();
    throw err;
  }
}
