/**
 * Dequantises an ONNX QOperator graph (QuantizeLinear / QLinearConv / QLinearAdd /
 * QLinearGlobalAveragePool / QLinearMatMul / DequantizeLinear, as written by onnxruntime's
 * quantization tool) into the equivalent float32 ONNX graph, which {@link ./onnx-to-tfjs.ts} then
 * converts. Keeping this as an ONNX -> ONNX step means the float graph can itself be run in
 * onnxruntime, separating dequantisation error from conversion error.
 *
 * Semantics (ONNX operator specs, onnx.ai/onnx/operators: QuantizeLinear, DequantizeLinear,
 * QLinearConv, QLinearMatMul; contrib ops QLinearAdd and QLinearGlobalAveragePool in onnxruntime's
 * ContribOperators.md):
 * - dequantise `real = (q - zero_point) * scale`; scale/zero point are scalars (per tensor) or 1-D
 *   (per output channel: axis 0 of a conv weight `[M,C/group,kh,kw]`, axis 1 of a MatMul `B [K,N]`);
 * - quantise `q = saturate(round(real / scale) + zero_point)` with saturation to the integer type's
 *   range (uint8 [0,255], int8 [-128,127]);
 * - a QLinearConv bias is int32 with scale `x_scale * w_scale` (per channel) and zero point 0.
 *
 * Every quantised activation therefore can only represent `[(qmin - zp) * scale, (qmax - zp) * scale]`.
 * The float graph reproduces that saturation with a `Clip` on every requantised output: for a
 * range `[0, 6]` (uint8, zp 0, scale 6/255) that is exactly the ReLU6 the quantiser folded away, for
 * `[0, x]` a ReLU (capped at x), and for `[-a, b]` the saturation of the int8 model. Rounding to
 * the 8-bit grid is not reproduced (the float graph is the "ideal" dequantised model), so outputs
 * differ from the int8 model by quantisation noise, not by structure.
 */
import type { ModelProto, NodeProto, TensorProto } from '../../src/onnx/model.js';
import { toNumber } from '../../src/onnx/model.js';
import { DataType } from '../../src/onnx/schema.js';
import { floatTensor, node } from '../graph.js';
import { Attrs, constValues, describeNode, type ConstTensor } from './onnx-values.js';

/** Which requantised outputs get a Clip to their representable range. */
export type ClipPolicy =
  /** Every requantised output (faithful int8 saturation; default). */
  | 'all'
  /** Only ranges whose lower bound is 0 (the folded ReLU/ReLU6); others stay unbounded. */
  | 'relu';

export interface DequantizeOptions {
  clip?: ClipPolicy;
  /**
   * Emit `QuantizeLinear -> DequantizeLinear` (clip *and* rounding to the 8-bit grid) instead of
   * `Clip` on every requantised output: the float graph then reproduces the int8 model's
   * activation rounding too (but accumulates in float, so it is not bit-exact: see
   * {@link importOnnxToTfjs}'s `int8: 'exact'` for that). For onnxruntime checks; the TF.js importer
   * does not take QDQ pairs.
   */
  qdq?: boolean;
}

export interface DequantizeResult {
  model: ModelProto;
  /** Human-readable facts about the conversion (counts, approximations). */
  notes: string[];
}

/** ONNX op types of the QOperator format handled here (domain '' or com.microsoft). */
export const QUANTIZED_OPS = ['QuantizeLinear', 'DequantizeLinear', 'QLinearConv', 'QLinearAdd', 'QLinearMatMul', 'QLinearGlobalAveragePool'];

/** True when the graph contains any QOperator / Q-DQ node. */
export function isQuantized(model: ModelProto): boolean {
  return model.graph.node.some((n) => n.op_type.startsWith('QLinear') || n.op_type === 'QuantizeLinear' || n.op_type === 'DequantizeLinear');
}

function integerRange(dataType: number, where: string): [number, number] {
  if (dataType === DataType.UINT8) return [0, 255];
  if (dataType === DataType.INT8) return [-128, 127];
  throw new Error(`${where}: zero point of ONNX data type ${dataType} is not supported (uint8 or int8 expected)`);
}

/**
 * Returns a float32 copy of `model` with the QOperator nodes replaced by Conv / Gemm / MatMul / Add /
 * GlobalAveragePool / Clip on dequantised weights. Nodes of other types are kept unchanged.
 *
 * @throws Error naming the node for quantised ops or layouts not handled (e.g. QLinearMul,
 *   channels_last pooling, per-channel activations).
 */
