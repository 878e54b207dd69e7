/** Signature of one TF.js layer exporter: ONNX inputs in, ONNX output out (single-output layers). */
import type * as tf from '@tensorflow/tfjs';
import type { ExportContext, OnnxValue } from '../export-context.js';

export type LayerExporter = (ctx: ExportContext, layer: tf.layers.Layer, inputs: OnnxValue[], output: tf.SymbolicTensor) => OnnxValue;

/** Layer config as a plain record. */
export function configOf(layer: tf.layers.Layer): Record<string, unknown> {
  return layer.getConfig() as Record<string, unknown>;
}

/** `Layer "name" (Class)` for error messages. */
export function describeLayer(layer: tf.layers.Layer): string {
  return `TF.js layer "${layer.name}" (${layer.getClassName()})`;
}
