import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import {
  decodeFromMaster,
  encodeRegister,
  encodeResponse,
  Int64Counter,
  gamelistCloseCodes,
  RegistrationError,
  type JoinMessage,
  type ResponseError,
  type ResponseMessage,
  type ServerInfo,
} from '../protocols/gamelist/messages.js';
import type { BackoffOptions } from './backoff.js';
import type { ClientClock } from './clock.js';
import { PendingRequests } from './pending.js';
import { ReconnectingSocket } from './socket.js';
import { ReadyGate } from './ready.js';

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
  /** Time source for answer deadlines, re-registration and reconnect delays (default: real time). */
  clock?: ClientClock;
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

export class GameServerClient extends EventEmitter {
  readonly #opts: GameServerClientOptions;
  readonly #link: ReconnectingSocket;
  #info: GameServerInfo;
  #serverId: string | undefined;
  #registered = false;
  #closed = false;
  #stopRefreshTimer: (() => void) | undefined;
  readonly #ids = new Int64Counter();
  readonly #pending: PendingRequests<string, ResponseMessage>;
  readonly #ready = new ReadyGate<string>();

  constructor(opts: GameServerClientOptions) {
    super();
    this.#opts = opts;
    this.#info = { ...opts.info };
    this.#link = new ReconnectingSocket(
      {
        url: opts.url,
        socketOptions: () => opts.ws ?? {},
        closeCodes: gamelistCloseCodes,
        // 1008 is a refusal (a bad token, a wrong schema) unless it is an operator's kick.
        retry: (code, reason) => (code === 1008 && reason.startsWith('kicked') ? true : undefined),
        reconnect: opts.reconnect,
        ...(opts.clock ? { clock: opts.clock } : {}),
      },
      {
        open: (ws) => this.#onOpen(ws),
        message: (data, isBinary, ws) => this.#onFrame(ws, data, isBinary),
        error: (err) => {
          this.#ready.reject(err);
          if (this.listenerCount('error') > 0) this.emit('error', err);
        },
        close: (code, reason) => this.#onClose(code, reason),
      },
    );
    this.#pending = new PendingRequests(this.#link.clock);
  }

  /** The server_id the masterserver gave, once registered. */
  get serverId(): string | undefined {
    return this.#serverId;
  }

  /** Registered and connected. */
  get listed(): boolean {
    return this.#registered && this.#link.isOpen;
  }

  get info(): Readonly<GameServerInfo> {
    return this.#info;
  }

  /** Connects and registers. Resolves with the server_id once the first registration succeeds. */
  connect(): Promise<string> {
    this.#closed = false;
    return this.#ready.wait(() => this.#link.open());
  }

  /** Changes the info (players, map, …) and re-registers at once. */
  update(info: Partial<GameServerInfo>): Promise<ResponseMessage> {
    this.#info = { ...this.#info, ...info };
    if (info.password === undefined && 'password' in info) delete this.#info.password;
    return this.register();
  }

  /** Sends a registration now and resolves with the answer (success or not). */
  register(): Promise<ResponseMessage> {
    if (!this.#link.isOpen) return Promise.reject(new RegistrationFailedError('DISCONNECTED', 'not connected'));
    const id = this.#ids.next();
    const ms = this.#opts.responseTimeout ?? 10_000;
    const p = this.#pending.wait(id, ms, () => new RegistrationFailedError('TIMEOUT', `no answer within ${ms} ms`));
    this.#link.send(encodeRegister(id, this.#info, this.#opts.regToken));
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
      this.#link.succeeded();
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

  #onOpen(ws: WebSocket): void {
    this.register().then(
      (r) => {
        if (r.success) this.#ready.resolve(this.#serverId as string);
        else this.#ready.reject(new RegistrationFailedError(r.error?.type ?? -1, r.error?.msg ?? 'registration refused'));
      },
      (err: Error) => {
        // No answer in time: keep trying on the refresh timer.
        if (this.#link.socket === ws && ws.readyState === WebSocket.OPEN) this.#ensureRefresh();
        this.#ready.reject(err);
      },
    );
  }

  #onClose(code: number, reason: string): void {
    this.#registered = false;
    this.#ready.forget();
    this.#stopRefresh();
    this.#pending.failAll(new RegistrationFailedError('DISCONNECTED', `connection closed (${code} ${reason})`));
    this.emit('close', code, reason);
    this.#ready.reject(new RegistrationFailedError('DISCONNECTED', `closed before registering: ${code} ${reason}`));
    // Bad frames and refusals (the close-code table) will fail again.
    if (this.#closed || !this.#link.shouldRetry(code, reason)) return;
    const { attempt, delay } = this.#link.reconnectLater(() => {
      if (!this.#closed) this.connect().catch(() => undefined);
    });
    this.emit('reconnecting', attempt, delay);
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
      case -1:
        this.#pending.resolve(msg.id, msg); // an unknown id is ignored
        return;
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
    if (this.#stopRefreshTimer || this.#closed) return;
    const every = this.#opts.refreshInterval ?? 10_000;
    const tick = (): void => {
      this.#stopRefreshTimer = this.#link.clock.wake(every, () => {
        tick();
        this.register().catch(() => undefined);
      });
    };
    tick();
  }

  #stopRefresh(): void {
    this.#stopRefreshTimer?.();
    this.#stopRefreshTimer = undefined;
  }

  /** Closes (1000) and stays down; the masterserver removes the entry at once. */
  close(): Promise<void> {
    this.#closed = true;
    this.#stopRefresh();
    return this.#link.close((ws) => ws.close(1000, 'game server closing'));
  }
}
