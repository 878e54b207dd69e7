/**
 * State of one ONNX -> TF.js import: what each ONNX tensor name currently stands for, the layers
 * built so far and the weights to load into them once the model exists.
 *
 * Layout: TF.js convolutions are NHWC, ONNX's are NCHW. A rank-4 ONNX tensor `[N,C,H,W]` is held
 * as the TF.js symbolic tensor `[N,H,W,C]` (`layout: 'nhwc'`); rank-2 tensors are the same on
 * both sides (`'plain'`). Global pooling yields ONNX `[N,C,1,1]` but TF.js `[N,C]`
 * (`'squeezed'`), so the common GlobalAveragePool -> Flatten/Reshape needs no extra layer.
 */
import * as tf from '@tensorflow/tfjs';
import type { NodeProto } from '../../src/onnx/model.js';
import type { ConstTensor } from './onnx-values.js';
import { describeNode } from './onnx-values.js';

export type Layout = 'nhwc' | 'plain' | 'squeezed';

/** What an ONNX tensor name maps to during import. */
export type Value =
  | { kind: 'tensor'; t: tf.SymbolicTensor; layout: Layout }
  /** A constant (initializer, Constant node, or folded shape arithmetic). */
  | { kind: 'const'; c: ConstTensor }
  /** A shape vector computed from static shapes; NaN stands for the dynamic batch size. */
  | { kind: 'shape'; values: number[] };

export class ImportContext {
  readonly values = new Map<string, Value>();
  readonly notes: string[] = [];
  private readonly pending: Array<{ layer: tf.layers.Layer; weights: tf.Tensor[] }> = [];
  private readonly names = new Set<string>();

  /** A unique, TF-valid layer name derived from an ONNX node name. */
  layerName(n: NodeProto, suffix = ''): string {
    let base = `${n.name || n.output[0]}${suffix}`.replace(/[^A-Za-z0-9_.\-/]/g, '_').replace(/\/+/g, '_');
    if (!/^[A-Za-z0-9]/.test(base)) base = `n${base}`;
    let name = base;
    for (let i = 1; this.names.has(name); i++) name = `${base}_${i}`;
    this.names.add(name);
    return name;
  }

  get(name: string, n: NodeProto): Value {
    const v = this.values.get(name);
    if (!v) throw new Error(`${describeNode(n)}: input "${name}" is not produced by any earlier node, initializer or graph input`);
    return v;
  }

  /** The input as a symbolic tensor, or an error naming the node when it is a constant. */
  tensor(name: string, n: NodeProto): { t: tf.SymbolicTensor; layout: Layout } {
    const v = this.get(name, n);
    if (v.kind !== 'tensor') throw new Error(`${describeNode(n)}: input "${name}" is a constant here; only computed tensors are supported in this position`);
    return v;
  }

  constant(name: string, n: NodeProto): ConstTensor {
    const v = this.get(name, n);
    if (v.kind === 'const') return v.c;
    if (v.kind === 'shape') return { dims: [v.values.length], values: Float64Array.from(v.values), dataType: 7 };
    throw new Error(`${describeNode(n)}: input "${name}" must be a constant (initializer) for this converter`);
  }

  setTensor(name: string, t: tf.SymbolicTensor, layout: Layout): void {
    this.values.set(name, { kind: 'tensor', t, layout });
  }

  /** Applies `layer` to `input` and schedules `weights` (TF.js order) to be loaded after building. */
  apply(layer: tf.layers.Layer, input: tf.SymbolicTensor | tf.SymbolicTensor[], weights: tf.Tensor[] = []): tf.SymbolicTensor {
    const out = layer.apply(input) as tf.SymbolicTensor;
    if (weights.length > 0) this.pending.push({ layer, weights });
    return out;
  }

  /** The ONNX shape of a tensor value (batch as NaN), from its TF.js shape and layout. */
  onnxShape(v: { t: tf.SymbolicTensor; layout: Layout }): number[] {
    const s = v.t.shape.map((d) => (d === null ? NaN : d));
    if (v.layout === 'nhwc') return [s[0], s[3], s[1], s[2]];
    if (v.layout === 'squeezed') return [...s, 1, 1];
    return s;
  }

  /** Loads the scheduled weights into the built model's layers and frees them. */
  loadWeights(): void {
    for (const { layer, weights } of this.pending) {
      layer.setWeights(weights);
      tf.dispose(weights);
    }
    this.pending.length = 0;
  }

  disposePending(): void {
    for (const { weights } of this.pending) tf.dispose(weights);
    this.pending.length = 0;
  }
}

/** Row-major values of ONNX conv weight `[M, C, kh, kw]` as TF.js conv2d kernel `[kh, kw, C, M]`. */
export function oihwToHwio(w: ConstTensor): tf.Tensor4D {
  const [m, c, kh, kw] = w.dims;
  const out = new Float32Array(w.values.length);
  for (let o = 0; o < m; o++) for (let i = 0; i < c; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
    out[((y * kw + x) * c + i) * m + o] = w.values[((o * c + i) * kh + y) * kw + x];
  }
  return tf.tensor4d(out, [kh, kw, c, m]);
}
