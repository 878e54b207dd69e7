/**
 * The archive engine (walk, output, run) on a real folder tree of paintings with the usual archive
 * debris: truncated, empty and fake images, non-image files, odd names, a symlink loop.
 *
 * The classifier here is a test double whose probabilities are computed from the decoded pixels
 * (normalised channel means), so every row can be checked against its own file; the real ONNX model
 * is exercised by the end-to-end test elsewhere. These tests cover the engine's mechanics.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { formatSummary, classifyArchive, progressByDefault, type ArchiveClassifier } from '../src/archive/run.js';
import { CSV_HEADER, readCompleted, type ArchiveRow } from '../src/archive/output.js';
import { createWalkStats, walkImages } from '../src/archive/walk.js';
import type { BatchResult } from '../src/inference/classifier.js';
import { modelCardSchema, type ModelCard } from '../src/model/card.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { paintingOf } from './fixtures.js';

/** Shared paintings live beside the repository (in CI too), never at a fixed absolute path. */
const PAINTINGS = path.resolve(PACKAGE_ROOT, '../shared/paintings');
const CLASSES = ['red-leaning', 'green-leaning', 'blue-leaning'];

const CARD: ModelCard = modelCardSchema.parse({
  format: 'artist-id/1',
  name: 'test-double',
  classes: CLASSES,
  preprocessing: DEFAULT_PREPROCESS,
  input: 'images',
  outputs: { probabilities: 'probabilities', logits: 'logits', features: 'features' },
  base: { name: 'none', sha256: '0'.repeat(64), featureDim: 3 },
  training: {
    method: 'none', data: 'none', layout: 'flat', seed: 0, split: [0, 0, 0], epochs: 0, bestEpoch: 0,
    backend: 'none', hyperparameters: {}, seconds: 0,
  },
  metrics: { train: { images: 0, accuracy: 0 }, validation: { images: 0, accuracy: 0 } },
  parity: { images: 0, maxAbsDiff: 0, tolerance: 0 },
  createdAt: '2024-01-01T00:00:00Z',
});

/** Mean R, G, B of a decoded `[H,W,3]` image, scaled to sum to 1: a "prediction" from the pixels. */
function channelMeans(pixels: Uint8Array): Float32Array {
  const sums = [0, 0, 0];
  for (let i = 0; i < pixels.length; i++) sums[i % 3] += pixels[i];
  const total = sums[0] + sums[1] + sums[2] || 1;
  return Float32Array.from(sums, (s) => s / total);
}

interface FakeClassifier extends ArchiveClassifier {
  /** Number of images of each `run` call, in call order. */
  calls: number[];
}

/** Test double: see the file comment. `failOnCall` (1-based) makes that `run` call throw. */
function fakeClassifier(options: { failOnCall?: number } = {}): FakeClassifier {
  const calls: number[] = [];
  return {
    calls,
    card: CARD,
    provider: 'cpu',
    async run(images: Uint8Array[]): Promise<BatchResult> {
      calls.push(images.length);
      await new Promise((resolve) => setTimeout(resolve, 2)); // inference takes time: overlap with decoding
      if (calls.length === options.failOnCall) throw new Error('simulated CUDA out of memory');
      return { probabilities: images.map(channelMeans), inferenceMs: 2 };
    },
  };
}

