/**
 * Open Inference Protocol (KServe v2) HTTP/REST endpoints, as Triton serves them
 * (https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol):
 *
 * - `GET /v2` server metadata; `GET /v2/health/live`, `GET /v2/health/ready`: 200 when true, 400
 *   when false, empty body (Triton's behaviour; the protocol says 4xx for false).
 * - `GET /v2/models/{name}[/versions/{v}]` model metadata; `.../ready`; `.../config` (Triton's
 *   model configuration extension: batching limits); `POST .../infer` (see `kserve-codec.ts` for
 *   the tensors, the binary extension and BYTES images).
 * - Errors: `{"error": "..."}` with a 4xx/5xx status.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Router, type Request } from 'express';
import { PACKAGE_ROOT } from '../paths.js';
import { readBody } from './body.js';
import { findModel, inferenceRequest, type ServerContext } from './context.js';
import { BYTES_INPUT, OPEN_SET_SCORE_OUTPUT, UNKNOWN_OUTPUT, encodeInferResponse, parseInferRequest, type ParsedInferRequest } from './kserve-codec.js';
import type { ServedModel } from './served-model.js';

/** Request header of the binary tensor extension: length of the JSON part of the body. */
export const HEADER_LENGTH = 'inference-header-content-length';

/** Extensions reported in server metadata. */
export const EXTENSIONS = ['binary_tensor_data', 'classification', 'model_configuration'];

const VERSION: string = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version;

/** True when the server takes inference requests: not shutting down and every model ready. */
export function serverReady(ctx: ServerContext): boolean {
  return !ctx.state.draining && [...ctx.models.values()].every((m) => m.ready);
}

export function kserveRouter(ctx: ServerContext): Router {
  const router = Router();
  const model = (req: Request): ServedModel => findModel(ctx, String(req.params.name), req.params.version === undefined ? undefined : String(req.params.version));

  router.get('/v2', (_req, res) => {
    res.json({ name: 'artist-id', version: VERSION, extensions: EXTENSIONS });
  });
  router.get('/v2/health/live', (_req, res) => {
    res.status(200).end();
  });
  router.get('/v2/health/ready', (_req, res) => {
    res.status(serverReady(ctx) ? 200 : 400).end();
  });

  const base = '/v2/models/:name{/versions/:version}';
  router.get(base, (req, res) => {
    res.json(modelMetadata(model(req), ctx));
  });
  router.get(`${base}/ready`, (req, res) => {
    const m = model(req);
    res.status(m.ready && !ctx.state.draining ? 200 : 400).end();
  });
  router.get(`${base}/config`, (req, res) => {
    res.json(modelConfig(model(req), ctx));
  });
  router.post(`${base}/infer`, async (req, res) => {
    const m = model(req);
    let parsed: ParsedInferRequest | undefined;
    await inferenceRequest(
      ctx,
      m,
      res,
      async (signal) => {
        const body = await readBody(req, res, ctx.options.bodyLimitMb * 1e6);
        const header = req.headers[HEADER_LENGTH];
        parsed = parseInferRequest(body, Array.isArray(header) ? header[0] : header, m.card);
        const input = parsed.input;
        return input.kind === 'pixels' ? m.infer(input.pixels, signal) : m.classify(input.images, signal);
      },
      (result) => {
        const encoded = encodeInferResponse(m, parsed!, result.outputs);
        if (encoded.kind === 'json') {
          res.json(encoded.body);
          return;
        }
        res.setHeader('Content-Type', 'application/octet-stream');
        res.setHeader('Inference-Header-Content-Length', String(encoded.headerLength));
        res.end(encoded.body);
      },
    );
  });
  return router;
}

/**
 * Model metadata (`$metadata_model_response`): inputs and outputs with datatypes and shapes (-1 is
 * the batch dimension), plus `parameters` with the execution provider, the classes (in output
 * order) and the preprocessing of `image_bytes`.
 */
