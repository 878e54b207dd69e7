/**
 * Regenerates docs/RESULTS.md: every training rung on the three reference experiments, each row trained
 * with `artist-id train` and measured with `artist-id evaluate` exactly as a user would.
 *
 *   npx tsx scripts/results.ts [--rungs baseline,finetune] [--experiments all-11] [--data ../shared/paintings]
 *     [--seed 42] [--render-only] [--ship]
 *
 * Rows are independent: each one's result is cached as docs/results/<experiment>-<rung>.json (its model stays
 * in .cache/experiments/<experiment>-<rung>/), and docs/RESULTS.md is rendered from every cached row, so slow
 * rungs can run separately (in the background) and the document is complete once all rows have been run.
 * `--render-only` trains nothing. `--ship` installs, as models/default, the all-11 model chosen on VALIDATION
 * accuracy averaged over the route's runs (test accuracy never chooses; see chooseShipped).
 *
 * The ensemble row combines the same experiment's features, features-pooled and finetune models (same seed
 * and split; members must share preprocessing, so the baseline, at its own input size, is not one); run it
 * after those rows.
 *
 * Base weights come from $ARTIST_ID_WEIGHTS_DIR, else ../shared/weights when present.
 */
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readModelCard } from '../src/model/read-card.js';
import { MODELS_DIR, PACKAGE_ROOT } from '../src/paths.js';
import { formatAccuracy } from '../training/metrics.js';
import { readOpenSetMeasurements, summarizeOpenSet } from '../training/open-set.js';
import { ENSEMBLE_MEMBERS, EXPERIMENTS, RUNGS, pick, runCli, type ExperimentId, type Rung } from './experiments.js';
import { readSeedRuns, seedTable, type SeedRun } from './seed-runs.js';

/** One cached row (docs/results/<experiment>-<rung>.json). */
interface Row {
  experiment: ExperimentId;
  rung: string;
  /** The `artist-id train` arguments after `train` (paths relative to the repository). */
  command: string[];
  method: string;
  /** The head's solver where the card records one (`training.hyperparameters.solver`, features route). */
  solver?: string;
  test: { images: number; correct: number; accuracy: number };
  validation: { images: number; accuracy: number };
  testEce?: { before: number; after: number; temperature: number };
  seed: number;
  split: [number, number, number];
  inputSize: number;
  epochs: number;
  bestEpoch: number;
  seconds: number;
  backend: string;
  parityMaxAbsDiff: number;
  /** Model folder, relative to the repository (not committed: .cache/). */
  model: string;
  machine: string;
  createdAt: string;
}

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: resolve(PACKAGE_ROOT, '../shared/paintings') },
    seed: { type: 'string', default: '42' },
    rungs: { type: 'string', default: RUNGS.map((r) => r.id).join(',') },
    experiments: { type: 'string', default: EXPERIMENTS.map((e) => e.id).join(',') },
    'render-only': { type: 'boolean', default: false },
    ship: { type: 'boolean', default: false },
  },
});
const data = resolve(values.data!);
const dataArg = relative(PACKAGE_ROOT, data) || '.';
const WORK = join(PACKAGE_ROOT, '.cache', 'experiments');
const ROWS = join(PACKAGE_ROOT, 'docs', 'results');
const machine = `${os.cpus()[0]?.model?.trim() ?? 'unknown CPU'} (${os.availableParallelism()} cores)`;

const run = (args: string[]) => runCli(args, 'inherit');

/**
 * The model to ship among the all-11 rows, chosen on validation only: each route's validation accuracy is
 * averaged over all its runs on all 11 artists (its row here and its seeded runs in docs/seeds/), and among the
 * routes within one standard error of the best mean (the "one-standard-error rule", Hastie, Tibshirani & Friedman,
 * The Elements of Statistical Learning, 2nd ed., sec. 7.10) the one with the fewest forward passes per image
 * wins, then the higher mean: a gain smaller than the noise does not buy twice the serving cost. Only routes with
 * at least MIN_SHIP_RUNS runs compete: one run has no standard error, and its single figure would otherwise be
 * compared with other routes' averages as if it were exact.
 */
