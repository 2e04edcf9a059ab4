import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, SECRETS } from '../chaos/server.js';
import { MusterCluster, pollUntil, type Instance } from '../support/muster-cluster.js';
import { haveRedisServer } from '../support/redis-server.js';
import { RawPeer } from '../support/server.js';

/**
 * Cluster mode for the gamelist, end to end: a real redis-server and three built Muster
 * processes on it (test/support/muster-cluster.ts, no sharding CONTROLs). Game servers
 * register on different instances; every instance lists all of them (public and admin
 * routes), a join through one instance reaches a game server on another, and a killed
 * instance's servers leave the others' lists within the presence TTL; a game server that
 * reconnects to another instance keeps its server_id.
 */

const JOIN_TIMEOUT = 1000;
let c: MusterCluster;
const peers: RawPeer[] = [];

interface Listed {
  peer: RawPeer;
  id: string;
  name: string;
}

beforeAll(async () => {
  ensureBuilt();
  c = await MusterCluster.start({ instances: 3, controls: 0, dialectConfig: { gamelist: { joinTimeout: JOIN_TIMEOUT } } });
}, 60_000);

afterAll(async () => {
  for (const p of peers.splice(0)) p.close();
  await c?.close();
}, 30_000);

const inst = (i: number): Instance => c.instances[i] as Instance;
const base = (i: number): string => inst(i).server?.base as string;

async function register(i: number, name: string, over: Record<string, unknown> = {}): Promise<Listed> {
  const peer = await RawPeer.open(`${inst(i).server?.ws}/v2/server/ws`);
  peers.push(peer);
  const info = { name, desc: `on ${i}`, port: 37015 + peers.length, map: 'mp_glitch', playlist: 'ps', curPlayers: 1, maxPlayers: 8, gameState: 1, ...over };
  peer.send({ metadata: { type: 1, id: 1 }, info, regToken: SECRETS.gamelist });
  const r = await peer.next<{ success: boolean; server_id: string }>();
  expect(r.success).toBe(true);
  return { peer, id: r.server_id, name };
}

async function list(i: number): Promise<{ servers: Array<{ server_id: string; name: string; hasPassword: boolean }>; total: number } | undefined> {
  try {
    const r = await fetch(`${base(i)}/v2/servers`, { signal: AbortSignal.timeout(2000) });
    return r.status === 200 ? ((await r.json()) as never) : undefined;
  } catch {
    return undefined;
  }
}

async function ids(i: number): Promise<string[]> {
  return ((await list(i))?.servers ?? []).map((s) => s.server_id).sort();
}

async function join(i: number, serverId: string, body: Record<string, unknown> = { sessionToken: 'st', username: 'player' }): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${base(i)}/v2/servers/${serverId}/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

