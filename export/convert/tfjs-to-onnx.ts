/**
 * TF.js LayersModel (Sequential or functional) -> standalone ONNX model (default opset 13).
 *
 * Graph layout (see {@link ExportContext}): inputs and outputs keep TF.js's shapes, e.g. input
 * `[N,224,224,3] float32 NHWC` and output `[N,K]`; convolutions and pooling run in NCHW behind a
 * Transpose; Flatten/Dense see NHWC so the flatten order matches Keras. The batch dimension is
 * symbolic (`N`). Rank-4 outputs are transposed back to NHWC.
 *
 * Supported layers: InputLayer, Conv2D, DepthwiseConv2D, SeparableConv2D, Dense,
 * BatchNormalization, Activation, ReLU (incl. maxValue = ReLU6), LeakyReLU, ELU, Softmax,
 * MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, Flatten, Dropout,
 * SpatialDropout1D, GaussianNoise, GaussianDropout, AlphaDropout, Add, Multiply, Average, Maximum,
 * Minimum, Concatenate, ZeroPadding2D, Rescaling, and artist-id's Clip layer. Activations: see
 * {@link ./layers/activation.ts}.
 */
import type * as tf from '@tensorflow/tfjs';
import type { ModelProto } from '../../src/onnx/model.js';
import { DataType } from '../../src/onnx/schema.js';
import { valueInfo } from '../graph.js';
import { ClipLayer } from './clip-layer.js';
import { ExportContext, type OnnxValue } from './export-context.js';
import * as activation from './layers/activation.js';
import * as conv from './layers/conv.js';
import * as dense from './layers/dense.js';
import * as merge from './layers/merge.js';
import * as norm from './layers/normalization.js';
import * as pool from './layers/pool.js';
import * as shape from './layers/shape.js';
import { describeLayer, type LayerExporter } from './layers/types.js';

const EXPORTERS: Record<string, LayerExporter> = {
  Conv2D: conv.Conv2D,
  DepthwiseConv2D: conv.DepthwiseConv2D,
  SeparableConv2D: conv.SeparableConv2D,
  Dense: dense.Dense,
  BatchNormalization: norm.BatchNormalization,
  Activation: activation.Activation,
  ReLU: activation.ReLU,
  LeakyReLU: activation.LeakyReLU,
  ELU: activation.ELU,
  Softmax: activation.Softmax,
  [ClipLayer.className]: activation.Clip,
  MaxPooling2D: pool.MaxPooling2D,
  AveragePooling2D: pool.AveragePooling2D,
  GlobalAveragePooling2D: pool.GlobalAveragePooling2D,
  GlobalMaxPooling2D: pool.GlobalMaxPooling2D,
  Flatten: shape.Flatten,
  Dropout: shape.Identity,
  SpatialDropout1D: shape.Identity,
  GaussianNoise: shape.Identity,
  GaussianDropout: shape.Identity,
  AlphaDropout: shape.Identity,
  ZeroPadding2D: shape.ZeroPadding2D,
  Rescaling: shape.Rescaling,
  Add: merge.Add,
  Multiply: merge.Multiply,
  Average: merge.Average,
  Maximum: merge.Maximum,
  Minimum: merge.Minimum,
  Concatenate: merge.Concatenate,
};

/** TF.js layer class names the exporter maps. */
export const SUPPORTED_TFJS_LAYERS = ['InputLayer', ...Object.keys(EXPORTERS)];

export interface ExportOptions {
  /** ONNX input name (single-input models; default `input`). */
  inputName?: string;
  /** ONNX output name (single-output models; default `output`). */
  outputName?: string;
  /** Default-domain opset, >= 13 (Softmax axis semantics, Pad/Clip inputs); default 13. */
  opset?: number;
  /** Graph name; default the model's name. */
  graphName?: string;
}

