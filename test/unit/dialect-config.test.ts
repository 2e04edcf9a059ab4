import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/index.js';
import { ManualClock } from '../../src/core/clock.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { LocalBroker } from '../../src/cluster/broker.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { DialectContext } from '../../src/core/dialect.js';
import { DIALECTS, dialectSecrets } from '../../src/dialects/index.js';

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
