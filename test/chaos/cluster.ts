/**
 * Cluster chaos: three built Muster processes on one redis-server (each reaching Redis
 * through a TCP proxy of its own), six sharding CONTROLs spread across them (behind
 * proxies that move a new connection to a live instance), and bus services on every
 * instance. A seeded schedule of steps, each followed by recovery (dead instances are
 * started again) and the invariants:
 *
 *   leader2      kill -9 the sharding leader, then kill -9 its successor as soon as it
 *                leads (a kill during the failover)
 *   redisstop    SIGSTOP the redis-server for 0.5–2 s, then SIGCONT
 *   cut          cut the leader off Redis (its proxy drops every connection and refuses
 *                new ones) for 2–3 s: it must stop leading before its lease ends, report
 *                /readyz 503, keep serving its local bus peers, answer the sharding admin
 *                API with 503 NOT_LEADER, and come back by itself when healed
 *   busKill      kill -9 an instance holding half the bus services while requests flow
 *
 * Invariants, checked throughout and after every step:
 * - never two owners of a shard (the CONTROLs' start/stop hooks, i.e. CONNECT/OFFLOAD and
 *   SHUTDOWN/fencing, never have one shard running on two CONTROLs at once);
 * - no shard unowned past the deadline: once the step's disruption is over, every shard is
 *   owned and CONNECTED (hooks and every live instance's admin view) within
 *   leaseTtl + heartbeatInterval + heartbeatGrace + 1 s;
 * - no bus reply delivered to the wrong service: each REPLY's source is the service the
 *   request went to, and carries that service's name and the request's id; errors
 *   (NO_ROUTE, TIMEOUT) are fine, a misdelivery is not.
 * - no acknowledged Clusterio instance lost: before each step a Clusterio control creates
 *   an instance on a random live instance; every acknowledged one must be in the shared
 *   store after every step, and listed by every live instance's admin API within 5 s.
 * - no acknowledged gamelist registration lost: before each step a game server registers
 *   on a random live instance; after every step each one whose socket is still open is on
 *   every live instance's list (cluster-gamelist.ts).
 */
import WebSocket from 'ws';
import { INSTANCES_NS } from '../../src/dialects/clusterio/world/registry.js';
import { RedisStore } from '../../src/store/redis.js';
import { config as instanceConfig, Control as ClusterioControl } from './crash.js';
import { GamelistChaos } from './cluster-gamelist.js';
import { MusterCluster, pollUntil, type Instance } from '../support/muster-cluster.js';
import { rng, SECRETS } from './server.js';

export const CLUSTER_STEPS = ['leader2', 'redisstop', 'cut', 'busKill'] as const;
export type ClusterStep = (typeof CLUSTER_STEPS)[number];

export interface StepRow {
  step: ClusterStep;
  /** ms from the end of the disruption until every shard was owned and connected again. */
  settledMs: number | undefined;
  requests: number;
  replies: number;
  notes: string;
}

