/**
 * The data directory holds secrets (secrets.json) and the store (muster.db, which
 * holds Clusterio instance configs with their rcon passwords), so it and everything in
 * it are owner-only: directories 0700, files 0600. A directory that already exists
 * with looser modes (made by hand, restored from a backup, left by an older version)
 * is tightened at start, and each change is reported so it can be logged.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from './load.js';

export const DATA_DIR_MODE = 0o700;
export const DATA_FILE_MODE = 0o600;

export interface Tightened {
  path: string;
  /** The permission bits before, e.g. 0o755. */
  from: number;
  to: number;
}

/**
 * Makes `dir` (created first when `create` is set) and everything under it owner-only.
 * Symbolic links are left alone (chmod would follow them out of the directory).
 * Returns what it changed. Throws ConfigError when a mode cannot be changed.
 * Does nothing on Windows, whose files have no such modes.
 */
export function secureDataDir(dir: string, opts: { create: boolean }): Tightened[] {
  if (process.platform === 'win32') return [];
  if (opts.create) {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: DATA_DIR_MODE });
    } catch (err) {
      throw new ConfigError('dataDir', dir, 'a directory Muster can create', { problem: (err as Error).message, cause: err });
    }
  } else if (!fs.existsSync(dir)) {
    return [];
  }
  const changed: Tightened[] = [];
  tighten(dir, changed);
  return changed;
}

function tighten(p: string, changed: Tightened[]): void {
  const st = fs.lstatSync(p);
  if (st.isSymbolicLink()) return;
  const dir = st.isDirectory();
  const want = dir ? DATA_DIR_MODE : DATA_FILE_MODE;
  const mode = st.mode & 0o777;
  // Anything open to group or others is set to owner-only (a stricter mode such as 0400 is kept).
  if ((mode & 0o077) !== 0 || (dir && (mode & 0o700) !== 0o700)) {
    try {
      fs.chmodSync(p, want);
    } catch (err) {
      throw new ConfigError('dataDir', path.dirname(p), 'a data directory whose files Muster can make owner-only', {
        problem: `cannot chmod ${p} (${(err as Error).message})`,
        cause: err,
      });
    }
    changed.push({ path: p, from: mode, to: want });
  }
  if (dir) for (const name of fs.readdirSync(p)) tighten(path.join(p, name), changed);
}

/** `0o755` as `"0755"`, for log lines. */
export function formatMode(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}
