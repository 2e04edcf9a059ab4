import type { IncomingMessage } from 'node:http';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpRoute } from '../../core/dialect.js';
import { PendingRequests, type PendingEntry } from '../../core/pending.js';
import { Router } from '../../core/router.js';
import type { Timer } from '../../core/scheduler.js';
import {
  busCloseCodes,
  closeCodeFor,
  DisconnectReason,
  encode,
  ReplyError,
  withSource,
  type BusMessage,
  type IdentifyData,
} from '../../protocols/bus/messages.js';
import { initialState, step, type ConnState, type Effect, type MachineConfig } from './machine.js';

export interface BusDialectConfig {
  path: string;
  token: string;
  heartbeatInterval: number;
  maxMessageBytes: number;
  requestTimeout: number;
  identifyTimeout: number;
  maxBufferedBytes: number;
  /** Largest frame before IDENTIFY succeeds (default DEFAULT_PRE_AUTH_MAX_BYTES). */
  preAuthMaxBytes?: number;
}

export interface BusDialectDeps {
  secretEquals: (a: string, b: string) => boolean;
}

interface Service {
  readonly conn: Connection;
  state: ConnState;
  id: string;
  name: string | undefined;
  identified: boolean;
  readonly headerToken: string | undefined;
  identifyTimer: Timer | undefined;
  heartbeat: Timer | undefined;
  /** `"source":"<id>"}` as bytes, made the first time this service sends an EVENT or REPLY. */
  sourceTail: Buffer | undefined;
}

interface ReplyWait {
  readonly requester: Service;
  /** Receivers still expected to answer, or who answered. */
  readonly recipients: ReadonlySet<string>;
  readonly replied: Set<string>;
  readonly expected: number;
  /** GROUP/GLOBAL collection (REPLY_END at the end), as opposed to one DIRECT answer. */
  readonly collect: boolean;
}


export class BusDialect implements Dialect {
  readonly name = 'bus';
  readonly path: string;
  readonly closeCodes = busCloseCodes;
  readonly maxBufferedBytes: number;
  readonly preAuthMaxBytes: number;

