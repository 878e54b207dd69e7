/**
 * Typed decode/encode of ONNX model files with protobufjs, and metadata access.
 *
 * Pure module (no onnxruntime): used by the runtime to read a model's card, and by `export/` to
 * edit graphs.
 */
import { readFile } from 'node:fs/promises';
import { ModelProtoType } from './schema.js';

/**
 * protobufjs decodes int64 as `Long` (`{ low, high }` 32-bit halves) when the `long` package is
 * present, else as number; a structured clone of a Long keeps only `{ low, high, unsigned }`.
 */
export type Int64 = number | { low: number; high: number; unsigned?: boolean };

/** Converts a decoded int64 (Long, its plain clone, or number) to a JS number. */
export function toNumber(value: Int64 | null | undefined): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') return value;
  const high = value.unsigned ? value.high >>> 0 : value.high;
  return high * 2 ** 32 + (value.low >>> 0);
}

export interface StringStringEntry { key: string; value: string }
export interface OperatorSetId { domain?: string; version: Int64 }

export interface TensorProto {
  name?: string;
  dims: Int64[];
  data_type: number;
  raw_data?: Uint8Array;
  float_data?: number[];
  int32_data?: number[];
  int64_data?: Int64[];
  string_data?: Uint8Array[];
}

export interface AttributeProto {
  name: string;
  type: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
}

export interface NodeProto {
  input: string[];
  output: string[];
  name?: string;
  op_type: string;
  domain?: string;
  attribute?: AttributeProto[];
  doc_string?: string;
}

export interface Dimension { dim_value?: Int64; dim_param?: string }
export interface ValueInfoProto {
  name: string;
  type?: { tensor_type?: { elem_type: number; shape?: { dim: Dimension[] } } };
  doc_string?: string;
}

export interface GraphProto {
  name?: string;
  node: NodeProto[];
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  value_info?: ValueInfoProto[];
  quantization_annotation?: unknown[];
  sparse_initializer?: Uint8Array[];
  doc_string?: string;
}

export interface ModelProto {
  ir_version: Int64;
  opset_import: OperatorSetId[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: Int64;
  doc_string?: string;
  graph: GraphProto;
  metadata_props?: StringStringEntry[];
  training_info?: Uint8Array[];
  functions?: Uint8Array[];
}

/**
 * Decodes ONNX model bytes.
 *
 * @throws Error when the bytes are not an ONNX model, or when the model uses parts this schema does
 *   not declare (sparse initializers, functions, training info), which re-encoding would lose.
 */
export function decodeModel(bytes: Uint8Array, source = 'model'): ModelProto {
  let model: ModelProto;
  try {
    model = ModelProtoType.toObject(ModelProtoType.decode(bytes), { defaults: false, arrays: true }) as ModelProto;
  } catch (err) {
    throw new Error(`Expected an ONNX model (protobuf ModelProto) in ${source} but it could not be decoded: ${(err as Error).message}`);
  }
  if (!model.graph || !model.graph.node || model.graph.node.length === 0) {
    throw new Error(`Expected an ONNX model with a graph in ${source} but received ${bytes.length} bytes with no graph nodes`);
  }
  const unsupported = [
    model.functions?.length ? 'functions' : '',
    model.training_info?.length ? 'training_info' : '',
    model.graph.sparse_initializer?.length ? 'sparse_initializer' : '',
  ].filter(Boolean);
  if (unsupported.length > 0) {
    throw new Error(`${source} uses ONNX features this tool does not edit: ${unsupported.join(', ')}`);
  }
  model.graph.initializer ??= [];
  model.graph.input ??= [];
  model.graph.output ??= [];
  return model;
}

/** Encodes a model to ONNX protobuf bytes. */
export function encodeModel(model: ModelProto): Uint8Array {
  const err = ModelProtoType.verify(model);
  if (err) throw new Error(`Internal error: invalid ONNX ModelProto: ${err}`);
  return ModelProtoType.encode(ModelProtoType.fromObject(model)).finish();
}

/** Reads and decodes an ONNX file. */
export async function readModelFile(path: string): Promise<ModelProto> {
  return decodeModel(await readFile(path), path);
}

/** The model's `metadata_props` as a plain record. */
export function metadataOf(model: ModelProto): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { key, value } of model.metadata_props ?? []) out[key] = value;
  return out;
}
