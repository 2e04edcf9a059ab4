import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyToken } from '../../src/dialects/clusterio/token.js';
import { CLI, ensureBuilt } from '../support/cli.js';

/** `muster token clusterio --slave ID | --control`, run as a process. */

const run = promisify(execFile);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-token-'));

async function muster(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd: dataDir, env: { ...process.env, MUSTER_CONFIG: '' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(() => ensureBuilt());
afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

describe('muster token clusterio', () => {
  it('mints a slave token and a control token from the generated authSecret', async () => {
    const slave = await muster('token', 'clusterio', '--slave', '4242', '--data-dir', dataDir);
    expect(slave.code).toBe(0);
    expect(slave.stderr).toContain('dialects.clusterio.authSecret');
    const secrets = JSON.parse(fs.readFileSync(path.join(dataDir, 'secrets.json'), 'utf8')) as Record<string, string>;
    const secret = secrets['dialects.clusterio.authSecret'] as string;
    const token = slave.stdout.trim();
    expect(await verifyToken(secret, token, { aud: 'slave', id: '4242' }, Date.now())).toBe(true);

    const control = await muster('token', 'clusterio', '--control', '--data-dir', dataDir);
    expect(control.code).toBe(0);
    expect(control.stderr).toBe(''); // the secret already exists: nothing generated
    expect(await verifyToken(secret, control.stdout.trim(), { aud: 'control' }, Date.now())).toBe(true);
  }, 30_000);

  it('uses the configured authSecret', async () => {
    const cfg = path.join(dataDir, 'muster.json');
    fs.writeFileSync(cfg, JSON.stringify({ dataDir, dialects: { clusterio: { authSecret: 'configured-secret' } } }));
    const r = await muster('token', 'clusterio', '--control', '--config', cfg);
    expect(r.code).toBe(0);
    expect(await verifyToken('configured-secret', r.stdout.trim(), { aud: 'control' }, Date.now())).toBe(true);
  }, 30_000);

  it('refuses bad arguments with exit code 2', async () => {
    const cases = [
      ['token', 'clusterio', '--data-dir', dataDir],
      ['token', 'clusterio', '--slave', 'abc', '--data-dir', dataDir],
    ];
    const results = await Promise.all(cases.map((args) => muster(...args)));
    results.forEach((r, i) => {
      expect(r.code, cases[i]?.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
    });
  }, 30_000);
});
