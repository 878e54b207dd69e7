/**
 * The reference experiments and the training routes ("rungs") compared on them, shared by
 * scripts/results.ts (one seed, every rung, docs/RESULTS.md) and scripts/seeds.ts (several seeds, docs/SEEDS.md),
 * so both documents describe the same commands.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';

/** The items of a comma-separated `--option` value, each looked up by id in `all`. @throws Error naming an unknown id and the known ones. */
export function pick<T extends { id: string }>(text: string, all: readonly T[], option: string): T[] {
  return text.split(',').filter(Boolean).map((id) => {
    const found = all.find((x) => x.id === id);
    if (!found) throw new Error(`Expected --${option} among ${all.map((x) => x.id).join(', ')} but received ${JSON.stringify(id)}`);
    return found;
  });
}

/**
 * Runs `artist-id <args>` from the sources, as a user would, with base weights from $ARTIST_ID_WEIGHTS_DIR, else
 * ../shared/weights when present. @throws Error when the command fails.
 */
export function runCli(args: string[], stdout: 'inherit' | 'ignore'): void {
  const weights = process.env.ARTIST_ID_WEIGHTS_DIR ?? resolve(PACKAGE_ROOT, '../shared/weights');
  const env = { ...process.env, ...(existsSync(weights) ? { ARTIST_ID_WEIGHTS_DIR: weights } : {}) };
  process.stderr.write(`$ artist-id ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(PACKAGE_ROOT, 'src', 'cli', 'main.ts'), ...args], { cwd: PACKAGE_ROOT, env, encoding: 'utf8', stdio: ['ignore', stdout, 'inherit'] });
  if (r.status !== 0) throw new Error(`artist-id ${args.join(' ')} exited with ${r.status}`);
}

/** The three experiments of the original study. */
export const EXPERIMENTS = [
  { id: 'monet-vs-van-gogh', title: 'Claude Monet vs Vincent van Gogh', artists: ['claude-monet', 'vincent-van-gogh'] },
  { id: 'monet-vs-sisley', title: 'Claude Monet vs Alfred Sisley', artists: ['claude-monet', 'alfred-sisley'] },
  { id: 'all-11', title: 'all 11 artists', artists: [] as string[] },
] as const;
export type ExperimentId = (typeof EXPERIMENTS)[number]['id'];

/**
 * The baseline's epoch budget per experiment, to stay near 20 minutes of training on this machine
 * (WASM): ~0.11 CPU-s per 64x64 training image, so ~1 CPU-minute per epoch for a pair (480 images)
 * and ~5 for all 11 (2,640 images); see training/train-baseline.ts. Wall time grows when the cores are shared.
 */
const BASELINE_EPOCHS: Record<ExperimentId, number> = { 'monet-vs-van-gogh': 15, 'monet-vs-sisley': 15, 'all-11': 4 };

/**
 * Label smoothing eps and mixup alpha of their rungs, chosen on mean VALIDATION accuracy of Monet vs Sisley over
 * seeds 1-5 (eps 0.05 / 0.1 / 0.2: 89.7 / 89.3 / 88.7%; alpha 0.2 / 0.4 / 1: 89.0 / 90.0 / 89.3%; neither: 89.3%).
 */
const LABEL_SMOOTHING = '0.05';
const MIXUP_ALPHA = '0.4';

/** A rung: the `artist-id train` options of one row (ensemble members are added per experiment). */
export interface Rung {
  id: string;
  title: string;
  args: (e: ExperimentId) => string[];
  /** The slides' figure for this rung, per experiment (Keras, VGG16, other WikiArt images). */
  slides: Partial<Record<ExperimentId, string>>;
  note: string;
  /**
   * Forward passes of a base network per classified image (serving cost): 1 for one pass, 2 for flip TTA, the
   * member count for an ensemble. Breaks near-ties when a model is shipped (scripts/results.ts --ship).
   */
  passes: number;
}

export const RUNGS: Rung[] = [
  {
    id: 'baseline',
    title: 'baseline CNN from scratch',
    args: (e) => ['--method', 'baseline', '--input-size', '64', '--epochs', String(BASELINE_EPOCHS[e])],
    slides: { 'monet-vs-van-gogh': '83.3% (baseline CNN, 150x150)' },
    passes: 1,
    note: `the slides' CNN (4 x Conv 3x3 + MaxPool, 32/64/128/128 filters, Flatten, Dropout 0.5, Dense 512 relu, softmax) trained from scratch on 64x64 pixels (the slides: 150x150), RMSprop 1e-4, batch 20, random horizontal flips; at most ${BASELINE_EPOCHS['monet-vs-van-gogh']} epochs on the pairs and ${BASELINE_EPOCHS['all-11']} on all 11 (early stop after 6 without progress), to stay near 20 minutes of WASM training on 2 shared cores.`,
  },
  {
    id: 'features-pooled',
    title: 'frozen base, pooled features + dense head',
    args: () => ['--method', 'features', '--features', 'pooled'],
    slides: { 'monet-vs-van-gogh': '94.6% (frozen VGG16 + dense head)' },
    passes: 1,
    note: 'frozen ImageNet MobileNetV2 (int8); 1280-d global-average-pooled final feature map; Dense 64 relu, dropout 0.5, L2 1e-3, Adam.',
  },
  {
    id: 'features',
    title: 'frozen base, style statistics + logistic regression (Adam)',
    args: () => ['--method', 'features', '--features', 'style', '--solver', 'adam', '--hidden', '0', '--dropout', '0.2'],
    slides: { 'monet-vs-van-gogh': '94.6% (frozen VGG16 + dense head)' },
    passes: 1,
    note: 'the default route until the L-BFGS solver (features-lbfgs): per-channel mean and standard deviation of six feature maps (56x56 to 7x7) and signed-square-root Gram matrices of two of them, 5,920-d, computed inside the ONNX graph (AdaIN statistics, Huang & Belongie 2017; Gram matrices, Gatys et al. 2015); softmax regression with input dropout 0.2 and L2 1e-3, trained by mini-batch Adam with the best epoch on validation accuracy. Chosen over a 64-unit hidden layer on validation accuracy (82.4% vs 80.6% on all 11).',
  },
  {
    id: 'features-tta',
    title: 'frozen base, style statistics + logistic regression (Adam), flip TTA',
    args: () => ['--method', 'features', '--features', 'style', '--solver', 'adam', '--hidden', '0', '--dropout', '0.2', '--tta', 'flip'],
    slides: {},
    passes: 2,
    note: 'the Adam style route (features) with test-time augmentation inside the graph: the style statistics are the mean of those of the image and its horizontal mirror, for training and serving alike (export/views.ts); twice the base compute per image.',
  },
  {
    id: 'features-label-smoothing',
    title: 'frozen base, style statistics + logistic regression (Adam), label smoothing',
    args: () => ['--method', 'features', '--features', 'style', '--solver', 'adam', '--hidden', '0', '--dropout', '0.2', '--label-smoothing', LABEL_SMOOTHING],
    slides: {},
    passes: 1,
    note: `the Adam style route (features) trained on smoothed targets, eps = ${LABEL_SMOOTHING} (Szegedy et al. 2016).`,
  },
  {
    id: 'features-mixup',
    title: 'frozen base, style statistics + logistic regression (Adam), mixup',
    args: () => ['--method', 'features', '--features', 'style', '--solver', 'adam', '--hidden', '0', '--dropout', '0.2', '--mixup', MIXUP_ALPHA],
    slides: {},
    passes: 1,
    note: `the Adam style route (features) trained with mixup of the standardised style statistics and their targets, lambda ~ Beta(${MIXUP_ALPHA}, ${MIXUP_ALPHA}) per batch (Zhang et al. 2018).`,
  },
  {
    id: 'features-lbfgs',
    title: 'frozen base, style statistics + logistic regression (L-BFGS, the default)',
    args: () => ['--method', 'features', '--features', 'style', '--solver', 'lbfgs'],
    slides: {},
    passes: 1,
    note: 'the default route since it beat Adam on validation over seeds 1-5 (docs/SEEDS.md): the style statistics and L2 1e-3, with the softmax regression solved to convergence on the whole training set by L-BFGS (training/softmax-regression.ts, as scikit-learn fits LogisticRegression) instead of mini-batch Adam with input dropout and the best epoch on validation accuracy; no epoch or seed enters the fit.',
  },
  {
    id: 'features-lbfgs-tta',
    title: 'frozen base, style statistics + logistic regression (L-BFGS), flip TTA',
    args: () => ['--method', 'features', '--features', 'style', '--solver', 'lbfgs', '--tta', 'flip'],
    slides: {},
    passes: 2,
    note: 'the default route with test-time augmentation inside the graph: the style statistics are the mean of those of the image and its horizontal mirror, for training and serving alike (export/views.ts); twice the base compute per image.',
  },
  {
    id: 'finetune',
    title: 'fine-tuned top of the base',
    args: () => ['--method', 'finetune'],
    slides: { 'monet-vs-van-gogh': '98.3% (fine-tuned VGG16)', 'monet-vs-sisley': '86.6% (fine-tuned VGG16)' },
    passes: 1,
    note: 'MobileNetV2 with its top stage(s) trained together with a softmax head on augmented views, after a warm-up of the head (training/finetune.ts; settings in each model card).',
  },
  {
    id: 'finetune-style',
    title: 'fine-tuned top, style statistics + logistic regression',
    args: () => ['--method', 'finetune', '--features', 'style'],
    slides: {},
    passes: 1,
    note: "the finetune row's fine-tuning, then the Adam style route's head (softmax regression, input dropout 0.2; features) on the 5,920 style statistics of the base with its fine-tuned top: the five maps below the cut stay the frozen int8 base's, the final 1280-channel map is the fine-tuned one (issue 6).",
  },
  {
    id: 'ensemble',
    title: 'ensemble (soft vote)',
    args: () => ['--method', 'ensemble'],
    slides: {},
    passes: 3,
    note: "mean of the probabilities of the same experiment's features, features-pooled and finetune models (same seed and split), temperature-scaled on validation.",
  },
];
export const ENSEMBLE_MEMBERS = ['features', 'features-pooled', 'finetune'];

