/**
 * Server benchmarks over the Open Inference Protocol (KServe v2 REST): a closed-loop concurrency
 * sweep (N requests always in flight, like perf_analyzer `--concurrency-range`) and an open-loop
 * request-rate sweep with constant or Poisson arrivals (perf_analyzer `--request-rate-range`,
 * `--request-distribution`). Works against artist-id's server and any KServe v2 server
 * (Triton, KServe, MLServer, ...).
 *
 * Protocol: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ ; binary
 * tensor data extension (`Inference-Header-Content-Length`, `binary_data_size`):
 * https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md
 */
import http from 'node:http';
import https from 'node:https';
import { invalidParameterError } from '../errors.js';
import { mergeWindows, isStable, seededRandom, stabilityDefaults, type LatencySummary, type MeasureOptions, type WindowSample } from './stats.js';

/** What is sent as the model input. */
export type ServerInputKind = 'bytes' | 'uint8';
/** How tensors travel: the binary data extension, or plain JSON (BYTES as base64 strings). */
export type ServerEncoding = 'binary' | 'json';

/** A KServe v2 endpoint and how to talk to it. */
export interface ServerTarget {
  /** Base URL, e.g. `http://127.0.0.1:8080` (the `/v2/...` paths are appended). */
  url: string;
  /** Model name in `/v2/models/{name}`. */
  model: string;
  /** Input to send; `auto` picks BYTES when the model metadata has a BYTES input, else UINT8. */
  input?: ServerInputKind | 'auto';
  encoding?: ServerEncoding;
  /** Images per request (the input's first dim); default 1. */
  batch?: number;
  /** Per-request timeout, ms; a timed-out request is an error. Default 30000. */
  timeoutMs?: number;
}

/** Model metadata (`GET /v2/models/{name}`), the parts used here. */
export interface ModelMetadata {
  name: string;
  inputs: { name: string; datatype: string; shape: number[] }[];
  outputs?: { name: string; datatype: string; shape: number[] }[];
  platform?: string;
}

/** A resolved target: input name, kind and encoding chosen. */
export interface ResolvedTarget extends Required<Omit<ServerTarget, 'input'>> {
  input: ServerInputKind;
  inputName: string;
  metadata: ModelMetadata;
}

/** Images to send: encoded file bytes (BYTES) and decoded `[H,W,3] uint8` tensors (UINT8). */
export interface ServerPayloads {
  encoded: Uint8Array[];
  decoded: Uint8Array[];
  /** Decoded image size. */
  width: number;
  height: number;
}

/** One request's outcome. */
interface RequestRecord {
  /** Scheduled (open loop) or actual (closed loop) send time, ms (performance.now()). */
  start: number;
  end: number;
  ok: boolean;
}

/** Figures of one concurrency or rate level. */
export interface ServerResult {
  mode: 'concurrency' | 'rate';
  /** Requests in flight (closed loop). */
  concurrency?: number;
  /** Target requests/s (open loop) and arrival distribution. */
  rate?: number;
  distribution?: 'constant' | 'poisson';
  batch: number;
  input: ServerInputKind;
  encoding: ServerEncoding;
  /** Successful requests/s. */
  requestsPerSecond: number;
  /** Successful images/s (requests/s × batch). */
  imagesPerSecond: number;
  /** Request latency, ms (open loop: from the scheduled send time, so client delays count). */
  latency: LatencySummary | undefined;
  errors: number;
  /** errors / (errors + successes) in the judged windows. */
  errorRate: number;
  /** Open loop: requests sent late by more than 1 ms (the client could not keep the schedule). */
  delayed?: number;
  windows: number;
  stable: boolean;
  /** First few error messages. */
  errorExamples: string[];
}

function agentFor(url: URL, sockets: number): http.Agent {
  const options = { keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets };
  return url.protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
}

interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function request(url: URL, method: string, agent: http.Agent, body: Buffer | undefined, headers: Record<string, string>, timeoutMs: number): Promise<HttpResponse> {
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method, agent, headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no response within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** The JSON part of a v2 response (binary extension responses carry it first). */
function responseJson(res: HttpResponse): Record<string, unknown> {
  const headerLength = Number(res.headers['inference-header-content-length']);
  const text = (Number.isInteger(headerLength) && headerLength > 0 ? res.body.subarray(0, headerLength) : res.body).toString('utf8');
  return JSON.parse(text) as Record<string, unknown>;
}

function checkTarget(target: ServerTarget): URL {
  let url: URL;
  try {
    url = new URL(target.url);
  } catch {
    throw invalidParameterError('url', 'an http:// or https:// URL of a KServe v2 server', target.url);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalidParameterError('url', 'an http:// or https:// URL', target.url);
  if (typeof target.model !== 'string' || target.model === '') throw invalidParameterError('model', 'the model name served at /v2/models/{name}', target.model);
  if (target.input !== undefined && !['auto', 'bytes', 'uint8'].includes(target.input)) throw invalidParameterError('input', 'auto, bytes or uint8', target.input);
  if (target.encoding !== undefined && !['binary', 'json'].includes(target.encoding)) throw invalidParameterError('encoding', 'binary or json', target.encoding);
  return url;
}

function endpoint(base: URL, path: string): URL {
  const u = new URL(base.href);
  u.pathname = `${base.pathname.replace(/\/$/, '')}${path}`;
  return u;
}

/**
 * Checks readiness (`GET /v2/health/ready`), reads the model metadata and picks the input.
 *
 * @throws Error when the server is not ready, the model is unknown, or no input of the wanted kind
 *   exists (naming what the metadata declares).
 */
export async function resolveTarget(target: ServerTarget): Promise<ResolvedTarget> {
  const base = checkTarget(target);
  const timeoutMs = target.timeoutMs ?? 30000;
  const agent = agentFor(base, 1);
  try {
    const ready = await request(endpoint(base, '/v2/health/ready'), 'GET', agent, undefined, {}, timeoutMs);
    if (ready.status !== 200) throw new Error(`Expected HTTP 200 from ${endpoint(base, '/v2/health/ready')} but received ${ready.status}: the server is not ready`);
    const metaRes = await request(endpoint(base, `/v2/models/${encodeURIComponent(target.model)}`), 'GET', agent, undefined, {}, timeoutMs);
    if (metaRes.status !== 200) throw new Error(`Expected model metadata (HTTP 200) for model ${JSON.stringify(target.model)} but received ${metaRes.status}: ${metaRes.body.toString('utf8').slice(0, 200)}`);
    const metadata = responseJson(metaRes) as unknown as ModelMetadata;
    const inputs = Array.isArray(metadata.inputs) ? metadata.inputs : [];
    const want = target.input ?? 'auto';
    const bytesInput = inputs.find((i) => i.datatype === 'BYTES');
    const uint8Input = inputs.find((i) => i.datatype === 'UINT8');
    const chosen = want === 'bytes' ? bytesInput : want === 'uint8' ? uint8Input : bytesInput ?? uint8Input;
    if (!chosen) {
      throw new Error(`Expected a ${want === 'auto' ? 'BYTES or UINT8' : want.toUpperCase()} input in the metadata of model ${JSON.stringify(target.model)} but it declares ${JSON.stringify(inputs.map((i) => `${i.name}:${i.datatype}`))}`);
    }
    return {
      url: target.url,
      model: target.model,
      input: chosen.datatype === 'BYTES' ? 'bytes' : 'uint8',
      inputName: chosen.name,
      encoding: target.encoding ?? 'binary',
      batch: target.batch ?? 1,
      timeoutMs,
      metadata,
    };
  } finally {
    agent.destroy();
  }
}

/**
 * Body and headers of one `POST /v2/models/{name}/infer` request carrying `images`.
 *
 * - BYTES, binary: shape `[N]`, each element a 4-byte little-endian length then the encoded image.
 * - BYTES, json: `data` holds base64 strings and the input has `parameters.content_type: "base64"`.
 * - UINT8: shape `[N,H,W,3]`, raw bytes (binary) or a flat number array (json).
 */
export function buildInferRequest(target: Pick<ResolvedTarget, 'input' | 'inputName' | 'encoding'>, images: readonly Uint8Array[], size: { width: number; height: number }): { body: Buffer; headers: Record<string, string> } {
  const n = images.length;
  const shape = target.input === 'bytes' ? [n] : [n, size.height, size.width, 3];
  const datatype = target.input === 'bytes' ? 'BYTES' : 'UINT8';
  if (target.encoding === 'json') {
    const data = target.input === 'bytes' ? images.map((b) => Buffer.from(b).toString('base64')) : images.flatMap((b) => Array.from(b));
    const parameters = target.input === 'bytes' ? { parameters: { content_type: 'base64' } } : {};
    const body = Buffer.from(JSON.stringify({ inputs: [{ name: target.inputName, shape, datatype, ...parameters, data }] }));
    return { body, headers: { 'content-type': 'application/json' } };
  }
  const parts: Buffer[] = [];
  if (target.input === 'bytes') {
    for (const img of images) {
      const len = Buffer.alloc(4);
      len.writeUInt32LE(img.length);
      parts.push(len, Buffer.from(img.buffer, img.byteOffset, img.byteLength));
    }
  } else {
    for (const img of images) parts.push(Buffer.from(img.buffer, img.byteOffset, img.byteLength));
  }
  const binary = Buffer.concat(parts);
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: target.inputName, shape, datatype, parameters: { binary_data_size: binary.length } }] }));
  return { body: Buffer.concat([header, binary]), headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) } };
}