/**
 * Converts a TF.js model to ONNX. Reads weights synchronously (`dataSync`).
 *
 * @returns a ModelProto ready for {@link encodeModel}; inputs `[N,...]` as TF.js declares them
 *   (NHWC for images), outputs likewise.
 * @throws Error naming the layer and class for anything not supported, e.g.
 *   `Cannot export TF.js layer "lstm_1" (LSTM): layer class LSTM is not supported`.
 */
export function exportTfjsToOnnx(model: tf.LayersModel, opts: ExportOptions = {}): ModelProto {
  const opset = opts.opset ?? 13;
  if (opset < 13) throw new Error(`opset ${opset} is not supported: the exporter emits opset-13 semantics (Softmax axis, Pad/Clip inputs); use 13 or later`);
  const ctx = new ExportContext();
  const values = new Map<number, OnnxValue>();
  const graphInputs = model.inputs.map((t, i) => {
    const name = model.inputs.length === 1 ? opts.inputName ?? 'input' : `${opts.inputName ?? 'input'}_${i}`;
    ctx.reserve(name);
    const shape = t.shape.slice();
    values.set(t.id, { name, layout: shape.length === 4 ? 'nhwc' : 'plain', shape });
    return valueInfo(name, DataType.FLOAT, shape.map((d, j) => (d === null ? (j === 0 ? 'N' : `${name}_d${j}`) : d)), shape.length === 4 ? 'NHWC float32 (TF.js layout)' : undefined);
  });
  const outNames = model.outputs.map((_, i) => (model.outputs.length === 1 ? opts.outputName ?? 'output' : `${opts.outputName ?? 'output'}_${i}`));
  outNames.forEach((n) => ctx.reserve(n));

  const visit = (t: tf.SymbolicTensor): OnnxValue => {
    const known = values.get(t.id);
    if (known) return known;
    const layer = t.sourceLayer as tf.layers.Layer;
    const cls = layer.getClassName();
    if (cls === 'InputLayer') throw new Error(`Input "${t.name}" is not among the model's inputs`);
    const exporter = EXPORTERS[cls];
    if (!exporter) throw new Error(`Cannot export ${describeLayer(layer)}: layer class ${cls} is not supported (supported: ${SUPPORTED_TFJS_LAYERS.join(', ')})`);
    const inbound = layer.inboundNodes[t.nodeIndex];
    if (inbound.outputTensors.length !== 1) throw new Error(`Cannot export ${describeLayer(layer)}: layers with several outputs are not supported`);
    const inputs = inbound.inputTensors.map(visit);
    const v = exporter(ctx, layer, inputs, t);
    values.set(t.id, v);
    return v;
  };

  // Emit every output's subgraph first: an output may feed another (e.g. logits -> softmax).
  const finals = model.outputs.map((t) => ctx.as(visit(t), 'nhwc'));
  const graphOutputs = model.outputs.map((t, i) => {
    const v = finals[i];
    // Name the graph output: rename the producing node's output, or add an Identity when the value
    // is also a graph input or used elsewhere.
    const producer = ctx.nodes.find((n) => n.output[0] === v.name);
    const consumed = ctx.nodes.some((n) => n.input.includes(v.name));
    const repeated = finals.findIndex((u) => u.name === v.name) !== i;
    if (producer && !consumed && !repeated) producer.output[0] = outNames[i];
    else ctx.op('Identity', [v.name], outNames[i], {}, {}, outNames[i]);
    const shape = t.shape.slice();
    return valueInfo(outNames[i], DataType.FLOAT, shape.map((d, j) => (d === null ? (j === 0 ? 'N' : `${outNames[i]}_d${j}`) : d)));
  });

  return {
    ir_version: 8,
    opset_import: [{ domain: '', version: opset }],
    producer_name: 'artist-id',
    producer_version: '0.1.0',
    graph: {
      name: opts.graphName ?? model.name,
      node: ctx.nodes,
      initializer: ctx.initializers,
      input: graphInputs,
      output: graphOutputs,
    },
  };
}
