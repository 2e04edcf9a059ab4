import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import {
  clusterioCloseCodes,
  kindOf,
  responseTypeOf,
  SESSION_FEATURE,
  type EventData,
  type EventName,
  type RequestData,
  type RequestName,
  type ResponseData,
  type Role,
} from '../protocols/clusterio/messages.js';
import type { BackoffOptions } from './backoff.js';
import type { ClientClock } from './clock.js';
import { PendingRequests } from './pending.js';
import { ReconnectingSocket } from './socket.js';

/**
 * A typed client for the clusterio dialect, as a slave or as a control. It always
 * opts in to sessions: it heartbeats, keeps what it sent until the master acknowledges
 * it, resumes after a dropped socket (with jittered backoff) so that nothing is lost or
 * delivered twice, and registers anew after `invalidate`, rejecting the requests the
 * old session still waited on with `ClusterioLinkError('SESSION_INVALIDATED')`.
 *
 * Events: `ready` (a new session), `resume`, `drop` (socket lost, resuming),
 * `invalidate`, `close` (code, reason: final), `error`, and every message type the
 * master sends, e.g. `instance_output_event` (data, raw frame text).
 */

export interface LinkTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: LinkTimers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** LinkTimers as the clients' clock. */
function clockOf(timers: LinkTimers): ClientClock {
  return {
    now: () => Date.now(),
    wake: (ms, cb) => {
      const h = timers.setTimeout(cb, ms);
      return () => timers.clearTimeout(h);
    },
  };
}

export interface ClusterioLinkOptions {
  /** The master's socket URL, e.g. ws://127.0.0.1:7373/api/socket. */
  url: string;
  /** A JWT from `muster token clusterio --slave ID` or `--control`. */
  token: string;
  role: Role;
  /** Slaves: the slave id (an integer; a string keeps every digit). */
  id?: number | string;
  /** Slaves: the slave name. */
  name?: string;
  agent?: string;
  version?: string;
  /** false: stay down after a drop. Otherwise backoff settings for reconnects. */
  reconnect?: false | BackoffOptions;
  /** Client-side deadline of request(), ms (default 130000, past the master's own). */
  requestTimeout?: number;
  /** Injectable timers (tests). */
  timers?: LinkTimers;
  ws?: WebSocket.ClientOptions;
}

export type ClusterioLinkErrorCode = 'REMOTE' | 'TIMEOUT' | 'SESSION_INVALIDATED' | 'CLOSED';

/** A request that failed: the master answered with an error, or the session ended. */
export class ClusterioLinkError extends Error {
  override readonly name = 'ClusterioLinkError';
  constructor(
    readonly code: ClusterioLinkErrorCode,
    message: string,
  ) {
    super(message);
  }
  /** May the same request be tried again (on a new session)? */
  get retryable(): boolean {
    return this.code !== 'REMOTE';
  }
}

export type RequestType = `${RequestName}_request`;
type NameOf<T extends string> = T extends `${infer N extends RequestName}_request` ? N : never;
type PluginRequestType = `${string}:${string}_request`;
type IncomingHandler = (data: Record<string, unknown>, raw: string) => unknown;

interface Outgoing {
  readonly type: string;
  /** JSON text of the data. */
  readonly data: string;
  /** The request's key in the pending map, for a request. */
  readonly req?: number;
}

type State = 'idle' | 'connecting' | 'registering' | 'connected' | 'resuming' | 'closed';

export class ClusterioLink extends EventEmitter {
  readonly #opts: ClusterioLinkOptions;
  readonly #clock: ClientClock;
  readonly #link: ReconnectingSocket;
  #state: State = 'idle';
  #token: string | undefined;
  #heartbeatMs = 0;
  #outSeq = 0;
  #lastReceived = 0;
  /** Counted frames sent and not yet acknowledged, in order. */
  #unacked: Array<{ seq: number; text: string }> = [];
  /** Frames made while there is no session yet: numbered once one exists. */
  #queued: Outgoing[] = [];
  /** Requests waiting for their response, by a local number. */
  readonly #pending: PendingRequests<number, Record<string, unknown>>;
  /** The pending request each sent counted frame carries, by its seq. */
  readonly #bySeq = new Map<number, number>();
  #reqSeq = 0;
  readonly #handlers = new Map<string, IncomingHandler>();
  #stopHeartbeatTimer: (() => void) | undefined;
  #missedHeartbeats = 0;
  #closeReason: string | undefined;
  #firstReady: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #closed: Promise<void> | undefined;