export interface ClusterChaosResult {
  seed: number;
  rows: StepRow[];
  violations: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface BusService {
  name: string;
  inst: number;
  ws: WebSocket;
  id: string;
}

/** A bus peer that answers every request with its name and the request's id. */
export async function busService(base: string, name: string, inst: number): Promise<BusService> {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/bus`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.on('error', () => {});
  ws.send(JSON.stringify({ op: 1, data: { token: SECRETS.bus, name } }));
  const id = await new Promise<string>((resolve, reject) => {
    ws.once('message', (raw) => {
      const f = JSON.parse(String(raw)) as { op: number; data: { id: string } };
      if (f.op === 1) resolve(f.data.id);
      else reject(new Error(`bus identify of ${name}: ${String(raw)}`));
    });
  });
  ws.on('message', (raw) => {
    const f = JSON.parse(String(raw)) as { op: number; id?: string; expect_reply?: unknown };
    if (f.op === 0 && f.id !== undefined && f.expect_reply) ws.send(JSON.stringify({ op: 5, id: f.id, data: { me: name, req: f.id } }));
  });
  return { name, inst, ws, id };
}

export class ClusterChaos {
  readonly violations: string[] = [];
  readonly rows: StepRow[] = [];
  readonly services: BusService[] = [];
  #reqSeq = 0;
  /** Clusterio instance ids whose create_instance was acknowledged. */
  readonly clusterioAcked: number[] = [];
  #nextInstance = 1;
  readonly gamelist: GamelistChaos;

  constructor(
    readonly c: MusterCluster,
    readonly log: (line: string) => void,
  ) {
    this.gamelist = new GamelistChaos(c, (what) => this.violation(what));
  }

  get deadlineMs(): number {
    const t = this.c.timing;
    return t.leaseTtl + t.heartbeatInterval + t.heartbeatGrace + 1000;
  }

  violation(what: string): void {
    this.violations.push(what);
    this.log(`  VIOLATION: ${what}`);
  }

  /** Two bus services on each live instance (`svc-<inst>-<k>`). */
  async addServices(inst: Instance): Promise<void> {
    for (let k = 0; k < 2; k++) this.services.push(await busService(inst.server?.base as string, `svc-${inst.index}-${k}`, inst.index));
  }

  dropServices(inst: number): void {
    for (let k = this.services.length - 1; k >= 0; k--) {
      const s = this.services[k] as BusService;
      if (s.inst === inst) {
        s.ws.terminate();
        this.services.splice(k, 1);
      }
    }
  }

  /**
   * Requests from `from` to every other service, `rounds` times; checks every REPLY came
   * from the service asked. Resolves with (requests, replies).
   */
  async traffic(from: BusService, rounds: number, during?: () => Promise<void>): Promise<[number, number]> {
    const asked = new Map<string, BusService>();
    let replies = 0;
    const onMsg = (raw: WebSocket.RawData): void => {
      const f = JSON.parse(String(raw)) as { op: number; id?: string; source?: string; data?: { me?: string; req?: string; error?: string } };
      if (f.op !== 5 || f.id === undefined) return;
      const to = asked.get(f.id);
      if (!to) return;
      if (f.data?.error !== undefined && f.source === undefined) return; // NO_ROUTE, TIMEOUT: not a misdelivery
      replies++;
      if (f.source !== to.id || f.data?.me !== to.name || f.data?.req !== f.id) {
        this.violation(`bus reply ${f.id} meant for ${to.name} (${to.id}) came from ${f.source} as ${JSON.stringify(f.data)}`);
      }
    };
    from.ws.on('message', onMsg);
    const targets = this.services.filter((s) => s !== from);
    let n = 0;
    const send = async (): Promise<void> => {
      for (let r = 0; r < rounds; r++) {
        for (const to of targets) {
          const id = `r${++this.#reqSeq}`;
          asked.set(id, to);
          if (from.ws.readyState === WebSocket.OPEN) {
            from.ws.send(JSON.stringify({ op: 0, id, event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: to.id } }));
            n++;
          }
        }
        await sleep(20);
      }
    };
    await Promise.all([send(), during?.()]);
    // A PING round trip: what was answered has arrived.
    await sleep(300);
    from.ws.off('message', onMsg);
    return [n, replies];
  }

  /** Waits for every shard owned and connected; records a violation past the deadline. */
  async settle(step: ClusterStep, from: number): Promise<number | undefined> {
    const ok = await pollUntil(() => this.c.settled(), this.deadlineMs);
    const ms = Math.round(performance.now() - from);
    if (!ok) this.violation(`${step}: shards not all owned and connected ${this.deadlineMs} ms after the disruption: ${await this.unsettled()}`);
    return ok ? ms : undefined;
  }

  /** What keeps the fleet from being settled: shards without exactly one serving CONTROL, and each live instance's view of the others. */
  async unsettled(): Promise<string> {
    const parts: string[] = [];
    const hooks = [...Array(this.c.timing.shardCount).keys()].filter((id) => (this.c.owners.get(id)?.size ?? 0) !== 1);
    parts.push(`hooks: ${hooks.map((id) => `${id}:[${[...(this.c.owners.get(id) ?? [])].join(',')}]`).join(' ') || 'ok'}`);
    for (const inst of this.c.live) {
      const rows = await this.c.shards(inst, 2000);
      const bad = rows?.filter((r) => r.state !== 'connected' || r.owner === null || !this.c.owners.get(r.id)?.has(r.owner));
      parts.push(`${inst.id}: ${rows === undefined ? 'no leader answered' : bad?.length ? JSON.stringify(bad) : 'ok'}`);
    }
    parts.push(`controls at ${this.c.controls.map((k) => `${k.name}@${k.at ?? '-'}`).join(' ')}`);
    return parts.join('; ');
  }

  async leader(): Promise<Instance | undefined> {
    let found: Instance[] = [];
    await pollUntil(async () => (found = await this.c.leaders()).length === 1, 10_000);
    if (found.length > 1) this.violation(`two leaders at once: ${found.map((i) => i.id).join(', ')}`);
    return found[0];
  }

  /** Restarts dead instances and gives them their bus services back. */
  async heal(): Promise<void> {
    for (const inst of this.c.instances) {
      if (inst.server) continue;
      this.dropServices(inst.index);
      await this.c.boot(inst);
      await this.addServices(inst);
    }
  }

  /** A Clusterio control on a random live instance creates one instance; acknowledged ids are kept. */
  async clusterioCreate(rand: () => number): Promise<void> {
    const live = this.c.live;
    const inst = live[Math.floor(rand() * live.length)] as Instance;
    const ctl = await ClusterioControl.open((inst.server?.base as string).replace(/^http/, 'ws'));
    try {
      const id = this.#nextInstance++;
      const f = await ctl.request('create_instance_request', { serialized_config: instanceConfig(id, `chaos-${id}`) });
      if (f.data.error === undefined) this.clusterioAcked.push(id);
    } finally {
      ctl.close();
    }
  }

  /** Every acknowledged Clusterio instance is in the shared store. */
  async checkStored(step: ClusterStep): Promise<void> {
    const store = new RedisStore({ url: this.c.redis.url, prefix: this.c.prefix });
    try {
      const keys = new Set((await store.list(INSTANCES_NS)).map(([k]) => k));
      const lost = this.clusterioAcked.filter((id) => !keys.has(String(id)));
      if (lost.length > 0) this.violation(`${step}: acknowledged Clusterio instances missing from the store: ${lost.join(', ')}`);
    } finally {
      await store.close();
    }
    // The registry is one across instances: each live one lists them all.
    for (const inst of this.c.live) {
      const listed = async (): Promise<number[]> => {
        try {
          const r = await fetch(`${inst.server?.base}/api/v1/clusterio/instances`, { headers: { authorization: `Bearer ${SECRETS.admin}` }, signal: AbortSignal.timeout(2000) });
          const ids = new Set(((await r.json()) as Array<{ id: number }>).map((i) => i.id));
          return this.clusterioAcked.filter((id) => !ids.has(id));
        } catch {
          return this.clusterioAcked;
        }
      };
      if (await pollUntil(async () => (await listed()).length === 0, 5_000)) continue;
      this.violation(`${step}: acknowledged Clusterio instances not listed by ${inst.id}: ${(await listed()).join(', ')}`);
    }
  }

  async run(step: ClusterStep, rand: () => number): Promise<void> {
    await this.clusterioCreate(rand);
    await this.gamelist.register(rand);
    const row: StepRow = { step, settledMs: undefined, requests: 0, replies: 0, notes: '' };
    const t = this.c.timing;
    switch (step) {
      case 'leader2': {
        const first = await this.leader();
        if (!first) return this.violation('leader2: no leader to kill');
        await this.c.kill9(first);
        const second = await this.leader();
        if (!second) return this.violation('leader2: nobody took over');
        await sleep(Math.floor(rand() * 300));
        await this.c.kill9(second);
        const at = performance.now();
        row.settledMs = await this.settle(step, at);
        row.notes = `killed ${first.id}, then ${second.id}`;
        break;
      }
      case 'redisstop': {
        const ms = 500 + Math.floor(rand() * 1500);
        this.c.redis.signal('SIGSTOP');
        await sleep(ms);
        this.c.redis.signal('SIGCONT');
        row.settledMs = await this.settle(step, performance.now());
        row.notes = `redis stopped ${ms} ms`;
        break;
      }
      case 'cut': {
        const target = await this.leader();
        if (!target?.redisProxy) return this.violation('cut: no leader to cut off');
        const ms = 2000 + Math.floor(rand() * 1000);
        const local = this.services.filter((s) => s.inst === target.index);
        const cutWall = Date.now();
        target.redisProxy.cut();
        const cutAt = performance.now();
        // It stops leading before its lease ends: the time of its own log line says when.
        const deposed = (): number | undefined => this.c.loggedAt(target, 'cluster: this instance no longer leads the sharding fleet', cutWall);
        await pollUntil(() => deposed() !== undefined, t.leaseTtl + 2000);
        const stoppedMs = (deposed() ?? Number.POSITIVE_INFINITY) - cutWall;
        if (stoppedMs >= t.leaseTtl) this.violation(`cut: ${target.id} still led ${stoppedMs} ms after it was cut off (lease ${t.leaseTtl} ms)`);
        // Not ready, and the sharding admin API answers 503 NOT_LEADER.
        if (!(await pollUntil(async () => (await this.c.readyz(target)) === 503, t.presenceTtl + 1000))) this.violation(`cut: ${target.id} /readyz did not turn 503`);
        const ask = await fetch(`${target.server?.base}/api/v1/sharding/shards`, { headers: { authorization: `Bearer ${SECRETS.admin}` } });
        const body = (await ask.json()) as { error?: string };
        if (ask.status !== 503 || body.error !== 'NOT_LEADER') this.violation(`cut: ${target.id} admin shards answered ${ask.status} ${JSON.stringify(body)}`);
        // Local bus peers still talk to each other.
        const [a, b] = local;
        if (!a || !b) this.violation(`cut: ${target.id} has no two local bus services`);
        else {
          const [req, rep] = await this.trafficTo(a, b);
          row.requests += req;
          row.replies += rep;
          if (rep !== req || req === 0) this.violation(`cut: local bus requests on ${target.id} answered ${rep}/${req}`);
        }
        await sleep(Math.max(0, ms - (performance.now() - cutAt)));
        target.redisProxy.heal();
        const healedAt = performance.now();
        if (!(await pollUntil(async () => (await this.c.readyz(target)) === 200, this.deadlineMs))) this.violation(`cut: ${target.id} /readyz not 200 again after the cut healed`);
        row.settledMs = await this.settle(step, healedAt);
        row.notes = `${target.id} cut off ${ms} ms; stopped leading after ${stoppedMs} ms`;
        break;
      }
      case 'busKill': {
        const live = this.c.live;
        const victim = live[Math.floor(rand() * live.length)] as Instance;
        const from = this.services.find((s) => s.inst !== victim.index);
        if (!from) return this.violation('busKill: no requester');
        const [req, rep] = await this.traffic(from, 10, async () => {
          await sleep(100 + Math.floor(rand() * 100));
          await this.c.kill9(victim);
          this.dropServices(victim.index);
        });
        row.requests += req;
        row.replies += rep;
        row.settledMs = await this.settle(step, performance.now());
        row.notes = `killed ${victim.id} mid-traffic`;
        break;
      }
    }
    await this.heal();
    await this.settle(step, performance.now());
    await this.checkStored(step);
    await this.gamelist.check(step);
    if (this.c.doubleOwned.length > 0) this.violation(`${step}: a shard had two owners: ${JSON.stringify(this.c.doubleOwned.splice(0))}`);
    this.rows.push(row);
    this.log(`  ${step}: settled in ${row.settledMs ?? '-'} ms; bus ${row.replies}/${row.requests}; clusterio instances stored ${this.clusterioAcked.length}; game servers listed ${this.gamelist.held}; ${row.notes}`);
  }

  /** Requests from a to b only. */
  async trafficTo(a: BusService, b: BusService): Promise<[number, number]> {
    const saved = this.services.splice(0);
    this.services.push(a, b);
    try {
      return await this.traffic(a, 5);
    } finally {
      this.services.splice(0, this.services.length, ...saved);
    }
  }
}

function shuffle<T>(xs: T[], rand: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
  return xs;
}

/** Runs `steps` seeded steps (each kind once per cycle, in a seeded order). */
export async function clusterChaos(seed: number, steps: number, log: (line: string) => void = () => {}): Promise<ClusterChaosResult> {
  const rand = rng(seed);
  const c = await MusterCluster.start({ instances: 3, controls: 6, viaProxy: true, prefix: `cc${seed}:`, logLevel: 'info' });
  const chaos = new ClusterChaos(c, log);
  try {
    for (const inst of c.instances) await chaos.addServices(inst);
    if (!(await pollUntil(() => c.settled(), 20_000))) chaos.violation('the fleet never settled at start');
    let cycle: ClusterStep[] = [];
    for (let i = 0; i < steps; i++) {
      if (cycle.length === 0) cycle = shuffle([...CLUSTER_STEPS], rand);
      await chaos.run(cycle.shift() as ClusterStep, rand);
    }
  } finally {
    for (const s of chaos.services) s.ws.terminate();
    chaos.gamelist.close();
    await c.close();
  }
  return { seed, rows: chaos.rows, violations: chaos.violations };
}
