import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, RawPeer, until } from '../support/server.js';
import {
  admin,
  connected,
  expectErrorClose,
  expectOp,
  expectNoLeaks,
  openPeer,
  owners,
  shards,
  ShardingHarness,
  sync,
  type ShardingServer,
  type StartOptions,
} from '../support/harness/sharding.js';

const h = new ShardingHarness();
const peers = h.peers;
const start = (cfg: Record<string, unknown> = {}, opts: StartOptions = {}): Promise<ShardingServer> => h.start(cfg, opts);
const ctl = (name: string, extra: Record<string, unknown> = {}) => h.control(name, extra);

/** Two CONTROLs, a 0-7 and b 8-15, both CONNECTED. */
const fleet = (cfg: Record<string, unknown> = {}) => h.fleet(cfg);

afterEach(() => h.teardown(expectNoLeaks));

describe('sharding admin: views', () => {
  it('needs the admin token', async () => {
    await start();
    for (const path of ['/api/v1/sharding', '/api/v1/sharding/shards']) {
      expect((await fetch(`${h.srv.httpBase}${path}`)).status).toBe(401);
    }
    expect((await fetch(`${h.srv.httpBase}/api/v1/sharding/halt`, { method: 'POST' })).status).toBe(401);
  });

  it('GET /api/v1/sharding shows the fleet and every CONTROL', async () => {
    const { a } = await fleet();
    h.srv.clock.advance(1234);
    await sync(a.peer);
    const r = await admin(h.srv, 'GET', '/api/v1/sharding');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ halted: false, shardCount: 16, maxConcurrency: 1, budgetRemaining: 1000 });
    const controls = r.body.controls as Array<Record<string, unknown>>;
    expect(controls).toEqual([
      { name: 'a', sessionId: expect.any(String), state: 'ready', shards: [[0, 7]], redundant: false, capacity: 1, lastHeartbeatMs: h.srv.clock.now() },
      { name: 'b', sessionId: expect.any(String), state: 'ready', shards: [[8, 15]], redundant: false, capacity: 1, lastHeartbeatMs: expect.any(Number) },
    ]);
    expect(controls[0]?.sessionId).toBe((a.init.d as { session_id: string }).session_id);
  });

  it('GET /api/v1/sharding/shards lists [{id, owner, state}]; the owner changes when CONNECT is sent', async () => {
    await start({ expectedControls: 2, shardCount: 4 });
    expect(await shards(h.srv)).toEqual([0, 1, 2, 3].map((id) => ({ id, owner: null, state: 'unassigned' })));
    const a = await ctl('a');
    await ctl('b');
    await expectOp(a.peer, 6);
    expect(await shards(h.srv)).toEqual([
      { id: 0, owner: 'a', state: 'assigned' },
      { id: 1, owner: 'a', state: 'assigned' },
      { id: 2, owner: null, state: 'pending' },
      { id: 3, owner: null, state: 'pending' },
    ]);
    await connected(a.peer, [[0, 1]]);
    expect((await shards(h.srv))[0]).toEqual({ id: 0, owner: 'a', state: 'connected' });
    expect((await shards(h.srv))[2]).toEqual({ id: 2, owner: 'b', state: 'assigned' });
  });

  it('GET /api/v1/sharding/controls/:name returns the last INFO, numbers verbatim', async () => {
    await start();
    const a = await ctl('a');
    a.peer.send('{"o":0,"d":{"shards":[{"id":0,"status":"ready","latency_ms":41,"guilds":1200}],"memory_mb":512,"owner_id":870000000000000123}}');
    await sync(a.peer);
    const res = await fetch(`${h.srv.httpBase}/api/v1/sharding/controls/a`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('"info":{"shards":[{"id":0,"status":"ready","latency_ms":41,"guilds":1200}],"memory_mb":512,"owner_id":870000000000000123}');
    expect(JSON.parse(text)).toMatchObject({ name: 'a', state: 'waiting', connected: true });
    expect((await admin(h.srv, 'GET', '/api/v1/sharding/controls/nope')).status).toBe(404);
  });

  it('exposes metrics: shards and CONTROLs by state, queue depth, budget, failover durations', async () => {
    await fleet();
    const text = await (await fetch(`${h.srv.httpBase}/metrics`)).text();
    expect(text).toContain('muster_sharding_shards{state="connected"} 16');
    expect(text).toContain('muster_sharding_controls{state="ready"} 2');
    expect(text).toContain('muster_sharding_identify_queue_depth 0');
    expect(text).toContain('muster_sharding_budget_remaining 1000');
    expect(text).toContain('muster_sharding_failover_duration_seconds_count');
  });

  it('reports a failover duration once the new owner is CONNECTED', async () => {
    const { a, b } = await fleet();
    a.peer.close();
    await a.peer.waitClose();
    h.srv.clock.advance(30_000);
    expect(await expectOp(b.peer, 3)).toEqual({ shards: [[0, 7]], reason: 'failover', from: 'a' });
    await connected(b.peer, [[0, 15]]);
    const text = await (await fetch(`${h.srv.httpBase}/metrics`)).text();
    expect(text).toContain('muster_sharding_failover_duration_seconds_count 1');
    expect(text).toContain('muster_sharding_failover_duration_seconds_sum 30');
  });

  it('is in the status summary and the OpenAPI document', async () => {
    await start();
    const status = await admin(h.srv, 'GET', '/api/v1/status');
    expect((status.body.dialects as Record<string, unknown>).sharding).toMatchObject({ path: '/sharding', controls: 0, shards: 16, halted: false });
    const doc = await admin<{ paths: Record<string, unknown> }>(h.srv, 'GET', '/api/v1/openapi.json');
    for (const p of ['/api/v1/sharding', '/api/v1/sharding/shards', '/api/v1/sharding/halt', '/api/v1/sharding/resume', '/api/v1/sharding/rebalance']) {
      expect(Object.keys(doc.body.paths)).toContain(p);
    }
  });
});

