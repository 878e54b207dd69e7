/**
 * Prometheus metrics (prom-client), named and meant as Triton's inference request metrics
 * (https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/user_guide/metrics.html):
 *
 * - `nv_inference_request_success` / `nv_inference_request_failure{reason}`: requests (a request
 *   of 8 images counts 1); reasons INVALID (4xx bad input), REJECTED (queue full, too large,
 *   shutting down), TIMEOUT, CANCELED (client gone), BACKEND (inference failed).
 * - `nv_inference_count`: images inferred; `nv_inference_exec_count`: batch executions. Average
 *   batch size = `nv_inference_count / nv_inference_exec_count`.
 * - `nv_inference_request_duration_us`, `nv_inference_queue_duration_us`,
 *   `nv_inference_compute_input_duration_us`, `nv_inference_compute_infer_duration_us`,
 *   `nv_inference_compute_output_duration_us`: cumulative µs over successful requests (a batch's
 *   compute time is added to each request in it, as Triton does). Here "compute input" is image
 *   decoding plus batch-tensor assembly.
 * - `nv_inference_pending_request_count`: requests queued or running, now.
 *
 * artist-id additions: `artist_id_model_info{execution_provider}` (1 per model),
 * `artist_id_batch_size` (histogram of images per execution), `artist_id_request_duration_seconds`
 * (histogram, for p50/p99) and prom-client's default process metrics (`process_resident_memory_bytes`,
 * `nodejs_heap_size_used_bytes`, `nodejs_eventloop_lag_seconds`, ...).
 * Labels: `model` (the served name) and `version` ("1").
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FailureReason } from './http-error.js';

/** What the metrics read from each served model when scraped. */
export interface MetricsSource {
  name: string;
  version: string;
  provider: string;
  pendingRequests: () => number;
}

/** Durations of one successful request, in ms. */
export interface RequestDurations {
  requestMs: number;
  queueMs: number;
  /** Decoding plus the request's share of batch assembly. */
  inputMs: number;
  inferMs: number;
  outputMs: number;
}

/** The server's metrics registry and the recording functions the routes call. */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly success: Counter<'model' | 'version'>;
  private readonly failure: Counter<'model' | 'version' | 'reason'>;
  private readonly inferenceCount: Counter<'model' | 'version'>;
  private readonly execCount: Counter<'model' | 'version'>;
  private readonly durations: Record<keyof RequestDurations, Counter<'model' | 'version'>>;
  private readonly batchSize: Histogram<'model' | 'version'>;
  private readonly requestSeconds: Histogram<'model' | 'version'>;

  constructor(models: () => MetricsSource[]) {
    const registers = [this.registry];
    const labelNames = ['model', 'version'] as const;
    this.success = new Counter({ name: 'nv_inference_request_success', help: 'Number of successful inference requests, all batch sizes', labelNames, registers });
    this.failure = new Counter({ name: 'nv_inference_request_failure', help: 'Number of failed inference requests, all batch sizes', labelNames: [...labelNames, 'reason'], registers });
    this.inferenceCount = new Counter({ name: 'nv_inference_count', help: 'Number of inferences performed (a request of n images counts n)', labelNames, registers });
    this.execCount = new Counter({ name: 'nv_inference_exec_count', help: 'Number of model executions (batches) performed', labelNames, registers });
    const us = (name: string, help: string) => new Counter({ name, help, labelNames, registers });
    this.durations = {
      requestMs: us('nv_inference_request_duration_us', 'Cumulative inference request duration in microseconds'),
      queueMs: us('nv_inference_queue_duration_us', 'Cumulative inference queuing duration in microseconds'),
      inputMs: us('nv_inference_compute_input_duration_us', 'Cumulative compute input duration in microseconds (image decoding and batch assembly)'),
      inferMs: us('nv_inference_compute_infer_duration_us', 'Cumulative compute inference duration in microseconds'),
      outputMs: us('nv_inference_compute_output_duration_us', 'Cumulative inference compute output duration in microseconds'),
    };
    new Gauge({
      name: 'nv_inference_pending_request_count',
      help: 'Instantaneous number of pending requests awaiting execution per-model',
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const m of models()) this.set({ model: m.name, version: m.version }, m.pendingRequests());
      },
    });
    new Gauge({
      name: 'artist_id_model_info',
      help: 'Served models and the execution provider running each (value 1)',
      labelNames: [...labelNames, 'execution_provider'],
      registers,
      collect() {
        this.reset();
        for (const m of models()) this.set({ model: m.name, version: m.version, execution_provider: m.provider }, 1);
      },
    });
    this.batchSize = new Histogram({ name: 'artist_id_batch_size', help: 'Images per model execution', labelNames, buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers });
    this.requestSeconds = new Histogram({
      name: 'artist_id_request_duration_seconds',
      help: 'Successful inference request duration in seconds, arrival to response',
      labelNames,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** Records one batch execution of `size` images. */
  recordExecution(model: MetricsSource, size: number): void {
    const labels = { model: model.name, version: model.version };
    this.execCount.inc(labels);
    this.inferenceCount.inc(labels, size);
    this.batchSize.observe(labels, size);
  }

  /** Records a successful request and where its time went. */
  recordSuccess(model: MetricsSource, d: RequestDurations): void {
    const labels = { model: model.name, version: model.version };
    this.success.inc(labels);
    for (const key of Object.keys(this.durations) as (keyof RequestDurations)[]) this.durations[key].inc(labels, Math.round(d[key] * 1000));
    this.requestSeconds.observe(labels, d.requestMs / 1000);
  }

  /** Records a failed request. */
  recordFailure(model: MetricsSource, reason: FailureReason): void {
    this.failure.inc({ model: model.name, version: model.version, reason });
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }
}
