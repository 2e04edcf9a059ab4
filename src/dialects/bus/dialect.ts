import type { IncomingMessage } from 'node:http';
import { Counter, Gauge } from 'prom-client';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpRoute } from '../../core/dialect.js';
import { FifoPending, type PendingEntry } from '../../core/pending.js';
import { LogLimiter, TokenBucket, type Rate } from '../../core/ratelimit.js';
import { Router } from '../../core/router.js';
import { Ticker } from '../../core/ticker.js';
import { BatchedHistogram } from '../../core/batched-histogram.js';
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
  /** EVENTs a service may send per second (0: no limit); bursts of 2 s. */
  maxEventsPerSecond?: number;
  /** EVENT bytes a service may send per second (0: no limit); bursts of 2 s, at least one largest frame. */
  maxEventBytesPerSecond?: number;
  /** Largest frame before IDENTIFY succeeds (default DEFAULT_PRE_AUTH_MAX_BYTES). */
  preAuthMaxBytes?: number;
}

export interface BusDialectDeps {
  secretEquals: (a: string, b: string) => boolean;
}

/**
 * One bus connection. It is its connection's handler too, so a socket costs one object
 * here and no closures; what only some services need (rate buckets, the index of
 * requests it was asked) is made the first time it is needed.
 */
class Service implements ConnectionHandler {
  state: ConnState = initialState;
  name: string | undefined = undefined;
  identified = false;
  /** `"source":"<id>"}` as bytes, made the first time this service sends an EVENT or REPLY. */
  sourceTail: Buffer | undefined = undefined;
  /**
   * Pending requests this service was asked and has not answered, by request id, oldest
   * first. Its own map: several requesters may use the same id towards it. Made on the
   * first request it is asked.
   */
  asked: Map<string, PendingEntry<ReplyWait>[]> | undefined = undefined;
  /** The sender's EVENT rate limit: count and bytes (made on its first EVENT). */
  events: TokenBucket | undefined = undefined;
  eventBytes: TokenBucket | undefined = undefined;

  constructor(
    readonly bus: BusDialect,
    readonly conn: Connection,
    readonly id: string,
    readonly headerToken: string | undefined,
  ) {}

  onMessage(data: Buffer, binary: boolean): void {
    this.bus._frame(this, data, binary);
  }

  onClose(): void {
    this.bus._release(this);
  }
}