let tmp: string;
let archive: string;
let explicitFile: string;
/** Every file the walk must yield, in walk order. */
let walkOrder: string[];
const BAD = new Map<string, RegExp>();

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'artist-id-archive-'));
  archive = path.join(tmp, 'archive');
  const painting = (artist: string, i: number) => readdirSorted(path.join(PAINTINGS, artist)).then((f) => path.join(PAINTINGS, artist, f[i]));
  const put = async (rel: string, from: string) => {
    await mkdir(path.dirname(path.join(archive, rel)), { recursive: true });
    await copyFile(from, path.join(archive, rel));
  };
  await put('monet/a1.jpg', await painting('claude-monet', 0));
  await put('monet/a2.jpg', await painting('claude-monet', 1));
  await put('monet/sub/deeper/a3.jpg', await painting('claude-monet', 2));
  await put('degas/d1.jpg', await painting('edgar-degas', 0));
  await put('degas/d2.JPEG', await painting('edgar-degas', 1));
  await put('mixed/with, "quote".jpg', await painting('alfred-sisley', 0));
  await mkdir(path.join(archive, 'bad'), { recursive: true });
  const real = await readFile(await painting('childe-hassam', 0));
  await writeFile(path.join(archive, 'bad/truncated.jpg'), real.subarray(0, Math.floor(real.length * 0.3)));
  await writeFile(path.join(archive, 'bad/empty.jpg'), '');
  await writeFile(path.join(archive, 'bad/fake.png'), 'This is a text file, not a PNG.\n');
  await sharp(await painting('eugene-boudin', 0)).png().toFile(path.join(archive, 'mixed/Upper.PNG'));
  await writeFile(path.join(archive, 'notes.txt'), 'notes\n');
  await writeFile(path.join(archive, 'README.md'), '# scans\n');
  await symlink(archive, path.join(archive, 'loop')); // a symlink loop: must not hang the walk
  explicitFile = path.join(tmp, 'explicit', 'painting.data');
  await mkdir(path.dirname(explicitFile));
  await copyFile(await painting('camille-pissarro', 0), explicitFile);

  // Code-unit order per folder: uppercase before lowercase, files and folders interleaved by name.
  walkOrder = [
    'bad/empty.jpg', 'bad/fake.png', 'bad/truncated.jpg',
    'degas/d1.jpg', 'degas/d2.JPEG',
    'mixed/Upper.PNG', 'mixed/with, "quote".jpg',
    'monet/a1.jpg', 'monet/a2.jpg', 'monet/sub/deeper/a3.jpg',
  ].map((rel) => path.join(archive, rel)).concat(explicitFile);
  BAD.set(path.join(archive, 'bad/empty.jpg'), /empty file \(0 bytes\)/);
  BAD.set(path.join(archive, 'bad/fake.png'), /not a recognised image format/);
  BAD.set(path.join(archive, 'bad/truncated.jpg'), /^Could not decode jpeg image: /);
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function readdirSorted(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith('.jpg')).sort();
}

const inputs = () => [archive, explicitFile];

function readJsonl(text: string): ArchiveRow[] {
  assert.ok(text === '' || text.endsWith('\n'), 'output ends with a newline');
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as ArchiveRow);
}

/** Independent RFC 4180 reader (not the engine's parser): records may contain quoted newlines. */
function readCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') record.push(field), (field = '');
    else if (c === '\n') record.push(field), records.push(record), (record = []), (field = '');
    else field += c;
  }
  assert.equal(field + record.join(''), '', 'CSV ends with a complete record');
  return records;
}

/** What the test double must have predicted for a file, computed here from the file itself. */
async function expectedProbabilities(file: string): Promise<number[]> {
  return Array.from(channelMeans(await decodeImage(await readFile(file), DEFAULT_PREPROCESS)));
}

async function assertRowsMatchFiles(rows: ArchiveRow[]): Promise<void> {
  for (const row of rows) {
    const bad = BAD.get(row.path);
    if (bad) {
      assert.match(row.error ?? '', bad, row.path);
      assert.equal(row.artist, null);
      assert.equal(row.probability, null);
      assert.deepEqual(row.top_k, []);
      continue;
    }
    assert.equal(row.error, null, `${row.path}: ${row.error}`);
    const expected = await expectedProbabilities(row.path);
    const best = expected.indexOf(Math.max(...expected));
    assert.equal(row.artist, CLASSES[best], row.path);
    assert.equal(row.probability, row.top_k[0].probability);
    assert.equal(row.top_k.length, 3);
    for (const t of row.top_k) assert.ok(Math.abs(t.probability - expected[CLASSES.indexOf(t.artist)]) < 1e-6, `${row.path} ${t.artist}`);
  }
}

describe('walkImages', () => {
  it('yields image files depth-first in sorted order, counts the rest, survives a symlink loop', async () => {
    const stats = createWalkStats();
    const seen: string[] = [];
    for await (const file of walkImages(inputs(), { stats })) seen.push(file);
    assert.deepEqual(seen, walkOrder);
    assert.equal(stats.skipped, 2);
    assert.deepEqual(stats.skippedExamples, [path.join(archive, 'README.md'), path.join(archive, 'notes.txt')]);
    assert.equal(stats.revisitedFolders, 1, 'the loop symlink is not entered');
  });

  it('rejects a missing input before yielding anything, naming it as typed', async () => {
    const walk = walkImages([archive, 'nope']);
    await assert.rejects(walk.next(), { message: 'Expected an existing file or folder for input "nope" but it does not exist' });
  });
});

