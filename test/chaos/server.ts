/**
 * The built server as a real child process, for the crash test and `npm run chaos`:
 * a config file and a data dir of its own, loopback only, every secret set (so nothing
 * is generated or printed). Paths derive from this file, never from the cwd.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { mulberry32 } from '../support/random.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CLI = join(ROOT, 'dist/cli/main.js');

export const SECRETS = {
  admin: 'chaos-admin-token',
  bus: 'chaos-bus-token',
  clusterio: 'chaos-clusterio-secret',
  sharding: 'chaos-sharding-key',
  discodo: 'chaos-discodo-password',
  gamelist: 'chaos-gamelist-token',
} as const;

/** Builds dist/ if it is missing (`npm test` and `npm run chaos` build first anyway). */
export function ensureBuilt(): void {
  if (existsSync(CLI)) return;
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('build failed');
}

export interface ServerOptions {
  dataDir: string;
  /** Only these dialects are mounted (default: all five). */
  dialects?: ReadonlyArray<'bus' | 'clusterio' | 'sharding' | 'discodo' | 'gamelist'>;
  /** Extra top-level config, merged shallowly (e.g. `limits`). */
  extra?: Record<string, unknown>;
  /** Extra keys per dialect section, merged into it (e.g. `{ sharding: { shardCount: 8 } }`). */
  dialectConfig?: Partial<Record<'bus' | 'clusterio' | 'sharding' | 'discodo' | 'gamelist', Record<string, unknown>>>;
  /** Log level (default warn). */
  logLevel?: string;
}

export interface RunningServer {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** http://127.0.0.1:PORT */
  readonly base: string;
  readonly ws: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** stderr so far (warn and error log lines). */
  stderr(): string;
  /** stdout so far (info and debug log lines). */
  stdout(): string;
  kill9(): void;
  stop(): Promise<void>;
}

/** Writes `<dataDir>/../<name>.json` style config next to the data dir and starts the CLI on it. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const all = ['bus', 'clusterio', 'sharding', 'discodo', 'gamelist'] as const;
  const on = new Set(opts.dialects ?? all);
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: opts.dataDir,
    store: { kind: 'sqlite' },
    admin: { token: SECRETS.admin },
    log: { level: opts.logLevel ?? 'warn' },
    dialects: {
      bus: { enabled: on.has('bus'), token: SECRETS.bus, ...opts.dialectConfig?.bus },
      clusterio: { enabled: on.has('clusterio'), authSecret: SECRETS.clusterio, ...opts.dialectConfig?.clusterio },
      sharding: { enabled: on.has('sharding'), authorization: SECRETS.sharding, botToken: 'chaos-bot-token', ...opts.dialectConfig?.sharding },
      discodo: { enabled: on.has('discodo'), password: SECRETS.discodo, ...opts.dialectConfig?.discodo },
      gamelist: { enabled: on.has('gamelist'), regTokens: [SECRETS.gamelist], ...opts.dialectConfig?.gamelist },
    },
    ...opts.extra,
  };
  const file = `${opts.dataDir}.config.json`;
  writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
  const proc = spawn(process.execPath, [CLI, 'start', '--config', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  const base = await new Promise<string>((resolveBase, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 20_000);
    const check = (): void => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(t);
        resolveBase(m[1]);
      }
    };
    proc.stdout?.on('data', check);
    void exited.then(({ code, signal }) => {
      clearTimeout(t);
      reject(new Error(`server exited (${code ?? signal}) before listening: ${err}`));
    });
  });
  return {
    proc,
    pid: proc.pid as number,
    base,
    ws: base.replace(/^http/, 'ws'),
    exited,
    stderr: () => err,
    stdout: () => out,
    kill9: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A small seeded PRNG (mulberry32): the same seed gives the same run. */
export const rng = mulberry32;
