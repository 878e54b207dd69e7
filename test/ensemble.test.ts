/**
 * `trainEnsemble`: two tiny real members (2 artists x 8 paintings, pooled features, different head
 * seeds, same split) merged into one model.onnx; checked against the mean of the members' own ONNX
 * outputs, and refused when the members disagree on classes or split. Tiny hand-built graphs check
 * merging members of different opsets (12 and 13).
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
import { buildEnsembleModel, type EnsembleMember } from '../export/ensemble.js';
import { floatTensor, node, valueInfo } from '../export/graph.js';
import type { ModelCard } from '../src/model/card.js';
import { DataType } from '../src/onnx/schema.js';
import type { ModelProto, NodeProto } from '../src/onnx/model.js';
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

/**
 * A tiny member: image [N,2,2,3] uint8 -> Cast -> ReduceMean over H,W = features [N,3] -> MatMul W [3,2]
 * = logits -> Softmax = probabilities; `pool` replaces the pooling nodes (e.g. with an opset-12 Squeeze).
 */
function tinyMember(label: string, opset: number, weights: number[], softmaxAxis: number, pool?: NodeProto[]): EnsembleMember {
  const model: ModelProto = {
    ir_version: opset >= 13 ? 8 : 7,
    opset_import: [{ domain: '', version: opset }],
    graph: {
      name: label,
      node: [
        node('Cast', ['image'], ['x'], 'cast', { to: DataType.FLOAT }),
        ...(pool ?? [node('ReduceMean', ['x'], ['features'], 'pool', { axes: [1, 2], keepdims: 0 })]),
        node('MatMul', ['features', 'w'], ['logits'], 'head'),
        node('Softmax', ['logits'], ['probabilities'], 'softmax', { axis: softmaxAxis }),
      ],
      initializer: [floatTensor('w', [3, 2], weights)],
      input: [valueInfo('image', DataType.UINT8, ['N', 2, 2, 3])],
      output: [valueInfo('probabilities', DataType.FLOAT, ['N', 2]), valueInfo('logits', DataType.FLOAT, ['N', 2]), valueInfo('features', DataType.FLOAT, ['N', 3])],
    },
  };
  const card = { name: label, classes: ARTISTS, input: 'image', outputs: { probabilities: 'probabilities', logits: 'logits', features: 'features' }, preprocessing: { height: 2, width: 2 }, base: { featureDim: 3 } } as unknown as ModelCard;
  return { label, model, card };
}

async function runTiny(model: ModelProto, image: Uint8Array): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(encodeModel(model));
  const out = await session.run({ image: new ort.Tensor('uint8', image, [image.length / 12, 2, 2, 3]) });
  await session.release();
  return out.probabilities.data as Float32Array;
}

test('ensemble merges an opset-12 member (ReduceMean, Softmax axis 1 on [N,C]) with an opset-13 member at opset 13; refuses an opset-12 Squeeze with axes attribute', async () => {
  const a = tinyMember('opset12', 12, [0.02, -0.01, 0.005, 0.01, -0.02, 0.03], 1);
  const b = tinyMember('opset13', 13, [-0.01, 0.02, 0.03, -0.005, 0.01, 0.0], -1);
  const card = { ...a.card, name: 'ens', base: { featureDim: 6 } } as unknown as ModelCard;
  const { model, stats } = buildEnsembleModel([a, b], 1, card);
  assert.deepEqual(model.opset_import.map((o) => [o.domain, Number(o.version)]), [['', 13]]);
  assert.deepEqual(stats.opsetUpgrades, [{ member: 'opset12', from: 12, to: 13, nodes: 4 }]);
  const image = Uint8Array.from({ length: 2 * 12 }, (_, i) => (i * 37) % 256);
  const [pe, pa, pb] = await Promise.all([runTiny(model, image), runTiny(a.model, image), runTiny(b.model, image)]);
  pe.forEach((p, i) => assert.ok(Math.abs(p - (pa[i] + pb[i]) / 2) <= 1e-6, `probability ${i}: ${p} vs mean ${(pa[i] + pb[i]) / 2}`));
  assert.ok(pa.some((v, i) => Math.abs(v - pb[i]) > 1e-3), 'members should differ');

  // Squeeze-13 takes axes as an input: an opset-12 Squeeze with an axes attribute cannot be kept as-is.
  const squeeze = tinyMember('squeezer', 12, [0.02, -0.01, 0.005, 0.01, -0.02, 0.03], 1, [
    node('ReduceMean', ['x'], ['pooled'], 'pool', { axes: [1, 2], keepdims: 1 }),
    node('Squeeze', ['pooled'], ['features'], 'squeeze_hw', { axes: [1, 2] }),
  ]);
  assert.equal((await runTiny(squeeze.model, image)).length, 4); // a valid opset-12 model on its own
  assert.throws(() => buildEnsembleModel([b, squeeze], 1, card), /member "squeezer" is opset 12 and the merge needs opset 13, but its node "squeeze_hw" \(Squeeze\) changed meaning or form at opset 13: Squeeze-13 takes `axes` as an input/);
  // Softmax at axis 1 of a rank-3 input: opset 12 normalises over the last two axes, 13 over axis 1 only.
  const rank4 = tinyMember('rank4', 12, [0.02, -0.01, 0.005, 0.01, -0.02, 0.03], 1);
  rank4.model.graph.node[3] = node('Softmax', ['x'], ['probabilities'], 'softmax3', { axis: 1 });
  rank4.model.graph.value_info = [valueInfo('x', DataType.FLOAT, ['N', 2, 2, 3])];
  assert.throws(() => buildEnsembleModel([rank4, b], 1, card), /member "rank4" .* node "softmax3" \(Softmax\) applies Softmax at axis 1 of a rank-4 input/);
  // Equal opsets: nothing to upgrade.
  assert.deepEqual(buildEnsembleModel([a, { ...a, label: 'again' }], 1, card).stats.opsetUpgrades, []);
});
