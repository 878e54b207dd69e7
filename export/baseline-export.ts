/**
 * Export of the `baseline` rung (a CNN trained from scratch on pixels) as one artist-id `model.onnx`:
 *
 *   image [N,S,S,3] uint8 NHWC sRGB
 *     -> preprocessing from the card (export/base.ts `prependPreprocessing`: Cast, NCHW, x/255,
 *        (x - mean)/std; for the baseline mean 0 and std 1, i.e. x/255 only)
 *     -> Transpose back to NHWC (onnxruntime's transpose optimiser cancels it against the network's own)
 *     -> the network exported by `exportTfjsToOnnx` (4 x Conv+MaxPool, Flatten, Dense 512 relu, Dense C)
 *     -> features [N,512] (the Dense-512 activations), logits [N,C], probabilities [N,C]
 *
 * The network handed to {@link spliceNetwork} must not rescale its input itself: the only
 * normalisation in the graph is the one the card's `preprocessing` describes.
 */
import type * as tf from '@tensorflow/tfjs';
import { CARD_METADATA_KEY, type ModelCard } from '../src/model/card.js';
import type { ModelProto } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import type { PreprocessSpec } from '../src/preprocess/spec.js';
import { TENSOR, prependPreprocessing } from './base.js';
import { exportTfjsToOnnx } from './convert/tfjs-to-onnx.js';
import { node, valueInfo } from './graph.js';
import { PRODUCER, artistIdOutputs } from './splice.js';

const NET = { input: 'net/input', output: 'net/output', nchw: 'artist_id/pixels_nchw' } as const;

/**
 * Builds the complete model from a network that maps normalised pixels to (features, probabilities).
 *
 * @param network - TF.js model, input `[N,S,S,3] float32 NHWC` already normalised as `card.preprocessing`
 *   says (for the baseline: pixels / 255), outputs in order: features `[N,D]` and softmax probabilities
 *   `[N,C]` (last layer a Dense with softmax activation).
 * @param card - written as JSON under {@link CARD_METADATA_KEY}; its `preprocessing` becomes the graph prefix,
 *   `base.featureDim` must be D.
 * @returns model with input `image` `[N,S,S,3] uint8` and outputs `probabilities`, `logits` `[N,C]`, `features` `[N,D]` float32.
 * @throws Error when the network does not have 2 outputs, its input size differs from the card's
 *   preprocessing, or its probabilities do not come from a Softmax node.
 */
export function spliceNetwork(network: tf.LayersModel, card: ModelCard): ModelProto {
  if (network.outputs.length !== 2) throw new Error(`Expected the network to have 2 outputs (features, probabilities) but it has ${network.outputs.length}`);
  const spec = card.preprocessing;
  const [, h, w, c] = network.inputs[0].shape;
  if (h !== spec.height || w !== spec.width || c !== 3) {
    throw new Error(`Expected the network input [N,${spec.height},${spec.width},3] (card preprocessing) but it takes [N,${h},${w},${c}]`);
  }
  const model = exportTfjsToOnnx(network, { inputName: NET.input, outputName: NET.output });
  const g = model.graph;
  const [featOut, probOut] = g.output.map((o) => o.name);
  const softmax = g.node.find((n) => n.output[0] === probOut);
  if (softmax?.op_type !== 'Softmax') throw new Error(`Expected the network's probabilities to come from a Softmax node but "${probOut}" is produced by ${softmax?.op_type ?? 'nothing'}`);
  const rename = new Map<string, string>([
    [featOut, TENSOR.features],
    [probOut, TENSOR.probabilities],
  ]);
  for (const n of g.node) {
    n.input = n.input.map((t) => rename.get(t) ?? t);
    n.output = n.output.map((t) => rename.get(t) ?? t);
  }
  g.node.push(node('Identity', [softmax.input[0]], [TENSOR.logits], 'artist_id/logits'));

  // image uint8 NHWC -> normalised NCHW (card.preprocessing) -> NHWC float, the network's input.
  prependPreprocessing(model, NET.nchw, spec);
  const toNhwc = node('Transpose', [NET.nchw], [NET.input], 'artist_id/to_nhwc', { perm: [0, 2, 3, 1] });
  const after = g.node.findIndex((n) => n.output.includes(NET.nchw));
  g.node.splice(after + 1, 0, toNhwc);
  g.input = g.input.filter((v) => v.name !== NET.input);

  const k = card.classes.length;
  g.name = 'artist-id';
  g.output = artistIdOutputs(card, 'penultimate activations of the network (learned features)');
  g.value_info = [];
  model.producer_name = PRODUCER.name;
  model.producer_version = PRODUCER.version;
  model.doc_string = `artist-id model "${card.name}" (${card.training.method}, trained from scratch): who painted it, among ${k} artists. Input image [N,${spec.height},${spec.width},3] uint8 NHWC sRGB (resize: ${spec.fit}). See metadata ${CARD_METADATA_KEY}.`;
  model.metadata_props = [{ key: CARD_METADATA_KEY, value: JSON.stringify(card) }];
  return model;
}

/**
 * The parity reference's input side for networks trained on pixels: `image` `[N,H,W,3] uint8` ->
 * `features` `[N,H*W*3] float32`, the decoded pixels unchanged (0..255, HWC order per row). Used as the
 * `features` session of `checkParity`, so the reference is the whole TF.js network on exactly the
 * pixels the exported model receives.
 */
export function buildPixelModel(spec: PreprocessSpec): ModelProto {
  return {
    ir_version: 8,
    opset_import: [{ domain: '', version: 13 }],
    producer_name: PRODUCER.name,
    producer_version: PRODUCER.version,
    graph: {
      name: 'artist-id-pixels',
      node: [
        node('Cast', [TENSOR.image], ['pixels_f32'], 'cast', { to: DataType.FLOAT }),
        node('Flatten', ['pixels_f32'], [TENSOR.features], 'flatten', { axis: 1 }),
      ],
      initializer: [],
      input: [valueInfo(TENSOR.image, DataType.UINT8, ['N', spec.height, spec.width, 3], 'RGB image, uint8 NHWC')],
      output: [valueInfo(TENSOR.features, DataType.FLOAT, ['N', spec.height * spec.width * 3], 'pixels 0..255, HWC order')],
    },
  };
}
