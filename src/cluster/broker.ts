/**
 * Delivery to peers, here and on other instances. Two seams:
 *
 * - Topics: a dialect publishes bytes on a topic; every instance subscribed to it (this
 *   one included) gets the message.
 * - Deliveries: the core runtime's `deliver` effect ("to connection X", "to group G",
 *   "to all", "reply to requester R"). Every frame meant for a connection other than the
 *   one being served goes through here, in one process too, so that a broker for cluster
 *   mode can carry the same deliveries to the instance holding the connection without a
 *   dialect knowing which broker runs.
 *
 * - Questions to every instance and closes wherever the connection is (gather.ts): the
 *   admin API's cluster-wide lists and kick. A local broker answers alone.
 *
 * Deliveries are scoped by dialect (a group "jobs" of one dialect is not another's).
 * The in-process broker (here) calls local connections directly, with no serialisation;
 * the Redis broker (redis-broker.ts, cluster mode) does the same for local connections
 * and carries the rest over Redis pub/sub.
 */
import { Gatherer, type Answerer, type CloseOrder, type CloseResult, type Closer, type Gathered, type GatherOptions } from './gather.js';

export type { Answer, Answerer, CloseOrder, CloseResult, Closer, Gathered, GatherOptions } from './gather.js';

export type BrokerHandler = (message: Buffer, topic: string) => void;

/** A connection the broker can hand a frame to (core's Connection fits). */
export interface DeliveryEndpoint {
  readonly id: string;
  send(frame: string | Buffer): boolean;
  /** Closes the socket (what `closeConn` does when no closer is set; core's Connection fits). */
  close?(code: number, reason: string): void;
}

/** Who asked: the instance and connection a reply goes back to. */
export interface RequesterRef {
  readonly instance: string;
  readonly conn: string;
}

/**
 * `local`: only the connections on this instance (a dialect that carries the frame to
 * other instances itself, e.g. with what it must know there).
 */
export type DeliveryTarget =
  | { readonly to: 'conn'; readonly conn: string }
  | { readonly to: 'group'; readonly group: string; readonly except?: string; readonly local?: boolean }
  | { readonly to: 'all'; readonly except?: string; readonly local?: boolean }
  | { readonly to: 'requester'; readonly requester: RequesterRef };

/** Another instance came up (or was seen again after an outage: `up` again) or went away. */
export type PeerHandler = (instance: string, up: boolean) => void;

/**
 * Names unique across instances (cluster mode). A claim is made for one connection here
 * and is released by it, or with the instance when it leaves or is found dead.
 */
export interface NameClaims {
  /**
   * Takes `name` in `scope` for connection `conn` here: true if it was free (or its holder's
   * instance is gone, or the holder was this instance's, which the caller knows is not
   * using it), false if another connection holds it. Rejects when Redis cannot answer.
   */
  claim(scope: string, name: string, conn: string): Promise<boolean>;
  /** Frees `name` if `conn` still holds it (best effort: what fails goes with presence). */
  release(scope: string, name: string, conn: string): void;
}

