/**
 * The machine and its theoretical peak: CPU model, cores, clock and vector flags from
 * `/proc/cpuinfo`, and peak = cores × clock × operations per cycle of the widest vector unit, for
 * fp32 and int8 separately. Every term can be overridden, since a VM's cpuinfo can hide the real
 * part and its boost clock.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { invalidParameterError } from '../errors.js';

/** What `/proc/cpuinfo` says about the machine. */
export interface CpuInfo {
  /** `model name`, e.g. `AMD EPYC 9B45`. */
  modelName: string;
  vendor: string;
  /** `cpu family` and `model` as decimal numbers (AMD family 25 = Zen 3/4, 26 = Zen 5). */
  family?: number;
  model?: number;
  /** Logical CPUs the process may use. */
  logicalCpus: number;
  /**
   * Physical cores: `cpu cores` of one package × packages; SMT siblings share one core's vector
   * units, so peak counts these. Equal to `logicalCpus` when cpuinfo does not say.
   */
  physicalCores: number;
  /** `cpu MHz` of the first CPU (what the kernel last saw; under a hypervisor often the nominal clock). */
  mhz?: number;
  /** Vector/matrix flags found among: avx512f, avx512bw, avx512_vnni, avx_vnni, avx2, fma, avx, sse4_2, amx_int8, asimd, asimddp. */
  vectorFlags: string[];
}

const VECTOR_FLAGS = ['avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_int8', 'avx2', 'fma', 'avx', 'sse4_2', 'asimd', 'asimddp'];

/**
 * Parses `/proc/cpuinfo` text (Linux x86-64 and arm64 layouts).
 *
 * @param text - cpuinfo content; default: read `/proc/cpuinfo` (empty on other OSes, then Node's
 *   `os.cpus()` fills model and clock).
 */
export function readCpuInfo(text?: string): CpuInfo {
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      text = '';
    }
  }
  const blocks = text.split(/\n\s*\n/).filter((b) => b.trim() !== '');
  const field = (block: string, name: string): string | undefined => {
    const m = new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(block);
    return m?.[1].trim();
  };
  const first = blocks[0] ?? '';
  const flags = new Set((field(first, 'flags') ?? field(first, 'Features') ?? '').split(/\s+/).filter(Boolean));
  const processors = blocks.filter((b) => field(b, 'processor') !== undefined).length;
  const packages = new Set(blocks.map((b) => field(b, 'physical id')).filter((x) => x !== undefined)).size || 1;
  const coresPerPackage = Number(field(first, 'cpu cores'));
  const logicalCpus = processors > 0 ? processors : os.availableParallelism();
  const cpus = os.cpus();
  const mhz = Number(field(first, 'cpu MHz') ?? cpus[0]?.speed);
  const family = Number(field(first, 'cpu family'));
  const model = Number(field(first, 'model'));
  return {
    modelName: field(first, 'model name') ?? cpus[0]?.model ?? 'unknown',
    vendor: field(first, 'vendor_id') ?? field(first, 'CPU implementer') ?? 'unknown',
    family: Number.isFinite(family) ? family : undefined,
    model: Number.isFinite(model) ? model : undefined,
    logicalCpus,
    physicalCores: Number.isInteger(coresPerPackage) && coresPerPackage > 0 ? Math.min(logicalCpus, coresPerPackage * packages) : logicalCpus,
    mhz: Number.isFinite(mhz) && mhz > 0 ? mhz : undefined,
    vectorFlags: VECTOR_FLAGS.filter((f) => flags.has(f)),
  };
}

/** The widest vector unit found, and its operations per cycle per core. */
export interface VectorUnit {
  /** e.g. `AVX-512 (avx512f)`, `AVX2 + FMA`. */
  name: string;
  /** fp32 lanes of one register. */
  fp32Lanes: number;
  /** fp32 FLOP per cycle per core: FMA units × lanes × 2 (one FMA = multiply + add). */
  fp32FlopPerCycle: number;
  /** int8 operations per cycle per core (one multiply-accumulate = 2), see {@link vectorUnitOf}. */
  int8OpsPerCycle: number;
  /** How the int8 figure was reached. */
  int8Path: string;
}

