/**
 * Dynamic batching: images of concurrent requests are queued and run together.
 *
 * Method (the behaviour of Triton's dynamic batcher, see
 * https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/user_guide/model_configuration.html#dynamic-batcher):
 * a batch runs as soon as `maxBatchSize` images are queued, or when the oldest queued image has
 * waited `maxQueueDelayMs`, whichever comes first; batches run one at a time (one session), and the
 * next batch forms while one runs. The queue is bounded (`maxQueueSize` images): a request that does
 * not fit is rejected at once ({@link QueueFullError}, HTTP 429) instead of waiting without limit.
 *
 * Unlike Triton, a request of more than `maxBatchSize` images is split over several batches (its
 * images keep their order in the queue), so multipart uploads of many files work with any batch size.
 */

/** Time spent by one batch in each stage, in ms (Triton's compute input / infer / output). */
export interface StageTiming {
  /** Assembling the batch tensor. */
  inputMs: number;
  /** `session.run`. */
  inferMs: number;
  /** Splitting the outputs per image. */
  outputMs: number;
}

/** What the execute function returns for a batch: one output per input, in input order. */
export interface BatchExecution<O> {
  outputs: O[];
  timing: StageTiming;
}

/** A request's outputs (input order) and where its time went, in ms. */
export interface SubmitResult<O> {
  outputs: O[];
  /** From submission to the start of the request's first batch. */
  queueMs: number;
  /** Sum over the batches that carried the request's images. */
  timing: StageTiming;
}

/** Limits of a {@link DynamicBatcher}; see the module comment. */
export interface BatcherOptions {
  maxBatchSize: number;
  maxQueueDelayMs: number;
  maxQueueSize: number;
}

/** The queue cannot take the request now; try again after `retryAfterSeconds`. */
export class QueueFullError extends Error {
  constructor(message: string, readonly retryAfterSeconds: number) {
    super(message);
    this.name = 'QueueFullError';
  }
}

/** The request has more images than the queue can ever hold: retrying cannot help. */
export class RequestTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequestTooLargeError';
  }
}

/** The batcher is closed (server shut down). */
export class BatcherClosedError extends Error {
  constructor(message = 'the server is shutting down and takes no new requests') {
    super(message);
    this.name = 'BatcherClosedError';
  }
}

interface Request<I, O> {
  outputs: (O | undefined)[];
  remaining: number;
  submittedAt: number;
  startedAt?: number;
  timing: StageTiming;
  settled: boolean;
  resolve: (r: SubmitResult<O>) => void;
  reject: (e: unknown) => void;
  cleanup: () => void;
  inputs: I[];
}

interface Entry<I, O> {
  request: Request<I, O>;
  index: number;
  queuedAt: number;
}

/**
 * A queue of images in front of one execute function (one session).
 *
 * @typeParam I - one input (a decoded image); O - its output.
 * @example
 * const batcher = new DynamicBatcher(async (images) => runModel(images), { maxBatchSize: 16, maxQueueDelayMs: 5, maxQueueSize: 256 });
 * const { outputs } = await batcher.submit([pixels]);
 */
