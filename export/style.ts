/**
 * Style statistics of the frozen base, computed inside the ONNX graph so serving needs nothing new.
 *
 * For each chosen feature map x `[N,C,H,W]` of the base:
 * - per-channel mean and standard deviation over H,W (the statistics AdaIN transfers:
 *   Huang & Belongie 2017, "Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization");
 * - optionally the Gram matrix `G = F Fᵀ / (HW)` with `F = reshape(x, [N,C,HW])` (Gatys, Ecker & Bethge
 *   2015, "A Neural Algorithm of Artistic Style"; used for style retrieval by Matsuo & Yanai 2016), flattened
 *   to its upper triangle and signed-square-rooted (`sign(g)·sqrt(|g|)`, the power normalisation of
 *   bilinear pooling, Lin et al. 2015) so a few large entries do not dominate.
 * All statistics are concatenated into `features` `[N,D]`; the head standardises them.
 */
import type { ModelProto, NodeProto, TensorProto } from '../src/onnx/model.js';
import type { PreprocessSpec } from '../src/preprocess/spec.js';
import { TENSOR, prependPreprocessing, type BaseGraphInfo } from './base.js';
import { floatTensor, int64Tensor, node, prune, valueInfo } from './graph.js';
import { DataType } from '../src/onnx/schema.js';

/** One feature map to summarise. */
export interface StyleLayer {
  /** Name of a tensor in the base graph: float, or `<name>_quantized` uint8 with `<name>_scale`/`_zero_point`. */
  tensor: string;
  /** Channels C of the map. */
  channels: number;
  /** Add the Gram matrix (C(C+1)/2 values) besides mean and std. */
  gram: boolean;
}

/** Dimension of the statistics of `layers`. */
export function styleFeatureDim(layers: StyleLayer[]): number {
  return layers.reduce((d, l) => d + 2 * l.channels + (l.gram ? (l.channels * (l.channels + 1)) / 2 : 0), 0);
}

/**
 * Builds the style-statistics feature model from a decoded base (the argument is not modified).
 *
 * @returns a model with input `image` `[N,H,W,3] uint8` and output `features` `[N, styleFeatureDim(layers)] float32`.
 * @throws Error when a tensor of `layers` is not produced by the base.
 */
