/**
 * Graph surgery for the `finetune` rung: cut the int8 base at a block boundary into a frozen
 * *bottom* (run in onnxruntime, int8 as shipped) and a *top* (dequantised to float, imported into
 * TF.js and trained), then splice the trained top back onto the bottom:
 *
 *   image [N,224,224,3] uint8 NHWC
 *     -> preprocessing (in-graph, export/base.ts) -> int8 MobileNetV2 up to the cut tensor (uint8 codes)
 *     -> DequantizeLinear -> cut activations [N,C,h,w] float32 NCHW                 (the bottom)
 *     -> Transpose NHWC -> fine-tuned blocks + 1x1 conv to 1280 (float)
 *     -> GlobalAveragePool -> features [N,1280] -> Dense -> logits, probabilities    (the top)
 *
 * Bottom and top meet at a tensor whose values are exactly `(q - zero_point) * scale` of the int8
 * model's uint8 activation, so the cached activations used for training, the parity reference and
 * the exported model all see the same numbers.
 */
import type * as tf from '@tensorflow/tfjs';
import { CARD_METADATA_KEY, type ModelCard } from '../src/model/card.js';
import type { GraphProto, ModelProto, NodeProto } from '../src/onnx/model.js';
import { toNumber } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import type { PreprocessSpec } from '../src/preprocess/spec.js';
import { TENSOR, prependPreprocessing, type BaseGraphInfo } from './base.js';
import { dequantizeModel, type ClipPolicy } from './convert/dequantize.js';
import { exportTfjsToOnnx } from './convert/tfjs-to-onnx.js';
import { node, prune, valueInfo } from './graph.js';
import { PRODUCER, artistIdOutputs } from './splice.js';

/**
 * Block-boundary cut points of `mobilenetv2-12-int8` (torchvision MobileNetV2 quantised by
 * onnxruntime), by the number of top stages that are trained. Each is the uint8 tensor entering the
 * named stage; everything after it up to the final 1x1 conv (`627`, 1280x7x7) is the top.
 *
 * | trainBlocks | cut tensor | shape (NCHW) | trained |
 * |---|---|---|---|
 * | 0 | `624_quantized` | 320x7x7 | final 1x1 conv 320->1280 (410k weights) |
 * | 1 | `452_quantized` | 160x7x7 | inverted-residual block 17 (160->960->320) + final conv (880k) |
 * | 2 | `443_quantized` | 160x7x7 | blocks 16-17 + final conv (1.2M) |
 * | 3 | `597_quantized` | 160x7x7 | blocks 15-17 + final conv (1.5M) |
 * | 4 | `426_quantized` | 96x14x14 | blocks 14-17 (incl. the stride-2 block) + final conv (1.7M) |
 *
 * Read from the graph (node list of the Model Zoo file): Conv_95 is the final conv, Conv_90/92/94
 * block 17, Conv_84/86/88 + Add_89 block 16, Conv_78/80/82 + Add_83 block 15, Conv_73/75/77 block 14.
 */
export const MOBILENETV2_INT8_CUTS: readonly string[] = ['624_quantized', '452_quantized', '443_quantized', '597_quantized', '426_quantized'];

/** Quantisation of the cut tensor: `real = (code - zeroPoint) * scale`, codes uint8. */
export interface CutQuantization {
  scale: number;
  zeroPoint: number;
}

/** Where the base is cut and what crosses the cut. */
export interface CutInfo {
  /** Name of the uint8 tensor in the int8 base (e.g. `452_quantized`). */
  tensor: string;
  /** Shape of one image's activations, NCHW without N: `[C, h, w]`. */
  chw: [number, number, number];
  quantization: CutQuantization;
}

/** Names of the tensors this module adds. */
export const CUT_TENSOR = {
  /** Bottom output: dequantised cut activations `[N,C,h,w] float32 NCHW`. */
  activations: TENSOR.features,
  /** Inside the spliced model: the same activations as NHWC, the top's input. */
  nhwc: 'artist_id/cut_nhwc',
  /** Inside the spliced model: the dequantised cut activations (NCHW). */
  nchw: 'artist_id/cut',
} as const;

function scalarOf(model: ModelProto, name: string): number {
  const t = model.graph.initializer.find((i) => i.name === name);
  if (!t) throw new Error(`Expected initializer "${name}" in the base model but it has none of that name`);
  const raw = t.raw_data;
  if (t.data_type === DataType.FLOAT) {
    if (raw && raw.length >= 4) return new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getFloat32(0, true);
    return t.float_data![0];
  }
  if (t.data_type === DataType.UINT8) return raw && raw.length > 0 ? raw[0] : (t.int32_data ?? [0])[0];
  throw new Error(`Expected a float scale or uint8 zero point for "${name}" but its ONNX data type is ${t.data_type}`);
}

