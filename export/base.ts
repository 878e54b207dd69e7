/**
 * Turns a pretrained ImageNet ONNX model into artist-id's frozen feature extractor:
 *
 *   image [N,H,W,3] uint8 NHWC sRGB
 *     -> Cast float -> Transpose NCHW -> x/255, (x - mean)/std       (the preprocessing in-graph)
 *     -> base network up to its final feature map [N,D,h,w]
 *     -> GlobalAveragePool -> Flatten -> features [N,D] float32       (the bottleneck features)
 *
 * The ImageNet classifier is pruned away. The head trained on `features` is spliced on later
 * ({@link ./splice.ts}), so training and the exported model share these exact nodes.
 */
import type { ModelProto } from '../src/onnx/model.js';
import { toNumber } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import type { PreprocessSpec } from '../src/preprocess/spec.js';
import { floatTensor, node, prune, valueInfo } from './graph.js';

/** Names of the tensors artist-id adds. */
export const TENSOR = {
  image: 'image',
  features: 'features',
  logits: 'logits',
  probabilities: 'probabilities',
} as const;

/** Where the base's feature map lives and how its input is named. */
export interface BaseGraphInfo {
  /** Graph input of the base, `[N,3,H,W] float32 NCHW` normalised. */
  inputName: string;
  /** Internal float tensor `[N,D,h,w]` before global average pooling. */
  featureTensor: string;
  /** D. */
  featureDim: number;
}

/**
 * Builds the feature-extractor model from a decoded base model (the argument is not modified).
 *
 * @returns a model with input `image` `[N,H,W,3] uint8` and output `features` `[N,D] float32`.
 * @throws Error when the base has no input or tensor of the given names, or its input size does not
 *   match the preprocessing spec.
 */
export function buildFeatureModel(base: ModelProto, info: BaseGraphInfo, spec: PreprocessSpec): ModelProto {
  const model: ModelProto = structuredClone(base);
  const graph = model.graph;
  const input = graph.input.find((v) => v.name === info.inputName);
  if (!input) {
    throw new Error(`Expected base input "${info.inputName}" but the base model has inputs: ${graph.input.map((v) => v.name).join(', ')}`);
  }
  const dims = input.type?.tensor_type?.shape?.dim ?? [];
  const [, c, h, w] = dims.map((d) => (d.dim_value !== undefined ? toNumber(d.dim_value) : undefined));
  if (c !== 3 || (h !== undefined && h !== spec.height) || (w !== undefined && w !== spec.width)) {
    throw new Error(`Expected base input [N,3,${spec.height},${spec.width}] for preprocessing ${spec.width}x${spec.height} but the base takes [N,${c},${h},${w}]`);
  }
  if (!graph.node.some((n) => n.output.includes(info.featureTensor))) {
    throw new Error(`Expected base feature tensor "${info.featureTensor}" but no node of the base produces it`);
  }

  prependPreprocessing(model, info.inputName, spec);
  const pool = [
    node('GlobalAveragePool', [info.featureTensor], ['artist_id/pooled'], 'artist_id/gap'),
    node('Flatten', ['artist_id/pooled'], [TENSOR.features], 'artist_id/flatten', { axis: 1 }),
  ];
  graph.node.push(...pool);
  graph.output = [valueInfo(TENSOR.features, DataType.FLOAT, ['N', info.featureDim], 'bottleneck features (global average pool)')];
  prune(graph, [TENSOR.features]);
  return model;
}

/**
 * Replaces the model's float input `inputName` with `image` `[N,H,W,3] uint8 NHWC` sRGB and
 * the nodes that normalise it as `spec` says. Modifies `model` in place.
 *
 * @param layout - layout of `inputName`: `nchw` (default; ONNX Model Zoo bases) adds a Transpose;
 *   `nhwc` (models exported from TF.js by exportTfjsToOnnx, e.g. VGG16) normalises in place.
 */
export function prependPreprocessing(model: ModelProto, inputName: string, spec: PreprocessSpec, layout: 'nchw' | 'nhwc' = 'nchw'): void {
  const graph = model.graph;
  // ((x / 255) - mean) / std == x * (1 / (255 std)) + (-mean / std): one Mul and one Add.
  const scale = spec.std.map((s) => 1 / (255 * s));
  const shift = spec.mean.map((m, i) => -m / spec.std[i]);
  const nchw = layout === 'nchw';
  const scaled = nchw ? 'artist_id/image_nchw' : 'artist_id/image_f32';
  const prefix = [
    node('Cast', [TENSOR.image], ['artist_id/image_f32'], 'artist_id/cast', { to: DataType.FLOAT }),
    ...(nchw ? [node('Transpose', ['artist_id/image_f32'], ['artist_id/image_nchw'], 'artist_id/to_nchw', { perm: [0, 3, 1, 2] })] : []),
    node('Mul', [scaled, 'artist_id/norm_scale'], ['artist_id/image_scaled'], 'artist_id/norm_mul'),
    node('Add', ['artist_id/image_scaled', 'artist_id/norm_shift'], [inputName], 'artist_id/norm_add'),
  ];
  graph.node = [...prefix, ...graph.node];
  const channelShape = nchw ? [1, 3, 1, 1] : [1, 1, 1, 3];
  graph.initializer.push(floatTensor('artist_id/norm_scale', channelShape, scale), floatTensor('artist_id/norm_shift', channelShape, shift));
  graph.input = [
    valueInfo(TENSOR.image, DataType.UINT8, ['N', spec.height, spec.width, 3], 'RGB image, uint8 NHWC'),
    ...graph.input.filter((v) => v.name !== inputName),
  ];
}
