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

/** How long a closing socket may take to drain its close frame before it is destroyed. */
export const CLOSE_DRAIN_MS = 5000;

export class Connection {
  readonly id: string;
  readonly dialect: string;
  readonly remoteAddress: string;
  readonly connectedAt: number;
  /** Last time anything arrived from the peer (frame or pong). */
  lastSeen: number;
  framesIn = 0;
  framesOut = 0;
  /** Round trip of the last answered WebSocket ping, in ms; null until one is answered. */
  latencyMs: number | null = null;
  onSlowConsumer: SlowConsumerHandler;

  readonly #ws: Socket;
  readonly #scheduler: Scheduler;
  readonly #maxBuffered: number;
  readonly #observer: ConnectionObserver | undefined;
  #corked = false;
  #slow = false;
  #closing = false;
  #closed = false;
  #drainTimer: Timer | undefined;
  /** Bytes handed to the socket since it opened (to tell how far the backlog has drained). */
  #written = 0;
  /** The last frame larger than the whole allowance: its length, and #written at its end. */
  #bigLen = 0;
  #bigEnd = 0;
  #authenticated = false;
  readonly #frameLimits: { readonly preAuth: number; readonly max: number } | undefined;
  /** Made when the first listener is added (most connections have none). */
  #closeListeners: Array<(code: number, reason: string) => void> | undefined;
  #pingAt: number | undefined;
  readonly #log: PeerLog | undefined;
  readonly #closeCodes: CloseCodeTable | undefined;
  #identity: string | undefined;
  #why: GoneWhy | undefined;
  #sentCode: number | undefined;
  #sentReason = '';
  #authLogged = false;

  /** On a Socket; a bare `ws` WebSocket is adapted (WsSocket). */
  constructor(ws: Socket | WebSocket, opts: ConnectionOptions) {
    this.#ws = isSocket(ws) ? ws : new WsSocket(ws);
    this.id = opts.id;
    this.dialect = opts.dialect;
    this.remoteAddress = opts.remoteAddress;
    this.#scheduler = opts.scheduler;
    this.#maxBuffered = opts.maxBufferedBytes;
    this.#observer = opts.observer;
    this.connectedAt = opts.scheduler.now();
    this.lastSeen = this.connectedAt;
    this.#log = opts.log;
    this.#closeCodes = opts.closeCodes;
    this.onSlowConsumer = closeSlowConsumer;
    this.#frameLimits = opts.frameLimits;
    if (opts.frameLimits) this.#ws.setFrameLimit(opts.frameLimits.preAuth);
  }

  /** True once the dialect has said the peer proved who it is. */
  get authenticated(): boolean {
    return this.#authenticated;
  }

