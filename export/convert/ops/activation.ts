/**
 * ONNX element-wise activations -> tf.layers (layout unchanged).
 *
 * Clip `[0, hi]` becomes `reLU({ maxValue: hi })` (hi = 6 is ReLU6), any other range the
 * registered {@link ClipLayer}. Softmax only over the channel axis (ONNX axis 1 of `[N,C,H,W]` or
 * the last axis of `[N,C]`), which is TF.js's last axis.
 */
import * as tf from '@tensorflow/tfjs';
import { clipLayer } from '../clip-layer.js';
import { Attrs, describeNode } from '../onnx-values.js';
import type { OpConverter } from './types.js';

export const Relu: OpConverter = (ctx, n) => {
  const x = ctx.tensor(n.input[0], n);
  ctx.setTensor(n.output[0], ctx.apply(tf.layers.reLU({ name: ctx.layerName(n) }), x.t), x.layout);
};

export const Clip: OpConverter = (ctx, n) => {
  const x = ctx.tensor(n.input[0], n);
  const a = new Attrs(n);
  // Opset >= 11: min/max are optional inputs; opset 6: attributes.
  const bound = (index: number, attr: string, fallback: number): number => {
    if (n.input[index]) {
      const c = ctx.constant(n.input[index], n);
      if (c.values.length !== 1) throw new Error(`${describeNode(n)}: ${attr} must be a scalar`);
      return c.values[0];
    }
    return a.float(attr, fallback);
  };
  const lo = bound(1, 'min', -Infinity);
  const hi = bound(2, 'max', Infinity);
  const name = ctx.layerName(n);
  const layer = lo === 0 ? tf.layers.reLU(Number.isFinite(hi) ? { maxValue: hi, name } : { name }) : clipLayer({ min: lo, max: hi, name });
  ctx.setTensor(n.output[0], ctx.apply(layer, x.t), x.layout);
};

export const LeakyRelu: OpConverter = (ctx, n) => {
  const x = ctx.tensor(n.input[0], n);
  const alpha = new Attrs(n).float('alpha', 0.01);
  ctx.setTensor(n.output[0], ctx.apply(tf.layers.leakyReLU({ alpha, name: ctx.layerName(n) }), x.t), x.layout);
};

export const Elu: OpConverter = (ctx, n) => {
  const x = ctx.tensor(n.input[0], n);
  const alpha = new Attrs(n).float('alpha', 1);
  ctx.setTensor(n.output[0], ctx.apply(tf.layers.elu({ alpha, name: ctx.layerName(n) }), x.t), x.layout);
};

function activation(identifier: 'sigmoid' | 'tanh' | 'softplus' | 'softsign' | 'selu'): OpConverter {
  return (ctx, n) => {
    const x = ctx.tensor(n.input[0], n);
    if (identifier === 'selu') {
      const a = new Attrs(n);
      // TF's selu uses exactly ONNX's default constants.
      if (Math.abs(a.float('alpha', 1.67326319217681884765625) - 1.67326319217681884765625) > 1e-6 || Math.abs(a.float('gamma', 1.05070102214813232421875) - 1.05070102214813232421875) > 1e-6) {
        throw new Error(`${describeNode(n)}: Selu with non-default alpha/gamma is not supported`);
      }
    }
    ctx.setTensor(n.output[0], ctx.apply(tf.layers.activation({ activation: identifier, name: ctx.layerName(n) }), x.t), x.layout);
  };
}

export const Sigmoid = activation('sigmoid');
export const Tanh = activation('tanh');
export const Softplus = activation('softplus');
export const Softsign = activation('softsign');
export const Selu = activation('selu');

export const Softmax: OpConverter = (ctx, n) => {
  const x = ctx.tensor(n.input[0], n);
  const rank = ctx.onnxShape(x).length;
  let axis = new Attrs(n).int('axis', -1);
  if (axis < 0) axis += rank;
  const channelAxis = rank === 2 || (x.layout !== 'plain' && axis === 1) || (x.layout === 'plain' && axis === rank - 1);
  if (!channelAxis || (x.layout === 'nhwc' && axis !== 1)) throw new Error(`${describeNode(n)}: Softmax over axis ${axis} of a rank-${rank} tensor is not supported (channel axis only)`);
  ctx.setTensor(n.output[0], ctx.apply(tf.layers.softmax({ axis: -1, name: ctx.layerName(n) }), x.t), x.layout);
};
