/**
 * Delivery to peers on other instances. A dialect publishes on a topic; every
 * instance subscribed to it (this one included) gets the message. The in-process
 * broker is the only one for now; a Redis broker comes with cluster mode.
 */
export type BrokerHandler = (message: Buffer, topic: string) => void;

export interface Broker {
  readonly kind: string;
  publish(topic: string, message: Buffer): void;
  /** Returns a function that unsubscribes. */
  subscribe(topic: string, handler: BrokerHandler): () => void;
  close(): Promise<void>;
}

export class LocalBroker implements Broker {
  readonly kind = 'local';
  readonly #subs = new Map<string, Set<BrokerHandler>>();

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

  async close(): Promise<void> {
    this.#subs.clear();
  }
}
