/**
 * Cluster mode with real processes, for the end-to-end test and the cluster chaos runner:
 * a private redis-server, N built Muster processes on it (each its own instanceId, data
 * dir and config file), and sharding CONTROLs (the `ShardingControl` client) each behind
 * a TCP proxy of its own that sends every new connection to its preferred live instance,
 * or to the next live one: when an instance dies, its CONTROLs reconnect elsewhere, as
 * they would behind a load balancer.
 *
 * What it watches:
 * - `owners`: which CONTROL serves which shard, from the client's start and stop hooks
 *   (CONNECT/OFFLOAD/unfence start, SHUTDOWN/fence/close stop); a shard served by two
 *   CONTROLs at once is recorded in `doubleOwned`.
 * - `shards(i)`: GET /api/v1/sharding/shards on instance i (the leader's view, asked
 *   over the cluster from any instance).
 * - `leaders()`: which live instances report `muster_sharding_leader 1` on /metrics.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { ShardingControl } from '../../src/client/sharding.js';
import { expand, type Range } from '../../src/protocols/sharding/ranges.js';
import { SECRETS, startServer, type RunningServer } from '../chaos/server.js';
import { startRedisServer, type RedisServer } from './redis-server.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

export interface ClusterTiming {
  leaseTtl: number;
  presenceTtl: number;
  shardCount: number;
  heartbeatInterval: number;
  heartbeatGrace: number;
  reconnectWindow: number;
  fenceMargin: number;
}

/** Short but valid: leaseTtl + 1 s < heartbeatGrace − fenceMargin (README, "Cluster mode"). */
export const FAST: ClusterTiming = {
  leaseTtl: 1500,
  presenceTtl: 1000,
  shardCount: 12,
  heartbeatInterval: 1000,
  heartbeatGrace: 4000,
  reconnectWindow: 4000,
  fenceMargin: 1000,
};

export interface Instance {
  readonly index: number;
  readonly id: string;
  server: RunningServer | undefined;
  /** Set when the instance reaches Redis through a proxy (`viaProxy`). */
  readonly redisProxy: TcpProxy | undefined;
  readonly dataDir: string;
}

export interface Control {
  readonly name: string;
  readonly preferred: number;
  readonly client: ShardingControl;
  readonly proxy: TcpProxy;
  /** Instance index the current socket went to. */
  at: number | undefined;
  /** When the proxy last sent a connection to an instance (ms, performance.now()). */
  connectedAt: number;
  identifiedAt: number;
  serving: Set<number>;
}

export interface ShardRow {
  id: number;
  owner: string | null;
  state: string;
}

export interface ClusterOptions {
  instances?: number;
  controls?: number;
  timing?: ClusterTiming;
  /** Instances reach Redis through a TCP proxy each (to cut one off). */
  viaProxy?: boolean;
  /** Extra per-dialect config for every instance. */
  dialectConfig?: Parameters<typeof startServer>[0]['dialectConfig'];
  prefix?: string;
  /** Log level of the instances (default warn). */
  logLevel?: string;
}

const now = (): number => performance.now();

export class MusterCluster {
  readonly instances: Instance[] = [];
  readonly controls: Control[] = [];
  readonly doubleOwned: Array<{ shard: number; owners: string[]; at: number }> = [];
  /** Shard id → CONTROLs serving it (from the hooks). */
  readonly owners = new Map<number, Set<string>>();
  readonly timing: ClusterTiming;
  /** The store and cluster prefix the instances share. */
  readonly prefix: string;
  readonly #root: string;
  readonly #opts: ClusterOptions;

  private constructor(
    readonly redis: RedisServer,
    opts: ClusterOptions,
  ) {
    this.#opts = opts;
    this.timing = opts.timing ?? FAST;
    this.prefix = opts.prefix ?? 'mc:';
    this.#root = mkdtempSync(join(tmpdir(), 'muster-cluster-'));
  }

