import type { WebSocket } from 'ws';
import { CloseCode, type CloseCodeTable } from '../common/errors.js';
import type { GoneWhy, PeerLog } from './peer-log.js';
import type { Scheduler, Timer } from './scheduler.js';
import { isSocket, WsSocket, type Socket } from './socket.js';

export { setFrameLimit } from './socket.js';

/**
 * One peer's socket, as the core sees it: bytes out with per-tick batching and
 * backpressure, a close that always carries a code and a reason, and the bookkeeping
 * the admin API shows. It knows nothing of any dialect's frames.
 */

export interface ConnectionObserver {
  framesOut(dialect: string, n: number): void;
  framesIn(dialect: string, n: number): void;
  closed(dialect: string, code: number): void;
}

export interface ConnectionOptions {
  id: string;
  dialect: string;
  remoteAddress: string;
  scheduler: Scheduler;
  /** Bytes that may wait unsent before the receiver is treated as a slow consumer. */
  maxBufferedBytes: number;
  observer?: ConnectionObserver;
  /** The peer's lines in the log (identified, gone, frames); see peer-log.ts. */
  log?: PeerLog;
  /** The dialect's close codes: their `why` names why a peer the server closed is gone. */
  closeCodes?: CloseCodeTable;
  /**
   * The largest frame the socket layer takes before and after `markAuthenticated()`.
   * Absent: limits.maxPayload throughout.
   */
  frameLimits?: { readonly preAuth: number; readonly max: number };
  /**
   * The settings above, as one object shared by the dialect's connections (see
   * `connectionShared`); given, `dialect`, `scheduler`, `maxBufferedBytes`, `observer`,
   * `log`, `closeCodes` and `frameLimits` are read from it.
   */
  shared?: ConnectionShared;
}

/** What happens when the backlog passes maxBufferedBytes. Set by the dialect. */
export type SlowConsumerHandler = (conn: Connection) => void;

// Sockets corked in this tick, uncorked together once the tick's work is done. The
// flush is a promise reaction, not process.nextTick: it runs at the same point (when the
// callback that sent the frames returns), for about half the cost per tick (nextTick
// made an async id and a tick object per scheduling, 4% of the server's CPU in the
// bench's P1, where almost every tick carries one frame).
const corked = new Set<Connection>();
let flushQueued = false;
const RESOLVED = Promise.resolve();
function flushCorked(): void {
  flushQueued = false;
  for (const c of corked) c._uncork();
  corked.clear();
}

/** The default slow-consumer handler: one function for every connection, not a closure each. */
function closeSlowConsumer(c: Connection): void {
  c.close(CloseCode.POLICY_VIOLATION, 'slow consumer');
}

/**
 * `ms` as a small integer when it is one (V8 keeps it in the object), else as it is. The
 * difference of two timestamps is a heap number in V8's interpreter even when whole.
 */
function small(ms: number): number {
  const i = ms | 0;
  return i === ms ? i : ms;
}

/** How long a closing socket may take to drain its close frame before it is destroyed. */
export const CLOSE_DRAIN_MS = 5000;

/**
 * What every connection of one dialect shares: one object per dialect (the transport
 * makes it once, see `connectionShared`), not seven fields on each of tens of thousands
 * of idle connections.
 */
export interface ConnectionShared {
  readonly dialect: string;
  readonly scheduler: Scheduler;
  readonly maxBuffered: number;
  readonly observer: ConnectionObserver | undefined;
  readonly log: PeerLog | undefined;
  readonly closeCodes: CloseCodeTable | undefined;
  readonly frameLimits: { readonly preAuth: number; readonly max: number } | undefined;
  /**
   * When this object was made: each connection keeps its times as milliseconds after it.
   * Those are small integers, which V8 keeps in the object itself; a full timestamp
   * (about 1.8e12, past V8's small-integer range) would be a separate 16-byte number
   * per time field per connection.
   */
  readonly since: number;
}

