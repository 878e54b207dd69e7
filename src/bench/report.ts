/**
 * Output of a bench run: a readable table for the terminal, JSON and CSV files, and the Markdown of
 * `docs/PERFORMANCE.md`. Pure formatting: every figure comes from a {@link BenchReport}.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, relative } from 'node:path';
import { csvField } from '../archive/output.js';
import type { ModelFlops } from './flops.js';
import type { ModelBenchResult } from './model-bench.js';
import type { BenchReport } from './run.js';
import { formatRatio, pairedRatio } from './stats.js';

/** Fixed-point number, or `-` when missing. */
export function fmt(n: number | undefined, digits = 1): string {
  return n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits);
}

/** Percentage of a fraction, e.g. `41.2%`. */
export function pct(fraction: number | undefined, digits = 1): string {
  return fraction === undefined || !Number.isFinite(fraction) ? '-' : `${(fraction * 100).toFixed(digits)}%`;
}

/** A plain-text table with columns padded to their widest cell; numbers right-aligned. */
export function textTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => /^[-+]?[\d.,]+[×%]?$|^-$/.test(r[i] ?? '')));
  const line = (cells: string[]) => cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A Markdown table; `|` in cells is escaped. */
export function markdownTable(headers: string[], rows: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => /^[-+]?[\d.,]+[×%]?$|^-$/.test(r[i] ?? '')));
  return [
    `| ${headers.map(esc).join(' | ')} |`,
    `| ${headers.map((_, i) => (numeric[i] ? '---:' : '---')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/** Operations per image of the model's dominant precision, and the matching peak. */
export function achieved(report: Pick<BenchReport, 'machine'>, flops: ModelFlops, imagesPerSecond: number): { gops: number; fraction: number; precision: 'int8' | 'fp32' } {
  const int8 = flops.int8Ops >= flops.fp32Flops;
  const ops = (flops.int8Ops + flops.fp32Flops) / flops.batch;
  const gops = (ops * imagesPerSecond) / 1e9;
  const peak = int8 ? report.machine.peak.int8GOps : report.machine.peak.fp32GFlops;
  return { gops, fraction: gops / peak, precision: int8 ? 'int8' : 'fp32' };
}

function stableMark(r: { stable: boolean }): string {
  return r.stable ? 'yes' : 'unstable';
}

function modelRows(report: BenchReport, runs: readonly ModelBenchResult[], flops: ModelFlops | undefined, label: (r: ModelBenchResult) => string): string[][] {
  return runs.map((r) => {
    const a = flops ? achieved(report, flops, r.imagesPerSecond) : undefined;
    return [label(r), String(r.batch), fmt(r.imagesPerSecond), fmt(r.latency.p50, 2), fmt(r.latency.p90, 2), fmt(r.latency.p95, 2), fmt(r.latency.p99, 2), fmt(r.createMs, 0), fmt(r.firstInferenceMs, 1), a ? fmt(a.gops, 1) : '-', a ? pct(a.fraction) : '-', `${r.windows}`, stableMark(r)];
  });
}

/** int8 in onnxruntime, dequantised fp32 in onnxruntime, TF.js twin (empty when not measured). */
function twinRuns(report: BenchReport): ModelBenchResult[] {
  return report.twins ? [report.twins.int8, report.twins.fp32, report.twins.tfjs] : [];
}

function twinLabel(r: ModelBenchResult): string {
  return `${r.runner}: ${r.variant}`;
}

const MODEL_HEADERS = ['runner', 'batch', 'images/s', 'p50 ms', 'p90 ms', 'p95 ms', 'p99 ms', 'create ms', 'first ms', 'GOP/s', 'of peak', 'windows', 'stable'];
const E2E_HEADERS = ['files', 'what', 'in flight', 'batch', 'images/s', 'p50 ms', 'p99 ms', 'inference share', 'passes', 'stable'];
const SERVER_HEADERS = ['load', 'requests/s', 'images/s', 'p50 ms', 'p90 ms', 'p95 ms', 'p99 ms', 'errors', 'error rate', 'windows', 'stable'];

function e2eRows(report: BenchReport): string[][] {
  return report.e2e.map((r) => [r.corpus, r.kind === 'decode-only' ? 'decode-only' : r.variant, String(r.decodeConcurrency), r.batch ? String(r.batch) : '-', fmt(r.imagesPerSecond), fmt(r.latency.p50, 2), fmt(r.latency.p99, 2), pct(r.inferenceShare), String(r.passes), stableMark(r)]);
}

const PROFILE_HEADERS = ['node', 'operator', 'output', 'ms per run', 'share'];

function profileRows(report: BenchReport, top: number): string[][] {
  return (report.profile?.byNode ?? []).slice(0, top).map((n) => [n.name, n.opType, n.output ?? '-', fmt(n.ms, 2), pct(n.share)]);
}

function calibrationRows(report: BenchReport): string[][] {
  return report.calibration.map((c) => [c.runner, fmt(c.imagesPerSecond), fmt(c.latency.p50, 2), `${fmt(c.gops)} ${c.precision === 'fp32' ? 'GFLOP/s' : 'GOP/s'}`, pct(c.fractionOfPeak), stableMark(c)]);
}

function serverRows(report: BenchReport): string[][] {
  return (report.server?.results ?? []).map((r) => [
    r.mode === 'concurrency' ? `concurrency ${r.concurrency}` : `${r.distribution} ${fmt(r.rate, 0)}/s`,
    fmt(r.requestsPerSecond),
    fmt(r.imagesPerSecond),
    fmt(r.latency?.p50, 2),
    fmt(r.latency?.p90, 2),
    fmt(r.latency?.p95, 2),
    fmt(r.latency?.p99, 2),
    String(r.errors),
    pct(r.errorRate),
    String(r.windows),
    stableMark(r),
  ]);
}

/** The terminal summary: machine, model-only, session options, end to end, server, comparisons. */
export function formatTerminal(report: BenchReport): string {
  const m = report.machine;
  const out: string[] = [];
  out.push(`machine: ${m.cpu.modelName}${m.microarchitecture ? ` (${m.microarchitecture})` : ''}, ${m.cpu.logicalCpus} CPUs, ${m.peak.unit.name}; peak fp32 ${fmt(m.peak.fp32GFlops)} GFLOP/s, int8 ${fmt(m.peak.int8GOps)} GOP/s; load ${m.loadBefore.map((l) => l.toFixed(2)).join(' ')}; other processes used ${pct(m.otherCpuShare, 0)} of the CPUs during the run`);
  const mf = report.model.flopsPerImage;
  out.push(`model: ${report.model.name} (${report.model.path})${mf ? `, ${fmt((mf.int8Ops + mf.fp32Flops) / 1e9, 3)} GOP per image` : ''}`);
  if (report.modelRuns.length > 0) out.push('', 'model only (in process; latency of one batch)', textTable(MODEL_HEADERS, modelRows(report, report.modelRuns, report.model.flopsPerImage, (r) => r.runner)));
  if (report.sessionOptions.length > 0) out.push('', 'session options (bare onnxruntime-node, one change from artist-id options)', textTable(MODEL_HEADERS, modelRows(report, report.sessionOptions, report.model.flopsPerImage, (r) => r.variant)));
  if (report.referenceRuns.length > 0) out.push('', `reference: ${report.model.reference?.path}`, textTable(MODEL_HEADERS, modelRows(report, report.referenceRuns, report.model.reference?.flopsPerImage, (r) => r.runner)));
  if (report.twins) out.push('', `same weights, three forms (${report.twins.path.split('/').pop()}, batch ${report.twins.batch}, windows round-robin)`, textTable(MODEL_HEADERS, modelRows(report, twinRuns(report), undefined, twinLabel)));
  if (report.profile) out.push('', `where the model's time goes (onnxruntime profiler, batch ${report.profile.batch}, ${fmt(report.profile.kernelMs, 1)} ms of kernels per run)`, textTable(PROFILE_HEADERS, profileRows(report, 8)));
  if (report.calibration.length > 0) out.push('', 'calibration: dense GEMM in onnxruntime (compute-bound)', textTable(['product', 'runs/s', 'p50 ms', 'achieved', 'of peak', 'stable'], calibrationRows(report)));
  if (report.e2e.length > 0) out.push('', 'end to end on files (decode-only latency: one image; archive latency: one inference batch)', textTable(E2E_HEADERS, e2eRows(report)));
  for (const b of report.bottlenecks) out.push(`  ${b.corpus}: bottleneck ${b.bottleneck} (decode ${pct(b.decodeShare, 0)} / inference ${pct(b.inferenceShare, 0)} of serial time; serial estimate ${fmt(b.serial)} images/s, archive ${fmt(b.archiveImagesPerSecond)} images/s)`);
  if (report.server) out.push('', `server ${report.server.url} model ${report.server.model} (${report.server.input}, ${report.server.encoding}, batch ${report.server.batch})`, textTable(SERVER_HEADERS, serverRows(report)));
  out.push('', 'comparisons', textTable(['comparison', 'ratio'], report.comparisons.map((c) => [c.name, c.status === 'measured' ? formatRatio(c.ratio) : c.note ?? c.status])));
  if (report.notes.length > 0) out.push('', ...report.notes.map((n) => `note: ${n}`));
  out.push('', `finished in ${fmt(report.seconds)} s`);
  return out.join('\n');
}

