/**
 * Benchmarks: the statistics (percentiles, stability rule, windows, arrivals) on known inputs, FLOP
 * counting on small hand-built ONNX graphs (shapes checked against onnxruntime), peak FLOP/s from
 * cpuinfo text, the KServe v2 client against a loopback stub server started here (127.0.0.1 only,
 * bounded windows), report/CSV/plot output and CLI option errors. Performance itself is measured by
 * `artist-id bench`, never asserted here.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { DEFAULT_LARGE_JPEG, largeJpegs, sampleImages } from '../src/bench/corpus.js';
import { benchDecode, bottleneck } from '../src/bench/e2e-bench.js';
import { countModelFlops, convOutputSize, broadcastShapes } from '../src/bench/flops.js';
import { gemmFlops, gemmModel, gemmRunner } from '../src/bench/gemm.js';
import { bareRunner, benchPair, benchRunner, feedsFor, modelInputs, type BatchRunner } from '../src/bench/model-bench.js';
import { summarizeProfile } from '../src/bench/profile.js';
import { machinePeak, microarchitectureOf, readCpuInfo, vectorUnitOf } from '../src/bench/peak.js';
import { renderPng, throughputVsBatchSpec } from '../src/bench/plot.js';
import { formatCsv, formatMarkdown, formatTerminal, markdownTable, textTable } from '../src/bench/report.js';
import { twinNote, type BenchReport } from '../src/bench/run.js';
import { logitAgreement, nhwcNormalised, twinComparisons } from '../src/bench/twin-bench.js';
import { buildInferRequest, closedLoop, openLoop, resolveTarget, type ServerPayloads } from '../src/bench/server-bench.js';
import {
  arrivalTimes,
  formatRatio,
  isStable,
  measureUntilStable,
  mergeWindows,
  pairedRatio,
  percentileOfSorted,
  ratio,
  summarizeLatencies,
  throughputOf,
  type WindowSample,
} from '../src/bench/stats.js';
import { registerBench } from '../src/cli/commands/bench.js';
import { encodeModel, readModelFile, type ModelProto, type NodeProto, type TensorProto } from '../src/onnx/model.js';
import { DEFAULT_PREPROCESS } from '../src/preprocess/spec.js';
import { PAINTINGS, WEIGHTS, paintingOf } from './fixtures.js';

/** A window of `items` in `durationMs` whose latencies are all `latency` ms. */
function w(imagesPerSecond: number, latency = 10, durationMs = 1000): WindowSample {
  return { durationMs, items: Math.round((imagesPerSecond * durationMs) / 1000), latenciesMs: [latency, latency, latency] };
}