/** The shared part of `opts` (the transport calls it once per dialect and passes it as `opts.shared`). */
export function connectionShared(opts: Omit<ConnectionOptions, 'id' | 'remoteAddress' | 'shared'>): ConnectionShared {
  return {
    dialect: opts.dialect,
    scheduler: opts.scheduler,
    maxBuffered: opts.maxBufferedBytes,
    observer: opts.observer,
    log: opts.log,
    closeCodes: opts.closeCodes,
    frameLimits: opts.frameLimits,
    since: opts.scheduler.now(),
  };
}

// Connection's yes/no state, in one number.
const CORKED = 1;
const SLOW = 2;
const CLOSING = 4;
const CLOSED = 8;
const AUTHENTICATED = 16;
const AUTH_LOGGED = 32;

/** What only a closing connection, or one with close listeners, needs (made when first needed). */
interface Rare {
  drainTimer: Timer | undefined;
  closeListeners: Array<(code: number, reason: string) => void> | undefined;
  why: GoneWhy | undefined;
  sentCode: number | undefined;
  sentReason: string;
}

export class Connection {
  readonly id: string;
  readonly remoteAddress: string;
  framesIn = 0;
  framesOut = 0;
  /** Round trip of the last answered WebSocket ping, in ms; null until one is answered. */
  latencyMs: number | null = null;
  onSlowConsumer: SlowConsumerHandler;

  readonly #ws: Socket;
  readonly #s: ConnectionShared;
  /** CORKED | SLOW | CLOSING | CLOSED | AUTHENTICATED | AUTH_LOGGED. */
  #flags = 0;
  /** Bytes handed to the socket since it opened (to tell how far the backlog has drained). */
  #written = 0;
  /** The last frame larger than the whole allowance: its length, and #written at its end. */
  #bigLen = 0;
  #bigEnd = 0;
  /** connectedAt and lastSeen, in ms after `#s.since` (see ConnectionShared). */
  readonly #at: number;
  #seen: number;
  #pingAt: number | undefined;
  #identity: string | undefined;
  #rare: Rare | undefined;

