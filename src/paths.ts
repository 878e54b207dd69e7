/** Locations that depend on where artist-id is installed or run. */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (the folder holding artist-id's package.json), from source or from dist/. */
export const PACKAGE_ROOT: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('artist-id: cannot find package.json above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
})();

/** artist-id's version, from its package.json. */
export const PACKAGE_VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** Models shipped with the package: `<root>/models/<name>/model.onnx`. */
export const MODELS_DIR = join(PACKAGE_ROOT, 'models');

/** Name of the model used when `--model` is not given. */
export const DEFAULT_MODEL_NAME = 'default';

/**
 * User cache for downloaded weights and bottleneck features: `$ARTIST_ID_CACHE`, else
 * `$XDG_CACHE_HOME/artist-id`, else `~/.cache/artist-id`.
 */
export function cacheDir(): string {
  if (process.env.ARTIST_ID_CACHE) return process.env.ARTIST_ID_CACHE;
  const base = process.env.XDG_CACHE_HOME || join(os.homedir(), '.cache');
  return join(base, 'artist-id');
}
