/** Paths of the real data shared beside the repo (`../shared`), resolved from the package root. */
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';

/** `../shared` next to the clone (CI copies it there). */
export const SHARED = resolve(PACKAGE_ROOT, '..', 'shared');
export const PAINTINGS = join(SHARED, 'paintings');
export const WEIGHTS = join(SHARED, 'weights');

if (!existsSync(PAINTINGS) || !existsSync(WEIGHTS)) {
  throw new Error(`Tests need the shared data at ${SHARED} (paintings/ and weights/); it is laid beside the repository clone`);
}

/** The first (by name) painting of an artist. */
export function paintingOf(artist: string, index = 0): string {
  const dir = join(PAINTINGS, artist);
  return join(dir, readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort()[index]);
}

/** Some real painting. */
export function anyPainting(): string {
  return paintingOf('claude-monet');
}
