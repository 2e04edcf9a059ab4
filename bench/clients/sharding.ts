/**
 * P4 / P5 load generator: simulated CONTROLs for the sharding dialect, each a real
 * `ShardingControl` (src/client/sharding.ts) on its own socket, all in this process.
 *
 * fleet {url, key, n, shardCount, timeoutMs}
 *     P4: connects n CONTROLs (features ["identify-queue"]). Their start hook asks
 *     identifySlot for every shard it is given and counts a shard as connected once
 *     granted. Answers when every shard is connected, with the times (epoch ms) at
 *     which the last CONTROL was IDENTIFIED, the first CONNECT arrived, and the last
 *     shard was granted, and the shortest gap between two grants of one bucket as they
 *     arrived at the CONTROLs (where a shard would send its IDENTIFY to the gateway).
 * start {url, key, n, heartbeatGrace, reconnectWindow, fenceMargin}
 *     P5: connects n CONTROLs whose start hook connects every shard at once.
 * stable {shardCount, timeoutMs}
 *     P5: waits until every CONTROL is identified, none is muted, and every shard is
 *     connected on exactly one of them.
 * fail {rep, timeoutMs}
 *     P5: picks a CONTROL that serves shards and stops its heartbeats (the socket stays
 *     open, as with a hung process), then waits for OFFLOAD frames `from` it covering
 *     all its shards. Answers with its heartbeat deadline (last HEARTBEAT sent +
 *     interval + grace) and the arrival of the last OFFLOAD needed, both epoch ms.
 * close
 */
import type WebSocket from 'ws';
import { ShardingControl } from '../../src/client/sharding.js';
import { emit, serve } from '../lib/ipc.js';
import { eachShardOnce, ids, until, type Range } from './fleet.js';

interface Ctl {
  c: ShardingControl;
  muted: boolean;
  lastHeartbeatAt: number;
  identifiedAt: number;
  offloads: Array<{ at: number; from: string | undefined; shards: number[] }>;
}

let ctls: Ctl[] = [];
let firstConnectAt = Number.NaN;
let lastGrantAt = Number.NaN;
let granted = 0;
let heartbeatInterval = 0;

/** Wraps the socket's send so heartbeats can be stopped and the last one timed. */
function tap(ctl: Ctl, ws: WebSocket | undefined): void {
  if (!ws) return;
  const send = ws.send.bind(ws) as (data: unknown, ...rest: unknown[]) => void;
  (ws as unknown as { send: (data: unknown, ...rest: unknown[]) => void }).send = (data: unknown, ...rest: unknown[]) => {
    if (typeof data === 'string' && data.length < 100 && (JSON.parse(data) as { o?: number }).o === 9) {
      if (ctl.muted) return;
      ctl.lastHeartbeatAt = Date.now();
    }
    send(data, ...rest);
  };
}

function make(i: number, url: string, key: string, extra: Partial<ConstructorParameters<typeof ShardingControl>[0]>, start: (ctl: Ctl, ranges: Range[], signal: AbortSignal) => Promise<void>): Ctl {
  const ctl: Ctl = { c: undefined as unknown as ShardingControl, muted: false, lastHeartbeatAt: Number.NaN, identifiedAt: Number.NaN, offloads: [] };
  ctl.c = new ShardingControl({
    url,
    authorization: key,
    name: `control-${i}`,
    features: ['identify-queue'],
    reconnect: { minMs: 50, maxMs: 200 },
    start: (ranges, ctx) => start(ctl, ranges as Range[], ctx.signal),
    stop: () => undefined,
    ...extra,
  });
  ctl.c.on('initialise', (d: { heartbeat_interval: number }) => {
    heartbeatInterval = d.heartbeat_interval;
    tap(ctl, ctl.c.socket);
  });
  ctl.c.on('identified', () => {
    ctl.identifiedAt = Date.now();
  });
  ctl.c.on('connect', () => {
    if (!(firstConnectAt <= Date.now())) firstConnectAt = Date.now();
  });
  ctl.c.on('offload', (d: { shards: Range[]; from?: string }) => {
    ctl.offloads.push({ at: Date.now(), from: d.from, shards: ids(d.shards) });
  });
  ctl.c.on('close', () => {
    ctl.muted = false;
  });
  ctl.c.on('error', (err: Error) => console.error(`control-${i}: ${err.message}`));
  return ctl;
}

