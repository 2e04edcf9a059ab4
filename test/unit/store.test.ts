import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createStore, MemoryStore, RedisStore, SqliteStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/index.js';
import { haveRedisServer, startRedisServer, type RedisServer } from '../support/redis-server.js';
import { storeContract } from './store.contract.js';

let tmp: string;
let fileSeq = 0;
/** A database path no other test uses. */
const freshFile = (): string => path.join(tmp, `store-${++fileSeq}.db`);

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-store-'));
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

storeContract('MemoryStore', (now) => new MemoryStore({ now }));
storeContract('SqliteStore', (now) => new SqliteStore({ file: freshFile(), now }));

// Against the test's own redis-server (never the machine's 6379); each store gets a
// prefix of its own, so no test sees another's keys.
describe.skipIf(!haveRedisServer)('on a private redis-server', () => {
  let redis: RedisServer;
  let prefixSeq = 0;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.close();
  });
  storeContract('RedisStore', (now) => new RedisStore({ url: redis.url, prefix: `contract-${++prefixSeq}:`, now }));
});

/** Reads the file directly, bypassing the store (and its TTL filtering). */
function rawRows(file: string): Array<{ ns: string; key: string; value: string; expires_at: number | null }> {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT ns, key, value, expires_at FROM kv ORDER BY ns, key').all() as Array<{
      ns: string;
      key: string;
      value: string;
      expires_at: number | null;
    }>;
  } finally {
    db.close();
  }
}