  static async start(opts: ClusterOptions = {}): Promise<MusterCluster> {
    const redis = await startRedisServer();
    const c = new MusterCluster(redis, opts);
    try {
      for (let i = 0; i < (opts.instances ?? 3); i++) await c.#addInstance(i);
      for (let i = 0; i < (opts.controls ?? 6); i++) await c.#addControl(i);
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  get live(): Instance[] {
    return this.instances.filter((i) => i.server !== undefined);
  }

  async #addInstance(index: number): Promise<void> {
    const redisProxy = this.#opts.viaProxy ? await startTcpProxy(() => this.redis.port) : undefined;
    const inst: Instance = { index, id: `inst-${index}`, server: undefined, redisProxy, dataDir: join(this.#root, `data-${index}`) };
    this.instances.push(inst);
    await this.boot(inst);
  }

  /** Starts (or restarts) an instance's process. */
  async boot(inst: Instance): Promise<void> {
    const t = this.timing;
    const url = inst.redisProxy ? `redis://127.0.0.1:${inst.redisProxy.port}` : this.redis.url;
    inst.server = await startServer({
      dataDir: inst.dataDir,
      ...(this.#opts.logLevel ? { logLevel: this.#opts.logLevel } : {}),
      extra: {
        instanceId: inst.id,
        store: { kind: 'redis', url, prefix: this.prefix },
        cluster: { prefix: this.prefix, presenceTtl: t.presenceTtl, leaseTtl: t.leaseTtl },
      },
      dialectConfig: {
        ...this.#opts.dialectConfig,
        sharding: {
          shardCount: t.shardCount,
          heartbeatInterval: t.heartbeatInterval,
          heartbeatGrace: t.heartbeatGrace,
          reconnectWindow: t.reconnectWindow,
          fenceMargin: t.fenceMargin,
          startupDelay: 20_000,
          expectedControls: this.#opts.controls ?? 6,
          connectTimeout: 10_000,
          ...this.#opts.dialectConfig?.sharding,
        },
      },
    });
  }

  /** kill -9; resolves once the process is gone. */
  async kill9(inst: Instance): Promise<void> {
    const s = inst.server;
    if (!s) return;
    inst.server = undefined;
    s.kill9();
    await s.exited;
  }

  /** The live instance a new connection of a CONTROL preferring `preferred` goes to. */
  route(preferred: number): number | undefined {
    for (let k = 0; k < this.instances.length; k++) {
      const inst = this.instances[(preferred + k) % this.instances.length] as Instance;
      if (inst.server) return inst.index;
    }
    return undefined;
  }

  async #addControl(i: number): Promise<void> {
    const name = `c${i}`;
    const preferred = i % this.instances.length;
    const ctl: Partial<Control> & { serving: Set<number> } = { name, preferred, at: undefined, connectedAt: 0, identifiedAt: 0, serving: new Set() };
    const proxy = await startTcpProxy(() => {
      const at = this.route(preferred);
      ctl.at = at;
      ctl.connectedAt = now();
      if (at === undefined) return undefined;
      const base = this.instances[at]?.server?.base;
      return base ? Number(new URL(base).port) : undefined;
    });
    const client = new ShardingControl({
      url: `ws://127.0.0.1:${proxy.port}/sharding`,
      authorization: SECRETS.sharding,
      name,
      WebSocket: WebSocket as never,
      reconnect: { minMs: 50, maxMs: 300 },
      haltedRetryDelay: 200,
      start: (ranges: Range[]) => {
        for (const id of expand(ranges, this.timing.shardCount)) {
          ctl.serving.add(id);
          const set = this.owners.get(id) ?? new Set<string>();
          set.add(name);
          this.owners.set(id, set);
          if (set.size > 1) this.doubleOwned.push({ shard: id, owners: [...set], at: now() });
        }
      },
      stop: (ranges: Range[]) => {
        for (const id of expand(ranges, this.timing.shardCount)) {
          ctl.serving.delete(id);
          this.owners.get(id)?.delete(name);
        }
      },
    });
    client.on('error', () => {});
    client.on('identified', () => (ctl.identifiedAt = now()));
    Object.assign(ctl, { client, proxy });
    this.controls.push(ctl as Control);
    await client.connect();
  }

  async #json<T>(inst: Instance, path: string, timeoutMs = 2000): Promise<{ status: number; body: T | undefined }> {
    const base = inst.server?.base;
    if (!base) return { status: 0, body: undefined };
    try {
      const r = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${SECRETS.admin}` }, signal: AbortSignal.timeout(timeoutMs) });
      const text = await r.text();
      let body: T | undefined;
      try {
        body = JSON.parse(text) as T;
      } catch {
        body = undefined;
      }
      return { status: r.status, body };
    } catch {
      return { status: 0, body: undefined };
    }
  }

  /**
   * The leader's shard view, asked of instance `inst` (undefined while no leader answers).
   * An ask sent while there is no leader gets no answer until its 5 s timeout (503
   * NOT_LEADER), so samples give up after `timeoutMs` and the next one asks again.
   */
  async shards(inst: Instance, timeoutMs = 300): Promise<ShardRow[] | undefined> {
    const r = await this.#json<ShardRow[]>(inst, '/api/v1/sharding/shards', timeoutMs);
    return r.status === 200 && Array.isArray(r.body) ? r.body : undefined;
  }

  async readyz(inst: Instance): Promise<number> {
    return (await this.#json<unknown>(inst, '/readyz')).status;
  }

  /**
   * When (its log's `time`, ms since the epoch) instance `inst` last logged `msg` at or
   * after `since`; needs `logLevel: 'info'` for info lines.
   */
  loggedAt(inst: Instance, msg: string, since: number): number | undefined {
    let at: number | undefined;
    for (const line of inst.server?.stdout().split('\n') ?? []) {
      if (!line.includes(msg)) continue;
      try {
        const rec = JSON.parse(line) as { time?: number; msg?: string };
        if (rec.msg === msg && typeof rec.time === 'number' && rec.time >= since) at = rec.time;
      } catch {
        // not a log line
      }
    }
    return at;
  }

  /** Live instances reporting `muster_sharding_leader 1`, sampled concurrently. */
  async leaders(): Promise<Instance[]> {
    const live = this.live;
    const res = await Promise.all(
      live.map(async (inst) => {
        try {
          const r = await fetch(`${inst.server?.base}/metrics`, { signal: AbortSignal.timeout(2000) });
          return /^muster_sharding_leader 1$/m.test(await r.text());
        } catch {
          return false;
        }
      }),
    );
    return live.filter((_, k) => res[k]);
  }

  /** Every shard served by exactly one CONTROL (hooks), and owned and connected in every live instance's view. */
  async settled(): Promise<boolean> {
    for (let id = 0; id < this.timing.shardCount; id++) if ((this.owners.get(id)?.size ?? 0) !== 1) return false;
    for (const inst of this.live) {
      const rows = await this.shards(inst);
      if (!rows || rows.length !== this.timing.shardCount) return false;
      for (const r of rows) if (r.state !== 'connected' || r.owner === null || !this.owners.get(r.id)?.has(r.owner)) return false;
    }
    return true;
  }

  async close(): Promise<void> {
    await Promise.all(this.controls.map((c) => c.client.close()));
    await Promise.all(this.controls.map((c) => c.proxy.close()));
    await Promise.all(this.instances.map((i) => i.server?.stop()));
    await Promise.all(this.instances.map((i) => i.redisProxy?.close()));
    await this.redis.close();
    rmSync(this.#root, { recursive: true, force: true });
  }
}

/** Polls `cond` (each poll a round trip) until true or `ms` pass; returns whether it came true. */
export async function pollUntil(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = now() + ms;
  while (now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return await cond();
}
