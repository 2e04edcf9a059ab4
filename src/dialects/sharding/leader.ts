/**
 * The sharding leader: runs the orchestrator (machine.ts on the core DialectRuntime)
 * while this instance holds the leadership, one runtime per term. The CONTROL sockets
 * are held by the edges (edge.ts, one per instance); the leader hears their events on
 * the `sharding:leader` topic and sends its frames and closes back to the edge holding
 * each socket (link.ts). In one process (SoloLeadership) there is one term from the
 * start, and every message goes through the LocalBroker synchronously: nothing changes
 * on the wire.
 *
 * A term:
 * - elected with a fencing token: subscribes, loads the stored state, starts the world,
 *   then says hello to every edge, which re-announce their sockets (world/takeover.ts);
 * - writes through the fenced store with its token: a write refused because a newer
 *   leader exists ends the term at once;
 * - deposed: stops issuing orders at once (the proxies drop every frame and close),
 *   unsubscribes and stops its timers. Every order carries the token, so an edge that
 *   has heard a newer leader drops a paused old leader's orders too; and a leader that
 *   hears a newer one's hello steps down.
 */
import type { Logger } from 'pino';
import type { Broker } from '../../cluster/broker.js';
import { fencedStore, type Leadership } from '../../cluster/leadership.js';
import type { DialectContext, HttpReply } from '../../core/dialect.js';
import { DialectRuntime, timerEvent, type AdminAnswer, type RuntimeConnection, type World } from '../../core/runtime.js';
import { decodeControlFrame } from '../../protocols/sharding/messages.js';
import { NOT_LEADER_BODY, viewReply } from './ask.js';
import { decodeLink, EDGES_TOPIC, edgeTopic, encodeLink, LEADER_TOPIC, type AdminQuery, type AnnouncedSocket, type ToEdge, type ToLeader } from './link.js';
import { controlState, initialState, step, timerId, type AdminAction, type Effect, type FleetEvent, type FleetState, type MachineConfig, type TimerKey } from './machine.js';

/** Store namespace of the sharding dialect. */
export const STORE_NS = 'sharding';

/** Log lines one CONTROL socket can cause at will (ERROR frames): 5 at once, then 1 a second. */
const PEER_LOG_RATE = { perSecond: 1, burst: 5 };

/** The least time between two requests to one edge to re-announce its sockets. */
const REANNOUNCE_GAP_MS = 1_000;

/** The machine's own effects (beside the core ones): metrics. */
export type ShardingEffect = Extract<Effect, { type: 'failover' | 'grant' }>;

/** The answer of an instance that has stopped leading since the call was routed to it. */
const NOT_LEADER: AdminAnswer = { status: 503, body: NOT_LEADER_BODY };

export interface ShardingLeaderOptions {
  readonly config: () => MachineConfig;
  readonly ctx: DialectContext;
  readonly leadership: Leadership;
  /** After every step of the current term (metrics, warnings). */
  readonly observe: (before: FleetState, after: FleetState, ev: FleetEvent) => void;
  /** The machine's own effects (metrics). */
  readonly effect: (e: ShardingEffect) => void;
}

type Runtime = DialectRuntime<FleetState, FleetEvent, TimerKey, ShardingEffect>;

class Term {
  active = true;
  /** Which instance holds each socket. */
  readonly where = new Map<string, string>();
  /** When each instance was last asked to re-announce its sockets. */
  readonly asked = new Map<string, number>();
  ready: Promise<void> = Promise.resolve();
  unsubscribe: () => void = () => undefined;
  /** Set right after construction (the runtime's hooks need the term). */
  rt!: Runtime;
  constructor(readonly token: number) {}
}

export class ShardingLeader {
  readonly #o: ShardingLeaderOptions;
  readonly #broker: Broker;
  readonly #log: Logger;
  readonly #idle: FleetState;
  readonly #unwatch: () => void;
  #term: Term | undefined;
  #stopped = false;