describe('classifyArchive', () => {
  it('writes one JSONL row per attempted file, in walk order, with errors for the bad files', async () => {
    const out = path.join(tmp, 'out', 'results.jsonl');
    const classifier = fakeClassifier();
    const seen: ArchiveRow[] = [];
    const summary = await classifyArchive({ inputs: inputs(), classifier, out, batchSize: 3, decodeConcurrency: 2, progress: false, onRow: (r) => seen.push(r) });

    const rows = readJsonl(await readFile(out, 'utf8'));
    assert.deepEqual(rows.map((r) => r.path), walkOrder);
    assert.deepEqual(seen, rows);
    await assertRowsMatchFiles(rows);
    assert.ok(classifier.calls.every((n) => n >= 1 && n <= 3), `batch sizes ${classifier.calls}`);
    assert.equal(classifier.calls.reduce((a, b) => a + b, 0), walkOrder.length - BAD.size, 'each decodable file classified once');

    assert.equal(summary.attempted, walkOrder.length);
    assert.equal(summary.succeeded, walkOrder.length - 3);
    assert.equal(summary.failed, 3);
    assert.equal(summary.skippedNonImages, 2);
    assert.equal(summary.skippedResumed, 0);
    assert.equal(summary.provider, 'cpu');
    assert.equal(summary.outPath, out);
    assert.ok(summary.imagesPerSecond > 0 && summary.seconds > 0);
    const text = formatSummary(summary);
    for (const line of [/attempted: +11/, /ok: +8/, /failed: +3/, /not images: +2 .*README\.md/, /resumed: +0/, /images\/s, provider cpu/, new RegExp(`output: +${out.replace(/[.\\]/g, '\\$&')}`)]) {
      assert.match(text, line);
    }
  });

  it('writes CSV that parses back, quoting a path with a comma and a quote', async () => {
    const out = path.join(tmp, 'results.csv');
    const summary = await classifyArchive({ inputs: inputs(), classifier: fakeClassifier(), out, batchSize: 4, progress: false });
    const [header, ...records] = readCsv(await readFile(out, 'utf8'));
    assert.equal(header.join(','), CSV_HEADER);
    assert.deepEqual(records.map((r) => r[0]), walkOrder);
    assert.ok(records.some((r) => r[0].endsWith('with, "quote".jpg')));
    assert.ok(records.every((r) => r.length === 6));
    const rows: ArchiveRow[] = records.map(([p, artist, probability, topK, error, model]) => {
      return {
        path: p,
        artist: artist || null,
        probability: probability === '' ? null : Number(probability),
        top_k: topK === '' ? [] : topK.split(';').map((t) => ({ artist: t.split(':')[0], probability: Number(t.split(':')[1]) })),
        error: error || null,
        model,
      };
    });
    await assertRowsMatchFiles(rows);
    assert.ok(rows.every((r) => r.model === summary.model), 'every CSV row names the model');
    assert.equal(summary.failed, 3);
  });

  it('turns a failed batch into error rows and carries on', async () => {
    const out = path.join(tmp, 'batch-failure.jsonl');
    const classifier = fakeClassifier({ failOnCall: 2 });
    const summary = await classifyArchive({ inputs: inputs(), classifier, out, batchSize: 3, progress: false });
    const rows = readJsonl(await readFile(out, 'utf8'));
    assert.deepEqual(rows.map((r) => r.path), walkOrder);
    // Batches of 3 in walk order: the first holds the 3 bad files (no image, no run call), so the
    // 2nd call is the 3rd batch: `with, "quote".jpg`, a1, a2.
    const failedBatch = walkOrder.slice(6, 9);
    for (const row of rows) {
      if (failedBatch.includes(row.path)) {
        assert.match(row.error ?? '', /^Inference failed for a batch of 3 images: simulated CUDA out of memory$/);
        assert.equal(row.artist, null);
      }
    }
    await assertRowsMatchFiles(rows.filter((r) => !failedBatch.includes(r.path)));
    assert.equal(summary.failed, 3 + 3);
    assert.equal(summary.succeeded, walkOrder.length - 6);
    assert.ok(classifier.calls.length >= 3, 'later batches still ran');
  });

  for (const ext of ['jsonl', 'csv'] as const) {
    it(`resumes a killed ${ext} run: no lost, duplicated or re-run rows`, async () => {
      const out = path.join(tmp, `resume.${ext}`);
      await classifyArchive({ inputs: inputs(), classifier: fakeClassifier(), out, batchSize: 2, progress: false });
      const full = await readFile(out, 'utf8');
      const lines = full.split('\n').slice(0, -1); // complete records (no newlines in these paths)

      // Simulate a killed run: rows for walkOrder[1] and [4] never written, last row half-written.
      const offset = ext === 'csv' ? 1 : 0; // CSV header
      const lost = [walkOrder[1], walkOrder[4], walkOrder[walkOrder.length - 1]];
      const kept = lines.filter((_, i) => i < offset || !lost.includes(walkOrder[i - offset]));
      const last = lines[lines.length - 1];
      await writeFile(out, `${kept.join('\n')}\n${last.slice(0, Math.floor(last.length / 2))}`);

      const classifier = fakeClassifier();
      const rerun: string[] = [];
      const summary = await classifyArchive({ inputs: inputs(), classifier, out, resume: true, batchSize: 2, progress: false, onRow: (r) => rerun.push(r.path) });

      assert.deepEqual(rerun, lost, 'only the missing rows were classified again, in walk order');
      assert.equal(classifier.calls.reduce((a, b) => a + b, 0), lost.filter((p) => !BAD.has(p)).length);
      assert.equal(summary.skippedResumed, walkOrder.length - lost.length);
      assert.equal(summary.attempted, lost.length);

      const text = await readFile(out, 'utf8');
      const paths = ext === 'csv' ? readCsv(text).slice(1).map((r) => r[0]) : readJsonl(text).map((r) => r.path);
      assert.equal(new Set(paths).size, paths.length, 'no duplicates');
      assert.deepEqual([...paths].sort(), [...walkOrder].sort(), 'exactly one row per file');
      if (ext === 'csv') assert.equal(text.split('\n')[0], CSV_HEADER, 'header written once');
      assert.equal(text.split(CSV_HEADER).length, ext === 'csv' ? 2 : 1);

      // Resuming a finished run does nothing and changes nothing.
      const again = await classifyArchive({ inputs: inputs(), classifier: fakeClassifier(), out, resume: true, progress: false });
      assert.equal(again.attempted, 0);
      assert.equal(again.exitCode, 0, 'nothing left to do is a success');
      assert.equal(await readFile(out, 'utf8'), text);
    });
  }

  it('checks options and inputs before touching the output file', async () => {
    const out = path.join(tmp, 'precious.jsonl');
    await writeFile(out, '{"path":"x"}\n');
    const base = { inputs: inputs(), classifier: fakeClassifier(), out, progress: false };
    const missing = path.relative(process.cwd(), path.join(tmp, 'missing-folder'));
    await assert.rejects(classifyArchive({ ...base, inputs: [archive, missing] }), { message: `Expected an existing file or folder for input "${missing}" but it does not exist` });
    await assert.rejects(classifyArchive({ ...base, batchSize: 0 }), { message: 'Expected positive integer for batchSize but received 0 of type number' });
    await assert.rejects(classifyArchive({ ...base, topK: 1.5 }), /Expected positive integer for topK/);
    await assert.rejects(classifyArchive({ ...base, decodeConcurrency: -1 }), /Expected positive integer for decodeConcurrency/);
    await assert.rejects(classifyArchive({ ...base, out: path.join(tmp, 'results.txt') }), /Expected a file name ending in \.jsonl, \.ndjson or \.csv for --out/);
    await assert.rejects(classifyArchive({ ...base, out: undefined, resume: true }), { message: 'Expected --out <file> with --resume (the output file to continue) but received no --out' });
    await assert.rejects(classifyArchive({ ...base, resume: true, overwrite: true }), /Expected either --resume .* or --overwrite .* but received both/);
    await assert.rejects(classifyArchive({ ...base, inputs: [] }), /Expected at least one file or folder for inputs/);
    assert.equal(await readFile(out, 'utf8'), '{"path":"x"}\n');
  });
});

