import { ManualClock } from '../../src/core/clock.js';
import { initialWorld, timerId, type ClusterioWorld, type Eff, type TimerKey, type WorldConfig, type WorldEvent } from '../../src/dialects/clusterio/world/state.js';
import { step } from '../../src/dialects/clusterio/world/step.js';
import { driveWorld } from './world-driver.js';

/**
 * The Clusterio world fed events with a manual clock: no socket, no token check, no
 * store, no runtime, no Broker. The test plays the runtime's part: it reads timers off
 * the effects, and answers the world's `verify` and `settled` writes itself.
 */

export interface Frame {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}

export function harness(over: Partial<WorldConfig> = {}) {
  const clock = new ManualClock(1_000_000);
  const seen = new Map<string, number>();
  let tokens = 0;
  const cfg: WorldConfig = {
    machine: { heartbeatInterval: 10_000, preAuthMaxBytes: 4096 },
    heartbeatInterval: 10_000,
    handshakeTimeout: 20_000,
    sessionTimeout: 60_000,
    requestTimeout: 5_000,
    metricsTimeout: 1_500,
    preAuthMaxBytes: 4096,
    sessionBufferBytes: 1 << 20,
    newSessionId: () => `token-${++tokens}`,
    ...over,
  };
  const d = driveWorld<ClusterioWorld, WorldEvent, Eff, TimerKey>({
    clock,
    initial: initialWorld(),
    step: (state, ev) => step(state, ev, cfg),
    timerId,
    timerEvent: (key, now) => ({ type: 'timer', now, key, lastSeen: key.kind === 'beat' ? (seen.get(key.conn) ?? 0) : 0 }),
  });
  const now = (): number => clock.now();
  const open = (conn: string): Eff[] => d.feed({ type: 'open', now: now(), conn });
  const text = (conn: string, t: string): Eff[] => {
    seen.set(conn, now());
    return d.feed({ type: 'frame', now: now(), conn, text: t, bytes: Buffer.byteLength(t) });
  };
  const frame = (conn: string, seq: number, type: string, data: unknown): Eff[] => text(conn, JSON.stringify({ seq, type, data }));
  const loaded = (): Eff[] => d.feed({ type: 'registryLoaded', now: now(), slaves: [], instances: [] });
  /** Answers the link's pending token check. */
  const auth = (conn: string, ok = true): Eff[] => {
    const attempt = d.state().links.get(conn)?.attempt ?? 0;
    return d.feed({ type: 'authenticated', now: now(), conn, attempt, ok });
  };
  /** Settles every write in `fx` that the world waits on. */
  const settle = (fx: Eff[], ok = true): Eff[] => {
    const out: Eff[] = [];
    for (const e of fx) {
      if ((e.type === 'persist' || e.type === 'unpersist') && e.settled !== undefined) out.push(...d.feed({ type: 'settled', now: now(), id: e.settled, ok }));
    }
    return out;
  };
  const register = (conn: string, type: 'register_slave' | 'register_control', data: Record<string, unknown>): Eff[] => {
    const fx = open(conn);
    fx.push(...frame(conn, 1, type, { token: 'jwt', agent: 'clusterio', version: '2.0.0-alpha', ...data }));
    fx.push(...auth(conn));
    fx.push(...settle(fx));
    return fx;
  };
  const slave = (conn: string, id: number, extra: Record<string, unknown> = {}): Eff[] => register(conn, 'register_slave', { name: `slave-${id}`, id, ...extra });
  const control = (conn: string, extra: Record<string, unknown> = {}): Eff[] => register(conn, 'register_control', extra);
  return { clock, cfg, d, open, text, frame, loaded, auth, settle, slave, control, world: d.state };
}

/** Frames a socket gets (sent directly, through the Broker, or its final `close`), parsed. */
export function framesTo(fx: readonly Eff[], conn: string): Frame[] {
  const out: Frame[] = [];
  for (const e of fx) {
    if (e.type === 'send' && e.conn === conn) out.push(JSON.parse(e.frame) as Frame);
    if (e.type === 'deliver' && e.target.to === 'conn' && e.target.conn === conn) out.push(JSON.parse(e.frame) as Frame);
    if (e.type === 'shut' && e.conn === conn) out.push(JSON.parse(e.frame) as Frame);
  }
  return out;
}

export function closeOf(fx: readonly Eff[], conn: string): { code: number; reason: string } | undefined {
  for (const e of fx) if ((e.type === 'shut' || e.type === 'close') && e.conn === conn) return { code: e.code, reason: e.reason };
  return undefined;
}

export const writes = (fx: readonly Eff[]) => fx.filter((e) => e.type === 'persist' || e.type === 'unpersist');

export function config(id: number, assigned: number | null = null, name = 'inst'): Record<string, unknown> {
  return {
    groups: [
      { name: 'instance', fields: { name, id, assigned_slave: assigned } },
      { name: 'factorio', fields: { game_port: null, rcon_port: null, rcon_password: null, settings: {} } },
    ],
  };
}

/** A loaded world with a control `c` and a slave `s` (id 7) hosting instance 42. */
export function cluster(over: Partial<WorldConfig> = {}) {
  const h = harness(over);
  h.loaded();
  h.control('c');
  h.slave('s', 7);
  h.settle(h.frame('c', 2, 'create_instance_request', { serialized_config: config(42) }));
  const fx = h.frame('c', 3, 'assign_instance_command_request', { instance_id: 42, slave_id: 7 });
  h.settle(fx);
  const assign = framesTo(h.d.out, 's').find((f) => f.type === 'assign_instance_request') as Frame;
  h.frame('s', 2, 'assign_instance_response', { seq: assign.seq });
  return h;
}
