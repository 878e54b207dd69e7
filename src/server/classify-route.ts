/**
 * The simple API: `POST /v1/models/{name}:classify` with an image as the body, or
 * `multipart/form-data` with one or more files; answers the top-k artists per image. Also
 * `GET /v1/models`, the served models and their classes (used by the web page).
 */
import { Router, type Request } from 'express';
import { expectInteger } from '../errors.js';
import { topK } from '../inference/classifier.js';
import { readBody, readMultipart } from './body.js';
import { findModel, inferenceRequest, type ServerContext } from './context.js';
import { HttpError } from './http-error.js';
import { openSetParameters } from './kserve.js';
import type { LabeledImage } from './served-model.js';

/** Content types taken as one image body; the format itself is detected from the content. */
export const IMAGE_CONTENT_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/tiff', 'image/gif', 'image/avif', 'image/heic', 'image/heif', 'application/octet-stream'];

/** Most files in one multipart request. */
export const MAX_FILES = 64;

/**
 * One image's answer: `artist` is the most probable of the trained artists, `top_k` the k most probable
 * (6 decimals), `error` null. Models whose card has `openSet` add `unknown` and `open_set_score`.
 * In a multipart upload a file that cannot be decoded gets `error` (why), `artist` and `probability` null
 * and an empty `top_k`, and the other files their answers; when no file can be decoded the request is a 400.
 */
export interface ClassifyPrediction {
  /** File name for multipart uploads, else null. */
  file: string | null;
  artist: string | null;
  probability: number | null;
  top_k: { artist: string; probability: number }[];
  /** Why this file has no answer (multipart uploads only), else null. */
  error: string | null;
  /** Open-set models: true when `open_set_score` is below the model's threshold (probably none of its artists). */
  unknown?: boolean;
  /** Open-set models: the open-set score (higher = more like the trained artists). */
  open_set_score?: number;
}

export function classifyRouter(ctx: ServerContext): Router {
  const router = Router();

  router.get('/v1/models', (_req, res) => {
    res.json({
      models: [...ctx.models.values()].map((m) => ({
        name: m.name,
        version: m.version,
        ready: m.ready && !ctx.state.draining,
        classes: m.card.classes,
        execution_provider: m.provider,
        classify_url: `/v1/models/${m.name}:classify`,
        open_set: m.card.openSet ? openSetParameters(m.card.openSet) : null,
      })),
    });
  });

  router.post('/v1/models/:target', async (req, res) => {
    const target = String(req.params.target);
    const colon = target.lastIndexOf(':');
    if (colon < 0 || target.slice(colon + 1) !== 'classify') {
      throw new HttpError(404, `Expected POST /v1/models/{name}:classify but received ${JSON.stringify(`/v1/models/${target}`)}`);
    }
    const model = findModel(ctx, target.slice(0, colon));
    let k = ctx.options.topK;
    let files: (string | null)[] = [];
    let errors: (string | undefined)[] = [];
    await inferenceRequest(
      ctx,
      model,
      res,
      async (signal) => {
        if (req.query.top_k !== undefined) k = expectTopK(req.query.top_k);
        const read = await readImages(req, res, ctx.options.bodyLimitMb * 1e6);
        files = read.files;
        // Multipart: one undecodable file gets its own error; a single body image is the whole request (400).
        if (!read.multipart) return model.classify(read.images, signal);
        const each = await model.classifyEach(read.images, signal);
        errors = each.errors;
        return { ...each, outputs: each.outputs.filter((o) => o !== undefined) };
      },
      (result) => {
        let next = 0;
        const predictions: ClassifyPrediction[] = files.map((file, i) => {
          if (errors[i] !== undefined) return { file, artist: null, probability: null, top_k: [], error: errors[i]! };
          const o = result.outputs[next++];
          const top = topK(o.probabilities, model.card.classes, k).map((t) => ({ artist: t.artist, probability: round6(t.probability) }));
          const openSet = o.openSet ? { unknown: o.openSet.unknown, open_set_score: round6(o.openSet.score) } : {};
          return { file, artist: top[0].artist, probability: top[0].probability, top_k: top, error: null, ...openSet };
        });
        res.json({ model: model.name, model_version: model.version, execution_provider: model.provider, predictions });
      },
    );
  });

  return router;
}

/** Reads the images of a classify request, by content type. */
async function readImages(req: Request, res: Parameters<typeof readBody>[1], limitBytes: number): Promise<{ images: LabeledImage[]; files: (string | null)[]; multipart: boolean }> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'multipart/form-data') {
    const files = await readMultipart(req, { maxBytes: limitBytes, maxFiles: MAX_FILES });
    return {
      images: files.map((f, i) => ({ bytes: f.bytes, label: `file ${i + 1} (${JSON.stringify(f.filename)}, field ${JSON.stringify(f.field)})` })),
      files: files.map((f) => f.filename),
      multipart: true,
    };
  }
  if (!IMAGE_CONTENT_TYPES.includes(type)) {
    throw new HttpError(415, `Expected Content-Type ${IMAGE_CONTENT_TYPES.join(', ')} or multipart/form-data but received ${type ? JSON.stringify(type) : 'none'}`);
  }
  const body = await readBody(req, res, limitBytes);
  if (body.length === 0) throw new HttpError(400, `Expected image bytes in the request body (Content-Type ${type}) but received an empty body (0 bytes)`);
  return { images: [{ bytes: body, label: 'request body' }], files: [null], multipart: false };
}

function expectTopK(value: unknown): number {
  try {
    return expectInteger('top_k', value, 1);
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
