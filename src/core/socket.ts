import type { WebSocket } from 'ws';

/**
 * The narrow socket a Connection writes to: what the core needs of a WebSocket and
 * nothing more. `WsSocket` adapts a `ws` WebSocket; tests use a fake (see
 * test/support/fake-socket.ts), so a dialect runs on the core with no network.
 */
export interface Socket {
  /** Queues one text frame (a Buffer is sent as text too). */
  sendText(data: Buffer | string): void;
  /** Starts the close handshake (the reason already fits in 123 bytes). May throw if the socket is gone. */
  close(code: number, reason: string): void;
  /** Drops the connection at once, without a close frame. */
  terminate(): void;
  /** Sends a WebSocket ping (its pong reaches the transport). May throw if the socket is gone. */
  ping(): void;
  /** Bytes queued and not yet handed to the kernel. */
  readonly bufferedAmount: number;
  /** True while frames can be sent (the handshake is done, no close has begun). */
  readonly open: boolean;
  /** Holds writes until `uncork()`, so frames sent in one tick go out in one write. Returns false if it cannot. */
  cork(): boolean;
  uncork(): void;
  /** The largest frame the socket accepts from the peer from now on; false if it cannot enforce one. */
  setFrameLimit(bytes: number): boolean;
  /** The object under the adapter (the `ws` WebSocket), for the transport and raw tests. */
  readonly raw: unknown;
}

/** True for a Socket; false for a bare `ws` WebSocket (which Connection adapts). */
export function isSocket(x: unknown): x is Socket {
  return typeof (x as Partial<Socket>).setFrameLimit === 'function' && typeof (x as Partial<Socket>).cork === 'function';
}

interface CorkableStream {
  cork(): void;
  uncork(): void;
}

/** How every text frame goes out: never compressed, a Buffer as text. */
export const TEXT_FRAME = { binary: false, compress: false } as const;

/** Corks the `ws` WebSocket's TCP socket; false when it has none (not open yet, or gone). */
export function corkWs(ws: WebSocket): boolean {
  const stream = (ws as unknown as { _socket?: CorkableStream })._socket;
  if (!stream) return false;
  stream.cork();
  return true;
}

export function uncorkWs(ws: WebSocket): void {
  (ws as unknown as { _socket?: CorkableStream })._socket?.uncork();
}

/** A `ws` WebSocket as a Socket. */
export class WsSocket implements Socket {
  readonly #ws: WebSocket;

  constructor(ws: WebSocket) {
    this.#ws = ws;
  }

  get raw(): WebSocket {
    return this.#ws;
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  get open(): boolean {
    return this.#ws.readyState === 1;
  }

  sendText(data: Buffer | string): void {
    this.#ws.send(data, TEXT_FRAME);
  }

  close(code: number, reason: string): void {
    this.#ws.close(code, reason);
  }

  terminate(): void {
    this.#ws.terminate();
  }

  ping(): void {
    this.#ws.ping();
  }

  cork(): boolean {
    return corkWs(this.#ws);
  }

  uncork(): void {
    uncorkWs(this.#ws);
  }

  setFrameLimit(bytes: number): boolean {
    return setFrameLimit(this.#ws, bytes);
  }
}

/**
 * Sets the largest frame `ws` accepts on this socket. `ws` takes one limit per server
 * (maxPayload); its receiver checks `_maxPayload` against each frame header's length
 * before buffering the payload, and closes with 1009 when it is over. Returns false
 * when this version of `ws` has no such field (then only the dialect's own check
 * applies, after the frame is buffered).
 */
export function setFrameLimit(ws: WebSocket, bytes: number): boolean {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number') return false;
  receiver._maxPayload = bytes;
  return true;
}
