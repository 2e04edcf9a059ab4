import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haveRedisServer } from '../support/redis-server.js';
import { MusterCluster, pollUntil, type Instance } from '../support/muster-cluster.js';
import { RawPeer } from '../support/server.js';
import { ensureBuilt, SECRETS } from '../chaos/server.js';

/**
 * The admin API across two real Muster processes on one Redis (A = inst-0, B = inst-1):
 * a bus service connected to B is listed and counted by A, kicked through A (closed by B
 * with the bus's goodbye, and logged by B with who asked); the bus admin lists of either
 * instance show both instances' services and groups; and while Redis is down a kick
 * through A of a peer on B is answered 503 UNAVAILABLE and the lists name B missing.
 */

let cluster: MusterCluster;
const auth = { authorization: `Bearer ${SECRETS.admin}` };

beforeAll(async () => {
  ensureBuilt();
  cluster = await MusterCluster.start({ instances: 2, controls: 0, logLevel: 'info' });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
}, 30_000);

function inst(i: number): Instance {
  return cluster.instances[i] as Instance;
}

async function api(i: number, path: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const r = await fetch(`${inst(i).server?.base}${path}`, { ...init, headers: auth, signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown>, headers: r.headers };
}

/** A bus service named `name` on instance `i`, identified (in `groups`). */
async function busService(i: number, name: string, groups?: string[]): Promise<RawPeer> {
  const p = await RawPeer.open(`${inst(i).server?.ws}/bus`);
  p.ws.send(JSON.stringify({ op: 1, data: { token: SECRETS.bus, name, ...(groups ? { groups } : {}) } }));
  await p.next();
  return p;
}

interface StatusBody {
  connections: Record<string, number>;
  instances: Array<{ id: string; answered: boolean; connections?: Record<string, number> }>;
}

describe.skipIf(!haveRedisServer)('the admin API across two Muster processes', () => {
  it('status and lists on A count and show a peer on B; a kick through A closes it on B', async () => {
    const peer = await busService(1, 'svc-on-b');
    // A finds B within a heartbeat of its presence (presenceTtl / 3).
    let status: StatusBody | undefined;
    const seen = await pollUntil(async () => {
      status = (await api(0, '/api/v1/status')).body as unknown as StatusBody;
      return status.instances.length === 2 && status.connections.bus === 1;
    }, 10_000);
    expect(seen).toBe(true);
    expect(status?.instances).toEqual([
      expect.objectContaining({ id: 'inst-0', answered: true, connections: expect.objectContaining({ bus: 0 }) }),
      expect.objectContaining({ id: 'inst-1', answered: true, connections: expect.objectContaining({ bus: 1 }) }),
    ]);

    const list = await api(0, '/api/v1/connections');
    expect(list.headers.get('muster-instances')).toBe('inst-0, inst-1');
    expect(list.headers.get('muster-instances-missing')).toBeNull();
    const rows = list.body as unknown as Array<{ id: string; identity: string; instance: string }>;
    const row = rows.find((r) => r.identity === 'svc-on-b');
    expect(row?.instance).toBe('inst-1');
    const peers = (await api(0, '/api/v1/peers?dialect=bus')).body as { counts: Record<string, number>; peers: Array<{ id: string }>; instances: unknown };
    expect(peers.counts.bus).toBe(1);
    expect(peers.peers.map((p) => p.id)).toEqual([row?.id]);
    expect(peers.instances).toEqual([{ id: 'inst-0', answered: true }, { id: 'inst-1', answered: true }]);

    const since = Date.now();
    const kick = await api(0, `/api/v1/connections/${row?.id}?reason=load%20test`, { method: 'DELETE' });
    expect(kick.status).toBe(200);
    expect(kick.body).toEqual({ kicked: row?.id, instance: 'inst-1' });
    const closed = await peer.closed;
    expect(closed.code).toBe(1008);
    // The bus's goodbye came first: DISCONNECT with reason KICKED.
    expect(peer.frames.some((f) => f.includes('KICKED'))).toBe(true);
    expect(cluster.loggedAt(inst(1), 'bus: kicked by an operator', since)).toBeDefined();
    const line = inst(1)
      .server?.stdout()
      .split('\n')
      .find((l) => l.includes('"admin.kick"'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ event: 'admin.kick', conn: row?.id, identity: 'svc-on-b', by: expect.stringMatching(/via inst-0$/), note: 'load test' });

    const again = await api(0, `/api/v1/connections/${row?.id}`, { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect(again.body).toMatchObject({ error: 'NOT_FOUND' });
  }, 30_000);

  it("the bus admin lists on either instance show every instance's services and groups, each row with its instance", async () => {
    const onA = await busService(0, 'bus-a', ['jobs']);
    const onB = await busService(1, 'bus-b', ['jobs', 'only-b']);
    type Svc = { id: string; name: string; groups: string[]; remoteAddress: string; instance: string };
    let services: Svc[] = [];
    const both = await pollUntil(async () => {
      services = (await api(1, '/api/v1/bus/services')).body as unknown as Svc[];
      return services.length === 2;
    }, 10_000);
    expect(both).toBe(true);
    // The instance asked first, then the others by id.
    expect(services).toEqual([
      expect.objectContaining({ name: 'bus-b', groups: ['jobs', 'only-b'], remoteAddress: '127.0.0.1', instance: 'inst-1' }),
      expect.objectContaining({ name: 'bus-a', groups: ['jobs'], remoteAddress: '127.0.0.1', instance: 'inst-0' }),
    ]);
    const list = await api(0, '/api/v1/bus/services');
    expect([list.headers.get('muster-instances'), list.headers.get('muster-instances-missing')]).toEqual(['inst-0, inst-1', null]);
    expect((list.body as unknown as Svc[]).map((s) => [s.name, s.instance])).toEqual([
      ['bus-a', 'inst-0'],
      ['bus-b', 'inst-1'],
    ]);
    const [idA, idB] = ['bus-a', 'bus-b'].map((n) => services.find((s) => s.name === n)?.id);
    const groups = [
      { name: 'jobs', members: [idA], instance: 'inst-0' },
      { name: 'jobs', members: [idB], instance: 'inst-1' },
      { name: 'only-b', members: [idB], instance: 'inst-1' },
    ];
    for (const i of [0, 1]) expect((await api(i, '/api/v1/bus/groups')).body).toEqual(groups);
    onA.close();
    onB.close();
    expect(await pollUntil(async () => ((await api(0, '/api/v1/bus/services')).body as unknown as Svc[]).length === 0, 10_000)).toBe(true);
  }, 30_000);

  it('with Redis stopped, a kick through A of a peer on B is 503 UNAVAILABLE; a peer on A is still kicked', async () => {
    const onB = await busService(1, 'svc-b2');
    const onA = await busService(0, 'svc-a2');
    let rows: Array<{ id: string; identity: string }> = [];
    await pollUntil(async () => {
      rows = (await api(0, '/api/v1/connections')).body as unknown as typeof rows;
      return rows.length === 2;
    }, 10_000);
    const idB = rows.find((r) => r.identity === 'svc-b2')?.id;
    const idA = rows.find((r) => r.identity === 'svc-a2')?.id;
    expect(idB && idA).toBeTruthy();

    await cluster.redis.stop('SIGKILL');
    expect(await pollUntil(async () => (await cluster.readyz(inst(0))) === 503, 10_000)).toBe(true);
    const refused = await api(0, `/api/v1/connections/${idB}`, { method: 'DELETE' });
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ error: 'UNAVAILABLE' });
    const status = (await api(0, '/api/v1/status')).body as unknown as StatusBody;
    expect(status.instances).toEqual([expect.objectContaining({ id: 'inst-0', answered: true }), expect.objectContaining({ id: 'inst-1', answered: false })]);
    // The bus's list says which instance is missing, in the headers every admin list uses.
    const bus = await api(0, '/api/v1/bus/services');
    expect([bus.headers.get('muster-instances'), bus.headers.get('muster-instances-missing')]).toEqual(['inst-0', 'inst-1']);
    expect((bus.body as unknown as Array<{ name: string; instance: string }>).map((s) => [s.name, s.instance])).toEqual([['svc-a2', 'inst-0']]);

    const local = await api(0, `/api/v1/connections/${idA}`, { method: 'DELETE' });
    expect(local.status).toBe(200);
    expect((await onA.closed).code).toBe(1008);
    onB.close();
  }, 30_000);
});
