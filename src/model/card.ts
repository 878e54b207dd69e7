/**
 * The model card: everything a trained artist-id model must say about itself, stored as JSON in
 * the ONNX file's `metadata_props` under {@link CARD_METADATA_KEY}. Class names, input shape and
 * preprocessing travel with the weights, so training and serving cannot drift apart.
 */
import { z } from 'zod';

/** ONNX metadata key that holds the card JSON. */
export const CARD_METADATA_KEY = 'artist_id.card';

/** `--tta` choices: `none`, or `flip` (features averaged over the image and its horizontal mirror, export/views.ts); a card records only `flip`. */
export const TTA_CHOICES = ['none', 'flip'] as const;
export type TtaChoice = (typeof TTA_CHOICES)[number];

/**
 * `--solver` choices, recorded as `training.hyperparameters.solver` of a features card: `adam` (mini-batches,
 * best epoch on validation) or `lbfgs` (softmax regression solved to convergence, training/softmax-regression.ts).
 */
export const HEAD_SOLVERS = ['adam', 'lbfgs'] as const;
export type HeadSolver = (typeof HEAD_SOLVERS)[number];

const preprocessSchema = z.object({
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  fit: z.enum(['fill', 'cover']),
  kernel: z.enum(['lanczos3', 'cubic', 'linear', 'nearest', 'mitchell']),
  background: z.string(),
  layout: z.literal('NHWC'),
  dtype: z.literal('uint8'),
  mean: z.tuple([z.number(), z.number(), z.number()]),
  std: z.tuple([z.number(), z.number(), z.number()]),
});

const splitMetricsSchema = z.object({
  images: z.number().int().nonnegative(),
  accuracy: z.number(),
  /** Loss (categorical cross-entropy) where known. */
  loss: z.number().optional(),
});

/**
 * Open-set scores, each "higher = more like the trained artists":
 * - `msp`: maximum softmax probability, the largest of `probabilities` (Hendrycks & Gimpel 2017);
 * - `energy`: logsumexp of `logits`, the negative free energy (Liu et al. 2020); with temperature scaling
 *   folded into the output layer these are the calibrated logits;
 * - `mahalanobis`: minus the smallest squared Mahalanobis distance of the features to a class mean under
 *   a shared (tied) covariance (Lee et al. 2018), computed in the graph (`openSet.output`);
 * - `relative-mahalanobis`: the same minus the distance to the all-class Gaussian (Ren et al. 2021), in the graph;
 * - `knn`: cosine similarity to the k-th nearest training painting (Sun et al. 2022), in the graph.
 */
export const OPEN_SET_SCORES = ['msp', 'energy', 'mahalanobis', 'relative-mahalanobis', 'knn'] as const;
/** Scores read from their own graph output rather than from `probabilities`/`logits`. */
export const GRAPH_OPEN_SET_SCORES: readonly OpenSetScoreName[] = ['mahalanobis', 'relative-mahalanobis', 'knn'];
export type OpenSetScoreName = (typeof OPEN_SET_SCORES)[number];

const openSetSchema = z
  .object({
    score: z.enum(OPEN_SET_SCORES),
    /** Graph output `[N] float32` holding the score; required for the scores computed in the graph. */
    output: z.string().optional(),
    /** Score below which an image is `unknown` (same units as the score). */
    threshold: z.number(),
    /**
     * The rule that chose `threshold`: the largest score value that still accepts (score >= threshold)
     * at least this fraction of the known-artist validation paintings, e.g. 0.95.
     */
    targetAcceptRate: z.number().gt(0).lte(1),
    /** Fraction of validation paintings accepted at `threshold` (>= `targetAcceptRate`), and their count. */
    validationAcceptRate: z.number().min(0).max(1),
    validationImages: z.number().int().positive(),
    /** Fraction of held-out test paintings (all by trained artists) accepted; 1 minus it is the false-unknown rate. */
    testAcceptRate: z.number().min(0).max(1).optional(),
    /** AUROC known vs unknown artists by leave-one-artist-out, where measured (docs/OPEN_SET.md). */
    auroc: z.object({ method: z.string(), validation: z.number(), test: z.number().optional() }).optional(),
    /** Score-specific settings (e.g. principal components, shrinkage, k), for the record. */
    parameters: z.record(z.string(), z.union([z.number(), z.string(), z.boolean()])).optional(),
  })
  .refine((o) => !GRAPH_OPEN_SET_SCORES.includes(o.score) || o.output !== undefined, {
    message: 'openSet.output (the graph output holding the score) is required for scores computed in the graph',
    path: ['output'],
  });