describe('statistics', () => {
  test('percentiles use perf_analyzer\'s index floor(p/100 * (n-1) + 0.5) on 1..100', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i); // unsorted on purpose
    const s = summarizeLatencies(samples);
    assert.equal(s.count, 100);
    assert.equal(s.min, 1);
    assert.equal(s.max, 100);
    assert.equal(s.mean, 50.5);
    assert.ok(Math.abs(s.std - Math.sqrt((100 * 100 - 1) / 12)) < 1e-9, `std ${s.std}`);
    // index = floor(0.50*99 + 0.5) = 50 -> 51; floor(0.90*99 + 0.5) = 89 -> 90; 94 -> 95; 98 -> 99
    assert.deepEqual([s.p50, s.p90, s.p95, s.p99], [51, 90, 95, 99]);
  });

  test('percentiles of small samples are measured values, never interpolated', () => {
    assert.equal(percentileOfSorted([1, 2, 3, 4], 50), 3);
    assert.equal(percentileOfSorted([1, 2, 3, 4], 0), 1);
    assert.equal(percentileOfSorted([1, 2, 3, 4], 100), 4);
    assert.equal(percentileOfSorted([7], 99), 7);
    const two = summarizeLatencies([10, 20]);
    assert.deepEqual([two.p50, two.p90, two.p99], [20, 20, 20]);
  });

  test('bad percentile input is refused with the parameter named', () => {
    assert.throws(() => percentileOfSorted([1], 101), /Expected a percentile between 0 and 100 for p but received 101/);
    assert.throws(() => summarizeLatencies([]), /for samples/);
    assert.throws(() => summarizeLatencies([1, Number.NaN]), /finite latencies in ms for samples/);
  });

  test('stability: three windows within ±10% of their mean, throughput and latency both', () => {
    assert.equal(isStable([w(100), w(104), w(97)]), true);
    assert.equal(isStable([w(100), w(130), w(97)]), false, '130 is 18% above the mean 109');
    assert.equal(isStable([w(100), w(104)]), false, 'fewer than three windows');
    assert.equal(isStable([w(100, 10), w(100, 10), w(100, 14)]), false, 'latency 14 is 23% above the mean 11.3');
    assert.equal(isStable([w(500), w(100), w(104), w(97)]), true, 'only the last three count');
    assert.equal(isStable([w(100), w(0), w(100)]), false, 'a window with nothing completed is never stable');
    assert.equal(isStable([w(100), w(118), w(100)], { stabilityPercentage: 10 }), false);
    assert.equal(isStable([w(100), w(118), w(100)], { stabilityPercentage: 15 }), true);
    assert.equal(isStable([w(100), w(101)], { windowCount: 2 }), true);
    assert.throws(() => isStable([], { stabilityPercentage: 0 }), /for stabilityPercentage/);
  });

  test('measureUntilStable stops at the first stable triple, or after maxTrials', async () => {
    const seq = [100, 150, 100, 104, 97, 100];
    let calls = 0;
    const m = await measureUntilStable(async (i) => {
      calls++;
      return w(seq[i]);
    });
    assert.equal(m.stable, true);
    assert.equal(m.windows.length, 5);
    assert.equal(calls, 5);
    assert.ok(Math.abs(m.summary.itemsPerSecond - (100 + 104 + 97) / 3) < 1e-9);
    const noisy = [100, 200, 100, 200, 100, 200, 100, 200];
    const n = await measureUntilStable(async (i) => w(noisy[i]), { maxTrials: 4 });
    assert.equal(n.stable, false);
    assert.equal(n.windows.length, 4);
    await assert.rejects(measureUntilStable(async () => w(1), { maxTrials: 2 }), /integer >= 3 for maxTrials/);
  });

  test('merged windows: throughput is total items over total time, percentiles over all samples', () => {
    const merged = mergeWindows([
      { durationMs: 1000, items: 100, latenciesMs: [1, 2] },
      { durationMs: 3000, items: 100, latenciesMs: [3, 4] },
    ]);
    assert.equal(merged.itemsPerSecond, 50, 'not the mean of 100 and 33.3 images/s');
    assert.equal(merged.latency.count, 4);
    assert.equal(merged.latency.p50, 3);
    assert.equal(throughputOf({ durationMs: 500, items: 10 }), 20);
  });

  test('paired ratio: median of per-window ratios, robust to one disturbed window', () => {
    assert.equal(pairedRatio([100, 100, 50, 100], [100, 100, 100, 100]), 1, 'one bad window does not move the median');
    assert.equal(pairedRatio([90, 110, 100], [100, 100, 100]), 1);
    assert.equal(pairedRatio([120, 80], [100, 100]), 1, 'even count: mean of the middle two');
    assert.equal(pairedRatio([200, 200], [100, 100, 100]), 2, 'unequal counts: ratio of means');
    assert.equal(pairedRatio([], [1]), undefined);
  });

  test('ratios are written N×', () => {
    assert.equal(formatRatio(ratio(780, 100)), '7.80×');
    assert.equal(formatRatio(ratio(1, 0)), 'n/a');
    assert.equal(formatRatio(undefined), 'n/a');
  });

  test('open-loop arrivals: constant spacing, and seeded Poisson with the right mean gap', () => {
    assert.deepEqual(arrivalTimes(10, 1000, 'constant'), [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
    const a = arrivalTimes(100, 100_000, 'poisson', 42);
    const b = arrivalTimes(100, 100_000, 'poisson', 42);
    assert.deepEqual(a, b, 'same seed, same schedule');
    const meanGap = a[a.length - 1] / (a.length - 1);
    assert.ok(Math.abs(meanGap - 10) < 0.5, `mean gap ${meanGap} ms for 100 requests/s`);
    const gaps = a.slice(1).map((t, i) => t - a[i]);
    const cv = Math.sqrt(gaps.reduce((s, g) => s + (g - meanGap) ** 2, 0) / gaps.length) / meanGap;
    assert.ok(Math.abs(cv - 1) < 0.05, `exponential gaps have coefficient of variation 1, got ${cv}`);
    assert.throws(() => arrivalTimes(0, 10, 'constant'), /requests\/s greater than 0 for rate/);
    assert.throws(() => arrivalTimes(1, 10, 'uniform' as 'constant'), /constant or poisson for distribution/);
  });
});

// ---- FLOPs on hand-built graphs -------------------------------------------------------------

const FLOAT = 1;
const UINT8 = 2;
const INT8 = 3;
const INT64 = 7;

