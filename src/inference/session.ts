/**
 * onnxruntime-node sessions with an explicit execution-provider choice, and the provider actually
 * used always reported.
 */
import { readdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';

/** Execution providers artist-id knows how to ask for. */
export type ExecutionProvider = 'cpu' | 'cuda';
/** What the caller asks for: `auto` tries CUDA and falls back to CPU. */
export type ProviderRequest = ExecutionProvider | 'auto';

export interface SessionOptions {
  /** Provider request; default `auto`. */
  provider?: ProviderRequest;
  /** Throw instead of falling back to CPU when CUDA was asked for and cannot be used. */
  strictProvider?: boolean;
  /** Threads for one operator (CPU provider); default: logical cores. */
  intraOpThreads?: number;
  /** Called with a human-readable warning (e.g. CUDA fallback); default: stderr. */
  onWarning?: (message: string) => void;
}

/** A created session and the provider that actually runs it. */
export interface CreatedSession {
  session: ort.InferenceSession;
  provider: ExecutionProvider;
  /** Why the provider differs from the one requested, if it does. */
  fallbackReason?: string;
  /** Wall time of session creation in ms. */
  createMs: number;
}

/**
 * Session options tuned for throughput on CPU: all graph optimisations (constant folding, QDQ and
 * conv fusions), sequential execution (one big op at a time uses all intra-op threads), memory
 * arena and pattern on (batches repeat the same shapes).
 * See https://onnxruntime.ai/docs/performance/tune-performance/threading.html
 */
function baseOptions(options: SessionOptions): ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: options.intraOpThreads ?? Math.max(1, os.availableParallelism()),
    interOpNumThreads: 1,
    enableCpuMemArena: true,
    enableMemPattern: true,
    logSeverityLevel: 3,
  };
}

/**
 * Creates an inference session on the requested execution provider.
 *
 * CUDA: onnxruntime-node ships the CPU provider only; the CUDA provider libraries are installed on
 * GPU hosts with `npm run install:cuda` (onnxruntime-node's `--onnxruntime-node-install=cuda12`,
 * see https://onnxruntime.ai/docs/get-started/with-javascript/node.html) and need CUDA 12 + cuDNN 9
 * on the library path. When the CUDA provider fails to load, session creation throws; artist-id
 * then retries on CPU and reports `provider: 'cpu'` with the reason, unless `strictProvider`.
 *
 * @param model - path to an `.onnx` file, or its bytes.
 * @throws Error when the model cannot be loaded, or when CUDA was requested with `strictProvider`
 *   and is unavailable.
 */
export async function createSession(model: string | Uint8Array, options: SessionOptions = {}): Promise<CreatedSession> {
  const request = options.provider ?? 'auto';
  if (!['auto', 'cpu', 'cuda'].includes(request)) {
    throw new Error(`Expected one of auto, cpu, cuda for provider but received ${JSON.stringify(request)} of type ${typeof request}`);
  }
  const warn = options.onWarning ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
  const start = performance.now();
  let fallbackReason: string | undefined;
  if (request === 'cuda' || request === 'auto') {
    if (!cudaProviderInstalled()) {
      fallbackReason = 'the CUDA execution provider is not installed (on a CUDA 12 host run: npm run install:cuda)';
    } else {
      try {
        const session = await open(model, { ...baseOptions(options), executionProviders: ['cuda', 'cpu'] });
        return { session, provider: 'cuda', createMs: performance.now() - start };
      } catch (err) {
        fallbackReason = `the CUDA execution provider failed to load: ${(err as Error).message}`;
      }
    }
    if (options.strictProvider) throw new Error(`--strict-provider requires the CUDA execution provider, but ${fallbackReason}`);
    if (request === 'cuda') warn(`falling back to the CPU execution provider: ${fallbackReason}`);
  }
  const session = await open(model, { ...baseOptions(options), executionProviders: ['cpu'] });
  return { session, provider: 'cpu', fallbackReason: request === 'cpu' ? undefined : fallbackReason, createMs: performance.now() - start };
}

async function open(model: string | Uint8Array, opts: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  return typeof model === 'string' ? ort.InferenceSession.create(model, opts) : ort.InferenceSession.create(model, opts);
}

/** True when onnxruntime-node reports a CUDA backend whose provider libraries are present. */
export function cudaProviderInstalled(): boolean {
  const cuda = ort.listSupportedBackends?.().find((b) => b.name === 'cuda');
  if (!cuda) return false;
  if (cuda.bundled) return true;
  // Not bundled: installed next to the binding by the CUDA install step.
  return findProviderLibrary('libonnxruntime_providers_cuda.so') !== undefined;
}

/**
 * Path of an execution-provider library (e.g. `libonnxruntime_providers_cuda.so`) installed under
 * onnxruntime-node's `bin/` (napi version, platform and arch folders), if any.
 */
export function findProviderLibrary(file: string): string | undefined {
  const stack = [fileURLToPath(new URL('../bin/', import.meta.resolve('onnxruntime-node')))];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (entry.isDirectory()) stack.push(join(dir, entry.name));
      else if (entry.name === file) return join(dir, entry.name);
    }
  }
  return undefined;
}