export const modelCardSchema = z.object({
  format: z.literal('artist-id/1'),
  name: z.string(),
  /** Artist names in output order: `probabilities[i]` is the probability of `classes[i]`. */
  classes: z.array(z.string()).min(2),
  preprocessing: preprocessSchema,
  /** Graph input: `[N,H,W,3] uint8 NHWC` sRGB. */
  input: z.string(),
  outputs: z.object({
    /** `[N,C] float32` softmax probabilities. */
    probabilities: z.string(),
    /** `[N,C] float32` logits (pre-softmax). */
    logits: z.string(),
    /** `[N,D] float32` bottleneck features of the base. */
    features: z.string(),
  }),
  base: z.object({
    name: z.string(),
    sha256: z.string(),
    /** `pooled`: global-average-pooled final feature map; `style`: mean/std/Gram statistics of several maps; `learned`: the penultimate layer of a network trained from scratch (no pretrained base: name `none`). */
    features: z.enum(['pooled', 'style', 'learned']).default('pooled'),
    featureDim: z.number().int().positive(),
    /** Test-time augmentation inside the graph: `flip` = the features are the mean of the image's and its horizontal mirror's (2x base compute). Absent: none. */
    tta: z.enum(TTA_CHOICES).exclude(['none']).optional(),
  }),
  training: z.object({
    method: z.string(),
    data: z.string(),
    layout: z.enum(['flat', 'keras']),
    seed: z.number().int(),
    split: z.tuple([z.number().int(), z.number().int(), z.number().int()]),
    epochs: z.number().int(),
    bestEpoch: z.number().int(),
    backend: z.string(),
    hyperparameters: z.record(z.string(), z.union([z.number(), z.string(), z.boolean()])),
    /**
     * sha256 over the sorted sha256s of the image files' bytes of each split, so `evaluate` can tell
     * whether a data folder still reproduces the held-out split (renamed, added or removed files change it).
     */
    splitDigest: z.object({ train: z.string(), validation: z.string(), test: z.string() }).optional(),
    seconds: z.number(),
  }),
  metrics: z.object({
    train: splitMetricsSchema,
    validation: splitMetricsSchema,
    test: splitMetricsSchema.optional(),
  }),
  /** Temperature scaling fitted on validation (folded into the output layer) and its effect on ECE (15 bins). */
  calibration: z
    .object({
      temperature: z.number().positive(),
      validationEceBefore: z.number(),
      validationEceAfter: z.number(),
      testEceBefore: z.number().optional(),
      testEceAfter: z.number().optional(),
    })
    .optional(),
  /**
   * Open set ("none of the trained artists"): a score per image, higher meaning more like the trained
   * artists, and the threshold below which an answer is reported `unknown` (the top-k artists are still
   * given). Absent: every answer is one of the trained artists. See {@link OPEN_SET_SCORES}.
   */
  openSet: openSetSchema.optional(),
  parity: z.object({ images: z.number().int(), maxAbsDiff: z.number(), tolerance: z.number() }),
  createdAt: z.string(),
});

/** Parsed model card. */
export type ModelCard = z.infer<typeof modelCardSchema>;

/**
 * Parses and validates the card JSON found in a model's metadata.
 *
 * @throws Error naming the model and each invalid field when the card is missing or malformed.
 */
export function parseModelCard(json: string | undefined, source: string): ModelCard {
  if (json === undefined) {
    throw new Error(`Expected ONNX metadata key "${CARD_METADATA_KEY}" in ${source} but it has none: is it an artist-id model? (train one with: artist-id train)`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new Error(`Expected JSON in metadata "${CARD_METADATA_KEY}" of ${source}: ${(err as Error).message}`);
  }
  const parsed = modelCardSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(card)'}: ${i.message}`).join('; ');
    throw new Error(`Invalid model card in ${source}: ${issues}`);
  }
  return parsed.data;
}