describe('readCompleted', () => {
  it('drops an unparsable last line and keeps the rest', async () => {
    const out = path.join(tmp, 'tail.jsonl');
    await writeFile(out, '{"path":"a"}\n{"path":"b"}\n{"path":"c","art\n');
    assert.deepEqual([...(await readCompleted(out))], ['a', 'b']);
    assert.equal(await readFile(out, 'utf8'), '{"path":"a"}\n{"path":"b"}\n');
  });

  it('keeps a quoted newline inside a CSV path and drops a half record', async () => {
    const out = path.join(tmp, 'newline.csv');
    await writeFile(out, `${CSV_HEADER}\n"line\nbreak.jpg",x,0.5,x:0.5,,m@1\nhalf.jpg,x,0.`);
    assert.deepEqual([...(await readCompleted(out))], ['line\nbreak.jpg']);
    assert.equal(await readFile(out, 'utf8'), `${CSV_HEADER}\n"line\nbreak.jpg",x,0.5,x:0.5,,m@1\n`);
  });

  it('refuses to cut good rows after a damaged one, or a file that is not an output', async () => {
    const damaged = path.join(tmp, 'damaged.jsonl');
    await writeFile(damaged, '{"path":"a"}\nnot json\n{"path":"c"}\n');
    await assert.rejects(readCompleted(damaged), /record 2 .* is damaged but more rows follow/);
    const other = path.join(tmp, 'other.csv');
    await writeFile(other, 'name,age\nx,1\n');
    await assert.rejects(readCompleted(other), /to start with the CSV header/);
    assert.equal(await readFile(other, 'utf8'), 'name,age\nx,1\n');
    assert.deepEqual([...(await readCompleted(path.join(tmp, 'does-not-exist.jsonl')))], []);
  });
});