describe('SqliteStore', () => {
  const T0 = 1_700_000_000_000;
  let t = T0;
  const now = (): number => t;
  const open: Store[] = [];
  const track = <S extends Store>(s: S): S => {
    open.push(s);
    return s;
  };

  afterEach(async () => {
    t = T0;
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  it('has kind "sqlite"', () => {
    expect(track(new SqliteStore({ file: freshFile() })).kind).toBe('sqlite');
  });

  it('puts the file in WAL mode with synchronous=NORMAL', async () => {
    const file = freshFile();
    const store = track(new SqliteStore({ file }));
    await store.set('ns', 'k', 1);
    // WAL is persistent: a second connection to the file sees it too.
    const db = new Database(file);
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      db.close();
    }
    expect(fs.existsSync(`${file}-wal`)).toBe(true);
  });

  it('stores values as JSON text in the kv table', async () => {
    const file = freshFile();
    const store = track(new SqliteStore({ file, now }));
    await store.set('sharding', 'plan', { shards: [0, 1], halted: false });
    await store.set('sharding', 'ttl', 'x', { ttlMs: 500 });
    await store.incr('budget', 'identify', 3);
    expect(rawRows(file)).toStrictEqual([
      { ns: 'budget', key: 'identify', value: '3', expires_at: null },
      { ns: 'sharding', key: 'plan', value: '{"shards":[0,1],"halted":false}', expires_at: null },
      { ns: 'sharding', key: 'ttl', value: '"x"', expires_at: T0 + 500 },
    ]);
  });

  it('keeps data across close and reopen of the same file', async () => {
    const file = freshFile();
    const first = new SqliteStore({ file, now });
    await first.set('sharding', 'plan', { shards: [0, 1, 2], ключ: '🚀' });
    await first.set('ns', 'short', 'lived', { ttlMs: 1000 });
    await first.incr('budget', 'identify', 7);
    await first.close();

    const second = track(new SqliteStore({ file, now }));
    expect(await second.get('sharding', 'plan')).toStrictEqual({ shards: [0, 1, 2], ключ: '🚀' });
    expect(await second.incr('budget', 'identify')).toBe(8);
    expect(await second.get('ns', 'short')).toBe('lived');
    t += 1000; // the expiry was persisted too
    expect(await second.get('ns', 'short')).toBeUndefined();
  });

  it('open() creates the directory and muster.db', async () => {
    const dir = path.join(tmp, 'nested', 'data', 'dir');
    expect(fs.existsSync(dir)).toBe(false);
    const store = track(SqliteStore.open(dir));
    expect(store.file).toBe(path.join(dir, 'muster.db'));
    expect(fs.existsSync(path.join(dir, 'muster.db'))).toBe(true);
    await store.set('ns', 'k', 'v');
    await store.close();

    // Opening an existing directory again finds the data.
    const again = track(SqliteStore.open(dir));
    expect(await again.get('ns', 'k')).toBe('v');
  });

  it('sweep() deletes expired rows in every namespace and nothing else', async () => {
    const file = freshFile();
    const store = track(new SqliteStore({ file, now }));
    await store.set('a', 'short', 1, { ttlMs: 100 });
    await store.set('b', 'short', 2, { ttlMs: 100 });
    await store.set('a', 'long', 3, { ttlMs: 10_000 });
    await store.set('a', 'forever', 4);
    expect(await store.sweep()).toBe(0);
    expect(rawRows(file)).toHaveLength(4);

    t += 100;
    expect(await store.sweep()).toBe(2);
    expect(rawRows(file).map((r) => `${r.ns}/${r.key}`)).toStrictEqual(['a/forever', 'a/long']);
    expect(await store.sweep()).toBe(0);
  });

  it('deletes an expired row lazily when it is read', async () => {
    const file = freshFile();
    const store = track(new SqliteStore({ file, now }));
    await store.set('ns', 'gone', 1, { ttlMs: 10 });
    await store.set('ns', 'also-gone', 1, { ttlMs: 10 });
    await store.set('ns', 'stays', 2);
    t += 10;
    expect(rawRows(file)).toHaveLength(3);
    expect(await store.get('ns', 'gone')).toBeUndefined();
    expect(rawRows(file)).toHaveLength(2);
    expect(await store.list('ns')).toStrictEqual([['stays', 2]]);
    expect(rawRows(file).map((r) => r.key)).toStrictEqual(['stays']);
  });

  it('flush() checkpoints the WAL into the main file', async () => {
    const file = freshFile();
    const store = track(new SqliteStore({ file }));
    for (let i = 0; i < 50; i++) await store.set('ns', `k${i}`, 'x'.repeat(500));
    await store.flush();
    // After a checkpoint the main file alone holds the data.
    const copy = path.join(tmp, `copy-${fileSeq}.db`);
    fs.copyFileSync(file, copy);
    expect(rawRows(copy)).toHaveLength(50);
  });

  it('sweep() rejects after close', async () => {
    const store = new SqliteStore({ file: freshFile() });
    await store.close();
    await expect(store.sweep()).rejects.toThrow(/closed/);
  });
});

describe('createStore', () => {
  it('makes a MemoryStore', async () => {
    const store = createStore({ kind: 'memory', dataDir: path.join(tmp, 'unused') });
    expect(store).toBeInstanceOf(MemoryStore);
    expect(store.kind).toBe('memory');
    expect(fs.existsSync(path.join(tmp, 'unused'))).toBe(false);
    await store.close();
  });

  it('passes the clock on', async () => {
    let t = 0;
    const store = createStore({ kind: 'memory', dataDir: tmp, now: () => t });
    await store.set('ns', 'k', 1, { ttlMs: 5 });
    t = 5;
    expect(await store.get('ns', 'k')).toBeUndefined();
    await store.close();
  });

  it('makes a SqliteStore in <dataDir>/muster.db', async () => {
    const dataDir = path.join(tmp, 'create-store');
    const store = createStore({ kind: 'sqlite', dataDir });
    expect(store).toBeInstanceOf(SqliteStore);
    expect(store.kind).toBe('sqlite');
    expect(fs.existsSync(path.join(dataDir, 'muster.db'))).toBe(true);
    await store.close();
  });

  it('throws a clear error for an unknown kind', () => {
    expect(() => createStore({ kind: 'mongo' as 'memory', dataDir: tmp })).toThrow(/Unknown store kind "mongo"/);
  });
});
