/**
 * The preprocessing contract between images and models: the one definition of resize, colour,
 * layout and normalisation. Training, export, serving and benchmarks all read it from here, and a
 * trained model carries its own copy in its ONNX metadata (`artist_id.preprocessing`).
 */

/** How an image is brought to the model's input size. */
export type ResizeFit = 'fill' | 'cover';

/** Preprocessing applied before (decode side) and inside (graph side) an artist-id model. */
export interface PreprocessSpec {
  /** Model input width and height in pixels. */
  width: number;
  height: number;
  /**
   * `fill` squashes the whole painting to width x height, ignoring aspect ratio (what our training
   * images already are: WikiArt crops squashed to 224x224); `cover` scales and centre-crops.
   */
  fit: ResizeFit;
  /** sharp resampling kernel (https://sharp.pixelplumbing.com/api-resize). */
  kernel: 'lanczos3' | 'cubic' | 'linear' | 'nearest' | 'mitchell';
  /** Alpha is flattened onto this sRGB background colour before resizing. */
  background: string;
  /** Decoded tensor handed to the model: `[N,H,W,3] uint8 NHWC` sRGB. */
  layout: 'NHWC';
  dtype: 'uint8';
  /**
   * Normalisation done inside the ONNX graph: x/255, then per channel (x - mean) / std, then
   * transpose to NCHW for the base network.
   */
  mean: [number, number, number];
  std: [number, number, number];
}

/**
 * ImageNet statistics used by torchvision's MobileNetV2 (the base in `mobilenetv2-12-int8.onnx`).
 * Source: torchvision `transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])`.
 */
export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

/** Default preprocessing of artist-id models: 224x224 squash, lanczos3, white background. */
export const DEFAULT_PREPROCESS: PreprocessSpec = {
  width: 224,
  height: 224,
  fit: 'fill',
  kernel: 'lanczos3',
  background: '#ffffff',
  layout: 'NHWC',
  dtype: 'uint8',
  mean: IMAGENET_MEAN,
  std: IMAGENET_STD,
};

/** Bytes in one decoded image: H x W x 3 uint8. */
export function imageBytes(spec: PreprocessSpec): number {
  return spec.width * spec.height * 3;
}