/** One CSV row per measured configuration, all sections in one file. */
export function formatCsv(report: BenchReport): string {
  const headers = ['section', 'runner', 'variant', 'corpus_or_model', 'batch', 'concurrency', 'request_rate', 'images_per_s', 'p50_ms', 'p90_ms', 'p95_ms', 'p99_ms', 'mean_ms', 'create_ms', 'first_inference_ms', 'inference_share', 'errors', 'windows', 'stable'];
  const rows: (string | number | boolean | undefined)[][] = [];
  const model = (section: string, r: ModelBenchResult) => rows.push([section, r.runner, r.variant, r.model, r.batch, '', '', r.imagesPerSecond, r.latency.p50, r.latency.p90, r.latency.p95, r.latency.p99, r.latency.mean, r.createMs, r.firstInferenceMs, '', 0, r.windows, r.stable]);
  report.modelRuns.forEach((r) => model('model', r));
  report.sessionOptions.forEach((r) => model('session-options', r));
  report.referenceRuns.forEach((r) => model('reference', r));
  twinRuns(report).slice(1).forEach((r) => model('twins', r));
  for (const r of report.e2e) rows.push([r.kind === 'decode-only' ? 'decode-only' : 'archive', r.kind, r.variant, r.corpus, r.batch, r.decodeConcurrency, '', r.imagesPerSecond, r.latency.p50, r.latency.p90, r.latency.p95, r.latency.p99, r.latency.mean, '', '', r.inferenceShare, 0, r.passes, r.stable]);
  for (const r of report.server?.results ?? []) rows.push(['server', r.mode, r.mode === 'rate' ? r.distribution : 'closed loop', report.server!.model, r.batch, r.concurrency, r.rate, r.imagesPerSecond, r.latency?.p50, r.latency?.p90, r.latency?.p95, r.latency?.p99, r.latency?.mean, '', '', '', r.errors, r.windows, r.stable]);
  const cell = (v: string | number | boolean | undefined) => (v === undefined ? '' : typeof v === 'number' ? String(Math.round(v * 1000) / 1000) : csvField(String(v)));
  return [headers.join(','), ...rows.map((r) => r.map(cell).join(','))].join('\n') + '\n';
}

