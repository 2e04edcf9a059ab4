import { EventEmitter } from 'node:events';
import { busCloseCodes, Op, REPLY_END, type ExpectReply, type Intent } from '../protocols/bus/messages.js';
import type { BackoffOptions } from './backoff.js';
import type { ClientClock } from './clock.js';
import { PendingRequests } from './pending.js';
import { ReconnectingSocket } from './socket.js';
import { ReadyGate } from './ready.js';

/**
 * A typed client for the bus dialect. It identifies, answers PINGs, reconnects with
 * jittered exponential backoff, and matches replies to requests.
 *
 * Events: `identified` ({id, heartbeatInterval}), `event` (BusDelivery), `disconnect`
 * (reason, detail), `close` (code, reason), `reconnecting` (attempt, delayMs), `error`.
 */
export interface BusClientOptions {
  url: string;
  token: string;
  group?: string;
  groups?: string[];
  name?: string;
  /** false to stay down after a drop; otherwise backoff settings. */
  reconnect?: false | BackoffOptions;
  /** Client-side safety timeout for request() and collect(), ms (default 15000). */
  requestTimeout?: number;
  /** Send the token in the Authorization header instead of IDENTIFY. */
  tokenInHeader?: boolean;
  /** Time source for request deadlines and reconnect delays (default: real time). */
  clock?: ClientClock;
}

/** A frame delivered to this service. `raw` is the frame's exact text. */
export interface BusDelivery {
  op: number;
  id?: string;
  event?: string;
  data?: unknown;
  intent?: Intent;
  source?: string;
  expect_reply?: ExpectReply | boolean;
  raw: string;
}

export interface CollectResult {
  replies: Array<{ source: string; data: unknown; event?: string }>;
  received: number;
  expected: number;
  missing: string[];
}

