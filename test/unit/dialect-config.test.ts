import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { GeneratedKey } from '../../src/config/builders.js';
import { CLUSTERIO_LIMITS } from '../../src/config/dialects/clusterio.js';
import { DISCODO_LIMITS } from '../../src/config/dialects/discodo.js';
import { GAMELIST_LIMITS } from '../../src/config/dialects/gamelist.js';
import { SHARDING_LIMITS } from '../../src/config/dialects/sharding.js';
import { defaultConfig, resolveSecrets } from '../../src/config/index.js';
import { MusterConfigSchema } from '../../src/config/schema.js';
import { ManualClock } from '../../src/core/clock.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { LocalBroker } from '../../src/cluster/broker.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { Dialect, DialectContext } from '../../src/core/dialect.js';
import { DIALECTS, buildDialects, dialectSecrets } from '../../src/dialects/index.js';

/** Each dialect's config section, as the registry hands it to the dialect (issue #12). */
describe('dialect config sections', () => {
  it('the secrets a dialect reloads on SIGHUP are its section keys the schema marks secret', () => {
    const c = defaultConfig();
    c.dialects.sharding.authorization = 'a';
    c.dialects.sharding.botToken = 'b';
    c.dialects.clusterio.authSecret = 'c';
    c.dialects.bus.token = 'd';
    c.dialects.discodo.password = 'e';
    c.dialects.gamelist.regTokens = ['f'];
    expect(dialectSecrets(c, 'sharding')).toStrictEqual({ authorization: 'a', botToken: 'b' });
    expect(dialectSecrets(c, 'clusterio')).toStrictEqual({ authSecret: 'c' });
    expect(dialectSecrets(c, 'bus')).toStrictEqual({ token: 'd' });
    expect(dialectSecrets(c, 'discodo')).toStrictEqual({ password: 'e' });
    expect(dialectSecrets(c, 'gamelist')).toStrictEqual({ regTokens: ['f'] });
    expect(dialectSecrets(c, 'nonesuch')).toStrictEqual({});
    expect(dialectSecrets(c, 'constructor')).toStrictEqual({});
  });

  it('a dialect is not built before its generated secrets are resolved', () => {
    const c = defaultConfig();
    const clock = new ManualClock(0);
    const ctx = {
      scheduler: new Scheduler(clock),
      store: new MemoryStore({ now: () => clock.now() }),
      broker: new LocalBroker(),
      logger: pino({ level: 'silent' }),
      registry: new Registry(),
    } as unknown as DialectContext;
    const deps = { secretEquals: (a: string, b: string) => a === b };
    const missing: Record<string, string> = {
      sharding: 'authorization',
      clusterio: 'authSecret',
      bus: 'token',
      discodo: 'password',
      gamelist: 'regTokens',
    };
    for (const f of DIALECTS) {
      expect(() => f.build(c.dialects[f.name], ctx, deps)).toThrow(`${f.name}: ${missing[f.name]} must be resolved before start`);
    }
  });
});

describe('dialect config: secrets and limits in the section files', () => {
  it('resolveSecrets fills exactly the keys the schema marks generated', () => {
    const marked: string[] = [];
    const walk = (schema: Record<string, unknown>, key: string): void => {
      if (schema[GeneratedKey] === true) marked.push(key);
      const props = schema['properties'] as Record<string, Record<string, unknown>> | undefined;
      for (const [k, v] of Object.entries(props ?? {})) walk(v, key ? `${key}.${k}` : k);
    };
    walk(MusterConfigSchema as unknown as Record<string, unknown>, '');
    expect(marked).toStrictEqual([
      'admin.token',
      'dialects.sharding.authorization',
      'dialects.clusterio.authSecret',
      'dialects.bus.token',
      'dialects.discodo.password',
      'dialects.gamelist.regTokens',
    ]);
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-dcfg-'));
    try {
      // in schema order, which is the order the start-up banner lists them in
      expect(resolveSecrets(defaultConfig(), { dataDir }).generated.map((g) => g.key)).toStrictEqual(marked);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('each dialect is built with the limits of its section file', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-dcfg-'));
    const clock = new ManualClock(0);
    const scheduler = new Scheduler(clock);
    const ctx = {
      scheduler,
      store: new MemoryStore({ now: () => clock.now() }),
      broker: new LocalBroker(),
      logger: pino({ level: 'silent' }),
      registry: new Registry(),
    } as unknown as DialectContext;
    const dialects: Dialect[] = [];
    try {
      const c = resolveSecrets(defaultConfig(), { dataDir }).config;
      c.dialects.bus.maxBufferedBytes = 123_456;
      dialects.push(...buildDialects(c, ctx, { secretEquals: (a, b) => a === b }));
      const limit = (name: string): number | undefined => dialects.find((d) => d.name === name)?.maxBufferedBytes;
      expect(limit('bus')).toBe(123_456);
      expect(limit('sharding')).toBe(SHARDING_LIMITS.maxBufferedBytes);
      expect(limit('clusterio')).toBe(CLUSTERIO_LIMITS.maxBufferedBytes);
      expect(limit('discodo')).toBe(DISCODO_LIMITS.maxBufferedBytes);
      expect(limit('gamelist')).toBe(GAMELIST_LIMITS.maxBufferedBytes);
    } finally {
      for (const d of dialects) await d.stop?.();
      scheduler.clear();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