/**
 * Operations per cycle per core of the widest vector unit the flags show.
 *
 * fp32: `fmaUnits × lanes × 2` (AVX-512: 2 × 16 × 2 = 64; AVX2 + FMA: 2 × 8 × 2 = 32; AVX
 * without FMA: one 8-wide add + one 8-wide multiply = 16; SSE: 8). Two FMA pipes is what
 * Zen 2–5, Skylake-SP Gold/Platinum and later Xeons have
 * (https://en.wikichip.org/wiki/amd/microarchitectures/zen_3,
 * https://www.agner.org/optimize/microarchitecture.pdf); pass `fmaUnits` for other parts.
 *
 * int8 (u8 × s8 → s32, what onnxruntime's MLAS QGEMM does, one MAC = 2 ops):
 * - VNNI (`avx512_vnni` or `avx_vnni`): one `vpdpbusd` does lanes × 4 MACs, so 4 × the fp32 FLOP/cycle;
 * - AVX2 / AVX-512BW without VNNI: `vpmaddubsw` + `vpmaddwd` + `vpaddd` per lanes × 4 MACs, taken as
 *   2 × the fp32 FLOP/cycle (the two multiply instructions share the FMA pipes);
 * - AMX is not counted (onnxruntime-node's CPU provider does not use it for these ops).
 */
export function vectorUnitOf(flags: readonly string[], fmaUnits = 2): VectorUnit {
  const has = (f: string) => flags.includes(f);
  let name: string;
  let lanes: number;
  let fp32: number;
  if (has('avx512f')) {
    name = 'AVX-512 (avx512f)';
    lanes = 16;
    fp32 = fmaUnits * lanes * 2;
  } else if (has('avx2') && has('fma')) {
    name = 'AVX2 + FMA';
    lanes = 8;
    fp32 = fmaUnits * lanes * 2;
  } else if (has('avx')) {
    name = 'AVX (no FMA)';
    lanes = 8;
    fp32 = 16;
  } else if (has('asimd')) {
    name = 'NEON (asimd)';
    lanes = 4;
    fp32 = fmaUnits * lanes * 2;
  } else {
    name = 'SSE';
    lanes = 4;
    fp32 = 8;
  }
  const vnni = (has('avx512f') && has('avx512_vnni')) || has('avx_vnni') || has('asimddp');
  const vnniName = has('avx512_vnni') && has('avx512f') ? 'AVX-512 VNNI vpdpbusd' : has('avx_vnni') ? 'AVX-VNNI vpdpbusd' : 'NEON sdot';
  return {
    name: vnni ? `${name}, ${has('asimddp') ? 'dot product' : 'VNNI'}` : name,
    fp32Lanes: lanes,
    fp32FlopPerCycle: fp32,
    int8OpsPerCycle: vnni ? 4 * fp32 : 2 * fp32,
    int8Path: vnni ? `${vnniName}: 4 MACs per 32-bit lane per FMA pipe` : 'vpmaddubsw + vpmaddwd (no VNNI): 2 × fp32 rate',
  };
}

/** Overrides of the peak computation (all optional). */
export interface PeakOptions {
  /** Cores counted (default: physical cores the process may use). */
  cores?: number;
  /** Clock in GHz (default: cpuinfo `cpu MHz` / 1000). */
  clockGHz?: number;
  /** FMA pipes per core (default 2). */
  fmaUnits?: number;
  /** fp32 FLOP per cycle per core (default from the vector unit). */
  fp32FlopPerCycle?: number;
  /** int8 operations per cycle per core (default from the vector unit). */
  int8OpsPerCycle?: number;
  /** Peak fp32 GFLOP/s outright (replaces the product). */
  fp32GFlops?: number;
  /** Peak int8 GOP/s outright. */
  int8GOps?: number;
}

