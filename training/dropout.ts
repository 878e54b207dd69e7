/**
 * Fresh, reproducible dropout masks for TF.js models trained step by step.
 *
 * TF.js behaviour (checked with @tensorflow/tfjs 4.22): `tf.layers.dropout({ rate, seed })` keeps `seed` on
 * the layer and, in training mode, calls `tf.dropout(x, rate, noiseShape, this.seed)`, which draws its
 * uniform noise from a generator freshly created from that seed (`seedrandom.alea(String(seed))`) at every
 * call. So a Dropout layer given a fixed seed draws the SAME mask at every training step (for a given batch
 * shape): it does not do dropout, it silently removes one fixed set of units (a smaller, thinned network)
 * for the whole training, while inference uses all of them rescaled. (Without a seed the masks do vary, but
 * training is then not reproducible.) test/dropout.test.ts pins this upstream behaviour down.
 *
 * The fix, used by every trainer here (training/head.ts, training/finetune/top.ts,
 * training/train-baseline.ts): before each training step, give each Dropout layer a seed that depends
 * on the run's seed and the step number ({@link reseedDropout}). Masks then differ from step to step, and
 * the same seed and step always give the same mask, so runs stay reproducible.
 */
import type * as tf from '@tensorflow/tfjs';

/** Classes whose `call` passes `this.seed` to `tf.dropout` (SpatialDropout1D extends Dropout). */
const SEEDED_DROPOUT = new Set(['Dropout', 'SpatialDropout1D']);

/** A layer's `seed`: read by `Dropout.call` at every call, declared `private readonly` in the typings. */
type Seeded = { seed?: number };

/**
 * The seed of the `layer`-th Dropout layer at training step `step` of a run seeded `seed`:
 * `seed * 1_000_003 + step` for the first layer (the formula train-baseline.ts has always used, so its
 * runs are unchanged), shifted by `layer * 7_777_777_777` for further layers so that two Dropout layers of
 * one model do not draw the same mask at the same step. Exact integers for `|seed|` up to about 2^31.
 */
export function dropoutSeed(seed: number, step: number, layer = 0): number {
  return seed * 1_000_003 + step + layer * 7_777_777_777;
}

/** The model's Dropout layers (nested models included), in layer order. */
export function dropoutLayers(model: tf.LayersModel): tf.layers.Layer[] {
  const found: tf.layers.Layer[] = [];
  const visit = (layers: tf.layers.Layer[]) => {
    for (const layer of layers) {
      if (SEEDED_DROPOUT.has(layer.getClassName())) found.push(layer);
      const inner = (layer as unknown as { layers?: tf.layers.Layer[] }).layers;
      if (Array.isArray(inner)) visit(inner);
    }
  };
  visit(model.layers);
  return found;
}

/**
 * Gives every Dropout layer of `model` the seed {@link dropoutSeed}`(seed, step, i)` (i = its index among
 * the model's Dropout layers). Call it before each training step (`trainOnBatch`, or a manual forward
 * pass with `training: true`) with a step counter that increases over the whole run; without it a seeded
 * TF.js Dropout repeats one mask at every step (see the module comment).
 *
 * Side effect: the layers' `getConfig().seed` is the last step's seed afterwards.
 *
 * @returns the number of Dropout layers reseeded (0 when the model has none).
 */
export function reseedDropout(model: tf.LayersModel, seed: number, step: number): number {
  const layers = dropoutLayers(model);
  layers.forEach((layer, i) => {
    (layer as unknown as Seeded).seed = dropoutSeed(seed, step, i);
  });
  return layers.length;
}
