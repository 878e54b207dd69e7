/**
 * Starts and stops the HTTP service: loads the models (one session per model, in a worker thread),
 * listens, and shuts down gracefully.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { createApp } from './app.js';
import type { ServerContext } from './context.js';
import { ServerMetrics } from './metrics.js';
import { resolveServeOptions, type ServeOptions } from './options.js';
import { ServedModel } from './served-model.js';

/** A listening server. */
export interface RunningServer {
  /** `http://host:port`. */
  url: string;
  /** The port actually bound (useful with `port: 0`). */
  port: number;
  /** Served models by name (tests use `models.get(name).batcher.pause()`). */
  models: Map<string, ServedModel>;
  metrics: ServerMetrics;
  /**
   * Graceful shutdown: stops accepting connections, answers 503 to new requests on open ones,
   * reports not ready, runs every queued image without waiting for the batch delay, waits for every
   * request in flight to be answered, then closes the connections and the sessions. Idempotent.
   * Bounded: after `requestTimeoutMs` + 5 s, remaining connections are cut.
   */
  close(): Promise<void>;
}

/**
 * Loads the models and starts listening.
 *
 * @param options - see {@link ServeOptions}; defaults from `SERVE_DEFAULTS`.
 * @param log - pino logger (default: JSON lines on stdout, level `info`).
 * @throws Error for bad options, a model that fails to load, CUDA required (`strictProvider`) but
 *   unusable, or a port that cannot be bound; sessions already started are released first.
 * @example
 * const server = await startServer({ models: ['default'], port: 0 });
 * const res = await fetch(`${server.url}/v1/models/default:classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: jpegBytes });
 * await server.close();
 */
export async function startServer(options: Partial<ServeOptions> = {}, log: Logger = pino()): Promise<RunningServer> {
  const settings = resolveServeOptions(options);
  const models = new Map<string, ServedModel>();
  const state = { draining: false };
  const metrics = new ServerMetrics(() => [...models.values()]);
  try {
    for (const spec of settings.modelSpecs) {
      const model = await ServedModel.load(
        spec,
        { provider: settings.provider, strictProvider: settings.strictProvider, intraOpThreads: settings.intraOpThreads },
        { maxBatchSize: settings.maxBatchSize, maxQueueDelayMs: settings.maxQueueDelayMs, maxQueueSize: settings.maxQueueSize },
        (message) => log.warn({ model: spec.name }, message),
      );
      model.batcher.onExecution = (size) => metrics.recordExecution(model, size);
      models.set(spec.name, model);
      const fallback = model.fallbackReason ? ` (${model.fallbackReason})` : '';
      log[model.fallbackReason ? 'warn' : 'info'](
        { model: spec.name, path: spec.path, classes: model.card.classes.length, execution_provider: model.provider },
        `model ${spec.name}: ${model.card.classes.length} artists, execution provider ${model.provider}${fallback}`,
      );
    }
  } catch (err) {
    await Promise.all([...models.values()].map((m) => m.close()));
    throw err;
  }

  const ctx: ServerContext = { models, options: settings, metrics, log, state };
  const http = createServer(createApp(ctx));
  let active = 0;
  let idle: (() => void) | undefined;
  http.on('request', (_req, res) => {
    active++;
    res.once('close', () => {
      active--;
      if (active === 0) idle?.();
    });
  });
  try {
    await listen(http, settings.host, settings.port);
  } catch (err) {
    await Promise.all([...models.values()].map((m) => m.close()));
    throw new Error(`Could not listen on ${settings.host}:${settings.port}: ${(err as Error).message}`);
  }
  const port = (http.address() as AddressInfo).port;
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
  const url = `http://${host}:${port}`;
  log.info({ url, max_batch_size: settings.maxBatchSize, max_queue_delay_ms: settings.maxQueueDelayMs, max_queue_size: settings.maxQueueSize }, `listening on ${url}`);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      state.draining = true;
      for (const m of models.values()) m.markClosing();
      const pending = [...models.values()].reduce((n, m) => n + m.batcher.pendingRequests, 0);
      log.info({ active_requests: active, pending_inference_requests: pending }, 'shutting down: not accepting new requests, finishing those in flight');
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeIdleConnections();
      const force = setTimeout(() => http.closeAllConnections(), settings.requestTimeoutMs + 5000);
      const drained = Promise.all([...models.values()].map((m) => m.batcher.drain()));
      if (active > 0) await new Promise<void>((resolve) => (idle = resolve));
      await drained;
      http.closeIdleConnections();
      await closed;
      clearTimeout(force);
      await Promise.all([...models.values()].map((m) => m.close()));
      log.info('shut down');
    })();
    return closing;
  };
  return { url, port, models, metrics, close };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
