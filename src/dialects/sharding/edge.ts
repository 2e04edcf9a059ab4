/**
 * The sharding edge: one per instance, it holds the CONTROL sockets that connected to
 * this instance. It decodes their frames (a malformed one is reported as such), forwards
 * every event to the leader over the `sharding:leader` topic, and carries out the
 * leader's orders for its sockets (frames, closes, the CONTROL's name, debug phases).
 *
 * It remembers, per socket, what a new leader needs to take over without a word on the
 * wire: the session id it was given, whether INITIALISE went out, the CONTROL's name and
 * IDENTIFY, and what the MASTER told it to serve (IDENTIFIED, CONNECT and OFFLOAD, less
 * SHUTDOWN). When a leader says hello, the edge re-announces all of it (world/takeover.ts),
 * with the frames no leader may have acted on (an unanswered IDENTIFY or HEARTBEAT,
 * ungranted IDENTIFY_REQUESTs, a FATAL), to be replayed.
 *
 * Orders carry the leader's fencing token: once the edge has heard a newer leader, the
 * older one's orders are dropped.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Broker } from '../../cluster/broker.js';
import type { Connection } from '../../core/connection.js';
import type { ConnectionHandler, HttpReply } from '../../core/dialect.js';
import { decodeControlFrame, decodeMasterFrame, Op, type IdentifyPayload } from '../../protocols/sharding/messages.js';
import { expand, toRanges } from '../../protocols/sharding/ranges.js';
import { decodeLink, EDGES_TOPIC, edgeTopic, encodeLink, LEADER_TOPIC, type AnnouncedSocket, type ToEdge, type ToLeader } from './link.js';

interface EdgeSocket {
  readonly conn: Connection;
  readonly sessionId: string;
  initialised: boolean;
  name: string | null;
  identify: IdentifyPayload | null;
  /** The IDENTIFY frame as it came, until a leader answers it. */
  pendingIdentify: string | null;
  /** IDENTIFY_REQUESTs as they came, by shard, until granted, cancelled or the shard is stopped. */
  readonly requests: Map<number, string>;
  /** A FATAL as it came, until the halt closes the socket. */
  fatal: string | null;
  /** The last HEARTBEAT as it came, until an ACK goes out. */
  heartbeat: string | null;
  served: Set<number>;
  started: boolean;
  redundant: boolean;
}

