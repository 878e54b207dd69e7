/**
 * Keras activations as ONNX (opset 13) nodes, on a tensor of any layout (element-wise, except
 * softmax, which runs over TF's last axis = ONNX axis 1 of an NCHW tensor).
 *
 * relu -> Relu; relu6 -> Clip(0, 6); sigmoid, tanh, softplus, softsign -> same-named ops;
 * elu -> Elu(alpha 1); selu -> Selu (ONNX's default alpha/gamma are TF's constants);
 * hardSigmoid -> HardSigmoid(0.2, 0.5) (tfjs: clip(0.2x + 0.5, 0, 1)); swish -> x * Sigmoid(x);
 * mish -> x * Tanh(Softplus(x)); gelu -> 0.5 x (1 + Erf(x / sqrt 2)); gelu_new -> the tanh form;
 * softmax -> Softmax; linear -> nothing.
 */
import type * as tf from '@tensorflow/tfjs';
import type { ExportContext, OnnxValue } from '../export-context.js';
import { configOf, describeLayer, type LayerExporter } from './types.js';

export const ACTIVATIONS = ['linear', 'relu', 'relu6', 'sigmoid', 'tanh', 'softmax', 'elu', 'selu', 'softplus', 'softsign', 'hardSigmoid', 'swish', 'mish', 'gelu', 'gelu_new'];

/** Emits activation `id` on `v`; `owner` names the layer in errors. */
export function emitActivation(ctx: ExportContext, v: OnnxValue, id: string, base: string, owner: tf.layers.Layer): OnnxValue {
  const unary = (op: string, attrs = {}, floats: Record<string, number> = {}): OnnxValue => ({ ...v, name: ctx.op(op, [v.name], `${base}/${id}`, attrs, floats) });
  const scalar = (value: number) => ctx.float(`${base}/${id}/const`, [], [value]);
  switch (id) {
    case 'linear':
      return v;
    case 'relu':
      return unary('Relu');
    case 'relu6':
      return { ...v, name: ctx.op('Clip', [v.name, scalar(0), scalar(6)], `${base}/relu6`) };
    case 'sigmoid':
      return unary('Sigmoid');
    case 'tanh':
      return unary('Tanh');
    case 'softplus':
      return unary('Softplus');
    case 'softsign':
      return unary('Softsign');
    case 'elu':
      return unary('Elu', {}, { alpha: 1 });
    case 'selu':
      return unary('Selu');
    case 'hardSigmoid':
      return unary('HardSigmoid', {}, { alpha: 0.2, beta: 0.5 });
    case 'softmax':
      return unary('Softmax', { axis: v.layout === 'nchw' ? 1 : -1 });
    case 'swish': {
      const s = ctx.op('Sigmoid', [v.name], `${base}/swish_sigmoid`);
      return { ...v, name: ctx.op('Mul', [v.name, s], `${base}/swish`) };
    }
    case 'mish': {
      const sp = ctx.op('Softplus', [v.name], `${base}/mish_softplus`);
      const th = ctx.op('Tanh', [sp], `${base}/mish_tanh`);
      return { ...v, name: ctx.op('Mul', [v.name, th], `${base}/mish`) };
    }
    case 'gelu': {
      const scaled = ctx.op('Mul', [v.name, scalar(Math.SQRT1_2)], `${base}/gelu_scale`);
      const erf = ctx.op('Erf', [scaled], `${base}/gelu_erf`);
      const onePlus = ctx.op('Add', [erf, scalar(1)], `${base}/gelu_add`);
      const half = ctx.op('Mul', [v.name, scalar(0.5)], `${base}/gelu_half`);
      return { ...v, name: ctx.op('Mul', [half, onePlus], `${base}/gelu`) };
    }
    case 'gelu_new': {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      const x3 = ctx.op('Mul', [v.name, ctx.op('Mul', [v.name, v.name], `${base}/x2`)], `${base}/x3`);
      const inner = ctx.op('Add', [v.name, ctx.op('Mul', [x3, scalar(0.044715)], `${base}/cubic`)], `${base}/inner`);
      const th = ctx.op('Tanh', [ctx.op('Mul', [inner, scalar(Math.sqrt(2 / Math.PI))], `${base}/inner_scaled`)], `${base}/tanh`);
      const onePlus = ctx.op('Add', [th, scalar(1)], `${base}/one_plus`);
      return { ...v, name: ctx.op('Mul', [ctx.op('Mul', [v.name, scalar(0.5)], `${base}/half`), onePlus], `${base}/gelu_new`) };
    }
    default:
      throw new Error(`Cannot export ${describeLayer(owner)}: activation "${id}" is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  }
}

/** The `activation` of a layer config as an identifier. */
export function activationOf(layer: tf.layers.Layer): string {
  const a = configOf(layer).activation;
  if (a === undefined || a === null) return 'linear';
  if (typeof a === 'string') return a;
  const cls = (a as { className?: string }).className;
  if (cls) return cls;
  throw new Error(`Cannot export ${describeLayer(layer)}: unrecognised activation config ${JSON.stringify(a)}`);
}

export const Activation: LayerExporter = (ctx, layer, [x]) => emitActivation(ctx, x, activationOf(layer), layer.name, layer);

export const ReLU: LayerExporter = (ctx, layer, [x]) => {
  const maxValue = configOf(layer).maxValue as number | null | undefined;
  if (maxValue === null || maxValue === undefined) return emitActivation(ctx, x, 'relu', layer.name, layer);
  return { ...x, name: ctx.op('Clip', [x.name, ctx.float(`${layer.name}/min`, [], [0]), ctx.float(`${layer.name}/max`, [], [maxValue])], layer.name) };
};

export const LeakyReLU: LayerExporter = (ctx, layer, [x]) => ({ ...x, name: ctx.op('LeakyRelu', [x.name], layer.name, {}, { alpha: (configOf(layer).alpha as number) ?? 0.3 }) });

export const ELU: LayerExporter = (ctx, layer, [x]) => ({ ...x, name: ctx.op('Elu', [x.name], layer.name, {}, { alpha: (configOf(layer).alpha as number) ?? 1 }) });

export const Softmax: LayerExporter = (ctx, layer, [x]) => {
  let axis = configOf(layer).axis as number | number[];
  if (Array.isArray(axis)) {
    if (axis.length !== 1) throw new Error(`Cannot export ${describeLayer(layer)}: softmax over several axes`);
    axis = axis[0];
  }
  const rank = x.shape.length;
  if (axis < 0) axis += rank;
  const onnxAxis = x.layout === 'nchw' ? [0, 2, 3, 1][axis] : axis;
  return { ...x, name: ctx.op('Softmax', [x.name], layer.name, { axis: onnxAxis }) };
};

/** The artist-id `Clip` layer ({@link ../clip-layer.ts}). */
export const Clip: LayerExporter = (ctx, layer, [x]) => {
  const c = configOf(layer) as { min: number; max: number };
  return { ...x, name: ctx.op('Clip', [x.name, ctx.float(`${layer.name}/min`, [], [c.min]), ctx.float(`${layer.name}/max`, [], [c.max])], layer.name) };
};
