import { loadConfig } from '../../src/config/load.js';
import type { MusterConfig } from '../../src/config/schema.js';
import type { ShardingDialectConfig } from '../../src/dialects/sharding/dialect.js';
import type { MachineConfig } from '../../src/dialects/sharding/machine.js';

/** The fleet settings the sharding tests start from: 16 shards, one identify at a time, no CONTROLs expected. */
export const MACHINE_CONFIG: MachineConfig = {
  botToken: 'tok',
  shardCount: 16,
  maxConcurrency: 1,
  heartbeatInterval: 30_000,
  heartbeatGrace: 15_000,
  reconnectWindow: 30_000,
  startupDelay: 45_000,
  expectedControls: 0,
  redundancy: 0,
  startup: 'sequential',
  connectTimeout: 120_000,
  identifyWindow: 5_000,
  sessionStartLimit: 1000,
  fenceMargin: 5_000,
  identifyTimeout: 10_000,
};

/** A sharding dialect's config on /sharding with the key `key`: MACHINE_CONFIG with the given changes. */
export function dialectConfig(over: Partial<ShardingDialectConfig> = {}): ShardingDialectConfig {
  return { path: '/sharding', authorization: 'key', ...MACHINE_CONFIG, ...over };
}

/**
 * A server config with only the sharding dialect on (`sharding` its settings, beside
 * `enabled: true`): 127.0.0.1:`port` (0: any), the `top` keys, a memory store unless
 * `top` names one, the admin token, silent logs, a 2 s shutdown.
 */
export function shardingOnlyConfig(sharding: Record<string, unknown>, o: { adminToken: string; port?: number | undefined; top?: Record<string, unknown> | undefined }): MusterConfig {
  return loadConfig({
    env: {},
    overrides: {
      ...o.top,
      listen: { host: '127.0.0.1', port: o.port ?? 0 },
      store: o.top?.store ?? { kind: 'memory' },
      admin: { token: o.adminToken },
      log: { level: 'silent' },
      shutdownTimeout: 2000,
      dialects: {
        bus: { enabled: false },
        clusterio: { enabled: false },
        discodo: { enabled: false },
        gamelist: { enabled: false },
        sharding: { enabled: true, ...sharding },
      },
    } as never,
  });
}
