/**
 * `Clip`: a TF.js layer that clamps its input to `[min, max]`, element-wise, any shape.
 *
 * tf.layers has `reLU({ maxValue })` for ranges starting at 0, but no layer for `[lo, hi]` with
 * `lo != 0`, which the saturation of an int8 activation with a non-zero zero point needs (see
 * {@link ./dequantize.ts}). Registered with `tf.serialization.registerClass`, so models using it
 * save and load (`tf.loadLayersModel`) once this module has been imported.
 */
import * as tf from '@tensorflow/tfjs';

/** Layer arguments of tf.layers (name, inputShape, ...) plus the range. */
export type ClipLayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]> & {
  min: number;
  max: number;
};

export class ClipLayer extends tf.layers.Layer {
  /** Registered class name (what `model.json` stores). */
  static className = 'ArtistIdClip';
  readonly min: number;
  readonly max: number;

  constructor(args: ClipLayerArgs) {
    const { min, max, ...layerArgs } = args;
    super(layerArgs);
    void min;
    void max;
    if (!(args.min <= args.max)) throw new Error(`Clip layer ${args.name ?? ''}: min ${args.min} must be <= max ${args.max}`);
    this.min = args.min;
    this.max = args.max;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return tf.clipByValue(x, this.min, this.max);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), min: this.min, max: this.max };
  }
}

tf.serialization.registerClass(ClipLayer);

/** A Clip layer (`[N,...]` in, same shape out). */
export function clipLayer(args: ClipLayerArgs): ClipLayer {
  return new ClipLayer(args);
}