export function modelMetadata(m: ServedModel, ctx: ServerContext): object {
  const { card } = m;
  const { width, height } = card.preprocessing;
  const classes = card.classes.length;
  return {
    name: m.name,
    versions: [m.version],
    platform: 'onnxruntime_onnx',
    inputs: [
      { name: card.input, datatype: 'UINT8', shape: [-1, height, width, 3] },
      { name: BYTES_INPUT, datatype: 'BYTES', shape: [-1] },
    ],
    outputs: [
      { name: card.outputs.probabilities, datatype: 'FP32', shape: [-1, classes] },
      { name: card.outputs.logits, datatype: 'FP32', shape: [-1, classes] },
      { name: card.outputs.features, datatype: 'FP32', shape: [-1, card.base.featureDim] },
      ...(card.openSet
        ? [
            { name: OPEN_SET_SCORE_OUTPUT, datatype: 'FP32', shape: [-1] },
            { name: UNKNOWN_OUTPUT, datatype: 'BOOL', shape: [-1] },
          ]
        : []),
    ],
    parameters: {
      execution_provider: m.provider,
      ...(m.fallbackReason ? { execution_provider_fallback: m.fallbackReason } : {}),
      inputs: `send exactly one of ${card.input} (decoded NHWC sRGB pixels) or ${BYTES_INPUT} (encoded images, decoded with the preprocessing below)`,
      classes: card.classes,
      preprocessing: card.preprocessing,
      model_card_name: card.name,
      max_batch_size: ctx.options.maxBatchSize,
      ...(card.openSet ? { open_set: openSetParameters(card.openSet) } : {}),
    },
  };
}

/**
 * What a client needs to read the open-set outputs: the score's name, the threshold and the rule that
 * chose it, and the measured acceptance and AUROC where the card has them.
 */
export function openSetParameters(openSet: NonNullable<ServedModel['card']['openSet']>): object {
  return {
    score: openSet.score,
    threshold: openSet.threshold,
    unknown_when: 'open_set_score < threshold',
    target_accept_rate: openSet.targetAcceptRate,
    validation_accept_rate: openSet.validationAcceptRate,
    ...(openSet.testAcceptRate !== undefined ? { test_accept_rate: openSet.testAcceptRate } : {}),
    ...(openSet.auroc ? { auroc: openSet.auroc } : {}),
  };
}

/** Triton-style model configuration (dims without the batch dimension). */
export function modelConfig(m: ServedModel, ctx: ServerContext): object {
  const { card } = m;
  const { width, height } = card.preprocessing;
  const o = ctx.options;
  return {
    name: m.name,
    platform: 'onnxruntime_onnx',
    max_batch_size: o.maxBatchSize,
    input: [
      { name: card.input, data_type: 'TYPE_UINT8', dims: [height, width, 3] },
      { name: BYTES_INPUT, data_type: 'TYPE_STRING', dims: [1] },
    ],
    output: [
      { name: card.outputs.probabilities, data_type: 'TYPE_FP32', dims: [card.classes.length] },
      { name: card.outputs.logits, data_type: 'TYPE_FP32', dims: [card.classes.length] },
      { name: card.outputs.features, data_type: 'TYPE_FP32', dims: [card.base.featureDim] },
      ...(card.openSet
        ? [
            { name: OPEN_SET_SCORE_OUTPUT, data_type: 'TYPE_FP32', dims: [1] },
            { name: UNKNOWN_OUTPUT, data_type: 'TYPE_BOOL', dims: [1] },
          ]
        : []),
    ],
    dynamic_batching: {
      max_queue_delay_microseconds: o.maxQueueDelayMs * 1000,
      default_queue_policy: { max_queue_size: o.maxQueueSize, default_timeout_microseconds: o.requestTimeoutMs * 1000 },
    },
    instance_group: [{ count: 1, kind: m.provider === 'cuda' ? 'KIND_GPU' : 'KIND_CPU' }],
  };
}
