/**
 * A faster `BatchMatMul` for the TF.js WASM backend when an operand is transposed.
 *
 * Measured here (tfjs-backend-wasm 4.22, 2 cores): `matMul(a, b, transposeA=true)` of [1280x32]ᵀ x
 * [32x256] takes ~75 ms, but an explicit `Transpose` kernel followed by a plain `BatchMatMul` takes
 * ~10 ms; `transposeB` is similarly slow (~29 ms vs ~3 ms). Every Dense layer's backward pass
 * (dW = xᵀ·dy, dx = dy·Wᵀ) hits these paths, so training heads on WASM was dominated by them. The
 * override keeps the numerics (same kernels, just materialised transposes) and changes nothing for
 * untransposed products.
 */
import * as tf from '@tensorflow/tfjs';

type KernelArgs = Parameters<tf.KernelFunc>[0];

let installed = false;

/** Replaces the WASM backend's `BatchMatMul` kernel once per process; a no-op on other backends. */
export function registerFastWasmMatMul(): void {
  if (installed) return;
  const original = tf.getKernel('BatchMatMul', 'wasm');
  const transposeKernel = tf.getKernel('Transpose', 'wasm');
  if (!original || !transposeKernel) return;
  installed = true;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    kernelFunc: (args: KernelArgs) => {
      const { inputs, backend, attrs } = args;
      const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return original.kernelFunc(args);
      const swapLast = (x: tf.TensorInfo): tf.TensorInfo => {
        const rank = x.shape.length;
        const perm = [...Array(rank - 2).keys(), rank - 1, rank - 2];
        return transposeKernel.kernelFunc({ inputs: { x }, backend, attrs: { perm } }) as tf.TensorInfo;
      };
      const a = transposeA ? swapLast(inputs.a as tf.TensorInfo) : (inputs.a as tf.TensorInfo);
      const b = transposeB ? swapLast(inputs.b as tf.TensorInfo) : (inputs.b as tf.TensorInfo);
      const out = original.kernelFunc({ inputs: { a, b }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
      const wasm = backend as tf.KernelBackend;
      if (transposeA) wasm.disposeData(a.dataId);
      if (transposeB) wasm.disposeData(b.dataId);
      return out;
    },
  });
}