  #cfg: BusDialectConfig;
  #machine: MachineConfig;
  readonly #ctx: DialectContext;
  readonly #router = new Router<Connection>();
  readonly #services = new Map<Connection, Service>();
  readonly #byId = new Map<string, Service>();
  readonly #names = new Map<string, Service>();
  readonly #pending: PendingRequests<ReplyWait>;
  /** EVENTs routed since the counter was last read, by intent (see the constructor). */
  readonly #routed: Record<'GLOBAL' | 'GROUP' | 'DIRECT', number> = { GLOBAL: 0, GROUP: 0, DIRECT: 0 };
  readonly #m: {
    services: Gauge;
    routed: Counter<'target'>;
    noRoute: Counter;
    disconnects: Counter<'reason'>;
    requestDuration: Histogram<'outcome'>;
  };

  constructor(cfg: BusDialectConfig, ctx: DialectContext, deps: BusDialectDeps) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.path = cfg.path;
    this.maxBufferedBytes = cfg.maxBufferedBytes;
    this.preAuthMaxBytes = cfg.preAuthMaxBytes ?? DEFAULT_PRE_AUTH_MAX_BYTES;
    this.#machine = {
      token: cfg.token,
      maxMessageBytes: cfg.maxMessageBytes,
      preAuthMaxBytes: this.preAuthMaxBytes,
      heartbeatInterval: cfg.heartbeatInterval,
      secretEquals: deps.secretEquals,
    };
    this.#pending = new PendingRequests<ReplyWait>(ctx.scheduler, (e) => this.#expire(e));
    const registers = [ctx.registry];
    this.#m = {
      services: new Gauge({ name: 'muster_bus_services', help: 'Identified bus services', registers }),
      // EVENTs are counted into plain numbers (#routed) and added to this counter when it
      // is read: a prom-client inc() with labels hashes and validates them on every call.
      routed: new Counter({
        name: 'muster_bus_events_total',
        help: 'Bus EVENTs routed, by intent',
        labelNames: ['target'],
        registers,
        collect: () => this.#flushRouted(),
      }),
      noRoute: new Counter({ name: 'muster_bus_no_route_total', help: 'Bus EVENTs answered with NO_ROUTE', registers }),
      disconnects: new Counter({ name: 'muster_bus_disconnects_total', help: 'DISCONNECTs sent by the server, by reason', labelNames: ['reason'], registers }),
      requestDuration: new Histogram({
        name: 'muster_bus_request_duration_seconds',
        help: 'Time from an EVENT with expect_reply to its last reply, TIMEOUT or REPLY_END',
        labelNames: ['outcome'],
        buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
        registers,
      }),
    };
    const groups = this.#router;
    new Gauge({
      name: 'muster_bus_groups',
      help: 'Bus groups with at least one member',
      registers,
      collect() {
        this.set(groups.groupCount);
      },
    });
  }

  #flushRouted(): void {
    const counts = this.#routed;
    for (const t of ['GLOBAL', 'GROUP', 'DIRECT'] as const) {
      if (counts[t] > 0) this.#m.routed.inc({ target: t }, counts[t]);
      counts[t] = 0;
    }
  }

  /** Live counts, for leak checks and `muster status`. */
  summary(): { services: number; connections: number; groups: number; pendingRequests: number } {
    return {
      services: this.#byId.size,
      connections: this.#services.size,
      groups: this.#router.groupCount,
      pendingRequests: this.#pending.size,
    };
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    if (typeof secrets.token === 'string') {
      this.#cfg = { ...this.#cfg, token: secrets.token };
      this.#machine = { ...this.#machine, token: secrets.token };
    }
  }

  accept(conn: Connection, req: IncomingMessage): ConnectionHandler {
    const svc: Service = {
      conn,
      state: initialState,
      id: conn.id,
      name: undefined,
      identified: false,
      headerToken: headerToken(req),
      identifyTimer: undefined,
      heartbeat: undefined,
      sourceTail: undefined,
    };
    this.#services.set(conn, svc);
    svc.identifyTimer = this.#ctx.scheduler.after(this.#cfg.identifyTimeout, () => this.#feed(svc, { type: 'identify-deadline' }));
    conn.onSlowConsumer = () => this.#slowConsumer(svc);
    return {
      onMessage: (data, binary) => this.#feed(svc, { type: 'frame', data, binary, headerToken: svc.headerToken }),
      onClose: () => this.#release(svc),
    };
  }

  kick(conn: Connection): void {
    const svc = this.#services.get(conn);
    if (svc) this.#disconnect(svc, DisconnectReason.KICKED, 'kicked by an operator');
    else conn.close(closeCodeFor.KICKED, DisconnectReason.KICKED);
  }

  goodbye(conn: Connection): void {
    const svc = this.#services.get(conn);
    if (svc) this.#disconnect(svc, DisconnectReason.SHUTTING_DOWN);
    else conn.close(1001, DisconnectReason.SHUTTING_DOWN);
  }

  routes(): HttpRoute[] {
    return [
      {
        method: 'GET',
        url: '/api/v1/bus/services',
        access: 'admin',
        summary: 'Identified bus services',
        response: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              name: { type: ['string', 'null'] },
              groups: { type: 'array', items: { type: 'string' } },
              remoteAddress: { type: 'string' },
              connectedAt: { type: 'string', format: 'date-time' },
              lastSeen: { type: 'string', format: 'date-time' },
            },
          },
        },
        handler: () => ({
          body: [...this.#byId.values()].map((s) => ({
            id: s.id,
            name: s.name ?? null,
            groups: [...this.#router.groupsOf(s.conn)],
            remoteAddress: s.conn.remoteAddress,
            connectedAt: new Date(s.conn.connectedAt).toISOString(),
            lastSeen: new Date(s.conn.lastSeen).toISOString(),
          })),
        }),
      },
      {
        method: 'GET',
        url: '/api/v1/bus/groups',
        access: 'admin',
        summary: 'Bus groups and their members',
        response: {
          type: 'array',
          items: { type: 'object', properties: { name: { type: 'string' }, members: { type: 'array', items: { type: 'string' } } } },
        },
        handler: () => ({
          body: [...this.#router.groups()]
            .map(([name, members]) => ({ name, members: [...members].map((c) => c.id) }))
            .sort((a, b) => a.name.localeCompare(b.name)),
        }),
      },
    ];
  }

  stop(): void {
    for (const e of this.#pending.clear()) e.data.requester.conn.close(1001, DisconnectReason.SHUTTING_DOWN);
  }

  // ---- the state machine's effects ----

  #feed(svc: Service, event: Parameters<typeof step>[1]): void {
    const { state, effects } = step(svc.state, event, this.#machine);
    svc.state = state;
    // The frame's bytes, for relaying without re-encoding its text (see #relayed).
    this.#frame = event.type === 'frame' ? event.data : undefined;
    for (const e of effects) this.#run(svc, e);
    this.#frame = undefined;
  }

  /** The frame being handled by #feed (effects run synchronously inside it). */
  #frame: Buffer | undefined;

  /**
   * The frame to relay: the sender's bytes with `"source":"<id>"` spliced in before the
   * closing brace. Same result as `Buffer.from(withSource(raw, id))`, but one copy of
   * the bytes instead of slicing, concatenating and re-encoding the text (that was
   * about 3% of the server's CPU per hop in the bench's P1 profile). The socket layer
   * has checked the text is UTF-8 and decode() that it is one JSON object, so the last
   * "}" is the closing brace and only JSON whitespace can precede it.
   */
  #relayed(svc: Service, raw: string): Buffer {
    const bytes = this.#frame;
    if (!bytes) return Buffer.from(withSource(raw, svc.id));
    const tail = (svc.sourceTail ??= Buffer.from(`"source":${JSON.stringify(svc.id)}}`));
    let head = bytes.lastIndexOf(0x7d);
    while (head > 0 && isJsonSpace(bytes[head - 1] as number)) head--;
    const comma = bytes[head - 1] === 0x7b ? 0 : 1;
    const out = Buffer.allocUnsafe(head + comma + tail.length);
    bytes.copy(out, 0, 0, head);
    if (comma) out[head] = 0x2c;
    tail.copy(out, head + comma);
    return out;
  }

  #run(svc: Service, e: Effect): void {
    switch (e.type) {
      case 'send':
        svc.conn.send(e.frame);
        return;
      case 'disconnect':
        this.#disconnect(svc, e.reason, e.detail);
        return;
      case 'register':
        this.#register(svc, e.data);
        return;
      case 'route':
        this.#route(svc, e.msg);
        return;
      case 'reply':
        this.#reply(svc, e.msg);
        return;
      case 'goodbye':
        this.#unregister(svc);
        svc.conn.close(1000, 'goodbye');
        return;
    }
  }

  #disconnect(svc: Service, reason: DisconnectReason, detail?: string): void {
    svc.state = { phase: 'closed' };
    this.#m.disconnects.inc({ reason });
    this.#unregister(svc);
    svc.conn.sendFinal(encode.disconnect(reason, detail));
    svc.conn.close(closeCodeFor[reason], reason);
  }

  #slowConsumer(svc: Service): void {
    // Nothing more is queued for it; the goodbye goes behind the backlog, and the
    // connection's own drain deadline destroys the socket if it never drains.
    this.#ctx.logger.warn({ service: svc.id, buffered: svc.conn.bufferedAmount }, 'bus: slow consumer cut');
    this.#disconnect(svc, DisconnectReason.SLOW_CONSUMER, `more than ${this.#cfg.maxBufferedBytes} bytes unread`);
  }

  #register(svc: Service, data: IdentifyData): void {
    svc.identifyTimer?.cancel();
    svc.identifyTimer = undefined;
    if (data.name !== undefined) {
      if (this.#names.has(data.name) || this.#byId.has(data.name)) {
        this.#disconnect(svc, DisconnectReason.NAME_TAKEN, `the name "${data.name}" is in use`);
        return;
      }
      svc.name = data.name;
      this.#names.set(data.name, svc);
    }
    svc.identified = true;
    svc.conn.markAuthenticated();
    this.#byId.set(svc.id, svc);
    this.#router.add(svc.conn, svc.id);
    const groups = new Set<string>(data.groups ?? []);
    if (data.group !== undefined) groups.add(data.group);
    for (const g of groups) this.#router.join(svc.conn, g);
    svc.conn.identity = svc.name ?? svc.id;
    this.#m.services.set(this.#byId.size);
    svc.conn.send(encode.identified(svc.id, this.#cfg.heartbeatInterval));
    svc.heartbeat = this.#ctx.scheduler.every(this.#cfg.heartbeatInterval, () =>
      this.#feed(svc, { type: 'heartbeat-tick', now: this.#ctx.scheduler.now(), lastSeen: svc.conn.lastSeen }),
    );
  }

  #resolve(identifier: string): Service | undefined {
    return this.#byId.get(identifier) ?? this.#names.get(identifier);
  }

  #route(svc: Service, msg: Extract<BusMessage, { op: 0 }>): void {
    const { intent } = msg;
    this.#routed[intent.target]++;
    // Who got the frame, kept only when replies are expected (a Set filled per GLOBAL
    // event to 1,000 services was a visible cost in the bench's P2 profile).
    const delivered = msg.expectReply !== undefined && msg.id !== undefined ? new Set<string>() : undefined;
    if (intent.target === 'DIRECT') {
      const to = this.#resolve(intent.identifier as string);
      if (!to) return this.#noRoute(svc, msg);
      if (to.conn.send(this.#relayed(svc, msg.raw))) delivered?.add(to.id);
    } else {
      // Service ids are connection ids, so the router's receivers map straight to them.
      const except = intent.self ? undefined : svc.conn;
      const track = delivered && ((c: Connection) => delivered.add(c.id));
      if (intent.target === 'GROUP') {
        const members = this.#router.members(intent.identifier as string);
        if (members.size - (except && members.has(except) ? 1 : 0) === 0) return this.#noRoute(svc, msg);
        this.#router.fanout(members, this.#relayed(svc, msg.raw), except, track);
      } else if (this.#router.size - (except ? 1 : 0) > 0) {
        this.#router.broadcast(this.#relayed(svc, msg.raw), except, track);
      }
    }

    if (!delivered || msg.id === undefined || msg.expectReply === undefined) return;
    const collect = intent.target !== 'DIRECT';
    const expected = !collect ? 1 : msg.expectReply === 'all' ? delivered.size : Math.min(msg.expectReply, delivered.size);
    // A request id reused while the first is pending replaces it.
    this.#pending.take(msg.id);
    if (collect && expected === 0) {
      svc.conn.send(encode.replyEnd(msg.id, 0, 0, []));
      return;
    }
    this.#pending.add(msg.id, this.#cfg.requestTimeout, { requester: svc, recipients: delivered, replied: new Set(), expected, collect });
  }

  #noRoute(svc: Service, msg: Extract<BusMessage, { op: 0 }>): void {
    this.#m.noRoute.inc();
    svc.conn.send(
      encode.replyError(msg.id, ReplyError.NO_ROUTE, {
        target: msg.intent.target,
        identifier: msg.intent.identifier ?? null,
      }),
    );
  }

  #reply(svc: Service, msg: Extract<BusMessage, { op: 5 }>): void {
    const entry = this.#pending.get(msg.id);
    if (!entry) {
      this.#ctx.logger.debug({ service: svc.id, id: msg.id }, 'bus: REPLY to an unknown id ignored');
      return;
    }
    const w = entry.data;
    if (!w.recipients.has(svc.id) || w.replied.has(svc.id)) {
      this.#ctx.logger.debug({ service: svc.id, id: msg.id }, 'bus: REPLY from a service that was not asked, or answered already; ignored');
      return;
    }
    w.replied.add(svc.id);
    w.requester.conn.send(this.#relayed(svc, msg.raw));
    if (w.replied.size < w.expected) return;
    this.#pending.take(msg.id);
    this.#observe(entry, 'complete');
    if (w.collect) w.requester.conn.send(encode.replyEnd(msg.id, w.replied.size, w.expected, []));
  }

  #expire(entry: PendingEntry<ReplyWait>): void {
    const w = entry.data;
    this.#observe(entry, 'timeout');
    if (w.collect) {
      const missing = [...w.recipients].filter((id) => !w.replied.has(id));
      w.requester.conn.send(encode.replyEnd(entry.key, w.replied.size, w.expected, missing));
    } else {
      w.requester.conn.send(encode.replyError(entry.key, ReplyError.TIMEOUT));
    }
  }

  #observe(entry: PendingEntry<ReplyWait>, outcome: 'complete' | 'timeout'): void {
    this.#m.requestDuration.observe({ outcome }, (this.#ctx.scheduler.now() - entry.startedAt) / 1000);
  }

  #unregister(svc: Service): void {
    svc.identifyTimer?.cancel();
    svc.identifyTimer = undefined;
    svc.heartbeat?.cancel();
    svc.heartbeat = undefined;
    if (!svc.identified) return;
    svc.identified = false;
    this.#router.remove(svc.conn, svc.id);
    this.#byId.delete(svc.id);
    if (svc.name !== undefined && this.#names.get(svc.name) === svc) this.#names.delete(svc.name);
    this.#pending.takeWhere((e) => e.data.requester === svc);
    this.#m.services.set(this.#byId.size);
  }

  #release(svc: Service): void {
    this.#unregister(svc);
    svc.state = { phase: 'closed' };
    this.#services.delete(svc.conn);
  }
}

function headerToken(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  return h.startsWith('Bearer ') ? h.slice(7) : h;
}

/** JSON's insignificant whitespace: space, tab, line feed, carriage return. */
function isJsonSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}
