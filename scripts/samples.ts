/**
 * Refreshes samples/: one held-out test painting per artist of the default model's split (seed and
 * split read from models/default), copied from ../shared/paintings with their provenance.
 *
 *   npx tsx scripts/samples.ts [--data ../shared/paintings]
 */
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readModelCard } from '../src/model/read-card.js';
import { MODELS_DIR, PACKAGE_ROOT } from '../src/paths.js';
import { loadDataset } from '../training/dataset.js';

const { values } = parseArgs({ options: { data: { type: 'string', default: resolve(PACKAGE_ROOT, '../shared/paintings') } } });
const modelPath = join(MODELS_DIR, 'default', 'model.onnx');
const card = await readModelCard(modelPath);
const ds = await loadDataset(values.data!, { artists: card.classes, seed: card.training.seed, split: card.training.split });
const manifest = new Map((await readFile(join(values.data!, 'manifest.csv'), 'utf8')).trim().split('\n').slice(1).map((l) => [l.split(',')[0], l]));
const dir = join(PACKAGE_ROOT, 'samples');
await rm(dir, { recursive: true, force: true });
await mkdir(dir);
const lines = ['# Sample paintings', '', `One held-out test painting per artist of \`models/default\` (seed ${card.training.seed}, split ${card.training.split.join('/')}): the model never saw them in training.`, `Copied by \`npx tsx scripts/samples.ts\` from \`../shared/paintings\`; provenance from its manifest.csv.`, '', '| file | artist | title | source |', '|---|---|---|---|'];
for (const [label, artist] of card.classes.entries()) {
  const sample = ds.test.find((s) => s.label === label)!;
  // The true artist leads the file name so a reader of the demo output can check each answer.
  await copyFile(sample.path, join(dir, `${artist}--${basename(sample.path)}`));
  const row = manifest.get(`${artist}/${basename(sample.path)}`)?.split(',') ?? [];
  lines.push(`| ${artist}--${basename(sample.path)} | ${artist} | ${row[3] ?? '?'} | ${row[4] ?? '?'} (path as recorded upstream: \`${row[6] ?? '?'}\`) |`);
}
await writeFile(join(dir, 'README.md'), `${lines.join('\n')}\n`);
