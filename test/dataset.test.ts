/** Dataset layouts and the seeded split. */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { loadDataset } from '../training/dataset.js';
import { PAINTINGS } from './fixtures.js';

test('flat layout: 240/30/30 per artist, disjoint, reproducible from the seed', async () => {
  const artists = ['claude-monet', 'vincent-van-gogh'];
  const a = await loadDataset(PAINTINGS, { artists, seed: 1 });
  const b = await loadDataset(PAINTINGS, { artists, seed: 1 });
  const c = await loadDataset(PAINTINGS, { artists, seed: 2 });
  assert.equal(a.layout, 'flat');
  assert.deepEqual(a.classes, artists);
  assert.deepEqual([a.train.length, a.validation.length, a.test.length], [480, 60, 60]);
  for (const label of [0, 1]) assert.equal(a.test.filter((s) => s.label === label).length, 30);
  assert.deepEqual(a.test, b.test, 'same seed, same split');
  assert.notDeepEqual(a.test, c.test, 'another seed, another split');
  const all = [...a.train, ...a.validation, ...a.test].map((s) => s.path);
  assert.equal(new Set(all).size, all.length, 'splits are disjoint');
  for (const s of a.test) assert.equal(basename(join(s.path, '..')), artists[s.label], 'label is the folder');
});

test('keras layout: train/validation/test folders are used as given', async (t) => {
  const root = await mkdtemp(join(os.tmpdir(), 'artist-id-keras-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const counts = { train: 4, validation: 2, test: 3 };
  for (const [split, n] of Object.entries(counts)) {
    for (const artist of ['claude-monet', 'edgar-degas']) {
      await mkdir(join(root, split, artist), { recursive: true });
      const files = (await readdir(join(PAINTINGS, artist))).sort().slice(0, n);
      for (const f of files) await copyFile(join(PAINTINGS, artist, f), join(root, split, artist, f));
    }
  }
  await writeFile(join(root, 'train', 'claude-monet', 'notes.txt'), 'not an image');
  const ds = await loadDataset(root);
  assert.equal(ds.layout, 'keras');
  assert.deepEqual(ds.classes, ['claude-monet', 'edgar-degas']);
  assert.deepEqual([ds.train.length, ds.validation.length, ds.test.length], [8, 4, 6]);
});

test('bad datasets get errors that name the problem', async () => {
  await assert.rejects(loadDataset('/nonexistent/paintings'), /Expected a dataset folder for data but could not read "\/nonexistent\/paintings"/);
  await assert.rejects(loadDataset(PAINTINGS, { artists: ['claude-monet', 'banksy'] }), /received "banksy"; available: alfred-sisley/);
  await assert.rejects(loadDataset(PAINTINGS, { artists: ['claude-monet'] }), /at least 2 artists/);
  await assert.rejects(loadDataset(PAINTINGS, { artists: ['claude-monet', 'edgar-degas'], split: [300, 30, 30] }), /at least 360 images \(split 300\/30\/30\) for artist "claude-monet" but found 300/);
});
