import type { Connection } from './connection.js';

/**
 * Delivers frames to one connection, to a group, or to everyone in a registry.
 * The caller serializes a frame once (a Buffer) and the router hands the same bytes
 * to every receiver; writes are corked per socket within a tick by Connection.
 * A receiver over its backlog limit is cut by Connection, never waited for.
 */
export class Router<C extends Connection = Connection> {
  readonly #byId = new Map<string, C>();
  readonly #groups = new Map<string, Set<C>>();
  readonly #memberOf = new Map<C, Set<string>>();

  get size(): number {
    return this.#byId.size;
  }

  add(conn: C, key: string = conn.id): void {
    this.#byId.set(key, conn);
  }

  get(key: string): C | undefined {
    return this.#byId.get(key);
  }

  has(key: string): boolean {
    return this.#byId.has(key);
  }

  /** Removes a connection from the registry and from every group it was in. */
  remove(conn: C, key: string = conn.id): void {
    if (this.#byId.get(key) === conn) this.#byId.delete(key);
    const groups = this.#memberOf.get(conn);
    if (groups) {
      for (const g of groups) this.leave(conn, g);
      this.#memberOf.delete(conn);
    }
  }

  join(conn: C, group: string): void {
    let set = this.#groups.get(group);
    if (!set) {
      set = new Set();
      this.#groups.set(group, set);
    }
    set.add(conn);
    let mine = this.#memberOf.get(conn);
    if (!mine) {
      mine = new Set();
      this.#memberOf.set(conn, mine);
    }
    mine.add(group);
  }

  /** Leaves a group; an empty group disappears. */
  leave(conn: C, group: string): void {
    const set = this.#groups.get(group);
    if (!set) return;
    set.delete(conn);
    if (set.size === 0) this.#groups.delete(group);
    this.#memberOf.get(conn)?.delete(group);
  }

  members(group: string): ReadonlySet<C> {
    return this.#groups.get(group) ?? EMPTY;
  }

  groupsOf(conn: C): ReadonlySet<string> {
    return this.#memberOf.get(conn) ?? EMPTY_STR;
  }

  groups(): IterableIterator<[string, ReadonlySet<C>]> {
    return this.#groups.entries();
  }

  all(): IterableIterator<C> {
    return this.#byId.values();
  }

  get groupCount(): number {
    return this.#groups.size;
  }

  /** Sends to one connection. Returns whether it was queued. */
  sendTo(key: string, frame: Buffer): boolean {
    const c = this.#byId.get(key);
    return c ? c.send(frame) : false;
  }

  /**
   * Sends the same bytes to every receiver given; returns how many were queued.
   * `delivered` is told of each receiver that got it (for reply tracking).
   */
  fanout(receivers: Iterable<C>, frame: Buffer, except?: C, delivered?: (c: C) => void): number {
    let n = 0;
    for (const c of receivers) {
      if (c === except) continue;
      if (c.send(frame)) {
        n++;
        delivered?.(c);
      }
    }
    return n;
  }

  sendGroup(group: string, frame: Buffer, except?: C, delivered?: (c: C) => void): number {
    return this.fanout(this.members(group), frame, except, delivered);
  }

  broadcast(frame: Buffer, except?: C, delivered?: (c: C) => void): number {
    return this.fanout(this.#byId.values(), frame, except, delivered);
  }
}

const EMPTY: ReadonlySet<never> = new Set();
const EMPTY_STR: ReadonlySet<string> = new Set();