describe('model provenance and --resume safety', () => {
  const A = 'test-double@aaaaaaaaaaaa';
  const B = 'test-double@bbbbbbbbbbbb';

  /** A finished run of `modelId`, then its last row cut in half as a killed run leaves it. */
  async function killedRun(out: string, options: { modelId: string; topK?: number }): Promise<string> {
    await classifyArchive({ inputs: inputs(), classifier: fakeClassifier(), out, progress: false, ...options });
    const text = await readFile(out, 'utf8');
    const cut = text.slice(0, text.length - 20);
    await writeFile(out, cut);
    return cut;
  }

  it('names the model on every row: card name @ sha256 of the model file, or the modelId given', async () => {
    // Any real file stands in for the model file here: the id hashes its bytes.
    const modelFile = paintingOf('claude-monet', 3);
    const expected = `test-double@${createHash('sha256').update(await readFile(modelFile)).digest('hex').slice(0, 12)}`;
    const out = path.join(tmp, 'provenance.jsonl');
    const summary = await classifyArchive({ inputs: inputs(), classifier: { ...fakeClassifier(), path: modelFile }, out, progress: false });
    assert.equal(summary.model, expected);
    const rows = readJsonl(await readFile(out, 'utf8'));
    assert.equal(rows.length, walkOrder.length);
    assert.ok(rows.every((r) => r.model === expected), 'error rows too');
    assert.match(formatSummary(summary), new RegExp(`model: +${expected}`));

    const explicit = await classifyArchive({ inputs: [explicitFile], classifier: fakeClassifier(), out: path.join(tmp, 'provenance-id.jsonl'), modelId: A, progress: false });
    assert.equal(explicit.model, A);
    assert.equal(readJsonl(await readFile(path.join(tmp, 'provenance-id.jsonl'), 'utf8'))[0].model, A);
  });

  for (const ext of ['jsonl', 'csv'] as const) {
    it(`refuses to resume a ${ext} file of another model or --top-k, before changing a byte`, async () => {
      const out = path.join(tmp, `other-model.${ext}`);
      const before = await killedRun(out, { modelId: A });
      const resume = { inputs: inputs(), classifier: fakeClassifier(), out, resume: true, progress: false };
      await assert.rejects(classifyArchive({ ...resume, modelId: B }), (err: Error) => {
        assert.match(err.message, new RegExp(`model ${B} .* but row 1 was written by model ${A}`));
        assert.match(err.message, /--overwrite/);
        return true;
      });
      // Row 4 is the first without an error (the bad files come first): error rows list no artists.
      await assert.rejects(classifyArchive({ ...resume, modelId: A, topK: 2 }), /Expected rows with 2 artists in top_k .* but row 4 lists 3; resume with --top-k 3/);
      assert.equal(await readFile(out, 'utf8'), before, 'the half-written last row is not even cut off');
      const summary = await classifyArchive({ ...resume, modelId: A });
      assert.equal(summary.attempted, 1);
    });
  }

  it('refuses to resume a file without model provenance, saying how to start fresh', async () => {
    const jsonl = path.join(tmp, 'old.jsonl');
    const old = '{"path":"a.jpg","artist":"x","probability":0.9,"top_k":[{"artist":"x","probability":0.9}],"error":null}\n';
    await writeFile(jsonl, old);
    const resume = { inputs: inputs(), classifier: fakeClassifier(), resume: true, progress: false, modelId: A };
    await assert.rejects(classifyArchive({ ...resume, out: jsonl }), /row 1 has no "model": .* another --out file, or --overwrite to replace this one/);
    assert.equal(await readFile(jsonl, 'utf8'), old);
    const csv = path.join(tmp, 'old.csv');
    await writeFile(csv, 'path,artist,probability,top_k,error\na.jpg,x,0.9,x:0.9,\n');
    await assert.rejects(classifyArchive({ ...resume, out: csv }), /has no model column: .* --overwrite/);
    assert.equal(await readFile(csv, 'utf8'), 'path,artist,probability,top_k,error\na.jpg,x,0.9,x:0.9,\n');
  });

  it('matches resumed rows by absolute path, keeping the path text as typed', async () => {
    const out = path.join(tmp, 'relative.jsonl');
    const relative = [path.relative(process.cwd(), archive), path.relative(process.cwd(), explicitFile)];
    assert.ok(relative.every((p) => !path.isAbsolute(p)));
    await classifyArchive({ inputs: relative, classifier: fakeClassifier(), out, progress: false });
    const text = await readFile(out, 'utf8');
    const rows = readJsonl(text);
    assert.deepEqual(rows.map((r) => path.resolve(r.path)), walkOrder);
    assert.ok(rows.every((r) => !path.isAbsolute(r.path)), 'rows keep the relative paths typed');
    await writeFile(out, text.slice(0, text.length - 20)); // killed during the last row

    const classifier = fakeClassifier();
    const rerun: string[] = [];
    const summary = await classifyArchive({ inputs: inputs(), classifier, out, resume: true, progress: false, onRow: (r) => rerun.push(r.path) });
    assert.deepEqual(rerun, [explicitFile], 'only the half-written row is redone, under the path typed this time');
    assert.equal(summary.skippedResumed, walkOrder.length - 1);
    assert.equal(readJsonl(await readFile(out, 'utf8')).length, walkOrder.length, 'no duplicates');
  });

  it('refuses to replace a non-empty output unless --overwrite (or --resume) is given', async () => {
    const out = path.join(tmp, 'existing.jsonl');
    await writeFile(out, '{"path":"precious.jpg"}\n');
    const base = { inputs: [explicitFile], classifier: fakeClassifier(), out, progress: false };
    await assert.rejects(classifyArchive(base), (err: Error) => {
      assert.match(err.message, /^Expected a new or empty file for --out but received ".*existing\.jsonl" of type string, which already holds 24 bytes: add --resume to continue it, or --overwrite to replace it$/);
      return true;
    });
    assert.equal(await readFile(out, 'utf8'), '{"path":"precious.jpg"}\n');
    await classifyArchive({ ...base, overwrite: true });
    assert.deepEqual(readJsonl(await readFile(out, 'utf8')).map((r) => r.path), [explicitFile]);

    const empty = path.join(tmp, 'empty.csv');
    await writeFile(empty, '');
    await classifyArchive({ ...base, out: empty }); // an empty file holds nothing to lose
    assert.equal(readCsv(await readFile(empty, 'utf8')).length, 2);
  });

  it('writes .ndjson as JSON Lines and refuses .json, suggesting .jsonl', async () => {
    const base = { inputs: [explicitFile], classifier: fakeClassifier(), progress: false };
    await assert.rejects(classifyArchive({ ...base, out: path.join(tmp, 'r.json') }), (err: Error) => {
      assert.match(err.message, /^Expected a file name ending in \.jsonl, \.ndjson or \.csv for --out but received ".*r\.json" .*JSON Lines .*name the file ".*r\.jsonl"$/);
      return true;
    });
    await assert.rejects(stat(path.join(tmp, 'r.json')), { code: 'ENOENT' });
    await classifyArchive({ ...base, out: path.join(tmp, 'r.ndjson') });
    assert.equal(readJsonl(await readFile(path.join(tmp, 'r.ndjson'), 'utf8'))[0].path, explicitFile);
  });
});

