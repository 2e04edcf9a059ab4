/**
 * A fake Discord for tests of real `@discordjs/ws` shards: `GET …/gateway/bot` over HTTP,
 * and a JSON gateway over WebSocket with HELLO, IDENTIFY → READY, RESUME → RESUMED and
 * heartbeats. It is strict where Muster has to be careful:
 *
 * - one IDENTIFY per bucket (`shard_id % maxConcurrency`) per `identifyWindow`, measured
 *   here, at the gateway; an IDENTIFY that comes sooner is a violation and gets INVALID_SESSION;
 * - a shard with two live sessions at once (READY or RESUMED on two sockets) is a double
 *   session.
 *
 * It records every connection, identify, session and close, for the test to check.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

export interface FakeDiscordOptions {
  token: string;
  shardCount: number;
  maxConcurrency: number;
  /** Minimum gap between two IDENTIFYs of one bucket, ms. */
  identifyWindow: number;
  /** HELLO's heartbeat_interval, ms. */
  heartbeatInterval?: number;
}

interface Session {
  readonly id: string;
  readonly shard: number;
  ws: WebSocket | undefined;
  seq: number;
}

export interface IdentifyRecord {
  readonly shard: number;
  readonly at: number;
  readonly accepted: boolean;
}

export class FakeDiscord {
  readonly opts: FakeDiscordOptions;
  readonly #http: Server;
  readonly #wss: WebSocketServer;
  readonly #sessions = new Map<string, Session>();
  readonly #lastIdentify = new Map<number, number>();
  /** Every IDENTIFY, in order. */
  readonly identifies: IdentifyRecord[] = [];
  /** Human-readable rule breaks: identify gaps shorter than the window. */
  readonly violations: string[] = [];
  /** Shards that had two live sessions at once. */
  readonly doubleSessions: string[] = [];
  /** Gaps between consecutive IDENTIFYs of a bucket, ms. */
  readonly gaps: number[] = [];
  /** Every gateway connection, with the time it opened. */
  readonly connections: number[] = [];
  readonly sockets = new Set<WebSocket>();
  port = 0;

  constructor(opts: FakeDiscordOptions) {
    this.opts = opts;
    this.#http = createServer((req, res) => {
      if (req.method === 'GET' && req.url?.endsWith('/gateway/bot')) {
        if (req.headers.authorization !== `Bot ${opts.token}`) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"message":"401: Unauthorized","code":0}');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            url: this.gatewayUrl,
            shards: opts.shardCount,
            session_start_limit: { total: 1000, remaining: 1000, reset_after: 86_400_000, max_concurrency: opts.maxConcurrency },
          }),
        );
        return;
      }
      res.writeHead(404).end();
    });
    this.#wss = new WebSocketServer({ server: this.#http });
    this.#wss.on('connection', (ws) => this.#accept(ws));
  }

  get gatewayUrl(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Base of the REST API (`…/api`); `GET {base}/v10/gateway/bot` answers. */
  get restBase(): string {
    return `http://127.0.0.1:${this.port}/api`;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#http.listen(0, '127.0.0.1', resolve));
    this.port = (this.#http.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    await new Promise<void>((resolve) => this.#http.close(() => resolve()));
  }

  /** Live sessions per shard (READY or RESUMED on a socket still open). */
  live(): Map<number, number> {
    const out = new Map<number, number>();
    for (const s of this.#sessions.values()) if (s.ws) out.set(s.shard, (out.get(s.shard) ?? 0) + 1);
    return out;
  }

  /** Accepted IDENTIFYs (session starts) so far. */
  get sessionStarts(): number {
    return this.identifies.filter((i) => i.accepted).length;
  }

  #accept(ws: WebSocket): void {
    this.connections.push(Date.now());
    this.sockets.add(ws);
    let session: Session | undefined;
    const send = (payload: unknown): void => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(payload));
    };
    send({ op: 10, d: { heartbeat_interval: this.opts.heartbeatInterval ?? 5_000 }, s: null, t: null });
    ws.on('message', (buf: Buffer) => {
      let msg: { op: number; d: Record<string, unknown> | null };
      try {
        msg = JSON.parse(buf.toString('utf8')) as typeof msg;
      } catch {
        ws.close(4002, 'Decode error');
        return;
      }
      switch (msg.op) {
        case 1:
          send({ op: 11, d: null, s: null, t: null });
          return;
        case 2: {
          const d = msg.d ?? {};
          if (d.token !== this.opts.token) return ws.close(4004, 'Authentication failed');
          if (session) return ws.close(4005, 'Already authenticated');
          const shard = Array.isArray(d.shard) ? (d.shard as number[]) : [0, 1];
          const [id = 0, count = 1] = shard;
          if (count !== this.opts.shardCount || id >= count) return ws.close(4010, 'Invalid shard');
          const now = Date.now();
          const bucket = id % this.opts.maxConcurrency;
          const last = this.#lastIdentify.get(bucket);
          if (last !== undefined) this.gaps.push(now - last);
          if (last !== undefined && now - last < this.opts.identifyWindow) {
            this.violations.push(`shard ${id} identified ${now - last} ms after the last identify of bucket ${bucket}`);
            this.identifies.push({ shard: id, at: now, accepted: false });
            send({ op: 9, d: false, s: null, t: null });
            return;
          }
          this.#lastIdentify.set(bucket, now);
          this.identifies.push({ shard: id, at: now, accepted: true });
          session = { id: randomUUID(), shard: id, ws, seq: 1 };
          this.#sessions.set(session.id, session);
          this.#checkDouble(session);
          send({
            op: 0,
            t: 'READY',
            s: session.seq,
            d: {
              v: 10,
              user: { id: '1', username: 'muster-test', discriminator: '0', global_name: null, avatar: null, bot: true },
              guilds: [],
              session_id: session.id,
              resume_gateway_url: this.gatewayUrl,
              shard: [id, count],
              application: { id: '1', flags: 0 },
            },
          });
          return;
        }
        case 6: {
          const d = msg.d ?? {};
          const s = typeof d.session_id === 'string' ? this.#sessions.get(d.session_id) : undefined;
          if (d.token !== this.opts.token) return ws.close(4004, 'Authentication failed');
          if (!s || s.ws) {
            send({ op: 9, d: false, s: null, t: null });
            return;
          }
          s.ws = ws;
          session = s;
          this.#checkDouble(s);
          send({ op: 0, t: 'RESUMED', s: ++s.seq, d: null });
          return;
        }
        default:
          return;
      }
    });
    ws.on('close', () => {
      this.sockets.delete(ws);
      if (session && session.ws === ws) session.ws = undefined;
    });
  }

  #checkDouble(s: Session): void {
    const others = [...this.#sessions.values()].filter((o) => o !== s && o.shard === s.shard && o.ws !== undefined);
    if (others.length > 0) this.doubleSessions.push(`shard ${s.shard}: ${others.length + 1} live sessions`);
  }
}
