/**
 * Simulation: N CONTROLs (the real ShardingControl client) against a real MASTER on a
 * fake clock, driven through crashes, silent sockets, connection blips, network outages,
 * new hosts, rebalances, halts and MASTER restarts by a seeded random walk. After every
 * instant at which a timer fires, once every frame in flight has been delivered, it
 * checks the invariants:
 *
 *  1. every shard is served by at most one CONTROL, except the overlap of a
 *     make-before-break (the old owner and the incoming one);
 *  2. no shard stays with an owner that is gone (crashed, silent, cut off, or none at
 *     all) for longer than the failover deadline, while some CONTROL could take it;
 *  3. no IDENTIFY_GRANT breaks the bucket/window rule.
 *
 * At the end, with every host healthy, the fleet must converge: each shard served by
 * exactly one CONTROL, which the MASTER lists as its owner.
 *
 * Clocks are skewed: each host's timers run at its own rate (0.95 to 1.08 of the MASTER's)
 * and fire up to 40 ms late, and some HEARTBEATs are held up to 350 ms on the way (short of the MASTER's deadline even on the slowest clock). The
 * CONTROLs fence on the timing the MASTER sends in INITIALISE (they are given none of
 * their own), so invariant 1 holds only if that timing leaves room for the skew.
 *
 * Set SHARDING_SIM_SEED to replay a run (a failure prints its seed and step),
 * SHARDING_SIM_STEPS for a longer walk, and SHARDING_SIM_TRACE=1 to print each host's
 * last frames when an invariant breaks.
 */
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ShardingControl, type WebSocketConstructor } from '../../src/client/sharding.js';
import type { Clock } from '../../src/core/clock.js';
import type { ShardingDialect } from '../../src/dialects/sharding/dialect.js';
import { bucketOf } from '../../src/dialects/sharding/identify-queue.js';
import { expand } from '../../src/protocols/sharding/ranges.js';
import { startMuster, type Muster } from '../../src/server.js';
import { MemoryStore } from '../../src/store/memory.js';
import { ADMIN_TOKEN } from '../support/server.js';
import { KEY } from '../support/harness/sharding.js';
import { mulberry32 } from '../support/random.js';
import { shardingOnlyConfig } from '../support/sharding-config.js';

/** A clock that can say when its next wake-up is due, so time moves one instant at a time. */
interface Wake {
  at: number;
  seq: number;
  cb: () => void;
  live: boolean;
}

