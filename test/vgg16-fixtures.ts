/**
 * Keras HDF5 weights-file generator for tests: writes files of the exact layout of the official
 * `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (same `layer_names`, groups, `weight_names`,
 * dataset names and shapes) with seeded random values, so no test downloads the real 58.9 MB file.
 * Call after `await h5wasm.ready`.
 */
import h5wasm from 'h5wasm/node';
import { VGG16_CONV_LAYERS } from '../training/models/vgg16.js';

/** Fast seeded uniform(-a, a) values (xorshift32); 14.7M of them take well under a second. */
export function uniform(n: number, a: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * a;
  }
  return out;
}

export interface LayerSpec {
  name: string;
  weights: Array<{ name: string; shape: number[]; values: Float32Array }>;
}

/** Writes a Keras-layout weights file: root `layer_names`, one group per layer with `weight_names`. */
export function writeKerasH5(path: string, layers: LayerSpec[]): void {
  const f = new h5wasm.File(path, 'w');
  try {
    const width = Math.max(...layers.map((l) => l.name.length));
    f.create_attribute('layer_names', layers.map((l) => l.name), null, `S${width}`);
    f.create_attribute('backend', 'tensorflow');
    f.create_attribute('keras_version', '2.0.2');
    for (const layer of layers) {
      const g = f.create_group(layer.name);
      if (layer.weights.length > 0) {
        const w = Math.max(...layer.weights.map((x) => x.name.length));
        g.create_attribute('weight_names', layer.weights.map((x) => x.name), null, `S${w}`);
      } else {
        // Keras writes an empty list here; h5wasm cannot create an empty attribute, and the loader
        // reads a missing `weight_names` as empty.
      }
      for (const wt of layer.weights) g.create_dataset({ name: wt.name, data: wt.values, shape: wt.shape, dtype: '<f' });
    }
  } finally {
    f.close();
  }
}

/** The layer list of the official notop file, with He-uniform kernels (so activations stay finite) and small biases. */
export function vgg16Layers(): LayerSpec[] {
  const layers: LayerSpec[] = [{ name: 'input_1', weights: [] }];
  let cin = 3;
  let seed = 1;
  for (const { name, filters } of VGG16_CONV_LAYERS) {
    const kernel = uniform(9 * cin * filters, Math.sqrt(6 / (9 * cin)), seed++);
    const bias = uniform(filters, 0.1, seed++);
    layers.push({
      name,
      weights: [
        { name: `${name}_W_1:0`, shape: [3, 3, cin, filters], values: kernel },
        { name: `${name}_b_1:0`, shape: [filters], values: bias },
      ],
    });
    cin = filters;
    if (/block\d_conv[23]/.test(name) && !['block3_conv2', 'block4_conv2', 'block5_conv2'].includes(name)) {
      layers.push({ name: name.replace(/conv\d/, 'pool'), weights: [] });
    }
  }
  return layers;
}

/** Writes a random-weights VGG16 notop file at `path` (needs `await h5wasm.ready` first); returns its layers. */
export function writeRandomVgg16H5(path: string): LayerSpec[] {
  const layers = vgg16Layers();
  writeKerasH5(path, layers);
  return layers;
}
