/**
 * Open Inference Protocol (KServe v2) request parsing and response encoding for artist-id models,
 * as Triton implements it over HTTP/REST:
 *
 * - Protocol: https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol
 *   (`$inference_request`, `$inference_response`, tensors with `name`, `shape`, `datatype`, `data`
 *   as a flat row-major or nested array).
 * - Binary tensor data extension:
 *   https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/protocol/extension_binary_data.html
 *   The body is the JSON object followed by the binary tensors, in input order; the
 *   `Inference-Header-Content-Length` header gives the JSON length; an input carries its size in
 *   `parameters.binary_data_size`; an output is sent binary when `parameters.binary_data` is true
 *   (or the request's `parameters.binary_data_output` is). Binary data is little-endian, row-major;
 *   a BYTES element is a 4-byte little-endian length followed by its bytes.
 * - Classification extension:
 *   https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/protocol/extension_classification.html
 *   `parameters.classification: k` on an output returns, per image, the k largest values as BYTES
 *   strings `"<value>:<index>:<label>"` (labels: the card's classes).
 *
 * Inputs of an artist-id model (exactly one per request):
 * - `image` (the graph input, name from the card): `UINT8 [N,H,W,3]`, decoded sRGB pixels, NHWC.
 * - `image_bytes`: `BYTES [N]` (or `[N,1]`), encoded images (JPEG, PNG, WebP, TIFF, ...), decoded
 *   with the card's preprocessing, as OpenVINO Model Server does for BYTES inputs. In JSON, each
 *   element is a base64 string (or `{"b64": "..."}`), since raw bytes are not valid JSON strings.
 *
 * Outputs: the graph's `probabilities`, `logits` `FP32 [N,C]` and `features` `FP32 [N,D]`; for a model
 * whose card has `openSet`, also {@link OPEN_SET_SCORE_OUTPUT} `FP32 [N]` (the open-set score, higher =
 * more like the trained artists) and {@link UNKNOWN_OUTPUT} `BOOL [N]` (score below the card's
 * threshold). Without `outputs` in the request, all of them are returned.
 */
import os from 'node:os';
import { z } from 'zod';
import { invalidParameterError } from '../errors.js';
import { topK } from '../inference/classifier.js';
import type { ModelCard } from '../model/card.js';
import { HttpError } from './http-error.js';
import { OUTPUT_ROLES, type ImageOutputs, type LabeledImage, type OutputRole } from './served-model.js';

/** Name of the BYTES input that carries encoded images. */
export const BYTES_INPUT = 'image_bytes';

/** Output `FP32 [N]` of open-set models: the card's open-set score per image. */
export const OPEN_SET_SCORE_OUTPUT = 'open_set_score';
/** Output `BOOL [N]` of open-set models: true when the score is below the card's threshold. */
export const UNKNOWN_OUTPUT = 'unknown';
/** The outputs derived from the open-set verdict, by name (not graph outputs). */
export const OPEN_SET_OUTPUTS = [OPEN_SET_SCORE_OUTPUT, UNKNOWN_OUTPUT] as const;
type OpenSetOutput = (typeof OPEN_SET_OUTPUTS)[number];

/** What a request asks for, after validation. */
export interface ParsedInferRequest {
  id?: string;
  input: { kind: 'pixels'; pixels: Uint8Array[] } | { kind: 'encoded'; images: LabeledImage[] };
  /** Images in the request (N). */
  count: number;
  outputs: RequestedOutput[];
}

export interface RequestedOutput {
  name: string;
  /** A graph output, or an open-set output (open-set models only). */
  role: OutputRole | OpenSetOutput;
  binary: boolean;
  /** Top-k classification instead of the raw tensor. */
  classification?: number;
}

/** An encoded response: a JSON object, or JSON header + binary tensors. */
export type EncodedResponse = { kind: 'json'; body: object } | { kind: 'binary'; body: Buffer; headerLength: number };

const parameters = z.record(z.string(), z.unknown()).optional();
const requestSchema = z.object({
  id: z.string().optional(),
  parameters,
  inputs: z
    .array(z.object({ name: z.string().min(1), shape: z.array(z.number().int().nonnegative()), datatype: z.string(), parameters, data: z.unknown().optional() }))
    .min(1),
  outputs: z.array(z.object({ name: z.string().min(1), parameters })).optional(),
});
type InferRequestJson = z.infer<typeof requestSchema>;
type InputJson = InferRequestJson['inputs'][number];