  /** The peer has authenticated: from now on the socket layer takes frames up to limits.maxPayload. */
  markAuthenticated(): void {
    if (this.#authenticated) return;
    this.#authenticated = true;
    if (this.#frameLimits) this.#ws.setFrameLimit(this.#frameLimits.max);
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
    if (value !== undefined && value !== previous) this.#log?.identified(this, previous);
  }

  /** Says why the peer is going, for its "gone" line (the first reason given wins). */
  markWhy(why: GoneWhy): void {
    this.#why ??= why;
  }

  /** A failed authentication: a rate-limited warning with the remote address; the close that follows is "refused". */
  authFailed(detail: string): void {
    this.#authLogged = true;
    this.#log?.authFailed(this.dialect, this.remoteAddress, detail, this.id);
    this.markWhy('refused');
  }

  /** The dialect's state for this peer changed (debug). */
  stateChanged(from: string, to: string): void {
    if (from !== to) this.#log?.state(this, from, to);
  }

  /** True once close() was called or the socket went away. Nothing more is sent. */
  get closing(): boolean {
    return this.#closing || this.#closed;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True once the receiver was found too slow. */
  get slow(): boolean {
    return this.#slow;
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
    if (this.#closing || this.#closed) return false;
    const len = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    const buffered = this.#ws.bufferedAmount;
    const big = this.#bigUnsent(buffered);
    if (len > this.#maxBuffered) {
      if (big > 0 || buffered > this.#maxBuffered) {
        this.#markSlow();
        return false;
      }
      this.#write(data, len);
      this.#bigLen = len;
      this.#bigEnd = this.#written;
      return true;
    }
    if (buffered - big + len > this.#maxBuffered) {
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
    if (this.#closed || !this.#ws.open) return;
    this.#write(data, typeof data === 'string' ? Buffer.byteLength(data) : data.length);
  }

  #write(data: Buffer | string, len: number): void {
    // As the socket counts it: the payload plus an unmasked frame header.
    this.#written += len + (len < 126 ? 2 : len < 65_536 ? 4 : 10);
    if (!this.#corked) {
      if (this.#ws.cork()) {
        this.#corked = true;
        corked.add(this);
        if (!flushQueued) {
          flushQueued = true;
          void RESOLVED.then(flushCorked);
        }
      }
    }
    this.#ws.send(data);
    if (this.#log?.frames) this.#log.frame(this, 'out', data);
    this.framesOut++;
    this.#observer?.framesOut(this.dialect, 1);
  }

  /** @internal */
  _uncork(): void {
    if (!this.#corked) return;
    this.#corked = false;
    this.#ws.uncork();
  }

  #markSlow(): void {
    if (this.#slow) return;
    this.#slow = true;
    this.markWhy('slow consumer');
    this.onSlowConsumer(this);
  }

  /** Marks the connection slow without a write (used by routers that check first). */
  markSlow(): void {
    this.#markSlow();
  }

  /** Records inbound activity. */
  touch(): void {
    this.lastSeen = this.#scheduler.now();
    this.framesIn++;
    this.#observer?.framesIn(this.dialect, 1);
  }

  /** Records a pong (activity, but not a frame). */
  touchPong(): void {
    this.lastSeen = this.#scheduler.now();
    if (this.#pingAt !== undefined) this.latencyMs = this.lastSeen - this.#pingAt;
    this.#pingAt = undefined;
  }

  ping(): void {
    if (this.#closing || this.#closed) return;
    // An unanswered ping keeps its start: the next pong measures from the oldest one.
    this.#pingAt ??= this.#scheduler.now();
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
    if (this.#closing || this.#closed) return;
    if (why !== undefined) this.markWhy(why);
    // A close that refuses credentials is a failed authentication, whichever dialect sends it.
    if (!this.#authLogged && (this.#why ?? this.#closeCodes?.[code]?.why) === 'refused') this.authFailed(reason);
    this.#closing = true;
    this.#sentCode = code;
    this.#sentReason = reason;
    this._uncork();
    try {
      this.#ws.close(code, truncateReason(reason));
    } catch {
      this.#ws.terminate();
      return;
    }
    this.#drainTimer = this.#scheduler.after(CLOSE_DRAIN_MS, () => {
      if (!this.#closed) this.#ws.terminate();
    });
  }

  /** Drops the socket at once, without a close frame. */
  terminate(): void {
    this.#closing = true;
    this.#ws.terminate();
  }

  #goneWhy(code: number): GoneWhy {
    if (this.#why !== undefined) return this.#why;
    if (this.#sentCode !== undefined) return this.#closeCodes?.[this.#sentCode]?.why ?? 'closed by server';
    if (code === 1006) return 'dead';
    // The socket layer refused a frame (bad UTF-8, too big, bad framing).
    if (code === 1002 || code === 1007 || code === 1009) return 'protocol error';
    return 'peer closed';
  }

  onClose(listener: (code: number, reason: string) => void): void {
    (this.#closeListeners ??= []).push(listener);
  }

  /** @internal Called by the transport when the socket has closed. */
  _closed(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing = true;
    this.#drainTimer?.cancel();
    corked.delete(this);
    this.#observer?.closed(this.dialect, code);
    // The code and reason the server sent, when it closed; else what the peer sent (1006: nothing).
    if (this.#log) this.#log.gone(this, this.#sentCode ?? code, this.#sentCode !== undefined ? this.#sentReason : reason, this.#goneWhy(code));
    const listeners = this.#closeListeners;
    this.#closeListeners = undefined;
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
