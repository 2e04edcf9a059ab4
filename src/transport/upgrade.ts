import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import { Connection, connectionShared, type ConnectionShared } from '../core/connection.js';
import { corkWs, setFrameLimit, TEXT_FRAME, uncorkWs, type Socket } from '../core/socket.js';
import { PRE_AUTH_SOCKET_FACTOR, type ConnectionHandler, type Dialect } from '../core/dialect.js';
import { CloseCode } from '../common/errors.js';
import type { CoreMetrics } from '../core/metrics.js';
import { ConnectBurst } from '../core/connect-burst.js';
import { PeerLog } from '../core/peer-log.js';
import { textFrame } from './frame.js';
import type { Scheduler, Timer } from '../core/scheduler.js';

/**
 * The WebSocket side of the one listener: upgrades are routed by path to the dialect
 * mounted there, after the listener-wide limits (connections, handshakes per IP per
 * minute) and the dialect's own authorization.
 */
export interface TransportLimits {
  maxPayload: number;
  maxConnections: number;
  handshakesPerIpPerMinute: number;
}

export interface TransportOptions {
  server: Server;
  dialects: Dialect[];
  limits: TransportLimits;
  scheduler: Scheduler;
  metrics: CoreMetrics;
  logger: Logger;
  /** The configured secrets, scrubbed from frames logged at trace. */
  secrets?: () => readonly string[];
  /**
   * Told when connections start and stop arriving in a burst (core/connect-burst.ts);
   * the server holds V8's young generation from a burst's start (young-gen.ts).
   */
  onConnectBurst?: (on: boolean) => void;
}

/** The close of a kick when the dialect has no goodbye of its own (1008, as every dialect's kick). */
export const KICK_REASON = 'kicked by an operator';

const REFUSAL_REASONS = ['not_found', 'shutting_down', 'max_connections', 'rate_limited', 'unauthorized', 'client_gone', 'bad_handshake'] as const;
type RefusalReason = (typeof REFUSAL_REASONS)[number];

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

/**
 * The WebSocket the transport's server makes: `ws`'s own, plus the two references its
 * listeners need, and the core's `Socket` itself (no adapter object per connection).
 * The listeners are the transport's (four functions for every socket, see
 * `#listeners`), not four closures and a context per socket: they find the connection
 * and the dialect's handler here, on `this`.
 */
class TransportSocket extends WebSocket implements Socket {
  conn: Connection | undefined = undefined;
  handler: ConnectionHandler | undefined = undefined;

  get raw(): WebSocket {
    return this;
  }

  get open(): boolean {
    return this.readyState === WebSocket.OPEN;
  }

  /**
   * The frame goes to the TCP socket as one buffer (textFrame), not through `ws`'s
   * sender: this server never negotiates permessage-deflate, so the sender has no queue
   * a frame could overtake, and its pings and closes are written straight to the same
   * socket, in order. Not open: `ws`'s own send, which knows what to do then.
   */
  sendText(data: Buffer | string): void {
    const tcp = (this as unknown as { _socket: Duplex | null })._socket;
    if (tcp === null || this.readyState !== WebSocket.OPEN) {
      this.send(data, TEXT_FRAME);
      return;
    }
    tcp.write(textFrame(data));
  }

  cork(): boolean {
    return corkWs(this);
  }

  uncork(): void {
    uncorkWs(this);
  }

  setFrameLimit(bytes: number): boolean {
    return setFrameLimit(this, bytes);
  }
}

/** `this` is always a TransportSocket (the server makes no other kind). */
interface SocketListeners {
  message(this: WebSocket, data: Buffer, isBinary: boolean): void;
  pong(this: WebSocket): void;
  error(this: WebSocket, err: Error): void;
  close(this: WebSocket, code: number, reasonBuf: Buffer): void;
}

export class Transport {
  readonly #opts: TransportOptions;
  readonly #wss: WebSocketServer;
  readonly #byPath = new Map<string, Dialect>();
  /** Open connections by id (a connection's dialect is `#byName.get(conn.dialect)`). */
  readonly #conns = new Map<string, Connection>();
  readonly #byName = new Map<string, Dialect>();
  readonly #handshakes = new Map<string, { windowStart: number; count: number }>();
  readonly #sweep: Timer;
  readonly #burst = new ConnectBurst();
  #burstCheck: Timer | undefined;
  #accepting = true;
  /** Waiters for the last connection to close (shutdown). */
  readonly #drained = new Set<() => void>();
  #upgrading = 0;
  readonly #peerLog: PeerLog;
  readonly #listeners: SocketListeners;

