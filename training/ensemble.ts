/**
 * `artist-id train --method ensemble`: already-trained artist-id models (same data, same split, same
 * classes, same preprocessing) combined into one `model.onnx` by soft voting (mean of the members'
 * probabilities, Lakshminarayanan et al. 2017), temperature-scaled on validation (Guo et al. 2017).
 *
 * members -> checks (classes, preprocessing, split digests) -> merged graph (export/ensemble.ts) ->
 * rebuilt train/validation/test splits run through the ensemble ONNX (metrics, T fitted on validation,
 * open-set threshold on the maximum softmax probability) -> parity (ensemble ONNX vs the mean of the
 * members' own ONNX outputs on held-out images) -> `<out>/model.onnx` + `MODEL_CARD.md` + `history.json`.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildEnsembleModel, planEnsembleOpsets, PROBABILITY_FLOOR, type EnsembleMember } from '../export/ensemble.js';
import { PARITY_TOLERANCE, compareProbabilities } from '../export/parity.js';
import { resolveModelPath } from '../src/inference/classifier.js';
import { createSession } from '../src/inference/session.js';
import type { ModelCard } from '../src/model/card.js';
import { cardOfModel } from '../src/model/read-card.js';
import { decodeModel, encodeModel } from '../src/onnx/model.js';
import { decodeImage } from '../src/preprocess/decode.js';
import { imageBytes, type PreprocessSpec } from '../src/preprocess/spec.js';
import { nll, softmaxRows } from './calibration.js';
import { loadDataset, splitDigest, type Sample } from './dataset.js';
import { accuracyOf, calibrateOnValidation, cardIdentity, checkOutputFolder, formatCalibration, pct, writeModelFolder, type SplitPredictions } from './finish.js';
import { fitOutputOpenSet, formatOpenSet } from './open-set.js';
import type { TrainResult } from './train.js';

export interface EnsembleOptions {
  /** Member models: folders holding `model.onnx`, `.onnx` files, or names under `models/`; at least two. */
  members: string[];
  /** Output folder for the ensemble's model.onnx, MODEL_CARD.md and history.json. */
  out: string;
  /** Dataset root the members were trained on; default: `training.data` of the first member's card. */
  data?: string;
  /** Model name recorded in the card; default: the out folder's name. */
  name?: string;
  /** Replace a model already in `out`; without it, an existing model.onnx there is an error. */
  overwrite?: boolean;
  /** Images used by the parity check (test split first, else validation); default 32. */
  parityImages?: number;
  /** Images per onnxruntime run; default 16. */
  batchSize?: number;
  /** Progress and results, one line each; default stderr. */
  log?: (line: string) => void;
}

/** A loaded member: model, card, bytes digest. */
interface LoadedMember extends EnsembleMember {
  path: string;
  bytes: Uint8Array;
  sha256: string;
}

/**
 * Checks that every member was trained on the same problem as the first: classes in the same order,
 * identical preprocessing and input, and the same split (all three `training.splitDigest` entries).
 *
 * @throws Error naming the member, the field and both values on the first mismatch.
 */
export function checkEnsembleMembers(members: Pick<EnsembleMember, 'label' | 'card'>[]): void {
  if (members.length < 2) throw new Error(`Expected at least 2 members for an ensemble but received ${members.length}`);
  const [ref, ...rest] = members;
  const refuse = (m: { label: string }, field: string, theirs: unknown, ours: unknown, why: string) => {
    throw new Error(`Cannot ensemble: member "${m.label}" has ${field} ${JSON.stringify(theirs)} but member "${ref.label}" has ${JSON.stringify(ours)}; ${why}`);
  };
  const sameSplit = 'members must be trained on the same data and split (retrain it with the same --data, --artists, --split and --seed)';
  for (const m of [ref, ...rest]) {
    if (!m.card.training.splitDigest) {
      throw new Error(`Cannot ensemble: member "${m.label}" has no training.splitDigest (trained before split digests were recorded), so it cannot be shown to share the others' split; retrain it`);
    }
  }
  for (const m of rest) {
    if (JSON.stringify(m.card.classes) !== JSON.stringify(ref.card.classes)) refuse(m, 'classes', m.card.classes, ref.card.classes, 'members must have the same artists in the same order');
    for (const key of Object.keys(ref.card.preprocessing) as (keyof PreprocessSpec)[]) {
      if (JSON.stringify(m.card.preprocessing[key]) !== JSON.stringify(ref.card.preprocessing[key])) {
        refuse(m, `preprocessing.${key}`, m.card.preprocessing[key], ref.card.preprocessing[key], 'members must see the same pixels');
      }
    }
    for (const split of ['train', 'validation', 'test'] as const) {
      const theirs = m.card.training.splitDigest![split];
      const ours = ref.card.training.splitDigest![split];
      if (theirs !== ours) refuse(m, `training.splitDigest.${split}`, theirs, ours, sameSplit);
    }
  }
}

