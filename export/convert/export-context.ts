/**
 * State of one TF.js -> ONNX export: the nodes and initializers emitted so far and, for every
 * TF.js symbolic tensor, the ONNX tensor holding it and its layout.
 *
 * Layout choice: the ONNX graph keeps TF.js's NHWC at its input and output (so an exported model
 * takes exactly what the TF.js model takes, `[N,H,W,C] float32`), and runs convolutions and pooling
 * in NCHW (ONNX's only Conv layout). A rank-4 tensor is therefore held either as `'nchw'` (after a
 * conv) or `'nhwc'` (graph input, TF order); {@link ExportContext.as} inserts a Transpose when a
 * consumer needs the other one, and caches it. Flatten and Dense always see NHWC, so the flatten
 * order (H, W, C) and Dense kernels match Keras exactly. Rank-2 tensors are `'plain'`.
 */
import type * as tf from '@tensorflow/tfjs';
import type { NodeProto, TensorProto } from '../../src/onnx/model.js';
import { floatTensor, int64Tensor, node } from '../graph.js';

export type ExportLayout = 'nchw' | 'nhwc' | 'plain';

/** An ONNX tensor standing for a TF.js tensor. */
export interface OnnxValue {
  name: string;
  layout: ExportLayout;
  /** TF.js shape (NHWC for rank 4), batch as null. */
  shape: (number | null)[];
}

export class ExportContext {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly used = new Set<string>();
  private readonly transposed = new Map<string, OnnxValue>();

  /** A unique ONNX tensor/node name. */
  unique(base: string): string {
    let name = base;
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }

  reserve(name: string): void {
    this.used.add(name);
  }

  /** Adds a node; returns its (first) output name. */
  op(opType: string, inputs: string[], base: string, attrs: Parameters<typeof node>[4] = {}, floatAttrs: Record<string, number> = {}, output?: string): string {
    const out = output ?? this.unique(base);
    this.nodes.push(node(opType, inputs, [out], this.unique(`${base}/${opType}`), attrs, floatAttrs));
    return out;
  }

  float(base: string, dims: number[], data: ArrayLike<number>): string {
    const name = this.unique(base);
    this.initializers.push(floatTensor(name, dims, data));
    return name;
  }

  int64(base: string, dims: number[], data: number[]): string {
    const name = this.unique(base);
    this.initializers.push(int64Tensor(name, dims, data));
    return name;
  }

  /** `v` in the requested rank-4 layout (inserting a cached Transpose), or unchanged otherwise. */
  as(v: OnnxValue, layout: 'nchw' | 'nhwc'): OnnxValue {
    if (v.shape.length !== 4 || v.layout === layout) return v;
    const key = `${v.name}->${layout}`;
    const cached = this.transposed.get(key);
    if (cached) return cached;
    const perm = layout === 'nchw' ? [0, 3, 1, 2] : [0, 2, 3, 1];
    const name = this.op('Transpose', [v.name], `${v.name}/to_${layout}`, { perm });
    const out = { name, layout, shape: v.shape };
    this.transposed.set(key, out);
    return out;
  }
}

/** Static TF.js shape of a symbolic tensor. */
export function shapeOf(t: tf.SymbolicTensor): (number | null)[] {
  return t.shape.slice();
}
