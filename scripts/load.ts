/**
 * Load test of `artist-id serve` on loopback: throughput (images/s) and p50/p99 latency of
 * `POST /v1/models/{name}:classify` at several concurrencies, with dynamic batching on and off, and
 * the latency of `GET /v2/health/ready` polled while the model is saturated.
 *
 *   npx tsx scripts/load.ts                       # starts its own servers (batching on, then off)
 *   npx tsx scripts/load.ts --url http://127.0.0.1:8000 --model default   # an already running server
 *
 * Bounded: each level stops after `--requests` requests or `--seconds` seconds, whichever first.
 * Loopback only: `--url` must point at 127.0.0.1, ::1 or localhost. Images are real paintings from
 * ../shared/paintings (round robin over `--images` of them).
 *
 * Method: closed loop, C clients each sending one request and waiting for its answer; latency is
 * client-side wall time per request, percentiles by nearest rank; throughput is completed images
 * over the level's wall time. Average batch size comes from the server's metrics
 * (`nv_inference_count` / `nv_inference_exec_count`, Triton's definition).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { expectInteger, invalidParameterError } from '../src/errors.js';
import { PACKAGE_ROOT } from '../src/paths.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    model: { type: 'string', default: 'default' },
    concurrency: { type: 'string', default: '1,8,32' },
    requests: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '15' },
    images: { type: 'string', default: '64' },
    'batch-size': { type: 'string', default: '32' },
    'queue-delay-ms': { type: 'string', default: '5' },
    paintings: { type: 'string', default: resolve(PACKAGE_ROOT, '..', 'shared', 'paintings') },
  },
});

const levels = values.concurrency.split(',').map((c) => expectInteger('--concurrency', c.trim(), 1, 256));
const maxRequests = expectInteger('--requests', values.requests, 1, 100_000);
const maxSeconds = expectInteger('--seconds', values.seconds, 1, 600);
const imageCount = expectInteger('--images', values.images, 1, 10_000);
const batchSize = expectInteger('--batch-size', values['batch-size'], 1, 4096);
const queueDelayMs = expectInteger('--queue-delay-ms', values['queue-delay-ms'], 0);

interface LevelResult {
  config: string;
  concurrency: number;
  requests: number;
  errors: number;
  seconds: number;
  imagesPerSecond: number;
  p50: number;
  p99: number;
  healthP50: number;
  healthP99: number;
  healthMax: number;
  /** The server's own event-loop delay over the level (prom-client's monitorEventLoopDelay), ms. */
  loopP99: number;
  loopMax: number;
  averageBatch: number;
}