function floats(name: string, dims: number[], seed = 1): TensorProto {
  const n = dims.reduce((a, b) => a * b, 1);
  return { name, dims, data_type: FLOAT, float_data: Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.1) };
}
function raw(name: string, dims: number[], type: number, bytes: Uint8Array): TensorProto {
  return { name, dims, data_type: type, raw_data: bytes };
}
function int64s(name: string, dims: number[], values: number[]): TensorProto {
  return { name, dims, data_type: INT64, int64_data: values };
}
function node(op_type: string, input: string[], output: string[], attrs: Record<string, number | number[]> = {}, domain?: string): NodeProto {
  return {
    op_type,
    input,
    output,
    name: output[0],
    ...(domain ? { domain } : {}),
    attribute: Object.entries(attrs).map(([name, v]) => (Array.isArray(v) ? { name, type: 7, ints: v } : { name, type: 2, i: v })),
  };
}
function model(nodes: NodeProto[], initializer: TensorProto[], input: { name: string; type: number; dims: (number | string)[] }, outputs: string[]): ModelProto {
  return {
    ir_version: 7,
    opset_import: [{ domain: '', version: 12 }, { domain: 'com.microsoft', version: 1 }],
    producer_name: 'artist-id test',
    graph: {
      name: 'g',
      node: nodes,
      initializer,
      input: [{ name: input.name, type: { tensor_type: { elem_type: input.type, shape: { dim: input.dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } } }],
      output: outputs.map((name) => ({ name, type: { tensor_type: { elem_type: FLOAT } } })),
    },
  };
}

/** Conv s2 -> Relu -> depthwise Conv -> GlobalAveragePool -> Shape/Gather/Unsqueeze/Concat/Reshape -> Gemm -> MatMul. */
function fp32Graph(): ModelProto {
  return model(
    [
      node('Conv', ['x', 'w1', 'b1'], ['c1'], { strides: [2, 2], pads: [1, 1, 1, 1], kernel_shape: [3, 3] }),
      node('Relu', ['c1'], ['r1']),
      node('Conv', ['r1', 'w2'], ['c2'], { group: 8, pads: [1, 1, 1, 1] }),
      node('GlobalAveragePool', ['c2'], ['gap']),
      node('Shape', ['gap'], ['shape']),
      node('Gather', ['shape', 'zero'], ['n'], { axis: 0 }),
      node('Unsqueeze', ['n'], ['n1'], { axes: [0] }),
      node('Concat', ['n1', 'minus1'], ['target'], { axis: 0 }),
      node('Reshape', ['gap', 'target'], ['flat']),
      node('Gemm', ['flat', 'w3', 'b3'], ['g'], { transB: 1 }),
      node('MatMul', ['g', 'w4'], ['y']),
    ],
    [floats('w1', [8, 3, 3, 3]), floats('b1', [8]), floats('w2', [8, 1, 3, 3]), int64s('zero', [], [0]), int64s('minus1', [1], [-1]), floats('w3', [5, 8]), floats('b3', [5]), floats('w4', [5, 3])],
    { name: 'x', type: FLOAT, dims: ['N', 3, 8, 8] },
    ['y'],
  );
}

/** QuantizeLinear -> QLinearConv 1x1 (3 -> 4 channels) -> DequantizeLinear. */
function int8Graph(): ModelProto {
  const scale = (name: string) => floats(name, [], 0);
  return model(
    [
      node('QuantizeLinear', ['x', 'xs', 'xz'], ['xq']),
      node('QLinearConv', ['xq', 'xs', 'xz', 'wq', 'ws', 'wz', 'ys', 'yz'], ['yq']),
      node('DequantizeLinear', ['yq', 'ys', 'yz'], ['y']),
    ],
    [
      { ...scale('xs'), float_data: [0.02] },
      raw('xz', [], UINT8, Uint8Array.of(128)),
      raw('wq', [4, 3, 1, 1], INT8, Uint8Array.from({ length: 12 }, (_, i) => (i * 7) % 50)),
      { ...scale('ws'), float_data: [0.01] },
      raw('wz', [], INT8, Uint8Array.of(0)),
      { ...scale('ys'), float_data: [0.05] },
      raw('yz', [], UINT8, Uint8Array.of(128)),
    ],
    { name: 'x', type: FLOAT, dims: ['N', 3, 8, 8] },
    ['y'],
  );
}

describe('FLOPs from the ONNX graph', () => {
  test('conv output size follows the ONNX formula', () => {
    assert.equal(convOutputSize(224, 3, 2, 1, 1, 1), 112);
    assert.equal(convOutputSize(8, 3, 1, 0, 0, 1), 6);
    assert.equal(convOutputSize(7, 3, 2, 0, 0, 1, 'SAME_UPPER'), 4);
    assert.equal(convOutputSize(8, 3, 1, 0, 0, 2), 4, 'dilation 2: effective kernel 5');
    assert.deepEqual(broadcastShapes([1, 8, 4, 4], [8, 1, 1]), [1, 8, 4, 4]);
    assert.throws(() => broadcastShapes([2, 3], [4, 3]), /Cannot broadcast/);
  });

  test('a hand-built fp32 graph: every conv/gemm/matmul counted, shapes as onnxruntime computes them', async () => {
    const m = fp32Graph();
    const one = countModelFlops(m);
    // Conv 3->8 k3 s2 p1 on 8x8: out 8x4x4, 2*8*4*4*3*3*3 = 6912; depthwise 8 groups k3: 2*8*4*4*1*9 = 2304;
    // Gemm 8->5: 2*1*8*5 = 80; MatMul 5->3: 2*1*5*3 = 30.
    assert.deepEqual(one.nodes.map((n) => [n.opType, n.flops]), [['Conv', 6912], ['Conv', 2304], ['Gemm', 80], ['MatMul', 30]]);
    assert.equal(one.fp32Flops, 9326);
    assert.equal(one.int8Ops, 0);
    assert.deepEqual(one.unknownOps, []);
    const two = countModelFlops(m, { batch: 2 });
    assert.equal(two.fp32Flops, 2 * 9326, 'the Reshape target comes from Shape(...) at batch 2');
    // The graph is valid and its output shape is what the walk inferred.
    const session = await ort.InferenceSession.create(encodeModel(m));
    const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(2 * 3 * 8 * 8).fill(0.5), [2, 3, 8, 8]) });
    assert.deepEqual(out.y.dims, [2, 3]);
    await session.release();
  });

  test('a hand-built QLinearConv graph counts as int8', async () => {
    const m = int8Graph();
    const f = countModelFlops(m);
    assert.equal(f.int8Ops, 2 * 4 * 8 * 8 * 3, '1x1 conv 3->4 on 8x8');
    assert.equal(f.fp32Flops, 0);
    const session = await ort.InferenceSession.create(encodeModel(m));
    const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(3 * 8 * 8).fill(0.5), [1, 3, 8, 8]) });
    assert.deepEqual(out.y.dims, [1, 4, 8, 8]);
    await session.release();
  });

  test('MobileNetV2 1.0/224 int8 comes out at its published ~300 M multiply-adds', async () => {
    // Sandler et al. 2018, "MobileNetV2", Table 4: 300 M multiply-adds at 224x224, width 1.0.
    const f = countModelFlops(await readModelFile(join(WEIGHTS, 'mobilenetv2-12-int8.onnx')));
    const macs = f.int8Ops / 2;
    assert.ok(macs > 295e6 && macs < 305e6, `${macs} MACs`);
    assert.equal(f.nodes.filter((n) => n.opType === 'QLinearConv').length, 52);
  });

  test('the calibration GEMM models count 2 x M x K x N and run in onnxruntime', async () => {
    const shape = { m: 4, k: 8, n: 3 };
    assert.equal(gemmFlops(shape), 192);
    assert.equal(countModelFlops(gemmModel('fp32', shape)).fp32Flops, 192);
    assert.equal(countModelFlops(gemmModel('int8', shape)).int8Ops, 192);
    for (const precision of ['fp32', 'int8'] as const) {
      const runner = await gemmRunner(precision, {}, shape);
      const out = (await runner.run()) as Record<string, ort.Tensor>;
      assert.deepEqual(out.y.dims, [4, 3]);
      assert.equal(out.y.type, precision === 'fp32' ? 'float32' : 'int32');
      await runner.dispose();
    }
  });

  test('reductions infer their shape; an unknown op off the counted path is listed, not fatal', () => {
    const m = model(
      [
        node('ReduceMean', ['x'], ['mean'], { axes: [2, 3], keepdims: 0 }),
        node('MatMul', ['mean', 'w'], ['y']),
        node('MysteryOp', ['x'], ['side']),
        node('Sign', ['side'], ['side2']),
      ],
      [floats('w', [4, 2])],
      { name: 'x', type: FLOAT, dims: ['N', 4, 2, 2] },
      ['y'],
    );
    const f = countModelFlops(m);
    assert.equal(f.fp32Flops, 2 * 4 * 2);
    assert.deepEqual(f.unknownOps, ['MysteryOp', 'Sign']);
  });

  test('an op with unknown shape feeding a conv is reported, naming the node', () => {
    const m = fp32Graph();
    m.graph.node[1] = node('MysteryOp', ['c1'], ['r1']);
    assert.throws(() => countModelFlops(m), /shape of input 0 \(r1\) of Conv node c2 is unknown \(op types not understood: MysteryOp\)/);
  });
});

