import pino from 'pino';
import WebSocket from 'ws';
import { ManualClock } from '../../src/core/clock.js';
import { loadConfig } from '../../src/config/load.js';
import { startMuster, type Muster } from '../../src/server.js';

export const ADMIN_TOKEN = 'admin-secret-for-tests';
export const BUS_TOKEN = 'bus-secret-for-tests';

type Overrides = Record<string, unknown>;

function merge(a: Overrides, b: Overrides): Overrides {
  const out: Overrides = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
        ? merge(cur as Overrides, v as Overrides)
        : v;
  }
  return out;
}

export interface TestServer {
  muster: Muster;
  clock: ManualClock;
  /** ws://host:port */
  wsBase: string;
  httpBase: string;
  stop(): Promise<void>;
}

/** A real server on an ephemeral port, with an in-memory store and a manual clock. */
/** `logger`: where the server logs (default: nowhere). */
export async function startTestServer(overrides: Overrides = {}, opts: { logger?: pino.Logger } = {}): Promise<TestServer> {
  const clock = new ManualClock();
  const base: Overrides = {
    listen: { host: '127.0.0.1', port: 0 },
    store: { kind: 'memory' },
    admin: { token: ADMIN_TOKEN },
    log: { level: 'silent' },
    shutdownTimeout: 2000,
    dialects: {
      bus: { token: BUS_TOKEN },
      sharding: { enabled: false },
      clusterio: { enabled: false },
      discodo: { enabled: false },
      gamelist: { enabled: false },
    },
  };
  const config = loadConfig({ env: {}, overrides: merge(base, overrides) as never });
  const muster = await startMuster({ config, clock, logger: opts.logger ?? pino({ level: 'silent' }), defaultMetrics: false });
  const httpBase = muster.url();
  return {
    muster,
    clock,
    httpBase,
    wsBase: httpBase.replace(/^http/, 'ws'),
    stop: () => muster.stop(),
  };
}

let barriers = 0;

export interface Closed {
  code: number;
  reason: string;
}

/**
 * A raw WebSocket peer that queues what it receives, so a test can await the next
 * frame or the close. Waits are bounded by a real-time guard only to fail fast.
 */
export class RawPeer {
  readonly ws: WebSocket;
  readonly frames: string[] = [];
  readonly closed: Promise<Closed>;
  #waiters: Array<() => void> = [];
  #closedValue: Closed | undefined;

  /** This end's local port once open: how the server's side of the socket is found (`serverClosed`). */
  localPort = 0;

  constructor(url: string, opts: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, { ...opts, autoPong: opts.autoPong ?? true });
    this.ws.once('open', () => {
      this.localPort = (this.ws as unknown as { _socket?: { localPort?: number } })._socket?.localPort ?? 0;
    });
    this.ws.on('message', (data: Buffer) => {
      this.frames.push(data.toString('utf8'));
      this.#wake();
    });
    this.ws.on('error', () => undefined);
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.#closedValue = { code, reason: reason.toString() };
        resolve(this.#closedValue);
        this.#wake();
      });
    });
  }

  static async open(url: string, opts: WebSocket.ClientOptions = {}): Promise<RawPeer> {
    const p = new RawPeer(url, opts);
    await new Promise<void>((resolve, reject) => {
      p.ws.once('open', () => resolve());
      p.ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      p.ws.once('error', reject);
    });
    return p;
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  get isClosed(): boolean {
    return this.#closedValue !== undefined;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The next frame's text. */
  async nextRaw(timeoutMs = 3000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length === 0) {
      if (this.#closedValue) throw new Error(`closed (${this.#closedValue.code} ${this.#closedValue.reason}) while waiting for a frame`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a frame');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.frames.shift() as string;
  }

  async next<T = Record<string, unknown>>(timeoutMs?: number): Promise<T> {
    return JSON.parse(await this.nextRaw(timeoutMs)) as T;
  }

  /** Waits for the close; fails if it does not come. */
  async waitClose(timeoutMs = 3000): Promise<Closed> {
    let t: NodeJS.Timeout | undefined;
    const guard = new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error('timed out waiting for close')), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, guard]);
    } finally {
      clearTimeout(t);
    }
  }

  /**
   * A round-trip barrier: sends a WebSocket ping and waits for its pong. The server
   * answers a ping after it has handled every frame this peer sent before it, and the
   * pong arrives after every frame the server sent this peer before it. (Frames a
   * dialect handles asynchronously, e.g. after a token check, may still be under way.)
   */
  async barrier(timeoutMs = 3000): Promise<void> {
    if (this.isClosed || this.ws.readyState !== WebSocket.OPEN) return;
    const tag = `barrier-${++barriers}`;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(t);
        this.ws.off('pong', onPong);
        this.ws.off('close', done);
        resolve();
      };
      const onPong = (data: Buffer): void => {
        if (data.toString() === tag) done();
      };
      const t = setTimeout(() => {
        this.ws.off('pong', onPong);
        this.ws.off('close', done);
        reject(new Error('timed out waiting for a pong'));
      }, timeoutMs);
      this.ws.on('pong', onPong);
      this.ws.on('close', done);
      this.ws.ping(tag);
    });
  }

  /**
   * True if nothing arrived for this peer up to a round-trip barrier (see `barrier`): a
   * negative check that waits for the server, not for a fixed time. To check that a
   * frame from another peer caused nothing here, make a round trip on that peer first.
   */
  async quiet(): Promise<boolean> {
    await this.barrier();
    return this.frames.length === 0;
  }

  close(): void {
    if (!this.isClosed) this.ws.close(1000);
  }
}

