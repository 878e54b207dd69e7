/**
 * Test-time augmentation by horizontal flip, inside the feature model.
 *
 *   image [N,H,W,3] uint8 NHWC
 *     -> Slice axis 2 (W), step -1                 mirror(image)           [N,H,W,3] uint8
 *     -> Concat axis 0 [image, mirror(image)]      image views             [2N,H,W,3] uint8
 *     -> the feature model, unchanged              f(views)                [2N,D] float32
 *     -> Reshape [2,N,D] -> ReduceMean axis 0       (f(x) + f(mirror(x))) / 2
 *   features [N,D] float32
 *
 * The averaging is done on the bottleneck features, not on predictions, so a head spliced on later
 * ({@link ./splice.ts}) sees flip-averaged features, and serving, the model card and the graph's
 * input and output stay as they were. Paintings are not mirror-symmetric, but a painter's style
 * (brushwork, palette, texture) mostly is, and averaging over the two views takes out some of the
 * base's left/right-specific response (Krizhevsky, Sutskever & Hinton 2012, "ImageNet
 * Classification with Deep Convolutional Neural Networks", averaged predictions over crops and
 * their horizontal reflections; the same test-time augmentation is common since).
 *
 * Cost: the base runs on twice the batch, so about 2x the compute and activation memory of the
 * feature model per image; the added nodes (a uint8 copy and an average) are negligible.
 */
import type { ModelProto, NodeProto, TensorProto, ValueInfoProto } from '../src/onnx/model.js';
import { toNumber } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { TENSOR } from './base.js';
import { int64Tensor, node, valueInfo } from './graph.js';

/** Names of the tensors {@link averageFeaturesOverFlip} adds to the graph. */
export const VIEW_TENSOR = {
  /** `[N,H,W,3] uint8`: the input mirrored left-right. */
  mirror: 'artist_id/image_mirror',
  /** `[2N,H,W,3] uint8`: the input, then its mirror; what the feature nodes read instead of `image`. */
  imageViews: 'artist_id/image_views',
  /** `[2N,D] float32`: features of both views, as produced by the original feature nodes. */
  featuresViews: 'artist_id/features_views',
  /** `[2,N,D] float32`: the same, view-major. */
  featuresGrouped: 'artist_id/features_grouped',
} as const;

/** Smallest int64, the Slice `ends` meaning "through index 0" for a negative step. */
const INT64_MIN = -(2 ** 63);

/**
 * Wraps a feature model so that `features(x) = (f(x) + f(mirror(x))) / 2`, where `mirror` flips
 * the width axis (axis 2 of NHWC) and `f` is the original model (the argument is not modified).
 *
 * @param featureModel - from `buildFeatureModel` (export/base.ts) or `buildStyleFeatureModel`
 *   (export/style.ts): input `image` `[N,H,W,3] uint8 NHWC`, output `features` `[N,D] float32`.
 * @returns a deep copy with the same graph input and output (names, types, shapes) computing the
 *   flip-averaged features; about twice the compute of `featureModel`.
 * @throws Error when the model has no graph input `image` or no graph output `features` (or no node
 *   producing it), when `image` is not rank 4, when the default-domain opset is below 10 (Slice with
 *   negative steps) or not declared, or when the model already has the tensors this adds (wrapped twice).
 */
