import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busService, type BusService } from '../chaos/cluster.js';
import { ensureBuilt, SECRETS } from '../chaos/server.js';
import { MusterCluster, pollUntil, type Instance } from '../support/muster-cluster.js';
import { haveRedisServer } from '../support/redis-server.js';

/**
 * An instance cut off Redis (a TCP proxy between it and Redis drops every connection and
 * refuses new ones), with two built Muster processes: it stops leading the sharding fleet
 * before its lease ends and the other takes over; it answers /readyz 503; it keeps serving
 * its local bus peers; what needs the cluster is refused with the documented answer (a
 * bus request to a service on the other instance gets TIMEOUT at requestTimeout, the
 * sharding admin API 503 NOT_LEADER); healed, it is ready again by itself and every shard
 * is owned and connected.
 */

let cluster: MusterCluster;
const services: BusService[] = [];

beforeAll(async () => {
  ensureBuilt();
  cluster = await MusterCluster.start({ instances: 2, controls: 2, viaProxy: true, logLevel: 'info', dialectConfig: { bus: { requestTimeout: 1000 } } });
  for (const inst of cluster.instances) for (const k of [0, 1]) services.push(await busService(inst.server?.base as string, `svc-${inst.index}-${k}`, inst.index));
}, 60_000);

afterAll(async () => {
  for (const s of services) s.ws.terminate();
  await cluster?.close();
}, 30_000);

/** Sends a request from `from` to `to`; resolves with the REPLY frame. */
function ask(from: BusService, to: BusService, id: string): Promise<{ op: number; id: string; source?: string; data: Record<string, unknown> }> {
  return new Promise((resolve) => {
    const on = (raw: WebSocket.RawData): void => {
      const f = JSON.parse(String(raw)) as { op: number; id: string; source?: string; data: Record<string, unknown> };
      if (f.op === 5 && f.id === id) {
        from.ws.off('message', on);
        resolve(f);
      }
    };
    from.ws.on('message', on);
    from.ws.send(JSON.stringify({ op: 0, id, event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: to.id } }));
  });
}

describe.skipIf(!haveRedisServer)('an instance cut off Redis', () => {
  it('stops leading before its lease ends, is not ready, serves local peers, refuses cluster work, and recovers by itself', async () => {
    const t = cluster.timing;
    expect(await pollUntil(() => cluster.settled(), 20_000)).toBe(true);
    let leaders: Instance[] = [];
    expect(await pollUntil(async () => (leaders = await cluster.leaders()).length === 1, 10_000)).toBe(true);
    const cut = leaders[0] as Instance;
    const other = cluster.instances.find((i) => i !== cut) as Instance;
    const [a, b] = services.filter((s) => s.inst === cut.index) as [BusService, BusService];
    const far = services.find((s) => s.inst === other.index) as BusService;
    expect(await ask(a, far, 'before')).toMatchObject({ source: far.id, data: { me: far.name } });

    const cutWall = Date.now();
    cut.redisProxy?.cut();
    // It stops counting itself leader before its lease can end in Redis (its own log line's
    // time, not a sample's, which would add the scrape's latency); the other takes over.
    const deposed = (): number | undefined => cluster.loggedAt(cut, 'cluster: this instance no longer leads the sharding fleet', cutWall);
    expect(await pollUntil(() => deposed() !== undefined, t.leaseTtl + 2000)).toBe(true);
    expect((deposed() as number) - cutWall).toBeLessThan(t.leaseTtl);
    expect(await pollUntil(async () => (await cluster.leaders()).includes(other), t.leaseTtl + 2000)).toBe(true);
    expect(await cluster.readyz(cut)).toBe(503);
    expect(await cluster.readyz(other)).toBe(200);
    // Local peers are served; a request to the other instance times out; the sharding admin API says NOT_LEADER.
    expect(await ask(a, b, 'local')).toMatchObject({ source: b.id, data: { me: b.name, req: 'local' } });
    expect(await ask(a, far, 'remote')).toEqual({ op: 5, id: 'remote', data: { error: 'TIMEOUT' } });
    const res = await fetch(`${cut.server?.base}/api/v1/sharding/shards`, { headers: { authorization: `Bearer ${SECRETS.admin}` } });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: 'NOT_LEADER' });
    // No shard got a second owner meanwhile (the CONTROL on the cut instance has not fenced: the cut is shorter than its ACK fence).
    expect(cluster.doubleOwned).toEqual([]);

    cut.redisProxy?.heal();
    expect(await pollUntil(async () => (await cluster.readyz(cut)) === 200, 10_000)).toBe(true);
    expect(await pollUntil(() => cluster.settled(), t.leaseTtl + t.heartbeatInterval + t.heartbeatGrace + 1000)).toBe(true);
    expect(await pollUntil(async () => (await ask(a, far, `after-${Date.now()}`)).source === far.id, 5000)).toBe(true);
    expect(cluster.doubleOwned).toEqual([]);
  }, 60_000);
});