const MIN_SHIP_RUNS = 3;
function chooseShipped(candidates: Row[], seedRuns: SeedRun[]): { row: Row; rule: string } {
  const scored = candidates.map((row) => {
    const v = [row.validation.accuracy, ...seedRuns.filter((r) => r.experiment === 'all-11' && r.rung === row.rung).map((r) => r.validation)];
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const se = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1) / v.length) : 0;
    return { row, mean, se, runs: v.length, passes: RUNGS.find((r) => r.id === row.rung)?.passes ?? 1 };
  });
  const left = scored.filter((x) => x.runs < MIN_SHIP_RUNS).map((x) => x.row.rung);
  const eligible = scored.filter((x) => x.runs >= MIN_SHIP_RUNS);
  if (eligible.length === 0) {
    throw new Error(`--ship: expected a route with at least ${MIN_SHIP_RUNS} all-11 runs (its row plus seeded runs: npx tsx scripts/seeds.ts --rungs <rung> --experiments all-11) but none has`);
  }
  const best = eligible.reduce((a, b) => (b.mean > a.mean ? b : a));
  const near = eligible.filter((x) => x.mean >= best.mean - best.se).sort((a, b) => a.passes - b.passes || b.mean - a.mean);
  const pick = near[0];
  const pctOf = (x: number) => `${(100 * x).toFixed(1)}%`;
  const rule = `mean validation accuracy on all 11 artists ${pctOf(pick.mean)} over ${pick.runs} run(s), ${pick.passes} forward pass(es) per image; best mean ${best.row.rung} ${pctOf(best.mean)} ± ${pctOf(best.se)} (standard error) over ${best.runs} run(s); the fewest passes within one standard error of the best${left.length ? `; not compared (fewer than ${MIN_SHIP_RUNS} runs): ${left.join(', ')}` : ''}`;
  return { row: pick.row, rule };
}

const rowPath = (e: string, rung: string) => join(ROWS, `${e}-${rung}.json`);

async function readRows(): Promise<Row[]> {
  const files = existsSync(ROWS) ? (await readdir(ROWS)).filter((f) => f.endsWith('.json') && f !== 'shipped.json') : [];
  return Promise.all(files.map(async (f) => JSON.parse(await readFile(join(ROWS, f), 'utf8')) as Row));
}

/** Trains and evaluates one row with the CLI, caches its JSON. */
async function runRow(e: (typeof EXPERIMENTS)[number], rung: Rung): Promise<Row> {
  const out = join(WORK, `${e.id}-${rung.id}`);
  const outArg = relative(PACKAGE_ROOT, out);
  let args: string[];
  if (rung.id === 'ensemble') {
    const members = ENSEMBLE_MEMBERS.map((m) => join(WORK, `${e.id}-${m}`)).filter((m) => existsSync(join(m, 'model.onnx')));
    if (members.length < 2) throw new Error(`The ensemble row of ${e.id} needs at least 2 of the rows ${ENSEMBLE_MEMBERS.join(', ')} run first; found ${members.length}`);
    args = ['train', ...rung.args(e.id), '--members', members.map((m) => relative(PACKAGE_ROOT, m)).join(','), '--data', dataArg, '--out', outArg, '--name', `${e.id}-${rung.id}`];
  } else {
    // The card records --data as given: a path relative to the repository reads the same on every machine.
    args = ['train', ...rung.args(e.id), '--data', dataArg, '--out', outArg, '--seed', values.seed!, '--name', `${e.id}-${rung.id}`, ...(e.artists.length ? ['--artists', e.artists.join(',')] : [])];
  }
  await rm(out, { recursive: true, force: true });
  run(args);
  run(['evaluate', '--model', outArg, '--data', dataArg, '--json', join(outArg, 'evaluation.json')]);
  const card = await readModelCard(join(out, 'model.onnx'));
  const evaluation = JSON.parse(await readFile(join(out, 'evaluation.json'), 'utf8'));
  const t = card.training;
  const cal = card.calibration;
  const row: Row = {
    experiment: e.id,
    rung: rung.id,
    command: args,
    method: t.method,
    ...(typeof t.hyperparameters.solver === 'string' ? { solver: t.hyperparameters.solver } : {}),
    test: { images: evaluation.report.images, correct: Math.round(evaluation.report.accuracy * evaluation.report.images), accuracy: evaluation.report.accuracy },
    validation: { images: card.metrics.validation.images, accuracy: card.metrics.validation.accuracy },
    ...(cal?.testEceAfter !== undefined ? { testEce: { before: cal.testEceBefore!, after: cal.testEceAfter, temperature: cal.temperature } } : {}),
    seed: t.seed,
    split: t.split,
    inputSize: card.preprocessing.width,
    epochs: t.epochs,
    bestEpoch: t.bestEpoch,
    seconds: t.seconds,
    backend: t.backend,
    parityMaxAbsDiff: card.parity.maxAbsDiff,
    model: outArg,
    machine,
    createdAt: card.createdAt,
  };
  await mkdir(ROWS, { recursive: true });
  await writeFile(rowPath(e.id, rung.id), `${JSON.stringify(row, null, 1)}\n`);
  process.stderr.write(`row ${e.id} / ${rung.id}: test ${formatAccuracy(row.test.accuracy, row.test.images)}, validation ${formatAccuracy(row.validation.accuracy, row.validation.images)}\n`);
  return row;
}