export function averageFeaturesOverFlip(featureModel: ModelProto): ModelProto {
  const model: ModelProto = structuredClone(featureModel);
  const graph = model.graph;

  const input = graph.input.find((v) => v.name === TENSOR.image);
  if (!input) {
    throw new Error(`Expected a feature model with graph input "${TENSOR.image}" [N,H,W,3] uint8 but received inputs: ${names(graph.input)}`);
  }
  const inputDims = input.type?.tensor_type?.shape?.dim;
  if (inputDims && inputDims.length !== 4) {
    throw new Error(`Expected graph input "${TENSOR.image}" of rank 4 [N,H,W,3] but received rank ${inputDims.length}`);
  }
  const output = graph.output.find((v) => v.name === TENSOR.features);
  if (!output) {
    throw new Error(`Expected a feature model with graph output "${TENSOR.features}" [N,D] float32 but received outputs: ${names(graph.output)}`);
  }
  const producer = graph.node.find((n) => n.output.includes(TENSOR.features));
  if (!producer) {
    throw new Error(`Expected a node producing graph output "${TENSOR.features}" but no node of the model does (it is passed through from an input or initializer)`);
  }
  const taken = new Set([...graph.node.flatMap((n) => n.output), ...graph.initializer.map((t) => t.name ?? '')]);
  const clash = Object.values(VIEW_TENSOR).find((t) => taken.has(t));
  if (clash !== undefined) {
    throw new Error(`Expected a feature model without view averaging but tensor "${clash}" already exists (was averageFeaturesOverFlip applied twice?)`);
  }
  const opset = defaultOpset(model);
  if (opset < 10) {
    throw new Error(`Expected a model importing the default ONNX domain at opset >= 10 (Slice with negative steps) but received opset ${opset}`);
  }

  // Every reader of `image` now reads both views; the original input is read only by Slice and Concat.
  for (const n of graph.node) n.input = n.input.map((name) => (name === TENSOR.image ? VIEW_TENSOR.imageViews : name));
  producer.output = producer.output.map((name) => (name === TENSOR.features ? VIEW_TENSOR.featuresViews : name));

  const p = 'artist_id/views';
  const initializers: TensorProto[] = [
    int64Tensor(`${p}/flip_starts`, [1], [-1]),
    int64Tensor(`${p}/flip_ends`, [1], [INT64_MIN]),
    int64Tensor(`${p}/flip_axes`, [1], [2]),
    int64Tensor(`${p}/flip_steps`, [1], [-1]),
  ];
  const prefix: NodeProto[] = [
    withDoc(
      node('Slice', [TENSOR.image, `${p}/flip_starts`, `${p}/flip_ends`, `${p}/flip_axes`, `${p}/flip_steps`], [VIEW_TENSOR.mirror], `${p}/mirror`),
      'test-time augmentation: the image mirrored left-right (W axis from its last index down to 0, step -1)',
    ),
    withDoc(
      node('Concat', [TENSOR.image, VIEW_TENSOR.mirror], [VIEW_TENSOR.imageViews], `${p}/stack_views`, { axis: 0 }),
      'test-time augmentation: rows 0..N-1 the images, rows N..2N-1 their mirrors, so the base sees both views in one batch',
    ),
  ];

  // [2N,D] -> [2,N,D]: view-major because the views were concatenated on the batch axis.
  const d = dimValue(output, 1);
  const suffix: NodeProto[] = [];
  if (d !== undefined) {
    initializers.push(int64Tensor(`${p}/grouped_shape`, [3], [2, -1, d]));
  } else {
    // D is symbolic: read it from the features at run time.
    initializers.push(int64Tensor(`${p}/two_views`, [2], [2, -1]), int64Tensor(`${p}/one`, [1], [1]), int64Tensor(`${p}/two`, [1], [2]));
    suffix.push(
      node('Shape', [VIEW_TENSOR.featuresViews], [`${p}/features_shape`], `${p}/features_shape`),
      node('Slice', [`${p}/features_shape`, `${p}/one`, `${p}/two`], [`${p}/feature_dim`], `${p}/feature_dim`),
      node('Concat', [`${p}/two_views`, `${p}/feature_dim`], [`${p}/grouped_shape`], `${p}/grouped_shape`, { axis: 0 }),
    );
  }
  suffix.push(
    withDoc(
      node('Reshape', [VIEW_TENSOR.featuresViews, `${p}/grouped_shape`], [VIEW_TENSOR.featuresGrouped], `${p}/group_views`),
      'test-time augmentation: [2N,D] -> [2,N,D], view-major, so image i and its mirror line up on axis 0',
    ),
  );
  const meanDoc = 'test-time augmentation: features averaged over the image and its horizontal mirror';
  if (opset >= 18) {
    initializers.push(int64Tensor(`${p}/view_axis`, [1], [0]));
    suffix.push(withDoc(node('ReduceMean', [VIEW_TENSOR.featuresGrouped, `${p}/view_axis`], [TENSOR.features], `${p}/average_views`, { keepdims: 0 }), meanDoc));
  } else {
    suffix.push(withDoc(node('ReduceMean', [VIEW_TENSOR.featuresGrouped], [TENSOR.features], `${p}/average_views`, { axes: [0], keepdims: 0 }), meanDoc));
  }

  graph.node = [...prefix, ...graph.node, ...suffix];
  graph.initializer.push(...initializers);
  const elemType = output.type?.tensor_type?.elem_type ?? DataType.FLOAT;
  const [h, w, c] = [1, 2, 3].map((i) => dimOrSymbol(input, i, ['H', 'W', 'C'][i - 1]));
  // Every tensor the feature nodes produce now has 2N rows. Their value_info keeps the base's batch symbol
  // (e.g. "batch_size"); onnxruntime takes equal symbols as equal sizes, and in a graph that also holds a model
  // without TTA (an ensemble) it then plans to share buffers of N and 2N rows. So the symbol becomes "2N".
  for (const info of graph.value_info ?? []) {
    const batch = info.type?.tensor_type?.shape?.dim?.[0];
    if (batch?.dim_param) batch.dim_param = '2N';
  }
  graph.value_info = [
    ...(graph.value_info ?? []),
    valueInfo(VIEW_TENSOR.mirror, DataType.UINT8, [dimOrSymbol(input, 0, 'N'), h, w, c], 'the input image mirrored left-right'),
    valueInfo(VIEW_TENSOR.imageViews, DataType.UINT8, ['2N', h, w, c], 'the images, then their mirrors'),
    valueInfo(VIEW_TENSOR.featuresViews, elemType, ['2N', d ?? 'D'], 'features of the images, then of their mirrors'),
  ];
  output.doc_string = `${output.doc_string ? `${output.doc_string}, ` : ''}averaged over the image and its horizontal mirror`;
  return model;
}

/** The default-domain (`ai.onnx`) opset the model imports. */
function defaultOpset(model: ModelProto): number {
  const entry = model.opset_import.find((o) => !o.domain || o.domain === 'ai.onnx');
  if (!entry) {
    throw new Error(`Expected the model to import the default ONNX domain but it imports: ${model.opset_import.map((o) => `${o.domain}@${toNumber(o.version)}`).join(', ') || 'nothing'}`);
  }
  return toNumber(entry.version);
}

/** Static size of dimension `index` of a value, if known and positive. */
function dimValue(v: ValueInfoProto, index: number): number | undefined {
  const dim = v.type?.tensor_type?.shape?.dim?.[index];
  const value = dim?.dim_value !== undefined && dim.dim_value !== null ? toNumber(dim.dim_value) : 0;
  return value > 0 ? value : undefined;
}

/** Static size, else the value's own symbol, else `fallback`. */
function dimOrSymbol(v: ValueInfoProto, index: number, fallback: string): number | string {
  return dimValue(v, index) ?? (v.type?.tensor_type?.shape?.dim?.[index]?.dim_param || fallback);
}

function withDoc(n: NodeProto, doc: string): NodeProto {
  n.doc_string = doc;
  return n;
}

function names(values: ValueInfoProto[]): string {
  return values.length > 0 ? values.map((v) => `"${v.name}"`).join(', ') : 'none';
}
