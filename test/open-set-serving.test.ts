/**
 * `unknown` end to end on real paintings: the shipped model re-encoded with an `openSet` entry (see
 * open-set-fixtures.ts) answers unknown for a threshold that rejects everything and not for one that
 * accepts everything, in `classify` rows (JSONL, CSV, resume), the simple API and the Open Inference
 * Protocol; the top-k artists stay in every answer. The shipped model (no `openSet`) answers as before.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { CSV_HEADER, CSV_HEADER_OPEN_SET, parseCsvRecord } from '../src/archive/output.js';
import { classifyArchive } from '../src/archive/run.js';
import { Classifier } from '../src/inference/classifier.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { paintingOf } from './fixtures.js';
import { ACCEPT_ALL, REJECT_ALL, writeClosedSetModel, writeOpenSetModel } from './open-set-fixtures.js';

let tmp: string;
const models: Record<string, string> = {};
const paintings = [paintingOf('claude-monet', 1), paintingOf('edgar-degas', 1)];

before(async () => {
  tmp = await mkdtemp(join(os.tmpdir(), 'artist-id-open-set-'));
  models['msp-reject'] = await writeOpenSetModel(tmp, 'msp-reject', 'msp', REJECT_ALL);
  models['msp-accept'] = await writeOpenSetModel(tmp, 'msp-accept', 'msp', ACCEPT_ALL);
  models['maha-reject'] = await writeOpenSetModel(tmp, 'maha-reject', 'mahalanobis', REJECT_ALL);
  models['maha-accept'] = await writeOpenSetModel(tmp, 'maha-accept', 'mahalanobis', ACCEPT_ALL);
  models['energy-accept'] = await writeOpenSetModel(tmp, 'energy-accept', 'energy', ACCEPT_ALL);
  models.plain = await writeClosedSetModel(tmp, 'plain');
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Rows of a JSONL file. */
async function jsonl(path: string): Promise<Record<string, unknown>[]> {
  return (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
}

describe('classify rows', () => {
  for (const kind of ['msp', 'maha', 'energy'] as const) {
    for (const verdict of ['reject', 'accept'] as const) {
      if (kind === 'energy' && verdict === 'reject') continue;
      it(`${kind}, threshold that ${verdict}s everything: unknown ${verdict === 'reject'}, top-k kept`, async () => {
        const clf = await Classifier.load(models[`${kind}-${verdict}`], { provider: 'cpu' });
        try {
          const out = join(tmp, `${kind}-${verdict}.jsonl`);
          const summary = await classifyArchive({ inputs: paintings, classifier: clf, out, progress: false, topK: 3 });
          const rows = await jsonl(out);
          assert.equal(rows.length, 2);
          for (const row of rows) {
            assert.equal(row.unknown, verdict === 'reject');
            assert.equal(typeof row.open_set_score, 'number');
            assert.equal((row.top_k as unknown[]).length, 3, 'top-k artists are kept');
            assert.equal(typeof row.artist, 'string');
            assert.deepEqual(Object.keys(row), ['path', 'artist', 'probability', 'top_k', 'unknown', 'open_set_score', 'error', 'model']);
          }
          assert.equal(summary.unknown, verdict === 'reject' ? 2 : 0);
          if (kind === 'msp') for (const row of rows) assert.equal(row.open_set_score, row.probability, 'msp is the top-1 probability');
          if (kind === 'maha') for (const row of rows) assert.ok((row.open_set_score as number) < 0, 'minus a squared norm');
          if (kind === 'energy') for (const row of rows) assert.ok((row.open_set_score as number) >= Math.log(row.probability as number) - 1e-3, 'logsumexp >= top logit');
        } finally {
          await clf.dispose();
        }
      });
    }
  }

  it('CSV: open-set columns after the old ones, and resume keeps them', async () => {
    const clf = await Classifier.load(models['msp-reject'], { provider: 'cpu' });
    try {
      const out = join(tmp, 'reject.csv');
      await classifyArchive({ inputs: [paintings[0]], classifier: clf, out, progress: false });
      await classifyArchive({ inputs: paintings, classifier: clf, out, progress: false, resume: true });
      const lines = (await readFile(out, 'utf8')).trim().split('\n');
      assert.equal(lines[0], CSV_HEADER_OPEN_SET);
      assert.equal(lines.length, 3, 'header + one row per painting, none duplicated');
      for (const line of lines.slice(1)) {
        const fields = parseCsvRecord(line);
        assert.equal(fields.length, 8);
        assert.equal(fields[6], 'true');
        assert.ok(Number(fields[7]) > 0 && Number(fields[7]) <= 1);
      }
    } finally {
      await clf.dispose();
    }
  });

  it('a model without openSet writes the rows it always wrote, and cannot resume an open-set CSV', async () => {
    const clf = await Classifier.load(models.plain, { provider: 'cpu' });
    try {
      const out = join(tmp, 'plain.jsonl');
      await classifyArchive({ inputs: [paintings[0]], classifier: clf, out, progress: false });
      const [row] = await jsonl(out);
      assert.deepEqual(Object.keys(row), ['path', 'artist', 'probability', 'top_k', 'error', 'model']);
      const csv = join(tmp, 'plain.csv');
      await classifyArchive({ inputs: [paintings[0]], classifier: clf, out: csv, progress: false });
      assert.equal((await readFile(csv, 'utf8')).split('\n')[0], CSV_HEADER);
      await assert.rejects(classifyArchive({ inputs: paintings, classifier: clf, out: join(tmp, 'reject.csv'), progress: false, resume: true, modelId: 'x' }), /Expected the CSV header "path,artist,probability,top_k,error,model" in .*reject\.csv to resume it \(this run's model has no open-set columns\)/);
    } finally {
      await clf.dispose();
    }
  });
});

describe('HTTP API', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer({ port: 0, host: '127.0.0.1', provider: 'cpu', models: [`plain=${models.plain}`, `reject=${models['maha-reject']}`, `accept=${models['maha-accept']}`] }, pino({ level: 'silent' }));
  });
  after(async () => {
    await server?.close();
  });
  const image = () => readFile(paintings[0]);
  const classify = async (name: string) => {
    const res = await fetch(`${server.url}/v1/models/${name}:classify?top_k=4`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(await image()) });
    assert.equal(res.status, 200);
    return (await res.json()).predictions[0];
  };

  it('simple API: unknown and the score with the top-k; nothing new for a model without openSet', async () => {
    const rejected = await classify('reject');
    assert.equal(rejected.unknown, true);
    assert.equal(rejected.top_k.length, 4);
    assert.equal(typeof rejected.open_set_score, 'number');
    const accepted = await classify('accept');
    assert.equal(accepted.unknown, false);
    assert.equal(accepted.open_set_score, rejected.open_set_score, 'same graph, same score; only the threshold differs');
    assert.deepEqual(accepted.top_k, rejected.top_k);
    const plain = await classify('plain');
    assert.deepEqual(Object.keys(plain), ['file', 'artist', 'probability', 'top_k', 'error']);
    assert.deepEqual(plain.top_k, accepted.top_k, 'the open-set output leaves the probabilities alone');
    const listed = (await (await fetch(`${server.url}/v1/models`)).json()).models;
    const byName = Object.fromEntries(listed.map((m: { name: string }) => [m.name, m]));
    assert.equal(byName.plain.open_set, null);
    assert.equal(byName.reject.open_set.threshold, REJECT_ALL);
    assert.equal(byName.reject.open_set.score, 'mahalanobis');
  });

  it('Open Inference Protocol: open_set_score FP32 [N] and unknown BOOL [N], JSON and binary', async () => {
    const b64 = (await image()).toString('base64');
    const body = { inputs: [{ name: 'image_bytes', datatype: 'BYTES', shape: [2], data: [b64, b64] }] };
    const res = await fetch(`${server.url}/v2/models/reject/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 200);
    const outputs = Object.fromEntries((await res.json()).outputs.map((o: { name: string }) => [o.name, o]));
    assert.deepEqual(Object.keys(outputs), ['probabilities', 'logits', 'features', 'open_set_score', 'unknown']);
    assert.deepEqual(outputs.unknown, { name: 'unknown', datatype: 'BOOL', shape: [2], data: [true, true] });
    assert.equal(outputs.open_set_score.datatype, 'FP32');
    assert.deepEqual(outputs.open_set_score.shape, [2]);

    const binary = { ...body, outputs: [{ name: 'unknown', parameters: { binary_data: true } }, { name: 'open_set_score', parameters: { binary_data: true } }] };
    const bres = await fetch(`${server.url}/v2/models/accept/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(binary) });
    assert.equal(bres.status, 200);
    const headerLength = Number(bres.headers.get('inference-header-content-length'));
    const raw = Buffer.from(await bres.arrayBuffer());
    const header = JSON.parse(raw.subarray(0, headerLength).toString('utf8'));
    assert.deepEqual(header.outputs.map((o: { parameters: { binary_data_size: number } }) => o.parameters.binary_data_size), [2, 8]);
    assert.deepEqual([...raw.subarray(headerLength, headerLength + 2)], [0, 0], 'BOOL false, one byte each');
    const scores = new Float32Array(raw.buffer.slice(raw.byteOffset + headerLength + 2, raw.byteOffset + headerLength + 10));
    assert.ok(Math.abs(scores[0] - outputs.open_set_score.data[0]) < 1e-3 * Math.abs(scores[0]));

    const meta = await (await fetch(`${server.url}/v2/models/reject`)).json();
    assert.deepEqual(meta.outputs.slice(3), [{ name: 'open_set_score', datatype: 'FP32', shape: [-1] }, { name: 'unknown', datatype: 'BOOL', shape: [-1] }]);
    assert.equal(meta.parameters.open_set.unknown_when, 'open_set_score < threshold');
    const plainMeta = await (await fetch(`${server.url}/v2/models/plain`)).json();
    assert.equal(plainMeta.outputs.length, 3);
    assert.equal(plainMeta.parameters.open_set, undefined);

    const bad = await fetch(`${server.url}/v2/models/reject/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, outputs: [{ name: 'unknown', parameters: { classification: 2 } }] }) });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error, /Expected classification on probabilities or logits but received it on unknown/);
    const notThere = await fetch(`${server.url}/v2/models/plain/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, outputs: [{ name: 'unknown' }] }) });
    assert.equal(notThere.status, 400, 'a model without openSet has no unknown output');
  });
});
