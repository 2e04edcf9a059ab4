import { isFencedStore } from '../store/index.js';
import type { JsonValue, SetOptions, Store } from '../store/types.js';

/**
 * Who runs a singleton job (the sharding orchestrator) among several instances, as the
 * job sees it. The lease (a Redis key held with SET NX PX, renewed before it ends, with
 * a fencing token from INCR) implements this in cluster mode; one process is always the
 * leader (`SoloLeadership`).
 *
 * Promises an implementation keeps:
 * - `isLeader` turns false, and `onChange` is called, before the lease could have ended
 *   (the lease module keeps a margin for clock drift and a slow renew);
 * - every election has a token greater than every earlier election's, on every instance.
 */
export interface Leadership {
  readonly isLeader: boolean;
  /** The fencing token of the current term; `undefined` while not the leader. */
  readonly token: number | undefined;
  /** Called on every change (elected with a token, or deposed); returns a function that unsubscribes. */
  onChange(cb: (isLeader: boolean, token: number | undefined) => void): () => void;
}

/** One process: the leader from the start, for good, with token 0. */
export class SoloLeadership implements Leadership {
  readonly isLeader = true;
  readonly token = 0;
  onChange(): () => void {
    return () => undefined;
  }
}

/** A write refused because a newer leader holds the lease. */
export class FencedOutError extends Error {
  constructor(
    readonly key: string,
    readonly token: number,
  ) {
    super(`write of "${key}" refused: fencing token ${token} is stale (a newer leader holds the lease)`);
    this.name = 'FencedOutError';
  }
}

/**
 * The store as one leader term writes it: every `set` is a fenced write with the term's
 * token (plain `set` on a store without fencing). A refused write calls `onFenced` before
 * its promise rejects, so that whatever waits on the write sees the term already ended.
 * Reads and the other calls go to the store as they are.
 */
export function fencedStore(store: Store, token: number, onFenced: () => void): Store {
  if (!isFencedStore(store)) return store;
  const set = async (ns: string, key: string, value: JsonValue, opts?: SetOptions): Promise<void> => {
    const ok = await store.fencedSet(ns, key, value, token, opts);
    if (ok) return;
    onFenced();
    throw new FencedOutError(key, token);
  };
  return {
    kind: store.kind,
    get: (ns, key) => store.get(ns, key),
    set,
    delete: (ns, key) => store.delete(ns, key),
    list: (ns) => store.list(ns),
    incr: (ns, key, delta, opts) => store.incr(ns, key, delta, opts),
    compareAndSet: (ns, key, expected, value, opts) => store.compareAndSet(ns, key, expected, value, opts),
    ping: () => store.ping(),
    flush: () => store.flush(),
    close: () => store.close(),
  };
}
