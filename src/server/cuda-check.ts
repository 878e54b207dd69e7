/**
 * Detects onnxruntime's silent CPU fallback on CUDA hosts.
 *
 * onnxruntime fails in two ways when CUDA cannot be used: session creation throws when the CUDA
 * provider library fails to load (handled by `createSession`, which retries on CPU), or, when
 * libraries the provider depends on (CUDA runtime, cuBLAS, cuDNN) are missing, it logs a warning and
 * silently builds the session on the CPU provider alone, so a session "on CUDA" runs on CPU. The
 * second case cannot be seen from onnxruntime-node's API; this module sees it by asking the dynamic
 * linker (`ldd`) which libraries of `libonnxruntime_providers_cuda.so` cannot be found.
 */
import { execFileSync } from 'node:child_process';
import { findProviderLibrary } from '../inference/session.js';

/** The provider library that onnxruntime loads for CUDA (Linux). */
export const CUDA_PROVIDER_LIBRARY = 'libonnxruntime_providers_cuda.so';

/**
 * Shared libraries that `libonnxruntime_providers_cuda.so` needs and the dynamic linker cannot find.
 *
 * @returns names such as `libcudnn.so.9` (empty: all found), or `undefined` when it cannot be told
 *   (no provider library installed, not Linux, or no `ldd`).
 */
export function missingCudaLibraries(): string[] | undefined {
  if (process.platform !== 'linux') return undefined;
  const library = findProviderLibrary(CUDA_PROVIDER_LIBRARY);
  if (!library) return undefined;
  try {
    return parseLddNotFound(execFileSync('ldd', [library], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return undefined;
  }
}

/**
 * Library names that `ldd` output reports as `not found`.
 *
 * @param text - `ldd` stdout, lines like `\tlibcudnn.so.9 => not found`.
 */
export function parseLddNotFound(text: string): string[] {
  return text
    .split('\n')
    .map((line) => /^\s*(\S+)\s*=>\s*not found/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined);
}

