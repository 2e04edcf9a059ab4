/**
 * The sharding dialect's harness (`/sharding`): a server with only sharding on (a
 * store and clock the caller may keep across a restart), CONTROLs that have identified,
 * the HEARTBEAT/ACK round trip, and the admin calls both tiers make. The frames are the
 * wire's; `srv.dialect()` (internal state, for leak checks) is for the integration tests.
 */
import pino from 'pino';
import { expect } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import type { ShardingDialect } from '../../../src/dialects/sharding/dialect.js';
import { startMuster, type Muster } from '../../../src/server.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/types.js';
import { ADMIN_TOKEN, RawPeer } from '../server.js';
import { Harness, type Overrides } from './harness.js';
import { shardingOnlyConfig } from '../sharding-config.js';

export const KEY = 'sharding-key-for-tests';
export const BOT_TOKEN = 'bot-token-for-tests';

export interface Frame<D = Record<string, unknown>> {
  o: number;
  d: D;
}

export interface ShardingServer {
  muster: Muster;
  clock: ManualClock;
  store: Store;
  wsUrl: string;
  httpBase: string;
  port: number;
  dialect(): ShardingDialect;
  stop(): Promise<void>;
}

/**
 * A real server with only the sharding dialect, a manual clock and a memory store that
 * the caller may keep across restarts (pass `store` and `clock` again, and `port`).
 */
export interface StartOptions {
  store?: Store;
  clock?: ManualClock;
  port?: number;
  logger?: pino.Logger;
  /** Top-level config keys; with `store` among them, the server opens that store itself. */
  top?: Overrides;
}

export async function startSharding(sharding: Record<string, unknown> = {}, opts: StartOptions = {}): Promise<ShardingServer> {
  const clock = opts.clock ?? new ManualClock();
  const ownStore = opts.top?.store !== undefined;
  const store = ownStore ? undefined : (opts.store ?? new MemoryStore({ now: () => clock.now() }));
  // identifyMargin 0: tests step the clock by whole identify windows.
  const config = shardingOnlyConfig({ authorization: KEY, botToken: BOT_TOKEN, identifyMargin: 0, ...sharding }, { adminToken: ADMIN_TOKEN, port: opts.port, top: opts.top });
  const logger = opts.logger ?? pino({ level: 'silent' });
  const muster = await startMuster({ config, clock, ...(store ? { store } : {}), logger, defaultMetrics: false });
  const d = muster.dialect<ShardingDialect>('sharding') as ShardingDialect;
  await d.ready;
  const httpBase = muster.url();
  return {
    muster,
    clock,
    store: store ?? muster.store,
    httpBase,
    port: muster.address().port,
    wsUrl: `${httpBase.replace(/^http/, 'ws')}/sharding`,
    dialect: () => d,
    stop: () => muster.stop(),
  };
}

/** A CONTROL that has identified: its peer, the INITIALISE it got and the IDENTIFIED. */
type Identified = { peer: RawPeer; init: Frame; identified: Frame };

export class ShardingHarness extends Harness<ShardingServer, [sharding?: Overrides, opts?: StartOptions]> {
  /** `defaults` go under every start's own sharding settings (its key and bot token among them). */
  constructor(readonly defaults: Overrides = {}) {
    super('/sharding', (sharding = {}, opts = {}) => startSharding({ ...defaults, ...sharding }, opts));
  }

  get key(): string {
    return (this.defaults.authorization as string | undefined) ?? KEY;
  }

  /** Opens a peer with `Authorization: key` (none for null); INITIALISE is left unread. */
  connect(key: string | null = this.key): Promise<RawPeer> {
    return this.open(key === null ? {} : { headers: { authorization: key } });
  }

  /** A CONTROL that has identified as `name` (INITIALISE and IDENTIFIED read). */
  async control(name: string, extra: Record<string, unknown> = {}): Promise<{ peer: RawPeer; init: Frame; identified: Frame }> {
    const c = await control(this.srv, name, extra, this.key);
    this.track(c.peer);
    return c;
  }

  /** Starts a server expecting two CONTROLs (with `cfg`): a on 0-7 and b on 8-15, both CONNECTED. */
  async fleet(cfg: Record<string, unknown> = {}): Promise<{ a: Identified; b: Identified }> {
    await this.start({ expectedControls: 2, ...cfg });
    const a = await this.control('a');
    const b = await this.control('b');
    await expectOp(a.peer, 6);
    await connected(a.peer, [[0, 7]]);
    await expectOp(b.peer, 6);
    await connected(b.peer, [[8, 15]]);
    return { a, b };
  }
}

