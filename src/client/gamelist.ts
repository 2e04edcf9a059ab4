import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import {
  decodeFromMaster,
  encodeRegister,
  encodeResponse,
  Int64Counter,
  RegistrationError,
  type JoinMessage,
  type ResponseError,
  type ResponseMessage,
  type ServerInfo,
} from '../protocols/gamelist/messages.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';

/**
 * A game server (GS) client for the gamelist dialect. It registers with the
 * masterserver, re-registers on a timer to keep its entry fresh, answers player join
 * requests through a callback, and reconnects with jittered backoff. It answers the
 * masterserver's pings (the `ws` library does so automatically).
 *
 * Events: `registered` ({serverId, first}), `registrationFailed` (ResponseError),
 * `join` (JoinRequest, JoinDecision), `close` (code, reason),
 * `reconnecting` (attempt, delayMs), `error` (Error).
 */
export type GameServerInfo = ServerInfo;

export interface JoinRequest {
  sessionToken: string;
  username: string;
  clantag: string;
  /** The conversation id the masterserver picked (UINT32). */
  conv: number;
}

export interface JoinDecision {
  success: boolean;
  error?: ResponseError;
}

export interface GameServerClientOptions {
  /** e.g. ws://127.0.0.1:7373/v2/server/ws */
  url: string;
  regToken: string;
  info: GameServerInfo;
  /** Re-register this often, ms (default 10000; keep it well under the server's registrationTtl). */
  refreshInterval?: number;
  /** Decides a player join. Default: accept. A throw or a rejection answers success: false. */
  onJoin?: (req: JoinRequest) => JoinDecision | Promise<JoinDecision>;
  /** false to stay down after a drop; otherwise backoff settings. */
  reconnect?: false | BackoffOptions;
  /** How long to wait for a registration answer, ms (default 10000). */
  responseTimeout?: number;
  /** Extra options for the `ws` socket (e.g. `autoPong: false` in tests). */
  ws?: WebSocket.ClientOptions;
}

/** A registration the masterserver refused, or one that could not be sent or answered. */
export class RegistrationFailedError extends Error {
  override readonly name = 'RegistrationFailedError';
  constructor(
    readonly type: number | 'DISCONNECTED' | 'TIMEOUT',
    message: string,
  ) {
    super(message);
  }
}

/** The error type a GS answers with when its onJoin callback throws. */
export const JOIN_CALLBACK_FAILED = 0;