export interface Broker {
  readonly kind: string;
  /** Cluster-wide name claims; absent with one process, where the caller's own map decides. */
  readonly names?: NameClaims | undefined;
  /** A stable id of this instance, used to tell local from remote deliveries. */
  readonly instanceId: string;
  /** Whether remote deliveries can go out now (for /readyz); a local broker always can. */
  readonly ready: boolean;
  /** Joins the cluster once every subscription made so far is in place (no-op locally). */
  start(): Promise<void>;
  /**
   * Other instances coming and going. A local broker has none. After an outage of its
   * own, a broker reports every live peer `up` again (what it missed meanwhile is lost).
   */
  onPeer(handler: PeerHandler): () => void;
  publish(topic: string, message: Buffer): void;
  /** Returns a function that unsubscribes. */
  subscribe(topic: string, handler: BrokerHandler): () => void;
  /** A connection of `scope` (a dialect) on this instance may now receive deliveries. */
  attach(scope: string, conn: DeliveryEndpoint): void;
  /** The connection has gone: it leaves every group of its scope too. */
  detach(scope: string, connId: string): void;
  join(scope: string, group: string, connId: string): void;
  leave(scope: string, group: string, connId: string): void;
  /** Hands `frame` to every connection `target` names; returns how many took it here. */
  deliver(scope: string, target: DeliveryTarget, frame: string | Buffer): number;
  /**
   * Asks every live instance, this one first, a question of `kind` (answered there by
   * `answer`); see gather.ts for when it resolves and what `missing` means.
   */
  gather(kind: string, question: unknown, opts?: GatherOptions): Promise<Gathered>;
  /** Answers questions of `kind` on this instance (one answerer per kind); returns a function that stops. */
  answer(kind: string, handler: Answerer): () => void;
  /**
   * Closes a connection on whichever instance holds it: this one first, then the others
   * are asked. Resolves `closed: false` with `reachable: false` when it is not here and
   * the others cannot be asked (Redis down), and with `missing` instances that did not
   * answer in time (it may be on one of them).
   */
  closeConn(connId: string, order: CloseOrder): Promise<CloseResult>;
  /**
   * How this instance closes a connection it holds when asked (the transport's kick).
   * Until set, an attached endpoint's `close(order.code, order.reason)` does.
   */
  setCloser(closer: Closer): void;
  close(): Promise<void>;
}

interface Scope {
  readonly conns: Map<string, DeliveryEndpoint>;
  readonly groups: Map<string, Set<string>>;
  /** The groups each connection is in, so detach leaves them all. */
  readonly memberOf: Map<string, Set<string>>;
}

export class LocalBroker implements Broker {
  readonly kind = 'local';
  readonly instanceId: string;
  readonly ready = true;
  readonly #subs = new Map<string, Set<BrokerHandler>>();
  readonly #scopes = new Map<string, Scope>();
  readonly #gatherer: Gatherer;

  constructor(instanceId = 'local') {
    this.instanceId = instanceId;
    // Alone: no peers to ask and nobody to hear from.
    const link = { instanceId, ready: () => true, peers: () => [], publish: () => {}, subscribe: () => () => {} };
    this.#gatherer = new Gatherer(link, (id, order) => this.closeLocal(id, order));
  }

  async start(): Promise<void> {}

  onPeer(_handler: PeerHandler): () => void {
    return () => {};
  }

  publish(topic: string, message: Buffer): void {
    const set = this.#subs.get(topic);
    if (!set) return;
    for (const h of [...set]) h(message, topic);
  }

  subscribe(topic: string, handler: BrokerHandler): () => void {
    let set = this.#subs.get(topic);
    if (!set) {
      set = new Set();
      this.#subs.set(topic, set);
    }
    set.add(handler);
    return () => {
      const s = this.#subs.get(topic);
      if (!s) return;
      s.delete(handler);
      if (s.size === 0) this.#subs.delete(topic);
    };
  }

  hasSubscribers(topic: string): boolean {
    return this.#subs.has(topic);
  }

  /** Whether `connId` is attached in `scope` here. */
  has(scope: string, connId: string): boolean {
    return this.#scopes.get(scope)?.conns.has(connId) === true;
  }

  get topicCount(): number {
    return this.#subs.size;
  }

