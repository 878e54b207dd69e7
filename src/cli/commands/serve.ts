/**
 * `artist-id serve`: the HTTP service (simple classify API, Open Inference Protocol, metrics, web
 * page) with dynamic batching. Runs until SIGTERM or SIGINT, then shuts down gracefully.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { pino } from 'pino';
import { expectInteger } from '../../errors.js';
import { SERVE_DEFAULTS } from '../../server/options.js';
import { startServer } from '../../server/server.js';

function integer(name: string, min: number) {
  return (value: string): number => {
    try {
      return expectInteger(name, value, min);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Adds the `serve` command to the program. */
export function registerServe(program: Command): void {
  const d = SERVE_DEFAULTS;
  program
    .command('serve')
    .description('serve models over HTTP: POST /v1/models/{name}:classify, Open Inference Protocol (KServe v2) under /v2, /metrics, a web page at /')
    .option('-m, --model <model>', 'model to serve, repeatable: NAME=MODEL or MODEL (.onnx file, folder with model.onnx, or name under models/)', collect)
    .option('--host <host>', 'interface to listen on (0.0.0.0: all)', d.host)
    .option('-p, --port <port>', 'TCP port (0: any free port)', integer('--port', 0), d.port)
    .option('--max-batch-size <n>', 'most images per model execution (1: no batching)', integer('--max-batch-size', 1), d.maxBatchSize)
    .option('--max-queue-delay-ms <ms>', 'longest wait for a batch to fill', integer('--max-queue-delay-ms', 0), d.maxQueueDelayMs)
    .option('--max-queue-size <n>', 'most images queued per model; beyond, 429 with Retry-After', integer('--max-queue-size', 1), d.maxQueueSize)
    .option('--request-timeout-ms <ms>', 'longest a request may take; then 504', integer('--request-timeout-ms', 1), d.requestTimeoutMs)
    .option('--body-limit-mb <mb>', 'largest request body in MB; beyond, 413', integer('--body-limit-mb', 1), d.bodyLimitMb)
    .option('-k, --top-k <k>', 'artists per image in :classify answers (per request: ?top_k=)', integer('--top-k', 1), d.topK)
    .addOption(new Option('--provider <name>', 'execution provider: auto is CUDA when available, else CPU with a warning').choices(['auto', 'cuda', 'cpu']).default(d.provider))
    .option('--strict-provider', 'fail at start instead of falling back to CPU when CUDA cannot be used')
    .option('--intra-op-threads <n>', 'onnxruntime threads per session (default: CPU cores - 1, leaving one to HTTP and decoding)', integer('--intra-op-threads', 1))
    .addOption(new Option('--log-level <level>', 'log level (JSON lines on stdout)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'))
    .action(async (opts) => {
      const log = pino({ level: opts.logLevel });
      const server = await startServer(
        {
          models: opts.model ?? d.models,
          host: opts.host,
          port: opts.port,
          maxBatchSize: opts.maxBatchSize,
          maxQueueDelayMs: opts.maxQueueDelayMs,
          maxQueueSize: opts.maxQueueSize,
          requestTimeoutMs: opts.requestTimeoutMs,
          bodyLimitMb: opts.bodyLimitMb,
          topK: opts.topK,
          provider: opts.provider,
          strictProvider: opts.strictProvider === true,
          intraOpThreads: opts.intraOpThreads,
        },
        log,
      );
      await new Promise<void>((resolve) => {
        let signals = 0;
        const onSignal = (signal: NodeJS.Signals): void => {
          signals++;
          if (signals > 1) {
            log.warn(`${signal} again: exiting without waiting for requests in flight`);
            process.exit(1);
          }
          log.info({ signal }, `${signal}: graceful shutdown`);
          server.close().then(resolve, (err: Error) => {
            log.error({ err }, 'shutdown failed');
            process.exitCode = 1;
            resolve();
          });
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
    });
}