/**
 * Finds the quantisation of a cut tensor from a QLinear* node that consumes it (its `x_scale` and
 * `x_zero_point` inputs), and checks the cut splits the graph: nothing after the cut may read a
 * tensor computed before it except through the cut (a cut inside a residual block would leave the
 * skip connection dangling).
 *
 * @param cut - a uint8 activation tensor of the int8 base, e.g. `452_quantized`.
 * @param featureTensor - the float tensor the top ends in (`BaseGraphInfo.featureTensor`, `627`).
 * @throws Error naming the cut when no node consumes it, it is not uint8-quantised, or it is not a
 *   clean block boundary.
 */
export function cutQuantization(base: ModelProto, cut: string, featureTensor: string): CutQuantization {
  const consumers = base.graph.node.filter((n) => n.input.includes(cut));
  const q = quantizedInput(base.graph, cut);
  if (!q) throw new Error(`Expected cut tensor ${JSON.stringify(cut)} to feed a QLinearConv/QLinearAdd (a uint8 activation of the int8 base) but ${consumers.length ? `it feeds ${consumers.map((n) => n.op_type).join(', ')}` : 'no node reads it'}`);
  const top = topNodes(base.graph, cut, featureTensor);
  const inside = new Set(top.flatMap((n) => n.output));
  const produced = new Set(base.graph.node.flatMap((n) => n.output));
  for (const n of top) {
    for (const i of n.input) {
      if (i && i !== cut && produced.has(i) && !inside.has(i)) {
        throw new Error(`Cut ${JSON.stringify(cut)} is not a block boundary: node ${n.name ?? n.op_type} after it reads ${JSON.stringify(i)}, computed before it`);
      }
    }
  }
  return { scale: scalarOf(base, q.scale), zeroPoint: scalarOf(base, q.zeroPoint) };
}

/**
 * Scale and zero-point initializer names of a uint8 activation, from a node reading it as a quantised
 * operand: QLinearConv `x` (inputs 0-2), QLinearAdd `A` (0-2) or `B` (3-5), DequantizeLinear `x` (0-2).
 */
function quantizedInput(graph: GraphProto, tensor: string): { scale: string; zeroPoint: string } | undefined {
  for (const n of graph.node) {
    const slots = n.op_type === 'QLinearAdd' ? [0, 3] : n.op_type === 'QLinearConv' || n.op_type === 'DequantizeLinear' ? [0] : [];
    for (const i of slots) if (n.input[i] === tensor) return { scale: n.input[i + 1], zeroPoint: n.input[i + 2] };
  }
  return undefined;
}

/** Appends the DequantizeLinear that turns the uint8 cut tensor into float `output` (its scale and zero point from a reader of the cut). */
function dequantizeCut(graph: GraphProto, cut: string, output: string): void {
  const q = quantizedInput(graph, cut)!;
  graph.node.push(node('DequantizeLinear', [cut, q.scale, q.zeroPoint], [output], 'artist_id/cut_dequantize'));
}

/** The exporter emits opset-13 semantics; the int8 base is opset 12 (its QOperator ops are unchanged in 13). Modifies `model`. */
function useExporterOpset(model: ModelProto): void {
  model.opset_import = model.opset_import.map((o) => (!o.domain || o.domain === 'ai.onnx' ? { ...o, version: Math.max(13, toNumber(o.version)) } : o));
  model.ir_version = Math.max(8, toNumber(model.ir_version));
}

/** Nodes between `cut` and `output` (forward from cut ∩ backward from output). */
function topNodes(graph: GraphProto, cut: string, output: string): NodeProto[] {
  const after = new Set<string>([cut]);
  const forward: NodeProto[] = [];
  for (const n of graph.node) {
    if (n.input.some((i) => after.has(i))) {
      forward.push(n);
      n.output.forEach((o) => after.add(o));
    }
  }
  const needed = new Set<string>([output]);
  const result: NodeProto[] = [];
  for (const n of [...forward].reverse()) {
    if (n.output.some((o) => needed.has(o))) {
      result.push(n);
      n.input.forEach((i) => needed.add(i));
    }
  }
  if (!needed.has(cut)) throw new Error(`Expected ${JSON.stringify(output)} to depend on cut tensor ${JSON.stringify(cut)} but it does not`);
  return result.reverse();
}

/**
 * The frozen bottom as a runnable model (the base is not modified).
 *
 * @param base - the int8 base (`mobilenetv2-12-int8.onnx`, decoded).
 * @param info - its input name (the cut's feature tensor is not used here).
 * @param spec - preprocessing put in the graph (read from src/preprocess/spec.ts).
 * @param cut - uint8 activation tensor to stop at (see {@link MOBILENETV2_INT8_CUTS}).
 * @returns input `image` `[N,H,W,3] uint8 NHWC`; output `features` = dequantised cut activations
 *   `[N,C,h,w] float32 NCHW` (named `features` so export/parity.ts can use the bottom as its
 *   reference front end).
 */