/** The machine and its peak. */
export interface MachinePeak {
  cpu: CpuInfo;
  unit: VectorUnit;
  cores: number;
  clockGHz: number;
  /** Where the clock came from: `cpuinfo` or `override`. */
  clockSource: string;
  /** cores × clock × fp32 FLOP/cycle, GFLOP/s. */
  fp32GFlops: number;
  /** cores × clock × int8 ops/cycle, GOP/s. */
  int8GOps: number;
  /** The formula with the numbers used, for the report. */
  fp32Formula: string;
  int8Formula: string;
  /** Overrides applied, by name. */
  overridden: string[];
}

function positive(name: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw invalidParameterError(name, 'a number greater than 0', v);
  return v;
}

/**
 * Peak operations per second of the CPU: cores × clock × operations per cycle of the widest vector
 * unit, fp32 and int8 separately (see {@link vectorUnitOf}).
 *
 * @param cpu - default: {@link readCpuInfo} of this machine.
 * @throws Error naming the option when an override is not a positive number, or when no clock is
 *   known and none is given.
 */
export function machinePeak(options: PeakOptions = {}, cpu: CpuInfo = readCpuInfo()): MachinePeak {
  const overridden = Object.entries(options).filter(([, v]) => v !== undefined).map(([k]) => k);
  const fmaUnits = positive('fmaUnits', options.fmaUnits) ?? 2;
  const unit = vectorUnitOf(cpu.vectorFlags, fmaUnits);
  const cores = positive('cores', options.cores) ?? Math.min(cpu.physicalCores, os.availableParallelism());
  const clockOverride = positive('clockGHz', options.clockGHz);
  const clockGHz = clockOverride ?? (cpu.mhz !== undefined ? cpu.mhz / 1000 : undefined);
  if (clockGHz === undefined) throw invalidParameterError('clockGHz', 'the CPU clock in GHz (cpuinfo has none)', options.clockGHz);
  const fp32PerCycle = positive('fp32FlopPerCycle', options.fp32FlopPerCycle) ?? unit.fp32FlopPerCycle;
  const int8PerCycle = positive('int8OpsPerCycle', options.int8OpsPerCycle) ?? unit.int8OpsPerCycle;
  const fp32Product = cores * clockGHz * fp32PerCycle;
  const int8Product = cores * clockGHz * int8PerCycle;
  const fp32GFlops = positive('fp32GFlops', options.fp32GFlops) ?? fp32Product;
  const int8GOps = positive('int8GOps', options.int8GOps) ?? int8Product;
  const formula = (perCycle: number, result: number, unitName: string, outright: number | undefined) =>
    outright !== undefined ? `${outright.toFixed(1)} ${unitName} (given)` : `${cores} cores × ${clockGHz.toFixed(3)} GHz × ${perCycle} per cycle = ${result.toFixed(1)} ${unitName}`;
  return {
    cpu,
    unit,
    cores,
    clockGHz,
    clockSource: clockOverride !== undefined ? 'override' : 'cpuinfo cpu MHz',
    fp32GFlops,
    int8GOps,
    fp32Formula: formula(fp32PerCycle, fp32Product, 'GFLOP/s', options.fp32GFlops),
    int8Formula: formula(int8PerCycle, int8Product, 'GOP/s', options.int8GOps),
    overridden,
  };
}

/**
 * AMD/Intel microarchitecture name from cpuinfo family/model, where known; a VM often shows a
 * generic model name (`AMD EPYC`), but family/model still tell the core.
 * Source: https://en.wikichip.org/wiki/amd/cpuid, https://en.wikichip.org/wiki/intel/cpuid
 */
export function microarchitectureOf(cpu: Pick<CpuInfo, 'vendor' | 'family' | 'model'>): string | undefined {
  if (cpu.vendor === 'AuthenticAMD' && cpu.family !== undefined && cpu.model !== undefined) {
    if (cpu.family === 23) return cpu.model >= 0x30 ? 'Zen 2' : 'Zen / Zen+';
    if (cpu.family === 25) return (cpu.model >= 0x10 && cpu.model <= 0x1f) || (cpu.model >= 0x60 && cpu.model <= 0xaf) ? 'Zen 4' : 'Zen 3';
    if (cpu.family === 26) return 'Zen 5';
  }
  return undefined;
}
