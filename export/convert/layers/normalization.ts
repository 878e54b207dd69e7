/**
 * BatchNormalization (inference) -> ONNX BatchNormalization:
 * `y = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta` over TF's last axis,
 * i.e. ONNX channel axis 1 of NCHW (rank 4) or of `[N,C]` (rank 2). `scale: false` / `center: false`
 * become gamma = 1 / beta = 0.
 */
import { configOf, describeLayer, type LayerExporter } from './types.js';

export const BatchNormalization: LayerExporter = (ctx, layer, [input], out) => {
  const c = configOf(layer) as { axis?: number | number[]; epsilon?: number };
  const rank = input.shape.length;
  const axis = Array.isArray(c.axis) ? c.axis[0] : c.axis ?? -1;
  if (!(axis === -1 || axis === rank - 1) || (rank !== 2 && rank !== 4)) {
    throw new Error(`Cannot export ${describeLayer(layer)}: only normalisation over the last axis of rank-2 or rank-4 tensors is supported (axis ${axis}, rank ${rank})`);
  }
  const x = ctx.as(input, 'nchw');
  const byName = new Map(layer.weights.map((w, i) => [w.originalName.split('/').pop() ?? '', layer.getWeights()[i]]));
  const channels = out.shape[rank - 1] as number;
  const get = (key: string, fallback: number) => {
    const t = byName.get(key);
    return t ? t.dataSync() : new Float32Array(channels).fill(fallback);
  };
  const inputs = [
    x.name,
    ctx.float(`${layer.name}/gamma`, [channels], get('gamma', 1)),
    ctx.float(`${layer.name}/beta`, [channels], get('beta', 0)),
    ctx.float(`${layer.name}/moving_mean`, [channels], get('moving_mean', 0)),
    ctx.float(`${layer.name}/moving_variance`, [channels], get('moving_variance', 1)),
  ];
  return { name: ctx.op('BatchNormalization', inputs, layer.name, {}, { epsilon: c.epsilon ?? 1e-3 }), layout: x.layout, shape: out.shape.slice() };
};
