/**
 * The sharding orchestrator as a pure state machine: (state, event) → (state, effects).
 *
 * Events are socket opens, decoded frames, malformed frames, socket closes, deadlines
 * (keyed timers), admin calls and the store load at start. Effects are frames to
 * send, closes, timers to arm or cancel, records to persist, metric observations,
 * log lines and admin replies. The runtime (dialect.ts) carries them out; nothing
 * here touches a socket, a clock or the store.
 *
 * Invariants kept here:
 * - every shard has at most one owner; in a make-before-break the incoming CONTROL
 *   is the shard's `target` until it reports CONNECTED, then it becomes the owner and
 *   the old owner gets SHUTDOWN;
 * - shards of a CONTROL that died or stayed away past `reconnectWindow` are given to a
 *   standby, or split by capacity over the live CONTROLs, in the same step;
 * - IDENTIFY_GRANTs follow the bucket/window rule and the daily budget (identify-queue.ts).
 */
import type { JsonValue } from '../../store/types.js';
import {
  CloseCodes,
  encodeMaster,
  Op,
  OP_NAMES,
  PROTOCOL_VIOLATION,
  type ControlFrame,
  type IdentifyPayload,
} from '../../protocols/sharding/messages.js';
import { expand, formatRanges, outside, toRanges, type Range } from '../../protocols/sharding/ranges.js';
import type { CommandBody, RebalanceBody } from '../../protocols/sharding/admin.js';
import { planFailover, planRebalance, planStart, type Move } from './assignment.js';
import { budgetRemaining, drain, dropWhere, emptyQueue, enqueue, type QueueConfig, type QueueState } from './identify-queue.js';

export interface MachineConfig {
  readonly botToken: string;
  readonly shardCount: number;
  readonly maxConcurrency: number;
  readonly heartbeatInterval: number;
  readonly heartbeatGrace: number;
  readonly reconnectWindow: number;
  readonly startupDelay: number;
  readonly expectedControls: number;
  readonly redundancy: number;
  readonly startup: 'sequential' | 'parallel';
  readonly connectTimeout: number;
  readonly identifyWindow: number;
  /**
   * Added to `identifyWindow` between two grants of a bucket, so that gaps measured at
   * Discord's gateway (grant-to-IDENTIFY latency differs between CONTROLs) are never
   * shorter than the window. Absent: 0.
   */
  readonly identifyMargin?: number;
  readonly sessionStartLimit: number;
  readonly fenceMargin: number;
  readonly identifyTimeout: number;
  /** Length of the session-start budget period (24 h; shorter only in tests). */
  readonly budgetPeriod?: number;
}

export const IDENTIFY_QUEUE_FEATURE = 'identify-queue';

export type Phase = 'loading' | 'waiting' | 'starting' | 'running' | 'halted';
/** Progress of a shard on its owner: CONNECT/OFFLOAD sent, CONNECTING heard, CONNECTED heard. */
export type ShardWork = 'assigned' | 'connecting' | 'connected';
/** What the admin API shows for a shard. */
export type ShardState = 'unassigned' | 'pending' | ShardWork | 'disconnected' | 'halted';
/** What the admin API shows for a CONTROL. */
export type ControlState = 'waiting' | 'connecting' | 'ready' | 'standby' | 'disconnected';

/** Immutable: a step replaces the records it changes (see Tx.patch), so a step costs O(shards) pointers, not a deep copy. */
export interface ShardRec {
  readonly owner: string | null;
  readonly work: ShardWork;
  /** The incoming owner of a make-before-break, until it reports CONNECTED. */
  readonly target: string | null;
  /** The CONTROL whose start-up CONNECT will carry this shard. */
  readonly planned: string | null;
  /** Who owned it before it was lost (OFFLOAD `from`). */
  readonly lastOwner: string | null;
  /** When its owner was lost (for the failover-duration metric). */
  readonly lostAt: number | null;
}

export interface SocketRec {
  readonly id: string;
  readonly sessionId: string;
  control: string | null;
  readonly openedAt: number;
  closing: boolean;
}

export interface ControlRec {
  readonly name: string;
  sessionId: string;
  conn: string | null;
  capacity: number;
  features: string[];
  readonly order: number;
  /** Has had its CONNECT (or adopted or re-attached shards). */
  started: boolean;
  redundant: boolean;
  /** Shards its start-up CONNECT will carry, while it waits for its turn. */
  plan: number[] | null;
  planRedundant: boolean;
  /** A CONNECT or OFFLOAD is outstanding since then (connectTimeout runs). */
  awaitingSince: number | null;
  identifiedAt: number;
  /** Base of the heartbeat deadline: the last HEARTBEAT or the IDENTIFY. */
  hbBase: number;
  lastHeartbeat: number | null;
  disconnectedAt: number | null;
  /** The last INFO's `d`, as text (numbers verbatim). */
  info: string | null;
  infoAt: number | null;
}

export interface FleetState {
  phase: Phase;
  haltReason: string | null;
  haltedAt: number | null;
  readonly bootAt: number;
  /** startupDelay has passed with nobody connected: start at the first IDENTIFY. */
  startupDue: boolean;
  sockets: Map<string, SocketRec>;
  controls: Map<string, ControlRec>;
  shards: ShardRec[];
  /** Sequential start: CONTROLs waiting for their CONNECT, and the one being waited on. */
  sequence: string[];
  current: string | null;
  queue: QueueState;
  exhausted: boolean;
  orderSeq: number;
  /** Armed timers by key, with their due time. */
  timers: Map<string, number>;
}

export type AdminAction =
  | { readonly kind: 'halt' }
  | { readonly kind: 'resume' }
  /** Bodies are checked at the HTTP edge (protocols/sharding/admin.ts); `undefined`: no body. */
  | { readonly kind: 'rebalance'; readonly body: RebalanceBody | undefined }
  | { readonly kind: 'command'; readonly name: string; readonly body: CommandBody };

export type FleetEvent =
  | { readonly type: 'loaded'; readonly now: number; readonly fleet?: unknown; readonly assignment?: unknown; readonly budget?: unknown }
  | { readonly type: 'open'; readonly now: number; readonly conn: string; readonly sessionId: string }
  | { readonly type: 'message'; readonly now: number; readonly conn: string; readonly frame: ControlFrame }
  | { readonly type: 'malformed'; readonly now: number; readonly conn: string; readonly detail: string }
  | { readonly type: 'closed'; readonly now: number; readonly conn: string }
  | { readonly type: 'timer'; readonly now: number; readonly key: string }
  | { readonly type: 'admin'; readonly now: number; readonly action: AdminAction };