describe('sharding: SIGHUP', () => {
  it('reloads the Authorization key and the bot token without dropping CONTROLs', async () => {
    await start();
    const a = await ctl('a');
    const next = structuredClone(h.srv.muster.config);
    next.dialects.sharding.authorization = 'new-key';
    next.dialects.sharding.botToken = 'new-bot-token';
    h.srv.muster.reloadSecrets(next);
    await sync(a.peer);
    await expect(RawPeer.open(h.srv.wsUrl, { headers: { authorization: 'sharding-key-for-tests' } })).rejects.toThrow(/401/);
    const p = await RawPeer.open(h.srv.wsUrl, { headers: { authorization: 'new-key' } });
    peers.push(p);
    expect(await expectOp(p, 5)).toMatchObject({ token: 'new-bot-token' });
  });
});

describe('sharding admin: halt and resume', () => {
  it('POST /halt: SHUTDOWN to every CONTROL, 4006, halted; POST /resume: start-up follows', async () => {
    const { a, b } = await fleet();
    const r = await admin(h.srv, 'POST', '/api/v1/sharding/halt');
    expect(r).toEqual({ status: 200, body: { halted: true, reason: 'halted by an operator' } });
    for (const p of [a.peer, b.peer]) {
      expect(await expectOp(p, 4)).toEqual({ reason: expect.stringContaining('halted') });
      await expectErrorClose(p, 4006);
    }
    expect((await admin(h.srv, 'GET', '/api/v1/sharding')).body).toMatchObject({ halted: true, controls: [] });
    expect((await shards(h.srv))[0]).toEqual({ id: 0, owner: null, state: 'halted' });
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/rebalance')).status).toBe(409);

    expect(await admin(h.srv, 'POST', '/api/v1/sharding/resume')).toEqual({ status: 200, body: { halted: false, phase: 'waiting' } });
    expect(await h.srv.store.get('sharding', 'fleet')).toMatchObject({ halted: false });
    const a2 = await ctl('a');
    const b2 = await ctl('b');
    // expectedControls reached again: start-up at once.
    expect(await expectOp(a2.peer, 6)).toEqual({ shardRange: [0, 7], shards: [[0, 7]], redundant: false });
    await connected(a2.peer, [[0, 7]]);
    expect(await expectOp(b2.peer, 6)).toEqual({ shardRange: [8, 15], shards: [[8, 15]], redundant: false });
  });

  it('a halt survives a MASTER restart; nothing starts until resume', async () => {
    const s1 = await start();
    await admin(s1, 'POST', '/api/v1/sharding/halt');
    await s1.stop();
    const s2 = await start({}, { store: s1.store, clock: s1.clock });
    expect((await admin(s2, 'GET', '/api/v1/sharding')).body).toMatchObject({ halted: true });
    const p = await openPeer(s2);
    peers.push(p);
    await expectOp(p, 5);
    p.send({ o: 10, d: { name: 'a' } });
    await expectOp(p, 4);
    await expectErrorClose(p, 4006);
  });
});

