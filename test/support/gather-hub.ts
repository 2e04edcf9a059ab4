import { LocalBroker, type Broker } from '../../src/cluster/broker.js';
import { Gatherer, type After, type GatherLink } from '../../src/cluster/gather.js';

/**
 * Gathers without Redis: instances on an in-memory hub (topics delivered on a microtask,
 * like messages over a wire) with a manual timer, so "did not answer in time" needs no
 * real wait. `deaf` instances hear nothing (they never answer).
 */

/** In-memory instances on one hub. */
export class Hub {
  readonly subs = new Map<string, Set<{ inst: string; h: (m: Buffer) => void }>>();
  readonly down = new Set<string>();
  readonly deaf = new Set<string>();
  ready = true;
  timers: Array<{ fn: () => void; cancelled: boolean }> = [];
  readonly after: After = (_ms, fn) => {
    const t = { fn, cancelled: false };
    this.timers.push(t);
    return () => (t.cancelled = true);
  };

  link(inst: string, peers: () => string[]): GatherLink {
    return {
      instanceId: inst,
      ready: () => this.ready,
      peers,
      publish: (topic, m) => {
        for (const s of this.subs.get(topic) ?? []) if (!this.deaf.has(s.inst)) queueMicrotask(() => s.h(m));
      },
      subscribe: (topic, h) => {
        const set = this.subs.get(topic) ?? new Set();
        this.subs.set(topic, set);
        const s = { inst, h };
        set.add(s);
        return () => set.delete(s);
      },
    };
  }

  /** Fires every pending timer (time passes). */
  fire(): void {
    for (const t of this.timers.splice(0)) if (!t.cancelled) t.fn();
  }
}

/**
 * A broker for a dialect under test in "cluster mode": a LocalBroker for everything but
 * gather and answer, which go over the hub to the instances `peers()` names.
 */
export function hubBroker(hub: Hub, id: string, peers: () => string[]): Broker {
  const local = new LocalBroker(id);
  const g = new Gatherer(hub.link(id, peers), () => false, hub.after);
  return new Proxy(local, {
    get(target, prop) {
      if (prop === 'kind') return 'hub';
      if (prop === 'gather') return g.gather.bind(g);
      if (prop === 'answer') return g.answer.bind(g);
      const v: unknown = Reflect.get(target, prop);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Broker;
}