export function dequantizeModel(source: ModelProto, opts: DequantizeOptions = {}): DequantizeResult {
  const policy = opts.clip ?? 'all';
  const model: ModelProto = structuredClone(source);
  const graph = model.graph;
  const inits = new Map<string, TensorProto>(graph.initializer.map((t) => [t.name ?? '', t]));
  const constant = (name: string, n: NodeProto): ConstTensor => {
    const t = inits.get(name);
    if (!t) throw new Error(`${describeNode(n)}: input "${name}" must be an initializer (constant) for dequantisation`);
    return constValues(t);
  };
  const scalar = (name: string, n: NodeProto): number => {
    const c = constant(name, n);
    if (c.values.length !== 1) throw new Error(`${describeNode(n)}: "${name}" must be a scalar (per-tensor activation quantisation), has ${c.values.length} values`);
    return c.values[0];
  };
  const used = new Set<string>();
  const newInits: TensorProto[] = [];
  const out: NodeProto[] = [];
  const counts: Record<string, number> = {};
  let clips = 0;
  let reluClips = 0;

  /** Emits `Clip(x) -> y` to the range of (scale, zp), or an Identity when the policy skips it. */
  const requantize = (x: string, y: string, scaleName: string, zpName: string, n: NodeProto): void => {
    const scale = scalar(scaleName, n);
    const zpT = constant(zpName, n);
    const [qmin, qmax] = integerRange(zpT.dataType, describeNode(n));
    const zp = zpT.values[0];
    const lo = (qmin - zp) * scale;
    const hi = (qmax - zp) * scale;
    const isRelu = lo === 0;
    if (opts.qdq) {
      out.push(node('QuantizeLinear', [x, scaleName, zpName], [`${y}/q`], `${n.name ?? y}/q`), node('DequantizeLinear', [`${y}/q`, scaleName, zpName], [y], `${n.name ?? y}/dq`));
      clips++;
      if (isRelu) reluClips++;
    } else if (policy === 'all' || isRelu) {
      const minName = `${y}/clip_min`;
      const maxName = `${y}/clip_max`;
      newInits.push(floatTensor(minName, [], [lo]), floatTensor(maxName, [], [hi]));
      out.push(node('Clip', [x, minName, maxName], [y], `${n.name ?? y}/clip`));
      clips++;
      if (isRelu) reluClips++;
    } else {
      out.push(node('Identity', [x], [y], `${n.name ?? y}/identity`));
    }
  };

  for (const n of graph.node) {
    const op = n.op_type;
    counts[op] = (counts[op] ?? 0) + 1;
    const name = n.name ?? n.output[0];
    const attrs = new Attrs(n);
    switch (op) {
      case 'QuantizeLinear': {
        // Float input to the quantised domain: only the saturation survives.
        requantize(n.input[0], n.output[0], n.input[1], n.input[2], n);
        break;
      }
      case 'DequantizeLinear': {
        if (inits.has(n.input[0])) {
          // A quantised constant: store it in float.
          const q = constant(n.input[0], n);
          const s = constant(n.input[1], n);
          const zp = n.input[2] ? constant(n.input[2], n) : undefined;
          const axis = attrs.int('axis', 1);
          newInits.push(floatTensor(n.output[0], q.dims, dequantizeAlong(q, s, zp, axis)));
        } else {
          out.push(node('Identity', [n.input[0]], [n.output[0]], `${name}/identity`));
        }
        break;
      }
      case 'QLinearConv': {
        attrs.only(['auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides']);
        const [x, xScale, , w, wScale, wZp, yScale, yZp, b] = n.input;
        const xs = scalar(xScale, n);
        const wq = constant(w, n);
        const ws = constant(wScale, n);
        const wz = constant(wZp, n);
        const weight = floatTensor(`${name}/W`, wq.dims, dequantizeAlong(wq, ws, wz, 0));
        newInits.push(weight);
        const inputs = [x, `${name}/W`];
        if (b) {
          const bq = constant(b, n);
          const bias = new Float32Array(bq.values.length);
          for (let o = 0; o < bias.length; o++) bias[o] = bq.values[o] * xs * ws.values[ws.values.length === 1 ? 0 : o];
          newInits.push(floatTensor(`${name}/B`, [bias.length], bias));
          inputs.push(`${name}/B`);
        }
        const conv = node('Conv', inputs, [`${name}/conv`], name);
        conv.attribute = n.attribute;
        out.push(conv);
        requantize(`${name}/conv`, n.output[0], yScale, yZp, n);
        break;
      }
      case 'QLinearAdd': {
        const [a, , , bIn, bScale, bZp, cScale, cZp] = n.input;
        const operands = [a, bIn].map((t, i) => {
          if (!inits.has(t)) return t;
          const q = constant(t, n);
          const s = constant(i === 0 ? n.input[1] : bScale, n);
          const z = constant(i === 0 ? n.input[2] : bZp, n);
          const f = `${name}/const${i}`;
          newInits.push(floatTensor(f, q.dims, dequantizeAlong(q, s, z, q.dims.length - 1)));
          return f;
        });
        out.push(node('Add', operands, [`${name}/sum`], name));
        requantize(`${name}/sum`, n.output[0], cScale, cZp, n);
        break;
      }
      case 'QLinearMatMul': {
        const [a, , , bIn, bScale, bZp, yScale, yZp] = n.input;
        const q = constant(bIn, n);
        if (q.dims.length !== 2) throw new Error(`${describeNode(n)}: only a 2-D constant B is supported, got dims [${q.dims.join(',')}]`);
        newInits.push(floatTensor(`${name}/B`, q.dims, dequantizeAlong(q, constant(bScale, n), constant(bZp, n), 1)));
        out.push(node('MatMul', [a, `${name}/B`], [`${name}/matmul`], name));
        requantize(`${name}/matmul`, n.output[0], yScale, yZp, n);
        break;
      }
      case 'QLinearGlobalAveragePool': {
        if (attrs.int('channels_last', 0) !== 0) throw new Error(`${describeNode(n)}: channels_last=1 is not supported (NCHW expected)`);
        const [x, , , yScale, yZp] = n.input;
        out.push(node('GlobalAveragePool', [x], [`${name}/pool`], name));
        requantize(`${name}/pool`, n.output[0], yScale, yZp, n);
        break;
      }
      default:
        if (op.startsWith('QLinear') || op.startsWith('Quant') || op.startsWith('Dequant') || op.startsWith('DynamicQuant') || op.startsWith('ConvInteger') || op.startsWith('MatMulInteger')) {
          throw new Error(`Cannot dequantise ${describeNode(n)}: op ${op} is not supported (supported: ${QUANTIZED_OPS.join(', ')})`);
        }
        out.push(n);
    }
  }
  // Drop the quantised constants nothing refers to any more, keep those still used (e.g. shapes).
  for (const n of out) for (const i of n.input) used.add(i);
  graph.node = out;
  graph.initializer = [...graph.initializer.filter((t) => used.has(t.name ?? '')), ...newInits.filter((t) => used.has(t.name ?? ''))];
  // Value infos describe uint8 tensors that are now float; onnxruntime re-infers shapes.
  graph.value_info = [];
  graph.quantization_annotation = [];
  model.opset_import = model.opset_import.filter((o) => !o.domain || o.domain === 'ai.onnx');
  if (model.opset_import.every((o) => toNumber(o.version) < 11)) model.opset_import = [{ domain: '', version: 13 }];
  const summary = Object.entries(counts).filter(([k]) => QUANTIZED_OPS.includes(k)).map(([k, v]) => `${v} ${k}`).join(', ');
  const notes = [
    `dequantised ${summary}: weights (q - zp) * scale (per output channel where the scale is a vector), int32 biases * x_scale * w_scale`,
    ...(opts.qdq
      ? [`${clips} QuantizeLinear -> DequantizeLinear pairs round every requantised output to its 8-bit grid and range (${reluClips} with lower bound 0, i.e. folded ReLU/ReLU6)`]
      : [
          `${clips} Clip nodes reproduce the int8 output ranges (${reluClips} with lower bound 0, i.e. folded ReLU/ReLU6); clip policy '${policy}'`,
          'rounding of activations to the 8-bit grid is not reproduced: the float graph is the ideal dequantised model',
        ]),
  ];
  return { model, notes };
}

/**
 * `(q - zp) * scale` for every element, with scale/zp scalars or 1-D along `axis` of `q.dims`
 * (negative axis counts from the end).
 */
export function dequantizeAlong(q: ConstTensor, scale: ConstTensor, zp: ConstTensor | undefined, axis: number): Float32Array {
  const rank = q.dims.length;
  const ax = axis < 0 ? axis + rank : axis;
  const perAxis = scale.values.length > 1;
  if (perAxis && (ax < 0 || ax >= rank || q.dims[ax] !== scale.values.length)) {
    throw new Error(`Per-axis scale of ${scale.values.length} values does not match axis ${axis} of dims [${q.dims.join(',')}]`);
  }
  const inner = perAxis ? q.dims.slice(ax + 1).reduce((a, b) => a * b, 1) : 1;
  const channels = perAxis ? q.dims[ax] : 1;
  const outArr = new Float32Array(q.values.length);
  for (let i = 0; i < q.values.length; i++) {
    const c = perAxis ? Math.floor(i / inner) % channels : 0;
    const z = zp ? zp.values[zp.values.length > 1 ? c : 0] : 0;
    outArr[i] = (q.values[i] - z) * scale.values[c];
  }
  return outArr;
}