export type PersistKey = 'fleet' | 'assignment' | 'budget';

export type Effect =
  | { readonly type: 'send'; readonly conn: string; readonly frame: string }
  | { readonly type: 'close'; readonly conn: string; readonly code: number; readonly reason: string }
  | { readonly type: 'timer'; readonly key: string; readonly at: number | null }
  | { readonly type: 'persist'; readonly key: PersistKey; readonly value: JsonValue }
  | { readonly type: 'failover'; readonly seconds: number }
  | { readonly type: 'grant'; readonly shard: number; readonly control: string }
  | { readonly type: 'log'; readonly level: 'debug' | 'info' | 'warn' | 'error'; readonly msg: string; readonly data?: Record<string, unknown>; readonly peer?: string }
  | { readonly type: 'reply'; readonly status: number; readonly body: unknown };

export interface Step {
  readonly state: FleetState;
  readonly effects: readonly Effect[];
}

export function initialState(cfg: MachineConfig, now: number): FleetState {
  return {
    phase: 'loading',
    haltReason: null,
    haltedAt: null,
    bootAt: now,
    startupDue: false,
    sockets: new Map(),
    controls: new Map(),
    shards: Array.from({ length: cfg.shardCount }, () => ({ owner: null, work: 'assigned', target: null, planned: null, lastOwner: null, lostAt: null })),
    sequence: [],
    current: null,
    queue: emptyQueue(cfg.maxConcurrency),
    exhausted: false,
    orderSeq: 0,
    timers: new Map(),
  };
}

/** A copy that the step may change without touching `s`: shard records are shared (immutable), the rest is small. */
function draft(s: FleetState): FleetState {
  return {
    ...s,
    sockets: new Map([...s.sockets].map(([k, v]) => [k, { ...v }])),
    controls: new Map([...s.controls].map(([k, v]) => [k, { ...v, features: [...v.features], plan: v.plan === null ? null : [...v.plan] }])),
    shards: s.shards.slice(),
    sequence: [...s.sequence],
    timers: new Map(s.timers),
  };
}

export function step(state: FleetState, event: FleetEvent, cfg: MachineConfig): Step {
  const tx = new Tx(draft(state), cfg, event.now);
  tx.handle(event);
  tx.settle();
  return { state: tx.s, effects: tx.fx };
}

