/**
 * `trainEnsemble`: two tiny real members (2 artists x 8 paintings, pooled features, different head
 * seeds, same split) merged into one model.onnx; checked against the mean of the members' own ONNX
 * outputs, and refused when the members disagree on classes or split.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { CARD_METADATA_KEY } from '../src/model/card.js';
import { readModelCard } from '../src/model/read-card.js';
import { decodeModel, encodeModel } from '../src/onnx/model.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { checkEnsembleMembers, trainEnsemble } from '../training/ensemble.js';
import { train } from '../training/train.js';
import { PAINTINGS, WEIGHTS, paintingOf } from './fixtures.js';

let dir: string;
const quiet = () => {};
const ARTISTS = ['claude-monet', 'vincent-van-gogh'];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'aid-ensemble-'));
  for (const seed of [1, 2]) {
    await train({ data: PAINTINGS, out: join(dir, `m${seed}`), artists: ARTISTS, split: [4, 2, 2], seed: 42, features: 'pooled', weightsDir: WEIGHTS, head: { epochs: 2, seed }, parityImages: 4, log: quiet });
  }
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function probabilitiesOf(model: string, images: Uint8Array[]): Promise<{ probabilities: Float32Array; features: Float32Array }> {
  const session = await ort.InferenceSession.create(model);
  const batch = new Uint8Array(images.length * images[0].length);
  images.forEach((img, i) => batch.set(img, i * img.length));
  const out = await session.run({ image: new ort.Tensor('uint8', batch, [images.length, 224, 224, 3]) });
  await session.release();
  return { probabilities: out.probabilities.data as Float32Array, features: out.features.data as Float32Array };
}

test('ensemble of two members: one model.onnx equal to softmax(log(mean of member probabilities) / T), shared base, card', async () => {
  const out = join(dir, 'ens');
  const result = await trainEnsemble({ members: [join(dir, 'm1'), join(dir, 'm2')], out, data: PAINTINGS, parityImages: 4, log: quiet });
  const card = await readModelCard(join(out, 'model.onnx'));
  assert.equal(card.training.method, 'ensemble');
  assert.deepEqual(card.classes, ARTISTS);
  assert.equal(card.base.featureDim, 2 * 1280);
  assert.match(String(card.training.hyperparameters.members), /^m1@[0-9a-f]{12}, m2@[0-9a-f]{12}$/);
  assert.equal(card.metrics.validation.images, 4);
  assert.equal(card.metrics.test?.images, 4);
  assert.equal(card.metrics.train.images, 8);
  assert.ok(result.parity.maxAbsDiff <= 1e-4 && card.parity.images === 4);
  assert.equal(card.calibration?.temperature, card.training.hyperparameters.temperature);

  // Independent check on held-out-like real images, from the members' own files.
  const images = await Promise.all([paintingOf('claude-monet', 20), paintingOf('vincent-van-gogh', 20), paintingOf('claude-monet', 21)].map(async (p) => decodeImage(await readFile(p), DEFAULT_PREPROCESS)));
  const ens = await probabilitiesOf(join(out, 'model.onnx'), images);
  const a = await probabilitiesOf(join(dir, 'm1', 'model.onnx'), images);
  const b = await probabilitiesOf(join(dir, 'm2', 'model.onnx'), images);
  const t = card.calibration!.temperature;
  for (let i = 0; i < images.length; i++) {
    const logMean = [0, 1].map((j) => Math.log((a.probabilities[i * 2 + j] + b.probabilities[i * 2 + j]) / 2) / t);
    const z = logMean.map((v) => Math.exp(v - Math.max(...logMean)));
    const expected = z.map((v) => v / (z[0] + z[1]));
    expected.forEach((p, j) => assert.ok(Math.abs(p - ens.probabilities[i * 2 + j]) <= 1e-4, `image ${i} class ${j}: ${ens.probabilities[i * 2 + j]} vs ${p}`));
  }
  // The members' heads differ (different seeds), so this is not a trivial average of equal models.
  assert.ok(a.probabilities.some((v, i) => Math.abs(v - b.probabilities[i]) > 1e-3), 'members should differ');
  // Features: member 1's then member 2's.
  assert.deepEqual(Array.from(ens.features.subarray(0, 1280)), Array.from(a.features.subarray(0, 1280)));
  assert.deepEqual(Array.from(ens.features.subarray(1280, 2560)), Array.from(b.features.subarray(0, 1280)));
  // Both members use the same frozen base: its nodes are kept once.
  const nodes = (p: string) => readFile(p).then((bytes) => decodeModel(bytes).graph.node.length);
  const [n1, n2, ne] = await Promise.all([nodes(join(dir, 'm1', 'model.onnx')), nodes(join(dir, 'm2', 'model.onnx')), nodes(join(out, 'model.onnx'))]);
  assert.ok(ne < n1 + 20 && ne < n1 + n2, `ensemble has ${ne} nodes, members ${n1} + ${n2}`);
  // Refuses to overwrite.
  await assert.rejects(trainEnsemble({ members: [join(dir, 'm1'), join(dir, 'm2')], out, data: PAINTINGS, log: quiet }), /already holds a model.onnx/);
});

/** Writes a copy of member m2 whose card is edited by `edit`. */
async function editedMember(name: string, edit: (card: Record<string, any>) => void): Promise<string> {
  const model = decodeModel(await readFile(join(dir, 'm2', 'model.onnx')));
  const entry = model.metadata_props!.find((p) => p.key === CARD_METADATA_KEY)!;
  const card = JSON.parse(entry.value);
  edit(card);
  card.name = name;
  entry.value = JSON.stringify(card);
  await mkdir(join(dir, name), { recursive: true });
  await writeFile(join(dir, name, 'model.onnx'), encodeModel(model));
  return join(dir, name);
}