// ---- peak ----------------------------------------------------------------------------------------

const ZEN5_CPUINFO = `processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC 9B45
cpu MHz\t\t: 3700.000
physical id\t: 0
siblings\t: 2
cpu cores\t: 1
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512bw avx512_vnni avx_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model name\t: AMD EPYC 9B45
cpu MHz\t\t: 3700.000
physical id\t: 0
siblings\t: 2
cpu cores\t: 1
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512bw avx512_vnni avx_vnni
`;

describe('peak FLOP/s', () => {
  test('cpuinfo is parsed: model, clock, flags, SMT siblings counted as one core', () => {
    const cpu = readCpuInfo(ZEN5_CPUINFO);
    assert.equal(cpu.modelName, 'AMD EPYC 9B45');
    assert.equal(cpu.family, 26);
    assert.equal(cpu.logicalCpus, 2);
    assert.equal(cpu.physicalCores, 1);
    assert.equal(cpu.mhz, 3700);
    assert.deepEqual(cpu.vectorFlags, ['avx512f', 'avx512bw', 'avx512_vnni', 'avx_vnni', 'avx2', 'fma', 'avx']);
    assert.equal(microarchitectureOf(cpu), 'Zen 5');
    assert.equal(microarchitectureOf({ vendor: 'AuthenticAMD', family: 25, model: 1 }), 'Zen 3');
  });

  test('FLOP per cycle of the widest unit: AVX-512 2x16x2 = 64, AVX2 + FMA 32; int8 x4 with VNNI, x2 without', () => {
    const avx512 = vectorUnitOf(['avx512f', 'avx512_vnni', 'avx2', 'fma']);
    assert.equal(avx512.fp32FlopPerCycle, 64);
    assert.equal(avx512.int8OpsPerCycle, 256);
    const avx2 = vectorUnitOf(['avx2', 'fma', 'avx']);
    assert.equal(avx2.fp32FlopPerCycle, 32);
    assert.equal(avx2.int8OpsPerCycle, 64);
    assert.equal(vectorUnitOf(['avx2', 'fma', 'avx_vnni']).int8OpsPerCycle, 128);
    assert.equal(vectorUnitOf(['avx']).fp32FlopPerCycle, 16);
    assert.equal(vectorUnitOf(['avx512f'], 1).fp32FlopPerCycle, 32, 'one FMA unit');
  });

  test('peak = cores x clock x per-cycle, each term overridable', () => {
    const cpu = readCpuInfo(ZEN5_CPUINFO);
    const p = machinePeak({ cores: 2 }, cpu);
    assert.ok(Math.abs(p.fp32GFlops - 2 * 3.7 * 64) < 1e-9);
    assert.ok(Math.abs(p.int8GOps - 2 * 3.7 * 256) < 1e-9);
    assert.match(p.fp32Formula, /2 cores × 3\.700 GHz × 64 per cycle = 473\.6 GFLOP\/s/);
    assert.equal(machinePeak({ cores: 1, clockGHz: 2 }, cpu).fp32GFlops, 128);
    assert.equal(machinePeak({ fp32GFlops: 440 }, cpu).fp32GFlops, 440);
    assert.deepEqual(machinePeak({ clockGHz: 3 }, cpu).overridden, ['clockGHz']);
    assert.throws(() => machinePeak({ clockGHz: -1 }, cpu), /Expected a number greater than 0 for clockGHz but received -1/);
  });
});

// ---- model-only runner mechanics -----------------------------------------------------------------

