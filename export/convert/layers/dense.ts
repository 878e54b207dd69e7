/**
 * Dense -> ONNX MatMul (kernel `[in,out]`, as TF stores it) + Add(bias) + activation.
 * On a rank-4 input Dense acts on TF's last axis, so the input is taken in NHWC (MatMul
 * broadcasts over N, H, W) and the result stays NHWC.
 */
import { activationOf, emitActivation } from './activation.js';
import { configOf, type LayerExporter } from './types.js';

export const Dense: LayerExporter = (ctx, layer, [input], out) => {
  const x = ctx.as(input, 'nhwc');
  const [kernel, bias] = layer.getWeights();
  let y = ctx.op('MatMul', [x.name, ctx.float(`${layer.name}/kernel`, kernel.shape, kernel.dataSync())], `${layer.name}/matmul`);
  if (configOf(layer).useBias !== false && bias) y = ctx.op('Add', [y, ctx.float(`${layer.name}/bias`, bias.shape, bias.dataSync())], `${layer.name}/bias_add`);
  return emitActivation(ctx, { name: y, layout: x.layout, shape: out.shape.slice() }, activationOf(layer), layer.name, layer);
};