export function buildStyleFeatureModel(base: ModelProto, info: BaseGraphInfo, spec: PreprocessSpec, layers: StyleLayer[]): ModelProto {
  const model: ModelProto = structuredClone(base);
  const graph = model.graph;
  prependPreprocessing(model, info.inputName, spec);
  const produced = new Set(graph.node.flatMap((n) => n.output));
  const initNames = new Set(graph.initializer.map((t) => t.name));
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [floatTensor('style/eps', [], [1e-6])];
  const parts: string[] = [];
  for (const [i, layer] of layers.entries()) {
    const p = `style/${i}`;
    let x: string;
    if (produced.has(layer.tensor) && !layer.tensor.endsWith('_quantized')) {
      x = layer.tensor;
    } else {
      const q = layer.tensor.endsWith('_quantized') ? layer.tensor : `${layer.tensor}_quantized`;
      const stem = q.slice(0, -'_quantized'.length);
      if (!produced.has(q) || !initNames.has(`${stem}_scale`) || !initNames.has(`${stem}_zero_point`)) {
        throw new Error(`Expected base tensor "${layer.tensor}" (float, or quantized with ${stem}_scale/${stem}_zero_point) but the base does not produce it`);
      }
      x = `${p}/x`;
      nodes.push(node('DequantizeLinear', [q, `${stem}_scale`, `${stem}_zero_point`], [x], `${p}/dequantize`));
    }
    nodes.push(
      node('ReduceMean', [x], [`${p}/mean4`], `${p}/mean`, { axes: [2, 3], keepdims: 1 }),
      node('Sub', [x, `${p}/mean4`], [`${p}/centred`], `${p}/centre`),
      node('Mul', [`${p}/centred`, `${p}/centred`], [`${p}/sq`], `${p}/square`),
      node('ReduceMean', [`${p}/sq`], [`${p}/var`], `${p}/variance`, { axes: [2, 3], keepdims: 0 }),
      node('Add', [`${p}/var`, 'style/eps'], [`${p}/var_eps`], `${p}/var_eps`),
      node('Sqrt', [`${p}/var_eps`], [`${p}/std`], `${p}/std`),
      node('Flatten', [`${p}/mean4`], [`${p}/meanflat`], `${p}/mean_flatten`, { axis: 1 }),
    );
    parts.push(`${p}/meanflat`, `${p}/std`);
    if (layer.gram) {
      const c = layer.channels;
      const upper: number[] = [];
      for (let r = 0; r < c; r++) for (let k = r; k < c; k++) upper.push(r * c + k);
      inits.push(int64Tensor(`${p}/shape_ncl`, [3], [0, c, -1]), int64Tensor(`${p}/shape_flat`, [2], [0, c * c]), int64Tensor(`${p}/upper`, [upper.length], upper));
      nodes.push(
        node('Reshape', [x, `${p}/shape_ncl`], [`${p}/f`], `${p}/to_ncl`),
        node('Transpose', [`${p}/f`], [`${p}/ft`], `${p}/transpose`, { perm: [0, 2, 1] }),
        node('MatMul', [`${p}/f`, `${p}/ft`], [`${p}/gram_sum`], `${p}/gram`),
        // Divide by HW: mean over positions == ReduceMean of the per-position outer products.
        node('Shape', [`${p}/f`], [`${p}/fshape`], `${p}/fshape`),
        node('Gather', [`${p}/fshape`, `${p}/idx2`], [`${p}/hw_i`], `${p}/hw_gather`, { axis: 0 }),
        node('Cast', [`${p}/hw_i`], [`${p}/hw`], `${p}/hw_cast`, { to: DataType.FLOAT }),
        node('Div', [`${p}/gram_sum`, `${p}/hw`], [`${p}/g`], `${p}/gram_mean`),
        node('Reshape', [`${p}/g`, `${p}/shape_flat`], [`${p}/gflat`], `${p}/gram_flatten`),
        node('Gather', [`${p}/gflat`, `${p}/upper`], [`${p}/gupper`], `${p}/upper_triangle`, { axis: 1 }),
        node('Sign', [`${p}/gupper`], [`${p}/gsign`], `${p}/sign`),
        node('Abs', [`${p}/gupper`], [`${p}/gabs`], `${p}/abs`),
        node('Sqrt', [`${p}/gabs`], [`${p}/gsqrt`], `${p}/sqrt`),
        node('Mul', [`${p}/gsign`, `${p}/gsqrt`], [`${p}/gram_ssr`], `${p}/signed_sqrt`),
      );
      inits.push(int64Tensor(`${p}/idx2`, [], [2]));
      parts.push(`${p}/gram_ssr`);
    }
  }
  nodes.push(node('Concat', parts, [TENSOR.features], 'style/concat', { axis: 1 }));
  graph.node.push(...nodes);
  graph.initializer.push(...inits);
  graph.output = [valueInfo(TENSOR.features, DataType.FLOAT, ['N', styleFeatureDim(layers)], 'style statistics (mean, std, Gram) of base feature maps')];
  prune(graph, [TENSOR.features]);
  return model;
}

/**
 * Feature maps of the int8 MobileNetV2 (`mobilenetv2-12-int8.onnx`) summarised by the `style`
 * features: the outputs of the residual stages at 56x56 (24 channels), 28x28 (32), 14x14 (64 and 96),
 * 7x7 (160), and the final 1280-channel map; Gram matrices on the 32- and 64-channel maps, where C² stays
 * small. Tensor names were read off the graph (QLinearAdd outputs); D = 5,920.
 */
export const MOBILENETV2_STYLE_LAYERS: StyleLayer[] = [
  { tensor: '339', channels: 24, gram: false },
  { tensor: '365', channels: 32, gram: true },
  { tensor: '400', channels: 64, gram: true },
  { tensor: '426', channels: 96, gram: false },
  { tensor: '452', channels: 160, gram: false },
  { tensor: '627', channels: 1280, gram: false },
];
