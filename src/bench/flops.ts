/**
 * Model FLOPs counted from the ONNX graph: shapes are inferred by walking the graph from the input
 * shape (batch 1), and every convolution and matrix product is counted as 2 operations per
 * multiply-accumulate, fp32 and int8 (QLinear*, *Integer) separately.
 *
 * - Conv / QLinearConv / ConvInteger: 2 × N × Cout × Hout × Wout × (Cin / group) × kH × kW
 * - MatMul / QLinearMatMul / MatMulInteger: 2 × batch × M × K × N
 * - Gemm: 2 × M × K × N
 * Bias adds, activations, pooling and other element-wise work are reported apart
 * (`elementwiseOps`, one per output element), not in the MAC figures used for fraction of peak.
 */
import type { AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto } from '../onnx/model.js';
import { toNumber } from '../onnx/model.js';

/** A tensor's inferred shape (all dims known) and, for small int tensors, its values. */
interface Known {
  shape?: number[];
  /** Values of small integer tensors (shapes, axes) for Reshape/Gather/Concat chains. */
  values?: number[];
}

/** FLOPs of one node. */
export interface NodeFlops {
  name: string;
  opType: string;
  precision: 'fp32' | 'int8';
  /** 2 × multiply-accumulates, for one inference at the counted batch. */
  flops: number;
}

/** FLOP count of a model. */
export interface ModelFlops {
  /** Batch the counts are for (default 1). */
  batch: number;
  /** Conv/MatMul/Gemm FLOPs on float tensors (2 per MAC). */
  fp32Flops: number;
  /** QLinearConv/QLinearMatMul/ConvInteger/MatMulInteger operations on int8/uint8 (2 per MAC). */
  int8Ops: number;
  /** Element-wise and pooling work, one per output element, not counted in the two above. */
  elementwiseOps: number;
  /** MAC-bearing nodes with their FLOPs. */
  nodes: NodeFlops[];
  /** Operator types whose output shape could not be inferred (fine unless a MAC node depends on them). */
  unknownOps: string[];
}

const FLOAT_TYPES = new Set([1, 10, 11, 16]); // FLOAT, FLOAT16, DOUBLE, BFLOAT16

function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}
function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a?.i !== undefined ? toNumber(a.i) : fallback;
}
function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a?.ints && a.ints.length > 0 ? a.ints.map((v) => toNumber(v)) : undefined;
}
function attrString(node: NodeProto, name: string): string | undefined {
  const a = attr(node, name);
  return a?.s ? Buffer.from(a.s).toString('utf8') : undefined;
}

