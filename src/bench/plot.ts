/**
 * PNG plots of a bench report, with no native canvas: Vega-Lite spec → Vega view (headless,
 * `renderer: 'none'`) → SVG → PNG with sharp (librsvg).
 * Sources: https://vega.github.io/vega-lite/usage/compile.html, https://vega.github.io/vega/docs/api/view/#view_toSVG
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { BenchReport } from './run.js';

/** A Vega-Lite spec (the top-level object of https://vega.github.io/schema/vega-lite/v6.json). */
export type VegaLiteSpec = vl.TopLevelSpec;

/**
 * Renders a Vega-Lite spec to PNG bytes.
 *
 * @param scale - SVG scale factor (2 gives a sharp image on high-density screens).
 */
export async function renderPng(spec: VegaLiteSpec, scale = 2): Promise<Buffer> {
  const view = new vega.View(vega.parse(vl.compile(spec, { logger: vega.logger(vega.Error) }).spec), { renderer: 'none', logLevel: vega.Error });
  try {
    const svg = await view.toSVG(scale);
    return await sharp(Buffer.from(svg), { density: 72 * scale }).flatten({ background: '#ffffff' }).png().toBuffer();
  } finally {
    view.finalize();
  }
}

/** images/s against batch size, one line per runner (log2 batch axis). */
export function throughputVsBatchSpec(report: Pick<BenchReport, 'modelRuns' | 'model'>): VegaLiteSpec | undefined {
  const values = report.modelRuns.map((r) => ({ batch: r.batch, imagesPerSecond: Math.round(r.imagesPerSecond * 10) / 10, runner: r.runner }));
  if (values.length === 0) return undefined;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'images/s vs batch size (model only, in process)', subtitle: report.model.name },
    width: 480,
    height: 280,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'batch', type: 'quantitative', title: 'batch (images per run)', scale: { type: 'log', base: 2 }, axis: { values: [...new Set(values.map((v) => v.batch))] } },
      y: { field: 'imagesPerSecond', type: 'quantitative', title: 'images/s', scale: { zero: true } },
      color: { field: 'runner', type: 'nominal', title: null, legend: { orient: 'bottom' } },
    },
  };
}

/**
 * Latency against throughput: model-only points (p50 and p99 batch latency vs images/s, one point
 * per batch) and, when measured, the server sweep (p50/p99 request latency vs images/s).
 */
export function latencyVsThroughputSpec(report: Pick<BenchReport, 'modelRuns' | 'server'>): VegaLiteSpec | undefined {
  // `load` orders each line by the offered load (batch, concurrency, rate), not by the measured rate.
  const values: { imagesPerSecond: number; latencyMs: number; series: string; label: string; load: number }[] = [];
  for (const r of report.modelRuns.filter((m) => m.runner === 'artist-id Classifier.run')) {
    values.push({ imagesPerSecond: r.imagesPerSecond, latencyMs: r.latency.p50, series: 'in process p50', label: `b${r.batch}`, load: r.batch });
    values.push({ imagesPerSecond: r.imagesPerSecond, latencyMs: r.latency.p99, series: 'in process p99', label: `b${r.batch}`, load: r.batch });
  }
  for (const r of report.server?.results ?? []) {
    if (!r.latency) continue;
    const name = r.mode === 'concurrency' ? 'server closed loop' : `server ${r.distribution}`;
    const label = r.mode === 'concurrency' ? `c${r.concurrency}` : `${Math.round(r.rate ?? 0)}/s`;
    const load = r.mode === 'concurrency' ? r.concurrency ?? 0 : r.rate ?? 0;
    values.push({ imagesPerSecond: r.imagesPerSecond, latencyMs: r.latency.p50, series: `${name} p50`, label, load });
    values.push({ imagesPerSecond: r.imagesPerSecond, latencyMs: r.latency.p99, series: `${name} p99`, label, load });
  }
  if (values.length === 0) return undefined;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'latency vs throughput', subtitle: 'model only: batch latency at each batch size (label b<batch>); server: request latency' },
    width: 480,
    height: 280,
    data: { values },
    layer: [
      { mark: { type: 'line', point: true }, encoding: { order: { field: 'load', type: 'quantitative' } } },
      { mark: { type: 'text', dx: 4, dy: -8, fontSize: 9 }, encoding: { text: { field: 'label' } } },
    ],
    encoding: {
      x: { field: 'imagesPerSecond', type: 'quantitative', title: 'images/s' },
      y: { field: 'latencyMs', type: 'quantitative', title: 'latency (ms)', scale: { type: 'log' } },
      color: { field: 'series', type: 'nominal', title: null, legend: { orient: 'bottom', columns: 2, labelLimit: 320 } },
    },
  } as VegaLiteSpec;
}

/** End to end: decode-only vs archive images/s per corpus and variant (bars). */
export function endToEndSpec(report: Pick<BenchReport, 'e2e'>): VegaLiteSpec | undefined {
  const values = report.e2e.map((r) => ({
    corpus: r.corpus,
    what: `${r.corpus}: ${r.kind === 'decode-only' ? `decode-only, ${r.decodeConcurrency} in flight` : `archive ${r.variant.split(':')[0]}, b${r.batch}, ${r.decodeConcurrency} in flight`}`,
    imagesPerSecond: Math.round(r.imagesPerSecond * 10) / 10,
  }));
  if (values.length === 0) return undefined;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'end to end: decode-only vs archive run (images/s)' },
    width: 420,
    height: { step: 18 },
    data: { values },
    layer: [
      { mark: 'bar', encoding: { color: { field: 'corpus', type: 'nominal', title: null, legend: { orient: 'bottom' } } } },
      { mark: { type: 'text', align: 'left', dx: 3 }, encoding: { text: { field: 'imagesPerSecond' } } },
    ],
    encoding: {
      x: { field: 'imagesPerSecond', type: 'quantitative', title: 'images/s' },
      y: { field: 'what', type: 'nominal', title: null, sort: null, axis: { labelLimit: 520 } },
    },
  } as VegaLiteSpec;
}

/**
 * Writes the report's plots as PNG files into `dir` (created if needed).
 *
 * @returns the files written, by plot name.
 */
export async function writePlots(report: BenchReport, dir: string): Promise<Record<string, string>> {
  await mkdir(dir, { recursive: true });
  const plots: [string, VegaLiteSpec | undefined][] = [
    ['throughput-vs-batch.png', throughputVsBatchSpec(report)],
    ['latency-vs-throughput.png', latencyVsThroughputSpec(report)],
    ['end-to-end.png', endToEndSpec(report)],
  ];
  const written: Record<string, string> = {};
  for (const [name, spec] of plots) {
    if (!spec) continue;
    const path = join(dir, name);
    await writeFile(path, await renderPng(spec));
    written[name] = path;
  }
  return written;
}