export function queueConfig(cfg: MachineConfig): QueueConfig {
  return {
    maxConcurrency: cfg.maxConcurrency,
    identifyWindow: cfg.identifyWindow + (cfg.identifyMargin ?? 0),
    sessionStartLimit: cfg.sessionStartLimit,
    ...(cfg.budgetPeriod !== undefined ? { budgetPeriod: cfg.budgetPeriod } : {}),
  };
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isRange = (v: unknown): v is Range =>
  Array.isArray(v) && v.length === 2 && v.every((n) => Number.isSafeInteger(n) && (n as number) >= 0) && (v[0] as number) <= (v[1] as number);
const isRanges = (v: unknown): v is Range[] => Array.isArray(v) && v.every(isRange);

class Tx {
  readonly fx: Effect[] = [];
  readonly #dirty = new Set<PersistKey>();
  /** Something happened that may leave a shard without owner, or give one a home. */
  orphansMaybe = false;

  constructor(
    readonly s: FleetState,
    readonly cfg: MachineConfig,
    readonly now: number,
  ) {}

  // ---- effect helpers ----

  send(conn: string, frame: string): void {
    this.fx.push({ type: 'send', conn, frame });
  }

  /** A log line; with `peer` (a socket id) it is one a peer can cause at will, and the runtime rate-limits it per peer. */
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>, peer?: string): void {
    const line: Effect = data ? { type: 'log', level, msg, data } : { type: 'log', level, msg };
    this.fx.push(peer === undefined ? line : { ...line, peer });
  }

  reply(status: number, body: unknown): void {
    this.fx.push({ type: 'reply', status, body });
  }

  setTimer(key: string, at: number): void {
    if (this.s.timers.get(key) === at) return;
    this.s.timers.set(key, at);
    this.fx.push({ type: 'timer', key, at });
  }

  cancelTimer(key: string): void {
    if (!this.s.timers.has(key)) return;
    this.s.timers.delete(key);
    this.fx.push({ type: 'timer', key, at: null });
  }

  /** ERROR {code, message}, then a close with the same code. */
  closeSocket(conn: string, code: number, reason: string, message: string): void {
    const sock = this.s.sockets.get(conn);
    if (!sock || sock.closing) return;
    sock.closing = true;
    this.cancelTimer(`id:${conn}`);
    this.send(conn, encodeMaster.error(code, message));
    this.fx.push({ type: 'close', conn, code, reason });
  }

  violation(conn: string, message: string): void {
    this.send(conn, encodeMaster.error(PROTOCOL_VIOLATION, message));
  }

  shutdown(conn: string, reason: string, ids?: Range[]): void {
    this.send(conn, encodeMaster.shutdown(ids === undefined ? { reason } : { reason, shards: ids }));
  }

  /** Replaces shard `id`'s record with a changed copy. */
  patch(id: number, p: Partial<ShardRec>): void {
    const sh = this.s.shards[id];
    if (sh) this.s.shards[id] = { ...sh, ...p };
  }

  // ---- queries ----

  owned(name: string): number[] {
    const out: number[] = [];
    this.s.shards.forEach((sh, id) => {
      if (sh.owner === name) out.push(id);
    });
    return out;
  }

  live(): ControlRec[] {
    return [...this.s.controls.values()].filter((c) => c.conn !== null).sort((a, b) => a.order - b.order);
  }

  // ---- events ----

  event: FleetEvent['type'] | undefined;

  handle(e: FleetEvent): void {
    this.event = e.type;
    switch (e.type) {
      case 'loaded':
        return this.loaded(e);
      case 'open':
        return this.open(e.conn, e.sessionId);
      case 'message':
        return this.message(e.conn, e.frame);
      case 'malformed': {
        const sock = this.s.sockets.get(e.conn);
        if (sock && !sock.closing) this.closeSocket(e.conn, CloseCodes.MALFORMED, 'Malformed packet', e.detail);
        return;
      }
      case 'closed':
        return this.closed(e.conn);
      case 'timer':
        return this.timer(e.key);
      case 'admin':
        return this.admin(e.action);
    }
  }

  loaded(e: Extract<FleetEvent, { type: 'loaded' }>): void {
    const { cfg, s } = this;
    if (isObj(e.budget) && typeof e.budget.used === 'number') {
      const b = e.budget;
      const stored = Array.isArray(b.lastGrant) ? (b.lastGrant as unknown[]).map((v) => (typeof v === 'number' ? v : null)) : [];
      let lastGrant = stored;
      if (stored.length !== cfg.maxConcurrency) {
        // maxConcurrency changed: be conservative, treat every bucket as used at the latest grant.
        const latest = stored.reduce<number | null>((m, v) => (v !== null && (m === null || v > m) ? v : m), null);
        lastGrant = Array.from({ length: cfg.maxConcurrency }, () => latest);
      }
      s.queue = {
        lastGrant,
        budget: { windowStart: typeof b.windowStart === 'number' ? b.windowStart : null, used: Math.max(0, Math.floor(b.used as number)) },
        waiting: [],
      };
    }
    if (isObj(e.fleet) && e.fleet.halted === true) {
      s.phase = 'halted';
      s.haltReason = typeof e.fleet.reason === 'string' ? e.fleet.reason : 'halted';
      s.haltedAt = typeof e.fleet.at === 'number' ? e.fleet.at : this.now;
      this.log('warn', 'sharding: the fleet is halted (persisted); POST /api/v1/sharding/resume to start it', { reason: s.haltReason });
      return;
    }
    const a = e.assignment;
    if (isObj(a) && a.started === true && isObj(a.controls)) {
      if (a.shardCount !== cfg.shardCount) {
        this.log('warn', 'sharding: the stored assignment is for another shardCount; starting afresh', { stored: a.shardCount, shardCount: cfg.shardCount });
      } else {
        s.phase = 'running';
        for (const [name, v] of Object.entries(a.controls)) {
          if (!isObj(v) || typeof v.sessionId !== 'string' || !isRanges(v.shards)) continue;
          const ids = expand(v.shards, cfg.shardCount).filter((id) => s.shards[id]?.owner === null);
          if (ids.length === 0) continue;
          const rec = this.newControl(name, v.sessionId, null, 1, []);
          rec.started = true;
          rec.disconnectedAt = this.now;
          for (const id of ids) this.patch(id, { owner: name, work: 'connected' });
          this.setTimer(`win:${name}`, this.now + cfg.reconnectWindow);
        }
        this.log('info', 'sharding: restored the stored assignment; waiting for its CONTROLs to reconnect', {
          controls: [...s.controls.keys()],
          reconnectWindow: cfg.reconnectWindow,
        });
        return;
      }
    }
    s.phase = 'waiting';
    this.setTimer('startup', Math.max(this.now, s.bootAt + cfg.startupDelay));
  }

  open(conn: string, sessionId: string): void {
    const { cfg } = this;
    this.s.sockets.set(conn, { id: conn, sessionId, control: null, openedAt: this.now, closing: false });
    this.send(
      conn,
      encodeMaster.initialise({
        token: cfg.botToken,
        heartbeat_interval: cfg.heartbeatInterval,
        shard_count: cfg.shardCount,
        max_concurrency: cfg.maxConcurrency,
        session_id: sessionId,
        heartbeat_grace: cfg.heartbeatGrace,
        reconnect_window: cfg.reconnectWindow,
        fence_margin: cfg.fenceMargin,
      }),
    );
    this.setTimer(`id:${conn}`, this.now + cfg.identifyTimeout);
  }

  closed(conn: string): void {
    const sock = this.s.sockets.get(conn);
    if (!sock) return;
    this.s.sockets.delete(conn);
    this.cancelTimer(`id:${conn}`);
    if (sock.control === null) return;
    const rec = this.s.controls.get(sock.control);
    if (rec && rec.conn === conn) this.disconnect(rec);
  }

  timer(key: string): void {
    const { s, cfg, now } = this;
    s.timers.delete(key);
    const colon = key.indexOf(':');
    const kind = colon < 0 ? key : key.slice(0, colon);
    const id = colon < 0 ? '' : key.slice(colon + 1);
    switch (kind) {
      case 'id': {
        const sock = s.sockets.get(id);
        if (sock && sock.control === null && !sock.closing) {
          this.closeSocket(id, CloseCodes.IDENTIFY_TIMEOUT, 'No IDENTIFY in time', `no valid IDENTIFY within ${cfg.identifyTimeout} ms`);
        }
        return;
      }
      case 'hb': {
        const rec = s.controls.get(id);
        if (!rec || rec.conn === null) return;
        const due = rec.hbBase + cfg.heartbeatInterval + cfg.heartbeatGrace;
        if (now < due) return this.setTimer(key, due);
        this.log('warn', 'sharding: CONTROL missed its heartbeat deadline; offloading its shards', { control: rec.name });
        this.kill(rec, 'Dead connection', `no HEARTBEAT for ${cfg.heartbeatInterval + cfg.heartbeatGrace} ms`, rec.hbBase);
        return;
      }
      case 'ct': {
        const rec = s.controls.get(id);
        if (!rec || rec.conn === null || rec.awaitingSince === null) return;
        const due = rec.awaitingSince + cfg.connectTimeout;
        if (now < due) return this.setTimer(key, due);
        this.log('warn', 'sharding: CONTROL did not report CONNECTED within connectTimeout; treated as dead', { control: rec.name });
        this.shutdown(rec.conn, 'not CONNECTED within connectTimeout');
        this.kill(rec, 'Dead connection', `not CONNECTED within ${cfg.connectTimeout} ms`, now);
        return;
      }
      case 'win': {
        const rec = s.controls.get(id);
        if (!rec || rec.conn !== null || rec.disconnectedAt === null) return;
        const due = rec.disconnectedAt + cfg.reconnectWindow;
        if (now < due) return this.setTimer(key, due);
        const shards = this.owned(rec.name);
        this.log(shards.length ? 'warn' : 'info', 'sharding: CONTROL did not come back within reconnectWindow', {
          control: rec.name,
          shards: formatRanges(toRanges(shards)),
        });
        this.removeControl(rec, rec.disconnectedAt);
        return;
      }
      case 'startup':
        if (s.phase !== 'waiting') return;
        if (this.live().length > 0) this.startFleet();
        else s.startupDue = true;
        return;
      case 'queue':
        return; // settle() drains the queue
    }
  }

  message(conn: string, f: ControlFrame): void {
    const sock = this.s.sockets.get(conn);
    if (!sock || sock.closing) return;
    const rec = sock.control === null ? undefined : this.s.controls.get(sock.control);
    switch (f.o) {
      case Op.IDENTIFY:
        if (rec) return this.violation(conn, 'IDENTIFY on a socket that has already identified');
        return this.identify(sock, f.d);
      case Op.HEARTBEAT:
        this.send(conn, encodeMaster.ack(f.raw));
        if (rec) {
          rec.hbBase = this.now;
          rec.lastHeartbeat = this.now;
          this.setTimer(`hb:${rec.name}`, this.now + this.cfg.heartbeatInterval + this.cfg.heartbeatGrace);
        }
        return;
      case Op.ERROR:
        this.log('warn', 'sharding: CONTROL reported an ERROR', { control: rec?.name ?? null, code: f.d.code, message: f.d.message ?? '' }, conn);
        return;
      default:
        break;
    }
    if (!rec) return this.violation(conn, `${OP_NAMES[f.o]} before IDENTIFY: identify first`);
    switch (f.o) {
      case Op.INFO:
        rec.info = f.raw;
        rec.infoAt = this.now;
        return;
      case Op.FATAL: {
        const reason = `FATAL from ${rec.name}: ${f.d.code}${f.d.message ? ` ${f.d.message}` : ''}`;
        this.log('error', 'sharding: FATAL received; halting the fleet', { control: rec.name, code: f.d.code, message: f.d.message ?? '' });
        return this.halt(reason);
      }
      case Op.CONNECTING:
        if (rec.awaitingSince === null) return;
        this.s.shards.forEach((sh, id) => {
          if (sh.owner === rec.name && sh.work === 'assigned') this.patch(id, { work: 'connecting' });
        });
        return;
      case Op.CONNECTED:
        return this.connected(rec, f.d.shards);
      case Op.IDENTIFY_REQUEST:
        return this.request(rec, f.d.shard_id);
      case Op.IDENTIFY_CANCEL:
        // Withdrawn before its grant: it spends no window and no session start. A cancel
        // of nothing queued (the grant crossed it, or it was never asked) changes nothing.
        this.s.queue = dropWhere(this.s.queue, (r) => r.shard === f.d.shard_id && r.control === rec.name);
        return;
    }
  }

  // ---- identify, re-attach, reconcile ----

  identify(sock: SocketRec, d: IdentifyPayload): void {
    const { s } = this;
    this.cancelTimer(`id:${sock.id}`);
    const name = d.name;
    let existing = s.controls.get(name);

    if (s.phase === 'halted') {
      if (existing && existing.conn === null) this.removeControl(existing, existing.disconnectedAt ?? this.now);
      this.shutdown(sock.id, `fleet halted: ${s.haltReason ?? ''}`.trim());
      this.closeSocket(sock.id, CloseCodes.HALTED, 'Fleet halted', `the fleet is halted (${s.haltReason ?? 'halted'}); nothing starts until an operator resumes it`);
      return;
    }

    const sessionMatches = existing !== undefined && d.session_id !== undefined && d.session_id === existing.sessionId;
    if (existing && existing.conn !== null) {
      if (!sessionMatches) {
        this.closeSocket(sock.id, CloseCodes.NAME_IN_USE, 'Name in use', `a CONTROL named "${name}" is already connected`);
        return;
      }
      const old = s.sockets.get(existing.conn);
      if (old) old.control = null;
      this.closeSocket(existing.conn, CloseCodes.SUPERSEDED, 'Superseded', 'superseded by a newer connection of the same CONTROL');
      existing.conn = null;
      this.cancelTimer(`hb:${name}`);
      this.s.queue = dropWhere(this.s.queue, (r) => r.control === name);
    }

    const claims = d.shards;
    const resumed = existing !== undefined && (sessionMatches || this.claimsMatch(existing, claims));
    if (existing && !resumed) {
      this.log('info', 'sharding: CONTROL came back as new (no session_id, and its shards do not match); its old shards are offloaded', { control: name });
      this.removeControl(existing, existing.disconnectedAt ?? this.now);
      existing = undefined;
    }
    sock.control = name;
    if (existing) this.reattach(existing, sock, d, claims);
    else this.fresh(sock, d, claims);
    this.#dirty.add('assignment');
  }

  claimsMatch(rec: ControlRec, claims: Range[] | undefined): boolean {
    if (claims === undefined || claims.length === 0) return false;
    if (outside(claims, this.cfg.shardCount).length > 0) return false;
    const ids = expand(claims, this.cfg.shardCount);
    return ids.length > 0 && ids.every((id) => this.s.shards[id]?.owner === rec.name);
  }

  /** Claims of shards that nobody owns are adopted; the others get SHUTDOWN. */
  claim(name: string, ids: number[], beyond: Range[]): { adopted: number[]; refused: Range[] } {
    const adopted: number[] = [];
    const refused: number[] = [];
    for (const id of ids) {
      const sh = this.s.shards[id] as ShardRec;
      if (sh.owner === name) continue;
      if (sh.owner === null && sh.target === null && sh.planned === null) {
        this.patch(id, { owner: name, work: 'connected', lastOwner: null, lostAt: null });
        adopted.push(id);
      } else {
        refused.push(id);
      }
    }
    return { adopted, refused: [...toRanges(refused), ...beyond] };
  }

  reattach(rec: ControlRec, sock: SocketRec, d: IdentifyPayload, claims: Range[] | undefined): void {
    const { cfg, now } = this;
    this.orphansMaybe = true;
    rec.conn = sock.id;
    rec.sessionId = sock.sessionId;
    rec.disconnectedAt = null;
    if (d.capacity !== undefined) rec.capacity = d.capacity;
    if (d.features !== undefined) rec.features = [...d.features];
    rec.identifiedAt = now;
    rec.hbBase = now;
    this.cancelTimer(`win:${rec.name}`);
    this.setTimer(`hb:${rec.name}`, now + cfg.heartbeatInterval + cfg.heartbeatGrace);

    const owned = this.owned(rec.name);
    let kept = owned;
    let missing: number[] = [];
    let adopted: number[] = [];
    let refused: Range[] = [];
    if (claims !== undefined) {
      const claimed = new Set(expand(claims, cfg.shardCount));
      kept = owned.filter((id) => claimed.has(id));
      missing = owned.filter((id) => !claimed.has(id));
      ({ adopted, refused } = this.claim(rec.name, [...claimed], outside(claims, cfg.shardCount)));
    }
    if (adopted.length > 0 || kept.length > 0) rec.started = true;
    this.send(sock.id, encodeMaster.identified({ resumed: true, shards: toRanges([...kept, ...adopted]), redundant: rec.redundant }));
    if (refused.length > 0) this.shutdown(sock.id, 'owned by another CONTROL', refused);
    if (missing.length > 0) {
      for (const id of missing) this.patch(id, { work: 'assigned' });
      this.send(sock.id, encodeMaster.offload({ shards: toRanges(missing), reason: 'failover', from: rec.name }));
      rec.awaitingSince = now;
    }
    if (rec.awaitingSince !== null) {
      rec.awaitingSince = now;
      this.setTimer(`ct:${rec.name}`, now + cfg.connectTimeout);
    }
    this.log('info', 'sharding: CONTROL re-attached', { control: rec.name, shards: formatRanges(toRanges([...kept, ...adopted])) });
    const inLine = this.s.sequence.includes(rec.name) || this.s.current === rec.name;
    if (!rec.started && !inLine && (this.s.phase === 'starting' || this.s.phase === 'running')) {
      if (rec.plan !== null) this.s.sequence.push(rec.name);
      else this.joinLate(rec);
    }
  }

  fresh(sock: SocketRec, d: IdentifyPayload, claims: Range[] | undefined): void {
    const { cfg, now } = this;
    this.orphansMaybe = true;
    const rec = this.newControl(d.name, sock.sessionId, sock.id, d.capacity ?? 1, d.features ?? []);
    this.setTimer(`hb:${rec.name}`, now + cfg.heartbeatInterval + cfg.heartbeatGrace);
    const { adopted, refused } = claims === undefined ? { adopted: [], refused: [] } : this.claim(rec.name, expand(claims, cfg.shardCount), outside(claims, cfg.shardCount));
    if (adopted.length > 0) rec.started = true;
    this.send(sock.id, encodeMaster.identified({ resumed: false, shards: toRanges(adopted), redundant: false }));
    if (refused.length > 0) this.shutdown(sock.id, 'owned by another CONTROL', refused);
    this.log('info', 'sharding: CONTROL identified', { control: rec.name, capacity: rec.capacity, adopted: formatRanges(toRanges(adopted)) });
    if (!rec.started && (this.s.phase === 'starting' || this.s.phase === 'running')) this.joinLate(rec);
  }

  newControl(name: string, sessionId: string, conn: string | null, capacity: number, features: readonly string[]): ControlRec {
    const rec: ControlRec = {
      name,
      sessionId,
      conn,
      capacity,
      features: [...features],
      order: this.s.orderSeq++,
      started: false,
      redundant: false,
      plan: null,
      planRedundant: false,
      awaitingSince: null,
      identifiedAt: this.now,
      hbBase: this.now,
      lastHeartbeat: null,
      disconnectedAt: null,
      info: null,
      infoAt: null,
    };
    this.s.controls.set(name, rec);
    return rec;
  }

  /** A CONTROL that arrives after start-up: a standby CONNECT, in line or at once. */
  joinLate(rec: ControlRec): void {
    rec.plan = [];
    rec.planRedundant = true;
    if (this.cfg.startup === 'parallel' && rec.features.includes(IDENTIFY_QUEUE_FEATURE)) this.sendConnect(rec);
    else this.s.sequence.push(rec.name);
  }

  // ---- losing CONTROLs ----

  disconnect(rec: ControlRec): void {
    rec.conn = null;
    rec.disconnectedAt = this.now;
    this.cancelTimer(`hb:${rec.name}`);
    this.cancelTimer(`ct:${rec.name}`);
    this.s.queue = dropWhere(this.s.queue, (r) => r.control === rec.name);
    this.clearTargets(rec.name);
    if (this.s.current === rec.name) this.s.current = null;
    this.setTimer(`win:${rec.name}`, this.now + this.cfg.reconnectWindow);
    this.log('info', 'sharding: CONTROL disconnected; its shards are kept for reconnectWindow', { control: rec.name, reconnectWindow: this.cfg.reconnectWindow });
  }

  /** Closes a live CONTROL with 4001 and offloads its shards at once. */
  kill(rec: ControlRec, reason: string, message: string, lostAt: number): void {
    if (rec.conn !== null) {
      const sock = this.s.sockets.get(rec.conn);
      if (sock) sock.control = null;
      this.closeSocket(rec.conn, CloseCodes.DEAD_CONNECTION, reason, message);
    }
    this.removeControl(rec, lostAt);
  }

  /** Forgets a CONTROL; its shards become orphans (placed by settle()). */
  removeControl(rec: ControlRec, lostAt: number): void {
    const { s } = this;
    this.orphansMaybe = true;
    const name = rec.name;
    s.controls.delete(name);
    for (const k of ['hb', 'ct', 'win']) this.cancelTimer(`${k}:${name}`);
    s.sequence = s.sequence.filter((n) => n !== name);
    if (s.current === name) s.current = null;
    s.queue = dropWhere(s.queue, (r) => r.control === name);
    this.clearTargets(name);
    s.shards.forEach((sh, id) => {
      if (sh.planned === name) this.patch(id, { planned: null });
      if (sh.owner !== name) return;
      if (sh.target !== null && s.controls.get(sh.target)?.conn) {
        // A make-before-break was under way: the incoming owner simply keeps it.
        this.patch(id, { owner: sh.target, target: null });
        return;
      }
      this.patch(id, { owner: null, work: 'assigned', target: null, lastOwner: name, lostAt });
    });
    this.#dirty.add('assignment');
  }

  /** Aborts the make-before-breaks towards `name`: the old owners keep those shards. */
  clearTargets(name: string): void {
    this.s.shards.forEach((sh, id) => {
      if (sh.target === name) this.patch(id, { target: null });
    });
  }

  // ---- start-up ----

  startFleet(): void {
    const { s, cfg } = this;
    this.orphansMaybe = true;
    s.phase = 'starting';
    s.startupDue = false;
    this.cancelTimer('startup');
    const toPlace: number[] = [];
    s.shards.forEach((sh, id) => {
      if (sh.owner === null && sh.planned === null && sh.target === null) toPlace.push(id);
    });
    const newcomers = this.live().filter((c) => !c.started && c.plan === null);
    const plan = planStart(toPlace, newcomers, cfg.redundancy);
    const now: ControlRec[] = [];
    for (const item of plan) {
      const rec = s.controls.get(item.name) as ControlRec;
      rec.plan = item.ids;
      rec.planRedundant = item.redundant;
      for (const id of item.ids) this.patch(id, { planned: rec.name });
      if (cfg.startup === 'parallel' && rec.features.includes(IDENTIFY_QUEUE_FEATURE)) now.push(rec);
      else s.sequence.push(rec.name);
    }
    this.log('info', 'sharding: start-up', {
      mode: cfg.startup,
      plan: plan.map((p) => ({ control: p.name, shards: formatRanges(toRanges(p.ids)), redundant: p.redundant })),
    });
    for (const rec of now) this.sendConnect(rec);
    this.#dirty.add('assignment');
  }

  sendConnect(rec: ControlRec): void {
    this.orphansMaybe = true;
    const ids = rec.plan ?? [];
    const redundant = rec.planRedundant;
    rec.plan = null;
    for (const id of ids) this.patch(id, { planned: null, owner: rec.name, work: 'assigned', target: null });
    rec.started = true;
    rec.redundant = redundant;
    rec.awaitingSince = this.now;
    this.setTimer(`ct:${rec.name}`, this.now + this.cfg.connectTimeout);
    const ranges = toRanges(ids);
    this.send(rec.conn as string, encodeMaster.connect({ shardRange: ranges.length === 1 ? (ranges[0] as Range) : [], shards: ranges, redundant }));
    this.#dirty.add('assignment');
  }

  advance(): void {
    const { s } = this;
    while (s.current === null && s.sequence.length > 0) {
      const name = s.sequence.shift() as string;
      const rec = s.controls.get(name);
      if (!rec) continue;
      // Away at its turn: it keeps its plan and gets its CONNECT when it comes back; if it
      // does not come back within reconnectWindow, the planned shards become orphans.
      if (rec.conn === null) continue;
      this.sendConnect(rec);
      s.current = name;
    }
    if (s.phase === 'starting' && s.current === null && s.sequence.length === 0) {
      s.phase = 'running';
      this.log('info', 'sharding: start-up complete');
    }
  }

  // ---- CONNECTED, OFFLOAD, failover ----

  connected(rec: ControlRec, ranges: Range[]): void {
    const { s, cfg } = this;
    const conn = rec.conn as string;
    const ids = expand(ranges, cfg.shardCount);
    const beyond = outside(ranges, cfg.shardCount);
    const given: number[] = [];
    const notGiven: number[] = [];
    for (const id of ids) {
      const sh = s.shards[id] as ShardRec;
      if (sh.owner === rec.name || sh.target === rec.name) given.push(id);
      else notGiven.push(id);
    }
    if (notGiven.length > 0 || beyond.length > 0) {
      const bad = [...toRanges(notGiven), ...beyond];
      this.violation(conn, `CONNECTED lists shards that were not given to this CONTROL: ${formatRanges(bad)}`);
      this.shutdown(conn, 'not assigned to this CONTROL', bad);
    }
    const handover = new Map<string, number[]>();
    let lost: number | null = null;
    for (const id of given) {
      const sh = s.shards[id] as ShardRec;
      if (sh.lostAt !== null) lost = lost === null ? sh.lostAt : Math.min(lost, sh.lostAt);
      if (sh.target === rec.name && sh.owner !== rec.name) {
        // The incoming side of a make-before-break is up: it becomes the owner.
        if (sh.owner !== null) handover.set(sh.owner, [...(handover.get(sh.owner) ?? []), id]);
        this.#dirty.add('assignment');
        this.patch(id, { owner: rec.name, target: null, work: 'connected', lostAt: null });
      } else {
        this.patch(id, { work: 'connected', lostAt: null });
      }
    }
    for (const [from, moved] of handover) {
      const old = s.controls.get(from);
      if (old?.conn) this.shutdown(old.conn, 'rebalance', toRanges(moved));
      this.log('info', 'sharding: make-before-break complete', { from, to: rec.name, shards: formatRanges(toRanges(moved)) });
    }
    if (lost !== null) this.fx.push({ type: 'failover', seconds: Math.max(0, this.now - lost) / 1000 });
    const wellFormed = notGiven.length === 0 && beyond.length === 0;
    if (rec.awaitingSince !== null && (given.length > 0 || wellFormed)) {
      rec.awaitingSince = null;
      this.cancelTimer(`ct:${rec.name}`);
      if (s.current === rec.name) s.current = null;
    }
  }

  offload(rec: ControlRec, ids: number[], reason: 'failover' | 'rebalance', from: string | null): void {
    for (const id of ids) this.patch(id, { owner: rec.name, work: 'assigned', target: null, planned: null });
    rec.redundant = false;
    rec.started = true;
    rec.awaitingSince = this.now;
    this.setTimer(`ct:${rec.name}`, this.now + this.cfg.connectTimeout);
    this.send(rec.conn as string, encodeMaster.offload({ shards: toRanges(ids), reason, ...(from !== null ? { from } : {}) }));
    this.log('info', `sharding: OFFLOAD (${reason})`, { to: rec.name, from, shards: formatRanges(toRanges(ids)) });
    this.#dirty.add('assignment');
  }

  /** Every shard without an owner (and not promised to anyone) goes to a live CONTROL. */
  placeOrphans(): void {
    const { s } = this;
    if (s.phase !== 'starting' && s.phase !== 'running') return;
    const groups = new Map<string | null, number[]>();
    s.shards.forEach((sh, id) => {
      if (sh.owner !== null || sh.target !== null || sh.planned !== null) return;
      const g = groups.get(sh.lastOwner);
      if (g) g.push(id);
      else groups.set(sh.lastOwner, [id]);
    });
    for (const [from, ids] of groups) {
      const busy = new Set<string>();
      for (const sh of s.shards) {
        if (sh.owner !== null) busy.add(sh.owner);
        if (sh.target !== null) busy.add(sh.target);
      }
      const candidates = this.live()
        .filter((c) => c.started && c.plan === null)
        .map((c) => ({ name: c.name, capacity: c.capacity, standby: !busy.has(c.name) }));
      if (candidates.length === 0) return;
      for (const [name, pids] of planFailover(ids, candidates)) this.offload(s.controls.get(name) as ControlRec, pids, 'failover', from);
    }
  }

  // ---- identify queue ----

  request(rec: ControlRec, shardId: number): void {
    const sh = this.s.shards[shardId];
    if (!sh || (sh.owner !== rec.name && sh.target !== rec.name)) {
      this.violation(rec.conn as string, `IDENTIFY_REQUEST for shard ${shardId}, which this CONTROL does not own`);
      return;
    }
    this.s.queue = enqueue(this.s.queue, { shard: shardId, control: rec.name });
  }

  drainQueue(): void {
    const { s } = this;
    if (s.phase === 'halted' || s.queue.waiting.length === 0) {
      if (s.queue.waiting.length > 0) s.queue = { ...s.queue, waiting: [] };
      this.cancelTimer('queue');
      return;
    }
    const res = drain(s.queue, this.now, queueConfig(this.cfg), (r) => {
      const rec = s.controls.get(r.control);
      const sh = s.shards[r.shard];
      return rec !== undefined && rec.conn !== null && sh !== undefined && (sh.owner === r.control || sh.target === r.control);
    });
    s.queue = res.state;
    for (const g of res.grants) {
      const rec = s.controls.get(g.control) as ControlRec;
      this.send(rec.conn as string, encodeMaster.grant(g.shard));
      this.fx.push({ type: 'grant', shard: g.shard, control: g.control });
    }
    if (res.grants.length > 0) this.#dirty.add('budget');
    if (res.exhausted && !s.exhausted) {
      this.log('error', 'sharding: the daily identify budget (sessionStartLimit) is exhausted; no more grants until it resets', {
        sessionStartLimit: this.cfg.sessionStartLimit,
        waiting: res.state.waiting.length,
      });
    }
    s.exhausted = res.exhausted;
    if (res.nextAt === null) this.cancelTimer('queue');
    else this.setTimer('queue', res.nextAt);
  }

  // ---- halt, resume, admin ----

  halt(reason: string): void {
    const { s } = this;
    if (s.phase === 'halted') return;
    s.phase = 'halted';
    s.haltReason = reason;
    s.haltedAt = this.now;
    this.log('info', 'sharding: fleet halted', { reason });
    s.startupDue = false;
    this.cancelTimer('startup');
    for (const rec of [...s.controls.values()]) {
      if (rec.conn === null) continue; // kept (reserved) until its window passes; told on reconnect
      const conn = rec.conn;
      this.shutdown(conn, `fleet halted: ${reason}`);
      const sock = s.sockets.get(conn);
      if (sock) sock.control = null;
      this.closeSocket(conn, CloseCodes.HALTED, 'Fleet halted', `the fleet is halted (${reason}); nothing starts until an operator resumes it`);
      this.removeControl(rec, this.now);
    }
    for (const rec of s.controls.values()) {
      rec.plan = null;
      this.cancelTimer(`ct:${rec.name}`);
      rec.awaitingSince = null;
    }
    s.shards.forEach((sh, id) => {
      if (sh.planned !== null || sh.target !== null || sh.lostAt !== null) this.patch(id, { planned: null, target: null, lostAt: null });
    });
    s.sequence = [];
    s.current = null;
    s.queue = { ...s.queue, waiting: [] };
    this.cancelTimer('queue');
    this.#dirty.add('fleet');
    this.#dirty.add('assignment');
  }

  admin(action: AdminAction): void {
    switch (action.kind) {
      case 'halt':
        this.halt('halted by an operator');
        return this.reply(200, { halted: true, reason: this.s.haltReason });
      case 'resume':
        return this.resume();
      case 'rebalance':
        return this.rebalance(action.body);
      case 'command':
        return this.command(action.name, action.body);
    }
  }

  resume(): void {
    const { s, cfg } = this;
    if (s.phase !== 'halted') return this.reply(200, { halted: false, phase: s.phase });
    s.phase = 'waiting';
    s.haltReason = null;
    s.haltedAt = null;
    this.setTimer('startup', this.now + cfg.startupDelay);
    this.#dirty.add('fleet');
    this.log('info', 'sharding: fleet resumed by an operator; start-up follows', { startupDelay: cfg.startupDelay });
    this.reply(200, { halted: false, phase: s.phase });
  }

  rebalance(body: RebalanceBody | undefined): void {
    const { s, cfg } = this;
    if (s.phase === 'halted') return this.reply(409, { error: 'HALTED', message: 'the fleet is halted; resume it first' });
    if (s.phase !== 'running') return this.reply(409, { error: 'NOT_RUNNING', message: `start-up is not complete (phase ${s.phase})` });
    if (s.shards.some((sh) => sh.target !== null)) return this.reply(409, { error: 'REBALANCE_IN_PROGRESS', message: 'a make-before-break is still under way' });
    const live = this.live().filter((c) => c.started && c.plan === null);
    let moves: Move[];
    // No body or {} asks for the automatic plan.
    if (body === undefined || !('to' in body)) {
      if (live.length === 0) return this.reply(409, { error: 'NO_CONTROLS', message: 'no live CONTROL to rebalance onto' });
      moves = planRebalance(
        s.shards.map((sh) => sh.owner),
        live,
        cfg.redundancy,
      )
        .map((m) => ({ ...m, ids: m.ids.filter((id) => this.movable(id)) }))
        .filter((m) => m.ids.length > 0);
    } else {
      const to = s.controls.get(body.to);
      if (!to) return this.reply(404, { error: 'NOT_FOUND', message: `no CONTROL named "${body.to}"` });
      if (to.conn === null || !to.started || to.plan !== null) return this.reply(409, { error: 'NOT_READY', message: `CONTROL "${body.to}" is not connected and started` });
      const beyond = outside(body.shards, cfg.shardCount);
      if (beyond.length > 0) return this.reply(400, { error: 'BAD_REQUEST', message: `no such shards: ${formatRanges(beyond)}` });
      const ids = expand(body.shards, cfg.shardCount).filter((id) => s.shards[id]?.owner !== to.name);
      const stuck = ids.filter((id) => !this.movable(id));
      if (stuck.length > 0) return this.reply(409, { error: 'NOT_MOVABLE', message: `shards whose owner is disconnected or still starting them cannot move: ${formatRanges(toRanges(stuck))}` });
      const groups = new Map<string | null, number[]>();
      for (const id of ids) {
        const from = (s.shards[id] as ShardRec).owner;
        groups.set(from, [...(groups.get(from) ?? []), id]);
      }
      moves = [...groups].map(([from, gids]) => ({ from, to: to.name, ids: gids }));
    }
    for (const m of moves) {
      const to = s.controls.get(m.to) as ControlRec;
      if (m.from === null) {
        this.offload(to, m.ids, 'rebalance', null);
        continue;
      }
      for (const id of m.ids) this.patch(id, { target: to.name });
      to.redundant = false;
      to.awaitingSince = this.now;
      this.setTimer(`ct:${to.name}`, this.now + cfg.connectTimeout);
      this.send(to.conn as string, encodeMaster.offload({ shards: toRanges(m.ids), reason: 'rebalance', from: m.from }));
      this.log('info', 'sharding: make-before-break started', { from: m.from, to: to.name, shards: formatRanges(toRanges(m.ids)) });
    }
    this.reply(moves.length > 0 ? 202 : 200, { moves: moves.map((m) => ({ from: m.from, to: m.to, shards: toRanges(m.ids) })) });
  }

  /** A shard may move when it has no owner, or its owner is connected and serving it (CONNECTED). */
  movable(id: number): boolean {
    const sh = this.s.shards[id];
    if (!sh || sh.owner === null) return true;
    return (this.s.controls.get(sh.owner)?.conn ?? null) !== null && sh.work === 'connected';
  }

  command(name: string, body: CommandBody): void {
    const { s, cfg } = this;
    const rec = s.controls.get(name);
    if (!rec) return this.reply(404, { error: 'NOT_FOUND', message: `no CONTROL named "${name}"` });
    if (rec.conn === null) return this.reply(409, { error: 'DISCONNECTED', message: `CONTROL "${name}" is disconnected` });
    let ids: number[];
    let relay: Record<string, unknown>;
    if (body.command === 'restart_shard') {
      const id = body.args.shard_id;
      if (id >= cfg.shardCount) {
        return this.reply(400, { error: 'BAD_REQUEST', message: `restart_shard needs args.shard_id, an integer in [0, ${cfg.shardCount})` });
      }
      ids = [id];
      relay = { shard_id: id };
    } else {
      // Either [first, last] ranges (the contract's shape) or a flat list of shard ids.
      const raw = body.args.shards;
      const ranges = raw.map((r): Range => (typeof r === 'number' ? [r, r] : r));
      if (outside(ranges, cfg.shardCount).length > 0) return this.reply(400, { error: 'BAD_REQUEST', message: `no such shards: ${formatRanges(outside(ranges, cfg.shardCount))}` });
      ids = expand(ranges, cfg.shardCount);
      // Relayed as sent (validated), so the CONTROL sees what the operator asked for.
      relay = { shards: raw };
    }
    // Relayed as asked: the CONTROL restarts only shards it runs.
    const foreign = ids.filter((id) => s.shards[id]?.owner !== name);
    if (foreign.length > 0) this.log('info', 'sharding: COMMAND names shards the CONTROL does not own', { control: name, shards: formatRanges(toRanges(foreign)) });
    this.send(rec.conn, encodeMaster.command({ command: body.command, args: relay }));
    this.log('info', 'sharding: COMMAND relayed', { control: name, command: body.command });
    this.reply(202, { sent: true, control: name, command: body.command, args: relay });
  }

  // ---- end of step ----

  settle(): void {
    const { s, cfg } = this;
    if (s.phase === 'waiting') {
      const live = this.live().length;
      if (live > 0 && (s.startupDue || (cfg.expectedControls > 0 && live >= cfg.expectedControls))) this.startFleet();
    }
    if (s.phase === 'starting' || s.phase === 'running') {
      this.advance();
      // Orphans only appear, or find a home, after the events that set the flag.
      if (this.orphansMaybe || this.event === 'loaded') this.placeOrphans();
    }
    this.drainQueue();
    for (const key of ['fleet', 'assignment', 'budget'] as const) {
      if (this.#dirty.has(key)) this.fx.push({ type: 'persist', key, value: persisted(s, cfg, key) });
    }
  }
}

// ---------------------------------------------------------------------------------
// What is stored, and what the admin API shows: pure functions of the state.

export function persisted(s: FleetState, cfg: MachineConfig, key: PersistKey): JsonValue {
  switch (key) {
    case 'fleet':
      return { halted: s.phase === 'halted', reason: s.haltReason, at: s.haltedAt };
    case 'budget':
      return { windowStart: s.queue.budget.windowStart, used: s.queue.budget.used, lastGrant: [...s.queue.lastGrant] };
    case 'assignment': {
      const controls: Record<string, JsonValue> = {};
      const byOwner = new Map<string, number[]>();
      s.shards.forEach((sh, id) => {
        if (sh.owner !== null) byOwner.set(sh.owner, [...(byOwner.get(sh.owner) ?? []), id]);
      });
      for (const [name, ids] of byOwner) {
        const rec = s.controls.get(name);
        if (rec) controls[name] = { sessionId: rec.sessionId, shards: toRanges(ids) };
      }
      return { shardCount: cfg.shardCount, started: s.phase === 'starting' || s.phase === 'running', controls };
    }
  }
}

export function shardState(s: FleetState, id: number): ShardState {
  const sh = s.shards[id];
  if (!sh) return 'unassigned';
  if (sh.owner === null) return s.phase === 'halted' ? 'halted' : sh.planned !== null ? 'pending' : 'unassigned';
  if ((s.controls.get(sh.owner)?.conn ?? null) === null) return 'disconnected';
  return sh.work;
}

export function controlState(s: FleetState, rec: ControlRec): ControlState {
  if (rec.conn === null) return 'disconnected';
  if (!rec.started) return 'waiting';
  if (rec.awaitingSince !== null) return 'connecting';
  const busy = s.shards.some((sh) => sh.owner === rec.name || sh.target === rec.name);
  return busy ? 'ready' : 'standby';
}

export function shardsView(s: FleetState): Array<{ id: number; owner: string | null; state: ShardState }> {
  return s.shards.map((sh, id) => ({ id, owner: sh.owner, state: shardState(s, id) }));
}

export interface ControlView {
  name: string;
  sessionId: string;
  state: ControlState;
  shards: Range[];
  redundant: boolean;
  capacity: number;
  lastHeartbeatMs: number | null;
}

export function controlView(s: FleetState, rec: ControlRec): ControlView {
  const ids: number[] = [];
  s.shards.forEach((sh, id) => {
    if (sh.owner === rec.name) ids.push(id);
  });
  return {
    name: rec.name,
    sessionId: rec.sessionId,
    state: controlState(s, rec),
    shards: toRanges(ids),
    redundant: rec.redundant,
    capacity: rec.capacity,
    lastHeartbeatMs: rec.lastHeartbeat,
  };
}

export function fleetView(s: FleetState, cfg: MachineConfig, now: number): Record<string, unknown> {
  const remaining = budgetRemaining(s.queue, now, queueConfig(cfg));
  return {
    halted: s.phase === 'halted',
    shardCount: cfg.shardCount,
    maxConcurrency: cfg.maxConcurrency,
    budgetRemaining: remaining,
    controls: [...s.controls.values()].sort((a, b) => a.order - b.order).map((c) => controlView(s, c)),
    phase: s.phase,
    haltReason: s.haltReason,
    budgetExhausted: remaining === 0,
    identifyQueueDepth: s.queue.waiting.length,
  };
}
