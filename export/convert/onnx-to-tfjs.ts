/**
 * ONNX image classifier -> TF.js LayersModel (functional, tf.layers plus artist-id's registered
 * {@link ClipLayer}, and for exact int8 imports {@link RequantizeLayer}, {@link QLinearAddLayer} and
 * {@link PairSaturationLayer}).
 *
 * - Input: ONNX `[N,C,H,W] float32 NCHW` becomes TF.js `[N,H,W,C] float32 NHWC` (same values,
 *   transposed; e.g. MobileNetV2 `input [N,3,224,224]` normalised -> `[N,224,224,3]` normalised).
 * - Outputs: `[N,K]` unchanged; rank-4 outputs stay NHWC.
 * - Quantised models, option `int8`:
 *   - `'exact'` (default for QOperator int8 models: QLinearConv, QLinearMatMul, ...): the int8
 *     arithmetic itself, op by op ({@link ./ops/qlinear.ts}): activations rounded onto their 8-bit
 *     grids (QuantizeLinear: round half to even, saturate), int32 accumulators computed exactly and
 *     requantised as QLinearConv / QLinearMatMul specify. Logits bit-identical to onnxruntime's
 *     int8 kernels on MobileNetV2-12-int8 (onnxruntime-node 1.30, x86-64; scripts/import-parity.ts)
 *     with `arithmetic: 'spec'` (onnxruntime on CPUs with VNNI, or with uint8 weights) and
 *     `'ort-avx2'` (its u8·s8 kernels on x86 AVX2 without VNNI, which saturate pairs of products to
 *     int16). Inference only.
 *   - `'float'` (default for QDQ-format models): the dequantised float graph ({@link dequantizeModel}):
 *     weights `(q - zp)·scale`, activations clipped to their 8-bit ranges but not rounded: the
 *     model to fine-tune or re-export. Differs from the int8 model by the activation rounding.
 *
 * Supported ONNX ops (exact int8 imports add QuantizeLinear, DequantizeLinear, QLinearConv,
 * QLinearMatMul and com.microsoft QLinearAdd, QLinearGlobalAveragePool): Conv (group 1 or depthwise), BatchNormalization, Relu, Clip, LeakyRelu, Elu,
 * Selu, Sigmoid, Tanh, Softplus, Softsign, Softmax, Add/Sum/Mul (same shapes), Concat,
 * GlobalAveragePool, GlobalMaxPool, MaxPool, AveragePool, Gemm, MatMul, Flatten, Reshape (to
 * `[N,-1]`), Identity, Dropout, Constant, and Shape/Gather/Unsqueeze/Concat on static shapes.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelProto } from '../../src/onnx/model.js';
import { toNumber } from '../../src/onnx/model.js';
import { type ClipPolicy, dequantizeModel, isQuantized } from './dequantize.js';
import type { PairSaturationLayer, QLinearAddLayer, RequantizeLayer } from './int8-layers.js';
import { type Int8Arithmetic, qlinearConverters } from './ops/qlinear.js';
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

/** ONNX op types the importer converts (float graphs, and int8 graphs after dequantisation). */
export const SUPPORTED_ONNX_OPS = Object.keys(CONVERTERS);

/** onnxruntime contrib (com.microsoft) QOperator ops of an exact int8 import. */
const CONTRIB_QLINEAR = ['QLinearAdd', 'QLinearGlobalAveragePool'];

/** True for QOperator graphs (QLinearConv, QLinearMatMul, ...), false for QDQ-only ones. */
function isQOperator(model: ModelProto): boolean {
  return model.graph.node.some((n) => n.op_type.startsWith('QLinear'));
}

