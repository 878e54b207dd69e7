/**
 * Gradient kernels for the TF.js WASM backend, so convolutional networks can be trained on it.
 *
 * `@tensorflow/tfjs-backend-wasm` 4.22 registers 157 kernels. Training the baseline CNN and VGG16
 * on 'wasm' fails only on `Conv2DBackpropFilter`; depthwise layers (MobileNet) also need the two
 * depthwise backprops. Of the native gradient kernels a step uses, test/kernels.test.ts found
 * `MaxPoolGrad` wrong (all-negative windows get no gradient), `Conv2DBackpropInput` correct but a
 * scalar loop, and `AvgPoolGrad` correct. Supplied (./conv-gradients.ts):
 *
 * | kernel | why | formulation |
 * |---|---|---|
 * | `Conv2DBackpropFilter` | missing | one conv2d of the transposed input `[Cin,H,W,N]` with dy as filter `[OH,OW,N,Cout]`, dilation = stride |
 * | `Conv2DBackpropInput` | slow native | conv2d of stride-stuffed, padded dy with the rotated, in/out-swapped filter |
 * | `DepthwiseConv2dNativeBackpropFilter` | missing | per tap: strided slice x per-channel batched matMul with dy |
 * | `DepthwiseConv2dNativeBackpropInput` | missing | depthwise conv of stride-stuffed, padded dy with the 180°-rotated filter |
 * | `MaxPoolGrad` | incorrect native | per tap: first-max mask (equal to pooled output), put back by interleave/offset |
 *
 * Timing (baseline CNN, 150x150, batch 10, one training step): pure-JS CPU backend 374 s, 94% in
 * `Conv2DBackpropFilter` (project measurement); WASM with these kernels 1.6 s on an idle 2-core
 * machine (project measurement), 4–16 s wall (about 6 CPU-seconds) with the machine shared at
 * load 6–12. `scripts/train-throughput.ts` prints current figures.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { conv2dBackpropFilter, conv2dBackpropInput, depthwiseConv2dBackpropFilter, depthwiseConv2dBackpropInput, maxPoolGrad } from './conv-gradients.js';

export { conv2dBackpropFilter, conv2dBackpropInput, depthwiseConv2dBackpropFilter, depthwiseConv2dBackpropInput, maxPoolGrad, padOrCrop } from './conv-gradients.js';

type Attrs = Record<string, unknown>;

/**
 * Wraps a tf-ops implementation as a kernel function. Inside a kernel the engine does not record
 * a gradient tape (kernelDepth > 0), the inputs are the caller's tensors, and a returned Tensor is
 * used as the kernel output as is; `tf.tidy` disposes every intermediate.
 */
function kernel(impl: (inputs: Record<string, tf.Tensor>, attrs: Attrs) => tf.Tensor): KernelFunc {
  return ({ inputs, attrs }: { inputs: NamedTensorInfoMap; attrs?: NamedAttrMap }): TensorInfo =>
    tf.tidy(() => impl(inputs as unknown as Record<string, tf.Tensor>, (attrs ?? {}) as Attrs));
}

type Pad = Parameters<typeof conv2dBackpropFilter>[4];
type Rounding = Parameters<typeof conv2dBackpropFilter>[6];
type Shape4 = [number, number, number, number];
type Pair = [number, number] | number;
type DataFormat = 'NHWC' | 'NCHW';

/** A kernel supplied for 'wasm', and whether it replaces a slower native one. */
export interface SuppliedKernel {
  config: KernelConfig;
  /**
   * Why the backend's own kernel of this name is replaced (it is kept and restorable); absent when
   * the kernel only fills a gap. `incorrect` replacements are always made; `slow` ones unless
   * `replaceSlowNative: false`.
   */
  replaces?: 'slow' | 'incorrect';
}