interface Waiter {
  resolve: (r: ResponseMessage) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class GameServerClient extends EventEmitter {
  readonly #opts: GameServerClientOptions;
  #info: GameServerInfo;
  #ws: WebSocket | undefined;
  #serverId: string | undefined;
  #registered = false;
  #closed = false;
  #attempt = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  readonly #ids = new Int64Counter();
  readonly #waiters = new Map<string, Waiter>();
  #ready: Promise<string> | undefined;

  constructor(opts: GameServerClientOptions) {
    super();
    this.#opts = opts;
    this.#info = { ...opts.info };
  }

  /** The server_id the masterserver gave, once registered. */
  get serverId(): string | undefined {
    return this.#serverId;
  }

  /** Registered and connected. */
  get listed(): boolean {
    return this.#registered && this.#ws?.readyState === WebSocket.OPEN;
  }

  get info(): Readonly<GameServerInfo> {
    return this.#info;
  }

  /** Connects and registers. Resolves with the server_id once the first registration succeeds. */
  connect(): Promise<string> {
    this.#closed = false;
    this.#ready ??= this.#open();
    return this.#ready;
  }

  /** Changes the info (players, map, …) and re-registers at once. */
  update(info: Partial<GameServerInfo>): Promise<ResponseMessage> {
    this.#info = { ...this.#info, ...info };
    if (info.password === undefined && 'password' in info) delete this.#info.password;
    return this.register();
  }

  /** Sends a registration now and resolves with the answer (success or not). */
  register(): Promise<ResponseMessage> {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new RegistrationFailedError('DISCONNECTED', 'not connected'));
    const id = this.#ids.next();
    const p = new Promise<ResponseMessage>((resolve, reject) => {
      const ms = this.#opts.responseTimeout ?? 10_000;
      const timer = setTimeout(() => {
        this.#waiters.delete(id);
        reject(new RegistrationFailedError('TIMEOUT', `no answer within ${ms} ms`));
      }, ms);
      this.#waiters.set(id, { resolve, reject, timer });
    });
    ws.send(encodeRegister(id, this.#info, this.#opts.regToken));
    return p.then((r) => {
      this.#onRegistration(r);
      return r;
    });
  }

  #onRegistration(r: ResponseMessage): void {
    if (r.success) {
      const first = r.serverId !== undefined;
      if (r.serverId !== undefined) this.#serverId = r.serverId;
      this.#registered = true;
      this.#attempt = 0;
      this.#ensureRefresh();
      this.emit('registered', { serverId: this.#serverId, first });
      return;
    }
    this.#registered = false;
    const err = r.error ?? { type: -1, msg: 'registration refused' };
    // A wrong token stays wrong: stop refreshing rather than run into maxFailedRegistrations.
    // Otherwise (server limit) try again on the timer.
    if (err.type === RegistrationError.INVALID_TOKEN) this.#stopRefresh();
    else this.#ensureRefresh();
    this.emit('registrationFailed', err);
  }

  #open(): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(this.#opts.url, this.#opts.ws ?? {});
      this.#ws = ws;
      let settled = false;
      const settle = (err?: Error, serverId?: string): void => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve(serverId as string);
      };
      ws.on('open', () => {
        this.register().then(
          (r) => {
            if (r.success) settle(undefined, this.#serverId);
            else settle(new RegistrationFailedError(r.error?.type ?? -1, r.error?.msg ?? 'registration refused'));
          },
          (err: Error) => {
            // No answer in time: keep trying on the refresh timer.
            if (this.#ws === ws && ws.readyState === WebSocket.OPEN) this.#ensureRefresh();
            settle(err);
          },
        );
      });
      ws.on('message', (data: Buffer, isBinary: boolean) => this.#onFrame(ws, data, isBinary));
      ws.on('error', (err) => {
        settle(err);
        if (this.listenerCount('error') > 0) this.emit('error', err);
      });
      ws.on('close', (code, reasonBuf) => {
        const reason = reasonBuf.toString();
        if (this.#ws === ws) this.#ws = undefined;
        this.#registered = false;
        this.#ready = undefined;
        this.#stopRefresh();
        for (const [id, w] of this.#waiters) {
          clearTimeout(w.timer);
          this.#waiters.delete(id);
          w.reject(new RegistrationFailedError('DISCONNECTED', `connection closed (${code} ${reason})`));
        }
        this.emit('close', code, reason);
        settle(new RegistrationFailedError('DISCONNECTED', `closed before registering: ${code} ${reason}`));
        this.#scheduleReconnect(code, reason);
      });
    });
  }

  #onFrame(ws: WebSocket, data: Buffer, isBinary: boolean): void {
    // The same strict rules as the masterserver's, in the other direction.
    if (isBinary) {
      ws.close(1003, 'binary frames are not accepted');
      return;
    }
    const res = decodeFromMaster(data.toString('utf8'));
    if (!res.ok) {
      ws.close(res.code, res.detail.slice(0, 120));
      return;
    }
    const msg = res.msg;
    switch (msg.type) {
      case -1: {
        const w = this.#waiters.get(msg.id);
        if (!w) return; // an unknown id is ignored
        clearTimeout(w.timer);
        this.#waiters.delete(msg.id);
        w.resolve(msg);
        return;
      }
      case -2:
        return; // this client never sends type 2: an unknown id
      case 2:
        void this.#answerJoin(ws, msg);
        return;
    }
  }

  async #answerJoin(ws: WebSocket, msg: JoinMessage): Promise<void> {
    const req: JoinRequest = { sessionToken: msg.sessionToken, username: msg.username, clantag: msg.clantag, conv: msg.conv };
    let decision: JoinDecision;
    try {
      decision = this.#opts.onJoin ? await this.#opts.onJoin(req) : { success: true };
    } catch (err) {
      decision = { success: false, error: { type: JOIN_CALLBACK_FAILED, msg: (err as Error)?.message ?? String(err) } };
    }
    this.emit('join', req, decision);
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(encodeResponse(-2, msg.id, decision.success, decision.success ? undefined : decision.error));
  }

  /** Starts the re-registration timer (after the first answer), if it is not running. */
  #ensureRefresh(): void {
    if (this.#refreshTimer || this.#closed) return;
    this.#refreshTimer = setInterval(() => {
      this.register().catch(() => undefined);
    }, this.#opts.refreshInterval ?? 10_000);
  }

  #stopRefresh(): void {
    if (this.#refreshTimer) clearInterval(this.#refreshTimer);
    this.#refreshTimer = undefined;
  }

  #scheduleReconnect(code: number, reason: string): void {
    if (this.#closed || this.#opts.reconnect === false) return;
    // Bad frames, and 1008 for anything but a kick (a bad token, a wrong schema), will fail again.
    if (code === 1003 || code === 1007 || (code === 1008 && !reason.startsWith('kicked'))) return;
    const delay = backoffDelay(this.#attempt++, this.#opts.reconnect ?? {});
    this.emit('reconnecting', this.#attempt, delay);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed) return;
      this.connect().catch(() => undefined);
    }, delay);
  }

  /** Closes (1000) and stays down; the masterserver removes the entry at once. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopRefresh();
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    const ws = this.#ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'game server closing');
      else ws.terminate();
    });
  }
}