describe('sharding admin: rebalance (make before break)', () => {
  it('the new owner gets OFFLOAD and reports CONNECTED; only then does the old owner get SHUTDOWN', async () => {
    const { a, b } = await fleet();
    const c = await ctl('c');
    expect(await expectOp(c.peer, 6)).toEqual({ shardRange: [], shards: [], redundant: true });
    await connected(c.peer, []);
    const r = await admin(h.srv, 'POST', '/api/v1/sharding/rebalance');
    expect(r.status).toBe(202);
    expect(r.body.moves).toEqual([
      { from: 'a', to: 'b', shards: [[6, 7]] },
      { from: 'b', to: 'c', shards: [[11, 15]] },
    ]);
    expect(await expectOp(c.peer, 3)).toEqual({ shards: [[11, 15]], reason: 'rebalance', from: 'b' });
    expect(await expectOp(b.peer, 3)).toEqual({ shards: [[6, 7]], reason: 'rebalance', from: 'a' });
    c.peer.send({ o: 11, d: null });
    await sync(c.peer);
    // Before CONNECTED, the old owners still own them, and nobody got SHUTDOWN.
    expect((await shards(h.srv))[11]).toMatchObject({ owner: 'b' });
    expect(b.peer.frames).toEqual([]);
    c.peer.send({ o: 12, d: { shards: [[11, 15]] } });
    expect(await expectOp(b.peer, 4)).toEqual({ reason: 'rebalance', shards: [[11, 15]] });
    await connected(b.peer, [[6, 10]]);
    expect(await expectOp(a.peer, 4)).toEqual({ reason: 'rebalance', shards: [[6, 7]] });
    expect(await owners(h.srv)).toEqual([
      ['a', 0, 5],
      ['b', 6, 10],
      ['c', 11, 15],
    ]);
  });

  it('moves named shards with {to, shards}, and refuses bad requests', async () => {
    const { a, b } = await fleet();
    const r = await admin(h.srv, 'POST', '/api/v1/sharding/rebalance', { to: 'b', shards: [[7, 7]] });
    expect(r).toEqual({ status: 202, body: { moves: [{ from: 'a', to: 'b', shards: [[7, 7]] }] } });
    expect(await expectOp(b.peer, 3)).toEqual({ shards: [[7, 7]], reason: 'rebalance', from: 'a' });
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/rebalance', { to: 'a', shards: [[0, 0]] })).status).toBe(409);
    await connected(b.peer, [[7, 15]]);
    expect(await expectOp(a.peer, 4)).toEqual({ reason: 'rebalance', shards: [[7, 7]] });
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/rebalance', { to: 'nope', shards: [[0, 0]] })).status).toBe(404);
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/rebalance', { shards: 3 })).status).toBe(400);
    // A JSON null is not "no body": it is refused, and nothing moves.
    for (const bad of [null, [], 'rebalance', 0]) {
      expect(await admin(h.srv, 'POST', '/api/v1/sharding/rebalance', bad), JSON.stringify(bad)).toMatchObject({ status: 400, body: { error: 'BAD_REQUEST' } });
    }
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/rebalance', {})).body).toEqual({ moves: [{ from: 'b', to: 'a', shards: [[7, 7]] }] });
    await connected(a.peer, [[0, 7]]);
  });

  it('refuses a rebalance before start-up', async () => {
    await start();
    expect(await admin(h.srv, 'POST', '/api/v1/sharding/rebalance')).toMatchObject({ status: 409, body: { error: 'NOT_RUNNING' } });
  });
});

describe('sharding admin: COMMAND relay', () => {
  it('relays restart_shard and restart_cluster to the owning CONTROL', async () => {
    const { a } = await fleet();
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/controls/a/command', { command: 'restart_shard', args: { shard_id: 3 } })).status).toBe(202);
    expect(await expectOp(a.peer, 2)).toEqual({ command: 'restart_shard', args: { shard_id: 3 } });
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/controls/a/command', { command: 'restart_cluster', args: { shards: [[0, 3]] } })).status).toBe(202);
    expect(await expectOp(a.peer, 2)).toEqual({ command: 'restart_cluster', args: { shards: [[0, 3]] } });
  });

  it('answers 404 for an unknown CONTROL, 400 for a bad command, 409 for a disconnected CONTROL', async () => {
    const { b } = await fleet();
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/controls/zz/command', { command: 'restart_shard', args: { shard_id: 3 } })).status).toBe(404);
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/controls/a/command', { command: 'reboot', args: {} })).status).toBe(400);
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/controls/a/command', { command: 'restart_shard', args: { shard_id: 'x' } })).status).toBe(400);
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/controls/a/command', { command: 'restart_cluster', args: { shards: [[3, 1]] } })).status).toBe(400);
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/controls/a/command', { command: 'restart_shard', args: { shard_id: 16 } })).status).toBe(400);
    // The HTTP edge checks the body before the fleet is asked: a bad body is 400 even for an unknown CONTROL.
    expect(await admin(h.srv, 'POST', '/api/v1/sharding/controls/zz/command', { command: 'reboot' })).toEqual({
      status: 400,
      body: { error: 'BAD_REQUEST', message: 'unknown command "reboot" (restart_shard, restart_cluster)' },
    });
    const doc = await admin<{ paths: Record<string, { post: { requestBody?: { required: boolean } } }> }>(h.srv, 'GET', '/api/v1/openapi.json');
    expect(doc.body.paths['/api/v1/sharding/controls/{name}/command']?.post.requestBody?.required).toBe(true);
    expect(doc.body.paths['/api/v1/sharding/rebalance']?.post.requestBody?.required).toBe(false);
    b.peer.close();
    await b.peer.waitClose();
    await until(() => h.srv.dialect().state.controls.get('b')?.conn === null);
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/controls/b/command', { command: 'restart_shard', args: { shard_id: 9 } })).status).toBe(409);
  });
});

