/**
 * The repeated-split runs of scripts/seeds.ts (cached one JSON per experiment, rung and seed in docs/seeds/)
 * and their table, shared by docs/SEEDS.md and docs/RESULTS.md.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';
import { EXPERIMENTS, RUNGS } from './experiments.js';

/** Where the runs are cached. */
export const SEED_RUNS = join(PACKAGE_ROOT, 'docs', 'seeds');

/** Rungs run over several seeds: not the baseline (20-60 min a run here) nor the ensemble (needs its members per seed). */
export const SEEDABLE = RUNGS.filter((r) => r.id !== 'baseline' && r.id !== 'ensemble');

/** One cached run. */
export interface SeedRun {
  experiment: string;
  rung: string;
  seed: number;
  command: string[];
  validation: number;
  test: number;
  testImages: number;
  /** Test expected calibration error (15 bins) after temperature scaling, from the card. */
  testEce?: number;
}

export async function readSeedRuns(dir = SEED_RUNS): Promise<SeedRun[]> {
  if (!existsSync(dir)) return [];
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  return Promise.all(files.map(async (f) => JSON.parse(await readFile(join(dir, f), 'utf8')) as SeedRun));
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
// Sample standard deviation (n - 1): the spread a new seed would show.
const std = (xs: number[]) => Math.sqrt(xs.reduce((s, a) => s + (a - mean(xs)) ** 2, 0) / Math.max(1, xs.length - 1));
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Mean validation accuracy of a rung on an experiment over its cached seeds, or undefined without runs. */
export function meanValidation(runs: SeedRun[], experiment: string, rung: string): number | undefined {
  const mine = runs.filter((r) => r.experiment === experiment && r.rung === rung);
  return mine.length ? mean(mine.map((r) => r.validation)) : undefined;
}

/** The markdown table: one row per experiment x rung with runs, validation and test mean ± std, test ECE. */
export function seedTable(runs: SeedRun[]): string {
  const rows: string[] = [];
  for (const e of EXPERIMENTS) {
    for (const rung of SEEDABLE) {
      const mine = runs.filter((r) => r.experiment === e.id && r.rung === rung.id).sort((a, b) => a.seed - b.seed);
      if (mine.length === 0) continue;
      const v = mine.map((r) => r.validation);
      const t = mine.map((r) => r.test);
      const ece = mine.map((r) => r.testEce).filter((x): x is number => x !== undefined);
      const eceText = ece.length === mine.length ? `${mean(ece).toFixed(3)} ± ${std(ece).toFixed(3)}` : '—';
      rows.push(`| ${e.title} | ${rung.title} | ${pct(mean(v))} ± ${(100 * std(v)).toFixed(1)} | ${mine.map((r) => `${r.seed}: ${pct(r.test)}`).join(', ')} | **${pct(mean(t))} ± ${(100 * std(t)).toFixed(1)}** | ${eceText} |`);
    }
  }
  return `| experiment | rung | validation accuracy, mean ± std | test accuracy per seed | test accuracy, mean ± std | test ECE after temperature scaling, mean ± std |
|---|---|---|---|---|---|
${rows.join('\n')}`;
}
