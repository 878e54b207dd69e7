/**
 * Model conversion between ONNX and TF.js, both ways.
 *
 * - {@link importOnnxToTfjs}: ONNX image classifier (float, or QOperator int8 dequantised) -> TF.js
 *   LayersModel taking `[N,H,W,C] float32 NHWC`.
 * - {@link exportTfjsToOnnx}: TF.js LayersModel -> ONNX (opset 13) taking the same NHWC input.
 * - {@link dequantizeModel}: QOperator int8 ONNX -> float ONNX (the first step of an int8 import).
 */
export { importOnnxToTfjs, SUPPORTED_ONNX_OPS, type ImportOptions, type ImportResult } from './onnx-to-tfjs.js';
export { exportTfjsToOnnx, SUPPORTED_TFJS_LAYERS, type ExportOptions } from './tfjs-to-onnx.js';
export { dequantizeModel, isQuantized, type ClipPolicy, type DequantizeOptions } from './dequantize.js';
export { ClipLayer, clipLayer } from './clip-layer.js';
