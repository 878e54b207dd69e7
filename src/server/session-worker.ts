/**
 * Worker-thread side of {@link ModelRunner}: owns one onnxruntime-node session and runs one batch
 * at a time.
 *
 * Why a worker: measured on onnxruntime-node 1.30 (CPU provider), `session.run` holds the calling
 * thread for the whole inference (a batch of 32 at 224x224 blocked the event loop ~270 ms), so on
 * the main thread health checks would wait for every batch. Here the main thread stays free.
 *
 * Protocol (structured-clone messages): `workerData` = {@link WorkerInit}; the worker posts one
 * {@link WorkerReady} or {@link WorkerFailed}, then answers each {@link RunMessage} with a
 * {@link RunResult}, and releases the session on {@link CloseMessage}.
 */
import { readFile } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { createSession, type ExecutionProvider, type ProviderRequest } from '../inference/session.js';

export interface WorkerInit {
  modelPath: string;
  provider: ProviderRequest;
  strictProvider: boolean;
  intraOpThreads?: number;
}
export interface WorkerReady {
  type: 'ready';
  provider: ExecutionProvider;
  fallbackReason?: string;
  createMs: number;
}
export interface WorkerFailed {
  type: 'failed';
  message: string;
}
export interface WorkerWarning {
  type: 'warning';
  message: string;
}
/** One batch: `pixels` is `[n, height, width, 3] uint8` NHWC; its buffer is transferred. */
export interface RunMessage {
  type: 'run';
  id: number;
  input: string;
  outputs: string[];
  pixels: Uint8Array;
  dims: [number, number, number, number];
}
/** Output tensors by name (`data` row-major, `dims` its shape), and the wall time of `session.run` in ms. */
export interface RunResult {
  type: 'result';
  id: number;
  outputs?: Record<string, { data: Float32Array; dims: number[] }>;
  inferMs?: number;
  error?: string;
}
export interface CloseMessage {
  type: 'close';
}
export type FromWorker = WorkerReady | WorkerFailed | WorkerWarning | RunResult;

const port = parentPort;
if (!port) throw new Error('session-worker.ts runs in a worker thread (see ModelRunner)');
const init = workerData as WorkerInit;

try {
  const bytes = await readFile(init.modelPath);
  const created = await createSession(bytes, {
    provider: init.provider,
    strictProvider: init.strictProvider,
    intraOpThreads: init.intraOpThreads,
    onWarning: (message) => port.postMessage({ type: 'warning', message } satisfies WorkerWarning),
  });
  const session = created.session;
  port.on('message', async (msg: RunMessage | CloseMessage) => {
    if (msg.type === 'close') {
      await session.release().catch(() => undefined);
      port.close();
      return;
    }
    try {
      const input = new ort.Tensor('uint8', msg.pixels, msg.dims);
      const start = performance.now();
      const out = await session.run({ [msg.input]: input }, msg.outputs);
      const inferMs = performance.now() - start;
      const outputs: NonNullable<RunResult['outputs']> = {};
      for (const name of msg.outputs) outputs[name] = { data: out[name].data as Float32Array, dims: [...out[name].dims] };
      port.postMessage({ type: 'result', id: msg.id, outputs, inferMs } satisfies RunResult);
    } catch (err) {
      port.postMessage({ type: 'result', id: msg.id, error: (err as Error)?.message ?? String(err) } satisfies RunResult);
    }
  });
  port.postMessage({ type: 'ready', provider: created.provider, fallbackReason: created.fallbackReason, createMs: created.createMs } satisfies WorkerReady);
} catch (err) {
  port.postMessage({ type: 'failed', message: (err as Error)?.message ?? String(err) } satisfies WorkerFailed);
}
