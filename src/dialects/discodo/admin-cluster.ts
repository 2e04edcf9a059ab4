import { randomUUID } from 'node:crypto';
import type { Broker } from '../../cluster/broker.js';
import type { Scheduler, Timer } from '../../core/scheduler.js';
import { CLUSTER_TOPIC, encodeClusterMsg, instanceTopic, type AdminMsg } from './cluster-wire.js';

/**
 * The discodo admin views across instances (cluster mode): `list` asks every instance up
 * for its sessions (all, or one key) on the topic `discodo:cluster` and gathers the
 * `listed` answers, for at most `timeoutMs`. Instances that did not answer in time are
 * named in `missing`. A read-only view: it changes no session, so it lives beside the
 * world rather than in it.
 */
export type View = Record<string, unknown> & { readonly key: string };

interface Ask {
  readonly waiting: Set<string>;
  readonly views: View[];
  readonly done: (r: { views: View[]; missing: string[] }) => void;
  timer: Timer | undefined;
}

export class ClusterLister {
  readonly #asks = new Map<string, Ask>();

  constructor(
    private readonly broker: Broker,
    private readonly scheduler: Scheduler,
    /** This instance's views: every session (key null) or the one with `key`. */
    private readonly local: (key: string | null) => View[],
    /** Other instances up now. */
    private readonly live: () => Iterable<string>,
    private readonly timeoutMs = 1000,
  ) {}

  /** This instance's views and every other instance's, each tagged with its `instance`. */
  list(key: string | null): Promise<{ views: View[]; missing: string[] }> {
    const here = this.broker.instanceId;
    const mine = this.local(key).map((v) => ({ ...v, instance: here }));
    const waiting = new Set(this.live());
    if (waiting.size === 0) return Promise.resolve({ views: mine, missing: [] });
    const id = randomUUID();
    return new Promise((resolve) => {
      const ask: Ask = { waiting, views: mine, done: resolve, timer: undefined };
      this.#asks.set(id, ask);
      ask.timer = this.scheduler.after(this.timeoutMs, () => this.#finish(id));
      this.broker.publish(CLUSTER_TOPIC, encodeClusterMsg(here, { t: 'list', id, key }));
    });
  }

  /** A `list` or `listed` from another instance. */
  onMessage(from: string, msg: AdminMsg): void {
    if (msg.t === 'list') {
      const sessions = this.local(msg.key);
      this.broker.publish(instanceTopic(from), encodeClusterMsg(this.broker.instanceId, { t: 'listed', id: msg.id, sessions }));
      return;
    }
    const ask = this.#asks.get(msg.id);
    if (!ask || !ask.waiting.delete(from)) return;
    for (const v of msg.sessions) ask.views.push({ ...(v as View), instance: from });
    if (ask.waiting.size === 0) this.#finish(msg.id);
  }

  /** An instance went away: nobody waits for it. */
  onPeerGone(instance: string): void {
    for (const [id, ask] of [...this.#asks]) if (ask.waiting.delete(instance) && ask.waiting.size === 0) this.#finish(id);
  }

  #finish(id: string): void {
    const ask = this.#asks.get(id);
    if (!ask) return;
    this.#asks.delete(id);
    ask.timer?.cancel();
    ask.done({ views: ask.views, missing: [...ask.waiting].sort() });
  }

  /** Answers every ask still open with what it has (the server stops). */
  stop(): void {
    for (const id of [...this.#asks.keys()]) this.#finish(id);
  }
}