class SimClock implements Clock {
  #now = 1_700_000_000_000;
  #seq = 0;
  #wakes: Wake[] = [];
  now(): number {
    return this.#now;
  }
  wake(ms: number, cb: () => void): () => void {
    const w = { at: this.#now + Math.max(0, ms), seq: this.#seq++, cb, live: true };
    this.#wakes.push(w);
    return () => {
      w.live = false;
    };
  }
  nextDue(): number | undefined {
    this.#wakes = this.#wakes.filter((w) => w.live);
    let min: number | undefined;
    for (const w of this.#wakes) if (min === undefined || w.at < min) min = w.at;
    return min;
  }
  /** Moves to `at` and runs everything due by then, in order. */
  fire(at: number): void {
    this.#now = Math.max(this.#now, at);
    for (;;) {
      let next: Wake | undefined;
      for (const w of this.#wakes) if (w.live && w.at <= this.#now && (!next || w.at < next.at || (w.at === next.at && w.seq < next.seq))) next = w;
      if (!next) return;
      next.live = false;
      next.cb();
    }
  }
  jump(to: number): void {
    this.#now = Math.max(this.#now, to);
  }
}

/**
 * A host's view of the simulated time: its timers run at `rate` (1.08: 8 % slow) and each
 * fires up to `lagMs` late, as on a loaded machine with a drifting clock.
 */
class SkewedClock implements Clock {
  readonly #base: number;
  constructor(
    readonly sim: SimClock,
    readonly rate: number,
    readonly lagMs: number,
    readonly rand: () => number,
  ) {
    this.#base = sim.now();
  }
  now(): number {
    return this.#base + Math.floor((this.sim.now() - this.#base) / this.rate);
  }
  wake(ms: number, cb: () => void): () => void {
    return this.sim.wake(Math.ceil(Math.max(0, ms) * this.rate + this.rand() * this.lagMs), cb);
  }
}

const CFG = {
  shardCount: 12,
  maxConcurrency: 2,
  heartbeatInterval: 1000,
  heartbeatGrace: 500,
  reconnectWindow: 2000,
  fenceMargin: 300,
  startupDelay: 3000,
  expectedControls: 3,
  redundancy: 1,
  connectTimeout: 5000,
  identifyWindow: 200,
  identifyMargin: 20,
  sessionStartLimit: 1_000_000,
  identifyTimeout: 1000,
};
/** Clock skew of the hosts: rate range and the most a timer fires late; how late a held HEARTBEAT may be. */
const SKEW = { minRate: 0.95, maxRate: 1.08, lagMs: 40, heartbeatHoldMs: 350, heartbeatHoldP: 0.15 };
/**
 * The longest a shard may wait for a live owner, per owner socket: a closed socket
 * (reconnectWindow) or a silent one (up to one interval since the last HEARTBEAT, plus
 * interval + grace).
 */
const FAILOVER_DEADLINE = Math.max(CFG.reconnectWindow, 2 * CFG.heartbeatInterval + CFG.heartbeatGrace);

interface SimSocket extends WebSocket {
  droppedOut: number;
  droppedIn: number;
  /** The session_id of this socket's INITIALISE (seen even while partitioned). */
  sessionId: string | undefined;
}

interface Host {
  name: string;
  trace: string[];
  client: ShardingControl | undefined;
  partitioned: boolean;
  down: boolean;
  healAt: number | undefined;
}

class Sim {
  readonly clock = new SimClock();
  readonly store = new MemoryStore({ now: () => this.clock.now() });
  readonly rand: () => number;
  readonly hosts: Host[] = [];
  readonly grants: Array<{ shard: number; at: number; host: string }> = [];
  readonly errors: string[] = [];
  readonly violations: string[] = [];
  crossings: Array<{ host: Host; shard: number }> = [];
  muster: Muster | undefined;
  port = 0;
  step = 0;
  resumeAt: number | undefined;
  spawns = 0;
  #unserved = new Map<number, { owner: string; since: number }>();
  #lastState: unknown;

  constructor(
    readonly seed: number,
    readonly startup: 'sequential' | 'parallel',
  ) {
    this.rand = mulberry32(seed);
  }

  fail(msg: string): never {
    if (process.env.SHARDING_SIM_TRACE) for (const h of this.hosts) console.log(h.name, h.partitioned, h.down, h.trace.join('\n'));
    throw new Error(`sharding simulation failed: seed=${this.seed} (SHARDING_SIM_SEED=${this.seed}) startup=${this.startup} step=${this.step} t=${this.clock.now() - 1_700_000_000_000}: ${msg}`);
  }

  dialect(): ShardingDialect | undefined {
    return this.muster?.dialect<ShardingDialect>('sharding');
  }

  async startMaster(): Promise<void> {
    const config = shardingOnlyConfig({ authorization: KEY, botToken: 'b', startup: this.startup, ...CFG }, { adminToken: ADMIN_TOKEN, port: this.port });
    this.muster = await startMuster({ config, clock: this.clock, store: this.store, logger: pino({ level: 'silent' }), defaultMetrics: false });
    await this.dialect()?.ready;
    this.port = this.muster.address().port;
    this.#unserved.clear();
  }

  async stopMaster(): Promise<void> {
    const m = this.muster;
    this.muster = undefined;
    await m?.stop();
  }

  socketClass(host: Host): WebSocketConstructor {
    const now = (): number => this.clock.now() - 1_700_000_000_000;
    const masterUp = (): boolean => this.muster !== undefined;
    const clock = this.clock;
    const hold = mulberry32(this.seed * 7919 + this.hosts.indexOf(host) * 31 + this.spawns);
    return class extends WebSocket {
      droppedOut = 0;
      droppedIn = 0;
      sessionId: string | undefined;
      constructor(url: string, opts: WebSocket.ClientOptions) {
        super(host.down || !masterUp() ? 'ws://127.0.0.1:1/' : url, opts);
      }
      override send(data: unknown, ...rest: unknown[]): void {
        host.trace.push(`${now()} > ${String(data)}${host.partitioned ? ' (dropped)' : ''}`);
        if (host.trace.length > 40) host.trace.shift();
        if (host.partitioned) {
          this.droppedOut++;
          return;
        }
        if (typeof data === 'string' && data.startsWith('{"o":9,') && hold() < SKEW.heartbeatHoldP) {
          // A late HEARTBEAT: held on the way (counted as not delivered until it is).
          this.droppedOut++;
          clock.wake(Math.floor(hold() * SKEW.heartbeatHoldMs), () => {
            if (this.readyState !== WebSocket.OPEN || host.partitioned) return;
            this.droppedOut--;
            (super.send as (...a: unknown[]) => void)(data, ...rest);
          });
          return;
        }
        (super.send as (...a: unknown[]) => void)(data, ...rest);
      }
      override emit(event: string | symbol, ...args: unknown[]): boolean {
        if (event === 'message') {
          host.trace.push(`${now()} < ${String(args[0])}${host.partitioned ? ' (dropped)' : ''}`);
          if (host.trace.length > 40) host.trace.shift();
        }
        if (event === 'message' && this.sessionId === undefined) {
          const f = JSON.parse(String(args[0])) as { o: number; d: { session_id?: string } };
          if (f.o === 5) this.sessionId = f.d.session_id;
        }
        if (event === 'message' && host.partitioned) {
          this.droppedIn++;
          return false;
        }
        return super.emit(event, ...args);
      }
    };
  }

  spawn(host: Host): void {
    const skew = mulberry32(this.seed * 104729 + this.hosts.indexOf(host) * 97 + this.spawns);
    const rate = SKEW.minRate + skew() * (SKEW.maxRate - SKEW.minRate);
    const client = new ShardingControl({
      url: `ws://127.0.0.1:${this.port}/sharding`,
      authorization: KEY,
      name: host.name,
      capacity: 1 + Math.floor(this.rand() * 3),
      // Its own skewed clock; the fencing timing comes from the MASTER's INITIALISE.
      clock: new SkewedClock(this.clock, rate, SKEW.lagMs, skew),
      haltedRetryDelay: 500,
      // Each host draws its own jitter, so the order in which sockets close does not change the run.
      reconnect: { minMs: 50, maxMs: 400, random: mulberry32(this.seed * 1000 + this.hosts.indexOf(host) * 50 + ++this.spawns) },
      WebSocket: this.socketClass(host),
      start: async (ranges, ctx) => {
        for (const id of expand(ranges, CFG.shardCount)) {
          try {
            await client.identifySlot(id, ctx.signal);
          } catch {
            continue; // this one was stopped meanwhile
          }
        }
      },
      stop: () => undefined,
    });
    client.on('grant', (shard: number) => this.grants.push({ shard, at: this.clock.now(), host: host.name }));
    client.on('error', (err: Error) => {
      if (!/ECONNREFUSED|socket hang up|closed before|Unexpected server response|ECONNRESET|401/.test(err.message)) this.errors.push(`${host.name}: ${err.message}`);
    });
    client.on('protocolError', (d: { code: number; message: string }) => {
      // 4001/4002/4003/4005/4006 precede closes that the scenario provokes. A 4004 (bad
      // frame) or a 4009 (protocol violation) would be a bug in the client or the MASTER.
      // One 4009 is a benign race: an IDENTIFY_REQUEST crossing the SHUTDOWN of its shard;
      // it is accepted once the shard is seen stopped on that host (see check()).
      const crossed = /^IDENTIFY_REQUEST for shard (\d+)/.exec(d.message);
      if (d.code === 4009 && crossed) this.crossings.push({ host, shard: Number(crossed[1]) });
      else if (d.code === 4004 || d.code === 4009) this.errors.push(`${host.name}: ERROR ${d.code} ${d.message}`);
      else this.violations.push(`${host.name}: ${d.code} ${d.message}`);
    });
    host.client = client;
    void client.connect().catch(() => undefined);
  }

  addHost(): void {
    const host: Host = { name: `host-${this.hosts.length}`, trace: [], client: undefined, partitioned: false, down: false, healAt: undefined };
    this.hosts.push(host);
    this.spawn(host);
  }

  mbbPending(): boolean {
    return this.dialect()?.state.shards.some((s) => s.target !== null) ?? false;
  }

  // ---- settling and invariants ----

  fingerprint(): string {
    const parts: unknown[] = [];
    const d = this.dialect();
    if (d && d.state !== this.#lastState) {
      this.#lastState = d.state;
      parts.push(Math.random()); // the orchestrator moved
    }
    for (const c of this.muster?.transport.connections() ?? []) parts.push(c.framesIn, c.framesOut);
    for (const h of this.hosts) {
      const ws = h.client?.socket;
      parts.push(h.client?.stats.framesIn, h.client?.stats.framesOut, ws?.readyState, h.client?.running.length);
    }
    return JSON.stringify(parts);
  }

  /** Every frame in flight has arrived (counted on both ends), and no socket is half-open. */
  consistent(): boolean {
    return this.inconsistency() === undefined;
  }

  inconsistency(): string | undefined {
    const d = this.dialect();
    let open = 0;
    for (const h of this.hosts) {
      const ws = h.client?.socket as SimSocket | undefined;
      if (!ws) continue;
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.CLOSING) return `${h.name} socket state ${ws.readyState}`;
      if (ws.readyState !== WebSocket.OPEN) continue;
      open++;
      if (!d) return `${h.name} open without MASTER`;
      const c = h.client as ShardingControl;
      const sid = ws.sessionId;
      if (sid === undefined) return `${h.name} has no INITIALISE yet`;
      const sock = [...d.state.sockets.values()].find((s) => s.sessionId === sid);
      const conn = sock ? this.muster?.transport.get(sock.id)?.conn : undefined;
      if (!conn) return `${h.name}: no server connection for session ${sid}`;
      if (conn.framesIn !== c.stats.framesOut - ws.droppedOut) return `${h.name}: server got ${conn.framesIn}, client sent ${c.stats.framesOut} - ${ws.droppedOut}`;
      if (conn.framesOut !== c.stats.framesIn + ws.droppedIn) return `${h.name}: server sent ${conn.framesOut}, client got ${c.stats.framesIn} + ${ws.droppedIn}`;
    }
    if (this.muster && this.muster.transport.size !== open) return `server has ${this.muster.transport.size} sockets, clients ${open}`;
    return undefined;
  }

  instants = 0;
  settleMs = 0;
  turns = 0;
  async settle(): Promise<void> {
    const t0 = Date.now();
    this.instants++;
    try {
      await this.#settle();
    } finally {
      this.settleMs += Date.now() - t0;
    }
  }

  async #settle(): Promise<void> {
    const deadline = Date.now() + 5000;
    let stable = 0;
    let last = '';
    while (stable < 2) {
      await new Promise((r) => setImmediate(r));
      this.turns++;
      const fp = this.fingerprint();
      if (fp === last && this.consistent()) stable++;
      else stable = 0;
      last = fp;
      if (Date.now() > deadline) this.fail(`the fleet did not settle in 5 s of real time: ${this.inconsistency() ?? 'still moving'}`);
    }
  }

  servers(): Map<number, string[]> {
    const out = new Map<number, string[]>();
    for (const h of this.hosts) {
      for (const id of expand(h.client?.running ?? [], CFG.shardCount)) out.set(id, [...(out.get(id) ?? []), h.name]);
    }
    return out;
  }

  check(): void {
    const now = this.clock.now();
    const d = this.dialect();
    const state = d?.state;
    // 1. At most one CONTROL serves a shard, except a make-before-break's overlap.
    for (const [id, names] of this.servers()) {
      if (names.length <= 1) continue;
      const sh = state?.shards[id];
      const mbb = names.length === 2 && sh?.target != null && names.includes(sh.target) && sh.owner !== null && names.includes(sh.owner);
      if (!mbb) this.fail(`shard ${id} is served by ${names.join(' and ')} (owner ${sh?.owner ?? '?'}, target ${sh?.target ?? 'none'})`);
    }
    // 2. No shard waits longer than the failover deadline for a live owner, while someone could take it.
    if (state && (state.phase === 'running' || state.phase === 'starting')) {
      const live = (name: string | null) => {
        if (name === null) return false;
        const rec = state.controls.get(name);
        const host = this.hosts.find((h) => h.name === name);
        return rec?.conn != null && host?.client !== undefined && !host.partitioned && !host.down;
      };
      const candidate = [...state.controls.values()].some((c) => c.started && live(c.name));
      state.shards.forEach((sh, id) => {
        if (!candidate || live(sh.owner)) {
          this.#unserved.delete(id);
          return;
        }
        // Measured per owner and per socket of that owner, as the MASTER sees it: a failover
        // onto a host that has just gone silent, or a silent owner whose socket then closes
        // (the reconnect window starts), begins a new wait.
        const key = `${sh.owner ?? ''}|${sh.owner === null ? '' : (state.controls.get(sh.owner)?.conn ?? 'disconnected')}`;
        const prev = this.#unserved.get(id);
        const since = prev && prev.owner === key ? prev.since : now;
        this.#unserved.set(id, { owner: key, since });
        if (now - since > FAILOVER_DEADLINE) this.fail(`shard ${id} has had no live owner for ${now - since} ms (owner ${sh.owner ?? 'none'})`);
      });
    } else {
      this.#unserved.clear();
    }
    // 3. Grants keep to one per bucket per identify window.
    const last = new Map<number, number>();
    for (const g of this.grants) {
      const b = bucketOf(g.shard, CFG.maxConcurrency);
      const prev = last.get(b);
      if (prev !== undefined && g.at - prev < CFG.identifyWindow) this.fail(`grants ${g.at - prev} ms apart in bucket ${b} (shard ${g.shard} to ${g.host})`);
      last.set(b, g.at);
    }
    for (const c of this.crossings.splice(0)) {
      if (c.host.client && expand(c.host.client.running, CFG.shardCount).includes(c.shard)) {
        this.errors.push(`${c.host.name}: ERROR 4009 for IDENTIFY_REQUEST of shard ${c.shard}, which it still runs`);
      } else {
        this.violations.push(`${c.host.name}: 4009 crossing for shard ${c.shard}`);
      }
    }
    if (this.errors.length > 0) {
      this.fail(`unexpected client errors: ${this.errors.join('; ')}`);
    }
  }

  /** Moves fake time forward one firing instant at a time, settling and checking after each. */
  async run(ms: number): Promise<void> {
    const target = this.clock.now() + ms;
    for (;;) {
      for (const h of this.hosts) {
        if (h.healAt !== undefined && h.healAt <= this.clock.now()) {
          h.partitioned = false;
          h.down = false;
          h.healAt = undefined;
        }
      }
      if (this.resumeAt !== undefined && this.resumeAt <= this.clock.now() && this.muster) {
        this.resumeAt = undefined;
        await this.admin('POST', '/api/v1/sharding/resume');
      }
      const next = this.clock.nextDue();
      const resume = this.muster ? (this.resumeAt ?? Infinity) : Infinity;
      const heal = Math.min(...this.hosts.map((h) => h.healAt ?? Infinity), resume);
      const at = Math.min(next ?? Infinity, heal);
      if (at > target) break;
      this.clock.fire(at);
      await this.settle();
      this.check();
    }
    this.clock.jump(target);
    await this.settle();
    this.check();
  }

  async admin(method: string, path: string, body?: unknown): Promise<number> {
    const res = await fetch(`${this.muster?.url()}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    await res.text();
    return res.status;
  }

  pick<T>(list: T[]): T | undefined {
    return list.length === 0 ? undefined : list[Math.floor(this.rand() * list.length)];
  }

  async act(): Promise<string> {
    const alive = this.hosts.filter((h) => h.client !== undefined);
    const healthy = alive.filter((h) => !h.partitioned && !h.down);
    const dead = this.hosts.filter((h) => h.client === undefined);
    const calm = !this.mbbPending();
    const r = this.rand();
    if (r < 0.08 && alive.length > 1) {
      const h = this.pick(alive) as Host;
      const c = h.client as ShardingControl;
      h.client = undefined;
      h.partitioned = false;
      h.down = false;
      h.healAt = undefined;
      await c.close();
      return `crash ${h.name}`;
    }
    if (r < 0.2 && dead.length > 0) {
      const h = this.pick(dead) as Host;
      this.spawn(h);
      return `revive ${h.name}`;
    }
    if (r < 0.28 && calm && healthy.length > 1) {
      const h = this.pick(healthy) as Host;
      h.partitioned = true;
      h.healAt = this.clock.now() + 300 + Math.floor(this.rand() * 3000);
      return `partition ${h.name} until +${h.healAt - this.clock.now()}`;
    }
    if (r < 0.38 && calm && healthy.length > 0) {
      const h = this.pick(healthy) as Host;
      h.client?.socket?.terminate();
      return `blip ${h.name}`;
    }
    if (r < 0.44 && calm && healthy.length > 1) {
      const h = this.pick(healthy) as Host;
      h.down = true;
      h.healAt = this.clock.now() + 200 + Math.floor(this.rand() * 4000);
      h.client?.socket?.terminate();
      return `network down for ${h.name} until +${h.healAt - this.clock.now()}`;
    }
    if (r < 0.5 && this.hosts.length < 6) {
      this.addHost();
      return `add ${this.hosts.at(-1)?.name}`;
    }
    if (r < 0.58 && calm && this.muster && alive.every((h) => !h.partitioned && !h.down)) {
      const status = await this.admin('POST', '/api/v1/sharding/rebalance');
      return `rebalance → ${status}`;
    }
    if (r < 0.62 && calm && this.muster) {
      await this.stopMaster();
      const downFor = Math.floor(this.rand() * 2500);
      await this.run(downFor);
      await this.startMaster();
      return `MASTER restart (down ${downFor} ms)`;
    }
    if (r < 0.635 && this.muster && this.resumeAt === undefined) {
      await this.admin('POST', '/api/v1/sharding/halt');
      this.resumeAt = this.clock.now() + 500 + Math.floor(this.rand() * 2000);
      return 'halt';
    }
    return 'wait';
  }

  async converge(): Promise<void> {
    for (const h of this.hosts) {
      h.partitioned = false;
      h.down = false;
      h.healAt = undefined;
      if (!h.client) this.spawn(h);
    }
    if (this.resumeAt !== undefined) this.resumeAt = this.clock.now();
    await this.run(25_000);
    const state = this.dialect()?.state;
    if (!state) this.fail('no MASTER at the end');
    if (state.phase !== 'running') this.fail(`phase ${state.phase} at the end`);
    const servers = this.servers();
    for (let id = 0; id < CFG.shardCount; id++) {
      const names = servers.get(id) ?? [];
      const owner = state.shards[id]?.owner;
      if (names.length !== 1 || names[0] !== owner) this.fail(`after convergence shard ${id} is served by [${names.join(', ')}] but owned by ${owner ?? 'nobody'}`);
      if (state.shards[id]?.work !== 'connected') this.fail(`after convergence shard ${id} is ${state.shards[id]?.work}`);
    }
  }

  async close(): Promise<void> {
    for (const h of this.hosts) await h.client?.close();
    await this.stopMaster();
  }
}

const BASE_SEED = Number(process.env.SHARDING_SIM_SEED ?? 20240601);
const STEPS = Number(process.env.SHARDING_SIM_STEPS ?? 100);

let sim: Sim | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

describe('sharding simulation', () => {
  for (const [offset, startup] of [
    [0, 'parallel'],
    [1, 'sequential'],
  ] as const) {
    it(`keeps the invariants through ${STEPS} random steps (${startup} start-up, seed ${BASE_SEED + offset})`, async () => {
      sim = new Sim(BASE_SEED + offset, startup);
      await sim.startMaster();
      for (let i = 0; i < 3; i++) sim.addHost();
      const log: string[] = [];
      try {
        // startupDelay, then 12 shards in 2 buckets: 6 spacings of identifyWindow + identifyMargin.
        await sim.run(4500);
        expect(sim.dialect()?.state.phase).toBe('running');
        for (sim.step = 1; sim.step <= STEPS; sim.step++) {
          const t0 = Date.now();
          log.push(`${sim.step}: ${await sim.act()}`);
          await sim.run(50 + Math.floor(sim.rand() * 1000));
          if (process.env.SHARDING_SIM_TRACE && Date.now() - t0 > 300) console.log(`slow step ${log.at(-1)}: ${Date.now() - t0} ms`);
        }
        await sim.converge();
      } catch (err) {
        console.error(`last steps:\n${log.slice(-15).join('\n')}`);
        throw err;
      }
      if (process.env.SHARDING_SIM_TRACE) console.log(`instants ${sim.instants}, settle ${sim.settleMs} ms, turns ${sim.turns}, violations ${sim.violations.length}`, [...new Set(sim.violations.map((v) => v.replace(/host-\d/, 'h').replace(/\d+/g, 'N')))]);
      expect(sim.grants.length).toBeGreaterThan(CFG.shardCount);
    }, 60_000);
  }
});
