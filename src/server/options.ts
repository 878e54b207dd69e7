/**
 * Settings of `artist-id serve`: defaults and checks, shared by the CLI and by code that starts a
 * server in-process (tests, the load script).
 */
import os from 'node:os';
import { basename, dirname } from 'node:path';
import { expectInteger, invalidParameterError } from '../errors.js';
import { resolveModelPath } from '../inference/classifier.js';
import type { ProviderRequest } from '../inference/session.js';

/** Settings of one server. Units are in the names; every number is an integer. */
export interface ServeOptions {
  /**
   * Models to serve, each `NAME=MODEL` or `MODEL` (an `.onnx` file, a folder with `model.onnx`, or a
   * name under `models/`; see `resolveModelPath`). Without `NAME=`, the name in URLs is the folder
   * name (`models/default/model.onnx` -> `default`) or the file name without `.onnx`.
   */
  models: string[];
  /** Interface to listen on; `0.0.0.0` for all (containers). */
  host: string;
  /** TCP port; 0 picks a free one (see `RunningServer.port`). */
  port: number;
  /** Most images run in one `session.run` (one execution); 1 turns dynamic batching off. */
  maxBatchSize: number;
  /** Longest an image waits for its batch to fill before the batch runs anyway, in ms. */
  maxQueueDelayMs: number;
  /** Most images waiting per model; a request that does not fit is answered 429 with Retry-After. */
  maxQueueSize: number;
  /** Longest a request may take, from arrival to response, in ms; then 504. */
  requestTimeoutMs: number;
  /** Largest request body, in MB (10^6 bytes); larger bodies are answered 413. */
  bodyLimitMb: number;
  /** Artists per image returned by `:classify` when the request does not say (`?top_k=`). */
  topK: number;
  /** Execution provider request: `auto` (CUDA when available, else CPU with a warning), `cuda`, `cpu`. */
  provider: ProviderRequest;
  /** Fail at start instead of falling back to CPU when CUDA cannot be used. */
  strictProvider: boolean;
  /**
   * onnxruntime intra-op threads per session; default: logical cores - 1 (at least 1), leaving a
   * core to the event loop, HTTP and decoding. Measured on 2 cores under load: with 2 threads the
   * idle event loop's p99 delay was 67 ms (onnxruntime's spinning threads take both cores), with 1
   * it was 24 ms, and throughput did not drop.
   */
  intraOpThreads?: number;
}

/** Defaults: Triton's HTTP port, batches of up to 16 formed within 5 ms, 256 images queued per model. */
export const SERVE_DEFAULTS: ServeOptions = {
  models: ['default'],
  host: '127.0.0.1',
  port: 8000,
  maxBatchSize: 16,
  maxQueueDelayMs: 5,
  maxQueueSize: 256,
  requestTimeoutMs: 30_000,
  bodyLimitMb: 50,
  topK: 3,
  provider: 'auto',
  strictProvider: false,
};

/** A model to load: the name used in URLs and the resolved `.onnx` path. */
export interface ModelSpec {
  name: string;
  path: string;
}

/** Names usable in URLs: `/v2/models/{name}/infer`, `/v1/models/{name}:classify`. */
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Applies defaults and checks every setting.
 *
 * @throws Error (see `invalidParameterError`) naming the first bad setting, what was expected and
 *   what was received; also for a model that does not exist or two models with the same name.
 */
export function resolveServeOptions(options: Partial<ServeOptions> = {}): ServeOptions & { modelSpecs: ModelSpec[] } {
  const merged = { ...SERVE_DEFAULTS, ...dropUndefined(options) };
  if (!Array.isArray(merged.models) || merged.models.length === 0 || merged.models.some((m) => typeof m !== 'string' || m === '')) {
    throw invalidParameterError('models', 'one or more model names or paths', merged.models);
  }
  if (typeof merged.host !== 'string' || merged.host === '') throw invalidParameterError('host', 'a host name or IP address', merged.host);
  if (!['auto', 'cpu', 'cuda'].includes(merged.provider)) throw invalidParameterError('provider', 'one of auto, cpu, cuda', merged.provider);
  const resolved = {
    ...merged,
    port: expectInteger('port', merged.port, 0, 65535),
    maxBatchSize: expectInteger('maxBatchSize', merged.maxBatchSize, 1, 4096),
    maxQueueDelayMs: expectInteger('maxQueueDelayMs', merged.maxQueueDelayMs, 0, 60_000),
    maxQueueSize: expectInteger('maxQueueSize', merged.maxQueueSize, 1),
    requestTimeoutMs: expectInteger('requestTimeoutMs', merged.requestTimeoutMs, 1),
    bodyLimitMb: expectInteger('bodyLimitMb', merged.bodyLimitMb, 1, 4096),
    topK: expectInteger('topK', merged.topK, 1),
    strictProvider: merged.strictProvider === true,
    intraOpThreads: merged.intraOpThreads === undefined ? Math.max(1, os.availableParallelism() - 1) : expectInteger('intraOpThreads', merged.intraOpThreads, 1),
  };
  const modelSpecs = merged.models.map(parseModelSpec);
  const seen = new Set<string>();
  for (const spec of modelSpecs) {
    if (seen.has(spec.name)) throw invalidParameterError('models', `distinct model names (${spec.name} is given twice; use NAME=MODEL)`, merged.models);
    seen.add(spec.name);
  }
  return { ...resolved, modelSpecs };
}

/**
 * Parses one `--model` value: `NAME=MODEL` or `MODEL`.
 *
 * @throws Error for a name that is not `[A-Za-z0-9][A-Za-z0-9._-]*`, or a model that does not exist.
 */
export function parseModelSpec(value: string): ModelSpec {
  const eq = value.indexOf('=');
  const explicit = eq > 0 ? value.slice(0, eq) : undefined;
  const path = resolveModelPath(eq > 0 ? value.slice(eq + 1) : value);
  const name = explicit ?? (basename(path) === 'model.onnx' ? basename(dirname(path)) : basename(path).replace(/\.onnx$/i, ''));
  if (!MODEL_NAME.test(name)) {
    throw invalidParameterError('model name', 'letters, digits, ".", "_" or "-" (starting with a letter or digit); set one with NAME=MODEL', name);
  }
  return { name, path };
}

function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
