/**
 * Main-thread handle on a session that lives in a worker thread (see `session-worker.ts` for why).
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ExecutionProvider } from '../inference/session.js';
import { missingCudaLibraries } from './cuda-check.js';
import type { CloseMessage, FromWorker, RunMessage, WorkerInit } from './session-worker.js';

/** Output tensors of one batch by name, and the wall time of `session.run` in ms. */
export interface RunOutput {
  outputs: Record<string, { data: Float32Array; dims: number[] }>;
  inferMs: number;
}

/**
 * One onnxruntime-node session in a worker thread; {@link run} calls are answered in order, one at a
 * time (the batcher never sends a second batch before the first returns).
 */
export class ModelRunner {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: RunOutput) => void; reject: (e: Error) => void }>();
  private exited: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    /** Execution provider actually running the session. */
    readonly provider: ExecutionProvider,
    /** Why the provider is not the one requested, if it is not. */
    readonly fallbackReason: string | undefined,
    /** Session creation time in ms. */
    readonly createMs: number,
  ) {
    worker.on('message', (msg: FromWorker) => {
      if (msg.type !== 'result') return;
      const w = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      if (!w) return;
      if (msg.error !== undefined || !msg.outputs) w.reject(new Error(`onnxruntime failed to run the batch: ${msg.error}`));
      else w.resolve({ outputs: msg.outputs, inferMs: msg.inferMs ?? 0 });
    });
    const fail = (err: Error): void => {
      this.exited ??= err;
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    };
    worker.on('error', (err) => fail(new Error(`the inference worker crashed: ${err.message}`)));
    worker.on('exit', (code) => fail(new Error(`the inference worker exited (code ${code})`)));
  }

  /**
   * Starts a worker and creates the session in it.
   *
   * Execution provider: as `createSession` (CUDA when requested and loadable, else CPU with the
   * reason). When the worker reports CUDA but the CUDA provider's libraries are missing
   * ({@link missingCudaLibraries}), onnxruntime has silently built the session on CPU: the provider
   * is then reported as `cpu` with the missing libraries as reason, or, with `strictProvider`,
   * start-up fails.
   *
   * @param onWarning - receives human-readable warnings of the worker.
   * @throws Error when the model cannot be loaded, or CUDA is required (`strictProvider`) and unusable.
   */
  static async start(init: WorkerInit, onWarning: (message: string) => void = () => undefined): Promise<ModelRunner> {
    const worker = spawnWorker(init);
    const ready = await new Promise<Extract<FromWorker, { type: 'ready' }>>((resolve, reject) => {
      worker.on('message', (msg: FromWorker) => {
        if (msg.type === 'warning') onWarning(msg.message);
        else if (msg.type === 'ready') resolve(msg);
        else if (msg.type === 'failed') reject(new Error(msg.message));
      });
      worker.once('error', (err) => reject(new Error(`the inference worker for ${init.modelPath} failed to start: ${err.message}`)));
      worker.once('exit', (code) => reject(new Error(`the inference worker for ${init.modelPath} exited during start-up (code ${code})`)));
    }).catch(async (err: Error) => {
      await worker.terminate();
      throw err;
    });
    let { provider, fallbackReason } = ready;
    if (provider === 'cuda') {
      const missing = missingCudaLibraries();
      if (missing && missing.length > 0) {
        const reason = `the CUDA execution provider cannot find ${missing.join(', ')} (onnxruntime would silently run on CPU); install CUDA 12 and cuDNN 9 or add them to LD_LIBRARY_PATH`;
        if (init.strictProvider) {
          await worker.terminate();
          throw new Error(`--strict-provider requires the CUDA execution provider, but ${reason}`);
        }
        provider = 'cpu';
        fallbackReason = reason;
      }
    }
    worker.removeAllListeners('message').removeAllListeners('error').removeAllListeners('exit');
    worker.on('message', (msg: FromWorker) => {
      if (msg.type === 'warning') onWarning(msg.message);
    });
    return new ModelRunner(worker, provider, fallbackReason, ready.createMs);
  }

  /** False once the worker has crashed or exited. */
  get alive(): boolean {
    return this.exited === undefined;
  }

  /**
   * Runs one batch.
   *
   * @param pixels - `[dims[0], dims[1], dims[2], 3] uint8` NHWC; its buffer is transferred to the
   *   worker (unusable here afterwards).
   * @param input - graph input name; `outputs` - graph outputs wanted (`float32` each).
   * @throws Error when onnxruntime fails or the worker is gone.
   */
  run(input: string, outputs: string[], pixels: Uint8Array, dims: [number, number, number, number]): Promise<RunOutput> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise<RunOutput>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'run', id, input, outputs, pixels, dims } satisfies RunMessage, [pixels.buffer as ArrayBuffer]);
    });
  }

  /** Releases the session and stops the worker. */
  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage({ type: 'close' } satisfies CloseMessage);
    const timer = setTimeout(() => void this.worker.terminate(), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Starts `session-worker` from compiled JavaScript directly; from TypeScript sources (tests, `tsx`),
 * through tsx's loader, because Node 20 workers do not inherit the parent's `--import tsx` hooks.
 */
function spawnWorker(init: WorkerInit): Worker {
  const self = fileURLToPath(import.meta.url);
  const ext = extname(self);
  const url = new URL(`./session-worker${ext}`, import.meta.url);
  if (ext === '.js') return new Worker(url, { workerData: init });
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(boot, { eval: true, workerData: init });
}
