/**
 * `artist-id serve` on a real loopback port (127.0.0.1, port 0) with the shipped model
 * (models/default) and real paintings: the simple classify API, the Open Inference Protocol (JSON,
 * binary tensors, BYTES images), metrics, dynamic batching, the bounded queue, timeouts, and every
 * kind of bad input, after which the server must still answer.
 *
 * Determinism: nothing here asserts wall-clock time. Queue-full, timeout and batch formation are
 * forced with the batcher's test hook `server.models.get(name).batcher.pause()` (the executor stops
 * starting batches while requests keep queueing) and `resume()`. `waitFor` polls a condition with a
 * generous safety bound that only fires if the server is broken.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Classifier, resolveModelPath } from '../src/inference/classifier.js';
import { readModelCard } from '../src/model/read-card.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { parseLddNotFound } from '../src/server/cuda-check.js';
import { resolveServeOptions, SERVE_DEFAULTS } from '../src/server/options.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { OPENAPI_PATH } from '../src/server/app.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { paintingOf } from './fixtures.js';

const silent = pino({ level: 'silent' });
/** Width of the shipped model's `features` output, from its card (pooled 1280, style statistics 5920). */
const SHIPPED_CARD = await readModelCard(resolveModelPath('default'));
const FEATURE_DIM = SHIPPED_CARD.base.featureDim;
/** The open-set outputs the shipped model adds when its card carries a threshold (test/open-set-serving.test.ts covers them). */
const OPEN_SET_OUTPUTS: [string, number[]][] = SHIPPED_CARD.openSet ? [['open_set_score', [-1]], ['unknown', [-1]]] : [];
const MAX_BATCH = 8;
const MAX_QUEUE = 8;

let server: RunningServer;
let reference: Classifier;
let monet: Buffer;
let degas: Buffer;
let vanGogh: Buffer;

before(async () => {
  server = await startServer({ port: 0, host: '127.0.0.1', maxBatchSize: MAX_BATCH, maxQueueDelayMs: 20, maxQueueSize: MAX_QUEUE, bodyLimitMb: 1, provider: 'cpu' }, silent);
  reference = await Classifier.load('default', { provider: 'cpu' });
  [monet, degas, vanGogh] = await Promise.all([paintingOf('claude-monet', 1), paintingOf('edgar-degas', 1), paintingOf('vincent-van-gogh', 1)].map((p) => readFile(p)));
});

after(async () => {
  await server?.close();
  await reference?.dispose();
});

// ---------------------------------------------------------------- helpers

/** POSTs a body to a path of the server. */
function post(path: string, body: Uint8Array | string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${server.url}${path}`, { method: 'POST', headers, body: asBody(body) });
}

/** fetch's types want `Uint8Array<ArrayBuffer>`; Buffers may be views of shared pools. */
function asBody(body: Uint8Array | string): string | Uint8Array<ArrayBuffer> {
  return typeof body === 'string' ? body : new Uint8Array(body);
}

const classifyUrl = '/v1/models/default:classify';

function classify(image: Uint8Array, query = ''): Promise<Response> {
  return post(`${classifyUrl}${query}`, image, { 'content-type': 'image/jpeg' });
}

/** Asserts a JSON error response: status, `{"error": string}` matching `pattern`. */
async function assertError(res: Response | Promise<Response>, status: number, pattern: RegExp): Promise<string> {
  const r = await res;
  const text = await r.text();
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${text}`);
  const body = JSON.parse(text);
  assert.equal(typeof body.error, 'string');
  assert.match(body.error, pattern);
  return body.error;
}

/** A multipart/form-data body with the given file parts (and the closing boundary unless `truncate`). */
function multipart(files: { name: string; bytes: Uint8Array; type?: string }[], options: { truncate?: boolean; fields?: Record<string, string> } = {}): { body: Buffer; contentType: string } {
  const boundary = '----artist-id-test-boundary';
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(options.fields ?? {})) parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  files.forEach((f, i) => {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file${i}"; filename="${f.name}"\r\nContent-Type: ${f.type ?? 'image/jpeg'}\r\n\r\n`));
    parts.push(Buffer.from(f.bytes), Buffer.from('\r\n'));
  });
  if (!options.truncate) parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** A request through node:http that reads the answer even when the server stops reading the body. */