/** The import mode of `source` under `opts`, with the options checked. */
function int8Mode(source: ModelProto, opts: ImportOptions): Int8Import | undefined {
  if (opts.int8 !== undefined && opts.int8 !== 'exact' && opts.int8 !== 'float') throw new Error(`importOnnxToTfjs: int8 must be 'exact' or 'float', got ${JSON.stringify(opts.int8)}`);
  if (opts.arithmetic !== undefined && opts.arithmetic !== 'spec' && opts.arithmetic !== 'ort-avx2') throw new Error(`importOnnxToTfjs: arithmetic must be 'spec' or 'ort-avx2', got ${JSON.stringify(opts.arithmetic)}`);
  if (!isQuantized(source)) return undefined;
  const mode = opts.int8 ?? (isQOperator(source) ? 'exact' : 'float');
  if (mode === 'exact' && !isQOperator(source)) throw new Error("importOnnxToTfjs: int8 'exact' needs a QOperator model (QLinearConv, QLinearMatMul, ...); this one is QDQ-format (QuantizeLinear/DequantizeLinear around float ops): use int8: 'float'");
  if (mode === 'exact' && opts.clip !== undefined) throw new Error("importOnnxToTfjs: clip applies to int8: 'float' imports only (an exact import saturates exactly as the int8 model does)");
  if (mode === 'float' && opts.arithmetic !== undefined) throw new Error("importOnnxToTfjs: arithmetic applies to int8: 'exact' imports only");
  return mode;
}

/** How a quantised source is imported (see the module comment). */
export type Int8Import = 'exact' | 'float';

export interface ImportOptions {
  /**
   * Quantised sources: `'exact'` integer arithmetic or the `'float'` dequantised graph. Default
   * `'exact'` for QOperator models (QLinear* ops), `'float'` for QDQ-format ones. Ignored for float
   * sources.
   */
  int8?: Int8Import;
  /** Accumulator arithmetic of an `'exact'` import; default `'spec'` (see {@link Int8Arithmetic}). */
  arithmetic?: Int8Arithmetic;
  /** Saturation of dequantised activations of a `'float'` int8 import; default 'all'. */
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
 * Converts an ONNX model (float, or int8) to a TF.js LayersModel with the weights loaded.
 * Needs an initialised TF.js backend (`initTrainingBackend()`).
 *
 * An int8 QOperator model is imported with its integer arithmetic by default (`int8: 'exact'`):
 * e.g. MobileNetV2-12-int8 gives logits identical to onnxruntime's, on the output's 8-bit grid.
 * Pass `{ int8: 'float' }` for the dequantised float model (fine-tuning, re-export to ONNX), and
 * `{ arithmetic: onnxruntimeInt8Arithmetic() }` (./int8-reference.ts) to match onnxruntime on the
 * importing machine's CPU.
 *
 * @throws Error naming the ONNX node and op type for anything not supported, e.g.
 *   `ONNX node "Resize_3" (Resize): op Resize is not supported`, and naming the option for invalid
 *   options (e.g. `int8 must be 'exact' or 'float', got "fake"`).
 */
export async function importOnnxToTfjs(source: ModelProto, opts: ImportOptions = {}): Promise<ImportResult> {
  await tf.ready();
  const notes: string[] = [];
  const mode = int8Mode(source, opts);
  let model = source;
  let converters = CONVERTERS;
  if (mode === 'float') {
    const dq = dequantizeModel(source, { clip: opts.clip });
    model = dq.model;
    notes.push(...dq.notes);
  } else {
    model = structuredClone(source);
  }
  if (mode === 'exact') {
    const arithmetic = opts.arithmetic ?? 'spec';
    converters = { ...CONVERTERS, ...qlinearConverters(arithmetic) };
    const ops = Object.keys(qlinearConverters(arithmetic));
    const counts = ops.map((op) => [op, model.graph.node.filter((n) => n.op_type === op).length] as const).filter(([, c]) => c > 0);
    notes.push(
      `int8 imported exactly (${counts.map(([op, c]) => `${c} ${op}`).join(', ')}): tensors hold q - zero_point as float32 integers, accumulators are exact, outputs requantised with onnxruntime's float32 multipliers and round half to even`,
      arithmetic === 'ort-avx2'
        ? "arithmetic 'ort-avx2': u8·s8 products summed in pairs with int16 saturation, as onnxruntime's AVX2 kernels without VNNI do"
        : "arithmetic 'spec': exact int32 accumulation (onnxruntime with VNNI, on ARM, or with uint8 weights)",
    );
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
      const convert = converters[n.op_type];
      const domainOk = !n.domain || n.domain === 'ai.onnx' || (mode === 'exact' && n.domain === 'com.microsoft' && CONTRIB_QLINEAR.includes(n.op_type));
      if (!convert || !domainOk) {
        throw new Error(`Cannot import ${describeNode(n)}: op ${n.domain ? `${n.domain}.` : ''}${n.op_type} is not supported (supported: ${Object.keys(converters).join(', ')})`);
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