  constructor(opts: ClusterioLinkOptions) {
    super();
    this.#opts = opts;
    this.#clock = clockOf(opts.timers ?? realTimers);
    this.#link = new ReconnectingSocket(
      { url: opts.url, socketOptions: () => opts.ws ?? {}, closeCodes: clusterioCloseCodes, reconnect: opts.reconnect, clock: this.#clock },
      {
        message: (buf, _binary, ws) => {
          try {
            this.#onFrame(ws, buf.toString('utf8'));
          } catch (err) {
            this.#emitError(err as Error);
          }
        },
        error: (err) => this.#emitError(err),
        close: (code, reason) => this.#onSocketClosed(code, this.#closeReason ?? reason),
      },
    );
    this.#pending = new PendingRequests(this.#clock);
    if (opts.role === 'slave' && (opts.id === undefined || opts.name === undefined)) throw new TypeError('a slave needs an id and a name');
  }

  /** 'connected' once registered or resumed; 'resuming' while the socket is down but the session lives. */
  get state(): State {
    return this.#state;
  }

  get sessionToken(): string | undefined {
    return this.#token;
  }

  /** Frames sent and not yet acknowledged by the master. */
  get unacknowledged(): number {
    return this.#unacked.length + this.#queued.length;
  }

  get pendingRequests(): number {
    return this.#pending.size;
  }

  /** The socket, for tests that cut it. */
  get socket(): WebSocket | undefined {
    return this.#link.socket;
  }

