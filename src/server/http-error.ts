/**
 * HTTP errors: every failure of a request becomes a status and a JSON body `{"error": "..."}` (the
 * Open Inference Protocol's error object, used by every route), with a message for people.
 */
import type { Response } from 'express';
import { ImageDecodeError } from '../preprocess/decode.js';
import { BatcherClosedError, QueueFullError, RequestTooLargeError } from './batcher.js';

/** Why an inference request failed, as counted in `nv_inference_request_failure{reason}`. */
export type FailureReason = 'INVALID' | 'REJECTED' | 'TIMEOUT' | 'CANCELED' | 'BACKEND';

/** An error with its HTTP status and extra response headers. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The request took longer than `--request-timeout-ms`. */
export class RequestTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`The request did not complete within ${timeoutMs} ms (--request-timeout-ms); the server is busy, retry later or raise the timeout`);
    this.name = 'RequestTimeoutError';
  }
}

/** The client closed the connection before the answer was ready. */
export class ClientClosedError extends Error {
  constructor() {
    super('The client closed the connection before the response was ready');
    this.name = 'ClientClosedError';
  }
}

/** Errors raised by express's body parsers (`raw-body`): they carry `type`, `status` and sizes. */
interface BodyParserError extends Error {
  type?: string;
  code?: string;
  status?: number;
  limit?: number;
  length?: number;
}

/**
 * Maps any error to its HTTP form.
 *
 * 400 bad input (undecodable image, malformed body); 404 unknown model or route; 413 body or image
 * count over the limit; 415 wrong content type; 429 queue full (with `Retry-After`); 503 shutting
 * down or model not ready; 504 request timeout; 499 client gone (nginx's convention, never seen by
 * that client); 500 anything else, such as an onnxruntime failure.
 */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof ImageDecodeError) return new HttpError(400, err.message);
  if (err instanceof QueueFullError) return new HttpError(429, err.message, { 'Retry-After': String(err.retryAfterSeconds) });
  if (err instanceof RequestTooLargeError) return new HttpError(413, err.message);
  if (err instanceof BatcherClosedError) return new HttpError(503, err.message, { Connection: 'close' });
  if (err instanceof RequestTimeoutError) return new HttpError(504, err.message);
  if (err instanceof ClientClosedError) return new HttpError(499, err.message);
  const e = err as BodyParserError;
  if (e?.type === 'entity.too.large') {
    const received = e.length !== undefined ? `${formatMb(e.length)}` : 'more';
    return new HttpError(413, `Expected a request body of at most ${formatMb(e.limit ?? 0)} (--body-limit-mb) but received ${received}`, { Connection: 'close' });
  }
  if (e?.type === 'encoding.unsupported') return new HttpError(415, `Expected Content-Encoding identity, gzip, deflate or br but ${e.message}`);
  if (typeof e?.code === 'string' && e.code.startsWith('Z_')) return new HttpError(400, `Could not decompress the request body as its Content-Encoding says: ${e.message}`);
  if (e?.type === 'request.aborted') return new HttpError(400, 'The request body was cut off: the client stopped sending before the declared Content-Length');
  if (e?.type === 'request.size.invalid') return new HttpError(400, 'The request body is shorter or longer than its Content-Length header says');
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) return new HttpError(e.status, e.message);
  return new HttpError(500, `Internal error: ${(err as Error)?.message ?? String(err)}`);
}

/** The metrics reason of a failed status. */
export function failureReason(status: number): FailureReason {
  if (status === 429 || status === 503 || status === 413) return 'REJECTED';
  if (status === 504) return 'TIMEOUT';
  if (status === 499) return 'CANCELED';
  return status >= 500 ? 'BACKEND' : 'INVALID';
}

/** Sends `{"error": message}` with the error's status and headers (unless a response already started). */
export function sendError(res: Response, err: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
  res.status(err.status).json({ error: err.message });
}

/**
 * The deadline and cancellation of one request: `signal` aborts with {@link RequestTimeoutError}
 * after `timeoutMs`, or with {@link ClientClosedError} when the client disconnects first.
 * Call `done()` when the response is sent.
 */
export function requestSignal(res: Response, timeoutMs: number): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new RequestTimeoutError(timeoutMs)), timeoutMs);
  const onClose = (): void => {
    if (!res.writableEnded) controller.abort(new ClientClosedError());
  };
  res.once('close', onClose);
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      res.off('close', onClose);
    },
  };
}

/** `52428800` -> `"50.0 MB"` (10^6 bytes). */
export function formatMb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
