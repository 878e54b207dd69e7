/**
 * Conv2D / DepthwiseConv2D / SeparableConv2D -> ONNX Conv on NCHW.
 *
 * Kernels: TF conv `[kh,kw,in,out]` -> ONNX `[out,in,kh,kw]`; TF depthwise `[kh,kw,C,m]` -> ONNX
 * `[C*m,1,kh,kw]` with `group = C` (output channel `c*m + j`, as TF orders them).
 * padding 'same' -> explicit pads computed TF's way from the static input size (odd pixel at the
 * end), or `auto_pad = SAME_UPPER` (same rule) when H/W are dynamic.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExportContext, OnnxValue } from '../export-context.js';
import { samePads2d } from '../padding.js';
import { activationOf, emitActivation } from './activation.js';
import { configOf, describeLayer, type LayerExporter } from './types.js';

interface ConvConfig {
  kernelSize: number | number[];
  strides?: number | number[];
  padding?: string;
  dataFormat?: string;
  dilationRate?: number | number[];
  useBias?: boolean;
  depthMultiplier?: number;
}

const pair = (v: number | number[] | undefined, fallback: number): [number, number] => (v === undefined ? [fallback, fallback] : Array.isArray(v) ? [v[0], v[1] ?? v[0]] : [v, v]);

/** Spatial attributes (kernel_shape, strides, dilations, pads/auto_pad) for a 2-D Conv/Pool node. */
export function spatial(layer: tf.layers.Layer, x: OnnxValue, kernel: [number, number], strides: [number, number], dilations: [number, number], padding: string): Record<string, number[] | string> {
  if (padding === 'valid') return { pads: [0, 0, 0, 0] };
  if (padding !== 'same') throw new Error(`Cannot export ${describeLayer(layer)}: padding "${padding}" is not supported (valid, same)`);
  const [h, w] = [x.shape[1], x.shape[2]];
  if (h === null || w === null) return { auto_pad: 'SAME_UPPER' };
  return { pads: samePads2d([h, w], kernel, strides, dilations) };
}

function common(layer: tf.layers.Layer, x: OnnxValue) {
  const c = configOf(layer) as unknown as ConvConfig;
  if (c.dataFormat && c.dataFormat !== 'channelsLast') throw new Error(`Cannot export ${describeLayer(layer)}: dataFormat ${c.dataFormat} is not supported (channelsLast only)`);
  if (x.shape.length !== 4) throw new Error(`Cannot export ${describeLayer(layer)}: expected a rank-4 input`);
  const kernel = pair(c.kernelSize, 1);
  const strides = pair(c.strides, 1);
  const dilations = pair(c.dilationRate, 1);
  return { c, kernel, strides, dilations, attrs: { kernel_shape: kernel, strides, dilations, ...spatial(layer, x, kernel, strides, dilations, c.padding ?? 'valid') } };
}

function hwioToOihw(k: tf.Tensor): { dims: number[]; data: Float32Array } {
  const [kh, kw, i, o] = k.shape;
  const src = k.dataSync();
  const out = new Float32Array(src.length);
  for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let c = 0; c < i; c++) for (let m = 0; m < o; m++) {
    out[((m * i + c) * kh + y) * kw + x] = src[((y * kw + x) * i + c) * o + m];
  }
  return { dims: [o, i, kh, kw], data: out };
}

function depthwiseToOnnx(k: tf.Tensor): { dims: number[]; data: Float32Array } {
  const [kh, kw, ch, mult] = k.shape;
  const src = k.dataSync();
  const out = new Float32Array(src.length);
  for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let c = 0; c < ch; c++) for (let j = 0; j < mult; j++) {
    out[(c * mult + j) * kh * kw + y * kw + x] = src[((y * kw + x) * ch + c) * mult + j];
  }
  return { dims: [ch * mult, 1, kh, kw], data: out };
}

function finish(ctx: ExportContext, layer: tf.layers.Layer, conv: string, out: tf.SymbolicTensor): OnnxValue {
  return emitActivation(ctx, { name: conv, layout: 'nchw', shape: out.shape.slice() }, activationOf(layer), layer.name, layer);
}

export const Conv2D: LayerExporter = (ctx, layer, [input], out) => {
  const x = ctx.as(input, 'nchw');
  const { c, attrs } = common(layer, x);
  const [kernel, bias] = layer.getWeights();
  const w = hwioToOihw(kernel);
  const inputs = [x.name, ctx.float(`${layer.name}/kernel`, w.dims, w.data)];
  if (c.useBias !== false && bias) inputs.push(ctx.float(`${layer.name}/bias`, bias.shape, bias.dataSync()));
  return finish(ctx, layer, ctx.op('Conv', inputs, `${layer.name}/conv`, { ...attrs, group: 1 }), out);
};

export const DepthwiseConv2D: LayerExporter = (ctx, layer, [input], out) => {
  const x = ctx.as(input, 'nchw');
  const { c, attrs } = common(layer, x);
  const [kernel, bias] = layer.getWeights();
  const w = depthwiseToOnnx(kernel);
  const inputs = [x.name, ctx.float(`${layer.name}/depthwise_kernel`, w.dims, w.data)];
  if (c.useBias !== false && bias) inputs.push(ctx.float(`${layer.name}/bias`, bias.shape, bias.dataSync()));
  return finish(ctx, layer, ctx.op('Conv', inputs, `${layer.name}/conv`, { ...attrs, group: kernel.shape[2] as number }), out);
};

export const SeparableConv2D: LayerExporter = (ctx, layer, [input], out) => {
  const x = ctx.as(input, 'nchw');
  const { c, attrs } = common(layer, x);
  const [depthwise, pointwise, bias] = layer.getWeights();
  const d = depthwiseToOnnx(depthwise);
  const mid = ctx.op('Conv', [x.name, ctx.float(`${layer.name}/depthwise_kernel`, d.dims, d.data)], `${layer.name}/depthwise`, { ...attrs, group: depthwise.shape[2] as number });
  const p = hwioToOihw(pointwise);
  const inputs = [mid, ctx.float(`${layer.name}/pointwise_kernel`, p.dims, p.data)];
  if (c.useBias !== false && bias) inputs.push(ctx.float(`${layer.name}/bias`, bias.shape, bias.dataSync()));
  return finish(ctx, layer, ctx.op('Conv', inputs, `${layer.name}/pointwise`, { kernel_shape: [1, 1], strides: [1, 1], pads: [0, 0, 0, 0], group: 1 }), out);
};
