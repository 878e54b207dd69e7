/**
 * References for int8 import parity: what onnxruntime computes for a QOperator model on this CPU,
 * and a form of the same model that onnxruntime computes exactly as the ONNX spec says.
 *
 * On x86 CPUs with AVX2 but without VNNI, onnxruntime multiplies uint8 activations by int8 weights
 * with `vpmaddubsw`, which saturates pairs of products to int16 ({@link ./avx2-saturation.ts}); with
 * uint8 weights it takes its u8·u8 kernels, which widen to int16 before multiplying and accumulate in
 * int32 without saturation. {@link withUint8Weights} re-encodes the int8 weights as uint8 with zero
 * point 128: `(w + 128) - 128 = w`, so every real weight and every integer product is unchanged, and
 * only the kernel (and so the arithmetic) changes. Requantisation, QLinearAdd and pooling run the same
 * onnxruntime code as for the original file.
 */
import { readFileSync } from 'node:fs';
import type { ModelProto, TensorProto } from '../../src/onnx/model.js';
import { DataType } from '../../src/onnx/schema.js';
import type { Int8Arithmetic } from './ops/qlinear.js';
import { constValues } from './onnx-values.js';

/** Weight (input 3) and weight zero point (input 5) of the QOperator ops that take int8 weights. */
const WEIGHT_INPUTS: Record<string, [number, number]> = { QLinearConv: [3, 5], QLinearMatMul: [3, 5] };

/**
 * A copy of `model` whose int8 QLinearConv / QLinearMatMul weights and weight zero points are stored
 * as uint8 `value + 128`. Same real-valued model; onnxruntime then accumulates exactly (spec
 * arithmetic) on every CPU.
 *
 * @throws Error naming the tensor when a weight is not a constant or is shared with another use.
 */
export function withUint8Weights(model: ModelProto): ModelProto {
  const copy = structuredClone(model);
  const inits = new Map<string, TensorProto>(copy.graph.initializer.map((t) => [t.name ?? '', t]));
  const uses = new Map<string, number>();
  for (const n of copy.graph.node) for (const i of n.input) uses.set(i, (uses.get(i) ?? 0) + 1);
  const done = new Set<string>();
  for (const n of copy.graph.node) {
    const slots = WEIGHT_INPUTS[n.op_type];
    if (!slots) continue;
    for (const slot of slots) {
      const name = n.input[slot];
      const t = inits.get(name);
      if (!t) throw new Error(`withUint8Weights: ${n.op_type} "${n.name}" input ${slot} ("${name}") must be an initializer`);
      if (t.data_type !== DataType.INT8 || done.has(name)) continue;
      if ((uses.get(name) ?? 0) > 1) throw new Error(`withUint8Weights: int8 tensor "${name}" is used by several nodes; re-encoding it would change the others`);
      t.raw_data = Uint8Array.from(constValues(t).values, (v) => v + 128);
      t.int32_data = [];
      t.data_type = DataType.UINT8;
      done.add(name);
    }
  }
  return copy;
}

/**
 * The int8 arithmetic onnxruntime uses on this machine: `'ort-avx2'` on x86-64 Linux CPUs that list
 * `avx2` but neither `avx512_vnni` nor `avx_vnni` in /proc/cpuinfo, else `'spec'` (VNNI CPUs, ARM,
 * and, unverified, other operating systems).
 */
export function onnxruntimeInt8Arithmetic(cpuinfo = '/proc/cpuinfo'): Int8Arithmetic {
  if (process.arch !== 'x64') return 'spec';
  let text: string;
  try {
    text = readFileSync(cpuinfo, 'utf8');
  } catch {
    return 'spec';
  }
  const flags = new Set((/^flags\s*:(.*)$/m.exec(text)?.[1] ?? '').trim().split(/\s+/));
  return flags.has('avx2') && !flags.has('avx512_vnni') && !flags.has('avx_vnni') ? 'ort-avx2' : 'spec';
}
