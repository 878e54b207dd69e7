/**
 * Where the time goes inside the model: onnxruntime's own profiler (session option
 * `enableProfiling`, Chrome-trace JSON of every kernel run) summed per operator node, so the nodes
 * worth optimising are named with their share of kernel time.
 * Source: https://onnxruntime.ai/docs/performance/tune-performance/profiling-tools.html
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { expectInteger } from '../errors.js';

/** Kernel time of one node (or one operator type). */
export interface OpTime {
  /** Node name (or operator type in `byOpType`). */
  name: string;
  opType: string;
  /** Output shape as the profiler reports it (after onnxruntime's layout changes), e.g. `float[8,224,224,3]`. */
  output?: string;
  /** Mean kernel time per run, ms. */
  ms: number;
  /** Share of all kernel time. */
  share: number;
}

/** Per-node and per-operator-type kernel time. */
export interface OpProfile {
  batch: number;
  runs: number;
  /** Sum of kernel times per run, ms. */
  kernelMs: number;
  byNode: OpTime[];
  byOpType: OpTime[];
}

/** One event of onnxruntime's profile (the fields used here). */
interface TraceEvent {
  cat?: string;
  name?: string;
  dur?: number;
  args?: { op_name?: string; output_type_shape?: Record<string, number[]>[] };
}

/**
 * Sums onnxruntime profile events (`cat: "Node"`, `name: "<node>_kernel_time"`, `dur` in µs) per
 * node and per operator type.
 *
 * @param runs - profiled runs the events cover, to report means per run.
 */
export function summarizeProfile(events: readonly TraceEvent[], runs: number, batch: number): OpProfile {
  const nodes = new Map<string, { opType: string; output?: string; us: number }>();
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || typeof e.dur !== 'number') continue;
    const name = e.name.slice(0, -'_kernel_time'.length);
    const shape = e.args?.output_type_shape?.[0];
    const output = shape ? Object.entries(shape).map(([type, dims]) => `${type}[${dims.join(',')}]`)[0] : undefined;
    const entry = nodes.get(name) ?? { opType: e.args?.op_name ?? '?', output, us: 0 };
    entry.us += e.dur;
    nodes.set(name, entry);
  }
  const totalUs = [...nodes.values()].reduce((a, n) => a + n.us, 0);
  const byNode = [...nodes.entries()]
    .map(([name, n]) => ({ name, opType: n.opType, output: n.output, ms: n.us / runs / 1000, share: totalUs > 0 ? n.us / totalUs : 0 }))
    .sort((a, b) => b.ms - a.ms);
  const types = new Map<string, number>();
  for (const n of byNode) types.set(n.opType, (types.get(n.opType) ?? 0) + n.ms);
  const kernelMs = totalUs / runs / 1000;
  const byOpType = [...types.entries()].map(([opType, ms]) => ({ name: opType, opType, ms, share: kernelMs > 0 ? ms / kernelMs : 0 })).sort((a, b) => b.ms - a.ms);
  return { batch, runs, kernelMs, byNode, byOpType };
}

/**
 * Profiles `runs` runs (after `warmup` unprofiled-in-effect runs, which are dropped from the sums)
 * of a model with onnxruntime's profiler and returns per-node kernel times. The profile file is
 * written to a temporary folder and removed.
 *
 * @param options - session options (artist-id's, or onnxruntime defaults with `{}`).
 */
export async function profileModel(modelPath: string, feeds: Record<string, ort.Tensor>, batch: number, options: ort.InferenceSession.SessionOptions = {}, runs = 10, warmup = 3): Promise<OpProfile> {
  expectInteger('runs', runs);
  expectInteger('warmup', warmup, 0);
  const dir = await mkdtemp(join(os.tmpdir(), 'artist-id-profile-'));
  try {
    const session = await ort.InferenceSession.create(modelPath, { ...options, executionProviders: ['cpu'], enableProfiling: true, profileFilePrefix: join(dir, 'ort') });
    let events: TraceEvent[];
    try {
      for (let i = 0; i < warmup + runs; i++) await session.run(feeds);
      session.endProfiling();
      const file = (await readdir(dir)).find((f) => f.endsWith('.json'));
      if (!file) throw new Error(`onnxruntime wrote no profile into ${dir}`);
      events = JSON.parse(await readFile(join(dir, file), 'utf8')) as TraceEvent[];
    } finally {
      await session.release();
    }
    // Drop the warm-up runs: the profiler marks each run with a "model_run" Session event.
    const runStarts = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').map((e) => (e as { ts?: number }).ts ?? 0);
    const from = runStarts.length >= warmup + runs ? runStarts[warmup] : -Infinity;
    return summarizeProfile(events.filter((e) => ((e as { ts?: number }).ts ?? 0) >= from), runStarts.length >= warmup + runs ? runs : warmup + runs, batch);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
