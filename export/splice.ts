/**
 * Splices a trained head onto the feature model, giving one artist-id `model.onnx`:
 * `image` `[N,H,W,3] uint8` in; `probabilities` `[N,C]`, `logits` `[N,C]` and `features` `[N,D]`
 * float32 out; the model card (classes, preprocessing, training, metrics) in `metadata_props`.
 */
import { CARD_METADATA_KEY, type ModelCard } from '../src/model/card.js';
import type { ModelProto } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { TENSOR } from './base.js';
import { valueInfo } from './graph.js';
import type { HeadGraph } from './head-to-onnx.js';

/** Producer recorded in exported models. */
export const PRODUCER = { name: 'artist-id', version: '0.1.0' };

/**
 * Builds the complete model (the arguments are not modified).
 *
 * @param featureModel - output of `buildFeatureModel`.
 * @param head - output of `headToOnnx`.
 * @param card - written as JSON under {@link CARD_METADATA_KEY}.
 * @param featuresDoc - doc string of the `features` output; default: bottleneck features of the frozen base.
 */
export function spliceHead(featureModel: ModelProto, head: HeadGraph, card: ModelCard, featuresDoc = 'bottleneck features of the frozen base'): ModelProto {
  const model: ModelProto = structuredClone(featureModel);
  const c = card.classes.length;
  model.graph.name = 'artist-id';
  model.graph.node.push(...head.nodes);
  model.graph.initializer.push(...head.initializers);
  model.graph.output = artistIdOutputs(card, featuresDoc);
  model.producer_name = PRODUCER.name;
  model.producer_version = PRODUCER.version;
  model.doc_string = `artist-id model "${card.name}": who painted it, among ${c} artists. Input image [N,${card.preprocessing.height},${card.preprocessing.width},3] uint8 NHWC sRGB (resize: ${card.preprocessing.fit}). See metadata ${CARD_METADATA_KEY}.`;
  model.metadata_props = [{ key: CARD_METADATA_KEY, value: JSON.stringify(card) }];
  return model;
}

/**
 * The three graph outputs of every artist-id model: `probabilities` and `logits` `[N,C]` float32, and
 * `features` `[N,D]` float32 (D = card.base.featureDim), with their doc strings.
 *
 * @param featuresDoc - what the features are for this kind of model.
 * @param logitsDoc - what the logits are; default "logits (pre-softmax)".
 */
export function artistIdOutputs(card: ModelCard, featuresDoc: string, logitsDoc = 'logits (pre-softmax)') {
  const c = card.classes.length;
  return [
    valueInfo(TENSOR.probabilities, DataType.FLOAT, ['N', c], `softmax probabilities over: ${card.classes.join(', ')}`),
    valueInfo(TENSOR.logits, DataType.FLOAT, ['N', c], logitsDoc),
    valueInfo(TENSOR.features, DataType.FLOAT, ['N', card.base.featureDim], featuresDoc),
  ];
}
