/**
 * Reading ONNX initializers and node attributes as plain JS values (any numeric element type).
 */
import { toNumber, type AttributeProto, type NodeProto, type TensorProto } from '../../src/onnx/model.js';
import { DataType } from '../../src/onnx/schema.js';

/** A constant tensor: row-major values as float64 numbers, with its dims. */
export interface ConstTensor {
  dims: number[];
  values: Float64Array;
  dataType: number;
}

const BYTES: Record<number, number> = { [DataType.FLOAT]: 4, [DataType.UINT8]: 1, [DataType.INT8]: 1, [DataType.INT32]: 4, [DataType.INT64]: 8 };

/**
 * Decodes an initializer of type float32, uint8, int8, int32 or int64 (raw_data little-endian, or
 * the typed `*_data` fields).
 *
 * @throws Error naming the tensor when its element type is not one of these or its size is wrong.
 */
export function constValues(tensor: TensorProto): ConstTensor {
  const dims = tensor.dims.map((d) => toNumber(d));
  const count = dims.reduce((a, b) => a * b, 1);
  const type = tensor.data_type;
  if (!(type in BYTES)) throw new Error(`Unsupported initializer "${tensor.name}": ONNX data type ${type} (supported: float32, uint8, int8, int32, int64)`);
  let values: Float64Array;
  const raw = tensor.raw_data;
  if (raw && raw.length > 0) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const n = raw.byteLength / BYTES[type];
    values = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      switch (type) {
        case DataType.FLOAT: values[i] = view.getFloat32(i * 4, true); break;
        case DataType.UINT8: values[i] = view.getUint8(i); break;
        case DataType.INT8: values[i] = view.getInt8(i); break;
        case DataType.INT32: values[i] = view.getInt32(i * 4, true); break;
        default: values[i] = Number(view.getBigInt64(i * 8, true));
      }
    }
  } else if (type === DataType.FLOAT) {
    values = Float64Array.from(tensor.float_data ?? []);
  } else if (type === DataType.INT64) {
    values = Float64Array.from((tensor.int64_data ?? []).map((v) => toNumber(v)));
  } else {
    // uint8, int8 and int32 are all stored in int32_data when raw_data is absent (onnx.proto).
    values = Float64Array.from(tensor.int32_data ?? []);
  }
  if (values.length !== count) {
    throw new Error(`Initializer "${tensor.name}" has ${values.length} values for dims [${dims.join(',')}] (${count} expected)`);
  }
  return { dims, values, dataType: type };
}

/** Attribute lookup helpers for one node. */
export class Attrs {
  private readonly byName = new Map<string, AttributeProto>();
  constructor(private readonly n: NodeProto) {
    for (const a of n.attribute ?? []) this.byName.set(a.name, a);
  }
  has(name: string): boolean {
    return this.byName.has(name);
  }
  int(name: string, fallback: number): number {
    const a = this.byName.get(name);
    return a?.i !== undefined && a.i !== null ? toNumber(a.i) : fallback;
  }
  float(name: string, fallback: number): number {
    const a = this.byName.get(name);
    return a?.f !== undefined && a.f !== null ? a.f : fallback;
  }
  ints(name: string, fallback: number[]): number[] {
    const a = this.byName.get(name);
    return a?.ints && a.ints.length > 0 ? a.ints.map((v) => toNumber(v)) : fallback;
  }
  string(name: string, fallback: string): string {
    const a = this.byName.get(name);
    return a?.s ? new TextDecoder().decode(a.s) : fallback;
  }
  /** Errors when the node carries an attribute outside `known` (so nothing is silently ignored). */
  only(known: string[]): void {
    for (const name of this.byName.keys()) {
      if (!known.includes(name)) throw new Error(`${describeNode(this.n)}: attribute "${name}" is not supported by this converter`);
    }
  }
}

/** `op_type "name"` for error messages. */
export function describeNode(n: NodeProto): string {
  return `ONNX node "${n.name ?? n.output[0]}" (${n.domain ? `${n.domain}.` : ''}${n.op_type})`;
}
