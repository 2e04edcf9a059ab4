import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import {
  ClientOp,
  decode,
  discodoCloseCodes,
  encode,
  encodeFrame,
  encodeRaw,
  isLosslessNumber,
  isObj,
  parseLossless,
  readSnowflake,
  ServerOp,
  snowflakeKey,
  toSnowflake,
  type Snowflake,
} from '../protocols/discodo/messages.js';
import type { BackoffOptions } from './backoff.js';
import type { ClientClock } from './clock.js';
import { PendingRequests } from './pending.js';
import { ReconnectingSocket } from './socket.js';
import { ReadyGate } from './ready.js';

/**
 * A typed client for the discodo dialect. It waits for HELLO, identifies as
 * (userId, shardId), heartbeats on HELLO's interval, forwards the bot's Discord voice
 * events, keeps the node's voice clients in `voiceClients`, and reconnects with
 * jittered backoff; the server resumes the session (RESUMED) when it comes back
 * within the node's vcTimeout. Ids are strings on this side, whatever form the node
 * sends; numbers beyond 2^53 keep their digits.
 *
 * Events: `hello` ({heartbeatInterval (ms), version}), `identified`, `resumed`
 * (VoiceClientInfo[]), `vcCreated` (VoiceClientInfo), `vcChannelEdited`
 * ({guildId, channelId}), `vcDestroyed` ({guildId}), `forbidden` (why), `traceback`
 * (DiscodoTracebackError), `heartbeatAck` (latency ms), `message` (op, d),
 * `close` (code, reason), `reconnecting` (attempt, delayMs), `error`.
 */
export interface DiscodoClientOptions {
  /** The node's WebSocket URL, e.g. `ws://127.0.0.1:7373/ws`. */
  url: string;
  password: string;
  /** The bot's user id. Pass a string or a bigint: a JS number loses digits past 2^53. */
  userId: string | bigint | number;
  /** The shard, or null/absent for an unsharded bot. */
  shardId?: number | null;
  /** false to stay down after a drop; otherwise backoff settings. */
  reconnect?: false | BackoffOptions;
  /** Client-side timeout for getStatus, getState, getQueue and destroyVoiceClient (ms, default 10000). */
  requestTimeout?: number;
  /** Time source for heartbeats, request deadlines and reconnect delays (default: real time). */
  clock?: ClientClock;
}

export interface VoiceClientInfo {
  guildId: string;
  id: string;
  channelId: string | null;
}

/** The node answered with `<op> {traceback: {NAME: message}}`, or a request was cut off. */
export class DiscodoTracebackError extends Error {
  override readonly name = 'DiscodoTracebackError';
  constructor(
    readonly op: string,
    readonly code: string,
    message: string,
    readonly guildId?: string,
  ) {
    super(message);
  }
}

/** Gateway events the node acts on; others are not forwarded. */
const VOICE_EVENTS = new Set(['VOICE_STATE_UPDATE', 'VOICE_SERVER_UPDATE']);

/** A request waits for the first frame its `match` accepts (discodo answers carry no request id). */
interface Waiter {
  match: (op: string, d: unknown) => boolean;
}

export class DiscodoClient extends EventEmitter {
  readonly #opts: DiscodoClientOptions;
  readonly #userId: Snowflake;
  readonly #shardId: Snowflake | null;
  readonly #link: ReconnectingSocket;
  #identified = false;
  #closed = false;
  #stopHeartbeat: (() => void) | undefined;
  #heartbeatMs = 0;
  #lastReceived = 0;
  #lastHeartbeatAt = 0;
  readonly #ready = new ReadyGate();
  readonly #pending: PendingRequests<Waiter>;
  /** The node's voice clients for this bot, by guild id. */
  readonly voiceClients = new Map<string, VoiceClientInfo>();

