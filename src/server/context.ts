/**
 * What the routes share: the served models, settings, metrics, logger and shutdown state; and the
 * one wrapper that gives every inference request its deadline, metrics and error mapping.
 */
import type { Response } from 'express';
import type { Logger } from 'pino';
import { failureReason, HttpError, requestSignal, toHttpError } from './http-error.js';
import type { ServerMetrics } from './metrics.js';
import type { ServeOptions } from './options.js';
import type { InferResult, ServedModel } from './served-model.js';

export interface ServerContext {
  models: Map<string, ServedModel>;
  options: ServeOptions;
  metrics: ServerMetrics;
  log: Logger;
  /** `draining` is set when shutdown starts: not ready, new requests get 503. */
  state: { draining: boolean };
}

/**
 * The served model called `name`.
 *
 * @throws HttpError 404 naming the model and listing those served.
 */
export function findModel(ctx: ServerContext, name: string, version?: string): ServedModel {
  const model = ctx.models.get(name);
  if (!model) throw new HttpError(404, `Expected a served model name (${[...ctx.models.keys()].join(', ')}) but received ${JSON.stringify(name)}`);
  if (version !== undefined && version !== model.version) {
    throw new HttpError(404, `Expected version ${model.version} of model ${name} (the only one served) but received version ${JSON.stringify(version)}`);
  }
  return model;
}

/**
 * Runs one inference request: gives `run` a signal that aborts at `--request-timeout-ms` or when
 * the client disconnects, lets `respond` send the result, and records the request in the metrics
 * (success with its durations, or failure with its reason).
 *
 * @throws HttpError for any failure (the caller's error handler sends it).
 */
export async function inferenceRequest(
  ctx: ServerContext,
  model: ServedModel,
  res: Response,
  run: (signal: AbortSignal) => Promise<InferResult>,
  respond: (result: InferResult) => void,
): Promise<void> {
  const started: number = res.locals.startedAt ?? performance.now();
  const { signal, done } = requestSignal(res, ctx.options.requestTimeoutMs);
  try {
    const result = await run(signal);
    signal.throwIfAborted();
    respond(result);
    ctx.metrics.recordSuccess(model, { ...result, requestMs: performance.now() - started });
  } catch (err) {
    const http = toHttpError(err);
    ctx.metrics.recordFailure(model, failureReason(http.status));
    throw http;
  } finally {
    done();
  }
}