function rawRequest(path: string, headers: Record<string, string | number>, chunks: Buffer[]): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${server.url}${path}`, { method: 'POST', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
    });
    for (const c of chunks) req.write(c);
    req.end();
  });
}

/** Sum of a metric's samples whose labels include every `labels` pair. */
async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/** Polls until `condition` holds; the bound only guards against a broken server. */
async function waitFor(condition: () => boolean | Promise<boolean>, what: string, boundMs = 30_000): Promise<void> {
  const end = Date.now() + boundMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reference probabilities of an image: the Classifier of src/inference on the same preprocessing. */
async function referenceProbabilities(image: Uint8Array): Promise<Float32Array> {
  const pixels = await decodeImage(image, reference.card.preprocessing);
  return (await reference.run([pixels])).probabilities[0];
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tolerance, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

/** Splits a binary-extension response into its JSON header and binary part. */
async function splitBinaryResponse(res: Response): Promise<{ json: any; binary: Buffer }> {
  const length = Number(res.headers.get('inference-header-content-length'));
  assert.ok(Number.isInteger(length) && length > 0, 'Inference-Header-Content-Length in the response');
  const body = Buffer.from(await res.arrayBuffer());
  return { json: JSON.parse(body.subarray(0, length).toString('utf8')), binary: body.subarray(length) };
}

/** A binary-extension request body: JSON header then binary tensors. */
function binaryBody(json: object, ...blobs: Buffer[]): { body: Buffer; headers: Record<string, string> } {
  const header = Buffer.from(JSON.stringify(json));
  return { body: Buffer.concat([header, ...blobs]), headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) } };
}

/** BYTES elements in binary form: 4-byte little-endian length + bytes each. */
function bytesTensor(...elements: Uint8Array[]): Buffer {
  return Buffer.concat(elements.flatMap((e) => {
    const n = Buffer.alloc(4);
    n.writeUInt32LE(e.length);
    return [n, Buffer.from(e)];
  }));
}

const infer = (json: object) => post('/v2/models/default/infer', JSON.stringify(json), { 'content-type': 'application/json' });
const bytesInput = (...images: Uint8Array[]) => ({ name: 'image_bytes', datatype: 'BYTES', shape: [images.length], data: images.map((b) => Buffer.from(b).toString('base64')) });

// ---------------------------------------------------------------- tests

describe('health and metadata (Open Inference Protocol)', () => {
  it('answers live, ready, server and model metadata, config', async () => {
    assert.equal((await fetch(`${server.url}/v2/health/live`)).status, 200);
    assert.equal((await fetch(`${server.url}/v2/health/ready`)).status, 200);
    assert.equal((await fetch(`${server.url}/v2/models/default/ready`)).status, 200);
    assert.equal((await fetch(`${server.url}/v2/models/default/versions/1/ready`)).status, 200);

    const meta = await (await fetch(`${server.url}/v2`)).json();
    assert.equal(meta.name, 'artist-id');
    assert.ok(meta.extensions.includes('binary_tensor_data'));

    const model = await (await fetch(`${server.url}/v2/models/default`)).json();
    assert.equal(model.name, 'default');
    assert.deepEqual(model.versions, ['1']);
    assert.deepEqual(model.inputs, [
      { name: 'image', datatype: 'UINT8', shape: [-1, 224, 224, 3] },
      { name: 'image_bytes', datatype: 'BYTES', shape: [-1] },
    ]);
    assert.deepEqual(model.outputs.map((o: { name: string; shape: number[] }) => [o.name, o.shape]), [
      ['probabilities', [-1, 11]],
      ['logits', [-1, 11]],
      ['features', [-1, FEATURE_DIM]],
      ...OPEN_SET_OUTPUTS,
    ]);
    assert.equal(model.parameters.execution_provider, 'cpu');
    assert.deepEqual(model.parameters.classes, reference.card.classes, 'classes come from the model card');

    const config = await (await fetch(`${server.url}/v2/models/default/config`)).json();
    assert.equal(config.max_batch_size, MAX_BATCH);
    assert.equal(config.dynamic_batching.default_queue_policy.max_queue_size, MAX_QUEUE);
  });

  it('answers 405 with an Allow header for a known endpoint and another method (methods from the OpenAPI document)', async () => {
    const live = await fetch(`${server.url}/v2/health/live`, { method: 'POST' });
    assert.equal(live.headers.get('allow'), 'GET');
    await assertError(live, 405, /POST is not allowed on \/v2\/health\/live; allowed: GET/);
    const infer = await fetch(`${server.url}/v2/models/default/infer`);
    assert.equal(infer.headers.get('allow'), 'POST');
    await assertError(infer, 405, /GET is not allowed on \/v2\/models\/default\/infer; allowed: POST/);
    await assertError(fetch(`${server.url}/v1/models/default:classify`), 405, /allowed: POST/);
    await assertError(post('/v1/models', '{}', { 'content-type': 'application/json' }), 405, /allowed: GET/);
  });

  it('answers 404 with a JSON error for unknown models, versions and routes', async () => {
    await assertError(fetch(`${server.url}/v2/models/nope`), 404, /served model name \(default\) but received "nope"/);
    await assertError(fetch(`${server.url}/v2/models/nope/ready`), 404, /"nope"/);
    await assertError(fetch(`${server.url}/v2/models/default/versions/2`), 404, /version 1 .* received version "2"/);
    await assertError(post('/v2/models/nope/infer', '{}', { 'content-type': 'application/json' }), 404, /"nope"/);
    await assertError(post('/v1/models/nope:classify', monet, { 'content-type': 'image/jpeg' }), 404, /"nope"/);
    await assertError(post('/v1/models/default:predict', monet, { 'content-type': 'image/jpeg' }), 404, /\{name\}:classify/);
    await assertError(fetch(`${server.url}/v3/anything`), 404, /No endpoint GET \/v3\/anything/);
  });
});

describe('POST /v1/models/{name}:classify', () => {
  it('classifies an image body like the Classifier does (same preprocessing, same classes)', async () => {
    const res = await classify(monet, '?top_k=11');
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.model, 'default');
    assert.equal(body.execution_provider, 'cpu');
    assert.equal(body.predictions.length, 1);
    const [p] = body.predictions;
    assert.equal(p.file, null);
    assert.equal(p.top_k.length, 11);
    assert.equal(p.artist, p.top_k[0].artist);
    const expected = await referenceProbabilities(monet);
    const got = reference.card.classes.map((c) => p.top_k.find((t: { artist: string }) => t.artist === c).probability);
    assertClose(got, expected, 2e-6, 'probabilities');
    assert.equal(p.artist, 'claude-monet');
  });

  it('classifies several files of a multipart/form-data upload, in order, with top_k', async () => {
    const { body, contentType } = multipart([{ name: 'degas.jpg', bytes: degas }, { name: 'vg.jpg', bytes: vanGogh }], { fields: { note: 'ignored' } });
    const res = await post(`${classifyUrl}?top_k=2`, body, { 'content-type': contentType });
    assert.equal(res.status, 200, await res.clone().text());
    const { predictions } = await res.json();
    assert.deepEqual(predictions.map((p: { file: string }) => p.file), ['degas.jpg', 'vg.jpg']);
    assert.deepEqual(predictions.map((p: { artist: string }) => p.artist), ['edgar-degas', 'vincent-van-gogh']);
    assert.ok(predictions.every((p: { top_k: unknown[] }) => p.top_k.length === 2));
  });

  it('accepts PNG, WebP and TIFF bodies (format from content)', async () => {
    const sharp = (await import('sharp')).default;
    for (const [format, type] of [['png', 'image/png'], ['webp', 'image/webp'], ['tiff', 'image/tiff']] as const) {
      const bytes = await sharp(monet).toFormat(format).toBuffer();
      const res = await post(classifyUrl, bytes, { 'content-type': type });
      assert.equal(res.status, 200, `${format}: ${await res.clone().text()}`);
    }
  });
});

describe('bad input is answered with a 4xx JSON error, and the server keeps serving', () => {
  it('non-image, truncated, empty bodies', async () => {
    const readme = await readFile(`${PACKAGE_ROOT}/README.md`);
    await assertError(classify(readme), 400, /request body: Expected an image .* not a recognised image format/);
    await assertError(classify(monet.subarray(0, Math.floor(monet.length / 2))), 400, /request body: Could not decode jpeg image/);
    await assertError(classify(new Uint8Array(0)), 400, /empty body \(0 bytes\)/);
    await assertError(post(classifyUrl, 'not gzip', { 'content-type': 'image/jpeg', 'content-encoding': 'gzip' }), 400, /Could not decompress the request body/);
  });

  it('wrong or missing content types', async () => {
    await assertError(post(classifyUrl, 'hello', { 'content-type': 'text/plain' }), 415, /Expected Content-Type image\/jpeg.* but received "text\/plain"/);
    await assertError(post(classifyUrl, monet, { 'content-type': 'application/x-www-form-urlencoded' }), 415, /multipart\/form-data but received "application\/x-www-form-urlencoded"/);
    const none = await rawRequest(classifyUrl, { 'content-length': monet.length }, [monet]);
    assert.equal(none.status, 415);
    assert.match(JSON.parse(none.body).error, /but received none/);
  });

  it('malformed, truncated and empty multipart bodies, and a bad file among good ones', async () => {
    await assertError(post(classifyUrl, 'x', { 'content-type': 'multipart/form-data' }), 400, /Malformed multipart\/form-data request: .*[Bb]oundary/);
    const truncated = multipart([{ name: 'm.jpg', bytes: monet }], { truncate: true });
    await assertError(post(classifyUrl, truncated.body, { 'content-type': truncated.contentType }), 400, /Malformed multipart\/form-data body( in file "m.jpg")?: Unexpected end of form/);
    const cut = multipart([{ name: 'm.jpg', bytes: monet }]);
    await assertError(post(classifyUrl, cut.body.subarray(0, 200), { 'content-type': cut.contentType }), 400, /Malformed multipart/);
    const noFiles = multipart([], { fields: { a: 'b' } });
    await assertError(post(classifyUrl, noFiles.body, { 'content-type': noFiles.contentType }), 400, /at least one file part/);
    // A bad file among good ones gets its own error; the good ones are answered.
    const mixed = multipart([{ name: 'good.jpg', bytes: monet }, { name: 'notes.txt', bytes: Buffer.from('not a painting'), type: 'text/plain' }, { name: 'empty.jpg', bytes: new Uint8Array(0) }, { name: 'vg.jpg', bytes: vanGogh }]);
    const res = await post(classifyUrl, mixed.body, { 'content-type': mixed.contentType });
    assert.equal(res.status, 200, await res.clone().text());
    const { predictions } = await res.json();
    assert.deepEqual(predictions.map((p: { file: string }) => p.file), ['good.jpg', 'notes.txt', 'empty.jpg', 'vg.jpg']);
    assert.equal(predictions[0].error, null);
    assert.equal(predictions[0].top_k.length > 0, true);
    assert.equal(predictions[3].artist, 'vincent-van-gogh');
    assert.match(predictions[1].error, /file 2 \("notes.txt".*not a recognised image format/);
    assert.match(predictions[2].error, /file 3 \("empty.jpg"/);
    for (const bad of [predictions[1], predictions[2]]) assert.deepEqual([bad.artist, bad.probability, bad.top_k], [null, null, []]);
    // The same answers as for the good files sent alone.
    const alone = await (await post(classifyUrl, multipart([{ name: 'vg.jpg', bytes: vanGogh }]).body, { 'content-type': multipart([{ name: 'vg.jpg', bytes: vanGogh }]).contentType })).json();
    assert.deepEqual(alone.predictions[0].top_k, predictions[3].top_k);
    // No file decodable: nothing to answer, a 400 naming the first.
    const allBad = multipart([{ name: 'notes.txt', bytes: Buffer.from('not a painting'), type: 'text/plain' }, { name: 'empty.jpg', bytes: new Uint8Array(0) }]);
    await assertError(post(classifyUrl, allBad.body, { 'content-type': allBad.contentType }), 400, /file 1 \("notes.txt".*not a recognised image format/);
  });

  it('oversize bodies (declared and streamed) get 413', async () => {
    const big = Buffer.alloc(1_200_000, 7); // --body-limit-mb 1 in this suite
    const raw = await rawRequest(classifyUrl, { 'content-type': 'image/jpeg', 'content-length': big.length }, [big]);
    assert.equal(raw.status, 413);
    assert.match(JSON.parse(raw.body).error, /at most 1\.0 MB \(--body-limit-mb\) but received 1\.2 MB/);
    const form = multipart([{ name: 'huge.jpg', bytes: big }]);
    const declared = await rawRequest(classifyUrl, { 'content-type': form.contentType, 'content-length': form.body.length }, [form.body]);
    assert.equal(declared.status, 413);
    // Chunked (no Content-Length): busboy stops at the limit while streaming.
    const chunks = Array.from({ length: 12 }, (_, i) => form.body.subarray(i * 100_000, (i + 1) * 100_000)).concat(form.body.subarray(1_200_000));
    const streamed = await rawRequest(classifyUrl, { 'content-type': form.contentType, 'transfer-encoding': 'chunked' }, chunks);
    assert.equal(streamed.status, 413);
    assert.match(JSON.parse(streamed.body).error, /at most 1\.0 MB/);
    const kserve = await rawRequest('/v2/models/default/infer', { 'content-type': 'application/json', 'content-length': big.length }, [big]);
    assert.equal(kserve.status, 413);
  });

  it('bad parameters', async () => {
    await assertError(classify(monet, '?top_k=0'), 400, /Expected positive integer for top_k but received "0" of type string/);
    await assertError(classify(monet, '?top_k=many'), 400, /for top_k but received "many"/);
  });

  it('still serves everyone after all of that', async () => {
    assert.equal((await fetch(`${server.url}/v2/health/ready`)).status, 200);
    const res = await classify(vanGogh);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).predictions[0].artist, 'vincent-van-gogh');
    assert.ok((await metric('nv_inference_request_failure', { reason: 'INVALID' })) >= 10, 'bad requests are counted as INVALID failures');
  });
});

describe('POST /v2/models/{name}/infer', () => {
  it('JSON: BYTES images (base64) -> all outputs, equal to the Classifier', async () => {
    const res = await infer({ id: 'req-1', inputs: [bytesInput(monet, degas)] });
    assert.equal(res.status, 200, await res.clone().text());
    const body = await res.json();
    assert.equal(body.model_name, 'default');
    assert.equal(body.model_version, '1');
    assert.equal(body.id, 'req-1');
    const byName = Object.fromEntries(body.outputs.map((o: { name: string }) => [o.name, o]));
    assert.deepEqual(byName.probabilities.shape, [2, 11]);
    assert.equal(byName.probabilities.datatype, 'FP32');
    assert.deepEqual(byName.logits.shape, [2, 11]);
    assert.deepEqual(byName.features.shape, [2, FEATURE_DIM]);
    assert.equal(byName.features.data.length, 2 * FEATURE_DIM);
    assertClose(byName.probabilities.data.slice(0, 11), await referenceProbabilities(monet), 1e-5, 'monet probabilities');
    assertClose(byName.probabilities.data.slice(11), await referenceProbabilities(degas), 1e-5, 'degas probabilities');
  });

  it('JSON: UINT8 pixels (nested arrays) and the classification extension', async () => {
    const pixels = await decodeImage(vanGogh, reference.card.preprocessing);
    const nested = Array.from({ length: 224 }, (_, y) => Array.from({ length: 224 }, (_, x) => Array.from(pixels.subarray((y * 224 + x) * 3, (y * 224 + x) * 3 + 3))));
    const res = await infer({ inputs: [{ name: 'image', datatype: 'UINT8', shape: [1, 224, 224, 3], data: [nested] }], outputs: [{ name: 'probabilities', parameters: { classification: 3 } }] });
    assert.equal(res.status, 200, await res.clone().text());
    const [out] = (await res.json()).outputs;
    assert.equal(out.datatype, 'BYTES');
    assert.deepEqual(out.shape, [1, 3]);
    const [value, index, label] = out.data[0].split(':');
    assert.equal(label, 'vincent-van-gogh');
    assert.equal(reference.card.classes[Number(index)], label);
    assert.ok(Number(value) > 0.5);
  });

  it('binary extension: UINT8 pixels in, binary FP32 out (Inference-Header-Content-Length)', async () => {
    const a = await decodeImage(monet, reference.card.preprocessing);
    const b = await decodeImage(degas, reference.card.preprocessing);
    const { body, headers } = binaryBody(
      { inputs: [{ name: 'image', datatype: 'UINT8', shape: [2, 224, 224, 3], parameters: { binary_data_size: a.length + b.length } }], outputs: [{ name: 'probabilities', parameters: { binary_data: true } }, { name: 'logits' }] },
      Buffer.from(a),
      Buffer.from(b),
    );
    const res = await post('/v2/models/default/infer', body, headers);
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    const { json, binary } = await splitBinaryResponse(res);
    const [probs, logits] = json.outputs;
    assert.equal(probs.name, 'probabilities');
    assert.deepEqual(probs.shape, [2, 11]);
    assert.equal(probs.parameters.binary_data_size, 2 * 11 * 4);
    assert.equal(probs.data, undefined);
    assert.equal(binary.length, 2 * 11 * 4);
    const floats = Array.from({ length: 22 }, (_, i) => binary.readFloatLE(i * 4));
    assertClose(floats.slice(0, 11), await referenceProbabilities(monet), 1e-5, 'binary monet');
    assertClose(floats.slice(11), await referenceProbabilities(degas), 1e-5, 'binary degas');
    assert.equal(logits.name, 'logits');
    assert.equal(logits.data.length, 22, 'logits requested as JSON stay JSON');
  });

  it('binary extension: BYTES images in, binary_data_output for all outputs, BYTES classification binary', async () => {
    const { body, headers } = binaryBody(
      {
        parameters: { binary_data_output: true },
        inputs: [{ name: 'image_bytes', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: 8 + monet.length + vanGogh.length } }],
        outputs: [{ name: 'probabilities', parameters: { classification: 1 } }, { name: 'features' }],
      },
      bytesTensor(monet, vanGogh),
    );
    const res = await post('/v2/models/default/infer', body, headers);
    assert.equal(res.status, 200, await res.clone().text());
    const { json, binary } = await splitBinaryResponse(res);
    const [cls, features] = json.outputs;
    assert.deepEqual(cls.shape, [2, 1]);
    assert.deepEqual(features.shape, [2, FEATURE_DIM]);
    assert.equal(binary.length, cls.parameters.binary_data_size + features.parameters.binary_data_size);
    assert.equal(features.parameters.binary_data_size, 2 * FEATURE_DIM * 4);
    const labels: string[] = [];
    for (let at = 0; at < cls.parameters.binary_data_size; ) {
      const n = binary.readUInt32LE(at);
      labels.push(binary.subarray(at + 4, at + 4 + n).toString('utf8').split(':')[2]);
      at += 4 + n;
    }
    assert.deepEqual(labels, ['claude-monet', 'vincent-van-gogh']);
  });

  it('wrong tensors, datatypes, shapes and framing get 400 with a reason', async () => {
    const ok = bytesInput(monet);
    await assertError(post('/v2/models/default/infer', '{"inputs": [', { 'content-type': 'application/json' }), 400, /not valid JSON/);
    await assertError(post('/v2/models/default/infer', '', { 'content-type': 'application/json' }), 400, /empty body/);
    await assertError(infer({}), 400, /Invalid inference request: Expected array for inputs but received undefined/);
    await assertError(infer({ inputs: [{ ...ok, shape: 'one' }] }), 400, /inputs\[0\]\.shape but received "one"/);
    await assertError(infer({ inputs: [{ name: 'pixels', datatype: 'UINT8', shape: [1], data: [1] }] }), 400, /Expected input image .* or image_bytes .* but received input "pixels"/);
    await assertError(infer({ inputs: [ok, ok] }), 400, /exactly one input .* received 2/);
    await assertError(infer({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 224, 224, 3], data: [0] }] }), 400, /Expected datatype UINT8 for input image but received "FP32"/);
    await assertError(infer({ inputs: [{ name: 'image', datatype: 'UINT8', shape: [1, 3, 224, 224], data: [0] }] }), 400, /Expected shape \[N,224,224,3\] .* received \[1,3,224,224\]/);
    await assertError(infer({ inputs: [{ name: 'image', datatype: 'UINT8', shape: [1, 224, 224, 3], data: [1, 2, 3] }] }), 400, /Expected 150528 values .* received 3/);
    await assertError(infer({ inputs: [{ name: 'image', datatype: 'UINT8', shape: [1, 224, 224, 3], data: new Array(150528).fill(256) }] }), 400, /Expected an integer between 0 and 255 \(UINT8\) for image data\[0\] but received 256/);
    await assertError(infer({ inputs: [{ ...ok, datatype: 'UINT8' }] }), 400, /Expected datatype BYTES for input image_bytes/);
    await assertError(infer({ inputs: [{ ...ok, shape: [2] }] }), 400, /Expected 2 elements .* received 1/);
    await assertError(infer({ inputs: [{ ...ok, data: [42] }] }), 400, /base64 string .* for image_bytes data\[0\] but received 42/);
    await assertError(infer({ inputs: [{ ...ok, data: [Buffer.from('not an image').toString('base64')] }] }), 400, /image_bytes\[0\]: Expected an image/);
    await assertError(infer({ inputs: [ok], outputs: [{ name: 'softmax' }] }), 400, new RegExp(`output name among ${['probabilities', 'logits', 'features', ...OPEN_SET_OUTPUTS.map(([n]) => n)].join(', ')} for outputs\\[0\\]\\.name but received "softmax"`));
    await assertError(infer({ inputs: [ok], outputs: [{ name: 'features', parameters: { classification: 2 } }] }), 400, /no classes/);
    await assertError(infer({ inputs: [ok], outputs: [{ name: 'logits', parameters: { binary_data: 'yes' } }] }), 400, /Expected a boolean for outputs\[0\]\.parameters\.binary_data/);
    // Binary framing.
    const withSize = (size: number) => ({ inputs: [{ name: 'image_bytes', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: size } }] });
    await assertError(infer(withSize(10)), 400, /no Inference-Header-Content-Length header/);
    const short = binaryBody(withSize(4 + monet.length + 100), bytesTensor(monet));
    await assertError(post('/v2/models/default/infer', short.body, short.headers), 400, /binary tensor data after the JSON header .* but the body has/);
    const extra = binaryBody(withSize(4 + monet.length), bytesTensor(monet), Buffer.from('junk'));
    await assertError(post('/v2/models/default/infer', extra.body, extra.headers), 400, /Expected \d+ bytes of binary tensor data .* but received \d+/);
    const badLength = binaryBody(withSize(4 + monet.length), bytesTensor(monet));
    await assertError(post('/v2/models/default/infer', badLength.body, { ...badLength.headers, 'inference-header-content-length': 'ten' }), 400, /Inference-Header-Content-Length/);
    const cutElement = binaryBody(withSize(4 + 10), Buffer.concat([bytesTensor(monet).subarray(0, 4), Buffer.alloc(10)]));
    await assertError(post('/v2/models/default/infer', cutElement.body, cutElement.headers), 400, /element 0 of the binary BYTES data/);
    const truncatedPixels = binaryBody({ inputs: [{ name: 'image', datatype: 'UINT8', shape: [1, 224, 224, 3], parameters: { binary_data_size: 1000 } }] }, Buffer.alloc(1000));
    await assertError(post('/v2/models/default/infer', truncatedPixels.body, truncatedPixels.headers), 400, /Expected 150528 bytes .* received 1000/);
    assert.equal((await fetch(`${server.url}/v2/health/ready`)).status, 200);
  });
});

describe('dynamic batching, queue limit, timeouts (batcher test hook: pause/resume)', () => {
  it('concurrent requests run together: one execution of MAX_BATCH images (metrics prove it)', async (t) => {
    const batcher = server.models.get('default')!.batcher;
    const [count0, exec0] = [await metric('nv_inference_count'), await metric('nv_inference_exec_count')];
    batcher.pause();
    const images = [monet, degas, vanGogh];
    const responses = Array.from({ length: MAX_BATCH }, (_, i) => classify(images[i % 3]));
    await waitFor(() => batcher.queuedImages === MAX_BATCH, `${MAX_BATCH} images queued`);
    assert.equal(await metric('nv_inference_pending_request_count', { model: 'default' }), MAX_BATCH);
    batcher.resume();
    // Health stays answerable while the batch runs in the worker thread (reported, not asserted).
    const t0 = performance.now();
    assert.equal((await fetch(`${server.url}/v2/health/live`)).status, 200);
    t.diagnostic(`GET /v2/health/live during a batch of ${MAX_BATCH}: ${(performance.now() - t0).toFixed(1)} ms`);
    const answers = await Promise.all(responses);
    assert.ok(answers.every((r) => r.status === 200));
    assert.equal((await metric('nv_inference_exec_count')) - exec0, 1, 'one execution');
    assert.equal((await metric('nv_inference_count')) - count0, MAX_BATCH, 'of MAX_BATCH images');
    assert.equal(await metric('nv_inference_pending_request_count', { model: 'default' }), 0);
  });

  it('without pausing, concurrent requests still form batches (inference count > execution count)', async (t) => {
    const [count0, exec0] = [await metric('nv_inference_count'), await metric('nv_inference_exec_count')];
    const answers = await Promise.all(Array.from({ length: MAX_QUEUE }, (_, i) => classify([monet, degas, vanGogh][i % 3])));
    assert.ok(answers.every((r) => r.status === 200));
    const images = (await metric('nv_inference_count')) - count0;
    const executions = (await metric('nv_inference_exec_count')) - exec0;
    t.diagnostic(`${MAX_QUEUE} concurrent requests: ${images} images in ${executions} executions (average batch ${(images / executions).toFixed(1)})`);
    assert.equal(images, MAX_QUEUE);
    assert.ok(executions < MAX_QUEUE, `expected batches to form, got ${executions} executions for ${MAX_QUEUE} images`);
  });

  it('a full queue answers 429 with Retry-After, and the queued requests still succeed', async () => {
    const batcher = server.models.get('default')!.batcher;
    const rejected0 = await metric('nv_inference_request_failure', { reason: 'REJECTED' });
    batcher.pause();
    const { body, contentType } = multipart(Array.from({ length: MAX_QUEUE - 1 }, (_, i) => ({ name: `${i}.jpg`, bytes: monet })));
    const filling = [post(classifyUrl, body, { 'content-type': contentType }), classify(degas)];
    await waitFor(() => batcher.queuedImages === MAX_QUEUE, 'a full queue');
    const full = await classify(vanGogh);
    assert.equal(full.status, 429);
    assert.ok(Number(full.headers.get('retry-after')) >= 1, 'Retry-After in seconds');
    assert.match((await full.json()).error, /queue is full \(8 of 8 images waiting, this request has 1\)/);
    const kserveFull = await infer({ inputs: [bytesInput(monet)] });
    assert.equal(kserveFull.status, 429);
    const tooMany = multipart(Array.from({ length: MAX_QUEUE + 1 }, (_, i) => ({ name: `${i}.jpg`, bytes: monet })));
    await assertError(post(classifyUrl, tooMany.body, { 'content-type': tooMany.contentType }), 413, /at most 8 images per request \(--max-queue-size\) but received 9/);
    batcher.resume();
    const answers = await Promise.all(filling);
    assert.deepEqual(answers.map((r) => r.status), [200, 200]);
    assert.equal((await answers[0].json()).predictions.length, MAX_QUEUE - 1);
    assert.equal((await metric('nv_inference_request_failure', { reason: 'REJECTED' })) - rejected0, 3);
  });

  it('a client that goes away is dropped from the queue (CANCELED)', async () => {
    const batcher = server.models.get('default')!.batcher;
    const canceled0 = await metric('nv_inference_request_failure', { reason: 'CANCELED' });
    batcher.pause();
    const controller = new AbortController();
    const gone = fetch(`${server.url}${classifyUrl}`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: asBody(monet), signal: controller.signal }).catch((err) => err);
    await waitFor(() => batcher.queuedImages === 1, 'the request queued');
    controller.abort();
    await gone;
    await waitFor(() => batcher.queuedImages === 0, 'the request dropped');
    batcher.resume();
    await waitFor(async () => (await metric('nv_inference_request_failure', { reason: 'CANCELED' })) === canceled0 + 1, 'CANCELED counted');
  });
});

describe('per-request timeout; several models', () => {
  let short: RunningServer;
  before(async () => {
    short = await startServer({ models: ['default', 'copy=default'], port: 0, maxBatchSize: 4, requestTimeoutMs: 300, provider: 'cpu' }, silent);
  });
  after(async () => short?.close());

  it('a request still queued at --request-timeout-ms gets 504, leaves the queue, and the server goes on', async () => {
    const batcher = short.models.get('default')!.batcher;
    batcher.pause(); // nothing runs: the timeout must fire
    const res = await fetch(`${short.url}${classifyUrl}`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: asBody(monet) });
    assert.equal(res.status, 504);
    assert.match((await res.json()).error, /did not complete within 300 ms \(--request-timeout-ms\)/);
    assert.equal(batcher.queuedImages, 0, 'the timed-out image left the queue');
    batcher.resume();
    const ok = await fetch(`${short.url}${classifyUrl}`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: asBody(monet) });
    assert.equal(ok.status, 200);
    const text = await (await fetch(`${short.url}/metrics`)).text();
    assert.match(text, /nv_inference_request_failure\{model="default",version="1",reason="TIMEOUT"\} 1/);
  });

  it('a request of more images than --max-batch-size is split over batches, answers in upload order', async () => {
    const scrape = async () => (await (await fetch(`${short.url}/metrics`)).text()).split('\n');
    const value = (lines: string[], name: string) => Number(lines.find((l) => l.startsWith(`${name}{model="default"`))?.split(' ').pop() ?? 0);
    const before0 = await scrape();
    const files = [monet, degas, vanGogh, monet, degas, vanGogh].map((bytes, i) => ({ name: `${i}.jpg`, bytes }));
    const { body, contentType } = multipart(files);
    const res = await fetch(`${short.url}${classifyUrl}`, { method: 'POST', headers: { 'content-type': contentType }, body: asBody(body) });
    assert.equal(res.status, 200);
    const { predictions } = await res.json();
    assert.deepEqual(predictions.map((p: { artist: string }) => p.artist), ['claude-monet', 'edgar-degas', 'vincent-van-gogh', 'claude-monet', 'edgar-degas', 'vincent-van-gogh']);
    const after0 = await scrape();
    assert.equal(value(after0, 'nv_inference_count') - value(before0, 'nv_inference_count'), 6);
    assert.equal(value(after0, 'nv_inference_exec_count') - value(before0, 'nv_inference_exec_count'), 2, 'batches of 4 + 2 (max batch size 4)');
  });

  it('serves each --model under its own name, with its own queue and metrics', async () => {
    const { models } = await (await fetch(`${short.url}/v1/models`)).json();
    assert.deepEqual(models.map((m: { name: string }) => m.name), ['default', 'copy']);
    short.models.get('default')!.batcher.pause(); // one model's queue does not hold the other's requests
    const res = await fetch(`${short.url}/v1/models/copy:classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: asBody(vanGogh) });
    short.models.get('default')!.batcher.resume();
    assert.equal(res.status, 200);
    assert.equal((await res.json()).predictions[0].artist, 'vincent-van-gogh');
    assert.match(await (await fetch(`${short.url}/metrics`)).text(), /nv_inference_request_success\{model="copy",version="1"\} 1/);
  });
});

