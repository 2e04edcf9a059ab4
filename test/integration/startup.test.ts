import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureBuilt } from '../support/cli.js';

/**
 * Start-up failures that are not config schema errors: the built CLI as a process,
 * by absolute path. Each one exits 2 with one line on stderr that names the cause and
 * the fix, and no stack trace.
 */
let dir: string;
beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'muster-startup-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function config(lines: string[]): { file: string; data: string } {
  const data = join(dir, `data-${++n}`);
  const file = join(dir, `muster-${n}.yaml`);
  writeFileSync(file, [`dataDir: ${JSON.stringify(data)}`, 'log: { level: warn }', ...lines, ''].join('\n'));
  return { file, data };
}

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'start', ...args], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 15_000,
    env: { ...process.env, MUSTER_CONFIG: '', MUSTER_PORT: '', MUSTER_HOST: '', MUSTER_DATA_DIR: '', MUSTER_ADMIN_TOKEN: '' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectOneLine(r: { status: number | null; stderr: string }, ...parts: Array<string | RegExp>): void {
  expect(r.status, r.stderr).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^muster: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  for (const p of parts) expect(lines[0]).toMatch(p);
}

describe('start-up failures: one line, exit 2', () => {
  let busy: Server;
  let busyPort = 0;
  beforeAll(async () => {
    busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    busyPort = (busy.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => busy.close(() => r())));

  it('a port in use names the address and how to choose another, and shows the secrets it generated and saved', () => {
    const { file, data } = config([`listen: { host: 127.0.0.1, port: ${busyPort} }`]);
    const r = run(['--config', file]);
    expectOneLine(r, `127.0.0.1:${busyPort}`, /already in use/, /--port/);
    const saved = JSON.parse(readFileSync(join(data, 'secrets.json'), 'utf8')) as Record<string, string>;
    expect(Object.keys(saved).length).toBeGreaterThan(0);
    expect(r.stdout).toContain('Generated secrets');
    for (const [key, value] of Object.entries(saved)) expect(r.stdout).toContain(`${key}: ${value}`);
  });

  it('a corrupt database names the file and what to do', () => {
    const { file, data } = config(['listen: { port: 0 }']);
    mkdirSync(data, { recursive: true });
    writeFileSync(join(data, 'muster.db'), 'this is not a database, it is a text file that got here somehow\n'.repeat(100));
    expectOneLine(run(['--config', file]), join(data, 'muster.db'), /SQLITE_NOTADB/, /move it aside|backup/);
  });

  it('an unopenable database (a directory in its place) names the file', () => {
    const { file, data } = config(['listen: { port: 0 }']);
    mkdirSync(join(data, 'muster.db'), { recursive: true });
    expectOneLine(run(['--config', file]), /cannot open the database/, join(data, 'muster.db'));
  });

  it('a TLS file that is not PEM names the key, the file and the fix', () => {
    const cert = join(dir, 'not-a-cert.pem');
    writeFileSync(cert, 'hello\n');
    const fixtures = join(import.meta.dirname, '../fixtures/tls');
    const bad = config(['listen: { port: 0 }', `tls: { cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(join(fixtures, 'key.pem'))} }`]);
    expectOneLine(run(['--config', bad.file]), /tls\.cert/, cert, /not a PEM certificate/, /PEM files/);
    const badKey = config(['listen: { port: 0 }', `tls: { cert: ${JSON.stringify(join(fixtures, 'cert.pem'))}, key: ${JSON.stringify(cert)} }`]);
    expectOneLine(run(['--config', badKey.file]), /tls\.key/, /not a PEM private key/);
    // nothing was created for a start that never began
    expect(existsSync(bad.data)).toBe(false);
  });

  it.skipIf(!existsSync('/proc/self'))('a data directory that cannot be created fails at once instead of hanging', () => {
    const { file } = config(['listen: { port: 0 }']);
    const r = run(['--config', file, '--data-dir', '/proc/muster-data']);
    expectOneLine(r, /\/proc\/muster-data/, /data directory/, /--data-dir/);
  });

  it('a data directory path through a file names the file', () => {
    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, '');
    const { file } = config(['listen: { port: 0 }']);
    expectOneLine(run(['--config', file, '--data-dir', join(blocker, 'data')]), /is not a directory/, blocker);
  });
});

describe('the banner', () => {
  it('aligns every name in one column and names the discodo compat mode', async () => {
    const { file } = config(['listen: { host: 127.0.0.1, port: 0 }', 'dialects: { discodo: { compat: discodo-3 } }']);
    const proc = spawn(process.execPath, [CLI, 'start', '--config', file], { cwd: dir, env: { ...process.env, MUSTER_CONFIG: '' } });
    let out = '';
    proc.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    await new Promise<void>((resolve, reject) => {
      proc.stdout.on('data', () => {
        if (out.includes('store')) resolve();
      });
      void exited.then((code) => reject(new Error(`exited ${String(code)}`)));
    });
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    const banner = out.split('\n\n')[0] as string; // the generated secrets follow after a blank line
    const rows = banner.split('\n').filter((l) => /^ {2}\S/.test(l));
    expect(rows.length).toBeGreaterThanOrEqual(7);
    const starts = rows.map((l) => /^ {2}\S+\s+/.exec(l)?.[0].length);
    expect(new Set(starts).size, out).toBe(1);
    expect(out).toMatch(/^ {2}clusterio {2,}ws:\/\/\S+\/api\/socket$/m);
    expect(out).toMatch(/^ {2}discodo {2,}ws:\/\/\S+\/ws {2}\(compat: discodo-3\)$/m);
    expect(out).not.toMatch(/botToken/);
  });
});