  /** Connects and registers. Resolves at the first `ready`. */
  connect(): Promise<void> {
    if (this.#state !== 'idle' && this.#state !== 'closed') throw new Error(`already ${this.#state}`);
    this.#state = 'connecting';
    const p = new Promise<void>((resolve, reject) => {
      this.#firstReady = { resolve, reject };
    });
    this.#link.open();
    return p;
  }

  /** Sends a request and resolves with the response data (without `seq`). */
  request<T extends RequestType>(type: T, data: RequestData<NameOf<T>>): Promise<ResponseData<NameOf<T>>>;
  request(type: PluginRequestType, data?: Record<string, unknown>): Promise<Record<string, unknown>>;
  request(type: string, data: Record<string, unknown> = {}): Promise<unknown> {
    if (this.#state === 'closed' || this.#state === 'idle') return Promise.reject(new ClusterioLinkError('CLOSED', 'the link is not open'));
    const req = ++this.#reqSeq;
    const ms = this.#opts.requestTimeout ?? 130_000;
    const p = this.#pending.wait(req, ms, () => {
      for (const [seq, r] of this.#bySeq) if (r === req) this.#bySeq.delete(seq);
      this.#queued = this.#queued.filter((o) => o.req !== req);
      return new ClusterioLinkError('TIMEOUT', `no answer to ${type} within ${ms} ms`);
    });
    this.#sendCounted({ type, data: JSON.stringify(data), req });
    return p;
  }

  /** Sends an event. `data` may be JSON text, to send numbers beyond 2^53 exactly. */
  sendEvent<N extends EventName>(type: `${N}_event`, data: EventData<N> | string): void;
  sendEvent(type: `${string}:${string}_event`, data: Record<string, unknown> | string): void;
  sendEvent(type: string, data: Record<string, unknown> | string): void {
    if (this.#state === 'closed' || this.#state === 'idle') throw new ClusterioLinkError('CLOSED', 'the link is not open');
    this.#sendCounted({ type, data: typeof data === 'string' ? data : JSON.stringify(data) });
  }

  /** Answers requests of this type from the master (a slave's assign_instance_request, start_instance_request, …). */
  handle<T extends RequestType>(
    type: T,
    handler: (data: RequestData<NameOf<T>>, raw: string) => ResponseData<NameOf<T>> | Promise<ResponseData<NameOf<T>>>,
  ): this;
  handle(type: PluginRequestType, handler: IncomingHandler): this;
  handle(type: string, handler: (data: never, raw: string) => unknown): this {
    this.#handlers.set(type, handler as IncomingHandler);
    return this;
  }

  /** Says `close` and closes; the session ends. Pending requests are rejected. */
  close(reason = 'quit'): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#state = 'closed';
    this.#stopTimers();
    this.#failAll(new ClusterioLinkError('CLOSED', 'the link was closed'), true);
    this.#firstReady?.reject(new ClusterioLinkError('CLOSED', 'closed before ready'));
    this.#firstReady = undefined;
    this.#closed = this.#link.close((ws) => {
      ws.send(JSON.stringify({ seq: 0, type: 'close', data: { reason } }));
      ws.close(1000, reason);
    });
    return this.#closed;
  }

  // ---- socket ----

  #emitError(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  #onSocketClosed(code: number, reason: string): void {
    this.#stopHeartbeat();
    this.#closeReason = undefined;
    if (this.#state === 'closed') return;
    // Refusals and bad frames (the close-code table) would be refused again.
    if (!this.#link.shouldRetry(code, reason)) {
      this.#state = 'closed';
      this.#stopTimers();
      this.#failAll(new ClusterioLinkError('CLOSED', `the master closed the link: ${code} ${reason}`), true);
      this.#firstReady?.reject(new ClusterioLinkError('CLOSED', `closed before ready: ${code} ${reason}`));
      this.#firstReady = undefined;
      this.emit('close', code, reason);
      return;
    }
    if (this.#token !== undefined) {
      this.#state = 'resuming';
      this.emit('drop', code, reason);
    } else {
      this.#state = 'connecting';
    }
    this.#link.reconnectLater(() => {
      if (this.#state !== 'closed') this.#link.open();
    });
  }

  #send(ws: WebSocket, text: string): void {
    if (ws.readyState === WebSocket.OPEN) ws.send(text);
  }

  #register(ws: WebSocket): void {
    this.#state = 'registering';
    const o = this.#opts;
    const common = { token: o.token, agent: o.agent ?? 'muster ClusterioLink', version: o.version ?? '2.0.0-alpha' };
    if (o.role === 'slave') {
      const id = String(o.id);
      const data = JSON.stringify({ ...common, name: o.name, features: [SESSION_FEATURE] });
      // The id is spliced in as digits, so ids beyond 2^53 keep them.
      this.#send(ws, `{"seq":0,"type":"register_slave","data":${data.slice(0, -1)},"id":${/^-?\d+$/.test(id) ? id : JSON.stringify(id)}}}`);
    } else {
      this.#send(ws, JSON.stringify({ seq: 0, type: 'register_control', data: { ...common, features: [SESSION_FEATURE] } }));
    }
  }

  // ---- frames ----

  #onFrame(ws: WebSocket, text: string): void {
    const f = JSON.parse(text) as { seq: number; type: string; data: Record<string, unknown> };
    switch (f.type) {
      case 'hello':
        if (this.#token !== undefined) {
          this.#state = 'resuming';
          this.#send(ws, JSON.stringify({ seq: 0, type: 'resume', data: { session_token: this.#token, last_seq: this.#lastReceived } }));
        } else {
          this.#register(ws);
        }
        return;
      case 'ready':
        return this.#onReady(ws, f.data as { session_token: string; heartbeat_interval: number });
      case 'continue':
        return this.#onContinue(ws, f.data as { last_seq: number });
      case 'invalidate':
        this.#invalidate();
        this.#register(ws);
        return;
      case 'heartbeat':
        this.#missedHeartbeats = 0;
        this.#ack((f.data as { last_seq: number }).last_seq);
        return;
      case 'close':
        this.#closeReason = typeof f.data.reason === 'string' ? f.data.reason : undefined;
        return;
    }
    if (f.seq <= this.#lastReceived) return; // a duplicate from a replay
    this.#lastReceived = f.seq;
    const kind = kindOf(f.type);
    if (kind === 'response') return this.#onResponse(f.data);
    if (kind === 'request') return this.#onRequest(f.type, f.seq, f.data, text);
    this.emit(f.type, f.data, text);
  }

  #onReady(ws: WebSocket, data: { session_token: string; heartbeat_interval: number }): void {
    this.#token = data.session_token;
    this.#heartbeatMs = data.heartbeat_interval * 1000;
    this.#outSeq = 0;
    this.#lastReceived = 0;
    this.#unacked = [];
    this.#link.succeeded();
    this.#state = 'connected';
    this.#startHeartbeat(ws);
    const queued = this.#queued;
    this.#queued = [];
    for (const o of queued) this.#sendCounted(o);
    this.emit('ready', { sessionToken: data.session_token, heartbeatInterval: data.heartbeat_interval });
    this.#firstReady?.resolve();
    this.#firstReady = undefined;
  }

  #onContinue(ws: WebSocket, data: { last_seq: number }): void {
    this.#ack(data.last_seq);
    this.#link.succeeded();
    this.#state = 'connected';
    for (const u of this.#unacked) this.#send(ws, u.text);
    this.#startHeartbeat(ws);
    this.emit('resume');
  }

  /** The session is gone: what it waited on fails; numbering starts again. */
  #invalidate(): void {
    this.#token = undefined;
    this.#outSeq = 0;
    this.#lastReceived = 0;
    this.#unacked = [];
    this.#failAll(new ClusterioLinkError('SESSION_INVALIDATED', 'the session was invalidated before the master answered'), false);
    this.emit('invalidate');
  }

  #ack(lastSeq: number): void {
    let n = 0;
    while (n < this.#unacked.length && (this.#unacked[n] as { seq: number }).seq <= lastSeq) n++;
    if (n > 0) this.#unacked.splice(0, n);
  }

  #sendCounted(o: Outgoing): void {
    if (this.#token === undefined) {
      this.#queued.push(o);
      return;
    }
    const seq = ++this.#outSeq;
    const text = `{"seq":${seq},"type":${JSON.stringify(o.type)},"data":${o.data}}`;
    this.#unacked.push({ seq, text });
    if (o.req !== undefined) this.#bySeq.set(seq, o.req);
    const ws = this.#link.socket;
    // While resuming, the frame waits in #unacked and goes out after `continue`.
    if (ws && this.#state === 'connected') this.#send(ws, text);
  }

  #onResponse(data: Record<string, unknown>): void {
    const seq = data.seq as number;
    const req = this.#bySeq.get(seq);
    if (req === undefined) return;
    this.#bySeq.delete(seq);
    if (typeof data.error === 'string') {
      this.#pending.reject(req, new ClusterioLinkError('REMOTE', data.error));
      return;
    }
    const { seq: _seq, ...rest } = data;
    this.#pending.resolve(req, rest);
  }

  #onRequest(type: string, seq: number, data: Record<string, unknown>, raw: string): void {
    const respond = (body: Record<string, unknown>): void => {
      if (this.#state === 'closed') return;
      this.#sendCounted({ type: responseTypeOf(type), data: JSON.stringify({ ...body, seq }) });
    };
    const handler = this.#handlers.get(type);
    if (!handler) {
      respond({ error: `No handler for ${type}` });
      return;
    }
    Promise.resolve()
      .then(() => handler(data, raw))
      .then(
        (result) => respond(typeof result === 'object' && result !== null ? (result as Record<string, unknown>) : {}),
        (err: unknown) => respond({ error: err instanceof Error ? err.message : String(err) }),
      );
  }

  // ---- heartbeats and timers ----

  #startHeartbeat(ws: WebSocket): void {
    this.#stopHeartbeat();
    this.#missedHeartbeats = 0;
    if (!(this.#heartbeatMs > 0)) return;
    const tick = (): void => {
      if (this.#link.socket !== ws || this.#state !== 'connected') return;
      // The master heartbeats every interval: two missed in a row mean the socket is dead.
      if (++this.#missedHeartbeats > 2) {
        ws.terminate();
        return;
      }
      this.#send(ws, JSON.stringify({ seq: 0, type: 'heartbeat', data: { last_seq: this.#lastReceived } }));
      this.#stopHeartbeatTimer = this.#clock.wake(this.#heartbeatMs, tick);
    };
    this.#stopHeartbeatTimer = this.#clock.wake(this.#heartbeatMs, tick);
  }

  #stopHeartbeat(): void {
    this.#stopHeartbeatTimer?.();
    this.#stopHeartbeatTimer = undefined;
  }

  #stopTimers(): void {
    this.#stopHeartbeat();
    this.#link.cancelReconnect();
  }

  #failAll(err: ClusterioLinkError, includeQueued: boolean): void {
    if (includeQueued) {
      this.#queued = [];
      this.#pending.failAll(err);
    } else {
      // Only what was numbered in the ended session; queued requests go out in the next one.
      for (const req of this.#bySeq.values()) this.#pending.reject(req, err);
    }
    this.#bySeq.clear();
  }
}