/** A request that the bus answered with an error (NO_ROUTE, TIMEOUT) or that was cut off. */
export class BusRequestError extends Error {
  override readonly name = 'BusRequestError';
  constructor(
    readonly code: 'NO_ROUTE' | 'TIMEOUT' | 'RATE_LIMITED' | 'DISCONNECTED' | 'CLIENT_TIMEOUT',
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

let counter = 0;
const newId = (): string => `${Date.now().toString(36)}-${process.pid.toString(36)}-${(counter++).toString(36)}`;

export class BusClient extends EventEmitter {
  readonly #opts: BusClientOptions;
  readonly #link: ReconnectingSocket;
  #id: string | undefined;
  #closed = false;
  readonly #pending: PendingRequests<string>;
  /** collect() requests gather their replies here until REPLY_END. */
  readonly #collects = new Map<string, CollectResult>();
  readonly #ready = new ReadyGate();

  constructor(opts: BusClientOptions) {
    super();
    this.#opts = opts;
    this.#link = new ReconnectingSocket(
      {
        url: opts.url,
        socketOptions: () => (opts.tokenInHeader ? { headers: { authorization: `Bearer ${opts.token}` } } : {}),
        closeCodes: busCloseCodes,
        reconnect: opts.reconnect,
        ...(opts.clock ? { clock: opts.clock } : {}),
      },
      {
        open: () => this.#identify(),
        message: (buf) => this.#onMessage(buf),
        error: (err) => {
          this.#ready.reject(err);
          if (this.listenerCount('error') > 0) this.emit('error', err);
        },
        close: (code, reason) => this.#onClose(code, reason),
      },
    );
    this.#pending = new PendingRequests(this.#link.clock);
  }

  /** This service's id, once identified. */
  get id(): string | undefined {
    return this.#id;
  }

  get connected(): boolean {
    return this.#id !== undefined && this.#link.isOpen;
  }

  /** Connects and identifies. Resolves once IDENTIFY is acknowledged. */
  connect(): Promise<void> {
    this.#closed = false;
    return this.#ready.wait(() => this.#link.open());
  }

  #identify(): void {
    const data: Record<string, unknown> = {};
    if (!this.#opts.tokenInHeader) data.token = this.#opts.token;
    if (this.#opts.group !== undefined) data.group = this.#opts.group;
    if (this.#opts.groups !== undefined) data.groups = this.#opts.groups;
    if (this.#opts.name !== undefined) data.name = this.#opts.name;
    this.#link.send(JSON.stringify({ op: Op.IDENTIFY, data }));
  }

  #onMessage(buf: Buffer): void {
    const raw = buf.toString('utf8');
    let msg: BusDelivery;
    try {
      msg = { ...(JSON.parse(raw) as object), raw } as BusDelivery;
    } catch {
      return;
    }
    if (msg.op === Op.IDENTIFY && this.#ready.waiting) {
      const d = msg.data as { id: string; heartbeat_interval: number };
      this.#id = d.id;
      this.#link.succeeded();
      this.emit('identified', { id: d.id, heartbeatInterval: d.heartbeat_interval });
      this.#ready.resolve();
      return;
    }
    this.#onFrame(msg);
  }

  #onClose(code: number, reason: string): void {
    this.#id = undefined;
    this.#ready.forget();
    this.#collects.clear();
    this.#pending.failAll(new BusRequestError('DISCONNECTED', `connection closed (${code} ${reason})`));
    this.emit('close', code, reason);
    this.#ready.reject(new Error(`closed before IDENTIFY was acknowledged: ${code} ${reason}`));
    // A refused identity or a bad frame will be refused again (the close-code table): don't loop on it.
    if (this.#closed || !this.#link.shouldRetry(code, reason)) return;
    const { attempt, delay } = this.#link.reconnectLater(() => {
      if (!this.#closed) this.connect().catch(() => undefined);
    });
    this.emit('reconnecting', attempt, delay);
  }

  #onFrame(msg: BusDelivery): void {
    switch (msg.op) {
      case Op.PING:
        this.#send({ op: Op.PONG });
        return;
      case Op.PONG:
        return;
      case Op.DISCONNECT: {
        const d = (msg.data ?? {}) as { reason?: string; detail?: string };
        this.emit('disconnect', d.reason, d.detail);
        return;
      }
      case Op.REPLY:
        this.#onReply(msg);
        return;
      default:
        this.emit('event', msg);
    }
  }

  #onReply(msg: BusDelivery): void {
    const id = msg.id;
    if (id === undefined || !this.#pending.has(id)) return;
    const collect = this.#collects.get(id);
    const data = msg.data as { error?: string } | undefined;
    if (msg.event === REPLY_END && collect) {
      const end = msg.data as { received: number; expected: number; missing: string[] };
      Object.assign(collect, end);
      this.#collects.delete(id);
      this.#pending.resolve(id, collect);
      return;
    }
    if (msg.source === undefined && data && (data.error === 'NO_ROUTE' || data.error === 'TIMEOUT' || data.error === 'RATE_LIMITED')) {
      this.#collects.delete(id);
      this.#pending.reject(id, new BusRequestError(data.error, `bus answered ${data.error}`, data));
      return;
    }
    if (collect) {
      collect.replies.push({ source: msg.source ?? '', data: msg.data, ...(msg.event !== undefined ? { event: msg.event } : {}) });
      return;
    }
    this.#pending.resolve(id, msg.data);
  }

  #send(frame: Record<string, unknown>): void {
    if (!this.#link.send(JSON.stringify(frame))) throw new BusRequestError('DISCONNECTED', 'not connected');
  }

  /** Sends an EVENT. */
  emitEvent(intent: Intent, event: string, data?: unknown, extra: { id?: string } = {}): void {
    this.#send({ op: Op.EVENT, ...(extra.id ? { id: extra.id } : {}), event, data, intent });
  }

  emitGlobal(event: string, data?: unknown, opts: { self?: boolean } = {}): void {
    this.emitEvent({ target: 'GLOBAL', ...(opts.self ? { self: true } : {}) }, event, data);
  }

  emitGroup(group: string, event: string, data?: unknown): void {
    this.emitEvent({ target: 'GROUP', identifier: group }, event, data);
  }

  emitDirect(service: string, event: string, data?: unknown): void {
    this.emitEvent({ target: 'DIRECT', identifier: service }, event, data);
  }

  /** Asks one service (by id or name) and resolves with its reply's data. */
  request(service: string, event: string, data?: unknown, opts: { timeout?: number } = {}): Promise<unknown> {
    const id = newId();
    const p = this.#wait(id, opts.timeout);
    try {
      this.#send({ op: Op.EVENT, id, event, data, intent: { target: 'DIRECT', identifier: service }, expect_reply: 1 });
    } catch (err) {
      this.#pending.take(id);
      return Promise.reject(err);
    }
    return p;
  }

  /** Asks a group (or everyone, with GLOBAL) and gathers up to `expect` replies until REPLY_END. */
  collect(intent: Intent, event: string, data?: unknown, opts: { expect?: ExpectReply; timeout?: number } = {}): Promise<CollectResult> {
    const id = newId();
    const result: CollectResult = { replies: [], received: 0, expected: 0, missing: [] };
    const p = this.#wait(id, opts.timeout, result) as Promise<CollectResult>;
    try {
      this.#send({ op: Op.EVENT, id, event, data, intent, expect_reply: opts.expect ?? 'all' });
    } catch (err) {
      this.#pending.take(id);
      this.#collects.delete(id);
      return Promise.reject(err);
    }
    return p;
  }

  /** Answers a delivered EVENT that carried an id. */
  reply(to: BusDelivery, data?: unknown, event?: string): void {
    if (to.id === undefined) throw new TypeError('this message carries no id to reply to');
    // Addressed DIRECT to the requester, so Muster can tell which request it answers when
    // several services asked this one with the same id.
    const intent = to.source !== undefined ? { intent: { target: 'DIRECT', identifier: to.source } } : {};
    this.#send({ op: Op.REPLY, id: to.id, ...(event !== undefined ? { event } : {}), data, ...intent });
  }

  #wait(id: string, timeout: number | undefined, collect?: CollectResult): Promise<unknown> {
    const ms = timeout ?? this.#opts.requestTimeout ?? 15_000;
    if (collect) this.#collects.set(id, collect);
    return this.#pending.wait(id, ms, () => {
      this.#collects.delete(id);
      return new BusRequestError('CLIENT_TIMEOUT', `no answer within ${ms} ms`);
    });
  }

  /** Says goodbye (DISCONNECT) and closes. No reconnect follows. */
  close(): Promise<void> {
    this.#closed = true;
    return this.#link.close((ws) => ws.send(JSON.stringify({ op: Op.DISCONNECT, data: { reason: 'client closing' } })));
  }
}