/**
 * Combines trained models into one ensemble model folder (see the module comment).
 *
 * @throws Error when fewer than two members are given, a member cannot be found or is not an artist-id
 *   model, members disagree (see {@link checkEnsembleMembers}), `data` no longer reproduces the members'
 *   split, or the parity check fails (nothing is written then).
 */
export async function trainEnsemble(options: EnsembleOptions): Promise<TrainResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const started = performance.now();
  const batchSize = options.batchSize ?? 16;
  if (!Array.isArray(options.members) || options.members.length < 2) {
    throw new Error(`Expected at least 2 member models for members (--member) but received ${JSON.stringify(options.members)}`);
  }
  const out = resolve(options.out);
  await checkOutputFolder(out, options.overwrite ?? false);

  const members: LoadedMember[] = [];
  for (const spec of options.members) {
    const path = resolveModelPath(spec);
    const bytes = await readFile(path);
    const model = decodeModel(bytes, path);
    const card = cardOfModel(model, path);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    members.push({ label: `${card.name} (${path})`, path, bytes, model, card, sha256 });
  }
  const shas = new Map<string, string>();
  for (const m of members) {
    if (shas.has(m.sha256)) throw new Error(`Cannot ensemble: member "${m.label}" is the same model file as member "${shas.get(m.sha256)}" (sha256 ${m.sha256.slice(0, 12)}); an ensemble needs different models`);
    shas.set(m.sha256, m.label);
  }
  checkEnsembleMembers(members);
  // Members at a lower opset (int8 `features` models: 12; `finetune`: 13) are merged at the highest one
  // when their nodes mean the same there; checked before any image is read.
  const opsetPlan = planEnsembleOpsets(members);
  for (const u of opsetPlan.upgrades) log(`member ${u.member}: opset ${u.from} merged at opset ${u.to} (${u.nodes} nodes checked compatible)`);
  const ref = members[0].card;
  const classes = ref.classes;
  const c = classes.length;
  const spec = ref.preprocessing;
  for (const m of members) log(`member ${m.card.name}@${m.sha256.slice(0, 12)}: ${m.card.training.method}, ${m.card.base.features} features (${m.card.base.featureDim}-d), validation ${pct(m.card.metrics.validation.accuracy)}`);

  // The members' split, rebuilt from the first card and checked against the recorded digests.
  const data = options.data ?? ref.training.data;
  const dataset = await loadDataset(data, { seed: ref.training.seed, split: ref.training.split, artists: classes });
  if (JSON.stringify(dataset.classes) !== JSON.stringify(classes)) {
    throw new Error(`Expected the artists ${classes.join(', ')} in data ${data} but the rebuilt split has ${dataset.classes.join(', ')}`);
  }

  const featureDim = members.reduce((s, m) => s + m.card.base.featureDim, 0);
  const sameBase = members.every((m) => m.card.base.name === ref.base.name && m.card.base.sha256 === ref.base.sha256);
  const memberList = members.map((m) => `${m.card.name}@${m.sha256.slice(0, 12)}${m.card.base.tta === 'flip' ? ' (flip TTA)' : ''}`).join(', ');
  const draftCard = (temperature: number): ModelCard => ({
    ...cardIdentity(out, options.name, classes, spec),
    base: {
      name: sameBase ? ref.base.name : members.map((m) => m.card.base.name).join('+'),
      sha256: sameBase ? ref.base.sha256 : members.map((m) => m.card.base.sha256.slice(0, 16)).join('+'),
      // The card schema has no 'ensemble' kind: the first member's kind; all kinds are in hyperparameters.memberFeatures.
      features: ref.base.features,
      featureDim,
    },
    training: {
      method: 'ensemble',
      data,
      layout: dataset.layout,
      seed: ref.training.seed,
      split: ref.training.split,
      epochs: 0,
      bestEpoch: 0,
      backend: 'onnxruntime',
      hyperparameters: {
        combination: 'mean of member probabilities (soft voting), logits = log(mean) / T',
        members: memberList,
        memberCount: members.length,
        memberFeatures: members.map((m) => m.card.base.features).join(','),
        temperature,
      },
      splitDigest: ref.training.splitDigest,
      seconds: 0,
    },
    metrics: { train: { images: 0, accuracy: 0 }, validation: { images: 0, accuracy: 0 } },
    parity: { images: 0, maxAbsDiff: 0, tolerance: PARITY_TOLERANCE },
    createdAt: new Date().toISOString(),
  });

  // Draft (T = 1): its probabilities are the mean of the members' probabilities.
  const draft = buildEnsembleModel(members, 1, draftCard(1));
  log(`ensemble graph: ${draft.stats.nodes} nodes (${draft.stats.sharedNodes} shared between members), ${draft.stats.initializers} initializers (${draft.stats.sharedInitializers} shared)`);
  const { session: draftSession } = await createSession(encodeModel(draft.model), { provider: 'cpu' });
  const run = async (samples: Sample[], label: 'train' | 'validation' | 'test'): Promise<SplitPredictions & { digest: string }> => {
    const t0 = performance.now();
    const probabilities = new Float32Array(samples.length * c);
    const shas: string[] = [];
    for (let start = 0; start < samples.length; start += batchSize) {
      const batch = samples.slice(start, start + batchSize);
      const images = await Promise.all(
        batch.map(async (s) => {
          const bytes = await readFile(s.path);
          shas.push(createHash('sha256').update(bytes).digest('hex'));
          return decodeImage(bytes, spec);
        }),
      );
      probabilities.set(await runImages(draftSession, images, spec, 'probabilities'), start * c);
    }
    const digest = splitDigest(shas);
    if (digest !== ref.training.splitDigest![label]) {
      throw new Error(`Expected data ${data} to reproduce the members' ${label} split (seed ${ref.training.seed}, split ${ref.training.split.join(',')}) but its images differ (digest ${digest.slice(0, 12)} vs ${ref.training.splitDigest![label].slice(0, 12)} in the cards): files were added, removed or changed`);
    }
    log(`ensemble on ${label}: ${samples.length} images, accuracy ${pct(accuracyOf({ probabilities, labels: samples.map((s) => s.label) }, c))}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return { probabilities, labels: samples.map((s) => s.label), digest };
  };
  const validation = await run(dataset.validation, 'validation');
  const test = dataset.test.length > 0 ? await run(dataset.test, 'test') : undefined;
  const trainSplit = await run(dataset.train, 'train');
  await draftSession.release();

  const { calibration, identifiable } = calibrateOnValidation(validation, test, c);
  if (!identifiable) log('temperature scaling skipped: every validation image is classified correctly, so T is not identifiable (T = 1)');
  log(formatCalibration(calibration));
  const logMean = (p: Float32Array) => p.map((v) => Math.log(Math.max(v, PROBABILITY_FLOOR)));
  const card = draftCard(calibration.temperature);
  card.calibration = calibration;
  card.metrics = {
    train: { images: trainSplit.labels.length, accuracy: accuracyOf(trainSplit, c) },
    validation: { images: validation.labels.length, accuracy: accuracyOf(validation, c), loss: nll(logMean(validation.probabilities), validation.labels, c, calibration.temperature) },
    ...(test ? { test: { images: test.labels.length, accuracy: accuracyOf(test, c) } } : {}),
  };
  log(`ensemble: validation ${pct(card.metrics.validation.accuracy)}${card.metrics.test ? `, test ${pct(card.metrics.test.accuracy)} (held out)` : ''} (members: ${members.map((m) => `${m.card.name} ${pct(m.card.metrics.validation.accuracy)}`).join(', ')} on validation)`);

  // Open set: maximum softmax probability of the final graph's `probabilities` = softmax(log(mean p) / T),
  // recomputed here as the graph does (floor, Log, Div T, Softmax). Not energy: the exported `logits` are
  // log(mean p) / T, whose logsumexp is log(sum p) = 0 for every image at T = 1 (log sum p^(1/T) at other
  // T), not the free energy of a classifier's logits (export/ensemble.ts). No `auroc`:
  // docs/open-set.json (measuredOpenSetAuroc) measured the features route, not an ensemble; the card
  // states none rather than a borrowed figure.
  const calibrated = (s: SplitPredictions) => softmaxRows(logMean(s.probabilities), c, calibration.temperature);
  card.openSet = fitOutputOpenSet({ classes: c, validation: { probabilities: calibrated(validation) }, test: test && { probabilities: calibrated(test) } });
  log(formatOpenSet(card.openSet));

  // Parity: the final graph against the mean of the members' own ONNX models, on real held-out images.
  const parityPaths = (dataset.test.length ? dataset.test : dataset.validation).map((s) => s.path).slice(0, options.parityImages ?? 32);
  const parityImages = await Promise.all(parityPaths.map(async (p) => decodeImage(await readFile(p), spec)));
  const final = buildEnsembleModel(members, calibration.temperature, card).model;
  const { session: finalSession } = await createSession(encodeModel(final), { provider: 'cpu' });
  const ensembleProbs = await runImages(finalSession, parityImages, spec, 'probabilities');
  await finalSession.release();
  const mean = new Float64Array(parityImages.length * c);
  for (const m of members) {
    const { session } = await createSession(m.bytes, { provider: 'cpu' });
    const p = await runImages(session, parityImages, spec, m.card.outputs.probabilities, m.card.input);
    await session.release();
    p.forEach((v, i) => (mean[i] += v / members.length));
  }
  const reference = softmaxRows(logMean(Float32Array.from(mean)), c, calibration.temperature);
  const parity = compareProbabilities(ensembleProbs, reference, c);
  log(`export parity: max |p_ensemble - softmax(log(mean p_members) / T)| = ${parity.maxAbsDiff.toExponential(2)} over ${parity.images} images (tolerance ${parity.tolerance}), top-1 disagreements ${parity.top1Disagreements}`);
  if (!(parity.maxAbsDiff <= PARITY_TOLERANCE)) {
    throw new Error(`Parity check failed: max |p_ensemble - p_members_mean| = ${parity.maxAbsDiff.toExponential(2)} over ${parity.images} images exceeds tolerance ${PARITY_TOLERANCE}`);
  }

  card.parity = { images: parity.images, maxAbsDiff: parity.maxAbsDiff, tolerance: parity.tolerance };
  card.training.seconds = Math.round((performance.now() - started) / 100) / 10;
  const modelBytes = encodeModel(buildEnsembleModel(members, calibration.temperature, card).model);
  const history = {
    method: 'ensemble',
    members: members.map((m) => ({ name: m.card.name, path: m.path, sha256: m.sha256, method: m.card.training.method, features: m.card.base.features, validationAccuracy: m.card.metrics.validation.accuracy, testAccuracy: m.card.metrics.test?.accuracy })),
    ensemble: { validationAccuracy: card.metrics.validation.accuracy, testAccuracy: card.metrics.test?.accuracy, temperature: calibration.temperature },
  };
  const modelPath = await writeModelFolder(out, modelBytes, card, history);
  log(`wrote ${modelPath} (${(modelBytes.length / 1e6).toFixed(1)} MB) in ${card.training.seconds} s`);
  return { modelPath, card, parity };
}

/** Runs decoded `[H,W,3] uint8` images through a session in one batch; returns the named output `[N,C]`. */
async function runImages(session: ort.InferenceSession, images: Uint8Array[], spec: PreprocessSpec, output: string, input = 'image'): Promise<Float32Array> {
  const size = imageBytes(spec);
  const batch = new Uint8Array(images.length * size);
  images.forEach((img, i) => batch.set(img, i * size));
  const tensor = new ort.Tensor('uint8', batch, [images.length, spec.height, spec.width, 3]);
  const result = await session.run({ [input]: tensor }, [output]);
  return result[output].data as Float32Array;
}