function tensorValues(t: TensorProto): number[] | undefined {
  const count = t.dims.reduce<number>((a, d) => a * toNumber(d), 1);
  if (count > 64) return undefined;
  if (t.int64_data && t.int64_data.length > 0) return t.int64_data.map((v) => toNumber(v));
  if (t.int32_data && t.int32_data.length > 0) return [...t.int32_data];
  if (t.raw_data && t.raw_data.length > 0) {
    const view = new DataView(t.raw_data.buffer, t.raw_data.byteOffset, t.raw_data.byteLength);
    if (t.data_type === 7) return Array.from({ length: count }, (_, i) => Number(view.getBigInt64(i * 8, true)));
    if (t.data_type === 6) return Array.from({ length: count }, (_, i) => view.getInt32(i * 4, true));
  }
  return undefined;
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Numpy-style broadcast of two shapes. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`Cannot broadcast shapes [${a}] and [${b}]`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Output spatial size of a convolution or pooling window along one axis. */
export function convOutputSize(input: number, kernel: number, stride: number, padBegin: number, padEnd: number, dilation: number, autoPad = 'NOTSET', ceilMode = false): number {
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') return Math.ceil(input / stride);
  if (autoPad === 'VALID') return Math.floor((input - dilation * (kernel - 1) - 1) / stride) + 1;
  const span = input + padBegin + padEnd - dilation * (kernel - 1) - 1;
  return (ceilMode ? Math.ceil(span / stride) : Math.floor(span / stride)) + 1;
}

/** Spatial output shape [N, C, ...] of Conv-like or pool nodes. */
function windowedShape(node: NodeProto, x: number[], outChannels: number, kernel: number[]): number[] {
  const spatial = x.length - 2;
  const strides = attrInts(node, 'strides') ?? Array(spatial).fill(1);
  const dilations = attrInts(node, 'dilations') ?? Array(spatial).fill(1);
  const pads = attrInts(node, 'pads') ?? Array(2 * spatial).fill(0);
  const autoPad = attrString(node, 'auto_pad') ?? 'NOTSET';
  const ceilMode = attrInt(node, 'ceil_mode', 0) === 1;
  const out = [x[0], outChannels];
  for (let i = 0; i < spatial; i++) out.push(convOutputSize(x[2 + i], kernel[i], strides[i], pads[i], pads[i + spatial], dilations[i], autoPad, ceilMode));
  return out;
}

/** Index of X and W inputs per convolution/matmul operator. */
const CONV_INPUTS: Record<string, { x: number; w: number; precision: 'fp32' | 'int8' }> = {
  Conv: { x: 0, w: 1, precision: 'fp32' },
  QLinearConv: { x: 0, w: 3, precision: 'int8' },
  ConvInteger: { x: 0, w: 1, precision: 'int8' },
};
const MATMUL_INPUTS: Record<string, { a: number; b: number; precision: 'fp32' | 'int8' }> = {
  MatMul: { a: 0, b: 1, precision: 'fp32' },
  QLinearMatMul: { a: 0, b: 3, precision: 'int8' },
  MatMulInteger: { a: 0, b: 1, precision: 'int8' },
};
/** Ops whose output has the shape of input 0. */
const SAME_SHAPE = new Set([
  'Cast', 'Relu', 'LeakyRelu', 'Clip', 'Sigmoid', 'Tanh', 'HardSigmoid', 'HardSwish', 'Softmax', 'LogSoftmax', 'Identity', 'Dropout',
  'QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear', 'BatchNormalization', 'Neg', 'Abs', 'Exp', 'Log', 'Sqrt', 'Erf',
  'QLinearLeakyRelu', 'QLinearSigmoid', 'QLinearSoftmax', 'LRN', 'InstanceNormalization', 'LayerNormalization', 'Gelu',
  'Sign', 'Reciprocal', 'Floor', 'Ceil', 'Round', 'Not', 'Softplus', 'Elu', 'Selu', 'Mish',
]);
const REDUCE = new Set(['ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceSumSquare', 'ReduceLogSumExp', 'ArgMax', 'ArgMin']);
/** Operators whose FLOPs are counted: their input shapes must be known. */
const MAC_OPS = new Set([...Object.keys(CONV_INPUTS), ...Object.keys(MATMUL_INPUTS), 'Gemm']);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'PRelu', 'Equal', 'Greater', 'Less', 'Where']);
const QLINEAR_BINARY = new Set(['QLinearAdd', 'QLinearMul']); // inputs A (0) and B (3)

/**
 * Counts the FLOPs of a model for one inference at `batch`.
 *
 * @param inputShapes - shapes of graph inputs by name; default: the declared shapes with symbolic
 *   dims set to `batch`.
 * @throws Error when the shape reaching a Conv/MatMul/Gemm node cannot be inferred (naming the
 *   node and the op types that were not understood).
 */