describe('sharding: MASTER restart', () => {
  it('never reshuffles a healthy fleet: CONTROLs that come back with their session or shards keep them', async () => {
    const { a, b } = await fleet();
    const sidA = (a.init.d as { session_id: string }).session_id;
    const s1 = h.srv;
    await s1.stop();
    await a.peer.waitClose();
    await b.peer.waitClose();
    peers.splice(0);
    const s2 = await start({ expectedControls: 2 }, { store: s1.store, clock: s1.clock });
    expect((await shards(s2)).map((s) => s.state)).toEqual(Array(16).fill('disconnected'));
    const a2 = await openPeer(s2);
    const b2 = await openPeer(s2);
    peers.push(a2, b2);
    await expectOp(a2, 5);
    await expectOp(b2, 5);
    a2.send({ o: 10, d: { name: 'a', session_id: sidA, shards: [[0, 7]] } });
    b2.send({ o: 10, d: { name: 'b', shards: [[8, 15]] } });
    expect(await expectOp(a2, 15)).toEqual({ resumed: true, shards: [[0, 7]], redundant: false });
    expect(await expectOp(b2, 15)).toEqual({ resumed: true, shards: [[8, 15]], redundant: false });
    for (let i = 0; i < 4; i++) {
      s2.clock.advance(30_000);
      await sync(a2);
      await sync(b2);
    }
    expect(a2.frames).toEqual([]);
    expect(b2.frames).toEqual([]);
    expect(await owners(s2)).toEqual([
      ['a', 0, 7],
      ['b', 8, 15],
    ]);
    expect((await shards(s2))[0]?.state).toBe('connected');
  });

  it('tells a CONTROL that claims shards stored for another to stop, and offloads those of a CONTROL that does not return', async () => {
    const { a, b } = await fleet();
    const s1 = h.srv;
    await s1.stop();
    await a.peer.waitClose();
    await b.peer.waitClose();
    peers.splice(0);
    const s2 = await start({}, { store: s1.store, clock: s1.clock });
    const x = await openPeer(s2);
    const b2 = await openPeer(s2);
    peers.push(x, b2);
    await expectOp(x, 5);
    await expectOp(b2, 5);
    b2.send({ o: 10, d: { name: 'b', shards: [[8, 15]] } });
    expect(await expectOp(b2, 15)).toMatchObject({ resumed: true });
    x.send({ o: 10, d: { name: 'x', shards: [[0, 9]] } });
    expect(await expectOp(x, 15)).toEqual({ resumed: false, shards: [], redundant: false });
    expect(await expectOp(x, 4)).toEqual({ reason: expect.any(String), shards: [[0, 9]] });
    expect(await expectOp(x, 6)).toEqual({ shardRange: [], shards: [], redundant: true });
    await connected(x, []);
    s2.clock.advance(29_000);
    await sync(b2);
    s2.clock.advance(1_000);
    // a did not come back: its shards go whole to the standby x.
    expect(await expectOp(x, 3)).toEqual({ shards: [[0, 7]], reason: 'failover', from: 'a' });
  });

  it('keeps the identify budget across a restart', async () => {
    const s1 = await start({ expectedControls: 1, sessionStartLimit: 5, maxConcurrency: 16 });
    const a = await ctl('a');
    await expectOp(a.peer, 6);
    for (const id of [0, 1, 2]) a.peer.send({ o: 13, d: { shard_id: id } });
    for (let i = 0; i < 3; i++) await expectOp(a.peer, 14);
    await s1.stop();
    await a.peer.waitClose();
    peers.splice(0);
    const s2 = await start({ sessionStartLimit: 5, maxConcurrency: 16 }, { store: s1.store, clock: s1.clock });
    expect((await admin(s2, 'GET', '/api/v1/sharding')).body).toMatchObject({ budgetRemaining: 2 });
  });
});
