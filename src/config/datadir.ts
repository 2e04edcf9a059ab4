/**
 * The data directory holds secrets (secrets.json) and the store (muster.db, which
 * holds Clusterio instance configs with their rcon passwords), so it and everything in
 * it are owner-only: the directory 0700, and no bit for group or others on anything
 * under it (the files Muster writes are 0600). A directory that already exists with
 * looser modes (made by hand, restored from a backup, left by an older version) is
 * tightened at start, and each change is reported so it can be logged. The owner's own
 * bits are kept (a script keeps its x bit), so a data directory set by mistake to a
 * directory holding other things loses nothing but other users' access.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from './load.js';

export const DATA_DIR_MODE = 0o700;

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
  const mode = st.mode & 0o7777;
  // Group and others lose every bit (and setuid/setgid/sticky go); directories stay usable by their owner.
  const want = dir ? DATA_DIR_MODE : mode & 0o700;
  if (want !== mode) {
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
