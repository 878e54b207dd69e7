/**
 * The web page at `/` in headless Chromium (Debian's `chromium` driven by playwright-core): choose
 * a real painting, see the predicted artist. Fails (does not skip) without /usr/bin/chromium.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { pino } from 'pino';
import { chromium, type BrowserContext } from 'playwright-core';
import { startServer, type RunningServer } from '../src/server/server.js';
import { paintingOf } from './fixtures.js';
import { ACCEPT_ALL, REJECT_ALL, writeOpenSetModel } from './open-set-fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let server: RunningServer;
let browser: BrowserContext;
let profile: string;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: the web page test needs Debian's Chromium. Install it with: apt-get update && apt-get install -y chromium`);
  profile = await mkdtemp(join(os.tmpdir(), 'artist-id-chromium-'));
  // The shipped model, and two open-set variants of it (card openSet, in-graph score) in the profile folder.
  const reject = await writeOpenSetModel(profile, 'reject', 'mahalanobis', REJECT_ALL);
  const accept = await writeOpenSetModel(profile, 'accept', 'mahalanobis', ACCEPT_ALL);
  server = await startServer({ port: 0, provider: 'cpu', models: ['default', `reject=${reject}`, `accept=${accept}`] }, pino({ level: 'silent' }));
  // A fresh --user-data-dir: playwright takes it as the persistent context's directory.
  browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

it('upload a real painting on the web page and see the predicted artist', async () => {
  const painting = paintingOf('claude-monet', 1);
  const api = await fetch(`${server.url}/v1/models/default:classify?top_k=5`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(await readFile(painting)) });
  const expected = (await api.json()).predictions[0];

  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(server.url);
  await page.locator('#model option').first().waitFor({ state: 'attached' });
  assert.match(await page.locator('#model').innerText(), /default \(11 artists, cpu\)/);

  await page.setInputFiles('#file', painting);
  const first = page.locator('#results li').first();
  await first.waitFor();
  assert.equal(await page.locator('#results li').count(), 5, 'top 5 artists listed');
  assert.equal(await first.getAttribute('data-artist'), expected.artist, 'the page shows what the API answers');
  assert.equal(expected.artist, 'claude-monet');
  assert.match(await first.innerText(), /claude monet/);
  assert.match(await page.locator('#status').innerText(), /Most likely claude monet \(\d+\.\d%\)/);
  assert.equal(await page.locator('#preview').isVisible(), true);
  assert.deepEqual(errors, [], 'no JavaScript errors on the page');

  assert.equal(await page.locator('#status').getAttribute('data-unknown'), 'false', 'no open-set verdict is claimed for a model without one');

  // A file that is not a painting: the page shows the server's error, and recovers.
  await page.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a painting') });
  await page.locator('#status.error').waitFor();
  assert.match(await page.locator('#status').innerText(), /Expected Content-Type/);
  await page.close();
});

it('open-set models: the page says "unknown artist" below the threshold and keeps the closest artists', async () => {
  const painting = paintingOf('claude-monet', 1);
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(server.url);
  await page.locator('#model option').nth(2).waitFor({ state: 'attached' });

  await page.selectOption('#model', 'reject');
  await page.setInputFiles('#file', painting);
  await page.locator('#status.unknown').waitFor();
  assert.equal(await page.locator('#status').getAttribute('data-unknown'), 'true');
  assert.match(await page.locator('#status').innerText(), /^Unknown artist: probably none of the 11 artists this model knows \(open-set score -?[\d.e+-]+ below the threshold 1\.000e\+30\)\. Closest: claude monet \(\d+\.\d%\)$/);
  assert.equal(await page.locator('#results li').count(), 5, 'the top 5 artists are still listed');

  await page.selectOption('#model', 'accept');
  await page.setInputFiles('#file', painting);
  await page.locator('#status[data-unknown="false"]').waitFor();
  assert.match(await page.locator('#status').innerText(), /^Most likely claude monet \(\d+\.\d%\)$/);
  assert.equal(await page.locator('#status.unknown').count(), 0);
  assert.deepEqual(errors, [], 'no JavaScript errors on the page');
  await page.close();
});