describe('model-only measurement', () => {
  test('first inference is timed alone, warm-up excluded, windows until stable', async () => {
    let calls = 0;
    const runner: BatchRunner = {
      runner: 'fake', variant: 'v', model: 'm', batch: 4, provider: 'cpu', createMs: 1,
      run: async () => {
        calls++;
        await new Promise((r) => setTimeout(r, calls === 1 ? 30 : 2));
      },
      dispose: async () => undefined,
    };
    const r = await benchRunner(runner, { windowMs: 40, warmupMs: 10, maxTrials: 8, stabilityPercentage: 50 });
    assert.ok(r.firstInferenceMs >= 25, `first ${r.firstInferenceMs}`);
    assert.ok(r.latency.max < 25, 'the slow first call is not in the windows');
    assert.ok(r.windows >= 3 && r.windows <= 8);
    assert.equal(r.windowImagesPerSecond.length, r.windows);
    assert.ok(r.imagesPerSecond > 0);
  });

  test('paired runners alternate windows and each gets its own figures', async () => {
    const order: string[] = [];
    const fake = (name: string, ms: number): BatchRunner => ({
      runner: name, variant: 'v', model: 'm', batch: 2, provider: 'cpu', createMs: 0,
      run: async () => {
        order.push(name);
        await new Promise((r) => setTimeout(r, ms));
      },
      dispose: async () => undefined,
    });
    const [a, b] = await benchPair(fake('a', 2), fake('b', 6), { windowMs: 20, warmupMs: 0, maxTrials: 4, stabilityPercentage: 60 });
    assert.equal(a.runner, 'a');
    assert.equal(b.runner, 'b');
    assert.equal(a.windows, b.windows);
    assert.ok(a.imagesPerSecond > b.imagesPerSecond, 'the faster runner has the higher images/s');
    const switches = order.slice(1).filter((x, i) => x !== order[i]).length;
    assert.ok(switches >= 2 * a.windows - 1, `windows alternate (${switches} switches)`);
  });

  test('profile events are summed per node and per operator type', () => {
    const ev = (name: string, op: string, dur: number) => ({ cat: 'Node', name: `${name}_kernel_time`, dur, args: { op_name: op, output_type_shape: [{ float: [8, 3] }] } });
    const p = summarizeProfile([ev('mul', 'Mul', 300), ev('conv1', 'QLinearConv', 500), ev('conv2', 'QLinearConv', 200), ev('mul', 'Mul', 100), { cat: 'Session', name: 'model_run', dur: 2000 }], 2, 8);
    assert.equal(p.kernelMs, 0.55);
    assert.deepEqual(p.byNode.map((n) => [n.name, n.ms]), [['conv1', 0.25], ['mul', 0.2], ['conv2', 0.1]]);
    assert.equal(p.byNode[1].output, 'float[8,3]');
    assert.deepEqual(p.byOpType.map((n) => [n.opType, Math.round(n.share * 100)]), [['QLinearConv', 64], ['Mul', 36]]);
  });

  test('feeds are built from the declared inputs: NHWC uint8 for artist-id, normalised NCHW float for the ImageNet base', async () => {
    const images = [new Uint8Array(224 * 224 * 3).fill(255)];
    const artist = modelInputs(await readFile('models/default/model.onnx'));
    assert.deepEqual(artist, [{ name: 'image', type: 'uint8', dims: ['N', 224, 224, 3] }]);
    const f = feedsFor(artist, 3, images);
    assert.deepEqual(f.image.dims, [3, 224, 224, 3]);
    const base = modelInputs(await readFile(join(WEIGHTS, 'mobilenetv2-12-int8.onnx')));
    const g = feedsFor(base, 2, images);
    assert.deepEqual(g.input.dims, [2, 3, 224, 224]);
    assert.ok(Math.abs((g.input.data as Float32Array)[0] - (1 - 0.485) / 0.229) < 1e-6, 'white, ImageNet-normalised red channel');
  });

  test('a bare session on the shipped model runs a short measurement (correctness only)', async () => {
    const images = [new Uint8Array(224 * 224 * 3).fill(100)];
    const runner = await bareRunner('models/default/model.onnx', 1, images, {}, 'defaults');
    try {
      const r = await benchRunner(runner, { windowMs: 20, warmupMs: 0, maxTrials: 3 });
      assert.equal(r.batch, 1);
      assert.equal(r.windows, 3);
      assert.ok(r.latency.count >= 3);
    } finally {
      await runner.dispose();
    }
  });
});

// ---- end to end helpers --------------------------------------------------------------------------