  #scope(name: string): Scope {
    let s = this.#scopes.get(name);
    if (!s) {
      s = { conns: new Map(), groups: new Map(), memberOf: new Map() };
      this.#scopes.set(name, s);
    }
    return s;
  }

  attach(scope: string, conn: DeliveryEndpoint): void {
    this.#scope(scope).conns.set(conn.id, conn);
  }

  detach(scope: string, connId: string): void {
    const s = this.#scopes.get(scope);
    if (!s) return;
    s.conns.delete(connId);
    const groups = s.memberOf.get(connId);
    if (groups) for (const g of [...groups]) this.leave(scope, g, connId);
    if (s.conns.size === 0 && s.groups.size === 0) this.#scopes.delete(scope);
  }

  join(scope: string, group: string, connId: string): void {
    const s = this.#scope(scope);
    let members = s.groups.get(group);
    if (!members) {
      members = new Set();
      s.groups.set(group, members);
    }
    members.add(connId);
    let of = s.memberOf.get(connId);
    if (!of) {
      of = new Set();
      s.memberOf.set(connId, of);
    }
    of.add(group);
  }

  leave(scope: string, group: string, connId: string): void {
    const s = this.#scopes.get(scope);
    if (!s) return;
    const members = s.groups.get(group);
    if (members) {
      members.delete(connId);
      if (members.size === 0) s.groups.delete(group);
    }
    const of = s.memberOf.get(connId);
    if (of) {
      of.delete(group);
      if (of.size === 0) s.memberOf.delete(connId);
    }
  }

  deliver(scope: string, target: DeliveryTarget, frame: string | Buffer): number {
    const s = this.#scopes.get(scope);
    if (!s) return 0;
    switch (target.to) {
      case 'conn':
        return s.conns.get(target.conn)?.send(frame) === true ? 1 : 0;
      case 'requester':
        // One process: every requester is here.
        if (target.requester.instance !== this.instanceId) return 0;
        return s.conns.get(target.requester.conn)?.send(frame) === true ? 1 : 0;
      case 'group': {
        let n = 0;
        for (const id of s.groups.get(target.group) ?? []) {
          if (id !== target.except && s.conns.get(id)?.send(frame) === true) n++;
        }
        return n;
      }
      case 'all': {
        let n = 0;
        for (const c of s.conns.values()) if (c.id !== target.except && c.send(frame)) n++;
        return n;
      }
      default: {
        const never: never = target;
        throw new Error(`unknown delivery target ${JSON.stringify(never)}`);
      }
    }
  }

  gather(kind: string, question: unknown, opts?: GatherOptions): Promise<Gathered> {
    return this.#gatherer.gather(kind, question, opts);
  }

  answer(kind: string, handler: Answerer): () => void {
    return this.#gatherer.answer(kind, handler);
  }

  closeConn(connId: string, order: CloseOrder): Promise<CloseResult> {
    return this.#gatherer.close(connId, order);
  }

  setCloser(closer: Closer): void {
    this.#gatherer.setCloser(closer);
  }

  /** Closes an endpoint attached here (in `order.scope`, or any); false if none is or it cannot close. */
  closeLocal(connId: string, order: CloseOrder): boolean {
    const scopes = order.scope !== undefined ? [this.#scopes.get(order.scope)] : [...this.#scopes.values()];
    for (const s of scopes) {
      const conn = s?.conns.get(connId);
      if (conn?.close) {
        conn.close(order.code, order.reason);
        return true;
      }
    }
    return false;
  }

  /** Members of `group` in `scope` here. */
  groupSize(scope: string, group: string): number {
    return this.#scopes.get(scope)?.groups.get(group)?.size ?? 0;
  }

  /** The groups `connId` is in. */
  groupsOf(scope: string, connId: string): string[] {
    return [...(this.#scopes.get(scope)?.memberOf.get(connId) ?? [])];
  }

  /** Every attached connection's id, in every scope. */
  connectionIds(): string[] {
    const out: string[] = [];
    for (const s of this.#scopes.values()) out.push(...s.conns.keys());
    return out;
  }

  /** Connections attached in `scope` (for leak checks). */
  attached(scope: string): number {
    return this.#scopes.get(scope)?.conns.size ?? 0;
  }

  async close(): Promise<void> {
    this.#gatherer.stop();
    this.#subs.clear();
    this.#scopes.clear();
  }
}
