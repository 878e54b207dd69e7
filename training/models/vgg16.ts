/**
 * The VGG16 convolutional base (the slides' pretrained base): Keras `applications.VGG16(
 * include_top=False)` rebuilt in TF.js with the same layer names, so the official Keras weights
 * file loads by name (training/h5/vgg16-weights.ts).
 *
 * Architecture (K. Simonyan & A. Zisserman, "Very Deep Convolutional Networks for Large-Scale
 * Image Recognition", arXiv:1409.1556, 2014, configuration D; Keras source
 * keras/src/applications/vgg16.py, docs https://keras.io/api/applications/vgg/): five blocks of
 * 3x3 convolutions (stride 1, 'same' padding, ReLU) each followed by a 2x2 max pool (stride 2):
 *
 * | block | layers | filters | output at 224 (at S) |
 * |---|---|---|---|
 * | 1 | block1_conv1, block1_conv2, block1_pool | 64 | 112 (S/2) |
 * | 2 | block2_conv1, block2_conv2, block2_pool | 128 | 56 (S/4) |
 * | 3 | block3_conv1..3, block3_pool | 256 | 28 (S/8) |
 * | 4 | block4_conv1..3, block4_pool | 512 | 14 (S/16) |
 * | 5 | block5_conv1..3, block5_pool | 512 | 7 (S/32) |
 *
 * 13 conv layers, 14,714,688 parameters; output `[N, ⌊S/32⌋, ⌊S/32⌋, 512]` (7x7x512 at 224, 4x4x512
 * at 150 as in the slides' feature extraction).
 *
 * Preprocessing (spec note): the ImageNet weights expect Keras `preprocess_input` in 'caffe' mode
 * (keras/src/applications/imagenet_utils.py): pixels 0..255, channels reordered RGB -> BGR, then the
 * per-channel ImageNet means subtracted, B 103.939, G 116.779, R 123.68, no scaling. For this
 * model as built here, {@link vgg16Preprocess} does that as tensor ops before the model (decode side:
 * `decodeImage` with `width = height = S`, fit 'fill'). A `PreprocessSpec` has no channel order, so
 * the exported feature model (export/vgg16-base.ts) folds the BGR flip into `block1_conv1`'s kernel
 * and uses the exact spec VGG16_PREPROCESS: means [123.68, 116.779, 103.939]/255 in RGB order, std 1/255.
 */
import * as tf from '@tensorflow/tfjs';

/** Keras VGG16 conv layer names and filter counts, in order. */
export const VGG16_CONV_LAYERS: ReadonlyArray<{ name: string; filters: number }> = [
  ...[1, 2].map((i) => ({ name: `block1_conv${i}`, filters: 64 })),
  ...[1, 2].map((i) => ({ name: `block2_conv${i}`, filters: 128 })),
  ...[1, 2, 3].map((i) => ({ name: `block3_conv${i}`, filters: 256 })),
  ...[1, 2, 3].map((i) => ({ name: `block4_conv${i}`, filters: 512 })),
  ...[1, 2, 3].map((i) => ({ name: `block5_conv${i}`, filters: 512 })),
];

/** Layers per block (convs, then the pool `block<b>_pool`). */
const BLOCK_CONVS = [2, 2, 3, 3, 3];

/** ImageNet channel means of Keras 'caffe' preprocessing, in BGR order (after the RGB -> BGR flip). */
export const VGG16_CAFFE_MEAN_BGR: readonly [number, number, number] = [103.939, 116.779, 123.68];

/** Smallest input side that leaves at least 1x1 after the five 2x2 pools. */
export const VGG16_MIN_INPUT_SIZE = 32;

export interface Vgg16Options {
  /** Input width = height; default 224 (ImageNet). At least 32. */
  inputSize?: number;
  /** Seeds the Glorot-uniform initial kernels (replaced when weights are loaded); default 42. */
  seed?: number;
  /** Whether the conv layers are trainable (false for the frozen base of feature extraction); default true. */
  trainable?: boolean;
}

/**
 * Builds the VGG16 conv base (`include_top=False`, no global pooling), uncompiled.
 *
 * Input `[N,S,S,3]` float32, already through {@link vgg16Preprocess}; output `[N,⌊S/32⌋,⌊S/32⌋,512]`.
 * Kernels `[3,3,Cin,Cout]` and biases `[Cout]` are laid out as in the Keras file.
 *
 * @throws Error naming `inputSize` when it is not an integer >= 32.
 */
export function buildVgg16Base(options: Vgg16Options = {}): tf.Sequential {
  const inputSize = options.inputSize ?? 224;
  const seed = options.seed ?? 42;
  if (!Number.isInteger(inputSize) || inputSize < VGG16_MIN_INPUT_SIZE) {
    throw new Error(`Expected inputSize an integer >= ${VGG16_MIN_INPUT_SIZE} (five 2x2 pools) but received ${inputSize}`);
  }
  const model = tf.sequential({ name: 'vgg16' });
  let k = 0;
  BLOCK_CONVS.forEach((convs, b) => {
    for (let i = 0; i < convs; i++) {
      const { name, filters } = VGG16_CONV_LAYERS[k];
      model.add(
        tf.layers.conv2d({
          ...(k === 0 ? { inputShape: [inputSize, inputSize, 3] } : {}),
          name,
          filters,
          kernelSize: 3,
          strides: 1,
          padding: 'same',
          activation: 'relu',
          kernelInitializer: tf.initializers.glorotUniform({ seed: seed + k }),
          trainable: options.trainable ?? true,
        }),
      );
      k++;
    }
    model.add(tf.layers.maxPooling2d({ name: `block${b + 1}_pool`, poolSize: 2, strides: 2 }));
  });
  return model;
}

/**
 * Keras 'caffe' preprocessing for the ImageNet VGG16 weights.
 *
 * @param rgb - `[N,S,S,3]` RGB pixels 0..255 (decodeImage output, cast to float32).
 * @returns `[N,S,S,3]` float32 BGR minus {@link VGG16_CAFFE_MEAN_BGR}.
 */
export function vgg16Preprocess(rgb: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.sub(tf.reverse(tf.cast(rgb, 'float32'), 3), tf.tensor1d([...VGG16_CAFFE_MEAN_BGR])) as tf.Tensor4D);
}
