/**
 * Model conversion between ONNX and TF.js, both ways.
 *
 * - {@link importOnnxToTfjs}: ONNX image classifier (float, or int8: its exact integer arithmetic by
 *   default, or dequantised) -> TF.js LayersModel taking `[N,H,W,C] float32 NHWC`.
 * - {@link withUint8Weights} / {@link onnxruntimeInt8Arithmetic}: the onnxruntime references an
 *   exact int8 import is checked against.
 * - {@link exportTfjsToOnnx}: TF.js LayersModel -> ONNX (opset 13) taking the same NHWC input.
 * - {@link dequantizeModel}: QOperator int8 ONNX -> float ONNX (the first step of an `int8: 'float'` import).
 */
export { importOnnxToTfjs, SUPPORTED_ONNX_OPS, type ImportOptions, type ImportResult, type Int8Import } from './onnx-to-tfjs.js';
export type { Int8Arithmetic } from './ops/qlinear.js';
export { onnxruntimeInt8Arithmetic, withUint8Weights } from './int8-reference.js';
export { PairSaturationLayer, QLinearAddLayer, RequantizeLayer } from './int8-layers.js';
export { exportTfjsToOnnx, SUPPORTED_TFJS_LAYERS, type ExportOptions } from './tfjs-to-onnx.js';
export { dequantizeModel, isQuantized, type ClipPolicy, type DequantizeOptions } from './dequantize.js';
export { ClipLayer, clipLayer } from './clip-layer.js';