export function buildBottomModel(base: ModelProto, info: Pick<BaseGraphInfo, 'inputName' | 'featureTensor'>, spec: PreprocessSpec, cut: string): ModelProto {
  const quant = cutQuantization(base, cut, info.featureTensor);
  const model: ModelProto = structuredClone(base);
  prependPreprocessing(model, info.inputName, spec);
  const g = model.graph;
  dequantizeCut(g, cut, CUT_TENSOR.activations);
  g.output = [valueInfo(CUT_TENSOR.activations, DataType.FLOAT, ['N', 'C', 'h', 'w'], `dequantised activations at cut ${cut}: (q - ${quant.zeroPoint}) * ${quant.scale}`)];
  prune(g, [CUT_TENSOR.activations]);
  return model;
}

/**
 * The top as a float ONNX model, ready for `importOnnxToTfjs`: the base dequantised with
 * {@link dequantizeModel} (Clip on requantised outputs per `clip`), with the cut tensor as its input
 * `[N,C,h,w] float32` and the final feature map as its output `[N,D,7,7]`.
 *
 * @param chw - shape of the cut activations (from a bottom run).
 * @param clip - `'relu'` (default): keep the Clip of ranges starting at 0 (the folded ReLU6 / ReLU)
 *   and drop the int8 saturation of linear outputs, which would otherwise cut gradients during
 *   training; `'all'`: every saturation.
 */
export function buildTopModel(base: ModelProto, info: Pick<BaseGraphInfo, 'featureTensor'>, cut: string, chw: [number, number, number], clip: ClipPolicy = 'relu'): ModelProto {
  cutQuantization(base, cut, info.featureTensor);
  const { model } = dequantizeModel(base, { clip });
  const g = model.graph;
  // In the float graph the cut tensor keeps its name; its producer becomes unreachable once it is an input.
  g.node = g.node.filter((n) => !n.output.includes(cut));
  g.input = [valueInfo(cut, DataType.FLOAT, ['N', ...chw], 'dequantised cut activations, NCHW')];
  g.output = [valueInfo(info.featureTensor, DataType.FLOAT, ['N', 'D', 'h', 'w'], 'final feature map, NCHW')];
  prune(g, [info.featureTensor]);
  g.input = [valueInfo(cut, DataType.FLOAT, ['N', ...chw], 'dequantised cut activations, NCHW')];
  return model;
}

/** Tensor of the model from {@link buildFinetunedBase} holding the fine-tuned final feature map, `[N,D,h,w] float32 NCHW`. */
export const FINETUNED_MAP = 'artist_id/finetuned_map';

/**
 * The base with its top replaced by the fine-tuned blocks, in the form of a base (so export/base.ts's and
 * export/style.ts's feature-model builders take it, with `featureTensor` {@link FINETUNED_MAP}):
 *
 *   base input (`info.inputName`, `[N,3,H,W] float32 NCHW` normalised: no preprocessing, the builders prepend it)
 *     -> the int8 layers below the cut, unchanged (their tensors keep their names, e.g. `339_quantized`)
 *     -> DequantizeLinear at the cut -> Transpose NHWC -> the blocks exported from TF.js
 *     -> Transpose NCHW -> {@link FINETUNED_MAP} `[N,D,h,w]` (the graph output)
 *
 * The base's own layers after the cut are pruned. The arguments are not modified.
 *
 * @param cut - uint8 activation tensor where the blocks start (see {@link MOBILENETV2_INT8_CUTS}).
 * @param blocks - the fine-tuned blocks in TF.js: input the cut activations `[N,h,w,C] float32 NHWC`, one
 *   output the final map `[N,h',w',D] NHWC` (the model imported from {@link buildTopModel}, after training).
 * @throws Error as {@link cutQuantization} for a bad cut; when `blocks` does not have one rank-4 output, or a
 *   layer of it cannot be exported.
 */
