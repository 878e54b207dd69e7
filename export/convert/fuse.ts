/**
 * ONNX -> ONNX peephole run before import: `MatMul(x, W)` followed by `Add(., b)` with constant W
 * and b becomes `Gemm(x, W, b)` (one TF.js Dense with bias).
 *
 * In a dequantised QOperator graph the MatMul output is requantised before the bias add
 * (QLinearMatMul then QLinearAdd), i.e. `MatMul -> Clip -> Add -> Clip`. The first Clip is the
 * saturation of the 8-bit MatMul result; it is dropped by this fusion (reported in the notes), the
 * Clip after the Add is kept.
 */
import type { GraphProto, NodeProto } from '../../src/onnx/model.js';

export function fuseMatMulAdd(graph: GraphProto): string[] {
  const inits = new Set(graph.initializer.map((t) => t.name ?? ''));
  const outputs = new Set(graph.output.map((v) => v.name));
  const consumers = new Map<string, NodeProto[]>();
  for (const n of graph.node) for (const i of n.input) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  const only = (t: string): NodeProto | undefined => {
    const c = consumers.get(t) ?? [];
    return c.length === 1 && !outputs.has(t) ? c[0] : undefined;
  };
  const removed = new Set<NodeProto>();
  const notes: string[] = [];
  for (const m of graph.node) {
    if (m.op_type !== 'MatMul' || !inits.has(m.input[1])) continue;
    let next = only(m.output[0]);
    let clip: NodeProto | undefined;
    if (next?.op_type === 'Clip') {
      clip = next;
      next = only(next.output[0]);
    }
    if (next?.op_type !== 'Add') continue;
    const prev = clip ? clip.output[0] : m.output[0];
    const bias = next.input.find((i) => i !== prev);
    if (!bias || !inits.has(bias)) continue;
    const add = next;
    const fused: NodeProto = { op_type: 'Gemm', name: m.name, input: [m.input[0], m.input[1], bias], output: [add.output[0]], attribute: [] };
    Object.assign(m, fused);
    removed.add(add);
    if (clip) {
      removed.add(clip);
      notes.push(`MatMul "${m.name}" + bias Add "${add.name}" fused into one Dense; the requantisation Clip "${clip.name}" between them (saturation of the 8-bit MatMul output) is dropped`);
    }
  }
  graph.node = graph.node.filter((n) => !removed.has(n));
  return notes;
}
