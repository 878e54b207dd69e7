/**
 * `artist-id bench`: model-only, end-to-end and server benchmarks (see `src/bench/run.ts`), a table
 * on the terminal and JSON, CSV and PNG files.
 */
import { join } from 'node:path';
import { SingleBar } from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import { expectInteger, invalidParameterError } from '../../errors.js';
import { DEFAULT_MODEL_NAME, cacheDir } from '../../paths.js';

/** commander parser: wraps our error wording in commander's error type. */
function parser<T>(parse: (value: string) => T) {
  return (value: string): T => {
    try {
      return parse(value);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

const int = (name: string, min = 1) => parser((v) => expectInteger(name, v, min));
const intList = (name: string) =>
  parser((v) => {
    const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
    if (parts.length === 0) throw invalidParameterError(name, 'a comma-separated list of positive integers (e.g. 1,8,32)', v);
    return parts.map((s) => expectInteger(name, s));
  });
const positiveNumber = (name: string) =>
  parser((v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw invalidParameterError(name, 'a number greater than 0', v);
    return n;
  });
const numberList = (name: string) =>
  parser((v) => {
    const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
    const nums = parts.map(Number);
    if (parts.length === 0 || nums.some((n) => !Number.isFinite(n) || n <= 0)) throw invalidParameterError(name, 'a comma-separated list of numbers greater than 0 (e.g. 10,50,100)', v);
    return nums;
  });
const distributionList = parser((v) => {
  const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0 || parts.some((p) => p !== 'constant' && p !== 'poisson')) throw invalidParameterError('--distributions', 'constant, poisson or constant,poisson', v);
  return parts as ('constant' | 'poisson')[];
});

/** Adds the `bench` command to the program. */
export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('benchmark the model (in process), end-to-end decoding + inference on files, and optionally a KServe v2 server; prints a table, writes JSON, CSV and PNG plots')
    .option('-m, --model <model>', 'model: .onnx file, folder with model.onnx, or name under models/', DEFAULT_MODEL_NAME)
    .option('--batches <list>', 'batch sizes of the model-only sweep (default 1,8,32,64)', intList('--batches'))
    .option('--options-batch <n>', 'batch of the session-option sweep and the reference model (default 8)', int('--options-batch'))
    .option('--reference-model <file>', 'an ONNX model also run bare (default: ../shared/weights/mobilenetv2-12-int8.onnx when present)')
    .option('--no-reference-model', 'skip the reference model')
    .option('--data <dir>', 'folder of real paintings for end-to-end runs (default: ../shared/paintings when present, else samples/)')
    .option('--files <n>', 'real files per end-to-end pass (default 48, thorough 600)', int('--files'))
    .option('--large-files <n>', 'generated 2000x1500 q90 JPEGs per pass, 0 to skip (default 24, thorough 96)', int('--large-files', 0))
    .option('--decode-concurrency <list>', 'files in flight in the decode-only sweep (default 1,2,4)', intList('--decode-concurrency'))
    .option('--archive-batch <n>', 'inference batch of the end-to-end archive runs (default 16, as classify)', int('--archive-batch'))
    .option('--thorough', 'longer windows (2 s), more trials and files, full option sweeps; takes minutes')
    .option('--window-ms <ms>', 'measurement window (default 200, thorough 2000; perf_analyzer --measurement-interval)', int('--window-ms', 10))
    .option('--warmup-ms <ms>', 'warm-up excluded from figures (default 150, thorough 1500)', int('--warmup-ms', 0))
    .option('--stability-percentage <p>', 'windows must agree within ±p% (perf_analyzer --stability-percentage)', positiveNumber('--stability-percentage'), 10)
    .option('--max-trials <n>', 'most windows per configuration (default 5, thorough 10; perf_analyzer --max-trials)', int('--max-trials', 3))
    .option('--skip-model', 'skip the model-only benchmarks')
    .option('--skip-e2e', 'skip the end-to-end benchmarks')
    .option('--url <url>', 'KServe v2 / Open Inference Protocol server to benchmark, e.g. http://127.0.0.1:8080')
    .option('--server-model <name>', 'model name on the server (artist-id serve names its model "default")', 'default')
    .addOption(new Option('--server-input <kind>', 'input sent: encoded image (BYTES) or decoded tensor (UINT8); auto reads the model metadata').choices(['auto', 'bytes', 'uint8']).default('auto'))
    .addOption(new Option('--server-encoding <encoding>', 'binary tensor data extension or plain JSON').choices(['binary', 'json']).default('binary'))
    .option('--server-batch <n>', 'images per request', int('--server-batch'), 1)
    .option('--concurrency <list>', 'closed-loop requests in flight (default 1,4,16,64)', intList('--concurrency'))
    .option('--request-rates <list>', 'open-loop requests/s (default 25,50,75,90% of the best closed-loop rate)', numberList('--request-rates'))
    .option('--distributions <list>', 'open-loop arrivals: constant, poisson', distributionList)
    .option('--peak-clock-ghz <ghz>', 'clock used for peak FLOP/s (default: cpuinfo cpu MHz)', positiveNumber('--peak-clock-ghz'))
    .option('--peak-cores <n>', 'cores used for peak FLOP/s', positiveNumber('--peak-cores'))
    .option('--peak-fma-units <n>', 'FMA pipes per core (default 2)', positiveNumber('--peak-fma-units'))
    .option('--peak-fp32-gflops <n>', 'peak fp32 GFLOP/s outright', positiveNumber('--peak-fp32-gflops'))
    .option('--peak-int8-gops <n>', 'peak int8 GOP/s outright', positiveNumber('--peak-int8-gops'))
    .option('-o, --out <dir>', 'folder for bench.json, bench.csv and plots (default: <cache>/bench/results/<time>)')
    .option('--report <file>', 'also write the Markdown performance document (e.g. docs/PERFORMANCE.md; plots go to --out)')
    .option('--no-progress', 'no progress line on stderr')
    .action(async (opts) => {
      const [{ runBench }, { saveBench }, { formatTerminal }] = await Promise.all([import('../../bench/run.js'), import('../../bench/save.js'), import('../../bench/report.js')]);
      const showProgress = opts.progress !== false && process.stderr.isTTY === true;
      const bar = showProgress ? new SingleBar({ format: 'bench {bar} {value}/{total} {step}', stream: process.stderr, hideCursor: true, clearOnComplete: true }) : undefined;
      const report = await runBench({
        model: opts.model,
        batches: opts.batches,
        optionsBatch: opts.optionsBatch,
        referenceModel: opts.referenceModel,
        data: opts.data,
        files: opts.files,
        largeFiles: opts.largeFiles,
        decodeConcurrency: opts.decodeConcurrency,
        archiveBatch: opts.archiveBatch,
        thorough: opts.thorough,
        windowMs: opts.windowMs,
        warmupMs: opts.warmupMs,
        stabilityPercentage: opts.stabilityPercentage,
        maxTrials: opts.maxTrials,
        skipModel: opts.skipModel,
        skipE2e: opts.skipE2e,
        url: opts.url,
        serverModel: opts.serverModel,
        serverInput: opts.serverInput,
        serverEncoding: opts.serverEncoding,
        serverBatch: opts.serverBatch,
        concurrency: opts.concurrency,
        requestRates: opts.requestRates,
        distributions: opts.distributions,
        peak: { clockGHz: opts.peakClockGhz, cores: opts.peakCores, fmaUnits: opts.peakFmaUnits, fp32GFlops: opts.peakFp32Gflops, int8GOps: opts.peakInt8Gops },
        onStep: (step, index, total) => {
          if (!bar) {
            if (opts.progress !== false && step !== 'done') process.stderr.write(`[${index + 1}/${total}] ${step}\n`);
            return;
          }
          if (index === 0) bar.start(total, 0, { step });
          bar.update(index, { step });
          if (step === 'done') bar.stop();
        },
      });
      bar?.stop();
      const out = opts.out ?? join(cacheDir(), 'bench', 'results', report.startedAt.replace(/[:.]/g, '-'));
      const files = await saveBench(report, { out, markdown: opts.report, command: `artist-id bench${process.argv.slice(3).length ? ` ${process.argv.slice(3).join(' ')}` : ''}` });
      process.stdout.write(`${formatTerminal(report)}\n`);
      process.stderr.write(`wrote ${files.json}\n      ${files.csv}\n${Object.values(files.plots).map((p) => `      ${p}\n`).join('')}${files.markdown ? `      ${files.markdown}\n` : ''}`);
    });
}
