/**
 * Open-set variants of the shipped model for tests: models/default/model.onnx re-encoded with an
 * `openSet` entry in its card (and, for graph scores, the in-graph score output), so classify, the API
 * and the web page can be checked against a threshold that rejects everything and one that accepts
 * everything.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OPEN_SET_SCORE_OUTPUT, withOpenSetScore } from '../export/open-set-graph.js';
import { resolveModelPath } from '../src/inference/classifier.js';
import { CARD_METADATA_KEY, type ModelCard } from '../src/model/card.js';
import { cardOfModel } from '../src/model/read-card.js';
import { decodeModel, encodeModel } from '../src/onnx/model.js';

/** Thresholds no score of these models reaches / every score passes (finite: the card is JSON). */
export const REJECT_ALL = 1e30;
export const ACCEPT_ALL = -1e30;

/**
 * Writes `<dir>/<name>.onnx`: the shipped model with no `openSet` in its card (a model that always
 * answers one of its artists, as models trained before every method fitted a threshold do).
 *
 * @returns the model file's path.
 */
export async function writeClosedSetModel(dir: string, name: string): Promise<string> {
  const source = resolveModelPath('default');
  const model = decodeModel(await readFile(source), source);
  const { openSet: _dropped, ...card } = cardOfModel(model, source);
  model.metadata_props = [...(model.metadata_props ?? []).filter((p) => p.key !== CARD_METADATA_KEY), { key: CARD_METADATA_KEY, value: JSON.stringify({ ...card, name }) }];
  const path = join(dir, `${name}.onnx`);
  await writeFile(path, encodeModel(model));
  return path;
}

/**
 * Writes `<dir>/<name>.onnx`: the shipped model with `openSet` = `{ score, threshold }` in its card.
 * For `mahalanobis` the graph gets `open_set_score` from a small whitening map (the first 8 features,
 * one centre per class at the origin: the score is minus the squared norm of those features).
 *
 * @returns the model file's path.
 */
export async function writeOpenSetModel(dir: string, name: string, score: 'msp' | 'energy' | 'mahalanobis', threshold: number): Promise<string> {
  const source = resolveModelPath('default');
  let model = decodeModel(await readFile(source), source);
  const card: ModelCard = cardOfModel(model, source);
  if (score === 'mahalanobis') {
    const d = card.base.featureDim;
    const k = 8;
    const weight = new Float32Array(d * k);
    for (let i = 0; i < k; i++) weight[i * k + i] = 1;
    model = withOpenSetScore(model, { inputDim: d, dim: k, weight, bias: new Float32Array(k), centres: new Float32Array(card.classes.length * k) });
  }
  const openSet: ModelCard['openSet'] = {
    score,
    ...(score === 'mahalanobis' ? { output: OPEN_SET_SCORE_OUTPUT } : {}),
    threshold,
    targetAcceptRate: 0.95,
    validationAcceptRate: 0.95,
    validationImages: 330,
  };
  model.metadata_props = [...(model.metadata_props ?? []).filter((p) => p.key !== CARD_METADATA_KEY), { key: CARD_METADATA_KEY, value: JSON.stringify({ ...card, name, openSet }) }];
  const path = join(dir, `${name}.onnx`);
  await writeFile(path, encodeModel(model));
  return path;
}