/** The kernels supplied for 'wasm', in registration order. */
export const WASM_GRADIENT_KERNELS: readonly SuppliedKernel[] = [
  {
    config: {
      kernelName: 'Conv2DBackpropFilter',
      backendName: 'wasm',
      kernelFunc: kernel(({ x, dy }, a) =>
        conv2dBackpropFilter(x as tf.Tensor4D, dy as tf.Tensor4D, a.filterShape as Shape4, a.strides as Pair, a.pad as Pad, (a.dataFormat as DataFormat) ?? 'NHWC', a.dimRoundingMode as Rounding),
      ),
    },
  },
  {
    replaces: 'slow',
    config: {
      kernelName: 'Conv2DBackpropInput',
      backendName: 'wasm',
      kernelFunc: kernel(({ dy, filter }, a) =>
        conv2dBackpropInput(a.inputShape as Shape4, dy as tf.Tensor4D, filter as tf.Tensor4D, a.strides as Pair, a.pad as Pad, (a.dataFormat as DataFormat) ?? 'NHWC', a.dimRoundingMode as Rounding),
      ),
    },
  },
  {
    config: {
      kernelName: 'DepthwiseConv2dNativeBackpropFilter',
      backendName: 'wasm',
      kernelFunc: kernel(({ x, dy }, a) =>
        depthwiseConv2dBackpropFilter(x as tf.Tensor4D, dy as tf.Tensor4D, a.filterShape as Shape4, a.strides as Pair, a.pad as Pad, (a.dilations as Pair) ?? 1, a.dimRoundingMode as Rounding),
      ),
    },
  },
  {
    config: {
      kernelName: 'DepthwiseConv2dNativeBackpropInput',
      backendName: 'wasm',
      kernelFunc: kernel(({ dy, filter }, a) =>
        depthwiseConv2dBackpropInput(a.inputShape as Shape4, dy as tf.Tensor4D, filter as tf.Tensor4D, a.strides as Pair, a.pad as Pad, (a.dilations as Pair) ?? 1, a.dimRoundingMode as Rounding),
      ),
    },
  },
  {
    replaces: 'incorrect',
    config: {
      kernelName: 'MaxPoolGrad',
      backendName: 'wasm',
      kernelFunc: kernel(({ dy, input, output }, a) =>
        maxPoolGrad(dy as tf.Tensor4D, input as tf.Tensor4D, output as tf.Tensor4D, a.filterSize as Pair, a.strides as Pair, a.pad as Pad, a.dimRoundingMode as Rounding),
      ),
    },
  },
];

const ours = new Set<KernelFunc>(WASM_GRADIENT_KERNELS.map((k) => k.config.kernelFunc));
/** Native kernels replaced by {@link registerWasmGradientKernels}, for {@link unregisterWasmGradientKernels}. */
const replaced = new Map<string, KernelConfig>();

export interface RegisterOptions {
  /**
   * Also replace kernels the WASM backend has but runs slowly (today `Conv2DBackpropInput`,
   * a scalar loop; ours is 4–8x faster). Default true.
   */
  replaceSlowNative?: boolean;
}

/**
 * Registers {@link WASM_GRADIENT_KERNELS} for the 'wasm' backend. Idempotent: a kernel already
 * registered by an earlier call is left alone, and so is a missing-kernel gap that a newer
 * tfjs-backend-wasm has filled natively. Importing this module imports
 * `@tensorflow/tfjs-backend-wasm` first, so its native registrations cannot later overwrite
 * ours. Harmless when WASM is not the active backend (registrations are per backend name); call
 * it before the first training step on WASM.
 *
 * @returns the kernel names registered by this call (empty on repeat calls).
 */
export function registerWasmGradientKernels(options: RegisterOptions = {}): string[] {
  const replaceSlowNative = options.replaceSlowNative ?? true;
  const added: string[] = [];
  for (const { config, replaces } of WASM_GRADIENT_KERNELS) {
    const existing = tf.getKernel(config.kernelName, config.backendName);
    if (existing && ours.has(existing.kernelFunc)) continue;
    if (existing) {
      if (!replaces || (replaces === 'slow' && !replaceSlowNative)) continue;
      replaced.set(config.kernelName, existing);
      tf.unregisterKernel(config.kernelName, config.backendName);
    }
    tf.registerKernel(config);
    added.push(config.kernelName);
  }
  return added;
}

/**
 * Undoes {@link registerWasmGradientKernels}: removes the supplied kernels and restores the native
 * ones they replaced (used by tests to compare against the native `Conv2DBackpropInput`).
 */
export function unregisterWasmGradientKernels(): void {
  for (const { config } of WASM_GRADIENT_KERNELS) {
    const existing = tf.getKernel(config.kernelName, config.backendName);
    if (!existing || !ours.has(existing.kernelFunc)) continue;
    tf.unregisterKernel(config.kernelName, config.backendName);
    const native = replaced.get(config.kernelName);
    if (native) {
      tf.registerKernel(native);
      replaced.delete(config.kernelName);
    }
  }
}
