/**
 * The reference model (ImageNet MobileNetV2 int8, QOperator) in three forms with the same weights:
 *
 * - the int8 file in onnxruntime-node,
 * - its dequantised fp32 ONNX graph (`dequantizeModel`) in onnxruntime-node,
 * - the TF.js LayersModel imported from it (`importOnnxToTfjs`, fp32, NHWC input).
 *
 * All three run the same batch of real paintings and are measured as one group with round-robin
 * windows ({@link benchGroup}), so "onnxruntime-node vs TF.js" compares fp32 with fp32 on identical
 * weights, and "int8 vs fp32" compares the quantised file with its exact float twin.
 *
 * The ONNX→TF.js importer lives in export/convert/ and the TF.js backend choice in training/.
 * The project rule is that src/ never imports training/ or export/ at module top level (they pull
 * in TF.js and its WASM backend, which `classify`/`serve` never need), so both are loaded here
 * with dynamic `import()` inside {@link measureTwins}, only when the bench runs this comparison.
 * TF.js itself is loaded the same way; only its types are imported statically.
 */
import { readFile } from 'node:fs/promises';
import type * as tfType from '@tensorflow/tfjs';
import type * as ort from 'onnxruntime-node';
import { decodeModel, encodeModel } from '../onnx/model.js';
import { DEFAULT_PREPROCESS, IMAGENET_MEAN, IMAGENET_STD } from '../preprocess/spec.js';
import { benchGroup, bytesRunner, type BatchRunner, type ModelBenchResult, type WindowOptions } from './model-bench.js';
import { pairedRatio } from './stats.js';
import type { Comparison } from './run.js';

/** What {@link measureTwins} measured. */
export interface TwinReport {
  /** The int8 ONNX file the three forms come from. */
  path: string;
  batch: number;
  /** TF.js backend that ran the imported model, e.g. `wasm` or `tensorflow`. */
  backend: string;
  /** Threads of the TF.js WASM backend (when it is the backend). */
  backendThreads?: number;
  /** onnxruntime int8 file, onnxruntime dequantised fp32 graph, TF.js imported model: in that order. */
  int8: ModelBenchResult;
  fp32: ModelBenchResult;
  tfjs: ModelBenchResult;
  /**
   * Check that the two fp32 forms compute the same thing on the measured batch: share of images
   * whose top-1 class agrees, and the largest absolute logit difference.
   */
  agreement: { images: number; top1: number; maxAbsLogitDiff: number };
  /** Conversion notes and why the TF.js backend is not a faster one. */
  notes: string[];
}

/** The two comparisons of the twins, as report rows; `unavailable` explains a missing {@link TwinReport}. */
export function twinComparisons(twins: Pick<TwinReport, 'backend' | 'backendThreads' | 'int8' | 'fp32' | 'tfjs' | 'batch'> | undefined, unavailable = 'not available: no reference model (../shared/weights/mobilenetv2-12-int8.onnx missing, or --no-reference-model)'): Comparison[] {
  const framework: Comparison = { name: 'onnxruntime-node vs TF.js (same weights)', numerator: 'onnxruntime-node images/s (dequantised fp32 ONNX graph)', denominator: 'TF.js twin images/s (LayersModel imported from the same file, fp32)', status: 'not available' };
  const precision: Comparison = { name: 'int8 vs fp32 (de-quantised export of the same model)', numerator: 'onnxruntime-node int8 file images/s', denominator: 'onnxruntime-node dequantised fp32 graph images/s', status: 'not available' };
  if (!twins) return [{ ...framework, note: unavailable }, { ...precision, note: unavailable }];
  const backend = `TF.js backend ${twins.backend}${twins.backendThreads !== undefined ? ` (${twins.backendThreads} thread${twins.backendThreads === 1 ? '' : 's'})` : ''}`;
  return [
    { ...framework, name: `${framework.name}, batch ${twins.batch}, ${backend}`, denominator: `${framework.denominator}, median of paired windows`, ratio: pairedRatio(twins.fp32.windowImagesPerSecond, twins.tfjs.windowImagesPerSecond), status: 'measured', note: `${twins.fp32.imagesPerSecond.toFixed(1)} vs ${twins.tfjs.imagesPerSecond.toFixed(1)} images/s` },
    { ...precision, name: `${precision.name}, onnxruntime-node, batch ${twins.batch}`, denominator: `${precision.denominator}, median of paired windows`, ratio: pairedRatio(twins.int8.windowImagesPerSecond, twins.fp32.windowImagesPerSecond), status: 'measured', note: `${twins.int8.imagesPerSecond.toFixed(1)} vs ${twins.fp32.imagesPerSecond.toFixed(1)} images/s` },
  ];
}