describe('end-to-end helpers', () => {
  test('bottleneck maths: shares of serial time, serial and overlap bounds', () => {
    const b = bottleneck(100, 400); // 10 ms decode + 2.5 ms inference per image
    assert.ok(Math.abs(b.decodeShare - 0.8) < 1e-12);
    assert.ok(Math.abs(b.inferenceShare - 0.2) < 1e-12);
    assert.ok(Math.abs(b.serial - 80) < 1e-9);
    assert.equal(b.overlapBound, 100);
    assert.equal(b.bottleneck, 'decode');
    assert.equal(bottleneck(500, 100).bottleneck, 'inference');
  });

  test('samples spread over artists, and cycle when the folder is small', async () => {
    const files = await sampleImages(PAINTINGS, 22);
    const artists = new Set(files.map((f) => f.split('/').at(-2)));
    assert.equal(artists.size, 11, 'two per artist, not 22 from one');
    const cycled = await sampleImages('samples', 30);
    assert.equal(cycled.length, 30);
    await assert.rejects(sampleImages(os.tmpdir() + '/no-such-artist-id-folder', 3), /no-such|ENOENT|for data/);
  });

  test('large JPEGs are generated into the given cache folder at the asked size, and reused', async () => {
    const root = await mkdtemp(join(os.tmpdir(), 'artist-id-bench-test-'));
    try {
      const spec = { ...DEFAULT_LARGE_JPEG, width: 320, height: 240 };
      const [file] = await largeJpegs([paintingOf('claude-monet')], spec, root);
      assert.ok(file.startsWith(root));
      const meta = await sharp(file).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 320, 240]);
      const mtime = (await stat(file)).mtimeMs;
      const [again] = await largeJpegs([paintingOf('claude-monet')], spec, root);
      assert.equal(again, file);
      assert.equal((await stat(again)).mtimeMs, mtime, 'not regenerated');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test('decode-only passes decode every file with the one preprocessing', async () => {
    const files = await sampleImages(PAINTINGS, 4);
    const r = await benchDecode(files, DEFAULT_PREPROCESS, { windowMs: 1, warmupMs: 0, maxTrials: 3, corpus: 'real', decodeConcurrency: 2 });
    assert.equal(r.kind, 'decode-only');
    assert.equal(r.files, 4);
    assert.equal(r.passes, 3);
    assert.equal(r.latency.count, 12, 'three passes of four files');
  });
});

// ---- KServe v2 client against a loopback stub ----------------------------------------------------

interface Stub {
  url: string;
  requests: { contentType: string; input: { name: string; datatype: string; shape: number[] }; elements: Uint8Array[] }[];
  failEvery: number;
  close(): Promise<void>;
}

/** A minimal KServe v2 server on 127.0.0.1: health, metadata, infer (binary extension and JSON). */
async function startStub(inputs: { name: string; datatype: string; shape: number[] }[]): Promise<Stub> {
  const stub: Stub = { url: '', requests: [], failEvery: 0, close: async () => undefined };
  let count = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const send = (status: number, json: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(json));
      };
      if (req.method === 'GET' && req.url === '/v2/health/ready') return send(200, {});
      if (req.method === 'GET' && req.url === '/v2/models/painter') return send(200, { name: 'painter', platform: 'stub', inputs, outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 11] }] });
      if (req.method === 'POST' && req.url === '/v2/models/painter/infer') {
        count++;
        if (stub.failEvery > 0 && count % stub.failEvery === 0) return send(500, { error: 'injected failure' });
        const headerLength = Number(req.headers['inference-header-content-length']);
        const header = JSON.parse((headerLength > 0 ? body.subarray(0, headerLength) : body).toString('utf8'));
        const input = header.inputs[0];
        let elements: Uint8Array[] = [];
        if (headerLength > 0) {
          const binary = body.subarray(headerLength);
          if (binary.length !== input.parameters.binary_data_size) return send(400, { error: 'binary_data_size mismatch' });
          if (input.datatype === 'BYTES') {
            for (let o = 0; o < binary.length; ) {
              const n = binary.readUInt32LE(o);
              elements.push(binary.subarray(o + 4, o + 4 + n));
              o += 4 + n;
            }
          } else elements = [binary];
        } else if (input.datatype === 'BYTES') {
          elements = input.data.map((s: string) => Buffer.from(s, 'base64'));
        } else elements = [Uint8Array.from(input.data)];
        stub.requests.push({ contentType: String(req.headers['content-type']), input: { name: input.name, datatype: input.datatype, shape: input.shape }, elements });
        return send(200, { model_name: 'painter', outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [input.shape[0], 11], data: Array(input.shape[0] * 11).fill(1 / 11) }] });
      }
      send(404, { error: 'not found' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  stub.close = () => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  });
  return stub;
}

describe('KServe v2 server client (loopback stub)', () => {
  let stub: Stub;
  let payloads: ServerPayloads;
  const fast = { windowMs: 80, warmupMs: 20, maxTrials: 4, stabilityPercentage: 99 };

  before(async () => {
    stub = await startStub([
      { name: 'image_bytes', datatype: 'BYTES', shape: [-1] },
      { name: 'image', datatype: 'UINT8', shape: [-1, 224, 224, 3] },
    ]);
    const jpeg = await readFile(paintingOf('claude-monet'));
    payloads = { encoded: [jpeg], decoded: [new Uint8Array(224 * 224 * 3).fill(7)], width: 224, height: 224 };
  });
  after(async () => stub.close());

  test('auto picks the BYTES input from the model metadata; uint8 can be forced', async () => {
    const auto = await resolveTarget({ url: stub.url, model: 'painter' });
    assert.equal(auto.input, 'bytes');
    assert.equal(auto.inputName, 'image_bytes');
    assert.equal(auto.encoding, 'binary');
    const u8 = await resolveTarget({ url: stub.url, model: 'painter', input: 'uint8' });
    assert.equal(u8.inputName, 'image');
    await assert.rejects(resolveTarget({ url: stub.url, model: 'nobody' }), /model metadata \(HTTP 200\) for model "nobody" but received 404/);
    await assert.rejects(resolveTarget({ url: 'ftp://x', model: 'painter' }), /for url/);
  });

  test('binary request: JSON header then 4-byte length + encoded image per BYTES element', () => {
    const { body, headers } = buildInferRequest({ input: 'bytes', inputName: 'b', encoding: 'binary' }, [Uint8Array.of(1, 2, 3), Uint8Array.of(9)], { width: 224, height: 224 });
    const n = Number(headers['inference-header-content-length']);
    const header = JSON.parse(body.subarray(0, n).toString('utf8'));
    assert.deepEqual(header.inputs[0], { name: 'b', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: 12 } });
    assert.deepEqual([...body.subarray(n)], [3, 0, 0, 0, 1, 2, 3, 1, 0, 0, 0, 9]);
    const json = buildInferRequest({ input: 'uint8', inputName: 'u', encoding: 'json' }, [Uint8Array.of(1, 2, 3)], { width: 1, height: 1 });
    assert.deepEqual(JSON.parse(json.body.toString('utf8')), { inputs: [{ name: 'u', shape: [1, 1, 1, 3], datatype: 'UINT8', data: [1, 2, 3] }] });
  });

  test('closed loop: every request reaches the server intact, latencies and throughput reported', async () => {
    stub.requests.length = 0;
    const target = await resolveTarget({ url: stub.url, model: 'painter', batch: 2 });
    const r = await closedLoop(target, payloads, 4, fast);
    assert.equal(r.mode, 'concurrency');
    assert.equal(r.errors, 0);
    assert.ok(r.requestsPerSecond > 0 && r.latency !== undefined);
    assert.equal(r.imagesPerSecond, r.requestsPerSecond * 2);
    assert.ok(r.windows >= 3 && r.windows <= 4);
    const seen = stub.requests[0];
    assert.equal(seen.input.datatype, 'BYTES');
    assert.deepEqual(seen.input.shape, [2]);
    assert.deepEqual(Buffer.from(seen.elements[0]), payloads.encoded[0], 'the encoded painting arrives byte for byte');
  });

  test('JSON encoding: BYTES as base64, UINT8 as numbers', async () => {
    stub.requests.length = 0;
    const bytes = await resolveTarget({ url: stub.url, model: 'painter', encoding: 'json' });
    await closedLoop(bytes, payloads, 1, { ...fast, maxTrials: 3 });
    assert.deepEqual(Buffer.from(stub.requests[0].elements[0]), payloads.encoded[0]);
    stub.requests.length = 0;
    const u8 = await resolveTarget({ url: stub.url, model: 'painter', input: 'uint8', encoding: 'json' });
    await closedLoop(u8, payloads, 1, { ...fast, maxTrials: 3 });
    assert.deepEqual(stub.requests[0].input.shape, [1, 224, 224, 3]);
    assert.equal(stub.requests[0].elements[0].length, 224 * 224 * 3);
  });

  test('open loop, constant and Poisson: about the asked rate, failures counted as errors', async () => {
    const target = await resolveTarget({ url: stub.url, model: 'painter' });
    const constant = await openLoop(target, payloads, 100, 'constant', { ...fast, windowMs: 200 });
    assert.equal(constant.mode, 'rate');
    assert.ok(constant.requestsPerSecond > 50 && constant.requestsPerSecond < 150, `${constant.requestsPerSecond} requests/s for 100 asked`);
    stub.failEvery = 4;
    try {
      const poisson = await openLoop(target, payloads, 100, 'poisson', { ...fast, windowMs: 200 });
      assert.ok(poisson.errors > 0);
      assert.ok(poisson.errorRate > 0.1 && poisson.errorRate < 0.4, `error rate ${poisson.errorRate} for 1 in 4 failing`);
      assert.match(poisson.errorExamples[0], /HTTP 500/);
    } finally {
      stub.failEvery = 0;
    }
  });
});

