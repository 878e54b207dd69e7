/**
 * VGG16 (the slides' base) as artist-id's frozen feature extractor, from the Keras ImageNet weights
 * file `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`:
 *
 *   image [N,224,224,3] uint8 NHWC RGB
 *     -> Cast float -> x * 1 + (-[123.68, 116.779, 103.939])       (VGG16_PREPROCESS, in-graph)
 *     -> VGG16 conv base (block1_conv1 kernel's input channels flipped: takes RGB)
 *     -> GlobalAveragePooling2D -> features [N,512] float32
 *
 * Built in TF.js (training/models/vgg16.ts), weights loaded by layer name (training/h5/vgg16-weights.ts),
 * converted with exportTfjsToOnnx (NHWC float input), then the uint8 `image` input prepended with
 * {@link prependPreprocessing} in `nhwc` layout. The head is spliced onto `features` as for MobileNetV2.
 *
 * Keras 'caffe' preprocessing as a {@link PreprocessSpec}: Keras `preprocess_input` for VGG16
 * (keras/src/applications/imagenet_utils.py, `_preprocess_numpy_input`/`_preprocess_tensor_input`,
 * mode 'caffe') reverses RGB -> BGR and subtracts the BGR means [103.939, 116.779, 123.68], no scaling.
 * A spec has no channel order, so the BGR flip is moved into the network: the first convolution sums
 * over input channels, so reversing the input-channel axis (axis 2 of the HWIO kernel `[3,3,3,64]`)
 * of `block1_conv1` makes conv(BGR, K) == conv(RGB, K'). What remains is a per-channel mean in RGB
 * order with no scaling, which the spec expresses exactly on x/255 as mean = [123.68, 116.779,
 * 103.939]/255 and std = 1/255: (x/255 - m/255) / (1/255) = x - m.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelProto } from '../src/onnx/model.js';
import { DEFAULT_PREPROCESS, type PreprocessSpec } from '../src/preprocess/spec.js';
import { loadVgg16Weights } from '../training/h5/vgg16-weights.js';
import { buildVgg16Base, VGG16_CAFFE_MEAN_BGR } from '../training/models/vgg16.js';
import { exportTfjsToOnnx } from './convert/tfjs-to-onnx.js';
import { prependPreprocessing, TENSOR } from './base.js';

/** Feature length of VGG16's pooled final map (block5 channels). */
export const VGG16_FEATURE_DIM = 512;

/**
 * Keras 'caffe' preprocessing of the VGG16 ImageNet weights as a spec on RGB input (see the module
 * note): 224x224 squash like {@link DEFAULT_PREPROCESS}, mean = RGB caffe means / 255, std = 1/255.
 * Valid only with the flipped first kernel of {@link buildVgg16FeatureModel}.
 */
export const VGG16_PREPROCESS: PreprocessSpec = {
  ...DEFAULT_PREPROCESS,
  mean: [VGG16_CAFFE_MEAN_BGR[2] / 255, VGG16_CAFFE_MEAN_BGR[1] / 255, VGG16_CAFFE_MEAN_BGR[0] / 255],
  std: [1 / 255, 1 / 255, 1 / 255],
};

/** Internal name of the normalised NHWC float tensor fed to the conv base. */
const NORMALIZED = 'artist_id/normalized';

/**
 * Reverses the input-channel axis of `block1_conv1`'s kernel in place, so a model that expected
 * BGR input takes RGB (the caffe BGR flip folded into the weights).
 */
export function flipFirstKernelToRgb(model: tf.LayersModel): void {
  const layer = model.getLayer('block1_conv1');
  const [kernel, bias] = layer.getWeights();
  const flipped = tf.reverse(kernel, 2);
  layer.setWeights([flipped, bias]);
  flipped.dispose();
}

/**
 * Builds the VGG16 feature-extractor model from a Keras notop weights file.
 *
 * @param h5Path - `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (or a file of its layout).
 * @returns ONNX model: input `image` `[N,224,224,3] uint8` NHWC RGB, output `features` `[N,512] float32`.
 * @throws Error from {@link loadVgg16Weights} when the file is missing or does not match the base.
 */
export async function buildVgg16FeatureModel(h5Path: string, spec: PreprocessSpec = VGG16_PREPROCESS): Promise<ModelProto> {
  const model = buildVgg16Base({ inputSize: spec.width, trainable: false });
  if (spec.width !== spec.height) throw new Error(`Expected a square VGG16 input but the preprocessing is ${spec.width}x${spec.height}`);
  try {
    await loadVgg16Weights(model, h5Path);
    flipFirstKernelToRgb(model);
    model.add(tf.layers.globalAveragePooling2d({ name: 'artist_id_gap' }));
    const onnx = exportTfjsToOnnx(model, { inputName: NORMALIZED, outputName: TENSOR.features, graphName: 'vgg16' });
    prependPreprocessing(onnx, NORMALIZED, spec, 'nhwc');
    onnx.graph.output[0].doc_string = 'bottleneck features (global average pool of block5_pool)';
    return onnx;
  } finally {
    model.dispose();
  }
}