  constructor(opts: ShardingLeaderOptions) {
    this.#o = opts;
    this.#broker = opts.ctx.broker;
    this.#log = opts.ctx.logger;
    this.#idle = initialState(opts.config(), opts.ctx.scheduler.now());
    this.#unwatch = opts.leadership.onChange((isLeader, token) => {
      if (isLeader && token !== undefined) this.#elect(token);
      else this.#depose('the lease was lost');
    });
    const { isLeader, token } = opts.leadership;
    if (isLeader && token !== undefined) this.#elect(token);
  }

  /** The orchestrator's state in this term; an idle fleet while not the leader. */
  get state(): FleetState {
    return this.#term?.rt.state ?? this.#idle;
  }

  get isLeader(): boolean {
    return this.#term?.active === true;
  }

  /** The current term's token (undefined while not the leader). */
  get token(): number | undefined {
    return this.#term?.active === true ? this.#term.token : undefined;
  }

  /** Resolves once the current term has loaded the stored state (at once while not the leader). */
  get ready(): Promise<void> {
    return this.#term?.ready ?? Promise.resolve();
  }

  get timerCount(): number {
    return this.#term?.rt.timerCount ?? 0;
  }

  get stopped(): boolean {
    return this.#stopped || (this.#term?.rt.stopped ?? false);
  }

  /** Feeds an admin call to the current term (503 NOT_LEADER on another instance). */
  async admin(action: AdminAction): Promise<AdminAnswer> {
    const term = this.#term;
    if (!term?.active) return NOT_LEADER;
    await term.ready;
    return term.rt.admin({ type: 'admin', now: this.#now(), action });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unwatch();
    const term = this.#term;
    if (!term) return;
    term.unsubscribe();
    await term.rt.stop();
  }

  #now(): number {
    return this.#o.ctx.scheduler.now();
  }

  #elect(token: number): void {
    if (this.#stopped) return;
    if (this.#term?.active && this.#term.token === token) return;
    if (this.#term) this.#depose('a new term began');
    const { ctx } = this.#o;
    const t = new Term(token);
    const world: World<FleetState, FleetEvent, TimerKey, ShardingEffect> = {
      step: (state, ev) => step(state, ev, this.#o.config()),
      timerEvent,
      timerId,
      effect: (e) => this.#o.effect(e),
    };
    t.rt = new DialectRuntime({
      name: 'sharding',
      world,
      initial: initialState(this.#o.config(), ctx.scheduler.now()),
      scheduler: ctx.scheduler,
      logger: ctx.logger,
      store: { store: fencedStore(ctx.store, token, () => this.#fenced(t)), namespace: STORE_NS },
      peerLogRate: PEER_LOG_RATE,
      held: true,
      peek: (state, ev) => ('conn' in ev && ctx.logger.isLevelEnabled('debug') ? socketPhase(state, ev.conn) : undefined),
      observe: (before, after, ev, _fx, was) => this.#observe(t, before, after, ev, was),
    });
    this.#term = t;
    const unsubscribe = [
      this.#broker.subscribe(LEADER_TOPIC, (buf) => {
        const m = decodeLink<ToLeader>(buf);
        if (m && t.active) this.#hear(t, m);
      }),
      // A paused leader that wakes up after a newer one was elected steps down as soon as it hears of it.
      this.#broker.subscribe(EDGES_TOPIC, (buf) => {
        const m = decodeLink<ToEdge>(buf);
        if (m?.k === 'hello' && m.t > t.token && this.#term === t) this.#depose('a newer leader said hello');
      }),
    ];
    t.unsubscribe = () => {
      for (const u of unsubscribe.splice(0)) u();
    };
    t.ready = this.#load(t);
    if (token !== 0) this.#log.info({ token }, 'sharding: elected leader; loading the fleet from the store');
  }

  #depose(why: string): void {
    const t = this.#term;
    if (!t) return;
    this.#term = undefined;
    t.active = false;
    t.unsubscribe();
    void t.rt.stop();
    this.#log.warn({ token: t.token, why }, 'sharding: no longer the leader; this instance stops issuing orders');
  }

  #fenced(t: Term): void {
    if (!t.active) return;
    this.#log.error({ token: t.token }, 'sharding: a write was refused (a newer leader holds the lease)');
    if (this.#term === t) this.#depose('fenced out');
  }

  async #load(t: Term): Promise<void> {
    const { store } = this.#o.ctx;
    let fleet: unknown;
    let assignment: unknown;
    let budget: unknown;
    try {
      [fleet, assignment, budget] = await Promise.all([store.get(STORE_NS, 'fleet'), store.get(STORE_NS, 'assignment'), store.get(STORE_NS, 'budget')]);
    } catch (err) {
      this.#log.error({ err }, 'sharding: could not load the stored assignment; starting afresh');
    }
    if (!t.active) return;
    t.rt.start({ type: 'loaded', now: this.#now(), fleet, assignment, budget });
    this.#broker.publish(EDGES_TOPIC, encodeLink({ k: 'hello', t: t.token }));
  }

  /** An edge's message. Times are this instance's, taken when the message arrives. */
  #hear(t: Term, m: ToLeader): void {
    const { rt } = t;
    switch (m.k) {
      case 'open':
        this.#attach(t, m.c, m.i);
        rt.enqueue(() => ({ type: 'open', now: this.#now(), conn: m.c, sessionId: m.s }));
        return;
      case 'frame': {
        if (!t.where.has(m.c)) return this.#reannounce(t, m.i);
        const now = this.#now();
        const res = decodeControlFrame(m.f);
        rt.enqueue(() => (res.ok ? { type: 'message', now, conn: m.c, frame: res.frame } : { type: 'malformed', now, conn: m.c, detail: res.detail }));
        return;
      }
      case 'bad': {
        const now = this.#now();
        rt.enqueue(() => ({ type: 'malformed', now, conn: m.c, detail: m.d }));
        return;
      }
      case 'closed': {
        t.where.delete(m.c);
        rt.detach(m.c);
        const now = this.#now();
        rt.enqueue(() => ({ type: 'closed', now, conn: m.c }));
        return;
      }
      case 'announce':
        if (m.t === t.token) for (const s of m.sockets) this.#adopt(t, m.i, s);
        return;
      case 'ask':
        void this.#answer(t, m.i, m.id, m.q);
        return;
      default:
        return;
    }
  }

  /**
   * A frame from a socket this term does not know: its edge's announce was lost (or came
   * before this term listened). That edge is asked again, at most once a second.
   */
  #reannounce(t: Term, instance: string): void {
    const now = this.#now();
    if ((t.asked.get(instance) ?? Number.NEGATIVE_INFINITY) + REANNOUNCE_GAP_MS > now) return;
    t.asked.set(instance, now);
    this.#broker.publish(edgeTopic(instance), encodeLink({ k: 'hello', t: t.token }));
  }

  /** An admin question from another instance: answered as a local call would be, on its edge topic. */
  async #answer(t: Term, instance: string, id: string, q: AdminQuery): Promise<void> {
    await t.ready;
    const reply: HttpReply = 'action' in q ? await t.rt.admin({ type: 'admin', now: this.#now(), action: q.action }) : viewReply(t.rt.state, this.#o.config(), this.#now(), q);
    if (!t.active) return;
    this.#broker.publish(edgeTopic(instance), encodeLink({ k: 'answer', t: t.token, id, ...(reply.status !== undefined ? { status: reply.status } : {}), body: reply.body, ...(reply.headers ? { headers: reply.headers } : {}) }));
  }

  #adopt(t: Term, instance: string, s: AnnouncedSocket): void {
    if (t.where.has(s.conn)) return;
    this.#attach(t, s.conn, instance);
    const { rt } = t;
    if (!s.initialised) {
      rt.enqueue(() => ({ type: 'open', now: this.#now(), conn: s.conn, sessionId: s.sessionId }));
      return;
    }
    const control = s.control;
    rt.enqueue(() => ({ type: 'adopt', now: this.#now(), conn: s.conn, sessionId: s.sessionId, ...(control ? { control } : {}) }));
    for (const f of s.replay ?? []) this.#hear(t, { k: 'frame', i: instance, c: s.conn, f });
  }

  /** A stand-in for a socket on an edge: frames and closes become orders to that edge, while the term lasts. */
  #attach(t: Term, conn: string, instance: string): void {
    t.where.set(conn, instance);
    const topic = edgeTopic(instance);
    const order = (m: ToEdge): boolean => {
      if (!t.active) return false;
      this.#broker.publish(topic, encodeLink(m));
      return true;
    };
    const proxy: RuntimeConnection = {
      id: conn,
      send: (f) => order({ k: 'send', t: t.token, c: conn, f: typeof f === 'string' ? f : f.toString('utf8') }),
      close: (code, reason) => void order({ k: 'close', t: t.token, c: conn, code, reason }),
    };
    t.rt.attach(proxy);
  }

  /** After every step: the CONTROL's name and debug phase to its edge, then the dialect's observer. */
  #observe(t: Term, before: FleetState, after: FleetState, ev: FleetEvent, was: unknown): void {
    if (!t.active) return;
    if ('conn' in ev) {
      const instance = t.where.get(ev.conn);
      const topic = instance === undefined ? undefined : edgeTopic(instance);
      if (topic !== undefined && typeof was === 'string') {
        const to = socketPhase(after, ev.conn);
        if (to !== was) this.#broker.publish(topic, encodeLink({ k: 'phase', t: t.token, c: ev.conn, from: was, to }));
      }
      const name = after.sockets.get(ev.conn)?.control;
      if (topic !== undefined && name && before.sockets.get(ev.conn)?.control !== name) {
        this.#broker.publish(topic, encodeLink({ k: 'identity', t: t.token, c: ev.conn, name }));
      }
    }
    this.#o.observe(before, after, ev);
  }
}

/** A socket's phase for the debug log: its CONTROL's state once it has identified. */
export function socketPhase(state: FleetState, conn: string): string {
  const sock = state.sockets.get(conn);
  if (!sock) return 'closed';
  const rec = sock.control !== null ? state.controls.get(sock.control) : undefined;
  return rec ? controlState(state, rec) : 'initialised';
}