/** Sends requests to one target, cycling through prebuilt bodies. */
class InferClient {
  private readonly url: URL;
  private readonly agent: http.Agent;
  private readonly bodies: { body: Buffer; headers: Record<string, string> }[];
  private next = 0;
  readonly errorExamples: string[] = [];

  constructor(readonly target: ResolvedTarget, payloads: ServerPayloads, sockets: number) {
    const base = checkTarget(target);
    this.url = endpoint(base, `/v2/models/${encodeURIComponent(target.model)}/infer`);
    this.agent = agentFor(base, sockets);
    const pool = target.input === 'bytes' ? payloads.encoded : payloads.decoded;
    if (pool.length === 0) throw invalidParameterError('payloads', 'at least one image', pool.length);
    const count = Math.min(16, pool.length);
    this.bodies = Array.from({ length: count }, (_, i) =>
      buildInferRequest(target, Array.from({ length: target.batch }, (_, j) => pool[(i * target.batch + j) % pool.length]), payloads),
    );
  }

  /** Sends one request; resolves true on HTTP 200 with an `outputs` array, false otherwise. */
  async infer(): Promise<boolean> {
    const { body, headers } = this.bodies[this.next++ % this.bodies.length];
    try {
      const res = await request(this.url, 'POST', this.agent, body, headers, this.target.timeoutMs);
      if (res.status !== 200) return this.fail(`HTTP ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`);
      const json = responseJson(res);
      if (!Array.isArray(json.outputs) || json.outputs.length === 0) return this.fail('response has no outputs');
      return true;
    } catch (err) {
      return this.fail((err as Error).message);
    }
  }

