/**
 * Pooling -> ONNX MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool on NCHW.
 *
 * 'same' pooling: explicit TF pads; AveragePool gets `count_include_pad = 0` because TF divides by
 * the number of real (unpadded) cells; MaxPool ignores padded cells in ONNX as in TF.
 * Global pooling yields `[N,C,1,1]`, flattened to TF's `[N,C]`.
 */
import { spatial } from './conv.js';
import { configOf, describeLayer, type LayerExporter } from './types.js';

const pair = (v: unknown, fallback: [number, number]): [number, number] => (v === undefined || v === null ? fallback : Array.isArray(v) ? [v[0], v[1] ?? v[0]] : [v as number, v as number]);

function pool(op: 'MaxPool' | 'AveragePool'): LayerExporter {
  return (ctx, layer, [input], out) => {
    const c = configOf(layer);
    if (c.dataFormat && c.dataFormat !== 'channelsLast') throw new Error(`Cannot export ${describeLayer(layer)}: dataFormat ${String(c.dataFormat)} is not supported`);
    if (input.shape.length !== 4) throw new Error(`Cannot export ${describeLayer(layer)}: only 2-D pooling is supported`);
    const x = ctx.as(input, 'nchw');
    const kernel = pair(c.poolSize, [2, 2]);
    const strides = pair(c.strides, kernel);
    const attrs: Record<string, number | number[] | string> = { kernel_shape: kernel, strides, ...spatial(layer, x, kernel, strides, [1, 1], (c.padding as string) ?? 'valid') };
    if (op === 'AveragePool') attrs.count_include_pad = 0;
    return { name: ctx.op(op, [x.name], layer.name, attrs), layout: 'nchw', shape: out.shape.slice() };
  };
}

export const MaxPooling2D = pool('MaxPool');
export const AveragePooling2D = pool('AveragePool');

function globalPool(op: 'GlobalAveragePool' | 'GlobalMaxPool'): LayerExporter {
  return (ctx, layer, [input], out) => {
    const c = configOf(layer);
    if (c.dataFormat && c.dataFormat !== 'channelsLast') throw new Error(`Cannot export ${describeLayer(layer)}: dataFormat ${String(c.dataFormat)} is not supported`);
    const x = ctx.as(input, 'nchw');
    const pooled = ctx.op(op, [x.name], `${layer.name}/pool`);
    return { name: ctx.op('Flatten', [pooled], layer.name, { axis: 1 }), layout: 'plain', shape: out.shape.slice() };
  };
}

export const GlobalAveragePooling2D = globalPool('GlobalAveragePool');
export const GlobalMaxPooling2D = globalPool('GlobalMaxPool');