if (!values['render-only']) {
  const experiments = pick(values.experiments!, EXPERIMENTS, 'experiments');
  // Ensemble rows last: they combine the other rows' models.
  const rungs = pick(values.rungs!, RUNGS, 'rungs').sort((a, b) => Number(a.id === 'ensemble') - Number(b.id === 'ensemble'));
  for (const rung of rungs) for (const e of experiments) await runRow(e, rung);
}

const rows = await readRows();
const rowOf = (e: string, rung: string) => rows.find((r) => r.experiment === e && r.rung === rung);

let shipped: (Row & { rule: string }) | undefined;
if (values.ship) {
  const candidates = rows.filter((r) => r.experiment === 'all-11' && existsSync(join(PACKAGE_ROOT, r.model, 'model.onnx')));
  if (candidates.length === 0) throw new Error('--ship: no all-11 row with its model on disk; run some rows with --experiments all-11 first');
  const choice = chooseShipped(candidates, await readSeedRuns());
  shipped = { ...choice.row, rule: choice.rule };
  const target = join(MODELS_DIR, 'default');
  await rm(target, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  for (const f of ['model.onnx', 'MODEL_CARD.md', 'history.json']) await cp(join(PACKAGE_ROOT, shipped.model, f), join(target, f));
  // The evaluation names the model it ran on: the shipped copy, relative to the package, not the build folder.
  const evaluation = JSON.parse(await readFile(join(PACKAGE_ROOT, shipped.model, 'evaluation.json'), 'utf8'));
  await writeFile(join(target, 'evaluation.json'), `${JSON.stringify({ ...evaluation, model: relative(PACKAGE_ROOT, join(target, 'model.onnx')) }, null, 1)}\n`);
  await writeFile(join(ROWS, 'shipped.json'), `${JSON.stringify({ experiment: shipped.experiment, rung: shipped.rung, validation: shipped.validation, rule: choice.rule, createdAt: shipped.createdAt }, null, 1)}\n`);
  process.stderr.write(`shipped ${relative(PACKAGE_ROOT, target)} (${shipped.rung}): ${choice.rule}\n`);
}
const shippedInfo: { rung: string; rule?: string } | undefined = shipped ?? (existsSync(join(ROWS, 'shipped.json')) ? JSON.parse(await readFile(join(ROWS, 'shipped.json'), 'utf8')) : undefined);

const pending: string[] = [];
const table = EXPERIMENTS.flatMap((e) =>
  RUNGS.map((rung) => {
    const r = rowOf(e.id, rung.id);
    const slides = rung.slides[e.id] ?? '—';
    if (!r) {
      pending.push(`${e.id}/${rung.id}`);
      return `| ${e.title} | ${rung.title} | — | pending | — | — | — | — | — | — | — | ${slides} |`;
    }
    const ece = r.testEce ? `${r.testEce.before.toFixed(3)} → ${r.testEce.after.toFixed(3)} (T=${r.testEce.temperature.toFixed(2)})` : '—';
    const epochs = r.method === 'ensemble' ? 'members' : r.solver === 'lbfgs' ? `${r.epochs} L-BFGS iterations` : `${r.bestEpoch}/${r.epochs}${r.bestEpoch === r.epochs ? '*' : ''}`;
    const time = r.method === 'ensemble' ? `${r.seconds} s + members` : `${r.seconds} s`;
    return `| ${e.title} | ${rung.title}${shippedInfo && e.id === 'all-11' && shippedInfo.rung === rung.id ? ' (shipped)' : ''} | ${r.test.images} | **${formatAccuracy(r.test.accuracy, r.test.images)}** | ${formatAccuracy(r.validation.accuracy, r.validation.images)} | ${ece} | ${r.seed} | ${r.split.join('/')} | ${r.inputSize}x${r.inputSize} | ${epochs} | ${time} | ${slides} |`;
  }),
);
const machines = [...new Set(rows.map((r) => r.machine))];

// The repeated splits, open-set and calibration figures, each from its own script's cached numbers.
const seedRuns = await readSeedRuns();
const openSet = await readOpenSetMeasurements();
const reliabilityPath = join(PACKAGE_ROOT, 'docs', 'reliability.json');
const reliability = existsSync(reliabilityPath) ? JSON.parse(await readFile(reliabilityPath, 'utf8')) : undefined;
const f3 = (v: number) => v.toFixed(3);
const repeatedSection = seedRuns.length
  ? `## Repeated splits

Every seeded route over seeds ${[...new Set(seedRuns.map((r) => r.seed))].sort((a, b) => a - b).join(', ')} (from \`scripts/seeds.ts\`, details in [SEEDS.md](SEEDS.md)): a route
is better than another only where its validation mean is, by more than the spread.

${seedTable(seedRuns)}
`
  : '';
const openSetSection = openSet
  ? (() => {
      const { scores, chosen } = summarizeOpenSet(openSet);
      return `## Open set

Leave-one-artist-out over the ${openSet.artists} artists (seed ${openSet.seed}, from \`scripts/open-set.ts\`, details in
[OPEN_SET.md](OPEN_SET.md)): train on 10, score the left-out artist's paintings against the others'. Means over the
folds; false-unknown and detected rates at the threshold that accepts ${(100 * openSet.acceptRate).toFixed(0)}% of known validation paintings.

| score | validation AUROC | test AUROC | false-unknown rate (test) | left-out artist called unknown (test) |
|---|---|---|---|---|
${scores.map((x) => `| ${x.name === chosen.name ? `**${x.name}** (chosen on validation, shipped)` : x.name} | ${f3(x.validationAuroc)} | ${f3(x.testAuroc)} | ${(100 * x.falseUnknown).toFixed(1)}% | ${(100 * x.detected).toFixed(1)}% |`).join('\n')}

Target: AUROC >= 0.90. ${chosen.testAuroc >= 0.9 ? 'Reached.' : `Not reached (${f3(chosen.testAuroc)} on test).`}
`;
    })()
  : '';
const after = reliability?.series?.[1];
const calibrationSection = reliability && after
  ? `## Calibration of the shipped model

Temperature scaling fitted on validation (T = ${reliability.temperature.toFixed(3)}); test ECE (${reliability.bins} bins, ${reliability.images}
paintings) ${f3(reliability.series[0].ece)} before, **${f3(after.ece)}** after${reliability.uncertainty ? ` (95% bootstrap interval ${reliability.uncertainty.after.interval.map(f3).join('–')}). A perfectly
calibrated model with the same confidences would show ${f3(reliability.uncertainty.after.calibratedMean)} on average on this many paintings (95th
percentile ${f3(reliability.uncertainty.after.calibrated95)}; consistency resampling, Bröcker & Smith 2007), so on ${reliability.images} images a target of 0.05
fails a perfectly calibrated model about as often as not. The measured ${f3(after.ece)} is ${after.ece <= reliability.uncertainty.after.calibrated95 ? 'within that range: at the 5% level it cannot be told from perfect calibration on this split' : 'above that range: the model is measurably miscalibrated'}` : ''}. Reliability diagram:
[reliability.svg](reliability.svg) (\`scripts/reliability.ts\`, model ${reliability.model}). Test ECE of every route over seeds: the table above.
`
  : '';

const doc = `# Results

Generated by \`npx tsx scripts/results.ts\` from the rows cached in [docs/results/](results/) (one JSON per
experiment and rung); do not edit by hand. Rows run on: ${machines.join('; ') || '—'}, TensorFlow.js WASM
backend. Each row is \`artist-id train\` then \`artist-id evaluate\` on \`../shared/paintings\` (real WikiArt
paintings, 300 per artist, split 240/30/30 per artist with the seed shown). Test accuracy is on held-out images that
training never saw (the split is rebuilt from the seed), with a 95% Wilson interval: with 60 test images one image
is 1.7 points, so differences of a few points between rows on the two-artist pairs are noise. Epochs, the
ensemble's temperature and the shipped model are chosen on validation, never on test.
${shippedInfo ? `Shipped as \`models/default\`: the all-11 model of rung "${RUNGS.find((r) => r.id === shippedInfo.rung)?.title ?? shippedInfo.rung}" (${shippedInfo.rule ?? 'best validation accuracy'}).` : ''}