export function countModelFlops(model: ModelProto, options: { batch?: number; inputShapes?: Record<string, number[]> } = {}): ModelFlops {
  const batch = options.batch ?? 1;
  const graph: GraphProto = model.graph;
  const known = new Map<string, Known>();
  const elemType = new Map<string, number>();
  const initializers = new Map<string, TensorProto>();
  for (const t of graph.initializer) {
    if (!t.name) continue;
    initializers.set(t.name, t);
    known.set(t.name, { shape: t.dims.map((d) => toNumber(d)), values: tensorValues(t) });
    elemType.set(t.name, t.data_type);
  }
  for (const input of graph.input) {
    if (initializers.has(input.name)) continue;
    const tt = input.type?.tensor_type;
    if (tt) elemType.set(input.name, tt.elem_type);
    const given = options.inputShapes?.[input.name];
    const declared = tt?.shape?.dim.map((d) => (d.dim_value !== undefined && toNumber(d.dim_value) > 0 ? toNumber(d.dim_value) : batch));
    const shape = given ?? declared;
    if (shape) known.set(input.name, { shape });
  }
  // Shapes the producer recorded (value_info), used when an op is not understood here.
  const recorded = new Map<string, number[]>();
  for (const vi of [...(graph.value_info ?? []), ...graph.output]) {
    const dims = vi.type?.tensor_type?.shape?.dim;
    if (dims && dims.every((d) => d.dim_value !== undefined || d.dim_param !== undefined)) {
      recorded.set(vi.name, dims.map((d) => (d.dim_value !== undefined && toNumber(d.dim_value) > 0 ? toNumber(d.dim_value) : batch)));
    }
  }

  const result: ModelFlops = { batch, fp32Flops: 0, int8Ops: 0, elementwiseOps: 0, nodes: [], unknownOps: [] };
  const shapeOf = (name: string | undefined) => (name ? known.get(name)?.shape : undefined);
  const need = (node: NodeProto, index: number): number[] => {
    const s = shapeOf(node.input[index]);
    if (!s) {
      throw new Error(`Cannot count FLOPs: the shape of input ${index} (${node.input[index]}) of ${node.op_type} node ${node.name ?? node.output[0]} is unknown (op types not understood: ${[...new Set(result.unknownOps)].join(', ') || 'none'})`);
    }
    return s;
  };

  for (const node of graph.node) {
    const op = node.op_type;
    const set = (index: number, k: Known) => {
      if (node.output[index]) known.set(node.output[index], k);
    };
    const floatOut = () => FLOAT_TYPES.has(elemType.get(node.input[0]) ?? 1);
    try {
      if (op in CONV_INPUTS) {
        const { x: xi, w: wi, precision } = CONV_INPUTS[op];
        const x = need(node, xi);
        const w = need(node, wi);
        const group = attrInt(node, 'group', 1);
        const kernel = attrInts(node, 'kernel_shape') ?? w.slice(2);
        const y = windowedShape(node, x, w[0], kernel);
        const flops = 2 * product(y) * (x[1] / group) * product(kernel);
        count(result, node, precision === 'int8' || !floatOut() ? 'int8' : 'fp32', flops);
        set(0, { shape: y });
      } else if (op in MATMUL_INPUTS) {
        const { a: ai, b: bi, precision } = MATMUL_INPUTS[op];
        const a = need(node, ai);
        const b = need(node, bi);
        const a2 = a.length === 1 ? [1, a[0]] : a;
        const b2 = b.length === 1 ? [b[0], 1] : b;
        const [m, k] = a2.slice(-2);
        const n = b2[b2.length - 1];
        const lead = broadcastShapes(a2.slice(0, -2), b2.slice(0, -2));
        count(result, node, precision, 2 * product(lead) * m * k * n);
        const out = [...lead, ...(a.length === 1 ? [] : [m]), ...(b.length === 1 ? [] : [n])];
        set(0, { shape: out });
      } else if (op === 'Gemm') {
        const a = need(node, 0);
        const b = need(node, 1);
        const [m, k] = attrInt(node, 'transA', 0) ? [a[1], a[0]] : [a[0], a[1]];
        const n = attrInt(node, 'transB', 0) ? b[0] : b[1];
        count(result, node, floatOut() ? 'fp32' : 'int8', 2 * m * k * n);
        set(0, { shape: [m, n] });
      } else if (SAME_SHAPE.has(op)) {
        const s = need(node, 0);
        result.elementwiseOps += product(s);
        set(0, { shape: s, values: op === 'Cast' || op === 'Identity' ? known.get(node.input[0])?.values : undefined });
      } else if (BINARY.has(op) || QLINEAR_BINARY.has(op)) {
        const [i, j] = QLINEAR_BINARY.has(op) ? [0, 3] : [0, 1];
        const s = broadcastShapes(need(node, i), need(node, j));
        result.elementwiseOps += product(s);
        const va = known.get(node.input[i])?.values;
        const vb = known.get(node.input[j])?.values;
        let values: number[] | undefined;
        if (va && vb && va.length === vb.length && ['Add', 'Sub', 'Mul', 'Div'].includes(op)) {
          values = va.map((x, t) => (op === 'Add' ? x + vb[t] : op === 'Sub' ? x - vb[t] : op === 'Mul' ? x * vb[t] : Math.trunc(x / vb[t])));
        }
        set(0, { shape: s, values });
      } else if (REDUCE.has(op)) {
        const s = need(node, 0);
        const keep = attrInt(node, 'keepdims', 1) === 1;
        const raw = op.startsWith('Arg') ? [attrInt(node, 'axis', 0)] : attrInts(node, 'axes') ?? known.get(node.input[1])?.values ?? s.map((_, i) => i);
        const axes = new Set(raw.map((a) => (a < 0 ? a + s.length : a)));
        result.elementwiseOps += product(s);
        set(0, { shape: keep ? s.map((d, i) => (axes.has(i) ? 1 : d)) : s.filter((_, i) => !axes.has(i)) });
      } else if (op === 'Transpose') {
        const s = need(node, 0);
        const perm = attrInts(node, 'perm') ?? s.map((_, i) => s.length - 1 - i);
        set(0, { shape: perm.map((p) => s[p]) });
      } else if (op === 'GlobalAveragePool' || op === 'GlobalMaxPool' || op === 'QLinearGlobalAveragePool') {
        const s = need(node, 0);
        result.elementwiseOps += product(s);
        const channelsLast = op === 'QLinearGlobalAveragePool' && attrInt(node, 'channels_last', 0) === 1;
        set(0, { shape: channelsLast ? [s[0], ...s.slice(1, -1).map(() => 1), s[s.length - 1]] : [s[0], s[1], ...s.slice(2).map(() => 1)] });
      } else if (op === 'MaxPool' || op === 'AveragePool' || op === 'QLinearAveragePool' || op === 'LpPool') {
        const s = need(node, 0);
        const kernel = attrInts(node, 'kernel_shape') ?? [];
        const y = windowedShape(node, s, s[1], kernel);
        result.elementwiseOps += product(y) * product(kernel);
        set(0, { shape: y });
      } else if (op === 'Flatten') {
        const s = need(node, 0);
        let axis = attrInt(node, 'axis', 1);
        if (axis < 0) axis += s.length;
        set(0, { shape: [product(s.slice(0, axis)), product(s.slice(axis))] });
      } else if (op === 'Shape') {
        const s = need(node, 0);
        set(0, { shape: [s.length], values: [...s] });
      } else if (op === 'Gather') {
        const data = known.get(node.input[0]);
        const idx = known.get(node.input[1]);
        if (data?.values && idx?.values && data.shape?.length === 1) {
          const vals = idx.values.map((i) => data.values![i < 0 ? i + data.values!.length : i]);
          set(0, { shape: idx.shape ?? [], values: vals });
        } else if (data?.shape && idx?.shape) {
          let axis = attrInt(node, 'axis', 0);
          if (axis < 0) axis += data.shape.length;
          set(0, { shape: [...data.shape.slice(0, axis), ...idx.shape, ...data.shape.slice(axis + 1)] });
        } else unknown(result, op);
      } else if (op === 'Unsqueeze' || op === 'Squeeze') {
        const s = need(node, 0);
        const axes = attrInts(node, 'axes') ?? known.get(node.input[1])?.values;
        const values = known.get(node.input[0])?.values;
        if (op === 'Unsqueeze') {
          if (!axes) throw new Error('Unsqueeze without axes');
          const out = [...s];
          const rank = s.length + axes.length;
          for (const a of [...axes].map((a) => (a < 0 ? a + rank : a)).sort((p, q) => p - q)) out.splice(a, 0, 1);
          set(0, { shape: out, values });
        } else {
          const drop = new Set((axes ?? s.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0)).map((a) => (a < 0 ? a + s.length : a)));
          set(0, { shape: s.filter((_, i) => !drop.has(i)), values });
        }
      } else if (op === 'Concat') {
        const shapes = node.input.map((_, i) => need(node, i));
        let axis = attrInt(node, 'axis', 0);
        if (axis < 0) axis += shapes[0].length;
        const out = [...shapes[0]];
        out[axis] = shapes.reduce((a, s) => a + s[axis], 0);
        const vals = node.input.map((n) => known.get(n)?.values);
        set(0, { shape: out, values: shapes[0].length === 1 && vals.every((v) => v) ? vals.flat() as number[] : undefined });
      } else if (op === 'Reshape') {
        const s = need(node, 0);
        const target = known.get(node.input[1])?.values;
        if (!target) throw new Error('Reshape target unknown');
        const allowZero = attrInt(node, 'allowzero', 0) === 1;
        const out = target.map((d, i) => (d === 0 && !allowZero ? s[i] : d));
        const minus = out.indexOf(-1);
        if (minus >= 0) out[minus] = product(s) / product(out.filter((d) => d !== -1));
        set(0, { shape: out });
      } else if (op === 'Constant') {
        const t = attr(node, 'value')?.t;
        if (t) set(0, { shape: t.dims.map((d) => toNumber(d)), values: tensorValues(t) });
        else unknown(result, op);
      } else {
        unknown(result, op);
      }
    } catch (err) {
      // Only counted operators need their shapes; anything else just leaves its output unknown.
      if (MAC_OPS.has(op) && (err as Error).message.startsWith('Cannot count FLOPs')) throw err;
      unknown(result, op);
    }
    // Fall back to shapes the producer recorded.
    for (const out of node.output) if (!known.get(out)?.shape && recorded.has(out)) known.set(out, { shape: recorded.get(out) });
  }
  return result;
}

function count(result: ModelFlops, node: NodeProto, precision: 'fp32' | 'int8', flops: number): void {
  if (precision === 'int8') result.int8Ops += flops;
  else result.fp32Flops += flops;
  result.nodes.push({ name: node.name ?? node.output[0], opType: node.op_type, precision, flops });
}

function unknown(result: ModelFlops, op: string): void {
  if (!result.unknownOps.includes(op)) result.unknownOps.push(op);
}