  constructor(opts: DiscodoClientOptions) {
    super();
    this.#opts = opts;
    this.#userId = toSnowflake(opts.userId);
    this.#shardId = opts.shardId === undefined || opts.shardId === null ? null : toSnowflake(opts.shardId);
    this.#link = new ReconnectingSocket(
      {
        url: opts.url,
        socketOptions: () => ({ headers: { authorization: opts.password } }),
        closeCodes: discodoCloseCodes,
        reconnect: opts.reconnect,
        ...(opts.clock ? { clock: opts.clock } : {}),
      },
      {
        message: (buf, binary, ws) => this.#onMessage(ws, buf, binary),
        error: (err) => {
          this.#ready.reject(err);
          if (this.listenerCount('error') > 0) this.emit('error', err);
        },
        close: (code, reason) => this.#onClose(code, reason),
      },
    );
    this.#pending = new PendingRequests(this.#link.clock);
  }

  get connected(): boolean {
    return this.#identified && this.#link.isOpen;
  }

  /** Connects and identifies. Resolves on IDENTIFIED (a RESUMED may follow at once). */
  connect(): Promise<void> {
    this.#closed = false;
    return this.#ready.wait(() => this.#link.open());
  }

  #onMessage(ws: WebSocket, buf: Buffer, binary: boolean): void {
    if (binary) return;
    this.#lastReceived = this.#link.clock.now();
    const res = decode(buf.toString('utf8'));
    if (!res.ok) return;
    const { op, d } = res.env;
    switch (op) {
      case ServerOp.HELLO:
        this.#onHello(ws, d);
        this.emit('message', op, toPlain(d));
        return;
      case ServerOp.FORBIDDEN:
        this.emit('forbidden', typeof d === 'string' ? d : '');
        this.#ready.reject(new DiscodoTracebackError(op, 'FORBIDDEN', typeof d === 'string' ? d : 'forbidden'));
        this.emit('message', op, toPlain(d));
        return;
      case ServerOp.IDENTIFIED:
        this.#identified = true;
        this.#link.succeeded();
        this.voiceClients.clear();
        this.emit('identified');
        this.#ready.resolve();
        this.emit('message', op, toPlain(d));
        return;
      default:
        this.#onFrame(op, d);
    }
  }

  #onClose(code: number, reason: string): void {
    this.#identified = false;
    this.#ready.forget();
    this.#stopHeartbeat?.();
    this.#stopHeartbeat = undefined;
    this.#pending.failAll(new DiscodoTracebackError('', 'DISCONNECTED', `connection closed (${code} ${reason})`));
    this.emit('close', code, reason);
    this.#ready.reject(new Error(`closed before IDENTIFIED: ${code} ${reason}`));
    // Refusals, bad frames and a taken-over session (the close-code table) would be refused again.
    if (this.#closed || !this.#link.shouldRetry(code, reason)) return;
    const { attempt, delay } = this.#link.reconnectLater(() => {
      if (!this.#closed) this.connect().catch(() => undefined);
    });
    this.emit('reconnecting', attempt, delay);
  }

  #onHello(ws: WebSocket, d: unknown): void {
    const h = isObj(d) ? d : {};
    const seconds = Number(h.heartbeat_interval);
    this.#heartbeatMs = Number.isFinite(seconds) && seconds > 0 ? Math.max(100, seconds * 1000) : 15_000;
    this.emit('hello', { heartbeatInterval: this.#heartbeatMs, version: typeof h.version === 'string' ? h.version : '' });
    ws.send(encode.identify(this.#userId, this.#shardId));
    this.#stopHeartbeat?.();
    const tick = (): void => {
      this.#stopHeartbeat = this.#link.clock.wake(this.#heartbeatMs, () => {
        tick();
        this.#beat(ws);
      });
    };
    tick();
  }

  #beat(ws: WebSocket): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    // Nothing at all from the node for three intervals: the link is dead.
    if (this.#link.clock.now() - this.#lastReceived > 3 * this.#heartbeatMs) {
      ws.terminate();
      return;
    }
    this.#lastHeartbeatAt = this.#link.clock.now();
    ws.send(encode.heartbeat(this.#lastHeartbeatAt));
  }

  #onFrame(op: string, d: unknown): void {
    const gid = isObj(d) ? readSnowflake(d.guild_id) : undefined;
    const guildId = gid === undefined ? undefined : snowflakeKey(gid);
    const text = (v: unknown): string | null => {
      const s = readSnowflake(v);
      return s === undefined ? null : snowflakeKey(s);
    };
    switch (op) {
      case ServerOp.HEARTBEAT_ACK:
        this.emit('heartbeatAck', this.#lastHeartbeatAt > 0 ? this.#link.clock.now() - this.#lastHeartbeatAt : 0);
        break;
      case ServerOp.RESUMED: {
        const list = isObj(d) ? readResumed(d.voice_clients) : [];
        this.voiceClients.clear();
        for (const vc of list) this.voiceClients.set(vc.guildId, vc);
        this.emit('resumed', list);
        break;
      }
      case ServerOp.VC_CREATED:
        if (guildId !== undefined && isObj(d)) {
          const vc: VoiceClientInfo = { guildId, id: typeof d.id === 'string' ? d.id : '', channelId: null };
          this.voiceClients.set(guildId, vc);
          this.emit('vcCreated', vc);
        }
        break;
      case ServerOp.VC_CHANNEL_EDITED:
        if (guildId !== undefined && isObj(d)) {
          const channelId = text(d.channel_id);
          const vc = this.voiceClients.get(guildId);
          if (vc) vc.channelId = channelId;
          this.emit('vcChannelEdited', { guildId, channelId });
        }
        break;
      case ServerOp.VC_DESTROYED:
        if (guildId !== undefined) {
          this.voiceClients.delete(guildId);
          this.emit('vcDestroyed', { guildId });
        }
        break;
      default:
        if (isObj(d) && isObj(d.traceback)) {
          const [code, message] = Object.entries(d.traceback)[0] ?? ['UNKNOWN', ''];
          this.emit('traceback', new DiscodoTracebackError(op, code, String(message), guildId));
        }
    }
    this.#settleWaiters(op, d);
    this.emit('message', op, toPlain(d));
  }

  #send(frame: string): void {
    if (!this.#identified || !this.#link.send(frame)) throw new DiscodoTracebackError('', 'DISCONNECTED', 'not connected');
  }

  /**
   * Forwards a Discord gateway event. Pass the gateway frame's raw text (best: ids keep
   * their digits) or `{t, d}`. Only VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE are
   * sent; returns whether it was.
   */
  forwardDiscordEvent(payload: string | { t: string; d: unknown }): boolean {
    if (typeof payload === 'string') {
      const v = parseLossless(payload);
      if (!isObj(v) || typeof v.t !== 'string') throw new TypeError('a gateway payload {t, d} was expected');
      if (!VOICE_EVENTS.has(v.t)) return false;
      this.#send(encodeRaw(ClientOp.DISCORD_EVENT, payload));
      return true;
    }
    if (!VOICE_EVENTS.has(payload.t)) return false;
    this.#send(encodeFrame(ClientOp.DISCORD_EVENT, { t: payload.t, d: payload.d }));
    return true;
  }

  /** The node's load, memory and counts (STATUS). */
  getStatus(): Promise<Record<string, unknown>> {
    return this.#request(encodeFrame(ClientOp.GET_STATUS, null), (op, d) => op === ServerOp.STATUS || isTraceback(op, d, ClientOp.GET_STATUS)) as Promise<
      Record<string, unknown>
    >;
  }

  /** The player state of a guild's voice client (always idle: Muster plays nothing). */
  getState(guildId: string | bigint): Promise<Record<string, unknown>> {
    return this.#guildRequest(ClientOp.getState, ClientOp.getState, guildId) as Promise<Record<string, unknown>>;
  }

  /** The queue of a guild's voice client (always empty). */
  getQueue(guildId: string | bigint): Promise<{ guild_id: unknown; entries: unknown[] }> {
    return this.#guildRequest(ClientOp.getQueue, ClientOp.getQueue, guildId) as Promise<{ guild_id: unknown; entries: unknown[] }>;
  }

  /** Asks the node to destroy a guild's voice client; resolves on VC_DESTROYED. */
  async destroyVoiceClient(guildId: string | bigint): Promise<void> {
    await this.#guildRequest(ClientOp.VC_DESTROY, ServerOp.VC_DESTROYED, guildId);
  }

  #guildRequest(op: string, answer: string, guildId: string | bigint): Promise<unknown> {
    const g = toSnowflake(guildId);
    const key = snowflakeKey(g);
    return this.#request(encodeFrame(op, { guild_id: g }), (rop, d) => {
      if (rop !== answer && rop !== op) return false;
      const s = isObj(d) ? readSnowflake(d.guild_id) : undefined;
      return s !== undefined && snowflakeKey(s) === key;
    });
  }

  #request(frame: string, match: (op: string, d: unknown) => boolean): Promise<unknown> {
    const ms = this.#opts.requestTimeout ?? 10_000;
    const w: Waiter = { match };
    const p = this.#pending.wait(w, ms, () => new DiscodoTracebackError('', 'CLIENT_TIMEOUT', `no answer within ${ms} ms`));
    try {
      this.#send(frame);
    } catch (err) {
      this.#pending.reject(w, err as Error);
    }
    return p;
  }

  #settleWaiters(op: string, d: unknown): void {
    const w = this.#pending.find((x) => x.match(op, d));
    if (!w) return;
    if (isObj(d) && isObj(d.traceback)) {
      const [code, message] = Object.entries(d.traceback)[0] ?? ['UNKNOWN', ''];
      const g = readSnowflake(d.guild_id);
      this.#pending.reject(w, new DiscodoTracebackError(op, code, String(message), g === undefined ? undefined : snowflakeKey(g)));
    } else {
      this.#pending.resolve(w, toPlain(d));
    }
  }

  /** Closes with 1000. The node keeps the session for its vcTimeout; no reconnect follows. */
  close(): Promise<void> {
    this.#closed = true;
    return this.#link.close((ws) => ws.close(1000, 'client closing'));
  }
}

