/**
 * The sharding orchestrator as a pure state machine: (state, event) → (state, effects).
 *
 * Events are socket opens, decoded frames, malformed frames, socket closes, deadlines
 * (keyed timers), admin calls and the store load at start. Effects are frames to
 * send, closes, timers to arm or cancel, records to persist, metric observations,
 * log lines and admin replies. The runtime (dialect.ts) carries them out; nothing
 * here touches a socket, a clock or the store.
 *
 * The world is split by concern under world/: liveness (sockets and deadlines),
 * membership (IDENTIFY and re-attach), startup, placement (failover and rebalance),
 * queue (identify grants), admin, takeover (a new leader re-attaching the sockets other
 * instances hold, in cluster mode), and views (what is stored and shown). Each is a set of
 * pure functions over one step's transaction (world/tx.ts); this module dispatches the
 * events and settles the step.
 *
 * Invariants kept here:
 * - every shard has at most one owner; in a make-before-break the incoming CONTROL
 *   is the shard's `target` until it reports CONNECTED, then it becomes the owner and
 *   the old owner gets SHUTDOWN;
 * - shards of a CONTROL that died or stayed away past `reconnectWindow` are given to a
 *   standby, or split by capacity over the live CONTROLs, in the same step;
 * - IDENTIFY_GRANTs follow the bucket/window rule and the daily budget (identify-queue.ts).
 */
import { assertNever } from '../../core/never.js';
import { CloseCodes, encodeMaster, Op, OP_NAMES, type ControlFrame } from '../../protocols/sharding/messages.js';
import { dropWhere, emptyQueue } from './identify-queue.js';
import { admin, halt } from './world/admin.js';
import { closed, connectDeadline, heartbeatDeadline, identifyDeadline, open, windowDeadline } from './world/liveness.js';
import { identify } from './world/membership.js';
import { connected, placeOrphans } from './world/placement.js';
import { drainQueue, request } from './world/queue.js';
import { advance, loaded, startFleet, startupDeadline } from './world/startup.js';
import { adopt } from './world/takeover.js';
import { Tx } from './world/tx.js';
import { timerId, type FleetEvent, type FleetState, type MachineConfig, type Step, type TimerKey } from './world/types.js';
import { persisted } from './world/views.js';

export { queueConfig } from './world/tx.js';
export * from './world/types.js';
export * from './world/views.js';

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
  handle(tx, event);
  settle(tx);
  return { state: tx.s, effects: tx.fx };
}

function handle(tx: Tx, e: FleetEvent): void {
  tx.event = e.type;
  switch (e.type) {
    case 'loaded':
      return loaded(tx, e);
    case 'open':
      return open(tx, e.conn, e.sessionId);
    case 'message':
      return message(tx, e.conn, e.frame);
    case 'malformed': {
      const sock = tx.s.sockets.get(e.conn);
      if (sock && !sock.closing) tx.closeSocket(e.conn, CloseCodes.MALFORMED, 'Malformed packet', e.detail);
      return;
    }
    case 'closed':
      return closed(tx, e.conn);
    case 'timer':
      return timer(tx, e.key);
    case 'admin':
      return admin(tx, e.action);
    case 'adopt':
      return adopt(tx, e);
    default:
      return assertNever(e);
  }
}

function timer(tx: Tx, key: TimerKey): void {
  tx.s.timers.delete(timerId(key));
  switch (key.kind) {
    case 'identify':
      return identifyDeadline(tx, key.conn);
    case 'heartbeat':
      return heartbeatDeadline(tx, key.control);
    case 'connect':
      return connectDeadline(tx, key.control);
    case 'window':
      return windowDeadline(tx, key.control);
    case 'startup':
      return startupDeadline(tx);
    case 'queue':
      return; // settle() drains the queue
    default:
      return assertNever(key);
  }
}

function message(tx: Tx, conn: string, f: ControlFrame): void {
  const sock = tx.s.sockets.get(conn);
  if (!sock || sock.closing) return;
  const rec = sock.control === null ? undefined : tx.s.controls.get(sock.control);
  switch (f.o) {
    case Op.IDENTIFY:
      if (rec) return tx.violation(conn, 'IDENTIFY on a socket that has already identified');
      return identify(tx, sock, f.d);
    case Op.HEARTBEAT:
      tx.send(conn, encodeMaster.ack(f.raw));
      if (rec) {
        rec.hbBase = tx.now;
        rec.lastHeartbeat = tx.now;
        tx.setTimer({ kind: 'heartbeat', control: rec.name }, tx.now + tx.cfg.heartbeatInterval + tx.cfg.heartbeatGrace);
      }
      return;
    case Op.ERROR:
      tx.log('warn', 'sharding: CONTROL reported an ERROR', { control: rec?.name ?? null, code: f.d.code, message: f.d.message ?? '' }, conn);
      return;
    default:
      break;
  }
  if (!rec) return tx.violation(conn, `${OP_NAMES[f.o]} before IDENTIFY: identify first`);
  switch (f.o) {
    case Op.INFO:
      rec.info = f.raw;
      rec.infoAt = tx.now;
      return;
    case Op.FATAL: {
      const reason = `FATAL from ${rec.name}: ${f.d.code}${f.d.message ? ` ${f.d.message}` : ''}`;
      tx.log('error', 'sharding: FATAL received; halting the fleet', { control: rec.name, code: f.d.code, message: f.d.message ?? '' });
      return halt(tx, reason);
    }
    case Op.CONNECTING:
      if (rec.awaitingSince === null) return;
      tx.s.shards.forEach((sh, id) => {
        if (sh.owner === rec.name && sh.work === 'assigned') tx.patch(id, { work: 'connecting' });
      });
      return;
    case Op.CONNECTED:
      return connected(tx, rec, f.d.shards);
    case Op.IDENTIFY_REQUEST:
      return request(tx, rec, f.d.shard_id);
    case Op.IDENTIFY_CANCEL:
      // Withdrawn before its grant: it spends no window and no session start. A cancel
      // of nothing queued (the grant crossed it, or it was never asked) changes nothing.
      tx.s.queue = dropWhere(tx.s.queue, (r) => r.shard === f.d.shard_id && r.control === rec.name);
      return;
  }
}

function settle(tx: Tx): void {
  const { s, cfg } = tx;
  if (s.phase === 'waiting') {
    const live = tx.live().length;
    if (live > 0 && (s.startupDue || (cfg.expectedControls > 0 && live >= cfg.expectedControls))) startFleet(tx);
  }
  if (s.phase === 'starting' || s.phase === 'running') {
    advance(tx);
    // Orphans only appear, or find a home, after the events that set the flag.
    if (tx.orphansMaybe || tx.event === 'loaded') placeOrphans(tx);
  }
  drainQueue(tx);
  for (const key of ['fleet', 'assignment', 'budget'] as const) {
    if (tx.dirty.has(key)) tx.fx.push({ type: 'persist', key, value: persisted(s, cfg, key) });
  }
}