export class DynamicBatcher<I, O> {
  private queue: Entry<I, O>[] = [];
  private readonly requests = new Set<Request<I, O>>();
  private running = false;
  private paused = false;
  private flushing = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];
  /** Moving average of batch wall time in ms, for Retry-After. */
  private batchMs = 100;

  /** Called after each execution with its size (images) and timing: the metrics hook. */
  onExecution?: (size: number, timing: StageTiming) => void;

  constructor(
    private readonly execute: (inputs: I[]) => Promise<BatchExecution<O>>,
    readonly options: BatcherOptions,
  ) {}

  /** Images waiting for a batch. */
  get queuedImages(): number {
    return this.queue.length;
  }

  /** Requests submitted and not yet answered (queued or running): Triton's pending request count. */
  get pendingRequests(): number {
    return this.requests.size;
  }

  /**
   * Throws if a request of `images` images would be refused now; lets callers refuse before
   * spending time on decoding.
   *
   * @throws BatcherClosedError, RequestTooLargeError, QueueFullError.
   */
  checkCapacity(images: number): void {
    if (this.closed) throw new BatcherClosedError();
    if (images > this.options.maxQueueSize) {
      throw new RequestTooLargeError(`Expected at most ${this.options.maxQueueSize} images per request (--max-queue-size) but received ${images}`);
    }
    if (this.queue.length + images > this.options.maxQueueSize) {
      const retry = Math.max(1, Math.ceil(((this.queue.length / this.options.maxBatchSize + 1) * this.batchMs) / 1000));
      throw new QueueFullError(`The queue is full (${this.queue.length} of ${this.options.maxQueueSize} images waiting, this request has ${images}); retry after ${retry} s`, retry);
    }
  }

  /**
   * Queues a request's images and resolves when all of them have run.
   *
   * @param inputs - one or more inputs.
   * @param signal - aborting it (timeout, client gone) removes the images still queued and rejects
   *   with `signal.reason`; images already running finish and are dropped.
   * @throws (rejects with) the errors of {@link checkCapacity}, `signal.reason`, or the error of
   *   the execute function for a batch holding the request's images.
   */
  submit(inputs: I[], signal?: AbortSignal): Promise<SubmitResult<O>> {
    if (inputs.length === 0) return Promise.reject(new Error('Expected at least one input for inputs but received an empty array'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    try {
      this.checkCapacity(inputs.length);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<SubmitResult<O>>((resolve, reject) => {
      const now = performance.now();
      const request: Request<I, O> = {
        inputs,
        outputs: new Array(inputs.length),
        remaining: inputs.length,
        submittedAt: now,
        timing: { inputMs: 0, inferMs: 0, outputMs: 0 },
        settled: false,
        resolve,
        reject,
        cleanup: () => undefined,
      };
      if (signal) {
        const onAbort = (): void => this.fail(request, signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        request.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.requests.add(request);
      for (let index = 0; index < inputs.length; index++) this.queue.push({ request, index, queuedAt: now });
      this.schedule();
    });
  }

  /**
   * Test hook: stops starting batches (a running batch finishes); images keep queueing. Lets tests
   * fill the queue or expire a timeout deterministically, without relying on timing.
   */
  pause(): void {
    this.paused = true;
    this.clearTimer();
  }

  /** Test hook: undoes {@link pause}. */
  resume(): void {
    this.paused = false;
    this.schedule();
  }

  /**
   * Graceful stop: from now on queued images run without waiting for `maxQueueDelayMs`; resolves
   * when no request is pending. Requests may still be submitted (those accepted before shutdown are
   * finishing their decoding); call {@link close} afterwards.
   */
  async drain(): Promise<void> {
    this.flushing = true;
    this.schedule();
    if (this.requests.size === 0 && !this.running) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Refuses further submissions ({@link BatcherClosedError}) and fails any still queued. */
  close(): void {
    this.closed = true;
    this.clearTimer();
    for (const request of [...this.requests]) this.fail(request, new BatcherClosedError());
  }

  private schedule(): void {
    if (this.running || this.paused || this.queue.length === 0) {
      this.notifyIdle();
      return;
    }
    const { maxBatchSize, maxQueueDelayMs } = this.options;
    const waitMs = this.queue[0].queuedAt + maxQueueDelayMs - performance.now();
    if (this.queue.length < maxBatchSize && !this.flushing && waitMs > 0) {
      if (!this.timer) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.schedule();
        }, Math.ceil(waitMs));
      }
      return;
    }
    this.clearTimer();
    const batch = this.queue.splice(0, maxBatchSize);
    void this.runBatch(batch);
  }

  private async runBatch(batch: Entry<I, O>[]): Promise<void> {
    this.running = true;
    const start = performance.now();
    for (const e of batch) e.request.startedAt ??= start;
    try {
      const { outputs, timing } = await this.execute(batch.map((e) => e.request.inputs[e.index]));
      if (outputs.length !== batch.length) throw new Error(`Expected ${batch.length} outputs from the model but received ${outputs.length}`);
      this.onExecution?.(batch.length, timing);
      const touched = new Set<Request<I, O>>();
      batch.forEach((e, i) => {
        if (e.request.settled) return;
        e.request.outputs[e.index] = outputs[i];
        e.request.remaining--;
        touched.add(e.request);
      });
      for (const request of touched) {
        request.timing.inputMs += timing.inputMs;
        request.timing.inferMs += timing.inferMs;
        request.timing.outputMs += timing.outputMs;
        if (request.remaining === 0) this.succeed(request);
      }
    } catch (err) {
      for (const e of batch) this.fail(e.request, err);
    } finally {
      this.batchMs = 0.8 * this.batchMs + 0.2 * (performance.now() - start);
      this.running = false;
      this.schedule();
    }
  }

  private succeed(request: Request<I, O>): void {
    if (request.settled) return;
    request.settled = true;
    request.cleanup();
    this.requests.delete(request);
    request.resolve({ outputs: request.outputs as O[], queueMs: (request.startedAt ?? performance.now()) - request.submittedAt, timing: request.timing });
  }

  private fail(request: Request<I, O>, error: unknown): void {
    if (request.settled) return;
    request.settled = true;
    request.cleanup();
    this.requests.delete(request);
    this.queue = this.queue.filter((e) => e.request !== request);
    request.reject(error);
    this.schedule();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private notifyIdle(): void {
    if (this.running || this.requests.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
