/** The Redis broker's messages: what each channel carries, a message's header line, and batches. */
import type { LocalBroker } from './broker.js';

export type Sub =
  | { readonly kind: 'inst' }
  | { readonly kind: 'grp'; readonly scope: string; readonly group: string }
  | { readonly kind: 'all'; readonly scope: string }
  | { readonly kind: 'topic'; readonly topic: string };

/** A message's header: origin instance, scope, connection, except, binary frame. */
export interface Header {
  readonly o: string;
  readonly s?: string;
  readonly c?: string;
  readonly x?: string;
  readonly b?: 1;
}

export interface Out {
  channel: string | undefined;
  readonly conn?: string;
  readonly payload: Buffer;
}

/** A message: the JSON header, a newline, and the frame's bytes as they were. */
export function pack(h: Header, frame: string | Buffer): Buffer {
  const head = Buffer.from(`${JSON.stringify(h)}\n`);
  return Buffer.concat([head, typeof frame === 'string' ? Buffer.from(frame) : frame]);
}

/**
 * Hands a message from another instance (on a channel this instance hears, `sub`) to
 * the connections or subscribers here; false if it is not for them.
 */
export function handOut(local: LocalBroker, self: string, sub: Sub, message: Buffer): boolean {
  const nl = message.indexOf(0x0a);
  if (nl < 0) return false;
  let h: Header;
  try {
    h = JSON.parse(message.subarray(0, nl).toString()) as Header;
  } catch {
    return false;
  }
  // What this instance published to a group, to all or on a topic went to its own
  // connections and subscribers directly.
  if (h.o === self && sub.kind !== 'inst') return false;
  const body = message.subarray(nl + 1);
  if (sub.kind === 'topic') {
    local.publish(sub.topic, body);
    return true;
  }
  const frame = h.b === 1 ? body : body.toString();
  const except = h.x !== undefined ? { except: h.x } : {};
  switch (sub.kind) {
    case 'inst':
      if (h.s !== undefined && h.c !== undefined) local.deliver(h.s, { to: 'conn', conn: h.c }, frame);
      return true;
    case 'grp':
      local.deliver(sub.scope, { to: 'group', group: sub.group, ...except }, frame);
      return true;
    case 'all':
      local.deliver(sub.scope, { to: 'all', ...except }, frame);
      return true;
    default: {
      const never: never = sub;
      throw new Error(`unknown channel kind ${JSON.stringify(never)}`);
    }
  }
}

/**
 * Batches: several messages for one channel in one `PUBLISH`. A message alone is sent as
 * it is (it starts with `{`); a batch is each message as `$<length>\n<message>`, one after
 * the other (`$` never starts a message). Instances of one version only: an older one
 * drops a batch as a message it cannot read.
 */
const DOLLAR = 0x24;
const NL = 0x0a;

/** The most bytes one batch carries (a bigger message goes alone). */
export const BATCH_BYTES = 64 * 1024;

export function packBatch(messages: readonly Buffer[], bytes: number): Buffer {
  if (messages.length === 1) return messages[0] as Buffer;
  const out = Buffer.allocUnsafe(bytes + messages.length * 12);
  let at = 0;
  for (const m of messages) {
    out[at++] = DOLLAR;
    at += out.write(String(m.length), at, 'latin1');
    out[at++] = NL;
    at += m.copy(out, at);
  }
  return out.subarray(0, at);
}

/**
 * Calls `each` with every message of `payload` (a batch or a message alone), in order. A
 * batch that does not parse ends at its first bad entry.
 */
export function unpackBatch(payload: Buffer, each: (message: Buffer) => void): void {
  if (payload[0] !== DOLLAR) return each(payload);
  let at = 0;
  while (at < payload.length && payload[at] === DOLLAR) {
    let len = 0;
    let i = at + 1;
    for (; i < payload.length; i++) {
      const c = payload[i] as number;
      if (c === NL) break;
      if (c < 0x30 || c > 0x39) return;
      len = len * 10 + (c - 0x30);
    }
    const start = i + 1;
    if (i === at + 1 || start + len > payload.length) return;
    each(payload.subarray(start, start + len));
    at = start + len;
  }
}

/**
 * What goes out in this event-loop turn, kept in order as runs of one channel; flushed
 * once the turn's I/O is handled (`setImmediate`), each run as one `PUBLISH` (a batch).
 * Only consecutive messages share a run, so the publishes keep the order they were sent in.
 */
export class Outbox {
  readonly #publish: (channel: string, payload: Buffer, messages: number) => void;
  #runs: Array<{ readonly channel: string; readonly messages: Buffer[]; bytes: number }> = [];
  #scheduled = false;
  #flushed: Array<() => void> = [];

  constructor(publish: (channel: string, payload: Buffer, messages: number) => void) {
    this.#publish = publish;
  }

  add(channel: string, message: Buffer): void {
    const last = this.#runs[this.#runs.length - 1];
    if (last !== undefined && last.channel === channel && last.bytes + message.length <= BATCH_BYTES) {
      last.messages.push(message);
      last.bytes += message.length;
    } else this.#runs.push({ channel, messages: [message], bytes: message.length });
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Resolves once what was added so far has been handed to `publish`. */
  whenFlushed(): Promise<void> {
    if (this.#runs.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#flushed.push(resolve));
  }

  readonly flush = (): void => {
    this.#scheduled = false;
    const runs = this.#runs;
    this.#runs = [];
    for (const r of runs) this.#publish(r.channel, packBatch(r.messages, r.bytes), r.messages.length);
    for (const resolve of this.#flushed.splice(0)) resolve();
  };
}
