/**
 * Writes a bench report's files: `bench.json`, `bench.csv`, PNG plots, and optionally the Markdown
 * performance document.
 */
import { join, resolve } from 'node:path';
import { writePlots } from './plot.js';
import { formatCsv, formatMarkdown, writeText } from './report.js';
import type { BenchReport } from './run.js';

/** Where to write; `out` receives JSON, CSV and plots. */
export interface SaveOptions {
  out: string;
  /** Markdown document path (e.g. `docs/PERFORMANCE.md`); none when absent. */
  markdown?: string;
  /** Command shown in the Markdown as the way to regenerate it. */
  command?: string;
  /** Extra Markdown appended to the document (see `formatMarkdown`). */
  appendix?: (plots: Record<string, string>) => string;
}

/** Writes the files and returns their paths by kind. */
export async function saveBench(report: BenchReport, options: SaveOptions): Promise<{ json: string; csv: string; plots: Record<string, string>; markdown?: string }> {
  const out = resolve(options.out);
  const json = join(out, 'bench.json');
  const csv = join(out, 'bench.csv');
  await writeText(json, `${JSON.stringify(report, null, 2)}\n`);
  await writeText(csv, formatCsv(report));
  const plots = await writePlots(report, out);
  let markdown: string | undefined;
  if (options.markdown) {
    markdown = resolve(options.markdown);
    await writeText(markdown, formatMarkdown(report, { command: options.command ?? 'artist-id bench', plots, docPath: markdown, dataFiles: { json, csv }, appendix: options.appendix?.(plots) }));
  }
  return { json, csv, plots, markdown };
}
