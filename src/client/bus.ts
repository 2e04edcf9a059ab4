import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { Op, REPLY_END, type ExpectReply, type Intent } from '../protocols/bus/messages.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';

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

interface Waiter {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  collect?: CollectResult;
}

let counter = 0;
const newId = (): string => `${Date.now().toString(36)}-${process.pid.toString(36)}-${(counter++).toString(36)}`;

export class BusClient extends EventEmitter {
  readonly #opts: BusClientOptions;
  #ws: WebSocket | undefined;
  #id: string | undefined;
  #closed = false;
  #attempt = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  readonly #waiters = new Map<string, Waiter>();
  #ready: Promise<void> | undefined;

  constructor(opts: BusClientOptions) {
    super();
    this.#opts = opts;
  }

  /** This service's id, once identified. */
  get id(): string | undefined {
    return this.#id;
  }

  get connected(): boolean {
    return this.#id !== undefined && this.#ws?.readyState === WebSocket.OPEN;
  }

  /** Connects and identifies. Resolves once IDENTIFY is acknowledged. */
  connect(): Promise<void> {
    this.#closed = false;
    this.#ready ??= this.#open();
    return this.#ready;
  }

  #open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const headers = this.#opts.tokenInHeader ? { authorization: `Bearer ${this.#opts.token}` } : undefined;
      const ws = new WebSocket(this.#opts.url, headers ? { headers } : {});
      this.#ws = ws;
      let settled = false;
      ws.on('open', () => {
        const data: Record<string, unknown> = {};
        if (!this.#opts.tokenInHeader) data.token = this.#opts.token;
        if (this.#opts.group !== undefined) data.group = this.#opts.group;
        if (this.#opts.groups !== undefined) data.groups = this.#opts.groups;
        if (this.#opts.name !== undefined) data.name = this.#opts.name;
        ws.send(JSON.stringify({ op: Op.IDENTIFY, data }));
      });
      ws.on('message', (buf: Buffer) => {
        const raw = buf.toString('utf8');
        let msg: BusDelivery;
        try {
          msg = { ...(JSON.parse(raw) as object), raw } as BusDelivery;
        } catch {
          return;
        }
        if (msg.op === Op.IDENTIFY && !settled) {
          settled = true;
          const d = msg.data as { id: string; heartbeat_interval: number };
          this.#id = d.id;
          this.#attempt = 0;
          this.emit('identified', { id: d.id, heartbeatInterval: d.heartbeat_interval });
          resolve();
          return;
        }
        this.#onFrame(msg);
      });
      ws.on('error', (err) => {
        if (!settled) {
          settled = true;
          reject(err);
        }
        if (this.listenerCount('error') > 0) this.emit('error', err);
      });
      ws.on('close', (code, reasonBuf) => {
        const reason = reasonBuf.toString();
        this.#id = undefined;
        this.#ready = undefined;
        this.#failAll(new BusRequestError('DISCONNECTED', `connection closed (${code} ${reason})`));
        this.emit('close', code, reason);
        if (!settled) {
          settled = true;
          reject(new Error(`closed before IDENTIFY was acknowledged: ${code} ${reason}`));
        }
        this.#scheduleReconnect(code);
      });
    });
  }

  #scheduleReconnect(code: number): void {
    if (this.#closed || this.#opts.reconnect === false) return;
    // A refused identity will be refused again: don't loop on it.
    if (code === 4004 || code === 4002) return;
    const delay = backoffDelay(this.#attempt++, this.#opts.reconnect ?? {});
    this.emit('reconnecting', this.#attempt, delay);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed) return;
      this.connect().catch(() => undefined);
    }, delay);
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
    const w = msg.id === undefined ? undefined : this.#waiters.get(msg.id);
    if (!w || msg.id === undefined) return;
    const data = msg.data as { error?: string } | undefined;
    if (msg.event === REPLY_END && w.collect) {
      const end = msg.data as { received: number; expected: number; missing: string[] };
      Object.assign(w.collect, end);
      this.#settle(msg.id)?.resolve(w.collect);
      return;
    }
    if (msg.source === undefined && data && (data.error === 'NO_ROUTE' || data.error === 'TIMEOUT' || data.error === 'RATE_LIMITED')) {
      this.#settle(msg.id)?.reject(new BusRequestError(data.error, `bus answered ${data.error}`, data));
      return;
    }
    if (w.collect) {
      w.collect.replies.push({ source: msg.source ?? '', data: msg.data, ...(msg.event !== undefined ? { event: msg.event } : {}) });
      return;
    }
    this.#settle(msg.id)?.resolve(msg.data);
  }

  #settle(id: string): Waiter | undefined {
    const w = this.#waiters.get(id);
    if (!w) return undefined;
    clearTimeout(w.timer);
    this.#waiters.delete(id);
    return w;
  }

  #failAll(err: Error): void {
    for (const id of [...this.#waiters.keys()]) this.#settle(id)?.reject(err);
  }

  #send(frame: Record<string, unknown>): void {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) throw new BusRequestError('DISCONNECTED', 'not connected');
    ws.send(JSON.stringify(frame));
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
      this.#settle(id);
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
      this.#settle(id);
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
    return new Promise((resolve, reject) => {
      const ms = timeout ?? this.#opts.requestTimeout ?? 15_000;
      const timer = setTimeout(() => {
        this.#settle(id)?.reject(new BusRequestError('CLIENT_TIMEOUT', `no answer within ${ms} ms`));
      }, ms);
      this.#waiters.set(id, { resolve, reject, timer, ...(collect ? { collect } : {}) });
    });
  }

  /** Says goodbye (DISCONNECT) and closes. No reconnect follows. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    const ws = this.#ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ op: Op.DISCONNECT, data: { reason: 'client closing' } }));
      } else {
        ws.terminate();
      }
    });
  }
}
