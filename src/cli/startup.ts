/**
 * What `muster start` does around the server itself: checks that are cheap to make
 * before anything is opened, the one-line explanations of start-up failures an
 * operator can fix, and the banner. Start-up failures that are not schema errors
 * still exit 2 with one line naming the cause and the fix, never a stack trace.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createSecureContext } from 'node:tls';
import type { MusterConfig } from '../config/schema.js';
import { DEFAULT_REDIS_URL, SQLITE_FILE_NAME, redactRedisUrl } from '../store/index.js';

/** A start-up failure an operator can fix: one line, cause then fix. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
  constructor(cause: string, fix: string) {
    super(`${cause}; ${fix}`);
  }
}

/**
 * Creates the data directory (mode 0700) and its missing parents one level at a time.
 * A recursive `mkdir` never returns on some paths (e.g. under /proc, where mkdir keeps
 * answering ENOENT), so this walks up to the nearest existing ancestor itself and
 * fails with one line when a level cannot be made or is not a directory.
 */
export function ensureDataDir(dir: string): void {
  const abs = path.resolve(dir);
  const fix = 'choose a writable directory (dataDir, --data-dir or MUSTER_DATA_DIR)';
  const missing: string[] = [];
  let at = abs;
  for (;;) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(at);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new StartupError(`cannot use the data directory ${abs} (${errText(err)})`, fix);
    }
    if (st) {
      if (!st.isDirectory()) throw new StartupError(`cannot use the data directory ${abs}: ${at} is not a directory`, fix);
      break;
    }
    missing.unshift(at);
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const level of missing) {
    try {
      fs.mkdirSync(level, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && fs.statSync(level).isDirectory()) continue;
      throw new StartupError(`cannot create the data directory ${abs} (${errText(err)})`, fix);
    }
  }
  try {
    fs.accessSync(abs, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw new StartupError(`cannot write to the data directory ${abs} (${errText(err)})`, fix);
  }
}

/**
 * Checks made before anything is opened or generated: the TLS files. (A Redis store that
 * does not answer is no start-up failure: the server starts, /readyz says 503 until
 * Redis answers, and the store reconnects by itself.)
 */
export function preflight(config: MusterConfig): void {
  if (config.tls) checkTlsFiles(config.tls.cert, config.tls.key);
}

function checkTlsFiles(certFile: string, keyFile: string): void {
  const fix = 'give PEM files that belong together in tls.cert and tls.key (e.g. from openssl req -x509 or your CA)';
  const read = (key: string, file: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new StartupError(`${key}: cannot read ${file} (${errText(err)})`, fix);
    }
  };
  const cert = read('tls.cert', certFile);
  const key = read('tls.key', keyFile);
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new StartupError(`tls.cert: ${certFile} is not a PEM certificate (${errText(err)})`, fix);
  }
  try {
    createPrivateKey(key);
  } catch (err) {
    throw new StartupError(`tls.key: ${keyFile} is not a PEM private key without a passphrase (${errText(err)})`, fix);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new StartupError(`tls: the key in ${keyFile} does not match the certificate in ${certFile} (${errText(err)})`, fix);
  }
}

/** The one line for a start-up failure Muster knows how to explain, or undefined. */
export function explainStartupError(err: unknown, config: MusterConfig): string | undefined {
  if (err instanceof StartupError) return err.message;
  const e = err as NodeJS.ErrnoException | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  const where = `${config.listen.host}:${config.listen.port}`;
  const listenFix = 'stop the other process or choose another address (listen.host/listen.port, --host/--port, MUSTER_HOST/MUSTER_PORT)';
  if (code === 'EADDRINUSE') return `cannot listen on ${where}: the address is already in use; ${listenFix}`;
  if (code === 'EACCES' && e?.syscall === 'listen') return `cannot listen on ${where}: permission denied (ports below 1024 need privileges); choose a port of 1024 or more`;
  if (code === 'EADDRNOTAVAIL') return `cannot listen on ${where}: the host is not an address of this machine; ${listenFix}`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot listen on ${where}: the host name does not resolve; ${listenFix}`;
  // better-sqlite3's own errors, or the file system refusing the database file itself (a
  // directory in its place, no permission, a read-only disk) when it is created owner-only.
  const onDbFile = typeof e?.path === 'string' && path.basename(e.path) === SQLITE_FILE_NAME;
  if (code.startsWith('SQLITE_') || onDbFile || (e instanceof TypeError && /database/i.test(e.message))) {
    const file = path.resolve(config.dataDir, SQLITE_FILE_NAME);
    return (
      `cannot open the database ${file} (${code || 'error'}: ${errText(err)}); ` +
      'if it is corrupt or not a Muster database, move it aside (a new, empty one is made) or restore it from a backup; otherwise check its permissions and the disk'
    );
  }
  return undefined;
}

/** The start-up banner: one aligned column of names whatever their length. */
export function renderBanner(opts: {
  version: string;
  base: string;
  dialects: ReadonlyArray<{ name: string; path: string }>;
  config: MusterConfig;
}): string[] {
  const { base, config } = opts;
  const ws = base.replace(/^http/, 'ws');
  const names = ['health', 'store', 'instance', ...opts.dialects.map((d) => d.name)];
  const width = Math.max(...names.map((n) => n.length)) + 2;
  const row = (name: string, text: string): string => `  ${name.padEnd(width)}${text}`;
  const note = (name: string): string => (name === 'discodo' ? `  (compat: ${config.dialects.discodo.compat})` : '');
  return [
    `Muster ${opts.version} listening on ${base}`,
    row('health', `${base}/healthz    metrics ${base}/metrics    admin API ${base}/api/v1`),
    ...opts.dialects.map((d) => row(d.name, `${ws}${d.path}${note(d.name)}`)),
    row('store', storeText(config)),
    ...(config.instanceId !== undefined ? [row('instance', config.instanceId)] : []),
  ];
}

/** The store's banner line: where it is, never a password. */
function storeText(config: MusterConfig): string {
  const st = config.store;
  if (st.kind !== 'redis') return `${st.kind} (${config.dataDir})`;
  const where =
    st.cluster !== undefined
      ? `cluster ${st.cluster.map((n) => `${n.host}:${n.port}`).join(',')}`
      : st.sentinels !== undefined
        ? `sentinel primary "${st.name ?? ''}" via ${st.sentinels.map((n) => `${n.host}:${n.port}`).join(',')}`
        : redactRedisUrl(st.url ?? DEFAULT_REDIS_URL);
  return `redis (${where}, prefix ${JSON.stringify(st.prefix)}; ready once Redis answers: /readyz)`;
}

/** The generated-secrets block, shown once. */
export function renderGenerated(generated: ReadonlyArray<{ key: string; value: string }>, where: string): string[] {
  if (generated.length === 0) return [];
  return [`Generated secrets (stored with mode 0600 in ${where}; shown only this once):`, ...generated.map((g) => `  ${g.key}: ${g.value}`)];
}

function errText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0] ?? msg;
}
