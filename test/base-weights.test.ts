/**
 * resolveBaseWeights: local folder, cache, download with checksum pinning. Never touches the
 * internet: downloads come from a loopback server serving the shared weights folder.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import { PACKAGE_ROOT } from '../src/paths.js';
import { BASE_WEIGHTS, resolveBaseWeights } from '../src/weights/base-weights.js';

const NAME = 'mobilenetv2-12-int8';
const INFO = BASE_WEIGHTS[NAME];
/** The shared folder lives beside the repo (`<repo>/../shared/weights`), wherever it is cloned. */
const SHARED_WEIGHTS = path.resolve(PACKAGE_ROOT, '../shared/weights');
const ENV_VARS = ['ARTIST_ID_WEIGHTS_DIR', 'ARTIST_ID_WEIGHTS_URL', 'ARTIST_ID_WEIGHTS_SHA256', 'ARTIST_ID_OFFLINE', 'ARTIST_ID_CACHE'];

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let original: Buffer;
/** Another "revision": the pinned file cut to 3,655,033 bytes, a size seen in the wild. */
let otherRevision: Buffer;
let otherSha: string;
let server: http.Server;
let base: string;
let requests: string[] = [];
/** A URL on a port nobody listens on: a network error, not an HTTP status. */
let deadUrl: string;
const savedEnv: Record<string, string | undefined> = {};
let tmp: string;

