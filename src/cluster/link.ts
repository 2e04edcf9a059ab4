import type { Broker } from './broker.js';

/**
 * A dialect's link to the same dialect on the other instances (cluster mode): one topic
 * every instance hears (`<topic>`) and one per instance (`<topic>:<instance id>`), the
 * dialect's own message codec, and the instances coming and going. What an instance
 * publishes to everyone comes back to it too; the link drops it, so the handlers see only
 * the others' messages. On one process (a local broker) nobody else is there: nothing
 * arrives and nothing needs to be published.
 */
export interface LinkCodec<M> {
  /** The topic every instance hears; `<topic>:<id>` is one instance's own. */
  readonly topic: string;
  encode(from: string, msg: M): Buffer;
  /** undefined for a message that is not well formed (dropped). */
  decode(buf: Buffer): { from: string; msg: M } | undefined;
}

export interface LinkHandlers<M> {
  /** A message from another instance. */
  remote(from: string, msg: M): void;
  /** Another instance came up (`up`) or went away. */
  peer(instance: string, up: boolean): void;
}

export class ClusterLink<M> {
  readonly #broker: Broker;
  readonly #codec: LinkCodec<M>;
  readonly #unhook: Array<() => void>;
  #stopped = false;

  constructor(broker: Broker, codec: LinkCodec<M>, handlers: LinkHandlers<M>) {
    this.#broker = broker;
    this.#codec = codec;
    const here = broker.instanceId;
    const heard = (buf: Buffer): void => {
      if (this.#stopped) return;
      const d = codec.decode(buf);
      if (d && d.from !== here) handlers.remote(d.from, d.msg);
    };
    this.#unhook = [
      broker.subscribe(codec.topic, heard),
      broker.subscribe(`${codec.topic}:${here}`, heard),
      broker.onPeer((instance, up) => {
        if (!this.#stopped) handlers.peer(instance, up);
      }),
    ];
  }

  /** To one instance (`to`), or to every other instance (`null`). */
  publish(to: string | null, msg: M): void {
    if (this.#stopped) return;
    const b = this.#broker;
    b.publish(to === null ? this.#codec.topic : `${this.#codec.topic}:${to}`, this.#codec.encode(b.instanceId, msg));
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const u of this.#unhook) u();
  }
}