  private fail(message: string): false {
    if (this.errorExamples.length < 5 && !this.errorExamples.includes(message)) this.errorExamples.push(message);
    return false;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Options of one sweep level. */
export interface ServerWindowOptions extends MeasureOptions {
  /** Window length, ms. */
  windowMs: number;
  /** Warm-up before the first window, ms. */
  warmupMs: number;
  /** Open loop: most requests in flight; arrivals beyond it are sent late (counted as delayed). Default 1024. */
  maxInFlight?: number;
}

/** Slices records into a window: requests that ended in [from, to) (perf_analyzer's rule). */
function windowOf(records: readonly RequestRecord[], from: number, to: number, batch: number): WindowSample {
  const inWindow = records.filter((r) => r.end >= from && r.end < to);
  const ok = inWindow.filter((r) => r.ok);
  return { durationMs: to - from, items: ok.length * batch, latenciesMs: ok.map((r) => r.end - r.start), errors: inWindow.length - ok.length };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/**
 * Measures windows over a running load until stable or `maxTrials`, then stops the load and waits
 * for requests in flight (bounded by the request timeout).
 */
async function measureLoad(records: RequestRecord[], stop: () => Promise<void>, batch: number, options: ServerWindowOptions): Promise<{ windows: WindowSample[]; stable: boolean }> {
  const stability = stabilityDefaults(options);
  const maxTrials = options.maxTrials ?? 10;
  try {
    await sleep(options.warmupMs);
    const windows: WindowSample[] = [];
    let stable = false;
    while (windows.length < maxTrials && !stable) {
      const from = performance.now();
      await sleep(options.windowMs);
      windows.push(windowOf(records, from, performance.now(), batch));
      stable = isStable(windows, stability);
      // Keep memory flat on long runs: drop records that ended before this window.
      const keep = records.filter((r) => r.end >= from || r.end === 0);
      records.length = 0;
      records.push(...keep);
    }
    return { windows, stable };
  } finally {
    await stop();
  }
}

function summarize(base: Omit<ServerResult, 'requestsPerSecond' | 'imagesPerSecond' | 'latency' | 'errors' | 'errorRate' | 'windows' | 'stable'>, windows: WindowSample[], stable: boolean, stabilityWindows: number): ServerResult {
  const judged = windows.slice(-stabilityWindows);
  const errors = judged.reduce((a, w) => a + (w.errors ?? 0), 0);
  const hasSamples = judged.some((w) => w.latenciesMs.length > 0);
  const merged = hasSamples ? mergeWindows(judged) : undefined;
  const ok = judged.reduce((a, w) => a + w.latenciesMs.length, 0);
  const durationMs = judged.reduce((a, w) => a + w.durationMs, 0);
  const requestsPerSecond = durationMs > 0 ? (ok * 1000) / durationMs : 0;
  return {
    ...base,
    requestsPerSecond,
    imagesPerSecond: requestsPerSecond * base.batch,
    latency: merged?.latency,
    errors,
    errorRate: ok + errors > 0 ? errors / (ok + errors) : 0,
    windows: windows.length,
    stable,
  };
}

/**
 * Closed loop: `concurrency` workers, each sending its next request as soon as the previous one
 * answers (perf_analyzer's concurrency mode).
 */
export async function closedLoop(target: ResolvedTarget, payloads: ServerPayloads, concurrency: number, options: ServerWindowOptions): Promise<ServerResult> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw invalidParameterError('concurrency', 'positive integer', concurrency);
  const client = new InferClient(target, payloads, concurrency);
  const records: RequestRecord[] = [];
  let running = true;
  const worker = async () => {
    while (running) {
      const start = performance.now();
      const ok = await client.infer();
      records.push({ start, end: performance.now(), ok });
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  try {
    const { windows, stable } = await measureLoad(records, async () => {
      running = false;
      await Promise.all(workers);
    }, target.batch, options);
    return summarize({ mode: 'concurrency', concurrency, batch: target.batch, input: target.input, encoding: target.encoding, errorExamples: client.errorExamples }, windows, stable, stabilityDefaults(options).windowCount);
  } finally {
    client.close();
  }
}

/**
 * Open loop: requests sent on a schedule of `rate` requests/s regardless of answers (constant
 * spacing or Poisson arrivals, seeded). Latency counts from the scheduled time, so a client or
 * server that falls behind shows it (no coordinated omission).
 */
export async function openLoop(target: ResolvedTarget, payloads: ServerPayloads, rate: number, distribution: 'constant' | 'poisson', options: ServerWindowOptions, seed = 1): Promise<ServerResult> {
  if (typeof rate !== 'number' || !Number.isFinite(rate) || rate <= 0) throw invalidParameterError('rate', 'requests/s greater than 0', rate);
  const maxInFlight = options.maxInFlight ?? 1024;
  const client = new InferClient(target, payloads, Math.min(maxInFlight, 256));
  const records: RequestRecord[] = [];
  const random = seededRandom(seed);
  const gap = () => (distribution === 'constant' ? 1000 / rate : (-1000 / rate) * Math.log(1 - random()));
  let running = true;
  let inFlight = 0;
  let delayed = 0;
  const pending = new Set<Promise<void>>();
  const scheduler = (async () => {
    let due = performance.now();
    while (running) {
      const now = performance.now();
      if (due > now) {
        await sleep(due - now);
        continue;
      }
      if (inFlight >= maxInFlight) {
        await sleep(1);
        continue;
      }
      const scheduled = due;
      if (now - scheduled > 1) delayed++;
      inFlight++;
      const p = client.infer().then((ok) => {
        inFlight--;
        records.push({ start: scheduled, end: performance.now(), ok });
      });
      pending.add(p);
      void p.finally(() => pending.delete(p));
      due += gap();
    }
  })();
  try {
    const { windows, stable } = await measureLoad(records, async () => {
      running = false;
      await scheduler;
      await Promise.all(pending);
    }, target.batch, options);
    return summarize({ mode: 'rate', rate, distribution, batch: target.batch, input: target.input, encoding: target.encoding, delayed, errorExamples: client.errorExamples }, windows, stable, stabilityDefaults(options).windowCount);
  } finally {
    client.close();
  }
}
