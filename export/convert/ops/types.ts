/** Signature of one ONNX op converter: reads its inputs from the context, sets its outputs. */
import type { NodeProto } from '../../../src/onnx/model.js';
import type { ImportContext } from '../import-context.js';

export type OpConverter = (ctx: ImportContext, n: NodeProto) => void;