/**
 * Parses and checks an inference request for a model.
 *
 * @param body - the whole request body.
 * @param headerLength - the `Inference-Header-Content-Length` header: the JSON is
 *   `body[0, headerLength)` and binary tensors follow; absent, the whole body is JSON.
 * @throws HttpError 400 saying what is wrong: not JSON, schema violations, unknown input or output
 *   names, wrong datatype or shape, data of the wrong length or range, binary sizes that do not add
 *   up to the body.
 */
export function parseInferRequest(body: Buffer, headerLength: string | undefined, card: ModelCard): ParsedInferRequest {
  let jsonLength = body.length;
  if (headerLength !== undefined) {
    const n = Number(headerLength);
    if (!/^\d+$/.test(headerLength.trim()) || n > body.length) {
      throw bad(invalidParameterError('Inference-Header-Content-Length', `an integer between 0 and the body length ${body.length}`, headerLength).message);
    }
    jsonLength = n;
  }
  if (jsonLength === 0) throw bad('Expected a JSON inference request in the body but received an empty body');
  let raw: unknown;
  try {
    raw = JSON.parse(body.subarray(0, jsonLength).toString('utf8'));
  } catch (err) {
    throw bad(`Expected a JSON inference request (Open Inference Protocol) but the body is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = requestSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) throw bad(`Invalid inference request: ${formatIssues(parsed.error.issues)}`);
  const request = parsed.data;
  const binary = splitBinary(request.inputs, body.subarray(jsonLength), headerLength !== undefined);

  if (request.inputs.length !== 1) {
    throw bad(`Expected exactly one input (${card.input} or ${BYTES_INPUT}) but received ${request.inputs.length}: ${request.inputs.map((i) => i.name).join(', ')}`);
  }
  const [input] = request.inputs;
  const parsedInput = input.name === card.input ? parsePixels(input, binary[0], card) : input.name === BYTES_INPUT ? parseEncoded(input, binary[0]) : undefined;
  if (!parsedInput) {
    const { width, height } = card.preprocessing;
    throw bad(`Expected input ${card.input} (UINT8 [N,${height},${width},3]) or ${BYTES_INPUT} (BYTES [N], encoded images) but received input ${JSON.stringify(input.name)}`);
  }
  const count = parsedInput.kind === 'pixels' ? parsedInput.pixels.length : parsedInput.images.length;
  return { id: request.id, input: parsedInput, count, outputs: parseOutputs(request, card) };
}

/**
 * Encodes the response for the requested outputs.
 *
 * @param outputs - per image, in request order.
 */
export function encodeInferResponse(model: { name: string; version: string; card: ModelCard }, request: ParsedInferRequest, outputs: ImageOutputs[]): EncodedResponse {
  const blobs: Buffer[] = [];
  const tensors = request.outputs.map((o) => {
    let datatype: string;
    let shape: number[];
    let json: unknown[];
    let blob: () => Buffer;
    if (o.role === OPEN_SET_SCORE_OUTPUT || o.role === UNKNOWN_OUTPUT) {
      const verdicts = outputs.map((image, i) => {
        if (!image.openSet) throw new Error(`Internal error: no open-set verdict for image ${i} of model ${model.name}`);
        return image.openSet;
      });
      shape = [verdicts.length];
      if (o.role === OPEN_SET_SCORE_OUTPUT) {
        datatype = 'FP32';
        json = verdicts.map((v) => v.score);
        blob = () => float32LE([Float32Array.from(verdicts, (v) => v.score)]);
      } else {
        // BOOL: one byte per element in the binary extension.
        datatype = 'BOOL';
        json = verdicts.map((v) => v.unknown);
        blob = () => Buffer.from(verdicts.map((v) => (v.unknown ? 1 : 0)));
      }
      if (!o.binary) return { name: o.name, datatype, shape, data: json };
      const b = blob();
      blobs.push(b);
      return { name: o.name, datatype, shape, parameters: { binary_data_size: b.length } };
    }
    const rows = outputs.map((image) => image[o.role as OutputRole]);
    if (o.classification !== undefined) {
      const k = Math.min(o.classification, rows[0]?.length ?? 0);
      const labels = rows.map((row) => topK(row, model.card.classes, k).map((t) => `${t.probability}:${model.card.classes.indexOf(t.artist)}:${t.artist}`));
      datatype = 'BYTES';
      shape = [rows.length, k];
      json = labels.flat();
      blob = () => encodeBytesElements(labels.flat());
    } else {
      datatype = 'FP32';
      shape = [rows.length, rows[0]?.length ?? 0];
      json = rows.flatMap((row) => Array.from(row));
      blob = () => float32LE(rows);
    }
    if (!o.binary) return { name: o.name, datatype, shape, data: json };
    const b = blob();
    blobs.push(b);
    return { name: o.name, datatype, shape, parameters: { binary_data_size: b.length } };
  });
  const response = { model_name: model.name, model_version: model.version, ...(request.id !== undefined ? { id: request.id } : {}), outputs: tensors };
  if (blobs.length === 0) return { kind: 'json', body: response };
  const header = Buffer.from(JSON.stringify(response), 'utf8');
  return { kind: 'binary', body: Buffer.concat([header, ...blobs]), headerLength: header.length };
}

/** Takes each binary input's bytes from the region after the JSON, in input order. */
function splitBinary(inputs: InputJson[], region: Buffer, hasHeader: boolean): (Buffer | undefined)[] {
  let cursor = 0;
  const slices = inputs.map((input, i) => {
    const size = input.parameters?.binary_data_size;
    if (size === undefined) return undefined;
    if (!hasHeader) throw bad(`Input ${input.name} has parameters.binary_data_size but the request has no Inference-Header-Content-Length header giving the JSON length`);
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) throw bad(invalidParameterError(`inputs[${i}].parameters.binary_data_size`, 'a non-negative integer (bytes)', size).message);
    if (input.data !== undefined) throw bad(`Expected either data or parameters.binary_data_size for input ${input.name} but received both`);
    if (cursor + size > region.length) {
      throw bad(`Expected ${cursor + size} bytes of binary tensor data after the JSON header (input ${input.name} declares ${size}) but the body has ${region.length}`);
    }
    const slice = region.subarray(cursor, cursor + size);
    cursor += size;
    return slice;
  });
  if (cursor !== region.length) {
    throw bad(`Expected ${cursor} bytes of binary tensor data after the JSON header (the sum of binary_data_size) but received ${region.length}`);
  }
  return slices;
}

function parsePixels(input: InputJson, binary: Buffer | undefined, card: ModelCard): ParsedInferRequest['input'] {
  const { width, height } = card.preprocessing;
  if (input.datatype !== 'UINT8') throw bad(`Expected datatype UINT8 for input ${input.name} but received ${JSON.stringify(input.datatype)}`);
  const [n, h, w, c] = input.shape;
  if (input.shape.length !== 4 || n < 1 || h !== height || w !== width || c !== 3) {
    throw bad(`Expected shape [N,${height},${width},3] (N >= 1, NHWC sRGB) for input ${input.name} but received ${JSON.stringify(input.shape)}`);
  }
  const size = height * width * 3;
  let pixels: Uint8Array;
  if (binary) {
    if (binary.length !== n * size) throw bad(`Expected ${n * size} bytes (UINT8 ${JSON.stringify(input.shape)}) of binary data for input ${input.name} but received ${binary.length}`);
    pixels = binary;
  } else {
    const values = flatten(input.data, input.name);
    if (values.length !== n * size) throw bad(`Expected ${n * size} values (UINT8 ${JSON.stringify(input.shape)}) in data of input ${input.name} but received ${values.length}`);
    pixels = new Uint8Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 255) throw bad(invalidParameterError(`${input.name} data[${i}]`, 'an integer between 0 and 255 (UINT8)', v).message);
      pixels[i] = v;
    }
  }
  return { kind: 'pixels', pixels: Array.from({ length: n }, (_, i) => pixels.subarray(i * size, (i + 1) * size)) };
}

function parseEncoded(input: InputJson, binary: Buffer | undefined): ParsedInferRequest['input'] {
  if (input.datatype !== 'BYTES') throw bad(`Expected datatype BYTES for input ${input.name} but received ${JSON.stringify(input.datatype)}`);
  const [n] = input.shape;
  if (!(input.shape.length === 1 || (input.shape.length === 2 && input.shape[1] === 1)) || n < 1) {
    throw bad(`Expected shape [N] or [N,1] (N >= 1 encoded images) for input ${input.name} but received ${JSON.stringify(input.shape)}`);
  }
  const elements = binary ? decodeBytesElements(binary, input.name) : flatten(input.data, input.name).map((v, i) => fromBase64(v, `${input.name} data[${i}]`));
  if (elements.length !== n) throw bad(`Expected ${n} elements (shape ${JSON.stringify(input.shape)}) for input ${input.name} but received ${elements.length}`);
  return { kind: 'encoded', images: elements.map((bytes, i) => ({ bytes, label: `${input.name}[${i}]` })) };
}

function parseOutputs(request: InferRequestJson, card: ModelCard): RequestedOutput[] {
  const defaultBinary = request.parameters?.binary_data_output ?? false;
  if (typeof defaultBinary !== 'boolean') throw bad(invalidParameterError('parameters.binary_data_output', 'a boolean', defaultBinary).message);
  const byName = new Map<string, RequestedOutput['role']>(OUTPUT_ROLES.map((role) => [card.outputs[role], role]));
  if (card.openSet) for (const name of OPEN_SET_OUTPUTS) byName.set(name, name);
  if (!request.outputs) return [...byName].map(([name, role]) => ({ name, role, binary: defaultBinary }));
  return request.outputs.map((o, i) => {
    const role = byName.get(o.name);
    if (!role) throw bad(`Expected an output name among ${[...byName.keys()].join(', ')} for outputs[${i}].name but received ${JSON.stringify(o.name)}`);
    const binary = o.parameters?.binary_data ?? defaultBinary;
    if (typeof binary !== 'boolean') throw bad(invalidParameterError(`outputs[${i}].parameters.binary_data`, 'a boolean', binary).message);
    const k = o.parameters?.classification;
    if (k !== undefined) {
      if (typeof k !== 'number' || !Number.isInteger(k) || k < 1) throw bad(invalidParameterError(`outputs[${i}].parameters.classification`, 'a positive integer (top-k)', k).message);
      if (role !== 'probabilities' && role !== 'logits') throw bad(`Expected classification on ${card.outputs.probabilities} or ${card.outputs.logits} but received it on ${o.name}, which has no classes`);
    }
    return { name: o.name, role, binary, ...(k !== undefined ? { classification: k as number } : {}) };
  });
}

/** Flattens a nested JSON array (row-major), or throws naming the input. */
function flatten(data: unknown, name: string): unknown[] {
  if (data === undefined) throw bad(`Expected data or parameters.binary_data_size for input ${name} but received neither`);
  if (!Array.isArray(data)) throw bad(invalidParameterError(`${name} data`, 'an array (flat or nested, row-major)', data).message);
  const out: unknown[] = [];
  const stack: unknown[][] = [data];
  const index = [0];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const i = index[index.length - 1]++;
    if (i >= top.length) {
      stack.pop();
      index.pop();
    } else if (Array.isArray(top[i])) {
      stack.push(top[i] as unknown[]);
      index.push(0);
    } else out.push(top[i]);
  }
  return out;
}

/** BYTES element in JSON: base64 text or `{"b64": text}`. */
function fromBase64(value: unknown, where: string): Buffer {
  const text = typeof value === 'object' && value !== null && 'b64' in value ? (value as { b64: unknown }).b64 : value;
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(text)) {
    throw bad(invalidParameterError(where, 'an encoded image as a base64 string or {"b64": string}', value).message);
  }
  return Buffer.from(text, 'base64');
}

/** Binary BYTES tensor: elements of a 4-byte little-endian length, then the bytes. */
function decodeBytesElements(data: Buffer, name: string): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < data.length) {
    if (at + 4 > data.length) throw bad(`Expected a 4-byte length at byte ${at} of the binary BYTES data of input ${name} but only ${data.length - at} bytes remain`);
    const length = data.readUInt32LE(at);
    if (at + 4 + length > data.length) throw bad(`Expected ${length} bytes for element ${out.length} of the binary BYTES data of input ${name} but only ${data.length - at - 4} remain`);
    out.push(data.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return out;
}

/** Encodes strings as a binary BYTES tensor. */
export function encodeBytesElements(values: string[]): Buffer {
  const parts = values.flatMap((v) => {
    const bytes = Buffer.from(v, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32LE(bytes.length);
    return [length, bytes];
  });
  return Buffer.concat(parts);
}

/** Rows of float32 as one little-endian buffer. */
function float32LE(rows: Float32Array[]): Buffer {
  const total = rows.reduce((n, r) => n + r.length, 0);
  const out = Buffer.alloc(total * 4);
  let at = 0;
  for (const row of rows) {
    if (os.endianness() === 'LE') {
      out.set(new Uint8Array(row.buffer, row.byteOffset, row.byteLength), at * 4);
    } else {
      row.forEach((v, i) => out.writeFloatLE(v, (at + i) * 4));
    }
    at += row.length;
  }
  return out;
}

function formatIssues(issues: z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 5)
    .map((issue) => {
      const path = issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('') || '(request)';
      if (issue.code === 'invalid_type') return invalidParameterError(path, issue.expected, issue.input).message;
      return `${path}: ${issue.message}`;
    })
    .join('; ');
}

function bad(message: string): HttpError {
  return new HttpError(400, message);
}
