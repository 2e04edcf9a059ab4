import { randomUUID } from 'node:crypto';
import type { Scheduler, Timer } from './scheduler.js';

/**
 * Resumable sessions, keyed by whatever the dialect chooses (a CONTROL's name, a
 * slave id, a discodo user). A session outlives its socket for a resume window.
 * Outbound frames are numbered and kept until the peer acknowledges them, so a
 * resumed peer can be sent what it missed. When the window passes the session
 * expires and `onExpire` runs.
 */
export interface OutboundFrame {
  readonly seq: number;
  readonly frame: Buffer | string;
}

export class Session<S, A = unknown> {
  readonly key: string;
  readonly id: string;
  state: S;
  /** What the session is attached to (usually a Connection); undefined while detached. */
  attached: A | undefined;
  detachedAt: number | undefined;
  /** Sequence number of the last frame queued by the server. */
  seq = 0;
  /** Highest sequence the peer has acknowledged. */
  acked = 0;
  /** Set when the outbound buffer overflowed: the session can no longer be resumed losslessly. */
  overflowed = false;
  readonly #buffer: OutboundFrame[] = [];
  #bufferedBytes = 0;
  /** @internal */
  _timer: Timer | undefined;

  constructor(key: string, id: string, state: S) {
    this.key = key;
    this.id = id;
    this.state = state;
    this.attached = undefined;
    this.detachedAt = undefined;
  }

  /** Numbers a frame and keeps it until acknowledged. Returns its sequence number. */
  push(frame: Buffer | string, maxBytes: number): number {
    const seq = ++this.seq;
    const len = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.length;
    if (this.#bufferedBytes + len > maxBytes) {
      this.overflowed = true;
      return seq;
    }
    this.#buffer.push({ seq, frame });
    this.#bufferedBytes += len;
    return seq;
  }

  /** Drops every frame up to and including `seq`. */
  ack(seq: number): void {
    if (seq <= this.acked) return;
    this.acked = Math.min(seq, this.seq);
    while (this.#buffer.length > 0 && (this.#buffer[0] as OutboundFrame).seq <= this.acked) {
      const f = this.#buffer.shift() as OutboundFrame;
      this.#bufferedBytes -= typeof f.frame === 'string' ? Buffer.byteLength(f.frame) : f.frame.length;
    }
  }

  /** Frames after `seq` that are still buffered, in order. */
  since(seq: number): OutboundFrame[] {
    return this.#buffer.filter((f) => f.seq > seq);
  }

  get bufferedFrames(): number {
    return this.#buffer.length;
  }

  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }
}

export interface SessionOptions<S, A> {
  scheduler: Scheduler;
  /** How long a detached session waits for its peer. */
  resumeWindowMs: number;
  /** Largest outbound backlog kept per session. */
  maxBufferedBytes?: number;
  onExpire?: (session: Session<S, A>) => void;
  newId?: () => string;
}

export class SessionManager<S, A = unknown> {
  readonly #byKey = new Map<string, Session<S, A>>();
  readonly #byId = new Map<string, Session<S, A>>();
  readonly #opts: SessionOptions<S, A>;
  resumeWindowMs: number;
  readonly maxBufferedBytes: number;

  constructor(opts: SessionOptions<S, A>) {
    this.#opts = opts;
    this.resumeWindowMs = opts.resumeWindowMs;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 1 << 20;
  }

  get size(): number {
    return this.#byKey.size;
  }

  get(key: string): Session<S, A> | undefined {
    return this.#byKey.get(key);
  }

  byId(id: string): Session<S, A> | undefined {
    return this.#byId.get(id);
  }

  values(): IterableIterator<Session<S, A>> {
    return this.#byKey.values();
  }

  /** Creates a session attached to `to`. An existing session with the key is ended first. */
  create(key: string, state: S, to: A): Session<S, A> {
    const old = this.#byKey.get(key);
    if (old) this.end(old);
    const id = this.#opts.newId ? this.#opts.newId() : randomUUID();
    const s = new Session<S, A>(key, id, state);
    s.attached = to;
    this.#byKey.set(key, s);
    this.#byId.set(id, s);
    return s;
  }

  /** The peer went away: start the resume window. */
  detach(session: Session<S, A>): void {
    if (this.#byKey.get(session.key) !== session) return;
    session.attached = undefined;
    session.detachedAt = this.#opts.scheduler.now();
    session._timer?.cancel();
    session._timer = this.#opts.scheduler.after(this.resumeWindowMs, () => {
      if (this.#byKey.get(session.key) !== session || session.attached !== undefined) return;
      this.#remove(session);
      this.#opts.onExpire?.(session);
    });
  }

  /** The peer came back within the window: cancel the expiry and attach. */
  resume(session: Session<S, A>, to: A): void {
    session._timer?.cancel();
    session._timer = undefined;
    session.attached = to;
    session.detachedAt = undefined;
  }

  /** Ends a session now, without calling onExpire. */
  end(session: Session<S, A>): void {
    if (this.#byKey.get(session.key) !== session) return;
    this.#remove(session);
  }

  clear(): void {
    for (const s of [...this.#byKey.values()]) this.#remove(s);
  }

  #remove(session: Session<S, A>): void {
    session._timer?.cancel();
    session._timer = undefined;
    this.#byKey.delete(session.key);
    this.#byId.delete(session.id);
  }
}
