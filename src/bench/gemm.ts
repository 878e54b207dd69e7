/**
 * Calibration: a dense matrix product in onnxruntime (fp32 `MatMul`, int8 `MatMulInteger`
 * u8 × s8), built in memory, so the fraction of peak a compute-bound graph reaches on this machine
 * is measured rather than assumed. A MobileNetV2's figure is read against it: the gap between the two
 * is the model's (memory-bound depthwise layers), not the machine's.
 */
import * as ort from 'onnxruntime-node';
import { encodeModel, type ModelProto } from '../onnx/model.js';
import { expectInteger } from '../errors.js';
import type { BatchRunner } from './model-bench.js';
import { seededRandom } from './stats.js';

/** Shape of the product: `[M,K] × [K,N]`. */
export interface GemmShape {
  m: number;
  k: number;
  n: number;
}

/** Default: 256 × 1024 × 1024 (0.54 GFLOP per run: long enough to time, small enough for caches to matter little). */
export const DEFAULT_GEMM: GemmShape = { m: 256, k: 1024, n: 1024 };

/** FLOPs (or int8 ops) of one product: 2 × M × K × N. */
export function gemmFlops(shape: GemmShape): number {
  return 2 * shape.m * shape.k * shape.n;
}

/**
 * A one-node ONNX model: `y = MatMul(a, B)` (fp32) or `y = MatMulInteger(a, B)` (uint8 a, int8 B,
 * int32 y), B a constant initializer of seeded values.
 */
export function gemmModel(precision: 'fp32' | 'int8', shape: GemmShape = DEFAULT_GEMM): ModelProto {
  const { m, k, n } = shape;
  expectInteger('m', m);
  expectInteger('k', k);
  expectInteger('n', n);
  const random = seededRandom(3);
  const b =
    precision === 'fp32'
      ? { name: 'b', dims: [k, n], data_type: 1, raw_data: new Uint8Array(Float32Array.from({ length: k * n }, () => random() - 0.5).buffer) }
      : { name: 'b', dims: [k, n], data_type: 3, raw_data: Uint8Array.from({ length: k * n }, () => Math.floor(random() * 256)) };
  return {
    ir_version: 7,
    opset_import: [{ domain: '', version: 13 }],
    producer_name: 'artist-id bench',
    graph: {
      name: `gemm-${precision}`,
      node: [{ op_type: precision === 'fp32' ? 'MatMul' : 'MatMulInteger', input: ['a', 'b'], output: ['y'], name: 'gemm' }],
      initializer: [b],
      input: [{ name: 'a', type: { tensor_type: { elem_type: precision === 'fp32' ? 1 : 2, shape: { dim: [{ dim_value: m }, { dim_value: k }] } } } }],
      output: [{ name: 'y', type: { tensor_type: { elem_type: precision === 'fp32' ? 1 : 6, shape: { dim: [{ dim_value: m }, { dim_value: n }] } } } }],
    },
  };
}

/**
 * A runner for the calibration product; `batch` counts products, so "images/s" × {@link gemmFlops}
 * is the achieved FLOP/s.
 */
export async function gemmRunner(precision: 'fp32' | 'int8', options: ort.InferenceSession.SessionOptions = {}, shape: GemmShape = DEFAULT_GEMM): Promise<BatchRunner> {
  const start = performance.now();
  const session = await ort.InferenceSession.create(encodeModel(gemmModel(precision, shape)), { executionProviders: ['cpu'], ...options });
  const createMs = performance.now() - start;
  const random = seededRandom(5);
  const size = shape.m * shape.k;
  const a = precision === 'fp32' ? new ort.Tensor('float32', Float32Array.from({ length: size }, () => random() - 0.5), [shape.m, shape.k]) : new ort.Tensor('uint8', Uint8Array.from({ length: size }, () => Math.floor(random() * 256)), [shape.m, shape.k]);
  return {
    runner: `dense ${precision === 'fp32' ? 'MatMul fp32' : 'MatMulInteger u8×s8'} ${shape.m}×${shape.k}×${shape.n}`,
    variant: 'onnxruntime defaults',
    model: `in-memory ${precision} GEMM`,
    batch: 1,
    provider: 'cpu',
    createMs,
    run: () => session.run({ a }),
    dispose: () => session.release(),
  };
}
