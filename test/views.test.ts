/**
 * Flip test-time augmentation in the feature model (export/views.ts): the wrapped model's features
 * against (f(x) + f(mirror(x))) / 2 computed from the unwrapped model and pixels mirrored in
 * TypeScript, on real paintings and the real MobileNetV2 base.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { TENSOR, buildFeatureModel } from '../export/base.js';
import { int64Tensor, node, valueInfo } from '../export/graph.js';
import { buildStyleFeatureModel } from '../export/style.js';
import { VIEW_TENSOR, averageFeaturesOverFlip } from '../export/views.js';
import { createSession } from '../src/inference/session.js';
import { decodeModel, encodeModel, type ModelProto } from '../src/onnx/model.js';
import { DataType } from '../src/onnx/schema.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { BASE_WEIGHTS } from '../src/weights/base-weights.js';
import { WEIGHTS, paintingOf } from './fixtures.js';

const INFO = BASE_WEIGHTS['mobilenetv2-12-int8'];
const H = DEFAULT_PREPROCESS.height;
const W = DEFAULT_PREPROCESS.width;
const sessions: ort.InferenceSession[] = [];

/** `[N,H,W,C]` uint8 pixels with the W axis reversed. */
function mirrorNhwc(pixels: Uint8Array, n: number, h: number, w: number, c: number): Uint8Array {
  const out = new Uint8Array(pixels.length);
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < h; y++) {
      const row = (b * h + y) * w;
      for (let x = 0; x < w; x++) out.set(pixels.subarray((row + x) * c, (row + x + 1) * c), (row + w - 1 - x) * c);
    }
  }
  return out;
}

async function runner(model: ModelProto): Promise<(pixels: Uint8Array, dims: number[]) => Promise<{ data: Float32Array; dims: readonly number[] }>> {
  const { session } = await createSession(encodeModel(model), { provider: 'cpu', intraOpThreads: 2 });
  sessions.push(session);
  return async (pixels, dims) => {
    const out = await session.run({ [TENSOR.image]: new ort.Tensor('uint8', pixels, dims) });
    return { data: out[TENSOR.features].data as Float32Array, dims: out[TENSOR.features].dims };
  };
}

/** max |a - b| / max |b|: relative to the features' scale, since pooled ReLU features are often 0. */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

let batch: Uint8Array;
let base: ModelProto;

before(async () => {
  base = decodeModel(await readFile(join(WEIGHTS, 'mobilenetv2-12-int8.onnx')));
  const a = await decodeImage(await readFile(paintingOf('claude-monet')), DEFAULT_PREPROCESS);
  const b = await decodeImage(await readFile(paintingOf('vincent-van-gogh')), DEFAULT_PREPROCESS);
  batch = new Uint8Array(a.length * 2);
  batch.set(a);
  batch.set(b, a.length);
});

after(async () => {
  for (const s of sessions) await s.release();
});

/**
 * Checks a wrapped real feature model on a batch of 2 paintings against the unwrapped one run on
 * the paintings and on their TypeScript mirrors; returns D.
 */
async function checkAgainstReference(featureModel: ModelProto): Promise<number> {
  const snapshot = encodeModel(featureModel);
  const wrapped = averageFeaturesOverFlip(featureModel);
  assert.deepEqual(encodeModel(featureModel), snapshot, 'the argument must not be modified');
  // Same interface.
  assert.deepEqual(wrapped.graph.input.map((v) => [v.name, v.type]), featureModel.graph.input.map((v) => [v.name, v.type]));
  assert.deepEqual(wrapped.graph.output.map((v) => [v.name, v.type]), featureModel.graph.output.map((v) => [v.name, v.type]));
  assert.ok(wrapped.graph.node.some((n) => n.op_type === 'Slice' && n.input[0] === TENSOR.image));
  assert.ok(!wrapped.graph.node.some((n) => n.input.includes(TENSOR.image) && n.op_type !== 'Slice' && n.op_type !== 'Concat'), 'only the view nodes read image');
  for (const name of ['mirror', 'stack_views', 'group_views', 'average_views']) {
    assert.match(wrapped.graph.node.find((n) => n.name === `artist_id/views/${name}`)?.doc_string ?? '', /test-time augmentation/, `node ${name} says why`);
  }

  const f = await runner(featureModel);
  const g = await runner(wrapped);
  const dims = [2, H, W, 3];
  const mirrored = mirrorNhwc(batch, 2, H, W, 3);
  const fx = await f(batch, dims);
  const fm = await f(mirrored, dims);
  const gx = await g(batch, dims);
  const d = fx.dims[1];
  assert.deepEqual(gx.dims, [2, d]);
  assert.ok(gx.data.every(Number.isFinite));

  const expected = fx.data.map((v, i) => (v + fm.data[i]) / 2);
  for (const row of [0, 1]) {
    const got = gx.data.subarray(row * d, (row + 1) * d);
    const want = expected.subarray(row * d, (row + 1) * d);
    const rel = relDiff(got, want);
    assert.ok(rel <= 1e-5, `image ${row}: wrapped vs (f(x) + f(mirror x)) / 2 differ by ${rel} (relative)`);
  }
  // The check can fail: the wrapped model is not the unwrapped one, a mirror changes the features,
  // and pairing image 0 with image 1's mirror (a batch mix-up) would be far off.
  assert.ok(relDiff(gx.data, fx.data) > 1e-3, `wrapped features equal the unwrapped ones (${relDiff(gx.data, fx.data)})`);
  assert.ok(relDiff(fm.data, fx.data) > 1e-3, 'a mirrored painting should change the base features');
  const mixed = fx.data.subarray(0, d).map((v, i) => (v + fm.data[d + i]) / 2);
  assert.ok(relDiff(gx.data.subarray(0, d), mixed) > 1e-3, 'image 0 must be averaged with its own mirror, not image 1’s');

  // Flip-averaged features are mirror-invariant.
  const gm = await g(mirrored, dims);
  assert.ok(relDiff(gm.data, gx.data) <= 1e-5, `wrapped(mirror x) vs wrapped(x) differ by ${relDiff(gm.data, gx.data)}`);
  // One image alone gives the same row as in the batch of 2.
  const single = await g(batch.subarray(H * W * 3), [1, H, W, 3]);
  assert.ok(relDiff(single.data, gx.data.subarray(d)) <= 1e-5, 'batched vs single wrapped features');
  return d;
}

