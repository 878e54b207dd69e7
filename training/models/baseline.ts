/**
 * The slides' convolutional network trained from scratch: the small convnet of F. Chollet,
 * "Deep Learning with Python" (Manning 2017), §5.2 "Training a convnet from scratch on a small
 * dataset" (cats vs dogs, 150x150), with a C-way softmax instead of the single sigmoid unit:
 *
 * ```
 * Rescaling(1/255)                       [N,S,S,3] pixels 0..255 -> 0..1 (book: ImageDataGenerator(rescale=1./255))
 * 4 x { Conv2D(F, 3x3, relu, valid) ; MaxPooling2D(2x2) }   F = 32, 64, 128, 128
 * Flatten -> Dropout(0.5) -> Dense(512, relu) -> Dense(C, softmax)
 * ```
 *
 * At the default 150x150 input the spatial sizes are 148 74 72 36 34 17 15 7, so Flatten gives
 * 7*7*128 = 6272 features and the model has 3,452,608 + 513*C parameters (3,454,147 for C = 3; the book's C = 1 sigmoid: 3,453,121).
 * Compiled as in the book: RMSprop, learning rate 1e-4 (rho 0.9, epsilon 1e-7 — the Keras
 * defaults), with categorical cross-entropy for C classes (the book's binary cross-entropy is its
 * C = 2 special case) and accuracy.
 */
import * as tf from '@tensorflow/tfjs';

/** Options of {@link buildBaselineCnn}. */
export interface BaselineCnnConfig {
  /** Input width = height in pixels; default 150 (the book's). At least 46 (smaller leaves no pixels after the 4th pool). */
  inputSize?: number;
  /** Number of artists (softmax units), at least 2. */
  classes: number;
  /** Seeds the Glorot-uniform kernel initialisers and the dropout mask; default 42. */
  seed?: number;
  /** RMSprop learning rate; default 1e-4 (the book's). */
  learningRate?: number;
  /** Dropout rate before the dense layers; default 0.5. */
  dropout?: number;
}

/** The book's input size. */
export const BASELINE_INPUT_SIZE = 150;
/** Smallest input whose 4th max-pool output is still at least 1x1. */
export const BASELINE_MIN_INPUT_SIZE = 46;
/** Filters of the four conv blocks. */
export const BASELINE_FILTERS = [32, 64, 128, 128] as const;

/**
 * Builds and compiles the baseline CNN.
 *
 * Input: `[N, S, S, 3]` float32 RGB pixels in 0..255 (NHWC; a batch of `decodeImage` outputs with
 * `width = height = S`, cast to float). Output: `[N, C]` softmax probabilities.
 *
 * @throws Error naming the option when `inputSize`, `classes`, `learningRate` or `dropout` is out of range.
 * @example
 * const model = buildBaselineCnn({ classes: 11 });           // 150x150, RMSprop 1e-4
 * await model.trainOnBatch(x, tf.oneHot(labels, 11));
 */
export function buildBaselineCnn(config: BaselineCnnConfig): tf.Sequential {
  const inputSize = config.inputSize ?? BASELINE_INPUT_SIZE;
  const seed = config.seed ?? 42;
  const learningRate = config.learningRate ?? 1e-4;
  const dropout = config.dropout ?? 0.5;
  if (!Number.isInteger(inputSize) || inputSize < BASELINE_MIN_INPUT_SIZE) {
    throw new Error(`Expected inputSize an integer >= ${BASELINE_MIN_INPUT_SIZE} (4 conv+pool blocks need it) but received ${inputSize}`);
  }
  if (!Number.isInteger(config.classes) || config.classes < 2) {
    throw new Error(`Expected classes an integer >= 2 but received ${config.classes}`);
  }
  if (!(learningRate > 0)) throw new Error(`Expected learningRate > 0 but received ${learningRate}`);
  if (!(dropout >= 0 && dropout < 1)) throw new Error(`Expected dropout in [0, 1) but received ${dropout}`);

  const init = (k: number) => tf.initializers.glorotUniform({ seed: seed + k });
  const model = tf.sequential({ name: 'baseline_cnn' });
  model.add(tf.layers.rescaling({ inputShape: [inputSize, inputSize, 3], scale: 1 / 255, name: 'rescale' }));
  BASELINE_FILTERS.forEach((filters, i) => {
    model.add(tf.layers.conv2d({ filters, kernelSize: 3, activation: 'relu', padding: 'valid', kernelInitializer: init(i + 1), name: `conv${i + 1}` }));
    model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: `pool${i + 1}` }));
  });
  model.add(tf.layers.flatten({ name: 'flatten' }));
  if (dropout > 0) model.add(tf.layers.dropout({ rate: dropout, seed: seed + 10, name: 'dropout' }));
  model.add(tf.layers.dense({ units: 512, activation: 'relu', kernelInitializer: init(11), name: 'dense' }));
  model.add(tf.layers.dense({ units: config.classes, activation: 'softmax', kernelInitializer: init(12), name: 'output' }));
  model.compile({ optimizer: tf.train.rmsprop(learningRate, 0.9, 0, 1e-7), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return model;
}

/**
 * Stacks decoded images into the models' input batch.
 *
 * @param images - each `[size, size, 3]` uint8 HWC (as `decodeImage` returns).
 * @returns `[images.length, size, size, 3]` float32 tensor of 0..255 pixel values.
 * @throws Error naming the image index when a buffer has the wrong length.
 */
export function imagesToBatch(images: readonly Uint8Array[], size: number): tf.Tensor4D {
  const per = size * size * 3;
  const data = new Float32Array(images.length * per);
  images.forEach((img, i) => {
    if (img.length !== per) throw new Error(`Expected image ${i} to have ${size}x${size}x3 = ${per} bytes but received ${img.length}`);
    data.set(img, i * per);
  });
  return tf.tensor4d(data, [images.length, size, size, 3]);
}
