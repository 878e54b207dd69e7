/**
 * Small builders for ONNX graph surgery: tensors, nodes, value infos, and pruning.
 */
import { AttributeType, DataType } from '../src/onnx/schema.js';
import type { AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto } from '../src/onnx/model.js';

/** A float32 initializer with the given dims (row-major data). */
export function floatTensor(name: string, dims: number[], data: ArrayLike<number>): TensorProto {
  const expected = dims.reduce((a, b) => a * b, 1);
  if (data.length !== expected) {
    throw new Error(`Internal error: tensor ${name} has ${data.length} values for dims [${dims.join(',')}] (${expected} expected)`);
  }
  const f32 = Float32Array.from(data);
  return { name, dims, data_type: DataType.FLOAT, raw_data: new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength) };
}

/** An int64 initializer (shapes, axes). */
export function int64Tensor(name: string, dims: number[], data: number[]): TensorProto {
  const i64 = BigInt64Array.from(data.map((v) => BigInt(v)));
  return { name, dims, data_type: DataType.INT64, raw_data: new Uint8Array(i64.buffer) };
}

/** Reads a float32 initializer's values (raw_data little-endian or float_data). */
export function floatValues(tensor: TensorProto): Float32Array {
  if (tensor.data_type !== DataType.FLOAT) throw new Error(`Internal error: tensor ${tensor.name} is not float32`);
  if (tensor.raw_data && tensor.raw_data.length > 0) {
    const copy = tensor.raw_data.slice();
    return new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
  }
  return Float32Array.from(tensor.float_data ?? []);
}

type AttrValue = number | string | number[] | { ints: number[] } | { floats: number[] };

/** Builds a node; integer attributes as numbers, float attributes as `{ f }`-free plain numbers via `floatAttrs`. */
export function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  name: string,
  attrs: Record<string, AttrValue> = {},
  floatAttrs: Record<string, number> = {},
): NodeProto {
  const attribute: AttributeProto[] = [];
  for (const [key, value] of Object.entries(attrs)) {
    if (typeof value === 'number') attribute.push({ name: key, type: AttributeType.INT, i: value });
    else if (typeof value === 'string') attribute.push({ name: key, type: AttributeType.STRING, s: new TextEncoder().encode(value) });
    else if (Array.isArray(value)) attribute.push({ name: key, type: AttributeType.INTS, ints: value });
    else if ('ints' in value) attribute.push({ name: key, type: AttributeType.INTS, ints: value.ints });
    else attribute.push({ name: key, type: AttributeType.FLOATS, floats: value.floats });
  }
  for (const [key, value] of Object.entries(floatAttrs)) attribute.push({ name: key, type: AttributeType.FLOAT, f: value });
  return { op_type: opType, input: inputs, output: outputs, name, attribute };
}

/** A tensor value info; string dims are symbolic (e.g. `'N'` for a dynamic batch). */
export function valueInfo(name: string, elemType: number, dims: (number | string)[], doc?: string): ValueInfoProto {
  return {
    name,
    doc_string: doc,
    type: {
      tensor_type: {
        elem_type: elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) },
      },
    },
  };
}

/**
 * Keeps only the nodes and initializers needed to compute `outputs` from the graph inputs
 * (a backward reachability walk), so removed heads (e.g. ImageNet's classifier) leave no dead weight.
 */
export function prune(graph: GraphProto, outputs: string[]): void {
  const producer = new Map<string, NodeProto>();
  for (const n of graph.node) for (const o of n.output) producer.set(o, n);
  const needed = new Set<NodeProto>();
  const neededTensors = new Set<string>();
  const stack = [...outputs];
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (neededTensors.has(t)) continue;
    neededTensors.add(t);
    const n = producer.get(t);
    if (n && !needed.has(n)) {
      needed.add(n);
      for (const i of n.input) if (i) stack.push(i);
    }
  }
  graph.node = graph.node.filter((n) => needed.has(n));
  graph.initializer = graph.initializer.filter((t) => neededTensors.has(t.name ?? ''));
  graph.value_info = (graph.value_info ?? []).filter((v) => neededTensors.has(v.name));
  graph.input = graph.input.filter((v) => neededTensors.has(v.name));
}