test('flip averaging on MobileNetV2 features: equals (f(x) + f(mirror x)) / 2 per image of a batch of 2', async () => {
  const featureModel = buildFeatureModel(base, INFO, DEFAULT_PREPROCESS);
  const wrapped = averageFeaturesOverFlip(featureModel);
  // Opset 12 base: ReduceMean takes axes as an attribute; D is static so the shape is an initializer.
  const mean = wrapped.graph.node.find((n) => n.op_type === 'ReduceMean' && n.output[0] === TENSOR.features);
  assert.ok(mean?.attribute?.some((a) => a.name === 'axes'));
  assert.ok(wrapped.graph.initializer.some((t) => t.name === 'artist_id/views/grouped_shape'));
  // Tensors on the 2N view batch must not share the base's batch symbol ("batch_size"): onnxruntime would
  // take them for the same size as an unwrapped model's tensors in one graph (an ensemble) and share buffers.
  const batchSymbols = (m: typeof featureModel) => new Set((m.graph.value_info ?? []).map((v) => v.type?.tensor_type?.shape?.dim?.[0]?.dim_param).filter(Boolean));
  assert.ok(batchSymbols(featureModel).has('batch_size'), 'the base declares its own batch symbol');
  assert.deepEqual([...batchSymbols(wrapped)].sort(), ['2N', 'N'], 'the mirror has N rows, everything after the Concat 2N');
  assert.equal(await checkAgainstReference(featureModel), INFO.featureDim);
});

test('flip averaging on style statistics features (export/style.ts)', async () => {
  const layers = [
    { tensor: '365', channels: 32, gram: true },
    { tensor: '627', channels: 1280, gram: false },
  ];
  const styleModel = buildStyleFeatureModel(base, INFO, DEFAULT_PREPROCESS, layers);
  assert.equal(await checkAgainstReference(styleModel), 2 * 32 + (32 * 33) / 2 + 2 * 1280);
});

/**
 * A tiny feature model: `image` [N,2,3,3] uint8 -> Cast -> Reshape [N,18] -> `features`, whose
 * features are the pixels themselves, so the flip average is known exactly.
 */
function tinyFeatureModel(opset: number, d: number | string): ModelProto {
  return {
    ir_version: 8,
    opset_import: [{ domain: '', version: opset }],
    graph: {
      name: 'tiny',
      node: [
        node('Cast', [TENSOR.image], ['f32'], 'cast', { to: DataType.FLOAT }),
        node('Reshape', ['f32', 'flat_shape'], [TENSOR.features], 'flatten'),
      ],
      initializer: [int64Tensor('flat_shape', [2], [0, -1])],
      input: [valueInfo(TENSOR.image, DataType.UINT8, ['N', 2, 3, 3])],
      output: [valueInfo(TENSOR.features, DataType.FLOAT, ['N', d])],
    },
  };
}

for (const [opset, d] of [[12, 18], [18, 18], [13, 'D']] as const) {
  test(`flip averaging on a tiny model: opset ${opset}, D ${typeof d === 'number' ? 'static' : 'symbolic'}, exact`, async () => {
    const wrapped = averageFeaturesOverFlip(tinyFeatureModel(opset, d));
    const mean = wrapped.graph.node.find((n) => n.op_type === 'ReduceMean')!;
    assert.equal(mean.input.length, opset >= 18 ? 2 : 1, 'ReduceMean axes: an attribute before opset 18, an input from 18');
    const g = await runner(wrapped);
    const n = 3;
    const x = Uint8Array.from({ length: n * 18 }, (_, i) => (i * 37 + 11) % 256);
    const out = await g(x, [n, 2, 3, 3]);
    assert.deepEqual(out.dims, [n, 18]);
    const m = mirrorNhwc(x, n, 2, 3, 3);
    assert.deepEqual(Array.from(out.data), Array.from(x, (v, i) => (v + m[i]) / 2));
    assert.notDeepEqual(Array.from(out.data), Array.from(x));
  });
}

test('a model without the features output, or without the image input, is refused with a clear error', () => {
  const noFeatures = tinyFeatureModel(12, 18);
  noFeatures.graph.node[1].output = ['embedding'];
  noFeatures.graph.output[0].name = 'embedding';
  assert.throws(() => averageFeaturesOverFlip(noFeatures), /Expected a feature model with graph output "features" \[N,D\] float32 but received outputs: "embedding"/);
  const noImage = tinyFeatureModel(12, 18);
  noImage.graph.node[0].input = ['pixels'];
  noImage.graph.input[0].name = 'pixels';
  assert.throws(() => averageFeaturesOverFlip(noImage), /Expected a feature model with graph input "image" \[N,H,W,3\] uint8 but received inputs: "pixels"/);
  const once = averageFeaturesOverFlip(tinyFeatureModel(12, 18));
  assert.throws(() => averageFeaturesOverFlip(once), new RegExp(`tensor "${VIEW_TENSOR.mirror}" already exists`));
});
