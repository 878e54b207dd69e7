/**
 * Reliability diagram of a model on its own held-out test split, before and after temperature scaling
 * (15 equal-width confidence bins, as the card's ECE): writes docs/reliability.svg and
 * docs/reliability.json (the bins). Also the ECE's 95% bootstrap interval and the ECE a perfectly calibrated
 * model with the same confidences would show on a split this size (training/calibration.ts eceUncertainty).
 *
 * The model's logits already include the temperature T of its card (folded into the output layer), so
 * "after" is softmax(logits) and "before" is softmax(T * logits). The test split is rebuilt from the card
 * (seed, split) and refused when the folder no longer reproduces it (card.training.splitDigest), as
 * `artist-id evaluate` does.
 *
 *   npx tsx scripts/reliability.ts [--model default] [--data ../shared/paintings] [--out docs/reliability.svg]
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { resolveModelPath } from '../src/inference/classifier.js';
import { createSession } from '../src/inference/session.js';
import { cardOfBytes } from '../src/model/read-card.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { eceUncertainty, expectedCalibrationError, reliabilityDiagramSpec, softmaxRows, topOneOutcomes } from '../training/calibration.js';
import { loadDataset, splitDigest } from '../training/dataset.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'default' },
    data: { type: 'string', default: resolve(PACKAGE_ROOT, '../shared/paintings') },
    out: { type: 'string', default: resolve(PACKAGE_ROOT, 'docs', 'reliability.svg') },
  },
});
const BINS = 15;
const modelPath = resolveModelPath(values.model);
const bytes = await readFile(modelPath);
const card = cardOfBytes(bytes, modelPath);
const temperature = card.calibration?.temperature;
if (temperature === undefined) throw new Error(`Expected a temperature-scaled model (card.calibration) for --model but ${modelPath} has none`);
const dataset = await loadDataset(values.data!, { artists: card.classes, seed: card.training.seed, split: card.training.split });
if (dataset.test.length === 0) throw new Error(`Expected test images in the model's split (${card.training.split.join('/')}) but it has none`);
const expected = card.training.splitDigest?.test;
if (expected) {
  const actual = splitDigest(await Promise.all(dataset.test.map(async (s) => createHash('sha256').update(await readFile(s.path)).digest('hex'))));
  if (actual !== expected) throw new Error(`${values.data} does not reproduce the model's held-out test split (seed ${card.training.seed}): files changed since training`);
}

const { session } = await createSession(bytes, { provider: 'cpu' });
const c = card.classes.length;
const logits = new Float32Array(dataset.test.length * c);
const { width, height } = card.preprocessing;
for (let start = 0; start < dataset.test.length; start += 16) {
  const batch = dataset.test.slice(start, start + 16);
  const pixels = await Promise.all(batch.map(async (s) => decodeImage(await readFile(s.path), card.preprocessing)));
  const input = new Uint8Array(pixels.length * width * height * 3);
  pixels.forEach((p, i) => input.set(p, i * p.length));
  const out = await session.run({ [card.input]: new ort.Tensor('uint8', input, [pixels.length, height, width, 3]) }, [card.outputs.logits]);
  logits.set(out[card.outputs.logits].data as Float32Array, start * c);
}
await session.release();

const labels = dataset.test.map((s) => s.label);
const before = expectedCalibrationError(softmaxRows(logits, c, 1 / temperature), labels, c, BINS);
const after = expectedCalibrationError(softmaxRows(logits, c), labels, c, BINS);
// A finite split cannot show ECE 0 even for a calibrated model: give the measured ECE's interval and that floor.
const uncertaintyOf = (probabilities: Float32Array) => {
  const { confidence, correct } = topOneOutcomes(probabilities, labels, c);
  return eceUncertainty(confidence, correct, BINS);
};
const uncertainty = { before: uncertaintyOf(softmaxRows(logits, c, 1 / temperature)), after: uncertaintyOf(softmaxRows(logits, c)) };
const series = [
  { name: 'before temperature scaling (T = 1)', ece: before.ece, bins: before.bins },
  { name: `after (T = ${temperature.toFixed(3)}, fitted on validation)`, ece: after.ece, bins: after.bins },
];
const spec = reliabilityDiagramSpec(series, 'Reliability diagram (held-out test split)', `model ${card.name}: ${dataset.test.length} test paintings, ${c} artists, ${BINS} bins. ECE after: ${after.ece.toFixed(3)} (95% bootstrap ${uncertainty.after.interval.map((x) => x.toFixed(3)).join('–')}); a calibrated model would show ${uncertainty.after.calibratedMean.toFixed(3)} (95th percentile ${uncertainty.after.calibrated95.toFixed(3)}) on this many images`);
const view = new vega.View(vega.parse(vl.compile(spec as vl.TopLevelSpec, { logger: vega.logger(vega.Error) }).spec), { renderer: 'none', logLevel: vega.Error });
const svg = await view.toSVG();
view.finalize();
await mkdir(dirname(values.out!), { recursive: true });
await writeFile(values.out!, svg);
await writeFile(values.out!.replace(/\.svg$/, '.json'), `${JSON.stringify({ model: card.name, temperature, images: labels.length, bins: BINS, series, uncertainty }, null, 1)}\n`);
process.stderr.write(`ECE after: 95% bootstrap interval ${uncertainty.after.interval.map((x) => x.toFixed(4)).join('–')}; a calibrated model with these confidences: ${uncertainty.after.calibratedMean.toFixed(4)} (95th percentile ${uncertainty.after.calibrated95.toFixed(4)})\n`);
process.stderr.write(`test ECE ${before.ece.toFixed(4)} -> ${after.ece.toFixed(4)} (card: ${card.calibration?.testEceBefore?.toFixed(4)} -> ${card.calibration?.testEceAfter?.toFixed(4)}); wrote ${values.out}\n`);
