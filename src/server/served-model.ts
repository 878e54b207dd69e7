/**
 * One served model: its card (classes, preprocessing, tensor names), its session in a worker
 * thread, and the dynamic batcher in front of it.
 */
import os from 'node:os';
import { openSetVerdicts, type OpenSetResult } from '../inference/classifier.js';
import type { ExecutionProvider, ProviderRequest } from '../inference/session.js';
import type { ModelCard } from '../model/card.js';
import { readModelCard } from '../model/read-card.js';
import { decodeImage, ImageDecodeError } from '../preprocess/decode.js';
import { imageBytes } from '../preprocess/spec.js';
import { DynamicBatcher, type BatcherOptions, type BatchExecution, type StageTiming } from './batcher.js';
import { createLimiter } from './limiter.js';
import { ModelRunner } from './model-runner.js';
import type { ModelSpec } from './options.js';

/**
 * Largest image (width x height) the server decodes: 268 megapixels, sharp's own default. Lower than
 * the archive CLI's 1 gigapixel because an upload of a few KB of PNG can declare a gigapixel image and
 * each concurrent decode of one costs gigabytes; archives of museum scans go through `artist-id classify`.
 */
export const SERVER_LIMIT_INPUT_PIXELS = 268_402_689;

/** The three graph outputs of an artist-id model, by role (graph names are in `card.outputs`). */
export const OUTPUT_ROLES = ['probabilities', 'logits', 'features'] as const;
export type OutputRole = (typeof OUTPUT_ROLES)[number];

/**
 * Outputs for one image: `probabilities` and `logits` `[C]`, `features` `[D]`, float32; and, for a
 * model whose card has `openSet`, its open-set verdict (score and `unknown`).
 */
export type ImageOutputs = Record<OutputRole, Float32Array> & { openSet?: OpenSetResult };

/** Encoded image bytes and how to name them in an error (`file "a.jpg"`, `image_bytes[2]`). */
export interface LabeledImage {
  bytes: Uint8Array;
  label: string;
}

/** Outputs of a request (input order) and where its time went, in ms. */
export interface InferResult {
  outputs: ImageOutputs[];
  queueMs: number;
  /** Decoding (if any) plus batch assembly. */
  inputMs: number;
  inferMs: number;
  outputMs: number;
}

/**
 * Concurrent image decodes in the process, all models together: one per core. sharp decodes on
 * libuv's thread pool, so this bounds threads competing with the event loop and inference, and the
 * decoded images held at once, not the HTTP requests accepted.
 */
const decodeLimit = createLimiter(Math.max(1, os.availableParallelism()));

/** How sessions are created: see `createSession`. */
export interface SessionSettings {
  provider: ProviderRequest;
  strictProvider: boolean;
  intraOpThreads?: number;
}

export class ServedModel {
  /** Model version in URLs and metrics (artist-id serves one version per name). */
  readonly version = '1';
  readonly batcher: DynamicBatcher<Uint8Array, ImageOutputs>;
  private closing = false;

  private constructor(
    /** Name in URLs. */
    readonly name: string,
    /** Path of the `.onnx` file. */
    readonly path: string,
    readonly card: ModelCard,
    private readonly runner: ModelRunner,
    batching: BatcherOptions,
  ) {
    this.batcher = new DynamicBatcher((images) => this.execute(images), batching);
  }

  /**
   * Reads the model's card and starts its session in a worker thread.
   *
   * @param onWarning - receives warnings (provider fallback).
   * @throws Error when the file is not an artist-id model, fails to load, or CUDA is required and unusable.
   */
  static async load(spec: ModelSpec, session: SessionSettings, batching: BatcherOptions, onWarning?: (message: string) => void): Promise<ServedModel> {
    const card = await readModelCard(spec.path);
    const runner = await ModelRunner.start({ modelPath: spec.path, ...session }, onWarning);
    return new ServedModel(spec.name, spec.path, card, runner, batching);
  }

  /** Execution provider actually running the session. */
  get provider(): ExecutionProvider {
    return this.runner.provider;
  }

  /** Why the provider is not the requested one, if it is not. */
  get fallbackReason(): string | undefined {
    return this.runner.fallbackReason;
  }

  /** True while the session is alive and the server is not shutting down. */
  get ready(): boolean {
    return this.runner.alive && !this.closing;
  }

  /** Requests queued or running (metrics). */
  pendingRequests = (): number => this.batcher.pendingRequests;

  /** Bytes of one decoded image (`[H,W,3] uint8`). */
  get imageBytes(): number {
    return imageBytes(this.card.preprocessing);
  }

