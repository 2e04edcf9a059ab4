/**
 * The config of the Redis store (`store: {kind: redis, ...}`) and of the instance id:
 * keys, what is a secret, what goes together, and the id kept in the data directory.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { INSTANCE_ID_FILE, generateInstanceId, loadConfig, resolveInstanceId, type MusterConfig, type MusterConfigInput } from '../../src/config/index.js';
import { renderBanner } from '../../src/cli/startup.js';
import { renderStatus } from '../../src/cli/status.js';
import { redisSecrets, redisStoreOptions } from '../../src/store/from-config.js';
import { configError } from '../support/config-error.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-store-cfg-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const load = (overrides: unknown): MusterConfig => loadConfig({ env: {}, overrides: overrides as MusterConfigInput });

describe('store: redis', () => {
  it('takes a URL, Sentinel or a Cluster, credentials and durability waits', () => {
    expect(load({ store: { kind: 'redis', url: 'rediss://u:p@db:6380/1', prefix: 'm:' } }).store).toStrictEqual({ kind: 'redis', url: 'rediss://u:p@db:6380/1', prefix: 'm:' });
    const sentinel = load({
      store: { kind: 'redis', sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }], name: 'mymaster', password: 'pw', sentinelPassword: 'spw' },
      cluster: { redisUrl: 'redis://s1:6379' },
    }).store;
    expect(sentinel.sentinels).toStrictEqual([{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }]);
    expect(sentinel.name).toBe('mymaster');
    const cluster = load({ store: { kind: 'redis', cluster: [{ host: 'n1', port: 7000 }], username: 'muster' }, cluster: { redisUrl: 'redis://n1:7000' } }).store;
    expect(cluster.cluster).toStrictEqual([{ host: 'n1', port: 7000 }]);
    expect(load({ store: { kind: 'redis', durability: { replicas: 1 } } }).store.durability).toStrictEqual({ replicas: 1, aof: false, timeout: 1000 });
    expect(load({ store: { kind: 'redis', durability: { aof: true, timeout: '250ms' } } }).store.durability).toStrictEqual({ replicas: 0, aof: true, timeout: 250 });
  });

  it('never echoes the URL or a password in an error', () => {
    const url = configError(() => load({ store: { kind: 'redis', url: 'http://user:hunter2@db' } }));
    expect(url.key).toBe('store.url');
    expect(url.message).not.toContain('hunter2');
    expect(url.expected).toMatch(/redis:\/\//);
    const pw = configError(() => load({ store: { kind: 'redis', password: 1234567 } }));
    expect(pw.key).toBe('store.password');
    expect(pw.message).not.toContain('1234567');
  });

  it('wants one way to reach Redis, and Sentinel with the name of its primary', () => {
    expect(configError(() => load({ store: { kind: 'redis', url: 'redis://a', cluster: [{ host: 'b', port: 1 }] } })).key).toBe('store');
    const name = configError(() => load({ store: { kind: 'redis', sentinels: [{ host: 's', port: 26379 }] } }));
    expect(name.key).toBe('store.name');
    expect(configError(() => load({ store: { kind: 'redis', cluster: [{ host: 'b', port: 1 }], durability: { replicas: 1 } } })).key).toBe('store.durability');
    expect(configError(() => load({ store: { kind: 'redis', sentinels: [{ host: 's' }], name: 'm' } })).key).toBe('store.sentinels[0].port');
    expect(configError(() => load({ store: { prefix: 'a{b}' } })).key).toBe('store.prefix');
  });

  it('cluster mode: a store through Sentinel or a Cluster needs cluster.redisUrl; sharding needs the Redis store', () => {
    const sentinel = configError(() => load({ store: { kind: 'redis', sentinels: [{ host: 's', port: 26379 }], name: 'm' } }));
    expect(sentinel.key).toBe('cluster.redisUrl');
    expect(configError(() => load({ store: { kind: 'redis', cluster: [{ host: 'n', port: 7000 }] } })).key).toBe('cluster.redisUrl');
    const own = configError(() => load({ store: { kind: 'sqlite' }, cluster: { redisUrl: 'redis://r:6379' } }));
    expect(own.key).toBe('store.kind');
    expect(own.message).toMatch(/sharding/);
    // Without the sharding dialect, a broker over Redis with a store per instance is fine (the bus needs no shared store).
    expect(load({ store: { kind: 'memory' }, cluster: { redisUrl: 'redis://r:6379' }, dialects: { sharding: { enabled: false } } }).cluster.redisUrl).toBe('redis://r:6379');
  });

  it('hands the store its options, logs Redis coming and going without the password, and names the secrets to redact', () => {
    const config = load({ store: { kind: 'redis', url: 'redis://:p%40ss@db:6379', password: 'other', durability: { replicas: 2 } } });
    const lines: Array<[string, object, string]> = [];
    const opts = redisStoreOptions(config.store, { info: (o, m) => lines.push(['info', o, m]), warn: (o, m) => lines.push(['warn', o, m]) });
    expect(opts).toMatchObject({ url: 'redis://:p%40ss@db:6379', prefix: 'muster:', password: 'other', durability: { replicas: 2, aof: false, timeoutMs: 1000 } });
    opts.onStatus?.('down', new Error('connect ECONNREFUSED'));
    opts.onStatus?.('up');
    expect(lines).toStrictEqual([
      ['warn', { redis: 'redis://:***@db:6379', err: 'connect ECONNREFUSED' }, 'store: Redis unreachable; not ready until it answers (retrying)'],
      ['info', { redis: 'redis://:***@db:6379' }, 'store: Redis connected'],
    ]);
    expect(redisSecrets(config.store).sort()).toStrictEqual(['other', 'p@ss']);
    expect(redisSecrets({})).toStrictEqual([]);
  });

  it('shows where Redis is in the banner, without the password', () => {
    const config = load({ store: { kind: 'redis', url: 'redis://:hunter2@db.example:6379' }, instanceId: 'web-1' });
    const lines = renderBanner({ version: '0', base: 'http://127.0.0.1:1', dialects: [], config }).join('\n');
    expect(lines).toMatch(/store +redis \(redis:\/\/:\*\*\*@db\.example:6379, prefix "muster:"/);
    expect(lines).toMatch(/instance +web-1/);
    expect(lines).not.toContain('hunter2');
  });
});

describe('instance id', () => {
  it('is the configured one when given (and must look like an id)', () => {
    expect(load({ instanceId: 'eu-1.muster_a' }).instanceId).toBe('eu-1.muster_a');
    expect(configError(() => load({ instanceId: 'has space' })).key).toBe('instanceId');
    expect(configError(() => load({ instanceId: '-x' })).key).toBe('instanceId');
    expect(resolveInstanceId('eu-1', dir)).toStrictEqual({ id: 'eu-1', generated: false });
    expect(fs.existsSync(path.join(dir, INSTANCE_ID_FILE))).toBe(false);
  });

  it('is generated once, kept owner-only in the data directory, and read back', () => {
    const data = path.join(dir, 'data');
    const first = resolveInstanceId(undefined, data);
    expect(first.generated).toBe(true);
    expect(first.id).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);
    const file = path.join(data, INSTANCE_ID_FILE);
    expect(fs.readFileSync(file, 'utf8')).toBe(`${first.id}\n`);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    fs.chmodSync(file, 0o644);
    expect(resolveInstanceId(undefined, data)).toStrictEqual({ id: first.id, generated: false });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it('a file that holds no id is a ConfigError', () => {
    fs.writeFileSync(path.join(dir, INSTANCE_ID_FILE), 'not an id\n');
    expect(configError(() => resolveInstanceId(undefined, dir)).key).toBe(path.join(dir, INSTANCE_ID_FILE));
  });

  it('generated ids start from the host name, cleaned to what an id allows', () => {
    expect(generateInstanceId('web-3.example.com')).toMatch(/^web-3\.example\.com-[0-9a-f]{8}$/);
    expect(generateInstanceId('ünïcode host')).toMatch(/^n-code-host-[0-9a-f]{8}$/);
    expect(generateInstanceId('')).toMatch(/^[0-9a-f]{8}$/);
    expect(generateInstanceId('a'.repeat(100)).length).toBeLessThanOrEqual(64);
  });

  it('muster status shows it', () => {
    expect(renderStatus({ version: '1', uptimeSeconds: 5, store: 'redis', instanceId: 'web-1' })).toMatch(/store: redis {2}instance: web-1/);
  });
});