describe.skipIf(!haveRedisServer)('gamelist across three instances', () => {
  let a: Listed;
  let b: Listed;
  let p: Listed;

  it('lists every instance’s game servers on every instance, in the public and admin lists', async () => {
    a = await register(0, 'alpha');
    b = await register(1, 'bravo', { curPlayers: 5 });
    p = await register(2, 'papa', { password: 'letmein', curPlayers: 0 });
    const all = [a.id, b.id, p.id].sort();
    // The snapshot is rebuilt at most once a second.
    for (let i = 0; i < 3; i++) expect(await pollUntil(async () => JSON.stringify(await ids(i)) === JSON.stringify(all), 5000)).toBe(true);
    // Same order everywhere (players, then server_id).
    const orders = await Promise.all([0, 1, 2].map(async (i) => (await list(i))?.servers.map((s) => s.name)));
    expect(orders[0]).toEqual(['bravo', 'alpha', 'papa']);
    expect(orders[1]).toEqual(orders[0]);
    expect(orders[2]).toEqual(orders[0]);
    expect((await list(0))?.servers.find((s) => s.server_id === p.id)?.hasPassword).toBe(true);
    const client = (await (await fetch(`${base(1)}/client/servers`)).json()) as Array<{ id: string }>;
    expect(client.map((s) => s.id).sort()).toEqual(all);
    const admin = await fetch(`${base(0)}/api/v1/gamelist/servers`, { headers: { authorization: `Bearer ${SECRETS.admin}` } });
    const text = await admin.text();
    const rows = JSON.parse(text) as Array<{ server_id: string; instance: string; address: string }>;
    expect(rows.map((r) => [r.server_id, r.instance]).sort()).toEqual(
      [
        [a.id, 'inst-0'],
        [b.id, 'inst-1'],
        [p.id, 'inst-2'],
      ].sort(),
    );
    expect(rows.every((r) => r.address === '127.0.0.1')).toBe(true);
    // The password stays on its instance.
    expect(text).not.toContain('letmein');
  });

  it('routes a join through any instance to the game server’s own instance, and its answer back', async () => {
    const pending = join(2, a.id);
    const ask = await a.peer.next<{ metadata: { type: number; id: number }; conv: number; username: string }>(5000);
    expect(ask).toMatchObject({ metadata: { type: 2 }, username: 'player', sessionToken: 'st' });
    a.peer.send({ metadata: { type: -2, id: ask.metadata.id }, success: true });
    expect(await pending).toEqual({ status: 200, body: { success: true, conv: ask.conv } });

    // The password is checked where the game server is: a wrong one never reaches it.
    const wrong = await join(0, p.id, { sessionToken: 'st', username: 'player', password: 'nope' });
    expect(wrong.status).toBe(403);
    expect(await p.peer.quiet()).toBe(true);
    const right = join(0, p.id, { sessionToken: 'st', username: 'player', password: 'letmein' });
    const ask2 = await p.peer.next<{ metadata: { id: number }; conv: number }>(5000);
    p.peer.send({ metadata: { type: -2, id: ask2.metadata.id }, success: false, error: { type: 3, msg: 'full' } });
    expect(await right).toEqual({ status: 200, body: { success: false, conv: ask2.conv, error: { type: 3, msg: 'full' } } });

    // A game server that does not answer: 504 after joinTimeout.
    const t0 = performance.now();
    const silent = await join(1, a.id);
    expect(silent.status).toBe(504);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(JOIN_TIMEOUT - 50);
    await a.peer.next(1000);
    // An unknown server is 404 everywhere.
    expect((await join(1, 'no-such-server')).status).toBe(404);
  });

  it('keeps a game server’s server_id when it reconnects to another instance', async () => {
    const g = await register(0, 'mover', { port: 40000 });
    expect(await pollUntil(async () => (await ids(2)).includes(g.id), 5000)).toBe(true);
    g.peer.close();
    await g.peer.closed;
    expect(await pollUntil(async () => !(await ids(2)).includes(g.id), 5000)).toBe(true);
    const again = await register(2, 'mover', { port: 40000 });
    expect(again.id).toBe(g.id);
    expect(await pollUntil(async () => (await ids(0)).includes(g.id), 5000)).toBe(true);
    again.peer.close();
    await again.peer.closed;
    expect(await pollUntil(async () => !(await ids(0)).includes(g.id) && !(await ids(1)).includes(g.id), 5000)).toBe(true);
  });

  it('takes a killed instance’s servers off every list within the presence TTL, and a restarted one gets the list back', async () => {
    const t0 = performance.now();
    await c.kill9(inst(1));
    const gone = await pollUntil(async () => !(await ids(0)).includes(b.id) && !(await ids(2)).includes(b.id), 5000);
    const took = performance.now() - t0;
    expect(gone).toBe(true);
    console.log(`gamelist cluster: a killed instance's server left the other lists after ${Math.round(took)} ms (presenceTtl ${c.timing.presenceTtl} ms)`);
    // Presence: the key expires presenceTtl after the last beat (a third of it apart), the
    // others notice at their next scan (a third of it apart).
    expect(took).toBeLessThan(c.timing.presenceTtl * 2 + 500);
    // A join for it meanwhile is 404, not a hang.
    expect((await join(0, b.id)).status).toBe(404);

    await c.boot(inst(1));
    const rest = [a.id, p.id].sort();
    expect(await pollUntil(async () => JSON.stringify(await ids(1)) === JSON.stringify(rest), 5000)).toBe(true);
    // And it serves joins to the others' servers.
    const pending = join(1, p.id, { sessionToken: 'st', username: 'late', password: 'letmein' });
    const ask = await p.peer.next<{ metadata: { id: number }; conv: number }>(5000);
    p.peer.send({ metadata: { type: -2, id: ask.metadata.id }, success: true });
    expect(await pending).toEqual({ status: 200, body: { success: true, conv: ask.conv } });
  }, 30_000);
});