| experiment | rung | test images | test accuracy | validation accuracy | test ECE | seed | split | input | best/run epochs | training time | the slides (Keras, VGG16, other WikiArt images) |
|---|---|---|---|---|---|---|---|---|---|---|---|
${table.join('\n')}
${
  pending.length
    ? `
Pending rows (${pending.length}); produce them with (ensemble rows after the rows they combine):
${RUNGS.map((r) => [r.id, pending.filter((p) => p.endsWith(`/${r.id}`)).map((p) => p.split('/')[0])] as const)
  .filter(([, ex]) => ex.length > 0)
  .map(([id, ex]) => `- \`nice -n 10 npx tsx scripts/results.ts --rungs ${id} --experiments ${ex.join(',')}\``)
  .join('\n')}
`
    : ''
}
${repeatedSection}
${openSetSection}
${calibrationSection}
Rungs:
${RUNGS.map((r) => `- **${r.title}** (\`--method ${r.args('all-11')[1]}\`, row id \`${r.id}\`): ${r.note}`).join('\n')}

\\* best epoch = last epoch: the epoch budget, not early stopping, ended training (validation was still improving).

Training time is wall time of the whole \`artist-id train\` run (decoding, features, training, export, parity) on
2 cores shared with other jobs, so it varies by a factor of two or more between runs; \`scripts/train-throughput.ts\`
measures images/s per rung and backend. Calibration: every model is temperature-scaled on its validation split
(Guo et al. 2017); the ECE column gives the test expected calibration error (15 bins) before → after, and the fitted T.

Reference points (not targets: other images, other base, other input size): the slides this project grew from
("Can we solve it with machine learning?", xingyuzhou.org/blog) report the figures in the last column: baseline CNN
83.3%, frozen VGG16 + dense head 94.6%, fine-tuned VGG16 98.3% on Monet vs Van Gogh; fine-tuned 86.6% on Monet vs
Sisley. A plain logistic regression on the frozen pooled MobileNetV2 features scores about 100% / 87% / 74% on these splits.

**Monet vs Van Gogh is easier than it looks.** In \`../shared/paintings\` the Van Gogh images come from a
different source (a style-transfer data set, 256x256 JPEGs) than the other ten artists (WikiArt, 224x224), see
\`manifest.csv\`. A classifier may key partly on resizing and compression traces rather than brushwork, so treat
a perfect score on this pair as an upper bound, not as evidence of connoisseurship.
`;
await mkdir(join(PACKAGE_ROOT, 'docs'), { recursive: true });
await writeFile(join(PACKAGE_ROOT, 'docs', 'RESULTS.md'), doc);
process.stderr.write(`wrote docs/RESULTS.md (${rows.length} rows, ${pending.length} pending)\n`);