// ---- report, plots, CLI --------------------------------------------------------------------------

function fakeReport(): BenchReport {
  const latency = summarizeLatencies([10, 11, 12]);
  const run = (runner: string, batch: number, ips: number) => ({ runner, variant: 'v', model: 'm.onnx', batch, provider: 'cpu', createMs: 100, firstInferenceMs: 50, imagesPerSecond: ips, latency, windows: 3, stable: true, windowImagesPerSecond: [ips, ips, ips] });
  const flops = { batch: 1, fp32Flops: 1e5, int8Ops: 6e8, elementwiseOps: 1e6, nodes: [], unknownOps: [] };
  const peak = machinePeak({}, readCpuInfo(ZEN5_CPUINFO));
  return {
    format: 'artist-id-bench/1', startedAt: '2025-01-01T00:00:00.000Z', seconds: 42, thorough: false,
    machine: { cpu: peak.cpu, microarchitecture: 'Zen 5', peak, node: 'v20', onnxruntime: '1.30.0', sharp: '0.35', libvips: '8.18', loadBefore: [0.1, 0.1, 0.1], loadAfter: [1, 1, 1], busyBefore: 0.02, otherCpuShare: 0.01, memoryGB: 24 },
    settings: { windowMs: 400, warmupMs: 300, stabilityPercentage: 10, maxTrials: 6, batches: [1, 8], optionsBatch: 8, archiveBatch: 8 },
    model: { path: 'm.onnx', name: 'all-11', classes: 11, flopsPerImage: flops },
    modelRuns: [run('artist-id Classifier.run', 1, 300), run('bare onnxruntime-node', 1, 310), run('artist-id Classifier.run', 8, 700), run('bare onnxruntime-node', 8, 720)],
    sessionOptions: [], referenceRuns: [], calibration: [], steps: [], e2e: [], corpora: [], bottlenecks: [],
    comparisons: [
      { name: 'artist-id in process vs bare onnxruntime-node, batch 8', numerator: 'a', denominator: 'b', ratio: 700 / 720, status: 'measured' },
      { name: 'execution provider cuda vs cpu', numerator: 'a', denominator: 'b', status: 'not available', note: 'not available: the CUDA execution provider is not installed on this machine' },
    ],
    notes: [],
  };
}

