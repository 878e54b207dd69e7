/**
 * TensorFlow.js backend choice for training: tfjs-node-gpu (CUDA) when it loads, else tfjs-node
 * (libtensorflow on CPU), else WASM (SIMD, runs everywhere), else the pure-JS CPU backend.
 *
 * Both native packages are optional dependencies: their install step downloads libtensorflow,
 * which fails on machines without internet, and npm then leaves them out.
 */
import * as tf from '@tensorflow/tfjs';
import { registerWasmGradientKernels } from './kernels/index.js';
import { registerFastWasmMatMul } from './wasm-matmul.js';

export type TrainingBackend = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';

/** The backend chosen by the first successful {@link initTrainingBackend} call. */
let chosen: { name: TrainingBackend; notes: string[] } | undefined;

/**
 * Selects and initialises the best available backend once per process.
 *
 * @param preferred - force one backend (e.g. `cpu` for a reference run); default automatic.
 * @returns the backend name and why the faster ones were passed over.
 * @throws Error when `preferred` is given and cannot be initialised.
 */
export async function initTrainingBackend(preferred?: TrainingBackend): Promise<{ name: TrainingBackend; notes: string[] }> {
  if (chosen && (!preferred || preferred === chosen.name)) return chosen;
  const notes: string[] = [];
  const order: TrainingBackend[] = preferred ? [preferred] : ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];
  for (const name of order) {
    try {
      await load(name);
      chosen = { name, notes };
      return chosen;
    } catch (err) {
      notes.push(`${name}: ${firstLine((err as Error).message)}`);
    }
  }
  throw new Error(`Could not initialise TensorFlow.js backend ${preferred}: ${notes.join('; ')}`);
}

async function load(name: TrainingBackend): Promise<void> {
  switch (name) {
    case 'tensorflow-gpu':
      // Registers the 'tensorflow' backend linked against CUDA libtensorflow.
      await import(/* optional */ '@tensorflow/tfjs-node-gpu' as string);
      await setOrThrow('tensorflow');
      return;
    case 'tensorflow':
      await import(/* optional */ '@tensorflow/tfjs-node' as string);
      await setOrThrow('tensorflow');
      return;
    case 'wasm':
      await import('@tensorflow/tfjs-backend-wasm');
      await setOrThrow('wasm');
      registerFastWasmMatMul();
      // Convolution and depthwise gradients (missing or slow in tfjs-backend-wasm 4.22), MaxPoolGrad (wrong for all-negative windows).
      registerWasmGradientKernels();
      return;
    case 'cpu':
      await setOrThrow('cpu');
  }
}

async function setOrThrow(backend: string): Promise<void> {
  if (!(await tf.setBackend(backend))) throw new Error(`tf.setBackend('${backend}') returned false`);
  await tf.ready();
}

function firstLine(text: string): string {
  return text.split('\n')[0].slice(0, 200);
}