  constructor(opts: TransportOptions) {
    this.#opts = opts;
    this.#peerLog = new PeerLog({ logger: opts.logger, now: () => opts.scheduler.now(), ...(opts.secrets ? { secrets: opts.secrets } : {}) });
    for (const d of opts.dialects) {
      this.#byPath.set(d.path, d);
      this.#byName.set(d.name, d);
    }
    // Every reason is exported from the start, at 0.
    for (const reason of REFUSAL_REASONS) opts.metrics.upgradesRefused.inc({ reason }, 0);
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.limits.maxPayload,
      perMessageDeflate: false,
      clientTracking: false,
      WebSocket: TransportSocket,
    });
    this.#listeners = this.#makeListeners();
    opts.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head));
    this.#sweep = opts.scheduler.every(60_000, () => this.#sweepHandshakes());
  }

  get size(): number {
    return this.#conns.size;
  }

  connections(): Connection[] {
    return [...this.#conns.values()];
  }

  get(id: string): { conn: Connection; dialect: Dialect } | undefined {
    const conn = this.#conns.get(id);
    return conn && { conn, dialect: this.#dialectOf(conn) };
  }

  #dialectOf(conn: Connection): Dialect {
    return this.#byName.get(conn.dialect) as Dialect;
  }

  countByDialect(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const d of this.#opts.dialects) out[d.name] = 0;
    for (const { dialect } of this.#conns.values()) out[dialect] = (out[dialect] ?? 0) + 1;
    return out;
  }

  /**
   * Closes a connection on an operator's request (asked on this instance or another);
   * `by` and `note` (who asked, and why) go to the `admin.kick` log line.
   */
  kick(id: string, ask: { by?: string | undefined; note?: string | undefined } = {}): boolean {
    const c = this.#conns.get(id);
    if (!c) return false;
    const fields = { event: 'admin.kick', dialect: c.dialect, conn: c.id, remote: c.remoteAddress, identity: c.identity, by: ask.by ?? null, note: ask.note ?? null };
    this.#opts.logger.info(fields, `${c.dialect}: kicked by an operator`);
    c.markWhy('kicked');
    const dialect = this.#dialectOf(c);
    if (dialect.kick) dialect.kick(c);
    else c.close(CloseCode.POLICY_VIOLATION, KICK_REASON);
    return true;
  }

  /** Stops accepting, says goodbye to every peer, and waits (up to `timeoutMs`) for the sockets to close. */
  async shutdown(timeoutMs: number): Promise<void> {
    this.#accepting = false;
    this.#sweep.cancel();
    if (this.#burstCheck) this.#burstOver();
    for (const conn of this.#conns.values()) {
      const dialect = this.#dialectOf(conn);
      conn.markWhy('shutdown');
      if (dialect.goodbye) dialect.goodbye(conn);
      else conn.close(CloseCode.GOING_AWAY, 'server shutting down');
    }
    // Waiting on sockets is waiting on I/O, so this deadline is real time, not the scheduler's.
    if (!(await this.#drain(timeoutMs))) {
      for (const conn of this.#conns.values()) conn.terminate();
      await this.#drain(1000);
    }
    this.#wss.close();
  }

  /** Resolves true once every connection has closed, or false after `ms`. */
  #drain(ms: number): Promise<boolean> {
    if (this.#conns.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#drained.delete(done);
        resolve(false);
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#drained.add(done);
    });
  }

  /**
   * Answers a refused upgrade and closes the socket. Under a flood of upgrades (one IP
   * past `handshakesPerIpPerMinute` gets hundreds of 429s a second) this is the hot
   * path, so it does as little as it can: one prebuilt buffer written (no string
   * building), the socket destroyed at once (no listener, no wait for 'finish'), one
   * plain number counted (CoreMetrics hands it to prom-client when scraped). Nothing
   * is logged here (a failed authorization is logged by PeerLog, rate-limited). A
   * refusal happens before `#begin`, so the socket is all it took.
   */
  #refuse(socket: Duplex, status: number, message: string, reason: RefusalReason): void {
    this.#opts.metrics.upgradeRefused(reason);
    if (socket.writable) socket.write(refusalResponse(status, message));
    socket.destroy();
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // A module-level listener: a closure here would keep `req` alive for the socket's life.
    socket.on('error', destroyOnError);
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const dialect = this.#byPath.get(path);
    // The path is not echoed: the answer is a prebuilt buffer, and it holds no byte the peer chose.
    if (!dialect) return this.#refuse(socket, 404, 'No WebSocket endpoint at this path', 'not_found');
    if (!this.#accepting) return this.#refuse(socket, 503, 'Server is shutting down', 'shutting_down');
    if (this.#conns.size + this.#upgrading >= this.#opts.limits.maxConnections) {
      return this.#refuse(socket, 503, 'Too many connections', 'max_connections');
    }
    const ip = req.socket.remoteAddress ?? 'unknown';
    if (!this.#allowHandshake(ip)) return this.#refuse(socket, 429, 'Too many handshakes from this address', 'rate_limited');
    if (dialect.authorizeUpgrade) {
      const verdict = dialect.authorizeUpgrade(req);
      if (!verdict.ok && (verdict.status === 401 || verdict.status === 403)) this.#peerLog.authFailed(dialect.name, ip, verdict.message);
      if (!verdict.ok) return this.#refuse(socket, verdict.status, verdict.message, 'unauthorized');
    }
    // A socket already gone would never emit 'close' for #begin to hear: take nothing.
    if (socket.destroyed) return this.#refuse(socket, 400, 'Client went away', 'client_gone');
    const end = this.#begin(socket);
    try {
      this.#wss.handleUpgrade(req, socket, head, (ws) => {
        // ws has its own error listener on the socket now; a second one would cost every
        // connection a listener array.
        socket.removeListener('error', destroyOnError);
        end(true);
        this.#open(ws, req, dialect, ip);
      });
    } catch (err) {
      this.#opts.logger.error({ err, dialect: dialect.name }, 'WebSocket upgrade failed');
      socket.destroy();
    }
    // ws refuses synchronously (it destroys the socket): give the slot back now, not on 'close'.
    if (socket.destroyed) end(false);
  }

  /**
   * Counts one upgrade in progress (it holds a slot of `maxConnections`) and returns
   * the function that gives the slot back, exactly once, whichever way the upgrade
   * ends: handed to `#open` (`end(true)`), or the socket closed first, because `ws`
   * refused the request (bad key, version, method or subprotocol header: it answers
   * 4xx and destroys the socket without calling back), the client went away, or the
   * socket failed.
   */
  #begin(socket: Duplex): (opened: boolean) => void {
    const { metrics } = this.#opts;
    this.#upgrading++;
    metrics.upgradesInProgress.inc();
    let ended = false;
    const end = (opened: boolean): void => {
      if (ended) return;
      ended = true;
      socket.removeListener('close', onClose);
      this.#upgrading--;
      metrics.upgradesInProgress.dec();
      if (!opened) metrics.upgradeRefused('bad_handshake');
    };
    const onClose = (): void => end(false);
    socket.once('close', onClose);
    return end;
  }

  /** What each dialect's connections share (settings, frame limits): one object per dialect. */
  readonly #sharedByDialect = new Map<Dialect, ConnectionShared>();

  #shared(dialect: Dialect): ConnectionShared {
    let shared = this.#sharedByDialect.get(dialect);
    if (!shared) {
      const { scheduler, metrics } = this.#opts;
      shared = connectionShared({
        dialect: dialect.name,
        scheduler,
        maxBufferedBytes: dialect.maxBufferedBytes,
        observer: metrics,
        log: this.#peerLog,
        closeCodes: dialect.closeCodes,
        ...(dialect.preAuthMaxBytes === undefined ? {} : { frameLimits: preAuthFrameLimits(dialect.preAuthMaxBytes, this.#opts.limits.maxPayload) }),
      });
      this.#sharedByDialect.set(dialect, shared);
    }
    return shared;
  }

  /** Upgrades counted and not yet opened or given back (they hold connection slots). */
  get upgrading(): number {
    return this.#upgrading;
  }

  #allowHandshake(ip: string): boolean {
    const now = this.#opts.scheduler.now();
    let e = this.#handshakes.get(ip);
    if (!e || now - e.windowStart >= 60_000) {
      e = { windowStart: now, count: 0 };
      this.#handshakes.set(ip, e);
    }
    e.count++;
    return e.count <= this.#opts.limits.handshakesPerIpPerMinute;
  }

  #burstStarted(): void {
    const { scheduler, onConnectBurst, logger } = this.#opts;
    logger.debug({ event: 'transport.burst', on: true, perSecond: this.#burst.perSecond }, 'connections are arriving in a burst');
    onConnectBurst?.(true);
    const check = (): void => {
      if (!this.#burst.check()) {
        this.#burstCheck = scheduler.after(1000, check);
        return;
      }
      this.#burstOver();
    };
    this.#burstCheck = scheduler.after(1000, check);
  }

  #burstOver(): void {
    this.#burstCheck?.cancel();
    this.#burstCheck = undefined;
    this.#opts.logger.debug({ event: 'transport.burst', on: false }, 'the connection burst is over');
    this.#opts.onConnectBurst?.(false);
  }

  #sweepHandshakes(): void {
    const now = this.#opts.scheduler.now();
    for (const [ip, e] of this.#handshakes) if (now - e.windowStart >= 60_000) this.#handshakes.delete(ip);
  }

  #open(ws: WebSocket, req: IncomingMessage, dialect: Dialect, ip: string): void {
    const { scheduler, metrics } = this.#opts;
    const shared = this.#shared(dialect);
    const socket = ws as TransportSocket;
    const conn = new Connection(socket, {
      id: randomUUID(),
      dialect: dialect.name,
      remoteAddress: ip,
      scheduler,
      maxBufferedBytes: dialect.maxBufferedBytes,
      shared,
    });
    this.#peerLog.connected(conn, dialect.path);
    if (this.#burst.connect(scheduler.now())) this.#burstStarted();
    this.#conns.set(conn.id, conn);
    metrics.connections.inc({ dialect: dialect.name });
    socket.conn = conn;
    const l = this.#listeners;
    socket.on('message', l.message);
    socket.on('pong', l.pong);
    socket.on('error', l.error);
    socket.on('close', l.close);
    try {
      socket.handler = dialect.accept(conn, req);
    } catch (err) {
      this.#opts.logger.error({ err, dialect: dialect.name }, 'dialect failed to accept a connection');
      conn.close(CloseCode.INTERNAL_ERROR, 'internal error');
    }
  }

  /**
   * The socket listeners every connection shares (`this` is the socket). Nothing per
   * socket holds the upgrade request or a closure: an idle connection costs the
   * `Connection`, the dialect's handler and two fields on the socket.
   */
  #makeListeners(): SocketListeners {
    const { metrics, logger } = this.#opts;
    const peerLog = this.#peerLog;
    const conns = this.#conns;
    const drained = this.#drained;
    return {
      message(data, isBinary) {
        const socket = this as TransportSocket;
        const conn = socket.conn as Connection;
        if (conn.closing) return;
        conn.touch();
        if (peerLog.frames) peerLog.frame(conn, 'in', data, isBinary);
        try {
          socket.handler?.onMessage(data, isBinary);
        } catch (err) {
          logger.error({ err, conn: conn.id, dialect: conn.dialect }, 'handler failed on a frame');
          conn.close(CloseCode.INTERNAL_ERROR, 'internal error');
        }
      },
      pong() {
        const socket = this as TransportSocket;
        (socket.conn as Connection).touchPong();
        socket.handler?.onPong?.();
      },
      error(err) {
        // ws closes the socket itself after a protocol error (1002, 1007 bad UTF-8, 1009 too big).
        const conn = (this as TransportSocket).conn as Connection;
        logger.debug({ err: err.message, conn: conn.id, dialect: conn.dialect }, 'socket error');
      },
      close(code, reasonBuf) {
        const socket = this as TransportSocket;
        const conn = socket.conn as Connection;
        const reason = reasonBuf.toString();
        conns.delete(conn.id);
        metrics.connections.dec({ dialect: conn.dialect });
        if (conns.size === 0 && drained.size > 0) {
          for (const done of drained) done();
          drained.clear();
        }
        conn._closed(code, reason);
        try {
          socket.handler?.onClose(code, reason);
        } catch (err) {
          logger.error({ err, conn: conn.id, dialect: conn.dialect }, 'handler failed on close');
        }
      },
    };
  }
}

/** The socket layer's frame limits for a dialect with a pre-authentication cap. */
export function preAuthFrameLimits(preAuthMaxBytes: number, maxPayload: number): { preAuth: number; max: number } {
  return { preAuth: Math.min(maxPayload, PRE_AUTH_SOCKET_FACTOR * preAuthMaxBytes), max: maxPayload };
}

/** Refusal answers built so far, by status and message (the messages are the server's own constants). */
const REFUSALS = new Map<string, Buffer>();
/** A bound on REFUSALS, should a dialect ever put something variable in a verdict's message. */
const MAX_CACHED_REFUSALS = 64;

/** The whole HTTP answer to a refused upgrade, built once per status and message. */
export function refusalResponse(status: number, message: string): Buffer {
  const key = `${status} ${message}`;
  let buf = REFUSALS.get(key);
  if (buf) return buf;
  const body = `${message}\n`;
  buf = Buffer.from(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n` +
      'Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    'utf8',
  );
  if (REFUSALS.size < MAX_CACHED_REFUSALS) REFUSALS.set(key, buf);
  return buf;
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}
