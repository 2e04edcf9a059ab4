import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusClient } from '../../src/client/index.js';
import { FLEET_SECRETS, connectFleet, type Fleet } from '../support/fleet.js';
import { until } from '../support/server.js';

/**
 * The built server with its log output on a pipe that is closed or never read
 * (`muster start | head -n 1`, a stalled log collector): it keeps serving, drops and
 * counts log lines, and still stops on SIGTERM. And `log.file`, reopened on SIGHUP.
 */
const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(root, 'dist/cli/main.js');
const SHUTDOWN_TIMEOUT = 4000;
let dir: string;
const spawned: ChildProcess[] = [];

beforeAll(() => {
  if (!existsSync(cli)) {
    const r = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('build failed');
  }
  dir = mkdtempSync(join(tmpdir(), 'muster-log-'));
});
afterAll(() => {
  // A failed test must not leave its server behind.
  for (const p of spawned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, log: Record<string, unknown>): string {
  const s = FLEET_SECRETS;
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: join(dir, `data-${name}`),
      admin: { token: s.admin },
      log,
      shutdownTimeout: SHUTDOWN_TIMEOUT,
      dialects: {
        sharding: { authorization: s.shardingKey, botToken: s.botToken, shardCount: 4 },
        clusterio: { authSecret: s.clusterio },
        bus: { token: s.bus },
        discodo: { password: s.discodo },
        gamelist: { regTokens: [s.gamelist] },
      },
    }),
  );
  return file;
}

interface Running {
  proc: ChildProcess;
  base: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts the CLI and reads stdout up to the banner only; what happens to stdout next is the test's. */
async function start(config: string): Promise<Running> {
  const proc = spawn(process.execPath, [cli, 'start', '--config', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.push(proc);
  let out = '';
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const base = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no banner; stdout=${out} stderr=${err}`)), 15_000);
    const onData = (b: Buffer): void => {
      out += b.toString();
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(t);
        proc.stdout!.off('data', onData);
        proc.stdout!.pause();
        resolve(m[1]);
      }
    };
    proc.stdout!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`exited ${code}: ${err}`));
    });
  });
  return { proc, base, stderr: () => err, exited };
}

async function healthzMs(base: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  await res.text();
  return performance.now() - t0;
}

async function dropped(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const m = /^muster_log_lines_dropped_total (\d+)/m.exec(text);
  return m ? Number(m[1]) : -1;
}

/** Peers of every dialect work (and log at trace) until lines were dropped; /healthz answers quickly all along. */
async function serveUntilDropped(run: Running): Promise<{ fleet: Fleet; worstHealthz: number; rounds: number }> {
  const fleet = await connectFleet(run.base.replace(/^http/, 'ws'));
  await healthzMs(run.base); // warm: the test's own first request opens its connection
  let worstHealthz = 0;
  const all: number[] = [];
  let rounds = 0;
  for (; rounds < 400; rounds++) {
    await fleet.exercise();
    await fleet.bus.request(fleet.busPeer.id as string, 'BIG', 'y'.repeat(4000));
    const ms = await healthzMs(run.base);
    all.push(Math.round(ms));
    worstHealthz = Math.max(worstHealthz, ms);
    if (rounds % 10 === 9 && (await dropped(run.base)) > 0) break;
  }
  // Still served after the drops began.
  await fleet.exercise();
  worstHealthz = Math.max(worstHealthz, await healthzMs(run.base));
  if (process.env.LOG_OUTPUT_DEBUG) process.stderr.write(`healthz ms: ${all.join(' ')}\n`);
  return { fleet, worstHealthz, rounds };
}

async function sigterm(run: Running, fleet: Fleet): Promise<{ code: number | null; ms: number }> {
  const t0 = performance.now();
  run.proc.kill('SIGTERM');
  const code = await run.exited;
  const ms = performance.now() - t0;
  await fleet.close();
  return { code, ms };
}

describe('log output on a pipe', () => {
  it('closed by its reader (EPIPE): keeps serving, counts dropped lines, says so once on stderr, exits 0 on SIGTERM', async () => {
    const run = await start(writeConfig('closed', { level: 'trace' }));
    run.proc.stdout!.destroy();
    const { fleet, worstHealthz } = await serveUntilDropped(run);
    expect(await dropped(run.base)).toBeGreaterThan(0);
    expect(worstHealthz).toBeLessThan(50);
    const { code, ms } = await sigterm(run, fleet);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(SHUTDOWN_TIMEOUT);
    expect(run.stderr().match(/log output \(stdout\) failed \(EPIPE\)/g)).toHaveLength(1);
  }, 60_000);

  it('never read (a full pipe): logging does not block, lines beyond the buffer are dropped and counted, exits 0 on SIGTERM', async () => {
    const run = await start(writeConfig('stalled', { level: 'trace', maxBufferedBytes: 65536 }));
    const { fleet, worstHealthz } = await serveUntilDropped(run);
    expect(await dropped(run.base)).toBeGreaterThan(0);
    expect(worstHealthz).toBeLessThan(50);
    const { code, ms } = await sigterm(run, fleet);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(SHUTDOWN_TIMEOUT);
    run.proc.stdout!.destroy();
  }, 60_000);

  it('SIGINT on a stalled pipe exits 0 too', async () => {
    const run = await start(writeConfig('sigint', { level: 'trace', maxBufferedBytes: 65536 }));
    const { fleet } = await serveUntilDropped(run);
    run.proc.kill('SIGINT');
    expect(await run.exited).toBe(0);
    await fleet.close();
    run.proc.stdout!.destroy();
  }, 60_000);
});

describe('log.file', () => {
  it('writes the log owner-only to the file, and opens it again on SIGHUP (logrotate)', async () => {
    const file = join(dir, 'muster.log');
    const run = await start(writeConfig('file', { level: 'info', file }));
    const ws = run.base.replace(/^http/, 'ws');
    const identified = (name: string) => (text: string) => text.split('\n').some((l) => l.includes('"peer.identified"') && l.includes(`"identity":"${name}"`));
    const read = (f: string): string => (existsSync(f) ? readFileSync(f, 'utf8') : '');

    const a = new BusClient({ url: `${ws}/bus`, token: FLEET_SECRETS.bus, name: 'before-rotate', reconnect: false });
    await a.connect();
    await until(() => identified('before-rotate')(read(file)));
    expect(statSync(file).mode & 0o777).toBe(0o600);

    renameSync(file, `${file}.1`);
    run.proc.kill('SIGHUP');
    await until(() => existsSync(file));
    const b = new BusClient({ url: `${ws}/bus`, token: FLEET_SECRETS.bus, name: 'after-rotate', reconnect: false });
    await b.connect();
    await until(() => identified('after-rotate')(read(file)));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(identified('after-rotate')(read(`${file}.1`))).toBe(false);
    expect(identified('before-rotate')(read(`${file}.1`))).toBe(true);
    expect(identified('before-rotate')(read(file))).toBe(false);

    await a.close();
    await b.close();
    run.proc.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    // The last line reached the file before the exit.
    expect(read(file)).toContain('"msg":"stopped"');
  }, 30_000);
});
