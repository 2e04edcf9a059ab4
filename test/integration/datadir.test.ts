import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { loadConfig } from '../../src/config/load.js';
import { resolveSecrets } from '../../src/config/secrets.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { startMuster, type Muster } from '../../src/server.js';

/** Issue #10 §5: the data directory and everything in it are owner-only, always. */

const posix = process.platform !== 'win32';
let root: string;
let muster: Muster | undefined;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-datadir-'));
});
afterEach(async () => {
  await muster?.stop();
  muster = undefined;
  fs.rmSync(root, { recursive: true, force: true });
});

const mode = (p: string): number => fs.statSync(p).mode & 0o777;

/** Every path under `dir` (itself included) with its permission bits. */
function modes(dir: string): Record<string, number> {
  const out: Record<string, number> = { '.': mode(dir) };
  const walk = (d: string): void => {
    for (const name of fs.readdirSync(d)) {
      const p = path.join(d, name);
      out[path.relative(dir, p)] = mode(p);
      if (fs.statSync(p).isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

async function start(dataDir: string, store: 'sqlite' | 'memory' = 'sqlite'): Promise<{ m: Muster; warns: Array<Record<string, unknown>> }> {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  // Every secret configured: nothing is generated, the store is the only writer.
  const config = loadConfig({
    env: {},
    overrides: {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir,
      store: { kind: store },
      admin: { token: 'adm' },
      dialects: {
        sharding: { authorization: 's', botToken: 'b' },
        clusterio: { authSecret: 'c'.repeat(32) },
        bus: { token: 't' },
        discodo: { password: 'p' },
        gamelist: { regTokens: ['g'] },
      },
    },
  });
  const m = await startMuster({ config, clock: new ManualClock(), logger: pino({ level: 'info' }, sink), defaultMetrics: false });
  muster = m;
  return { m, warns: lines.filter((l) => l['level'] === 40) };
}

describe.runIf(posix)('data directory: owner-only', () => {
  it('creates the directory 0700 and the database, its WAL and shared memory 0600, whatever the umask', async () => {
    const old = process.umask(0o002);
    try {
      const dir = path.join(root, 'fresh', 'data');
      const { m } = await start(dir);
      await m.store.set('test', 'k', { rcon_password: 'x' });
      await m.store.flush();
      const seen = modes(dir);
      expect(Object.keys(seen).sort()).toEqual(['.', 'muster.db', 'muster.db-shm', 'muster.db-wal']);
      expect(seen).toEqual({ '.': 0o700, 'muster.db': 0o600, 'muster.db-shm': 0o600, 'muster.db-wal': 0o600 });
    } finally {
      process.umask(old);
    }
  });

  it('tightens a directory that already exists with looser modes, and logs each change', async () => {
    const dir = path.join(root, 'data');
    fs.mkdirSync(dir);
    // Left by an earlier run or restored from a backup with the wrong modes.
    const s = SqliteStore.open(dir);
    await s.set('test', 'k', 1);
    await s.close();
    fs.writeFileSync(path.join(dir, 'secrets.json'), '{}\n');
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'x');
    fs.mkdirSync(path.join(dir, 'backup'));
    fs.writeFileSync(path.join(dir, 'backup', 'muster.db.bak'), 'x');
    fs.writeFileSync(path.join(dir, 'already-private'), 'x');
    fs.writeFileSync(path.join(dir, 'backup.sh'), '#!/bin/sh\n');
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(path.join(dir, 'muster.db'), 0o644);
    fs.chmodSync(path.join(dir, 'secrets.json'), 0o644);
    fs.chmodSync(path.join(dir, 'notes.txt'), 0o666);
    fs.chmodSync(path.join(dir, 'backup'), 0o775);
    fs.chmodSync(path.join(dir, 'backup', 'muster.db.bak'), 0o604);
    fs.chmodSync(path.join(dir, 'already-private'), 0o400);
    fs.chmodSync(path.join(dir, 'backup.sh'), 0o755);

    const { m, warns } = await start(dir);
    await m.store.set('test', 'k', 2);
    const seen = modes(dir);
    for (const [p, bits] of Object.entries(seen)) {
      // The owner's own bits are kept: a read-only file stays read-only, a script keeps its x bit.
      const expected = p === '.' || p === 'backup' || p === 'backup.sh' ? 0o700 : p === 'already-private' ? 0o400 : 0o600;
      expect(bits, p).toBe(expected);
    }
    expect(seen['muster.db-wal']).toBe(0o600);
    const logged = Object.fromEntries(warns.map((w) => [path.relative(dir, String(w['path'])) || '.', [w['from'], w['to']]]));
    expect(logged).toEqual({
      '.': ['0755', '0700'],
      'muster.db': ['0644', '0600'],
      'secrets.json': ['0644', '0600'],
      'notes.txt': ['0666', '0600'],
      backup: ['0775', '0700'],
      'backup/muster.db.bak': ['0604', '0600'],
      'backup.sh': ['0755', '0700'],
    });
  });

  it('tightens a loose directory that generated secrets were written into', async () => {
    const dir = path.join(root, 'data');
    fs.mkdirSync(dir);
    fs.chmodSync(dir, 0o755);
    const base = loadConfig({ env: {}, overrides: { dataDir: dir, store: { kind: 'memory' } } });
    const { generated } = resolveSecrets(base, { dataDir: dir });
    expect(generated.length).toBeGreaterThan(0);
    expect(mode(path.join(dir, 'secrets.json'))).toBe(0o600);
    await start(dir, 'memory');
    expect(modes(dir)).toEqual({ '.': 0o700, 'secrets.json': 0o600 });
  });

  it('does not create a data directory for the memory store', async () => {
    const dir = path.join(root, 'never');
    await start(dir, 'memory');
    expect(fs.existsSync(dir)).toBe(false);
  });
});