/** Writes text to a file, creating its folder. */
export async function writeText(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

/** Options of {@link formatMarkdown}. */
export interface MarkdownOptions {
  /** The command that generated the document (shown at the top). */
  command: string;
  /** Plot files (absolute), linked relative to `docPath`. */
  plots?: Record<string, string>;
  /** Where the document will be written, for relative links. */
  docPath: string;
  /** The JSON and CSV files of the same run (absolute), linked relative to `docPath`. */
  dataFiles?: { json: string; csv: string };
  /** Extra Markdown sections appended before the notes (e.g. reference points of an issue). */
  appendix?: string;
}

/** `docs/PERFORMANCE.md`: every figure from the report, with the method and the targets. */
export function formatMarkdown(report: BenchReport, options: MarkdownOptions): string {
  const m = report.machine;
  const f = report.model.flopsPerImage;
  const md: string[] = [];
  const p = (...lines: string[]) => md.push(...lines, '');
  const ortVsBare = report.comparisons.filter((c) => c.name.startsWith('artist-id in process vs bare'));
  const artist = (batch: number) => report.modelRuns.find((r) => r.runner === 'artist-id Classifier.run' && r.batch === batch);
  const bare = (batch: number) => report.modelRuns.find((r) => r.runner === 'bare onnxruntime-node' && r.batch === batch);
  const best = [...report.modelRuns].filter((r) => r.runner === 'artist-id Classifier.run').sort((a, b) => b.imagesPerSecond - a.imagesPerSecond)[0];

  p('# Performance', `<!-- Generated by \`${options.command}\` — do not edit by hand; rerun the command instead. -->`);
  p(`Generated by \`${options.command}\` on ${report.startedAt.slice(0, 10)} (${fmt(report.seconds, 0)} s, ${report.thorough ? 'thorough' : 'quick'} settings). Every number below comes from that run${options.dataFiles ? `; the raw figures are in [${relative(dirname(options.docPath), options.dataFiles.json)}](${relative(dirname(options.docPath), options.dataFiles.json)}) and [${relative(dirname(options.docPath), options.dataFiles.csv)}](${relative(dirname(options.docPath), options.dataFiles.csv)})` : ''}.`);

  p('## Machine');
  p(markdownTable(['', ''], [
    ['CPU', `${m.cpu.modelName} (${m.cpu.vendor}, family ${m.cpu.family ?? '?'} model ${m.cpu.model ?? '?'}${m.microarchitecture ? `: ${m.microarchitecture}` : ''})`],
    ['cores', `${m.cpu.logicalCpus} logical CPUs, ${m.cpu.physicalCores} cores as cpuinfo reports them`],
    ['clock', `${fmt(m.peak.clockGHz, 3)} GHz (${m.peak.clockSource})`],
    ['vector flags', m.cpu.vectorFlags.join(', ') || 'none found'],
    ['widest vector unit', `${m.peak.unit.name}: fp32 ${m.peak.unit.fp32FlopPerCycle} FLOP/cycle/core, int8 ${m.peak.unit.int8OpsPerCycle} ops/cycle/core (${m.peak.unit.int8Path})`],
    ['peak fp32', m.peak.fp32Formula],
    ['peak int8', m.peak.int8Formula],
    ['memory', `${fmt(m.memoryGB, 1)} GiB`],
    ['software', `Node ${m.node}, onnxruntime-node ${m.onnxruntime}, sharp ${m.sharp} (libvips ${m.libvips})`],
    ['load average (1, 5, 15 min)', `before ${m.loadBefore.map((l) => l.toFixed(2)).join(', ')}; after ${m.loadAfter.map((l) => l.toFixed(2)).join(', ')}`],
    ['other processes', `${pct(m.busyBefore, 0)} of the CPUs busy in the second before the run; ${pct(m.otherCpuShare, 1)} of the CPU capacity used by other processes during it`],
  ]));
  p('Peak = cores × clock × operations per cycle of the widest vector unit (fp32: FMA pipes × lanes × 2; int8: ×2 of fp32 without VNNI, ×4 with VNNI). Override any term with `artist-id bench --peak-clock-ghz`, `--peak-cores`, `--peak-fp32-gflops`, `--peak-int8-gops` when cpuinfo is wrong (a VM often reports the base clock while the core boosts).');
  if (m.peak.overridden.length > 0) p(`Overridden in this run: ${m.peak.overridden.join(', ')}.`);

  p('## Method');
  p(
    `- Model only: a session is created (timed), the first inference timed alone, then ${report.settings.warmupMs} ms of warm-up that no figure includes. Then measurement windows of ${report.settings.windowMs} ms of back-to-back \`run\` calls repeat until the last three agree: each window's images/s and mean latency within ±${report.settings.stabilityPercentage}% of their mean over the three (NVIDIA perf_analyzer's rule: \`--stability-percentage\` 10, 3 windows, \`--max-trials\`; here at most ${report.settings.maxTrials} windows). Figures merge those three windows; latency is of one batch (one \`run\`), p50/p90/p95/p99 by perf_analyzer's nearest-rank rule. "unstable" marks a configuration that never met the rule.`,
    '- artist-id in process is `Classifier.load` + `Classifier.run` (batch assembly, probabilities split per image); bare onnxruntime-node is `InferenceSession.create(file)` with onnxruntime\'s default options and `session.run(feeds)` on a prebuilt tensor, same model file and batch, measured in the same run with alternating windows (a, b, a, b, ...) so that load changing on the machine weighs on both alike; their ratio is the median over window pairs of a ÷ b. The session-option variants are measured the same way, round-robin.',
    '- End to end: decode-only reads and decodes every file with `decodeImage` (the one preprocessing) with N files in flight; the archive run is `classifyArchive` (what `artist-id classify` runs) writing rows to a temporary file. One pass over the files is one window; passes repeat until three agree. Inference share = time inside `classifier.run` / wall time.',
    `- FLOPs are counted from the ONNX graph (shapes inferred from the input at batch 1): Conv/QLinearConv 2 × Cout × Hout × Wout × Cin/group × kH × kW, MatMul/Gemm 2 × M × K × N. ${f ? `${report.model.name}: ${fmt(f.int8Ops / 1e9, 4)} GOP int8 + ${fmt(f.fp32Flops / 1e6, 3)} MFLOP fp32 per image (${f.nodes.length} conv/matmul nodes; element-wise work, ${fmt(f.elementwiseOps / 1e6, 2)} M ops, is not counted)` : `${report.model.name}: not counted (${report.model.flopsError ?? 'unknown reason'})`}. Achieved = images/s × that, as a fraction of the peak of the dominant precision.`,
  );

  if (report.modelRuns.length > 0) {
    p('## Model only (in process)');
    p(markdownTable(MODEL_HEADERS, modelRows(report, report.modelRuns, f, (r) => r.runner)));
    if (ortVsBare.length > 0) {
      p('artist-id in process vs bare onnxruntime-node on the same model and batch (images/s ratio; target ≥ 0.90×):');
      p(markdownTable(['batch', 'artist-id images/s', 'bare images/s', 'ratio (median of paired windows)'], report.settings.batches.filter((b) => artist(b) && bare(b)).map((b) => [String(b), fmt(artist(b)!.imagesPerSecond), fmt(bare(b)!.imagesPerSecond), formatRatio(pairedRatio(artist(b)!.windowImagesPerSecond, bare(b)!.windowImagesPerSecond))])));
      const worst = Math.min(...ortVsBare.map((c) => c.ratio ?? Infinity));
      p(worst >= 0.9 ? `Target met: artist-id's in-process images/s is within 10% of bare onnxruntime-node at every batch (lowest ratio ${formatRatio(worst)}).` : `Target missed at some batch (lowest ratio ${formatRatio(worst)})${report.modelRuns.some((r) => !r.stable) || report.machine.loadBefore[0] > 0.5 ? '; some windows were unstable or the machine was busy (see the notes at the end), so rerun on a quiet machine before reading much into it' : ''}.`);
    }
    if (options.plots?.['throughput-vs-batch.png']) p(`![images/s vs batch size](${relative(dirname(options.docPath), options.plots['throughput-vs-batch.png'])})`);
    if (options.plots?.['latency-vs-throughput.png']) p(`![latency vs throughput](${relative(dirname(options.docPath), options.plots['latency-vs-throughput.png'])})`);
    if (best && f) {
      const a = achieved(report, f, best.imagesPerSecond);
      p(`Best artist-id figure: ${fmt(best.imagesPerSecond)} images/s at batch ${best.batch} = ${fmt(a.gops, 1)} GOP/s ${a.precision}, ${pct(a.fraction)} of the ${a.precision} peak. A MobileNetV2 is mostly depthwise 3×3 and 1×1 convolutions on small feature maps: little arithmetic per byte moved, so it is bound by memory and per-operator overhead, far from the vector units' peak; a dense model (e.g. a VGG16 conv base) comes much closer.`);
    }
  }

  if (report.profile) {
    const pr = report.profile;
    p('## Where the model\'s time goes', `onnxruntime's profiler over ${pr.runs} runs at batch ${pr.batch} with artist-id's session options: ${fmt(pr.kernelMs, 1)} ms of kernel time per run. Output shapes are as onnxruntime runs them, after its layout changes (int8 convolutions run NHWC).`);
    p(markdownTable(['operator', 'ms per run', 'share'], pr.byOpType.slice(0, 10).map((o) => [o.opType, fmt(o.ms, 2), pct(o.share)])));
    p(markdownTable(PROFILE_HEADERS, profileRows(report, 12)));
  }

  if (report.sessionOptions.length > 0) {
    const base = report.sessionOptions[0];
    p('## Session options', `Bare onnxruntime-node sessions on ${report.model.name}, batch ${base.batch}; each row changes one option from artist-id's (\`src/inference/session.ts\`). Effect = the median over window rounds of images/s ÷ the first row's images/s in the same round.`);
    p(markdownTable(['session options', 'images/s', 'p50 ms', 'p99 ms', 'create ms', 'effect', 'stable'], report.sessionOptions.map((r) => [r.variant + (r.batch !== base.batch ? ` (batch ${r.batch})` : ''), fmt(r.imagesPerSecond), fmt(r.latency.p50, 2), fmt(r.latency.p99, 2), fmt(r.createMs, 0), r.batch === base.batch ? formatRatio(pairedRatio(r.windowImagesPerSecond, base.windowImagesPerSecond)) : '-', stableMark(r)])));
  }

  if (report.referenceRuns.length > 0 && report.model.reference) {
    const rf = report.model.reference.flopsPerImage;
    p('## Reference: ImageNet MobileNetV2 int8 alone', `\`${report.model.reference.path.split('/').slice(-2).join('/')}\` (input \`[N,3,224,224]\` float32), bare onnxruntime-node with default options${rf ? `; ${fmt(rf.int8Ops / 1e9, 4)} GOP int8 per image` : ''}.`);
    p(markdownTable(MODEL_HEADERS, modelRows(report, report.referenceRuns, rf, (r) => r.runner)));
    if (report.twins) {
      const t = report.twins;
      p('### Same weights, three forms', `The int8 file in onnxruntime-node, its dequantised fp32 ONNX graph (\`export/convert\` \`dequantizeModel\`) in onnxruntime-node, and the TF.js LayersModel imported from it (\`importOnnxToTfjs\`, fp32, NHWC input) on TF.js's ${t.backend} backend${t.backendThreads !== undefined ? ` (${t.backendThreads} thread${t.backendThreads === 1 ? '' : 's'})` : ''}; batch ${t.batch} of the same paintings, windows round-robin. The two fp32 forms agree on the top-1 class for ${Math.round(t.agreement.top1 * t.agreement.images)}/${t.agreement.images} images (largest logit difference ${t.agreement.maxAbsLogitDiff.toExponential(1)}). Ratios (median of paired windows) are under Comparisons.`);
      p(markdownTable(MODEL_HEADERS, modelRows(report, twinRuns(report), undefined, twinLabel)));
    }
  }

  if (report.calibration.length > 0) {
    p('## Calibration: how close a compute-bound graph gets to peak', 'A single dense matrix product in onnxruntime (fp32 `MatMul`; int8 `MatMulInteger` u8 × s8 → s32), built in memory, default session options: the fraction of the computed peak that onnxruntime reaches when arithmetic, not memory, is the limit. It checks the peak formula and clock, and bounds what any model can reach here.');
    p(markdownTable(['product', 'runs/s', 'p50 ms', 'achieved', 'of peak', 'stable'], calibrationRows(report)));
  }

  if (report.e2e.length > 0) {
    p('## End to end on files');
    p(markdownTable(['files', 'count', 'unique', 'MB', 'source'], report.corpora.map((c) => [c.name, String(c.files), String(c.uniqueFiles), fmt(c.megabytes, 1), c.source])));
    p(markdownTable(E2E_HEADERS, e2eRows(report)));
    if (options.plots?.['end-to-end.png']) p(`![end to end](${relative(dirname(options.docPath), options.plots['end-to-end.png'])})`);
    p('### Where the time goes');
    p(markdownTable(['files', 'decode-only images/s (best)', `inference-only images/s (batch ${report.settings.archiveBatch}, same classifier, just before)`, 'decode share', 'inference share', 'serial estimate', 'archive images/s (best)', 'archive ÷ decode-only', 'bottleneck'], report.bottlenecks.map((b) => [b.corpus, fmt(b.decodeImagesPerSecond), fmt(b.inferenceImagesPerSecond), pct(b.decodeShare, 0), pct(b.inferenceShare, 0), fmt(b.serial), fmt(b.archiveImagesPerSecond), formatRatio(b.archiveImagesPerSecond !== undefined ? b.archiveImagesPerSecond / b.decodeImagesPerSecond : undefined), b.bottleneck])));
    p('Shares are of the serial time per image (1/decode + 1/inference, each measured alone on all cores; inference-only on the classifier of the archive run, right before its passes). On a machine where decoding and inference share the same cores, the end-to-end rate stays near the serial estimate 1 / (1/decode + 1/inference) (a little above it where decoding uses cycles that inference leaves idle); it approaches decode-only only when inference costs little next to decoding, or runs on other hardware (a GPU).');
  }

  p('## Comparisons');
  p(markdownTable(['comparison', 'ratio', 'numerator ÷ denominator'], report.comparisons.map((c) => [c.name, c.status === 'measured' ? formatRatio(c.ratio) : c.note ?? c.status, `${c.numerator} ÷ ${c.denominator}`])));

  p('## Server');
  if (report.server) {
    p(`\`${report.server.url}\`, model \`${report.server.model}\`, input ${report.server.input} (${report.server.encoding}), ${report.server.batch} image(s) per request. Closed loop: N requests always in flight; open loop: requests on a constant or Poisson schedule, latency from the scheduled time.`);
    p(markdownTable(SERVER_HEADERS, serverRows(report)));
  } else {
    p('Not measured in this run (no server given). `artist-id bench --url http://HOST:PORT --server-model NAME` runs a closed-loop concurrency sweep (1, 4, 16, 64) and an open-loop request-rate sweep (constant and Poisson) against any KServe v2 / Open Inference Protocol server (`POST /v2/models/{name}/infer`, BYTES input with the encoded image or a UINT8 `[N,224,224,3]` tensor, binary data extension or JSON). The client is tested against a loopback KServe v2 stub in `test/bench.test.ts`.');
  }

  if (options.appendix) p(options.appendix.trim());
  if (report.notes.length > 0) p('## Notes', ...report.notes.map((n) => `- ${n}`));
  return md.join('\n').trimEnd() + '\n';
}
