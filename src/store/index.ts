/**
 * The persistence layer: pick a Store implementation from configuration.
 */
import { MemoryStore } from './memory.js';
import { SqliteStore } from './sqlite.js';
import type { Store } from './types.js';

export type { JsonValue, SetOptions, Store } from './types.js';
export { MemoryStore, type MemoryStoreOptions } from './memory.js';
export { SqliteStore, SQLITE_FILE_NAME, type SqliteStoreOptions } from './sqlite.js';

export type StoreKind = 'memory' | 'sqlite';

export interface CreateStoreOptions {
  kind: StoreKind;
  /** Where file-backed stores keep their data; the sqlite store uses `<dataDir>/muster.db`. */
  dataDir: string;
  /** Milliseconds since the epoch, for TTLs. Defaults to Date.now. */
  now?: (() => number) | undefined;
}

export function createStore(opts: CreateStoreOptions): Store {
  switch (opts.kind) {
    case 'memory':
      return new MemoryStore({ now: opts.now });
    case 'sqlite':
      return SqliteStore.open(opts.dataDir, { now: opts.now });
    // TODO(redis): a 'redis' kind is planned. Add it to StoreKind and a case here; the
    // implementation must pass test/unit/store.contract.ts like the others.
    default: {
      // The configuration may come from an untyped source, so guard at runtime too.
      const kind: never = opts.kind;
      throw new Error(`Unknown store kind ${JSON.stringify(kind)}; expected "memory" or "sqlite"`);
    }
  }
}