/** `[N,H,W,3]` float32 NHWC, scaled to [0,1] and ImageNet-normalised: what the imported model takes. */
export function nhwcNormalised(images: readonly Uint8Array[], batch: number, width = DEFAULT_PREPROCESS.width, height = DEFAULT_PREPROCESS.height): Float32Array {
  const pixels = width * height;
  const data = new Float32Array(batch * pixels * 3);
  for (let n = 0; n < batch; n++) {
    const img = images[n % images.length];
    for (let p = 0; p < pixels; p++) {
      for (let c = 0; c < 3; c++) data[(n * pixels + p) * 3 + c] = (img[p * 3 + c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
    }
  }
  return data;
}

/** Top-1 agreement and largest absolute difference of two `[N,K]` logit arrays. */
export function logitAgreement(a: ArrayLike<number>, b: ArrayLike<number>, classes: number): { images: number; top1: number; maxAbsLogitDiff: number } {
  if (a.length !== b.length || classes <= 0 || a.length % classes !== 0) throw new Error(`Expected two [N,${classes}] logit arrays of one size but received ${a.length} and ${b.length} values`);
  const images = a.length / classes;
  let same = 0;
  let maxDiff = 0;
  for (let n = 0; n < images; n++) {
    let ia = 0;
    let ib = 0;
    for (let k = 0; k < classes; k++) {
      const i = n * classes + k;
      if (a[i] > a[n * classes + ia]) ia = k;
      if (b[i] > b[n * classes + ib]) ib = k;
      maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    }
    if (ia === ib) same++;
  }
  return { images, top1: images > 0 ? same / images : 0, maxAbsLogitDiff: maxDiff };
}

/**
 * Builds the three forms of `referencePath`, checks the two fp32 forms agree on the batch, and
 * measures them as one group (round-robin windows). onnxruntime runs with its default session
 * options (intra-op threads = cores), as the bare reference run does.
 *
 * @throws Error when the file cannot be dequantised or imported, or no TF.js backend loads.
 */
export async function measureTwins(referencePath: string, batch: number, images: readonly Uint8Array[], options: WindowOptions): Promise<TwinReport> {
  // Lazy on purpose (see the file comment): TF.js, its backends and the converter load only here.
  const [{ dequantizeModel, importOnnxToTfjs }, { initTrainingBackend }, tf] = await Promise.all([import('../../export/convert/index.js'), import('../../training/backend.js'), import('@tensorflow/tfjs')]);
  const int8Bytes = await readFile(referencePath);
  const proto = decodeModel(int8Bytes, referencePath);
  const dq = dequantizeModel(proto);
  const fp32Bytes = encodeModel(dq.model);
  const backend = await initTrainingBackend();
  let backendThreads: number | undefined;
  if (backend.name === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    backendThreads = wasm.getThreadsCount();
  }
  const runners: BatchRunner[] = [];
  try {
    runners.push(await bytesRunner(int8Bytes, referencePath, batch, images, {}, 'int8 QOperator file, onnxruntime defaults'));
    runners.push(await bytesRunner(fp32Bytes, `${referencePath} (dequantised fp32)`, batch, images, {}, 'dequantised fp32 graph, onnxruntime defaults'));
    const start = performance.now();
    const imported = await importOnnxToTfjs(proto, { int8: 'float' }); // the fp32 twin of the dequantised graph, not the exact-integer import
    const tfjs = tfjsRunner(tf, imported.model, imported.inputShape, batch, images, backend.name, `${referencePath} (imported to TF.js)`, performance.now() - start);
    runners.push(tfjs);
    const [int8, fp32, tfjsResult] = await benchGroup(runners, options);
    // After the measurement, so each form's first (cold) inference is timed as such.
    const agreement = await fp32Agreement(runners[1], tfjs);
    return { path: referencePath, batch, backend: backend.name, backendThreads, int8, fp32, tfjs: tfjsResult, agreement, notes: [...imported.notes, ...backend.notes.map((n) => `TF.js backend passed over: ${n}`)] };
  } finally {
    for (const r of runners) await r.dispose();
  }
}

interface TfjsBatchRunner extends BatchRunner {
  /** One forward pass, logits downloaded. */
  logits(): Promise<Float32Array>;
}

/** The imported LayersModel on a prebuilt NHWC batch; each run downloads the logits (as onnxruntime returns its output). */
function tfjsRunner(tf: typeof tfType, model: tfType.LayersModel, inputShape: (number | null)[], batch: number, images: readonly Uint8Array[], backend: string, label: string, createMs: number): TfjsBatchRunner {
  const [, height, width] = inputShape as number[];
  const x = tf.tensor4d(nhwcNormalised(images, batch, width, height), [batch, height, width, 3]);
  const logits = async (): Promise<Float32Array> => {
    const y = model.predict(x) as tfType.Tensor;
    try {
      return (await y.data()) as Float32Array;
    } finally {
      y.dispose();
    }
  };
  return {
    runner: `TF.js LayersModel (${backend})`,
    variant: 'imported from the int8 file (fp32)',
    model: label,
    batch,
    provider: backend,
    createMs,
    run: logits,
    logits,
    dispose: async () => {
      x.dispose();
      model.dispose();
    },
  };
}

async function fp32Agreement(onnx: BatchRunner, tfjs: TfjsBatchRunner): Promise<TwinReport['agreement']> {
  const out = (await onnx.run()) as Record<string, ort.Tensor>;
  const a = Object.values(out)[0].data as Float32Array;
  const b = await tfjs.logits();
  return logitAgreement(a, b, a.length / onnx.batch);
}