/** CONNECTING, then CONNECTED for `ranges`, and a round trip. */
export async function connected(p: RawPeer, ranges: number[][]): Promise<void> {
  p.send({ o: 11, d: null });
  p.send({ o: 12, d: { shards: ranges } });
  await sync(p);
}

export async function openPeer(srv: ShardingServer, key: string | null = KEY): Promise<RawPeer> {
  return RawPeer.open(srv.wsUrl, key === null ? {} : { headers: { authorization: key } });
}

/** Opens, reads INITIALISE, sends IDENTIFY, reads IDENTIFIED. */
export async function control(
  srv: ShardingServer,
  name: string,
  extra: Record<string, unknown> = {},
  key: string = KEY,
): Promise<{ peer: RawPeer; init: Frame; identified: Frame }> {
  const peer = await openPeer(srv, key);
  const init = await peer.next<Frame>();
  expect(init.o).toBe(5);
  peer.send({ o: 10, d: { name, ...extra } });
  const identified = await peer.next<Frame>();
  expect(identified.o, JSON.stringify(identified)).toBe(15);
  return { peer, init, identified };
}

let seq = 1_000_000;
/** A HEARTBEAT/ACK round trip: every frame sent before it was processed; earlier frames stay queued. */
export async function sync(peer: RawPeer): Promise<void> {
  const mine = ++seq;
  peer.send({ o: 9, d: { seq: mine } });
  const skipped: string[] = [];
  for (;;) {
    const raw = await peer.nextRaw();
    const f = JSON.parse(raw) as Frame<{ seq?: number } | null>;
    if (f.o === 8 && f.d?.seq === mine) break;
    skipped.push(raw);
  }
  peer.frames.unshift(...skipped);
}

/** Reads the next frame and checks its opcode. */
export async function expectOp<D = Record<string, unknown>>(peer: RawPeer, o: number): Promise<D> {
  const f = await peer.next<Frame<D>>();
  expect(f.o, JSON.stringify(f)).toBe(o);
  return f.d;
}

/** ERROR then close with `code`. */
export async function expectErrorClose(peer: RawPeer, code: number): Promise<{ code: number; message: string }> {
  const d = await expectOp<{ code: number; message: string }>(peer, 7);
  expect(d.code).toBe(code);
  expect(typeof d.message).toBe('string');
  const c = await peer.waitClose();
  expect(c.code).toBe(code);
  return d;
}

/** Drops queued frames that are ACKs. */
export function dropAcks(peer: RawPeer): void {
  for (let i = peer.frames.length - 1; i >= 0; i--) if ((JSON.parse(peer.frames[i] as string) as Frame).o === 8) peer.frames.splice(i, 1);
}

export async function admin<T = Record<string, unknown>>(
  srv: ShardingServer,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await fetch(`${srv.httpBase}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

export async function shards(srv: ShardingServer): Promise<Array<{ id: number; owner: string | null; state: string }>> {
  return (await admin<Array<{ id: number; owner: string | null; state: string }>>(srv, 'GET', '/api/v1/sharding/shards')).body;
}

/** Owner of every shard, as a compact list of [owner, first, last]. */
export async function owners(srv: ShardingServer): Promise<Array<[string | null, number, number]>> {
  const out: Array<[string | null, number, number]> = [];
  for (const s of await shards(srv)) {
    const last = out[out.length - 1];
    if (last && last[0] === s.owner && last[2] === s.id - 1) last[2] = s.id;
    else out.push([s.owner, s.id, s.id]);
  }
  return out;
}

/** With every socket gone: lets every window pass and checks nothing is left. */
export function expectNoLeaks(srv: ShardingServer): void {
  const cfg = srv.muster.config.dialects.sharding;
  srv.clock.advance(Math.max(cfg.reconnectWindow, cfg.startupDelay, cfg.identifyTimeout) + 1);
  const s = srv.dialect().summary();
  expect(s).toMatchObject({ connections: 0, controls: 0, identifyQueue: 0, timers: 0 });
  expect(srv.dialect().state.sockets.size).toBe(0);
}