  /**
   * Like {@link classify}, but an image that cannot be decoded gets its error instead of failing the others
   * (a multipart upload of many files loses none of the good ones to one bad file).
   *
   * @returns `outputs[i]` for each decodable image, `errors[i]` (the decode error naming image i) for the others,
   *   with the timings of the images that ran.
   * @throws ImageDecodeError of the first image when no image can be decoded; the errors of {@link infer}.
   */
  async classifyEach(images: LabeledImage[], signal?: AbortSignal): Promise<Omit<InferResult, 'outputs'> & { outputs: (ImageOutputs | undefined)[]; errors: (string | undefined)[] }> {
    const { decoded, decodeMs } = await this.decodeEach(images);
    const good = decoded.flatMap((d, i) => (d instanceof ImageDecodeError ? [] : [i]));
    if (good.length === 0) throw decoded[0] as ImageDecodeError;
    signal?.throwIfAborted();
    const result = await this.infer(good.map((i) => decoded[i] as Uint8Array), signal);
    const outputs: (ImageOutputs | undefined)[] = images.map(() => undefined);
    good.forEach((i, j) => (outputs[i] = result.outputs[j]));
    return { ...result, inputMs: result.inputMs + decodeMs, outputs, errors: decoded.map((d) => (d instanceof ImageDecodeError ? d.message : undefined)) };
  }

  /**
   * Decodes encoded images with the model card's preprocessing (sharp, on libuv's thread pool, not
   * the event loop; at most one decode per core in the process), then runs them.
   *
   * @throws ImageDecodeError naming the image (`label`) when one cannot be decoded; the errors of
   *   {@link infer}.
   */
  async classify(images: LabeledImage[], signal?: AbortSignal): Promise<InferResult> {
    const { decoded, decodeMs } = await this.decodeEach(images);
    const failed = decoded.find((d) => d instanceof ImageDecodeError);
    if (failed) throw failed;
    signal?.throwIfAborted();
    const result = await this.infer(decoded as Uint8Array[], signal);
    return { ...result, inputMs: result.inputMs + decodeMs };
  }

  /** Decodes every image (after a queue-capacity check), an undecodable one giving its ImageDecodeError naming it. */
  private async decodeEach(images: LabeledImage[]): Promise<{ decoded: (Uint8Array | ImageDecodeError)[]; decodeMs: number }> {
    this.batcher.checkCapacity(images.length);
    const start = performance.now();
    const decoded = await Promise.all(
      images.map(({ bytes, label }) =>
        decodeLimit(() => decodeImage(bytes, this.card.preprocessing, { limitInputPixels: SERVER_LIMIT_INPUT_PIXELS })).catch((err: unknown) => {
          if (err instanceof ImageDecodeError) return new ImageDecodeError(`${label}: ${err.message}`);
          throw err;
        }),
      ),
    );
    return { decoded, decodeMs: performance.now() - start };
  }

  /**
   * Queues decoded images for the dynamic batcher and waits for their outputs.
   *
   * @param pixels - images `[H,W,3] uint8` as `decodeImage` returns them for `card.preprocessing`.
   * @throws Error for a wrong byte length; the batcher's errors (queue full, closed, `signal.reason`);
   *   an onnxruntime failure.
   */
  async infer(pixels: Uint8Array[], signal?: AbortSignal): Promise<InferResult> {
    const size = this.imageBytes;
    pixels.forEach((p, i) => {
      if (p.length !== size) throw new Error(`Expected ${size} bytes per image for pixels[${i}] but received ${p.length}`);
    });
    const { outputs, queueMs, timing } = await this.batcher.submit(pixels, signal);
    return { outputs, queueMs, ...timing };
  }

  /** Marks the model not ready: shutdown has started (queued requests still finish). */
  markClosing(): void {
    this.closing = true;
  }

  /** Stops the batcher and the worker. */
  async close(): Promise<void> {
    this.closing = true;
    this.batcher.close();
    await this.runner.close();
  }

  /** One batch: assemble `[N,H,W,3]`, run in the worker, split outputs per image. */
  private async execute(images: Uint8Array[]): Promise<BatchExecution<ImageOutputs>> {
    const t0 = performance.now();
    const { width, height } = this.card.preprocessing;
    const size = this.imageBytes;
    const batch = new Uint8Array(images.length * size);
    images.forEach((img, i) => batch.set(img, i * size));
    const names = OUTPUT_ROLES.map((role) => this.card.outputs[role]);
    // A score computed in the graph (Mahalanobis, kNN) is one more graph output.
    const scoreOutput = this.card.openSet?.output;
    const t1 = performance.now();
    const { outputs } = await this.runner.run(this.card.input, scoreOutput && !names.includes(scoreOutput) ? [...names, scoreOutput] : names, batch, [images.length, height, width, 3]);
    const t2 = performance.now();
    const perImage = images.map(() => ({}) as ImageOutputs);
    OUTPUT_ROLES.forEach((role, r) => {
      const data = outputs[names[r]].data;
      const width = data.length / images.length;
      perImage.forEach((o, i) => (o[role] = data.slice(i * width, (i + 1) * width)));
    });
    const verdicts = openSetVerdicts(this.card, images.length, Object.fromEntries(Object.entries(outputs).map(([name, t]) => [name, t.data])));
    verdicts?.forEach((v, i) => (perImage[i].openSet = v));
    const timing: StageTiming = { inputMs: t1 - t0, inferMs: t2 - t1, outputMs: performance.now() - t2 };
    return { outputs: perImage, timing };
  }
}