function isTraceback(op: string, d: unknown, want: string): boolean {
  return op === want && isObj(d) && isObj(d.traceback);
}

/** RESUMED's voice clients, in either form: `[[guild, channel], …]` or `{"<guild>": {id, channel}}`. */
function readResumed(v: unknown): VoiceClientInfo[] {
  const id = (x: unknown): string | null => {
    const s = readSnowflake(x);
    return s === undefined ? null : snowflakeKey(s);
  };
  if (Array.isArray(v)) {
    return v.flatMap((pair) => {
      if (!Array.isArray(pair)) return [];
      const g = id(pair[0]);
      return g === null ? [] : [{ guildId: g, id: '', channelId: id(pair[1]) }];
    });
  }
  if (isObj(v)) {
    return Object.entries(v).map(([g, data]) => ({
      guildId: g,
      id: isObj(data) && typeof data.id === 'string' ? data.id : '',
      channelId: isObj(data) ? id(data.channel) : null,
    }));
  }
  return [];
}

/** Lossless values to plain ones for the caller: integers beyond 2^53 become strings of their digits, other numbers numbers. */
function toPlain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toPlain);
  if (isObj(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      Object.defineProperty(out, k, { value: toPlain(x), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  if (isLosslessNumber(v)) {
    const s = v.value;
    const n = Number(s);
    return Number.isSafeInteger(n) || !/^-?\d+$/.test(s) ? n : s;
  }
  return v;
}