export function buildFinetunedBase(base: ModelProto, info: Pick<BaseGraphInfo, 'featureTensor'>, cut: string, blocks: tf.LayersModel): ModelProto {
  cutQuantization(base, cut, info.featureTensor);
  if (blocks.outputs.length !== 1 || blocks.outputs[0].shape.length !== 4) {
    throw new Error(`Expected the fine-tuned blocks to have one rank-4 NHWC output but they have ${blocks.outputs.map((o) => `[${o.shape.join(',')}]`).join(', ')}`);
  }
  const exported = exportTfjsToOnnx(blocks, { inputName: 'blocks/input', outputName: 'blocks/output' }).graph;
  const mapNhwc = exported.output[0].name;
  const name = (t: string) => (t === '' ? t : t === 'blocks/input' ? CUT_TENSOR.nhwc : `finetune/${t}`);
  const model: ModelProto = structuredClone(base);
  const g = model.graph;
  dequantizeCut(g, cut, CUT_TENSOR.nchw);
  g.node.push(
    node('Transpose', [CUT_TENSOR.nchw], [CUT_TENSOR.nhwc], 'artist_id/cut_to_nhwc', { perm: [0, 2, 3, 1] }),
    ...exported.node.map((n) => ({ ...n, name: `finetune/${n.name ?? n.op_type}`, input: n.input.map(name), output: n.output.map(name) })),
    node('Transpose', [name(mapNhwc)], [FINETUNED_MAP], 'artist_id/map_to_nchw', { perm: [0, 3, 1, 2] }),
  );
  g.initializer.push(...exported.initializer.map((t) => ({ ...t, name: name(t.name ?? '') })));
  g.output = [valueInfo(FINETUNED_MAP, DataType.FLOAT, ['N', 'D', 'h', 'w'], 'final feature map of the fine-tuned top, NCHW')];
  prune(g, [FINETUNED_MAP]);
  useExporterOpset(model);
  return model;
}

/**
 * Converts the trained TF.js top to ONNX nodes and splices it onto the bottom, giving one artist-id
 * model (`image` in; `probabilities`, `logits` `[N,C]`, `features` `[N,D]` out; card in metadata).
 *
 * @param bottom - output of {@link buildBottomModel}.
 * @param top - TF.js model with one input `[N,h,w,C] float32 NHWC` (the cut activations) and two
 *   outputs, in order: pooled features `[N,D]` and softmax probabilities `[N,K]` (the last layer a
 *   Dense with softmax activation).
 * @throws Error when the top's exported graph does not end in a Softmax, or a layer cannot be exported.
 */
export function spliceTop(bottom: ModelProto, top: tf.LayersModel, card: ModelCard): ModelProto {
  if (top.outputs.length !== 2) throw new Error(`Expected the top to have 2 outputs (features, probabilities) but it has ${top.outputs.length}`);
  const exported = exportTfjsToOnnx(top, { inputName: 'top/input', outputName: 'top/output' });
  const tg = exported.graph;
  const [featOut, probOut] = tg.output.map((o) => o.name);
  const softmax = tg.node.find((n) => n.output[0] === probOut && n.op_type === 'Softmax');
  if (!softmax) throw new Error(`Expected the top's probabilities to come from a Softmax node but "${probOut}" is produced by ${tg.node.find((n) => n.output[0] === probOut)?.op_type ?? 'nothing'}`);
  const logitsSource = softmax.input[0];
  // Prefix every name of the top; map its input and outputs onto artist-id's tensor names.
  const rename = new Map<string, string>([
    ['top/input', CUT_TENSOR.nhwc],
    [featOut, TENSOR.features],
    [probOut, TENSOR.probabilities],
  ]);
  const name = (t: string) => (t === '' ? t : rename.get(t) ?? `finetune/${t}`);
  const nodes: NodeProto[] = tg.node.map((n) => ({ ...n, name: `finetune/${n.name ?? n.op_type}`, input: n.input.map(name), output: n.output.map(name) }));
  nodes.push(node('Identity', [name(logitsSource)], [TENSOR.logits], 'finetune/logits'));
  const initializers = tg.initializer.map((t) => ({ ...t, name: name(t.name ?? '') }));

  const model: ModelProto = structuredClone(bottom);
  const g = model.graph;
  // The bottom's output becomes internal: rename it, then go to NHWC for the top.
  for (const n of g.node) n.output = n.output.map((o) => (o === CUT_TENSOR.activations ? CUT_TENSOR.nchw : o));
  g.node.push(node('Transpose', [CUT_TENSOR.nchw], [CUT_TENSOR.nhwc], 'artist_id/cut_to_nhwc', { perm: [0, 2, 3, 1] }), ...nodes);
  g.initializer.push(...initializers);
  const c = card.classes.length;
  g.name = 'artist-id';
  g.output = artistIdOutputs(card, 'pooled final feature map of the fine-tuned top');
  g.value_info = [];
  useExporterOpset(model);
  model.producer_name = PRODUCER.name;
  model.producer_version = PRODUCER.version;
  model.doc_string = `artist-id model "${card.name}" (fine-tuned top): who painted it, among ${c} artists. Input image [N,${card.preprocessing.height},${card.preprocessing.width},3] uint8 NHWC sRGB (resize: ${card.preprocessing.fit}). See metadata ${CARD_METADATA_KEY}.`;
  model.metadata_props = [{ key: CARD_METADATA_KEY, value: JSON.stringify(card) }];
  return model;
}
