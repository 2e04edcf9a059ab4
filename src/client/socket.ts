import WebSocket from 'ws';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { systemClock, type ClientClock } from './clock.js';

/**
 * The one reconnecting socket under every Muster client. It owns the `ws` socket and
 * its generation (events of a replaced socket are ignored), the reconnect timer on the
 * injected clock, the jittered backoff and its attempt counter, and the retry decision:
 * after a close, the dialect's close-code table (`retryable`, in
 * `protocols/<dialect>/messages.ts`) says whether the same connection would be refused
 * again. Codes a table does not list (1006, an abnormal drop) are retried. What a
 * connection means (handshake, heartbeats, sessions) stays with each client.
 */

/** A dialect's close-code table: code → at least whether a reconnect may help. */
export type CloseCodeTable = Readonly<Record<number, { readonly retryable: boolean }>>;

export type WebSocketConstructor = new (url: string, options: WebSocket.ClientOptions) => WebSocket;

export interface SocketHandlers {
  open?(ws: WebSocket): void;
  message(data: Buffer, isBinary: boolean, ws: WebSocket): void;
  error?(err: Error, ws: WebSocket): void;
  close(code: number, reason: string, ws: WebSocket): void;
}

export interface ReconnectingSocketOptions {
  url: string;
  /** Options for each new socket (headers may change between attempts). */
  socketOptions?: () => WebSocket.ClientOptions;
  /** The WebSocket class (default `ws`). */
  WebSocket?: WebSocketConstructor;
  closeCodes: CloseCodeTable;
  /** The client's own verdict on a close, asked before the table; undefined defers to the table. */
  retry?: (code: number, reason: string) => boolean | undefined;
  /** false: never reconnect. Otherwise backoff settings over `defaultBackoff`. */
  reconnect?: false | BackoffOptions | undefined;
  defaultBackoff?: BackoffOptions;
  clock?: ClientClock;
}

export class ReconnectingSocket {
  readonly #opts: ReconnectingSocketOptions;
  readonly #handlers: SocketHandlers;
  readonly #clock: ClientClock;
  #ws: WebSocket | undefined;
  #gen = 0;
  #attempt = 0;
  #cancelReconnect: (() => void) | undefined;

  constructor(opts: ReconnectingSocketOptions, handlers: SocketHandlers) {
    this.#opts = opts;
    this.#handlers = handlers;
    this.#clock = opts.clock ?? systemClock;
  }

  get clock(): ClientClock {
    return this.#clock;
  }

  /** The current socket (undefined once closed by the peer or detached). */
  get socket(): WebSocket | undefined {
    return this.#ws;
  }

  get isOpen(): boolean {
    return this.#ws?.readyState === WebSocket.OPEN;
  }

  /** A reconnect is scheduled. */
  get reconnecting(): boolean {
    return this.#cancelReconnect !== undefined;
  }

  /** Opens a new socket; the previous one, if any, is forgotten (its events are ignored). */
  open(): WebSocket {
    this.cancelReconnect();
    const gen = ++this.#gen;
    const WS = this.#opts.WebSocket ?? (WebSocket as unknown as WebSocketConstructor);
    const ws = new WS(this.#opts.url, this.#opts.socketOptions?.() ?? {});
    this.#ws = ws;
    const h = this.#handlers;
    ws.on('open', () => {
      if (gen === this.#gen) h.open?.(ws);
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (gen === this.#gen) h.message(data, isBinary, ws);
    });
    ws.on('error', (err: Error) => {
      if (gen === this.#gen) h.error?.(err, ws);
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (gen !== this.#gen) return;
      this.#ws = undefined;
      h.close(code, reason.toString(), ws);
    });
    return ws;
  }

  /** Sends on the current socket if it is open; says whether it did. */
  send(text: string): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(text);
    return true;
  }

  /** Whether a close with this code should be followed by a reconnect. */
  shouldRetry(code: number, reason: string): boolean {
    if (this.#opts.reconnect === false) return false;
    return this.#opts.retry?.(code, reason) ?? this.#opts.closeCodes[code]?.retryable ?? true;
  }

  /** The connection is established (identified, registered, resumed): the next drop starts the backoff over. */
  succeeded(): void {
    this.#attempt = 0;
  }

  /**
   * Schedules `reopen` after the next backoff delay (at least `minDelay`). Returns the
   * attempt number (1 for the first retry) and the delay.
   */
  reconnectLater(reopen: () => void, minDelay = 0): { attempt: number; delay: number } {
    this.cancelReconnect();
    const backoff = (this.#opts.reconnect === false ? undefined : this.#opts.reconnect) ?? this.#opts.defaultBackoff ?? {};
    const delay = Math.max(minDelay, backoffDelay(this.#attempt++, backoff));
    const cancel = this.#clock.wake(delay, () => {
      if (this.#cancelReconnect !== cancel) return;
      this.#cancelReconnect = undefined;
      reopen();
    });
    this.#cancelReconnect = cancel;
    return { attempt: this.#attempt, delay };
  }

  cancelReconnect(): void {
    const cancel = this.#cancelReconnect;
    this.#cancelReconnect = undefined;
    cancel?.();
  }

  /**
   * Ends the current socket: `goodbye` runs on an open socket (send a farewell, close with
   * a code), a socket still connecting is terminated. Resolves once it has closed.
   * `detach` forgets the socket first, so its close event never reaches the handlers.
   */
  close(goodbye: (ws: WebSocket) => void, opts: { detach?: boolean } = {}): Promise<void> {
    this.cancelReconnect();
    const ws = this.#ws;
    if (opts.detach) {
      this.#ws = undefined;
      this.#gen++;
    }
    if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.OPEN) goodbye(ws);
      else ws.terminate();
    });
  }
}