before(async () => {
  assert.ok(existsSync(path.join(SHARED_WEIGHTS, INFO.fileName)), `test weights missing: ${SHARED_WEIGHTS}/${INFO.fileName}`);
  original = await readFile(path.join(SHARED_WEIGHTS, INFO.fileName));
  otherRevision = original.subarray(0, 3_655_033);
  otherSha = sha256(otherRevision);

  server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const file = path.basename(req.url ?? '');
    if (req.url?.startsWith('/redirect/')) {
      res.writeHead(302, { location: `/weights/${file}` }).end();
    } else if (req.url?.startsWith('/weights/')) {
      // Serves the real shared folder; basename() keeps requests inside it.
      readFile(path.join(SHARED_WEIGHTS, file)).then(
        (data) => res.writeHead(200, { 'content-length': data.length }).end(data),
        () => res.writeHead(404).end(),
      );
    } else if (req.url?.startsWith('/other/')) {
      res.writeHead(200, { 'content-length': otherRevision.length }).end(otherRevision);
    } else {
      res.writeHead(404, 'Not Found').end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const dead = http.createServer();
  await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
  deadUrl = `http://127.0.0.1:${(dead.address() as AddressInfo).port}/weights/${INFO.fileName}`;
  await new Promise((resolve) => dead.close(resolve));
});

after(() => new Promise((resolve) => server.close(resolve)));

beforeEach(async () => {
  // CI may set these for the whole run; each test sets exactly what it needs.
  for (const key of ENV_VARS) {
    savedEnv[key] = process.env[key];
    delete process.env[key];
  }
  requests = [];
  tmp = await mkdtemp(path.join(os.tmpdir(), 'artist-id-weights-'));
});

afterEach(async () => {
  for (const key of ENV_VARS) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
  await rm(tmp, { recursive: true, force: true });
});

const url = (prefix: string) => `${base}/${prefix}/${INFO.fileName}`;
const cacheFiles = async (cache: string) => (existsSync(path.join(cache, 'weights')) ? readdir(path.join(cache, 'weights')) : []);

test('registry entry matches the shared file', () => {
  assert.equal(INFO.sha256, sha256(original));
  assert.equal(INFO.size, original.length);
  assert.equal(INFO.featureTensor, '627');
  assert.equal(INFO.featureDim, 1280);
  assert.equal(INFO.urls.length, 2);
});

test('local folder hit: source local, verified sha, no request', async () => {
  const cache = path.join(tmp, 'cache');
  const got = await resolveBaseWeights(NAME, { weightsDir: SHARED_WEIGHTS, cacheDir: cache, urls: [url('weights')] });
  assert.deepEqual(got, { path: path.join(SHARED_WEIGHTS, INFO.fileName), sha256: INFO.sha256, source: 'local' });
  assert.equal(requests.length, 0);
  assert.deepEqual(await cacheFiles(cache), []);
});

test('local folder from ARTIST_ID_WEIGHTS_DIR, also while offline and with another sha accepted', async () => {
  process.env.ARTIST_ID_WEIGHTS_DIR = SHARED_WEIGHTS;
  process.env.ARTIST_ID_OFFLINE = '1';
  const got = await resolveBaseWeights(NAME, { cacheDir: tmp, acceptSha256: otherSha });
  assert.equal(got.source, 'local');
  assert.equal(got.sha256, INFO.sha256);
});

test('local folder with a corrupted copy: error shows both checksums and the path', async () => {
  const corrupt = Buffer.from(original);
  corrupt[1000] ^= 0xff;
  await writeFile(path.join(tmp, INFO.fileName), corrupt);
  await assert.rejects(
    resolveBaseWeights(NAME, { weightsDir: tmp, cacheDir: path.join(tmp, 'cache'), urls: [url('weights')] }),
    (error: Error) => {
      assert.match(error.message, new RegExp(INFO.sha256));
      assert.match(error.message, new RegExp(sha256(corrupt)));
      assert.ok(error.message.includes(path.join(tmp, INFO.fileName)), error.message);
      assert.match(error.message, /ARTIST_ID_WEIGHTS_SHA256/);
      return true;
    },
  );
  assert.equal(requests.length, 0, 'a bad local copy must not silently fall back to downloading');
});

test('download, then cache hit with no further request', async () => {
  const cache = path.join(tmp, 'cache');
  const progress: Array<[number, number | undefined]> = [];
  const logs: string[] = [];
  await mkdir(path.join(tmp, 'empty'), { recursive: true });
  const first = await resolveBaseWeights(NAME, {
    cacheDir: cache,
    weightsDir: path.join(tmp, 'empty'),
    urls: [url('weights')],
    onProgress: (received, total) => progress.push([received, total]),
    log: (message) => logs.push(message),
  });
  const cachePath = path.join(cache, 'weights', INFO.fileName);
  assert.deepEqual(first, { path: cachePath, sha256: INFO.sha256, source: 'download' });
  assert.equal(sha256(await readFile(cachePath)), INFO.sha256);
  assert.deepEqual(await cacheFiles(cache), [INFO.fileName], 'no temp file left behind');
  assert.deepEqual(progress.at(-1), [INFO.size, INFO.size]);
  assert.ok(logs.some((line) => line.includes(url('weights'))), logs.join('\n'));
  assert.equal(requests.length, 1);

  const second = await resolveBaseWeights(NAME, { cacheDir: cache, urls: [url('weights')] });
  assert.deepEqual(second, { path: cachePath, sha256: INFO.sha256, source: 'cache' });
  assert.equal(requests.length, 1, 'cache hit must not contact the server');
});

test('ARTIST_ID_CACHE and ARTIST_ID_WEIGHTS_URL are honoured; redirects are followed', async () => {
  process.env.ARTIST_ID_CACHE = tmp;
  process.env.ARTIST_ID_WEIGHTS_URL = url('redirect');
  const got = await resolveBaseWeights(NAME);
  assert.equal(got.source, 'download');
  assert.equal(got.path, path.join(tmp, 'weights', INFO.fileName));
  assert.deepEqual(requests, [`/redirect/${INFO.fileName}`, `/weights/${INFO.fileName}`]);
});

test('a cached file with a wrong checksum is replaced by a download', async () => {
  await mkdir(path.join(tmp, 'weights'));
  await writeFile(path.join(tmp, 'weights', INFO.fileName), 'garbage');
  const got = await resolveBaseWeights(NAME, { cacheDir: tmp, urls: [url('weights')] });
  assert.equal(got.source, 'download');
  assert.equal(sha256(await readFile(got.path)), INFO.sha256);
});

test('another revision served: refused, both checksums and ARTIST_ID_WEIGHTS_SHA256 named, cache empty', async () => {
  await assert.rejects(resolveBaseWeights(NAME, { cacheDir: tmp, urls: [url('other')] }), (error: Error) => {
    assert.match(error.message, new RegExp(INFO.sha256));
    assert.match(error.message, new RegExp(otherSha));
    assert.ok(error.message.includes(url('other')), error.message);
    assert.match(error.message, /ARTIST_ID_WEIGHTS_SHA256/);
    return true;
  });
  assert.equal(requests.length, 1);
  assert.deepEqual(await cacheFiles(tmp), []);
});

test('another revision served with acceptSha256 (option or env) set to its hash: accepted', async () => {
  const viaOption = await resolveBaseWeights(NAME, { cacheDir: path.join(tmp, 'a'), urls: [url('other')], acceptSha256: otherSha.toUpperCase() });
  assert.equal(viaOption.source, 'download');
  assert.equal(viaOption.sha256, otherSha);
  assert.equal(sha256(await readFile(viaOption.path)), otherSha);

  process.env.ARTIST_ID_WEIGHTS_SHA256 = otherSha;
  const viaEnv = await resolveBaseWeights(NAME, { cacheDir: path.join(tmp, 'b'), urls: [url('other')] });
  assert.equal(viaEnv.sha256, otherSha);
  // The pinned revision is still accepted while another one is.
  const pinned = await resolveBaseWeights(NAME, { cacheDir: path.join(tmp, 'c'), urls: [url('weights')] });
  assert.equal(pinned.sha256, INFO.sha256);
});

test('acceptSha256 that is not a sha256 is a parameter error', async () => {
  await assert.rejects(resolveBaseWeights(NAME, { cacheDir: tmp, acceptSha256: 'abc' }), /Expected sha256 .* for acceptSha256 but received "abc"/);
  assert.equal(requests.length, 0);
});

test('first URL 404, second URL OK: success from the second', async () => {
  const logs: string[] = [];
  const got = await resolveBaseWeights(NAME, { cacheDir: tmp, urls: [url('missing'), url('weights')], log: (m) => logs.push(m) });
  assert.equal(got.source, 'download');
  assert.equal(got.sha256, INFO.sha256);
  assert.deepEqual(requests, [`/missing/${INFO.fileName}`, `/weights/${INFO.fileName}`]);
  assert.ok(logs.some((line) => line.includes('404')), logs.join('\n'));
});

test('a weights folder that does not exist is an error, not a silent download', async () => {
  const requestsBefore = requests.length;
  await assert.rejects(
    resolveBaseWeights(NAME, { cacheDir: path.join(tmp, 'typo-cache'), weightsDir: path.join(tmp, 'no-such-folder'), urls: [url('weights')] }),
    new RegExp(`Expected an existing folder for weights folder \\(--weights-dir\\) but received "${path.join(tmp, 'no-such-folder')}"`),
  );
  assert.equal(requests.length, requestsBefore, 'nothing was downloaded');
});

test('all URLs fail: one error listing each URL and why, with the --weights-dir hint', async () => {
  await mkdir(path.join(tmp, 'nowhere'), { recursive: true });
  await assert.rejects(
    resolveBaseWeights(NAME, { cacheDir: tmp, weightsDir: path.join(tmp, 'nowhere'), urls: [url('missing'), deadUrl, url('other')] }),
    (error: Error) => {
      assert.ok(error.message.includes(`${url('missing')}: HTTP 404`), error.message);
      assert.ok(error.message.includes(`${deadUrl}: `), error.message);
      assert.match(error.message, /ECONNREFUSED|fetch failed/);
      assert.ok(error.message.includes(`${url('other')}: refused`), error.message);
      assert.ok(error.message.includes(path.join(tmp, 'nowhere', INFO.fileName)), 'names the local folder looked at');
      assert.match(error.message, /--weights-dir/);
      assert.match(error.message, /ARTIST_ID_WEIGHTS_DIR/);
      assert.match(error.message, new RegExp(NAME));
      return true;
    },
  );
  assert.deepEqual(await cacheFiles(tmp), []);
});

test('offline (option or ARTIST_ID_OFFLINE=1): no download, error explains the local folder', async () => {
  const check = (error: Error) => {
    assert.match(error.message, /offline/);
    assert.match(error.message, /ARTIST_ID_WEIGHTS_DIR/);
    assert.ok(error.message.includes(INFO.fileName), error.message);
    return true;
  };
  await assert.rejects(resolveBaseWeights(NAME, { cacheDir: tmp, urls: [url('weights')], offline: true }), check);
  process.env.ARTIST_ID_OFFLINE = '1';
  await assert.rejects(resolveBaseWeights(NAME, { cacheDir: tmp, urls: [url('weights')] }), check);
  assert.equal(requests.length, 0);
});

test('unknown base name: error lists the known names', async () => {
  await assert.rejects(resolveBaseWeights('vgg17', { cacheDir: tmp }), (error: Error) => {
    assert.match(error.message, /"mobilenetv2-12-int8"/);
    assert.match(error.message, /"vgg17"/);
    return true;
  });
  await assert.rejects(resolveBaseWeights('toString', { cacheDir: tmp }), /Expected one of/);
});