  /** On a Socket; a bare `ws` WebSocket is adapted (WsSocket). */
  constructor(ws: Socket | WebSocket, opts: ConnectionOptions) {
    this.#ws = isSocket(ws) ? ws : new WsSocket(ws);
    this.id = opts.id;
    this.remoteAddress = opts.remoteAddress;
    this.#s = opts.shared ?? connectionShared(opts);
    this.#at = small(opts.scheduler.now() - this.#s.since);
    this.#seen = this.#at;
    this.onSlowConsumer = closeSlowConsumer;
    if (this.#s.frameLimits) this.#ws.setFrameLimit(this.#s.frameLimits.preAuth);
  }

  get dialect(): string {
    return this.#s.dialect;
  }

  get connectedAt(): number {
    return this.#s.since + this.#at;
  }

  /** Last time anything arrived from the peer (frame or pong). */
  get lastSeen(): number {
    return this.#s.since + this.#seen;
  }

  #r(): Rare {
    return (this.#rare ??= { drainTimer: undefined, closeListeners: undefined, why: undefined, sentCode: undefined, sentReason: '' });
  }

  /** True once the dialect has said the peer proved who it is. */
  get authenticated(): boolean {
    return (this.#flags & AUTHENTICATED) !== 0;
  }

  /** The peer has authenticated: from now on the socket layer takes frames up to limits.maxPayload. */
  markAuthenticated(): void {
    if (this.#flags & AUTHENTICATED) return;
    this.#flags |= AUTHENTICATED;
    if (this.#s.frameLimits) this.#ws.setFrameLimit(this.#s.frameLimits.max);
  }

  /**
   * What the peer said it is, once it has identified (shown by the admin API). Setting
   * it is the peer's "identified" line in the log (at info the first time).
   */
  get identity(): string | undefined {
    return this.#identity;
  }

  set identity(value: string | undefined) {
    const previous = this.#identity;
    this.#identity = value;
    if (value !== undefined && value !== previous) this.#s.log?.identified(this, previous);
  }

  /** Says why the peer is going, for its "gone" line (the first reason given wins). */
  markWhy(why: GoneWhy): void {
    this.#r().why ??= why;
  }

  /** A failed authentication: a rate-limited warning with the remote address; the close that follows is "refused". */
  authFailed(detail: string): void {
    this.#flags |= AUTH_LOGGED;
    this.#s.log?.authFailed(this.dialect, this.remoteAddress, detail, this.id);
    this.markWhy('refused');
  }

  /** The dialect's state for this peer changed (debug). */
  stateChanged(from: string, to: string): void {
    if (from !== to) this.#s.log?.state(this, from, to);
  }

  /** True once close() was called or the socket went away. Nothing more is sent. */
  get closing(): boolean {
    return (this.#flags & (CLOSING | CLOSED)) !== 0;
  }

  get closed(): boolean {
    return (this.#flags & CLOSED) !== 0;
  }

  /** True once the receiver was found too slow. */
  get slow(): boolean {
    return (this.#flags & SLOW) !== 0;
  }

  /** Bytes queued for this peer and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  /** The underlying `ws` WebSocket, for the transport layer (pings and raw tests). */
  get socket(): WebSocket {
    return this.#ws.raw as WebSocket;
  }

  /**
   * Queues a text frame. Frames sent in one tick go out in one write. Returns false
   * when the frame was dropped: the connection is closing, or it has just been found
   * to be a slow consumer (then `onSlowConsumer` runs once).
   *
   * The guard is for a backlog, not for one big answer: a single frame larger than
   * maxBufferedBytes (a huge list) is queued, and the part of it still unsent does not
   * count towards the backlog. Only one such frame may be draining at a time; a second
   * one before the first has gone out marks the receiver slow.
   */
  send(data: Buffer | string): boolean {
    if (this.#flags & (CLOSING | CLOSED)) return false;
    const len = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    const buffered = this.#ws.bufferedAmount;
    const big = this.#bigUnsent(buffered);
    const max = this.#s.maxBuffered;
    if (len > max) {
      if (big > 0 || buffered > max) {
        this.#markSlow();
        return false;
      }
      this.#write(data, len);
      this.#bigLen = len;
      this.#bigEnd = this.#written;
      return true;
    }
    if (buffered - big + len > max) {
      this.#markSlow();
      return false;
    }
    this.#write(data, len);
    return true;
  }

  /** How much of the last oversized frame is still unsent, given the socket's backlog. */
  #bigUnsent(buffered: number): number {
    if (this.#bigLen === 0) return 0;
    // Everything up to `drained` has left; the big frame ends at #bigEnd.
    const drained = this.#written - buffered;
    const left = Math.min(this.#bigLen, this.#bigEnd - drained);
    if (left > 0) return left;
    this.#bigLen = 0;
    return 0;
  }

  /** Sends regardless of backpressure (for a final goodbye frame behind the backlog). */
  sendFinal(data: Buffer | string): void {
    if (this.#flags & CLOSED || !this.#ws.open) return;
    this.#write(data, typeof data === 'string' ? Buffer.byteLength(data) : data.length);
  }

  #write(data: Buffer | string, len: number): void {
    // As the socket counts it: the payload plus an unmasked frame header.
    this.#written += len + (len < 126 ? 2 : len < 65_536 ? 4 : 10);
    if (!(this.#flags & CORKED)) {
      if (this.#ws.cork()) {
        this.#flags |= CORKED;
        corked.add(this);
        if (!flushQueued) {
          flushQueued = true;
          void RESOLVED.then(flushCorked);
        }
      }
    }
    this.#ws.sendText(data);
    const s = this.#s;
    if (s.log?.frames) s.log.frame(this, 'out', data);
    this.framesOut++;
    s.observer?.framesOut(s.dialect, 1);
  }

  /** @internal */
  _uncork(): void {
    if (!(this.#flags & CORKED)) return;
    this.#flags &= ~CORKED;
    this.#ws.uncork();
  }

  #markSlow(): void {
    if (this.#flags & SLOW) return;
    this.#flags |= SLOW;
    this.markWhy('slow consumer');
    this.onSlowConsumer(this);
  }

  /** Marks the connection slow without a write (used by routers that check first). */
  markSlow(): void {
    this.#markSlow();
  }

  /** Records inbound activity. */
  touch(): void {
    const s = this.#s;
    this.#seen = small(s.scheduler.now() - s.since);
    this.framesIn++;
    s.observer?.framesIn(s.dialect, 1);
  }

  /** Records a pong (activity, but not a frame). */
  touchPong(): void {
    const s = this.#s;
    const now = s.scheduler.now();
    this.#seen = small(now - s.since);
    if (this.#pingAt !== undefined) this.latencyMs = now - this.#pingAt;
    this.#pingAt = undefined;
  }

  ping(): void {
    if (this.#flags & (CLOSING | CLOSED)) return;
    // An unanswered ping keeps its start: the next pong measures from the oldest one.
    this.#pingAt ??= this.#s.scheduler.now();
    try {
      this.#ws.ping();
    } catch {
      // The socket is already going away; the close event will follow.
    }
  }

  /**
   * Starts a close handshake with a code and a reason. The close frame goes behind
   * anything already queued; if it has not drained within CLOSE_DRAIN_MS, the socket
   * is destroyed.
   */
  close(code: number, reason: string, why?: GoneWhy): void {
    if (this.#flags & (CLOSING | CLOSED)) return;
    if (why !== undefined) this.markWhy(why);
    // A close that refuses credentials is a failed authentication, whichever dialect sends it.
    if (!(this.#flags & AUTH_LOGGED) && (this.#rare?.why ?? this.#s.closeCodes?.[code]?.why) === 'refused') this.authFailed(reason);
    this.#flags |= CLOSING;
    const r = this.#r();
    r.sentCode = code;
    r.sentReason = reason;
    this._uncork();
    try {
      this.#ws.close(code, truncateReason(reason));
    } catch {
      this.#ws.terminate();
      return;
    }
    r.drainTimer = this.#s.scheduler.after(CLOSE_DRAIN_MS, () => {
      if (!(this.#flags & CLOSED)) this.#ws.terminate();
    });
  }

  /** Drops the socket at once, without a close frame. */
  terminate(): void {
    this.#flags |= CLOSING;
    this.#ws.terminate();
  }

  #goneWhy(code: number): GoneWhy {
    const r = this.#rare;
    if (r?.why !== undefined) return r.why;
    if (r?.sentCode !== undefined) return this.#s.closeCodes?.[r.sentCode]?.why ?? 'closed by server';
    if (code === 1006) return 'dead';
    // The socket layer refused a frame (bad UTF-8, too big, bad framing).
    if (code === 1002 || code === 1007 || code === 1009) return 'protocol error';
    return 'peer closed';
  }

  onClose(listener: (code: number, reason: string) => void): void {
    (this.#r().closeListeners ??= []).push(listener);
  }

  /** @internal Called by the transport when the socket has closed. */
  _closed(code: number, reason: string): void {
    if (this.#flags & CLOSED) return;
    this.#flags |= CLOSED | CLOSING;
    const r = this.#rare;
    r?.drainTimer?.cancel();
    corked.delete(this);
    const s = this.#s;
    s.observer?.closed(s.dialect, code);
    // The code and reason the server sent, when it closed; else what the peer sent (1006: nothing).
    const sent = r?.sentCode;
    if (s.log) s.log.gone(this, sent ?? code, sent !== undefined ? (r?.sentReason ?? '') : reason, this.#goneWhy(code));
    const listeners = r?.closeListeners;
    if (r) r.closeListeners = undefined;
    if (listeners) for (const l of listeners) l(code, reason);
  }
}

/** A close reason must fit in 123 bytes. */
export function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let r = reason;
  while (Buffer.byteLength(r) > 120) r = r.slice(0, -1);
  // Never leave half of a surrogate pair behind (it would go out as U+FFFD).
  if (/[\uD800-\uDBFF]$/.test(r)) r = r.slice(0, -1);
  return `${r}...`;
}