/**
 * After the clock moved: a first barrier on each open peer proves the server's pings
 * (and anything else sent before) reached it and its automatic pongs are on their way; a
 * second proves the server has handled those pongs. Round trips, not a real-time wait.
 */
export async function settle(peers: readonly RawPeer[]): Promise<void> {
  for (let i = 0; i < 2; i++) await Promise.all(peers.filter((p) => !p.isClosed).map((p) => p.barrier()));
}

/**
 * A server-side round trip on every open connection (optionally only those `which`
 * picks): the server pings, and the answer proves the peer answered every ping sent
 * before it and the server handled those pongs. For real client libraries, which answer
 * pings on their own; a peer that does not answer pings must not be picked.
 */
export async function serverRoundTrip(muster: Muster, which: (id: string) => boolean = () => true, timeoutMs = 3000): Promise<void> {
  const conns = muster.transport.connections().filter((c) => !c.closing && !c.closed && which(c.id));
  await Promise.all(
    conns.map(
      (c) =>
        new Promise<void>((resolve, reject) => {
          const ws = c.socket;
          if (ws.readyState !== WebSocket.OPEN) return resolve();
          const tag = `server-barrier-${++barriers}`;
          const done = (): void => {
            clearTimeout(t);
            ws.off('pong', onPong);
            ws.off('close', done);
            resolve();
          };
          const onPong = (data: Buffer): void => {
            if (data.toString() === tag) done();
          };
          const t = setTimeout(() => {
            ws.off('pong', onPong);
            ws.off('close', done);
            reject(new Error(`connection ${c.id} did not answer a ping`));
          }, timeoutMs);
          ws.on('pong', onPong);
          ws.on('close', done);
          ws.ping(tag);
        }),
    ),
  );
}

/** The id of the server's side of an open peer's socket (matched by the peer's local port). */
export function serverConnId(muster: Muster, peer: RawPeer): string | undefined {
  const port = peer.localPort;
  return muster.transport
    .connections()
    .find((c) => (c.socket as unknown as { _socket?: { remotePort?: number } })._socket?.remotePort === port)?.id;
}

/**
 * Drops a peer's socket without a close handshake, as a lost connection would, and waits
 * until the server has handled the close: its connection is gone from the transport,
 * whose close handler runs the dialect's onClose in the same turn.
 */
export async function terminate(muster: Muster, peer: RawPeer): Promise<void> {
  const id = serverConnId(muster, peer);
  if (id === undefined) throw new Error('terminate: the server holds no socket for this peer');
  peer.ws.terminate();
  await peer.waitClose();
  await until(() => muster.transport.get(id) === undefined);
}

/** Waits until `cond()` holds, polling on real time for at most `timeoutMs` (for server-side effects). */
export async function until(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
