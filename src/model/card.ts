/**
 * The model card: everything a trained artist-id model must say about itself, stored as JSON in
 * the ONNX file's `metadata_props` under {@link CARD_METADATA_KEY}. Class names, input shape and
 * preprocessing travel with the weights, so training and serving cannot drift apart.
 */
import { z } from 'zod';

/** ONNX metadata key that holds the card JSON. */
export const CARD_METADATA_KEY = 'artist_id.card';

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
