import type { Leadership } from '../../src/cluster/leadership.js';
import type { FencedStore } from '../../src/store/types.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { JsonValue } from '../../src/store/types.js';

/**
 * A leadership a test drives by hand: `elect(token)` and `depose()` stand for the lease
 * being won and lost (the lease module itself is tested on its own).
 */
export class HandLeadership implements Leadership {
  #leader = false;
  #token: number | undefined;
  readonly #cbs = new Set<(isLeader: boolean, token: number | undefined) => void>();

  get isLeader(): boolean {
    return this.#leader;
  }

  get token(): number | undefined {
    return this.#token;
  }

  onChange(cb: (isLeader: boolean, token: number | undefined) => void): () => void {
    this.#cbs.add(cb);
    return () => this.#cbs.delete(cb);
  }

  elect(token: number): void {
    this.#leader = true;
    this.#token = token;
    for (const cb of [...this.#cbs]) cb(true, token);
  }

  depose(): void {
    if (!this.#leader) return;
    this.#leader = false;
    this.#token = undefined;
    for (const cb of [...this.#cbs]) cb(false, undefined);
  }
}

/**
 * A memory store with the lease's fencing: `issue()` is the INCR of a new election, and
 * `fencedSet` writes only with the newest token issued (checked and written in one step).
 */
export class FencedMemoryStore extends MemoryStore implements FencedStore {
  fence = 0;
  refused = 0;

  issue(): number {
    return ++this.fence;
  }

  override fencedSet(ns: string, key: string, value: JsonValue, token: number): Promise<boolean> {
    if (token < this.fence) {
      this.refused++;
      return Promise.resolve(false);
    }
    return this.set(ns, key, value).then(() => true);
  }
}
