/**
 * Graceful shutdown with requests in flight: in-process (`RunningServer.close()`, what the SIGTERM
 * handler calls) and through the CLI as an operator runs it (`artist-id serve`, then SIGTERM).
 *
 * Determinism: in-process, the batcher's test hook `pause()` holds the requests in the queue while
 * shutdown starts. Through the CLI, a long `--max-queue-delay-ms` (10 s) holds them until the
 * metrics show them pending; shutdown must run them at once instead of waiting out the delay.
 * Nothing asserts wall-clock time; `waitFor` bounds only guard against a hung server.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { PACKAGE_ROOT } from '../src/paths.js';
import { startServer } from '../src/server/server.js';
import { paintingOf } from './fixtures.js';

const CLI = join(PACKAGE_ROOT, 'src', 'cli', 'main.ts');

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, boundMs = 60_000): Promise<void> {
  const end = Date.now() + boundMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function classify(url: string, image: Buffer): Promise<Response> {
  return fetch(`${url}/v1/models/default:classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(image) });
}

async function pendingRequests(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^nv_inference_pending_request_count\{[^}]*\} (\d+)$/m.exec(text)?.[1] ?? NaN);
}

describe('graceful shutdown', () => {
  it('in-process: close() stops taking requests, reports not ready, finishes the queued ones', async () => {
    const server = await startServer({ port: 0, provider: 'cpu' }, pino({ level: 'silent' }));
    const batcher = server.models.get('default')!.batcher;
    const image = await readFile(paintingOf('claude-monet', 1));
    batcher.pause();
    const inFlight = [classify(server.url, image), classify(server.url, image), classify(server.url, image)];
    await waitFor(() => batcher.queuedImages === 3, '3 queued requests');

    const closed = server.close();
    // Shutdown has begun: new work is refused (503 on an open connection, or the connection is refused).
    const late = await classify(server.url, image).then((r) => r.status, (err: Error) => err.message);
    assert.notEqual(late, 200, 'a request after shutdown began must not be served');
    if (typeof late === 'number') assert.equal(late, 503);

    batcher.resume(); // the test hook's pause would otherwise hold the queue forever
    const answers = await Promise.all(inFlight);
    assert.deepEqual(answers.map((r) => r.status), [200, 200, 200]);
    for (const r of answers) assert.equal((await r.json()).predictions[0].artist, 'claude-monet');
    await closed;
    await assert.rejects(fetch(`${server.url}/v2/health/live`), 'the port is closed after shutdown');
  });

  it('CLI: SIGTERM with requests in flight answers them all, then exits 0', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', '--port', '0', '--provider', 'cpu', '--max-batch-size', '64', '--max-queue-delay-ms', '10000'], {
      cwd: PACKAGE_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const logs: { msg: string; url?: string }[] = [];
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ msg: line });
      }
    });
    try {
      await waitFor(() => logs.some((l) => l.url) || child.exitCode !== null, 'the server to listen');
      const url = logs.find((l) => l.url)?.url;
      assert.ok(url, `no "listening" line; stderr: ${stderr}`);
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, 'loopback by default');

      const image = await readFile(paintingOf('vincent-van-gogh', 1));
      const inFlight = [classify(url, image), classify(url, image), classify(url, image)];
      await waitFor(async () => (await pendingRequests(url)) === 3, '3 pending requests (held by the 10 s batch delay)');

      child.kill('SIGTERM');
      const answers = await Promise.all(inFlight);
      assert.deepEqual(answers.map((r) => r.status), [200, 200, 200]);
      for (const r of answers) assert.equal((await r.json()).predictions[0].artist, 'vincent-van-gogh');
      assert.equal(await exited, 0, `exit code; stderr: ${stderr}`);
      const messages = logs.map((l) => l.msg);
      assert.ok(messages.some((m) => /SIGTERM: graceful shutdown/.test(m)), messages.join('\n'));
      assert.ok(messages.includes('shut down'), messages.join('\n'));
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