serve({
  fleet: async (p: { url: string; key: string; n: number; shardCount: number; timeoutMs: number }) => {
    const arrivals = new Map<number, number[]>();
    granted = 0;
    firstConnectAt = Number.NaN;
    lastGrantAt = Number.NaN;
    ctls = Array.from({ length: p.n }, (_, i) =>
      make(i, p.url, p.key, {}, async (ctl, ranges, signal) => {
        await Promise.all(
          ids(ranges).map((id) =>
            ctl.c.identifySlot(id, signal).then(() => {
              granted++;
              lastGrantAt = Date.now();
              const bucket = id % (ctl.c.initialise?.max_concurrency ?? 1);
              arrivals.set(bucket, [...(arrivals.get(bucket) ?? []), performance.timeOrigin + performance.now()]);
            }),
          ),
        );
      }),
    );
    await Promise.all(ctls.map((c) => c.c.connect()));
    await until(() => granted >= p.shardCount, p.timeoutMs, `${granted} of ${p.shardCount} shards granted`);
    const identifiedAt = Math.max(...ctls.map((c) => c.identifiedAt));
    const gaps: number[] = [];
    for (const list of arrivals.values()) {
      list.sort((a, b) => a - b);
      for (let i = 1; i < list.length; i++) gaps.push((list[i] as number) - (list[i - 1] as number));
    }
    return { identifiedAt, firstConnectAt, lastGrantAt, granted, gaps };
  },
  start: async (p: { url: string; key: string; n: number; heartbeatGrace: number; reconnectWindow: number; fenceMargin: number }) => {
    ctls = Array.from({ length: p.n }, (_, i) =>
      make(i, p.url, p.key, { heartbeatGrace: p.heartbeatGrace, reconnectWindow: p.reconnectWindow, fenceMargin: p.fenceMargin }, async () => undefined),
    );
    await Promise.all(ctls.map((c) => c.c.connect()));
    return true;
  },
  stable: async (p: { shardCount: number; timeoutMs: number }) => {
    const ok = (): boolean => {
      if (ctls.some((c) => c.muted || !c.c.identified)) return false;
      return eachShardOnce(ctls.map((c) => c.c), p.shardCount);
    };
    await until(ok, p.timeoutMs, 'fleet stable');
    return true;
  },
  fail: async (p: { rep: number; timeoutMs: number; heartbeatGrace: number }) => {
    const serving = ctls.filter((c) => c.c.connected.length > 0);
    const victim = serving[p.rep % serving.length];
    if (!victim) throw new Error('no CONTROL serves shards');
    // Mute just after a heartbeat went out, so the deadline is a whole interval + grace away.
    const before = victim.lastHeartbeatAt;
    await until(() => Number.isFinite(victim.lastHeartbeatAt) && victim.lastHeartbeatAt !== before, heartbeatInterval * 4, `a heartbeat from ${victim.c.name}`);
    victim.muted = true;
    const lastHb = victim.lastHeartbeatAt;
    const deadline = lastHb + heartbeatInterval + p.heartbeatGrace;
    const lost = new Set(ids(victim.c.connected as Range[]));
    const shards = lost.size;
    const name = victim.c.name;
    for (const c of ctls) c.offloads = [];
    let doneAt = Number.NaN;
    const recipients = new Set<string>();
    await until(
      () => {
        for (const c of ctls) {
          for (const o of c.offloads) {
            if (o.from !== name) continue;
            recipients.add(c.c.name);
            for (const id of o.shards) if (lost.delete(id) && lost.size === 0) doneAt = o.at;
          }
          c.offloads = [];
        }
        return lost.size === 0;
      },
      p.timeoutMs,
      `OFFLOAD of ${name}'s shards`,
    );
    return { victim: name, shards, deadline, offloadAt: doneAt, latencyMs: doneAt - deadline, recipients: recipients.size };
  },
  close: async () => {
    await Promise.all(ctls.map((c) => c.c.close()));
    ctls = [];
    return true;
  },
});
emit('ready', {});
