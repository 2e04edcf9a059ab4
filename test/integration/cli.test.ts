import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusClient } from '../../src/client/index.js';
import { CLI as cli, ensureBuilt } from '../support/cli.js';
import { RawPeer } from '../support/server.js';

/**
 * The built CLI as a subprocess, with a config file, driven by real WebSocket
 * clients and real HTTP. `npm test` builds dist/ first.
 */
let dir: string;

beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'muster-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Running {
  proc: ChildProcessWithoutNullStreams;
  base: string;
  stdout: () => string;
  exited: Promise<number | null>;
}

async function start(args: string[], env: Record<string, string> = {}): Promise<Running> {
  const proc = spawn(process.execPath, [cli, 'start', ...args], { cwd: dir, env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  proc.stdout.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const base = await new Promise<string>((resolvePromise, reject) => {
    const t = setTimeout(() => reject(new Error(`no banner; stdout=${out} stderr=${err}`)), 15_000);
    const check = (): void => {
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(t);
        resolvePromise(m[1]);
      }
    };
    proc.stdout.on('data', check);
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`exited ${code}: ${err}`));
    });
  });
  return { proc, base, stdout: () => out, exited };
}

function writeConfig(name: string, busToken: string): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      `dataDir: ${join(dir, 'data')}`,
      'admin: { token: admin-cli-token }',
      'log: { level: warn }',
      'dialects:',
      `  bus: { token: ${busToken}, heartbeatInterval: 30s }`,
      '',
    ].join('\n'),
  );
  return file;
}

describe('muster CLI', () => {
  it('starts from a config file, serves bus and HTTP, reloads on SIGHUP, and stops cleanly on SIGTERM', async () => {
    const cfg = writeConfig('muster.yaml', 'first-token');
    const run = await start(['--config', cfg]);
    const ws = run.base.replace(/^http/, 'ws');

    expect((await fetch(`${run.base}/healthz`)).status).toBe(200);
    expect((await fetch(`${run.base}/readyz`)).status).toBe(200);
    expect(run.stdout()).toMatch(new RegExp(`^  bus +${ws}/bus$`, 'm'));

    const a = new BusClient({ url: `${ws}/bus`, token: 'first-token', name: 'a', reconnect: false });
    const b = new BusClient({ url: `${ws}/bus`, token: 'first-token', reconnect: false });
    await a.connect();
    await b.connect();
    b.on('event', (m) => b.reply(m, 'pong'));
    await expect(a.request(b.id as string, 'PING?')).resolves.toBe('pong');

    const status = spawnSync(process.execPath, [cli, 'status', '--url', run.base, '--token', 'admin-cli-token'], { encoding: 'utf8' });
    expect(status.status).toBe(0);
    expect(status.stdout).toMatch(/Connections: 2/);
    expect(status.stdout).toMatch(/bus \(\/bus\): services=2/);
    const denied = spawnSync(process.execPath, [cli, 'status', '--url', run.base, '--token', 'nope'], { encoding: 'utf8' });
    expect(denied.status).toBe(1);
    expect(denied.stderr).toContain('401');

    // SIGHUP: the new token works, the old connections stay.
    writeConfig('muster.yaml', 'second-token');
    run.proc.kill('SIGHUP');
    const c = new BusClient({ url: `${ws}/bus`, token: 'second-token', reconnect: false });
    let identified = false;
    for (let i = 0; i < 100 && !identified; i++) {
      identified = await c.connect().then(
        () => true,
        () => false,
      );
      if (!identified) await new Promise((r) => setTimeout(r, 20));
    }
    expect(identified).toBe(true);
    await expect(a.request(b.id as string, 'STILL?')).resolves.toBe('pong');

    // SIGTERM: every peer gets its goodbye, then the process exits 0.
    const raw = await RawPeer.open(`${ws}/bus`);
    raw.send({ op: 1, data: { token: 'second-token' } });
    await raw.next();
    run.proc.kill('SIGTERM');
    expect(await raw.next()).toEqual({ op: 2, data: { reason: 'SHUTTING_DOWN' } });
    expect((await raw.waitClose()).code).toBe(1001);
    expect(await run.exited).toBe(0);
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  it('store.kind redis with Redis not answering is no start-up failure: it starts, and /readyz says 503', async () => {
    const closed = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as AddressInfo;
        srv.close(() => resolve(port));
      });
    });
    const file = join(dir, 'redis.yaml');
    const data = join(dir, 'redis-data');
    writeFileSync(file, ['listen: { host: 127.0.0.1, port: 0 }', `dataDir: ${data}`, 'log: { level: silent }', `store: { kind: redis, url: "redis://:hunter2@127.0.0.1:${closed}" }`, ''].join('\n'));
    const run = await start(['--config', file], { MUSTER_CONFIG: '' });
    try {
      const id = readFileSync(join(data, 'instance-id'), 'utf8').trim();
      expect(run.stdout()).toMatch(new RegExp(`^  store +redis \\(redis://:\\*\\*\\*@127\\.0\\.0\\.1:${closed}/?, prefix "muster:"`, 'm'));
      expect(run.stdout()).toMatch(new RegExp(`^  instance +${id.replace(/\./g, '\\.')}$`, 'm'));
      expect(run.stdout()).not.toContain('hunter2');
      const r = await fetch(`${run.base}/readyz`);
      expect(r.status).toBe(503);
      expect(await r.json()).toMatchObject({ status: 'unavailable', instanceId: id });
      expect((await fetch(`${run.base}/healthz`)).status).toBe(200);
    } finally {
      run.proc.kill('SIGTERM');
      expect(await run.exited).toBe(0);
    }
  });

  it('generates missing secrets once, stores them with mode 0600, and prints them in the banner', async () => {
    const data = join(dir, 'gen');
    const first = await start(['--port', '0', '--data-dir', data], { MUSTER_CONFIG: '' });
    expect(first.stdout()).toContain('Generated secrets');
    expect(first.stdout()).toMatch(/admin\.token: \S+/);
    expect(statSync(join(data, 'secrets.json')).mode & 0o777).toBe(0o600);
    expect(existsSync(join(data, 'muster.db'))).toBe(true);
    first.proc.kill('SIGINT');
    expect(await first.exited).toBe(0);
    const second = await start(['--port', '0', '--data-dir', data]);
    expect(second.stdout()).not.toContain('Generated secrets');
    second.proc.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });

  it('refuses a bad config, naming the key, the value and what was expected', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'dialects:\n  bus: { heartbeatInterval: soon }\n');
    const r = spawnSync(process.execPath, [cli, 'start', '--config', file], { cwd: dir, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('dialects.bus.heartbeatInterval');
    expect(r.stderr).toContain('soon');
    expect(r.stderr).toMatch(/expected/);
  });
});
