/**
 * Each instance has a stable id: it names the instance in cluster mode (deliveries,
 * leadership, logs) and is shown in the start-up banner, `/readyz`, `/metrics` and
 * `muster status`. It is `instanceId` from the config, or else generated at first start
 * and kept in `<dataDir>/instance-id` (mode 0600, like secrets.json), so a restart keeps
 * it. Two instances must not share a data directory (nor, then, an id).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from './load.js';

export const INSTANCE_ID_FILE = 'instance-id';

/** What an instance id looks like (the config schema says the same). */
export const INSTANCE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A new id: the host name (cut to what the pattern allows) and 8 random hex digits. */
export function generateInstanceId(hostname = os.hostname()): string {
  const host = hostname.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 40);
  const rand = crypto.randomBytes(4).toString('hex');
  return host === '' ? rand : `${host}-${rand}`;
}

export interface ResolvedInstanceId {
  id: string;
  /** True when this call generated it (first start). */
  generated: boolean;
}

/**
 * The configured id, or the one kept in `<dataDir>/instance-id`, or a new one stored
 * there. Throws ConfigError when the file cannot be read or written, or holds no id.
 */
export function resolveInstanceId(configured: string | undefined, dataDir: string): ResolvedInstanceId {
  if (configured !== undefined) return { id: configured, generated: false };
  const file = path.join(dataDir, INSTANCE_ID_FILE);
  let text: string | undefined;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ConfigError(file, undefined, 'a readable instance id file', { problem: `cannot read it (${(err as Error).message})`, cause: err });
    }
  }
  if (text !== undefined) {
    const id = text.trim();
    if (!INSTANCE_ID_PATTERN.test(id)) {
      throw new ConfigError(file, undefined, 'one instance id (letters, digits, ".", "_" or "-"); delete the file to get a new one');
    }
    if (process.platform !== 'win32' && (fs.statSync(file).mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
    return { id, generated: false };
  }
  const id = generateInstanceId();
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  try {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(tmp, `${id}\n`, { mode: 0o600, flag: 'wx' });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new ConfigError(file, undefined, 'a writable data directory', { problem: `cannot store the instance id (${(err as Error).message})`, cause: err });
  }
  return { id, generated: true };
}