test('ensemble refuses members with other classes, another split or too few members, naming member and field', async () => {
  const swapped = await editedMember('swapped', (c) => c.classes.reverse());
  await assert.rejects(
    trainEnsemble({ members: [join(dir, 'm1'), swapped], out: join(dir, 'no1'), data: PAINTINGS, log: quiet }),
    /member "swapped \(.*\)" has classes \["vincent-van-gogh","claude-monet"\] but member "m1 \(.*\)" has \["claude-monet","vincent-van-gogh"\]/,
  );
  const otherSplit = await editedMember('other-split', (c) => (c.training.splitDigest.validation = 'f'.repeat(64)));
  await assert.rejects(trainEnsemble({ members: [join(dir, 'm1'), otherSplit], out: join(dir, 'no2'), data: PAINTINGS, log: quiet }), /member "other-split .*" has training\.splitDigest\.validation "f{64}"/);
  const noDigest = await editedMember('no-digest', (c) => delete c.training.splitDigest);
  await assert.rejects(trainEnsemble({ members: [join(dir, 'm1'), noDigest], out: join(dir, 'no3'), data: PAINTINGS, log: quiet }), /member "no-digest .*" has no training\.splitDigest/);
  await assert.rejects(trainEnsemble({ members: [join(dir, 'm1')], out: join(dir, 'no4'), data: PAINTINGS, log: quiet }), /Expected at least 2 member models/);
  await assert.rejects(trainEnsemble({ members: [join(dir, 'm1'), join(dir, 'm1')], out: join(dir, 'no5'), data: PAINTINGS, log: quiet }), /is the same model file as member/);
  const card = await readModelCard(join(dir, 'm1', 'model.onnx'));
  assert.throws(() => checkEnsembleMembers([{ label: 'a', card }, { label: 'b', card: { ...card, preprocessing: { ...card.preprocessing, kernel: 'cubic' } } }]), /member "b" has preprocessing\.kernel "cubic" but member "a" has "lanczos3"/);
});
