/**
 * Loads the official Keras ImageNet VGG16 conv-base weights,
 * `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (58,889,256 bytes, published with the Keras
 * applications at https://github.com/fchollet/deep-learning-models/releases/tag/v0.1 and
 * https://storage.googleapis.com/tensorflow/keras-applications/vgg16/), into the TF.js model of
 * training/models/vgg16.ts. Read with h5wasm (HDF5 compiled to WebAssembly; no native build).
 *
 * Layout of that file (Keras `save_weights` HDF5 format, legacy Keras 1/2 naming):
 * - root attribute `layer_names`: fixed-length byte strings, the model's layers in order
 *   (`input_1`, `block1_conv1`, `block1_conv2`, `block1_pool`, ..., `block5_pool`);
 * - one group per layer, with attribute `weight_names` (empty for input and pooling layers);
 * - for each conv layer two float32 datasets inside its group, named by `weight_names`:
 *   `<layer>_W_1:0` the kernel `[3, 3, Cin, Cout]` (HWIO, TensorFlow dim ordering — the same as a
 *   TF.js conv2d kernel) and `<layer>_b_1:0` the bias `[Cout]`.
 *
 * Newer Keras files name weights `<layer>/kernel:0` (a nested path); both are resolved relative to
 * the layer group, and kernel/bias are taken in `weight_names` order as Keras does.
 */
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import h5wasm from 'h5wasm/node';
import type { Dataset, Group } from 'h5wasm/node';
import { VGG16_CONV_LAYERS } from '../models/vgg16.js';

/** One weight array of a Keras HDF5 weights file. */
export interface H5Weight {
  /** Its `weight_names` entry, e.g. `block1_conv1_W_1:0`. */
  name: string;
  shape: number[];
  /** Row-major (C order) float32 values. */
  values: Float32Array;
}

/** A Keras HDF5 weights file: `layer_names` in order, and the weights of each layer. */
export interface KerasH5Weights {
  layerNames: string[];
  layers: Map<string, H5Weight[]>;
}

/** The official file name. */
export const VGG16_NOTOP_FILE = 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5';

/**
 * Reads every layer's weights of a Keras HDF5 weights file.
 *
 * @param path - path of the `.h5` file on the local filesystem.
 * @throws Error when the file is missing or not HDF5, lacks the root `layer_names` attribute, a
 *   listed layer group or weight dataset is missing, or a weight is not floating point.
 */
export async function readKerasH5Weights(path: string): Promise<KerasH5Weights> {
  if (!existsSync(path)) throw new Error(`Expected a Keras HDF5 weights file at ${path} but there is no such file`);
  await h5wasm.ready;
  let file: InstanceType<typeof h5wasm.File>;
  try {
    file = new h5wasm.File(path, 'r');
  } catch (err) {
    throw new Error(`Could not open ${path} as HDF5: ${(err as Error).message}`);
  }
  try {
    const layerNames = strings(file.attrs['layer_names']?.value, `root attribute layer_names of ${path}`);
    const layers = new Map<string, H5Weight[]>();
    for (const layer of layerNames) {
      const group = file.get(layer);
      if (!(group instanceof h5wasm.Group)) throw new Error(`Expected a group "${layer}" (listed in layer_names) in ${path} but found ${group ? 'another object' : 'nothing'}`);
      const names = strings((group as Group).attrs['weight_names']?.value ?? [], `attribute weight_names of layer "${layer}" in ${path}`);
      layers.set(
        layer,
        names.map((name) => {
          const ds = (group as Group).get(name);
          if (!(ds instanceof h5wasm.Dataset)) throw new Error(`Expected dataset "${layer}/${name}" (listed in weight_names of layer "${layer}") in ${path} but found ${ds ? 'another object' : 'nothing'}`);
          return { name, shape: [...((ds as Dataset).shape ?? [])], values: floats((ds as Dataset).value, `${layer}/${name}`) };
        }),
      );
    }
    return { layerNames, layers };
  } finally {
    file.close();
  }
}

/** Summary of a successful {@link loadVgg16Weights}. */
export interface Vgg16LoadReport {
  /** Conv layers assigned, in order (13). */
  layers: string[];
  /** Values assigned (14,714,688 for the full base). */
  parameters: number;
}

/**
 * Assigns the VGG16 conv-base weights from a Keras HDF5 file to a model built by
 * `buildVgg16Base` (or any model with layers named `block1_conv1` … `block5_conv3`).
 *
 * Every one of the 13 conv layers must be present in both the model and the file, with a kernel
 * `[3,3,Cin,Cout]` and a bias `[Cout]` of exactly the model's shapes; nothing is assigned unless
 * all are (checked first).
 *
 * @throws Error naming the layer (and weight) with the expected and received shapes or names.
 */
export async function loadVgg16Weights(model: tf.LayersModel, path: string): Promise<Vgg16LoadReport> {
  const file = await readKerasH5Weights(path);
  const assignments: Array<{ layer: tf.layers.Layer; values: H5Weight[] }> = [];
  for (const { name } of VGG16_CONV_LAYERS) {
    let layer: tf.layers.Layer;
    try {
      layer = model.getLayer(name);
    } catch {
      throw new Error(`Expected the model to have a layer "${name}" (Keras VGG16 naming) but it has: ${model.layers.map((l) => l.name).join(', ')}`);
    }
    const weights = file.layers.get(name);
    if (!weights) throw new Error(`Expected layer "${name}" in ${path} but its layer_names are: ${file.layerNames.join(', ')}`);
    const expected = layer.weights.map((w) => w.shape as number[]);
    if (weights.length !== expected.length) {
      throw new Error(`Expected ${expected.length} weights (kernel, bias) for layer "${name}" in ${path} but received ${weights.length}: ${weights.map((w) => w.name).join(', ') || 'none'}`);
    }
    weights.forEach((w, i) => {
      const role = i === 0 ? 'kernel' : 'bias';
      if (w.shape.length !== expected[i].length || w.shape.some((d, j) => d !== expected[i][j])) {
        throw new Error(`Expected ${role} "${w.name}" of layer "${name}" to have shape [${expected[i].join(',')}] but received [${w.shape.join(',')}] in ${path}`);
      }
    });
    assignments.push({ layer, values: weights });
  }
  let parameters = 0;
  for (const { layer, values } of assignments) {
    const tensors = values.map((w) => tf.tensor(w.values, w.shape));
    layer.setWeights(tensors);
    tf.dispose(tensors);
    parameters += values.reduce((s, w) => s + w.values.length, 0);
  }
  return { layers: assignments.map((a) => a.layer.name), parameters };
}

function strings(value: unknown, what: string): string[] {
  const items = typeof value === 'string' ? [value] : Array.isArray(value) ? value : null;
  if (!items) throw new Error(`Expected ${what} to be a list of strings but received ${value === undefined || value === null ? 'nothing' : typeof value}`);
  return items.map((v) => (v instanceof Uint8Array ? new TextDecoder().decode(v).replace(/\0+$/, '') : String(v)));
}

function floats(value: unknown, what: string): Float32Array {
  if (value instanceof Float32Array) return value;
  if (value instanceof Float64Array) return Float32Array.from(value);
  throw new Error(`Expected float32 values in dataset "${what}" but received ${value?.constructor?.name ?? typeof value}`);
}