interface ReplyWait {
  readonly requester: Service;
  /** The request id, as the requester chose it (unique only per requester). */
  readonly id: string;
  /** The request's intent, for the NO_ROUTE answer when a DIRECT recipient leaves. */
  readonly identifier: string | undefined;
  /** Receivers still expected to answer, or who answered. */
  readonly recipients: ReadonlySet<string>;
  readonly replied: Set<string>;
  /** Receivers that left before answering (made when the first one leaves). */
  gone: Set<string> | undefined;
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
  readonly #pending: FifoPending<ReplyWait>;
  /** Services that have not identified yet, oldest first (their identifyTimeout deadlines). */
  readonly #identifying: FifoPending<Service>;
  readonly #now: () => number;
  /** Every identified service's heartbeat, one scheduler timer for all. */
  readonly #heartbeats: Ticker<Service>;
  /** Whether any EVENT rate limit is on. */
  readonly #limited: boolean;
  /** EVENTs routed since the counter was last read, by intent (see the constructor). */
  readonly #routed: Record<'GLOBAL' | 'GROUP' | 'DIRECT', number> = { GLOBAL: 0, GROUP: 0, DIRECT: 0 };
  readonly #m: {
    services: Gauge;
    routed: Counter<'target'>;
    noRoute: Counter;
    disconnects: Counter<'reason'>;
    requestDuration: BatchedHistogram<'outcome'>;
    repliesDropped: Counter;
    rateLimited: Counter;
  };
  readonly #eventRate: Rate;
  readonly #byteRate: Rate;
  /** Warn lines about a service over its rate, capped per service. */
  readonly #rateLog: LogLimiter<string>;

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
    this.#pending = new FifoPending<ReplyWait>(ctx.scheduler, cfg.requestTimeout, (e) => this.#expire(e));
    this.#identifying = new FifoPending<Service>(ctx.scheduler, cfg.identifyTimeout, (e) => this.#feed(e.data, { type: 'identify-deadline' }));
    this.#now = () => ctx.scheduler.now();
    this.#heartbeats = new Ticker<Service>(ctx.scheduler, cfg.heartbeatInterval, (svc, now) =>
      this.#feed(svc, { type: 'heartbeat-tick', now, lastSeen: svc.conn.lastSeen }),
    );
    const events = cfg.maxEventsPerSecond ?? 0;
    const bytes = cfg.maxEventBytesPerSecond ?? 0;
    this.#eventRate = { perSecond: events, burst: 2 * events };
    this.#byteRate = { perSecond: bytes, burst: Math.max(2 * bytes, cfg.maxMessageBytes) };
    this.#limited = events > 0 || bytes > 0;
    this.#rateLog = new LogLimiter<string>(() => ctx.scheduler.now(), { perSecond: 0.1, burst: 1 });
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
      // Observed into plain counts, handed to prom-client when the registry is read.
      requestDuration: new BatchedHistogram({
        name: 'muster_bus_request_duration_seconds',
        help: 'Time from an EVENT with expect_reply to its last reply, TIMEOUT or REPLY_END',
        labelNames: ['outcome'],
        buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
        registers,
      }),
      rateLimited: new Counter({
        name: 'muster_bus_rate_limited_total',
        help: 'EVENTs refused with RATE_LIMITED because their sender was over its rate',
        registers,
      }),
      repliesDropped: new Counter({
        name: 'muster_bus_replies_dropped_total',
        help: 'REPLYs that answered no pending request addressed to their sender (not asked, answered already, or too late)',
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
    const svc = new Service(this, conn, conn.id, headerToken(req));
    this.#services.set(conn, svc);
    this.#identifying.add(svc.id, svc);
    conn.onSlowConsumer = this.#onSlowConsumer;
    return svc;
  }

  /** One function for every connection (not a closure per socket). */
  readonly #onSlowConsumer = (conn: Connection): void => {
    const svc = this.#services.get(conn);
    if (svc) this.#slowConsumer(svc);
  };

  /** @internal A frame from a service's socket (Service.onMessage). */
  _frame(svc: Service, data: Buffer, binary: boolean): void {
    this.#feed(svc, { type: 'frame', data, binary, headerToken: svc.headerToken });
  }

  /** @internal A service's socket closed (Service.onClose). */
  _release(svc: Service): void {
    this.#release(svc);
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
    svc.conn.stateChanged(svc.state.phase, state.phase);
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
    this.#identifying.take(svc.id);
    if (data.name !== undefined) {
      if (this.#names.has(data.name) || this.#byId.has(data.name)) {
        svc.conn.markWhy('name in use');
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
    this.#heartbeats.add(svc);
  }

  #resolve(identifier: string): Service | undefined {
    return this.#byId.get(identifier) ?? this.#names.get(identifier);
  }

  #route(svc: Service, msg: Extract<BusMessage, { op: 0 }>): void {
    const { intent } = msg;
    const size = this.#frame?.length ?? Buffer.byteLength(msg.raw);
    if (this.#limited) {
      const events = (svc.events ??= new TokenBucket(this.#now, this.#eventRate));
      const eventBytes = (svc.eventBytes ??= new TokenBucket(this.#now, this.#byteRate));
      const wait = Math.max(events.waitMs(1), eventBytes.waitMs(size));
      if (wait > 0) return this.#rateLimited(svc, msg, wait);
      events.take(1);
      eventBytes.take(size);
    }
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
    // Pending requests are keyed by requester and id: the id is the requester's to choose,
    // so another service using the same id can neither replace nor answer this one. A
    // requester reusing its own id while the first is pending replaces the first.
    const key = pendingKey(svc, msg.id);
    const old = this.#pending.take(key);
    if (old) this.#unindex(old);
    if (!collect && delivered.size === 0) {
      // The recipient was cut (slow consumer) while the request was being queued.
      this.#noRoute(svc, msg);
      return;
    }
    if (collect && expected === 0) {
      svc.conn.send(encode.replyEnd(msg.id, 0, 0, []));
      return;
    }
    const entry = this.#pending.add(key, {
      requester: svc,
      id: msg.id,
      identifier: intent.identifier,
      recipients: delivered,
      replied: new Set(),
      gone: undefined,
      expected,
      collect,
    });
    for (const rid of delivered) {
      const to = this.#byId.get(rid);
      if (!to) continue;
      const asked = (to.asked ??= new Map());
      const list = asked.get(msg.id);
      if (list) list.push(entry);
      else asked.set(msg.id, [entry]);
    }
  }

  /** Forgets a finished request in every recipient's `asked` index. */
  #unindex(entry: PendingEntry<ReplyWait>): void {
    const w = entry.data;
    for (const rid of w.recipients) {
      if (w.replied.has(rid) || w.gone?.has(rid)) continue;
      const to = this.#byId.get(rid);
      if (to) dropAsked(to, w.id, entry);
    }
  }

  /**
   * The sender is over its rate: the EVENT is not delivered, and the sender gets
   * `{op: 5, id, data: {error: "RATE_LIMITED", retry_after: <ms>}}` (fast, so a request
   * fails at once instead of timing out). Receivers never see the excess.
   */
  #rateLimited(svc: Service, msg: Extract<BusMessage, { op: 0 }>, retryAfter: number): void {
    this.#m.rateLimited.inc();
    const held = this.#rateLog.allow(svc.id);
    if (held !== undefined) {
      this.#ctx.logger.warn({ service: svc.id, name: svc.name, suppressed: held }, 'bus: service over its EVENT rate limit; EVENTs refused with RATE_LIMITED');
    }
    svc.conn.send(encode.replyError(msg.id, ReplyError.RATE_LIMITED, { retry_after: retryAfter }));
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

  /**
   * A REPLY answers a pending request that was delivered to its sender and that it has
   * not answered yet. When several requesters asked it the same id, a REPLY whose intent
   * is DIRECT to one of them (by id or name) answers that one; otherwise the oldest.
   */
  #reply(svc: Service, msg: Extract<BusMessage, { op: 5 }>): void {
    const list = svc.asked?.get(msg.id);
    if (!list) {
      this.#m.repliesDropped.inc();
      this.#ctx.logger.debug({ service: svc.id, id: msg.id }, 'bus: REPLY that answers no request this service was asked; dropped');
      return;
    }
    let entry = list[0] as PendingEntry<ReplyWait>;
    if (list.length > 1 && msg.to !== undefined) {
      const named = this.#resolve(msg.to);
      entry = list.find((e) => e.data.requester === named) ?? entry;
    }
    dropAsked(svc, msg.id, entry);
    const w = entry.data;
    w.replied.add(svc.id);
    w.requester.conn.send(this.#relayed(svc, msg.raw));
    if (w.replied.size >= w.expected) this.#finish(entry, 'complete');
    else if (w.replied.size + (w.gone?.size ?? 0) >= w.recipients.size) this.#finish(entry, 'gone');
  }

  /** Ends a request before its deadline: every expected reply came, or nobody is left to answer. */
  #finish(entry: PendingEntry<ReplyWait>, outcome: 'complete' | 'gone'): void {
    const w = entry.data;
    this.#pending.take(entry.key);
    this.#unindex(entry);
    this.#observe(entry, outcome);
    if (w.collect) w.requester.conn.send(encode.replyEnd(w.id, w.replied.size, w.expected, this.#missing(w)));
    else if (outcome === 'gone') {
      w.requester.conn.send(encode.replyError(w.id, ReplyError.NO_ROUTE, { target: 'DIRECT', identifier: w.identifier ?? null }));
    }
  }

  #missing(w: ReplyWait): string[] {
    if (w.replied.size >= w.expected) return [];
    return [...w.recipients].filter((id) => !w.replied.has(id));
  }

  #expire(entry: PendingEntry<ReplyWait>): void {
    const w = entry.data;
    this.#unindex(entry);
    this.#observe(entry, 'timeout');
    if (w.collect) {
      w.requester.conn.send(encode.replyEnd(w.id, w.replied.size, w.expected, this.#missing(w)));
    } else {
      w.requester.conn.send(encode.replyError(w.id, ReplyError.TIMEOUT));
    }
  }

  /**
   * A recipient left: a DIRECT request to it is answered NO_ROUTE at once; a collection
   * ends at once (REPLY_END) when nobody who could still answer is left.
   */
  #recipientGone(svc: Service): void {
    if (!svc.asked) return;
    for (const list of svc.asked.values()) {
      for (const entry of list) {
        const w = entry.data;
        const gone = (w.gone ??= new Set());
        gone.add(svc.id);
        if (!w.collect || w.replied.size + gone.size >= w.recipients.size) this.#finish(entry, 'gone');
      }
    }
    svc.asked.clear();
  }

  #observe(entry: PendingEntry<ReplyWait>, outcome: 'complete' | 'timeout' | 'gone'): void {
    this.#m.requestDuration.observeOne(outcome, (this.#ctx.scheduler.now() - entry.startedAt) / 1000);
  }

  #unregister(svc: Service): void {
    this.#identifying.take(svc.id);
    this.#heartbeats.delete(svc);
    if (!svc.identified) return;
    svc.identified = false;
    this.#router.remove(svc.conn, svc.id);
    for (const e of this.#pending.takeWhere((e) => e.data.requester === svc)) this.#unindex(e);
    this.#recipientGone(svc);
    this.#byId.delete(svc.id);
    if (svc.name !== undefined && this.#names.get(svc.name) === svc) this.#names.delete(svc.name);
    this.#m.services.set(this.#byId.size);
  }

  #release(svc: Service): void {
    this.#unregister(svc);
    this.#rateLog.forget(svc.id);
    svc.state = { phase: 'closed' };
    this.#services.delete(svc.conn);
  }
}

/** A pending request's key: the requester's service id (server-made, no "/"), then its id. */
function pendingKey(requester: Service, id: string): string {
  return `${requester.id}/${id}`;
}

/** Removes one entry from a service's `asked` index. */
function dropAsked(svc: Service, id: string, entry: PendingEntry<ReplyWait>): void {
  const list = svc.asked?.get(id);
  if (!list) return;
  if (list.length === 1 && list[0] === entry) {
    svc.asked?.delete(id);
    return;
  }
  const i = list.indexOf(entry);
  if (i >= 0) list.splice(i, 1);
  if (list.length === 0) svc.asked?.delete(id);
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
