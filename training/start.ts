/**
 * The steps every training method starts with, whatever it trains: refuse an occupied output folder,
 * pick and report the TensorFlow.js backend, read and split the dataset and report the split.
 */
import { resolve } from 'node:path';
import { initTrainingBackend } from './backend.js';
import { DEFAULT_SPLIT, loadDataset, type SplitDataset, type SplitOptions } from './dataset.js';
import { checkOutputFolder } from './finish.js';

/** What {@link startTraining} found: the absolute output folder, the backend, the split dataset and its per-artist split. */
export interface TrainingStart {
  out: string;
  backend: Awaited<ReturnType<typeof initTrainingBackend>>;
  dataset: SplitDataset;
  split: [number, number, number];
}

/**
 * @throws Error when `out` is a file or already holds a model (without `overwrite`), and the errors of
 *   `loadDataset` for bad data; nothing is trained or written then.
 */
export async function startTraining(options: SplitOptions & { data: string; out: string; overwrite?: boolean }, seed: number, log: (line: string) => void): Promise<TrainingStart> {
  const out = resolve(options.out);
  await checkOutputFolder(out, options.overwrite ?? false);
  const backend = await initTrainingBackend();
  log(`TensorFlow.js backend: ${backend.name}${backend.notes.length ? ` (not available: ${backend.notes.join('; ')})` : ''}`);
  const dataset = await loadDataset(options.data, options);
  log(`data: ${dataset.root} (${dataset.layout} layout), ${dataset.classes.length} artists, ${dataset.train.length}/${dataset.validation.length}/${dataset.test.length} train/validation/test images, seed ${seed}`);
  return { out, backend, dataset, split: options.split ?? DEFAULT_SPLIT };
}
