/**
 * The persistence layer: pick a Store implementation from configuration.
 */
import { MemoryStore } from './memory.js';
import { RedisStore, type RedisStoreOptions } from './redis.js';
import { SqliteStore } from './sqlite.js';
import type { FencedStore, Store } from './types.js';

export type { FencedStore, JsonValue, SetOptions, Store } from './types.js';
export { MemoryStore, type MemoryStoreOptions } from './memory.js';
export { SqliteStore, SQLITE_FILE_NAME, type SqliteStoreOptions } from './sqlite.js';
export {
  DEFAULT_REDIS_PREFIX,
  DEFAULT_REDIS_URL,
  RedisStore,
  createRedisClient,
  redactRedisUrl,
  type RedisClient,
  type RedisConnectionOptions,
  type RedisDurability,
  type RedisNode,
  type RedisStoreOptions,
} from './redis.js';

export type StoreKind = 'memory' | 'sqlite' | 'redis';

export interface CreateStoreOptions {
  kind: StoreKind;
  /** Where file-backed stores keep their data; the sqlite store uses `<dataDir>/muster.db`. */
  dataDir: string;
  /** Milliseconds since the epoch, for TTLs. Defaults to Date.now. */
  now?: (() => number) | undefined;
  /** For `redis`: where it is, the key prefix, durability, status reports. */
  redis?: Omit<RedisStoreOptions, 'now'> | undefined;
}

export function createStore(opts: CreateStoreOptions): Store {
  switch (opts.kind) {
    case 'memory':
      return new MemoryStore({ now: opts.now });
    case 'sqlite':
      return SqliteStore.open(opts.dataDir, { now: opts.now });
    case 'redis':
      // Connects in the background: the store answers once Redis does (ping, /readyz).
      return new RedisStore({ ...opts.redis, now: opts.now });
    default: {
      // The configuration may come from an untyped source, so guard at runtime too.
      const kind: never = opts.kind;
      throw new Error(`Unknown store kind ${JSON.stringify(kind)}; expected "memory", "sqlite" or "redis"`);
    }
  }
}

/** Whether a store can fence writes (every store here can; a custom one may not). */
export function isFencedStore(store: Store): store is Store & FencedStore {
  return typeof (store as Partial<FencedStore>).fencedSet === 'function';
}