/** M→C opcodes that change what a CONTROL serves or waits for, or that it was initialised. */
const TRACKED: ReadonlySet<number> = new Set([Op.OFFLOAD, Op.SHUTDOWN, Op.INITIALISE, Op.CONNECT, Op.IDENTIFIED, Op.IDENTIFY_GRANT, Op.ACK]);
const OPCODE = /^\{"o":(\d+),/;

export interface ShardingEdgeOptions {
  readonly broker: Broker;
  /** This instance's id (the topic the leader's orders for these sockets go to). */
  readonly instanceId: string;
  readonly logger: Logger;
  readonly shardCount: () => number;
  /** The leader's answer to an admin question asked here (ask.ts). */
  readonly onAnswer?: (id: string, reply: HttpReply) => void;
}

export class ShardingEdge {
  readonly #o: ShardingEdgeOptions;
  readonly #sockets = new Map<string, EdgeSocket>();
  readonly #unsubscribe: Array<() => void>;
  /** The newest leader token heard; orders with an older one are dropped. */
  #token = Number.NEGATIVE_INFINITY;

  constructor(opts: ShardingEdgeOptions) {
    this.#o = opts;
    const hear = (buf: Buffer): void => {
      const m = decodeLink<ToEdge>(buf);
      if (m) this.#hear(m);
    };
    this.#unsubscribe = [opts.broker.subscribe(edgeTopic(opts.instanceId), hear), opts.broker.subscribe(EDGES_TOPIC, hear)];
  }

  /** Sockets held here. */
  get size(): number {
    return this.#sockets.size;
  }

  /** Orders dropped so far because a newer leader had been heard (for tests and debugging). */
  dropped = 0;

  accept(conn: Connection): ConnectionHandler {
    const sock: EdgeSocket = {
      conn,
      sessionId: randomUUID(),
      initialised: false,
      name: null,
      identify: null,
      pendingIdentify: null,
      requests: new Map(),
      fatal: null,
      heartbeat: null,
      served: new Set(),
      started: false,
      redundant: false,
    };
    this.#sockets.set(conn.id, sock);
    this.#tell({ k: 'open', i: this.#o.instanceId, c: conn.id, s: sock.sessionId });
    return {
      onMessage: (data, binary) => {
        if (binary) return this.#tell({ k: 'bad', i: this.#o.instanceId, c: conn.id, d: 'binary frames are not accepted; send JSON text' });
        const text = data.toString('utf8');
        const res = decodeControlFrame(text);
        if (!res.ok) return this.#tell({ k: 'bad', i: this.#o.instanceId, c: conn.id, d: res.detail });
        const f = res.frame;
        if (f.o === Op.IDENTIFY && sock.name === null) {
          sock.pendingIdentify = text;
          sock.identify = f.d;
        } else if (f.o === Op.IDENTIFY_REQUEST) sock.requests.set(f.d.shard_id, text);
        else if (f.o === Op.IDENTIFY_CANCEL) sock.requests.delete(f.d.shard_id);
        else if (f.o === Op.FATAL) sock.fatal ??= text;
        else if (f.o === Op.HEARTBEAT) sock.heartbeat = text;
        this.#tell({ k: 'frame', i: this.#o.instanceId, c: conn.id, f: text });
        // A WebSocket ping beside each HEARTBEAT's ACK: its pong gives the CONTROL's round trip (conn.latencyMs).
        if (res.frame.o === Op.HEARTBEAT) conn.ping();
      },
      onClose: () => {
        this.#sockets.delete(conn.id);
        this.#tell({ k: 'closed', i: this.#o.instanceId, c: conn.id });
      },
    };
  }

  stop(): void {
    for (const u of this.#unsubscribe.splice(0)) u();
  }

  #tell(m: ToLeader): void {
    this.#o.broker.publish(LEADER_TOPIC, encodeLink(m));
  }

  #hear(m: ToEdge): void {
    if (m.t < this.#token) {
      this.dropped++;
      return;
    }
    this.#token = m.t;
    if (m.k === 'hello') return this.#announce(m.t);
    if (m.k === 'answer') {
      this.#o.onAnswer?.(m.id, { ...(m.status !== undefined ? { status: m.status } : {}), body: m.body, ...(m.headers ? { headers: m.headers } : {}) });
      return;
    }
    const sock = this.#sockets.get(m.c);
    if (!sock) return;
    switch (m.k) {
      case 'send':
        this.#track(sock, m.f);
        sock.conn.send(m.f);
        return;
      case 'close':
        sock.conn.close(m.code, m.reason);
        return;
      case 'identity':
        sock.name = m.name;
        sock.pendingIdentify = null;
        sock.conn.identity = m.name;
        return;
      case 'phase':
        sock.conn.stateChanged(m.from, m.to);
        return;
      default:
        return;
    }
  }

  /** Keeps what the CONTROL was told to serve, for a takeover. */
  #track(sock: EdgeSocket, frame: string): void {
    const op = OPCODE.exec(frame);
    if (!op || !TRACKED.has(Number(op[1]))) return;
    const res = decodeMasterFrame(frame);
    if (!res.ok) return;
    const f = res.frame;
    const ids = (ranges: Parameters<typeof expand>[0]): number[] => expand(ranges, this.#o.shardCount());
    switch (f.o) {
      case Op.INITIALISE:
        sock.initialised = true;
        return;
      case Op.IDENTIFIED:
        sock.served = new Set(ids(f.d.shards));
        sock.redundant = f.d.redundant;
        sock.started = sock.served.size > 0;
        return;
      case Op.CONNECT:
        for (const id of ids(f.d.shards)) sock.served.add(id);
        sock.started = true;
        sock.redundant = f.d.redundant;
        return;
      case Op.OFFLOAD:
        for (const id of ids(f.d.shards)) sock.served.add(id);
        sock.started = true;
        sock.redundant = false;
        return;
      case Op.SHUTDOWN:
        if (f.d.shards === undefined) {
          sock.served.clear();
          sock.requests.clear();
        } else {
          for (const id of ids(f.d.shards)) {
            sock.served.delete(id);
            sock.requests.delete(id);
          }
        }
        return;
      case Op.IDENTIFY_GRANT:
        sock.requests.delete(f.d.shard_id);
        return;
      case Op.ACK:
        sock.heartbeat = null;
        return;
      default:
        return;
    }
  }

  /** A new leader said hello: every socket held here, with what it serves. */
  #announce(token: number): void {
    const sockets: AnnouncedSocket[] = [];
    for (const s of this.#sockets.values()) {
      if (s.conn.closing) continue;
      const id = s.identify;
      sockets.push({
        conn: s.conn.id,
        sessionId: s.sessionId,
        initialised: s.initialised,
        ...(s.name !== null && id !== null
          ? {
              control: {
                name: s.name,
                ...(id.capacity !== undefined ? { capacity: id.capacity } : {}),
                ...(id.features !== undefined ? { features: id.features } : {}),
                shards: toRanges([...s.served].sort((a, b) => a - b)),
                started: s.started,
                redundant: s.redundant,
              },
            }
          : {}),
        ...replayOf(s),
      });
    }
    if (sockets.length > 0) this.#tell({ k: 'announce', i: this.#o.instanceId, t: token, sockets });
  }
}

/** The frames to replay after a takeover: IDENTIFY first, then the unanswered HEARTBEAT, the requests, a FATAL. */
function replayOf(s: EdgeSocket): { replay?: string[] } {
  const out: string[] = [];
  if (s.name === null && s.pendingIdentify !== null) out.push(s.pendingIdentify);
  // Its ACK resets the CONTROL's fence clock: a HEARTBEAT lost in the gap would otherwise
  // leave it without an ACK until its next one, past its fence.
  if (s.heartbeat !== null) out.push(s.heartbeat);
  out.push(...s.requests.values());
  if (s.fatal !== null) out.push(s.fatal);
  return out.length > 0 ? { replay: out } : {};
}
