/**
 * Reading the model card out of an ONNX model: the one path from model bytes to {@link ModelCard}
 * (decode the protobuf, take `metadata_props[artist_id.card]`, validate).
 */
import { readFile } from 'node:fs/promises';
import { decodeModel, metadataOf, type ModelProto } from '../onnx/model.js';
import { CARD_METADATA_KEY, parseModelCard, type ModelCard } from './card.js';

/**
 * The card of a decoded model.
 *
 * @throws Error naming `source` when the model has no card or it is invalid.
 */
export function cardOfModel(model: ModelProto, source: string): ModelCard {
  return parseModelCard(metadataOf(model)[CARD_METADATA_KEY], source);
}

/**
 * The card of a model given as ONNX bytes.
 *
 * @throws Error naming `source` when the bytes are not ONNX, or the card is missing or invalid.
 * @example
 * const card = cardOfBytes(await readFile('model.onnx'), 'model.onnx');
 */
export function cardOfBytes(bytes: Uint8Array, source: string): ModelCard {
  return cardOfModel(decodeModel(bytes, source), source);
}

/** The card of an `.onnx` file (see {@link cardOfBytes}). */
export async function readModelCard(path: string): Promise<ModelCard> {
  return cardOfBytes(await readFile(path), path);
}