describe('GET /metrics', () => {
  it('is Prometheus text with Triton-named metrics, the execution provider and process memory', async () => {
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const name of [
      'nv_inference_request_success',
      'nv_inference_request_failure',
      'nv_inference_count',
      'nv_inference_exec_count',
      'nv_inference_request_duration_us',
      'nv_inference_queue_duration_us',
      'nv_inference_compute_input_duration_us',
      'nv_inference_compute_infer_duration_us',
      'nv_inference_compute_output_duration_us',
      'nv_inference_pending_request_count',
      'artist_id_batch_size',
      'artist_id_request_duration_seconds',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exposed`);
    }
    assert.match(text, /^artist_id_model_info\{model="default",version="1",execution_provider="cpu"\} 1$/m);
    const success = await metric('nv_inference_request_success');
    const count = await metric('nv_inference_count');
    const executions = await metric('nv_inference_exec_count');
    assert.ok(success > 0 && count >= success && executions > 0 && count / executions > 1, `average batch size ${count / executions}`);
    for (const stage of ['request', 'queue', 'compute_input', 'compute_infer', 'compute_output']) {
      assert.ok((await metric(`nv_inference_${stage}_duration_us`)) > 0, `${stage} duration accumulates`);
    }
    assert.ok((await metric('process_resident_memory_bytes')) > 10e6);
  });
});

describe('OpenAPI document, web page, service options', () => {
  it('serves docs/openapi.json, and every documented path is answered (not "No endpoint")', async () => {
    const served = await (await fetch(`${server.url}/openapi.json`)).json();
    assert.deepEqual(served, JSON.parse(await readFile(OPENAPI_PATH, 'utf8')));
    assert.ok(served.openapi.startsWith('3.'));
    for (const [path, ops] of Object.entries(served.paths as Record<string, Record<string, unknown>>)) {
      const url = `${server.url}${path.replace('{name}', 'default').replace('{version}', '1')}`;
      for (const method of Object.keys(ops)) {
        const res = await fetch(url, method === 'post' ? { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' } : {});
        const text = await res.text();
        assert.doesNotMatch(text, /No endpoint/, `${method.toUpperCase()} ${path}`);
        assert.ok(res.status !== 404, `${method.toUpperCase()} ${path}: ${res.status}`);
      }
    }
    const page = await (await fetch(server.url)).text();
    assert.match(page, /<input id="file" type="file"/);
  });

  it('checks options with errors that name the parameter', () => {
    assert.ok(SERVE_DEFAULTS.bodyLimitMb >= 50);
    assert.throws(() => resolveServeOptions({ maxBatchSize: 0 }), /Expected integer between 1 and 4096 for maxBatchSize but received 0 of type number/);
    assert.throws(() => resolveServeOptions({ maxQueueDelayMs: -1 }), /for maxQueueDelayMs but received -1/);
    assert.throws(() => resolveServeOptions({ models: ['no-such-model'] }), /no-such-model/);
    assert.throws(() => resolveServeOptions({ models: ['default', 'default'] }), /distinct model names \(default is given twice/);
    assert.deepEqual(resolveServeOptions({ models: ['paintings=default'] }).modelSpecs.map((s) => s.name), ['paintings']);
  });

  it('execution provider: CUDA required but unavailable fails at start; silent-fallback detector parses ldd', async () => {
    await assert.rejects(startServer({ port: 0, provider: 'cuda', strictProvider: true }, silent), /--strict-provider requires the CUDA execution provider, but/);
    assert.deepEqual(parseLddNotFound('\tlibcudart.so.12 => not found\n\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x1)\n\tlibcudnn.so.9 => not found\n'), ['libcudart.so.12', 'libcudnn.so.9']);
  });
});