describe('inputs, exit status and interrupts', () => {
  it('gives a file one row when it is also inside a folder given, or given twice (first occurrence wins)', async () => {
    const a1 = path.join(archive, 'monet/a1.jpg');
    const out = path.join(tmp, 'dedupe.jsonl');
    const summary = await classifyArchive({ inputs: [archive, a1, explicitFile], classifier: fakeClassifier(), out, progress: false });
    assert.deepEqual(readJsonl(await readFile(out, 'utf8')).map((r) => r.path), walkOrder);
    assert.equal(summary.skippedDuplicates, 1);
    assert.match(formatSummary(summary), /skipped, duplicates: +1/);

    // File first: it keeps its row under the name typed, the folder walk passes over it; another
    // spelling of the same file counts as the same file.
    const seen: string[] = [];
    const again = await classifyArchive({ inputs: [explicitFile, path.dirname(explicitFile), path.relative(process.cwd(), explicitFile)], classifier: fakeClassifier(), out: path.join(tmp, 'dedupe-2.jsonl'), progress: false, onRow: (r) => seen.push(r.path) });
    assert.deepEqual(seen, [explicitFile]);
    assert.equal(again.skippedDuplicates, 2, 'the folder walk meets the named .data file again, and the third input is the same file');
    assert.equal(again.skippedNonImages, 0, 'a file named as an input is not a skipped non-image when its folder is walked');
    // Folder first: the named file, whatever its extension, gets its row where the walk meets it, and only once.
    const folderFirst: string[] = [];
    const third = await classifyArchive({ inputs: [path.dirname(explicitFile), explicitFile], classifier: fakeClassifier(), out: path.join(tmp, 'dedupe-4.jsonl'), progress: false, onRow: (r) => folderFirst.push(r.path) });
    assert.deepEqual(folderFirst, [explicitFile]);
    assert.deepEqual([third.skippedNonImages, third.skippedDuplicates], [0, 1]);
    const inFolder: string[] = [];
    await classifyArchive({ inputs: [a1, path.join(archive, 'monet')], classifier: fakeClassifier(), out: path.join(tmp, 'dedupe-3.jsonl'), progress: false, onRow: (r) => inFolder.push(r.path) });
    assert.deepEqual(inFolder, [a1, path.join(archive, 'monet/a2.jpg'), path.join(archive, 'monet/sub/deeper/a3.jpg')]);
  });

  it('warns and exits 1 when no image is found; exits 1 when every file failed; 0 otherwise', async () => {
    const empty = path.join(tmp, 'empty-folder');
    await mkdir(empty);
    let n = 0;
    const run = (inputs: string[]) => classifyArchive({ inputs, classifier: fakeClassifier(), out: path.join(tmp, `status-${n++}.jsonl`), progress: false });
    const none = await run([empty]);
    assert.equal(none.exitCode, 1);
    assert.match(formatSummary(none), /^warning: no images found in the inputs \(0 non-image files skipped, 0 unreadable folders\)/);
    assert.match(formatSummary(none), /Classified 0 files in .*\n(.*\n)*exit status 1: no images found in the inputs$/);

    const docs = path.join(tmp, 'only-docs');
    await mkdir(docs);
    await writeFile(path.join(docs, 'notes.txt'), 'notes\n');
    const onlyDocs = await run([docs]);
    assert.equal(onlyDocs.exitCode, 1);
    assert.match(formatSummary(onlyDocs), /^warning: no images found in the inputs \(1 non-image file skipped, 0 unreadable folders\)/);

    const allBad = await run([path.join(archive, 'bad')]);
    assert.equal(allBad.failed, 3);
    assert.equal(allBad.exitCode, 1);
    assert.match(formatSummary(allBad), /exit status 1: every attempted file failed$/);

    const one = await run([explicitFile, path.join(archive, 'bad/empty.jpg')]);
    assert.equal(one.exitCode, 0, 'one success is enough');
    assert.match(formatSummary(one), /^Classified 2 files in /);
    const single = await run([explicitFile]);
    assert.match(formatSummary(single), /^Classified 1 file in /);
    assert.doesNotMatch(formatSummary(single), /warning|exit status/);
  });

  it('shows progress by default only when stderr is a terminal and rows do not go to it', () => {
    const tty = { isTTY: true };
    const pipe = { isTTY: false };
    assert.equal(progressByDefault(undefined, { stdout: tty, stderr: tty }), false, 'rows on the same terminal');
    assert.equal(progressByDefault('r.jsonl', { stdout: tty, stderr: tty }), true);
    assert.equal(progressByDefault(undefined, { stdout: pipe, stderr: tty }), true, 'rows piped elsewhere');
    assert.equal(progressByDefault('r.jsonl', { stdout: tty, stderr: pipe }), false);
  });

  it('stops on a signal with complete rows only, and --resume continues exactly there', async () => {
    const out = path.join(tmp, 'interrupted.jsonl');
    const stop = new AbortController();
    const summary = await classifyArchive({ inputs: inputs(), classifier: fakeClassifier(), out, batchSize: 2, progress: false, signal: stop.signal, onRow: () => stop.abort() });
    assert.equal(summary.interrupted, true);
    const rows = readJsonl(await readFile(out, 'utf8'));
    assert.equal(rows.length, summary.attempted);
    assert.ok(rows.length >= 1 && rows.length < walkOrder.length, `${rows.length} rows`);
    assert.deepEqual(rows.map((r) => r.path), walkOrder.slice(0, rows.length));
    assert.match(formatSummary(summary), new RegExp(`interrupted after ${rows.length} files?; rerun the same command with --resume to continue$`));

    const rest = await classifyArchive({ inputs: inputs(), classifier: fakeClassifier(), out, resume: true, progress: false });
    assert.equal(rest.interrupted, false);
    assert.deepEqual(readJsonl(await readFile(out, 'utf8')).map((r) => r.path), walkOrder);
  });

  it('open-set card: rows say unknown below the threshold (error rows null), the summary counts them; missing verdicts fail the batch', async () => {
    // Score = the red share of the pixels; threshold 0.34: redder-than-grey images are "known".
    const openSetCard: ModelCard = { ...CARD, openSet: { score: 'msp', threshold: 0.34, targetAcceptRate: 0.95, validationAcceptRate: 0.95, validationImages: 30 } };
    const withVerdicts: ArchiveClassifier = {
      card: openSetCard,
      provider: 'cpu',
      async run(images: Uint8Array[]): Promise<BatchResult> {
        const probabilities = images.map(channelMeans);
        return { probabilities, inferenceMs: 1, openSet: probabilities.map((p) => ({ score: p[0], unknown: !(p[0] >= 0.34) })) };
      },
    };
    const out = path.join(tmp, 'open-set.jsonl');
    const summary = await classifyArchive({ inputs: inputs(), classifier: withVerdicts, out, progress: false });
    const rows = readJsonl(await readFile(out, 'utf8')) as (ArchiveRow & { unknown: boolean | null; open_set_score: number | null })[];
    const ok = rows.filter((r) => r.error === null);
    assert.ok(ok.length > 0 && rows.length > ok.length, 'the archive has good and bad files');
    for (const r of ok) {
      assert.equal(r.open_set_score, Math.round(channelMeans(await decodeImage(await readFile(r.path), DEFAULT_PREPROCESS))[0] * 1e6) / 1e6);
      assert.equal(r.unknown, (r.open_set_score as number) < 0.34);
    }
    for (const r of rows.filter((x) => x.error !== null)) assert.deepEqual([r.unknown, r.open_set_score], [null, null]);
    assert.equal(summary.unknown, ok.filter((r) => r.unknown).length);
    assert.match(formatSummary(summary), new RegExp(`unknown: +${summary.unknown} \\(open-set score below`));
    assert.equal(fakeClassifier().card.openSet, undefined);

    const noVerdicts: ArchiveClassifier = { ...fakeClassifier(), card: openSetCard };
    const failed = path.join(tmp, 'open-set-missing.jsonl');
    await classifyArchive({ inputs: [explicitFile], classifier: noVerdicts, out: failed, progress: false });
    const [row] = readJsonl(await readFile(failed, 'utf8'));
    assert.match(String(row.error), /Expected 1 open-set verdicts from the model \(its card has openSet\) but received none/);
  });
});