describe('report output', () => {
  test('tables align and escape', () => {
    assert.equal(textTable(['a', 'n'], [['x', '1.0'], ['yy', '10.5']]), 'a      n\n--  ----\nx    1.0\nyy  10.5');
    assert.equal(markdownTable(['a|b', 'n'], [['x', '1']]), '| a\\|b | n |\n| --- | ---: |\n| x | 1 |');
  });

  test('CSV has one row per configuration; Markdown shows ratios as N× and unavailable comparisons', () => {
    const report = fakeReport();
    const csv = formatCsv(report).trim().split('\n');
    assert.equal(csv.length, 1 + 4);
    assert.match(csv[0], /^section,runner,variant,corpus_or_model,batch,/);
    const md = formatMarkdown(report, { command: 'npx tsx scripts/performance.ts', docPath: '/x/docs/PERFORMANCE.md', plots: { 'throughput-vs-batch.png': '/x/docs/perf/throughput-vs-batch.png' } });
    assert.match(md, /Generated by `npx tsx scripts\/performance.ts`/);
    assert.match(md, /\| 8 \| 700\.0 \| 720\.0 \| 0\.97× \|/);
    assert.match(md, /not available: the CUDA execution provider is not installed on this machine/);
    assert.match(md, /!\[images\/s vs batch size\]\(perf\/throughput-vs-batch\.png\)/);
    assert.match(md, /AMD EPYC 9B45/);
    assert.match(formatTerminal(report), /0\.97×/);
  });

  test('same-weights twins: comparison rows are N× from the paired windows, backend named; absent twins say why', () => {
    const run = (runner: string, variant: string, w: number[]) => ({ runner, variant, model: 'ref.onnx', batch: 8, provider: 'cpu', createMs: 100, firstInferenceMs: 50, imagesPerSecond: w.reduce((a, b) => a + b, 0) / w.length, latency: summarizeLatencies([10, 11, 12]), windows: w.length, stable: true, windowImagesPerSecond: w });
    const twins = {
      path: '/w/ref.onnx', batch: 8, backend: 'wasm', backendThreads: 1,
      int8: run('bare onnxruntime-node', 'int8 QOperator file, onnxruntime defaults', [60, 90, 60]),
      fp32: run('bare onnxruntime-node', 'dequantised fp32 graph, onnxruntime defaults', [40, 45, 40]),
      tfjs: run('TF.js LayersModel (wasm)', 'imported from the int8 file (fp32)', [16, 15, 10]),
      agreement: { images: 8, top1: 1, maxAbsLogitDiff: 2e-5 }, notes: [],
    };
    const [framework, precision] = twinComparisons(twins);
    assert.equal(framework.status, 'measured');
    assert.equal(framework.name, 'onnxruntime-node vs TF.js (same weights), batch 8, TF.js backend wasm (1 thread)');
    assert.equal(formatRatio(framework.ratio), '3.00×', 'median of 40/16, 45/15, 40/10 = 2.5, 3, 4');
    assert.equal(formatRatio(precision.ratio), '1.50×', 'median of 60/40, 90/45, 60/40');
    assert.match(precision.name, /^int8 vs fp32 .*onnxruntime-node, batch 8$/);
    const absent = twinComparisons(undefined, 'not measured: --no-reference-model');
    assert.deepEqual(absent.map((c) => [c.status, c.note]), [['not available', 'not measured: --no-reference-model'], ['not available', 'not measured: --no-reference-model']]);
    assert.match(twinComparisons(undefined)[0].note!, /no reference model/);
    assert.match(twinNote(twins), /wasm backend with 1 thread .* top-1 class for 8\/8 images .*2\.0e-5/);

    const report = { ...fakeReport(), twins, referenceRuns: [twins.int8], model: { ...fakeReport().model, reference: { path: '/w/ref.onnx' } } };
    report.comparisons = [...report.comparisons, framework, precision];
    const md = formatMarkdown(report, { command: 'x', docPath: '/x/docs/PERFORMANCE.md' });
    assert.match(md, /### Same weights, three forms/);
    assert.match(md, /\| TF\.js LayersModel \(wasm\): imported from the int8 file \(fp32\) \| 8 \| 13\.7 \|/);
    assert.match(md, /\| onnxruntime-node vs TF\.js \(same weights\), batch 8, TF\.js backend wasm \(1 thread\) \| 3\.00× \|/);
    assert.match(formatTerminal(report), /int8 vs fp32 \(de-quantised export of the same model\), onnxruntime-node, batch 8 +1\.50×/);
    assert.equal(formatCsv(report).trim().split('\n').filter((l) => l.startsWith('twins,')).length, 2, 'fp32 and TF.js rows; the int8 row is the reference row');
  });

  test('twin helpers: NHWC ImageNet-normalised input and logit agreement', () => {
    const img = Uint8Array.from([255, 0, 128, 0, 255, 64]); // 2x1 image
    const x = nhwcNormalised([img], 2, 2, 1);
    assert.equal(x.length, 2 * 2 * 3);
    assert.ok(Math.abs(x[0] - (1 - 0.485) / 0.229) < 1e-6);
    assert.ok(Math.abs(x[4] - (1 - 0.456) / 0.224) < 1e-6);
    assert.deepEqual([...x.subarray(6)], [...x.subarray(0, 6)], 'the batch cycles through the images');
    const a = logitAgreement([1, 3, 2, 5, 0, 1], [1, 2.5, 2, 0, 6, 1], 3);
    assert.deepEqual(a, { images: 2, top1: 0.5, maxAbsLogitDiff: 6 });
    assert.throws(() => logitAgreement([1, 2], [1], 2), /Expected two \[N,2\] logit arrays/);
  });

  test('plots render to PNG through Vega-Lite, Vega and sharp', async () => {
    const png = await renderPng(throughputVsBatchSpec(fakeReport())!, 1);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const meta = await sharp(png).metadata();
    assert.ok((meta.width ?? 0) > 300);
  });

  test('bad bench options are refused naming the option, expected and received', async () => {
    const parse = async (...args: string[]) => {
      const program = new Command().exitOverride().configureOutput({ writeErr: () => undefined });
      registerBench(program);
      await program.parseAsync(['node', 'artist-id', 'bench', ...args]);
    };
    await assert.rejects(parse('--batches', '1,0'), /Expected positive integer for --batches but received "0"/);
    await assert.rejects(parse('--stability-percentage', 'x'), /Expected a number greater than 0 for --stability-percentage but received "x"/);
    await assert.rejects(parse('--distributions', 'uniform'), /Expected constant, poisson or constant,poisson for --distributions/);
    await assert.rejects(parse('--max-trials', '2'), /integer >= 3 for --max-trials/);
  });
});