/** Nearest-rank percentile of `values` (ms). */
function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function loadImages(): Promise<Buffer[]> {
  const artists = (await readdir(values.paintings, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  const files: string[] = [];
  for (let i = 0; files.length < imageCount && i < 1000; i++) {
    for (const artist of artists) {
      const names = (await readdir(join(values.paintings, artist))).filter((f) => f.endsWith('.jpg')).sort();
      if (names[i]) files.push(join(values.paintings, artist, names[i]));
      if (files.length >= imageCount) break;
    }
  }
  if (files.length === 0) throw new Error(`Expected paintings under ${values.paintings} (<artist>/*.jpg) but found none`);
  return Promise.all(files.map((f) => readFile(f)));
}

/** Sum of a metric's samples (those of `--model` when the metric has a model label). */
async function scrape(url: string): Promise<(name: string) => number> {
  const lines = (await (await fetch(`${url}/metrics`)).text()).split('\n');
  return (name) =>
    lines
      .filter((l) => (l.startsWith(`${name}{`) && l.includes(`model="${values.model}"`)) || l.startsWith(`${name} `))
      .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

/** One level: C closed-loop clients until the request or time bound, with a health prober. */
async function runLevel(url: string, config: string, concurrency: number, images: Buffer[]): Promise<LevelResult> {
  const endpoint = `${url}/v1/models/${values.model}:classify`;
  const latencies: number[] = [];
  const health: number[] = [];
  let sent = 0;
  let errors = 0;
  const deadline = performance.now() + maxSeconds * 1000;
  const before = await scrape(url); // also resets the server's event-loop delay histogram
  const [count0, exec0] = [before('nv_inference_count'), before('nv_inference_exec_count')];
  let running = true;
  const prober = (async () => {
    while (running) {
      const t0 = performance.now();
      await fetch(`${url}/v2/health/ready`).then((r) => r.arrayBuffer()).catch(() => undefined);
      health.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (sent < maxRequests && performance.now() < deadline) {
        const image = images[sent++ % images.length];
        const t0 = performance.now();
        try {
          const res = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(image) });
          await res.arrayBuffer();
          if (res.ok) latencies.push(performance.now() - t0);
          else errors++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  running = false;
  await prober;
  const afterLevel = await scrape(url);
  const [count1, exec1] = [afterLevel('nv_inference_count'), afterLevel('nv_inference_exec_count')];
  return {
    config,
    concurrency,
    requests: latencies.length,
    errors,
    seconds,
    imagesPerSecond: latencies.length / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    healthP50: percentile(health, 50),
    healthP99: percentile(health, 99),
    healthMax: Math.max(...health),
    loopP99: afterLevel('nodejs_eventloop_lag_p99_seconds') * 1000,
    loopMax: afterLevel('nodejs_eventloop_lag_max_seconds') * 1000,
    averageBatch: (count1 - count0) / Math.max(1, exec1 - exec0),
  };
}

/** Starts `artist-id serve` on a free loopback port; resolves with its URL. */
async function startServe(args: string[]): Promise<{ url: string; child: ChildProcess }> {
  const cli = join(PACKAGE_ROOT, 'src', 'cli', 'main.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'serve', '--host', '127.0.0.1', '--port', '0', '--model', values.model, '--max-queue-size', '1024', ...args], {
    cwd: PACKAGE_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error('artist-id serve did not start within 120 s')), 120_000);
    child.once('exit', (code) => reject(new Error(`artist-id serve exited with code ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const log = JSON.parse(line);
        if (log.url) {
          clearTimeout(timer);
          resolveUrl(log.url);
        }
      } catch {
        // not a log line
      }
    });
  });
  return { url, child };
}

async function stopServe(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

function checkLoopback(url: string): void {
  const host = new URL(url).hostname;
  if (!['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) throw invalidParameterError('--url', 'a loopback URL (127.0.0.1, ::1, localhost)', url);
}

function print(results: LevelResult[]): void {
  const header = ['config', 'C', 'requests', 'errors', 'images/s', 'p50 ms', 'p99 ms', 'avg batch', 'health p50/p99/max ms', 'loop lag p99/max ms'];
  const rows = results.map((r) => [
    r.config,
    String(r.concurrency),
    String(r.requests),
    String(r.errors),
    r.imagesPerSecond.toFixed(1),
    r.p50.toFixed(0),
    r.p99.toFixed(0),
    r.averageBatch.toFixed(1),
    `${r.healthP50.toFixed(1)}/${r.healthP99.toFixed(1)}/${r.healthMax.toFixed(1)}`,
    `${r.loopP99.toFixed(1)}/${r.loopMax.toFixed(1)}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

const images = await loadImages();
const results: LevelResult[] = [];
const configs: { name: string; args: string[] }[] = values.url
  ? [{ name: 'as running', args: [] }]
  : [
      { name: `batching on (max ${batchSize}, ${queueDelayMs} ms)`, args: ['--max-batch-size', String(batchSize), '--max-queue-delay-ms', String(queueDelayMs)] },
      { name: 'batching off (max 1)', args: ['--max-batch-size', '1', '--max-queue-delay-ms', '0'] },
    ];
console.error(`load: ${images.length} paintings, concurrency ${levels.join(', ')}, at most ${maxRequests} requests or ${maxSeconds} s per level`);
for (const config of configs) {
  let url = values.url;
  let child: ChildProcess | undefined;
  if (url) checkLoopback(url);
  else ({ url, child } = await startServe(config.args));
  try {
    // Warm-up: first runs of each batch shape allocate onnxruntime's memory pattern.
    await Promise.all(images.slice(0, 8).map((image) => fetch(`${url}/v1/models/${values.model}:classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(image) }).then((r) => r.arrayBuffer())));
    for (const c of levels) {
      const r = await runLevel(url!, config.name, c, images);
      results.push(r);
      console.error(`  ${config.name}, C=${c}: ${r.imagesPerSecond.toFixed(1)} images/s`);
    }
  } finally {
    if (child) await stopServe(child);
  }
}
print(results);