describe('artist-id classify (CLI)', () => {
  const CLI = path.join(PACKAGE_ROOT, 'src', 'cli', 'main.ts');

  /** Starts `artist-id classify` with the shipped model; resolves with its exit and stderr. */
  function classify(args: string[]) {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'classify', ...args], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const done = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal, stderr }));
    return { child, done };
  }

  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    it(`${signal} mid-run: exits ${code} on a complete row and says how to continue`, async () => {
      const out = path.join(tmp, `cli-${signal}.jsonl`);
      const { child, done } = classify([path.join(PAINTINGS, 'claude-monet'), '--out', out, '--batch-size', '4']);
      // Interrupt once some rows are on disk (the model has loaded and the run is under way).
      for (let i = 0; i < 600 && (await stat(out).then((s) => s.size, () => 0)) === 0; i++) await new Promise((r) => setTimeout(r, 50));
      child.kill(signal);
      const { code: exit, stderr } = await done;
      assert.equal(exit, code, stderr);
      assert.match(stderr, /interrupted after \d+ files?; rerun the same command with --resume to continue/);
      const rows = readJsonl(await readFile(out, 'utf8'));
      assert.ok(rows.length > 0 && rows.length < 300, `${rows.length} rows`);
      const sha = createHash('sha256').update(await readFile(path.join(PACKAGE_ROOT, 'models/default/model.onnx'))).digest('hex');
      assert.ok(rows.every((r) => r.error === null && r.model.endsWith(`@${sha.slice(0, 12)}`)), rows[0].model);
    });
  }

  it('exits 1 with a warning when no image is found', async () => {
    const docs = path.join(tmp, 'cli-docs');
    await mkdir(docs);
    await writeFile(path.join(docs, 'catalogue.txt'), 'Water Lilies\n');
    const { code, stderr } = await classify([docs, '--out', path.join(tmp, 'cli-none.jsonl')]).done;
    assert.equal(code, 1, stderr);
    assert.match(stderr, /warning: no images found in the inputs \(1 non-image file skipped/);
  });
});
