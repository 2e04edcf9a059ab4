/**
 * What must survive a restart: shard assignments and the fleet's halt state,
 * Clusterio slaves and instances, the identify budget. Values are JSON. Keys live in
 * namespaces ("sharding", "clusterio:slaves", ...). Liveness state stays in memory.
 *
 * Every implementation passes the same contract suite (test/unit/store.contract.ts).
 *
 * Two promises every implementation keeps, and callers rely on:
 * - Order: writes take effect in the order they are called. A call made before another
 *   is applied before it, even when the caller did not wait for the first promise, so a
 *   caller may issue a write and send something else before awaiting it.
 * - Durability: when a write's promise resolves, the write survives the process being
 *   killed (kill -9). Anything that tells a peer or an operator "done" waits for that
 *   promise. (The SQLite store commits every write before its promise resolves; power
 *   loss is a separate matter, see sqlite.ts and flush().)
 */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

export interface SetOptions {
  /** Expire the key this many milliseconds after the write. */
  ttlMs?: number;
}

export interface Store {
  readonly kind: string;
  get<T extends JsonValue = JsonValue>(ns: string, key: string): Promise<T | undefined>;
  set(ns: string, key: string, value: JsonValue, opts?: SetOptions): Promise<void>;
  /** Returns whether the key existed. */
  delete(ns: string, key: string): Promise<boolean>;
  /** Every live key and value in a namespace, sorted by key. */
  list<T extends JsonValue = JsonValue>(ns: string): Promise<Array<[string, T]>>;
  /** Atomically adds `delta` to a numeric value (missing counts as 0) and returns the result. */
  incr(ns: string, key: string, delta?: number, opts?: SetOptions): Promise<number>;
  /**
   * Atomically writes `value` only if the current value equals `expected`
   * (`undefined` meaning absent). Returns whether it wrote.
   */
  compareAndSet(ns: string, key: string, expected: JsonValue | undefined, value: JsonValue, opts?: SetOptions): Promise<boolean>;
  /** Resolves once the backing store answers (readiness). */
  ping(): Promise<void>;
  /**
   * Makes every write so far survive power loss too, not only a crash of the process
   * (the SQLite store checkpoints its WAL with fsync). Called on shutdown.
   */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Writes guarded by a fencing token (cluster/lease.ts). A leader writes with the token
 * it was elected with; the write is refused (resolves false) once a newer leader of the
 * namespace holds a newer token, so a leader that was paused past its lease cannot
 * overwrite its successor's writes. In one process there is one leader, always: the
 * memory and SQLite stores write unconditionally.
 */
export interface FencedStore {
  /** Writes `value` if `token` is the namespace's current fencing token; returns whether it wrote. */
  fencedSet(ns: string, key: string, value: JsonValue, token: number, opts?: SetOptions): Promise<boolean>;
}
