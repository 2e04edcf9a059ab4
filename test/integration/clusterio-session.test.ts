import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RawPeer, settle, until } from '../support/server.js';
import { controlToken, dialectOf, expectClose, instanceConfig, Seed2020, slaveToken, ClusterioHarness, type Frame } from '../support/harness/clusterio.js';

/** Sessions, the opt-in extension, driven with raw frames. */

const h = new ClusterioHarness();
const peers = h.peers;
const seeds: Seed2020[] = [];

const next = async (p: RawPeer): Promise<Frame> => JSON.parse(await p.nextRaw()) as Frame;

const open = (): Promise<RawPeer> => h.hello();

interface SessionPeer {
  peer: RawPeer;
  token: string;
}

async function sessionSlave(id = 4242): Promise<SessionPeer> {
  const peer = await open();
  peer.send({ seq: 0, type: 'register_slave', data: { token: await slaveToken(id), agent: 'test', version: '1', id, name: `s${id}`, features: ['session'] } });
  const ready = await next(peer);
  expect(ready).toEqual({ seq: 0, type: 'ready', data: { session_token: expect.any(String), heartbeat_interval: 15 } });
  return { peer, token: ready.data.session_token as string };
}

async function sessionControl(): Promise<SessionPeer> {
  const peer = await open();
  peer.send({ seq: 0, type: 'register_control', data: { token: await controlToken(), agent: 'test', version: '1', features: ['session'] } });
  const ready = await next(peer);
  expect(ready.type).toBe('ready');
  return { peer, token: ready.data.session_token as string };
}

async function seedControl(): Promise<Seed2020> {
  const c = await Seed2020.connect(h.srv, 'control');
  seeds.push(c);
  return c;
}

async function resume(token: string, lastSeq: number): Promise<{ peer: RawPeer; first: Frame }> {
  const peer = await open();
  peer.send({ seq: 0, type: 'resume', data: { session_token: token, last_seq: lastSeq } });
  return { peer, first: await next(peer) };
}

/** Moves the clock in steps, letting pongs and heartbeats through between them. */
async function advance(ms: number, beat?: RawPeer[]): Promise<void> {
  for (let left = ms; left > 0; left -= 10_000) {
    h.srv.clock.advance(Math.min(10_000, left));
    for (const p of beat ?? []) if (!p.isClosed) p.send({ seq: 0, type: 'heartbeat', data: { last_seq: 0 } });
    await settle([...peers, ...seeds.map((s) => s.peer)]);
  }
}

beforeEach(async () => {
  await h.start();
});

afterEach(async () => {
  for (const s of seeds.splice(0)) {
    expect(s.violations).toEqual([]);
    s.close();
  }
  for (const p of peers.splice(0)) {
    if (!p.isClosed) p.send({ seq: 0, type: 'close', data: { reason: 'test over' } });
    p.close();
  }
  await h.teardown((srv) => {
    const sum = dialectOf(srv).summary();
    expect([sum.connections, sum.slaves, sum.controls, sum.sessions, sum.pendingRequests]).toEqual([0, 0, 0, 0, 0]);
  });
});

describe('clusterio sessions: registration and numbering', () => {
  it('ready carries {session_token, heartbeat_interval} in seconds, with seq 0; hello stays seq 1', async () => {
    await sessionSlave();
  });

  it('numbers every other frame per session from 1', async () => {
    const { peer } = await sessionControl();
    peer.send({ seq: 1, type: 'list_slaves_request', data: {} });
    expect(await next(peer)).toEqual({ seq: 1, type: 'list_slaves_response', data: { seq: 1, list: [] } });
    peer.send({ seq: 2, type: 'list_instances_request', data: {} });
    expect(await next(peer)).toEqual({ seq: 2, type: 'list_instances_response', data: { seq: 2, list: [] } });
  });

  it('a session frame with seq 0 (not session control) is invalid (4000)', async () => {
    const { peer } = await sessionControl();
    peer.send({ seq: 0, type: 'list_slaves_request', data: {} });
    const f = await expectClose(peer, /^Invalid message: /, 4000);
    expect(f.seq).toBe(0);
  });

  it('drops a frame whose seq was already received', async () => {
    const { peer } = await sessionControl();
    peer.send({ seq: 1, type: 'list_slaves_request', data: {} });
    expect((await next(peer)).seq).toBe(1);
    peer.send({ seq: 1, type: 'list_slaves_request', data: {} });
    peer.send({ seq: 2, type: 'list_instances_request', data: {} });
    expect(await next(peer)).toEqual({ seq: 2, type: 'list_instances_response', data: { seq: 2, list: [] } });
  });

  it('a bad token for a session client gets close {reason} with seq 0 and 4003', async () => {
    const peer = await open();
    peer.send({ seq: 0, type: 'register_control', data: { token: 'bad', agent: 'a', version: 'v', features: ['session'] } });
    const f = await expectClose(peer, 'Authentication failed', 4003);
    expect(f.seq).toBe(0);
  });
});

describe('clusterio sessions: heartbeats', () => {
  it('the server sends heartbeat {last_seq} (seq 0) every heartbeat_interval', async () => {
    const { peer } = await sessionControl();
    peer.send({ seq: 1, type: 'list_slaves_request', data: {} });
    await next(peer);
    h.srv.clock.advance(15_000);
    expect(await next(peer)).toEqual({ seq: 0, type: 'heartbeat', data: { last_seq: 1 } });
  });

  it('closes a session peer that sends no heartbeat for 2 × heartbeat_interval with 3008 (pongs do not count)', async () => {
    const { peer } = await sessionControl();
    await advance(29_999);
    expect((await next(peer)).type).toBe('heartbeat');
    expect(peer.isClosed).toBe(false);
    h.srv.clock.advance(1);
    const f = await expectClose(peer, 'Heartbeat timeout', 3008);
    expect(f.seq).toBe(0);
    // The session outlives the socket until sessionTimeout.
    await until(() => dialectOf(h.srv).summary().connections === 0);
    expect(dialectOf(h.srv).summary().sessions).toBe(1);
    h.srv.clock.advance(60_000);
    await until(() => dialectOf(h.srv).summary().sessions === 0);
  });

  it('a peer that heartbeats stays', async () => {
    const { peer } = await sessionControl();
    await advance(60_000, [peer]);
    peer.send({ seq: 1, type: 'list_slaves_request', data: {} });
    let f = await next(peer);
    while (f.type === 'heartbeat') f = await next(peer);
    expect(f.type).toBe('list_slaves_response');
  });

  it('a heartbeat with a bad last_seq is invalid (4000)', async () => {
    const { peer } = await sessionControl();
    peer.send({ seq: 0, type: 'heartbeat', data: { last_seq: -1 } });
    await expectClose(peer, /^Invalid message: /, 4000);
  });
});

describe('clusterio sessions: resume', () => {
  it('resumes within sessionTimeout: continue {last_seq}, then a replay of what the client missed', async () => {
    const s = await sessionSlave(4242);
    s.peer.send({ seq: 1, type: 'update_instances_event', data: { instances: [] } });
    const c = await seedControl();
    await c.request('create_instance_request', { serialized_config: instanceConfig(777) });
    const seq = c.send('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
    const a1 = await next(s.peer);
    expect(a1).toMatchObject({ seq: 1, type: 'assign_instance_request' });
    s.peer.ws.terminate();
    await until(() => dialectOf(h.srv).summary().connections === 1);
    // While the socket is down, requests to the slave are buffered.
    const seq2 = c.send('start_instance_request', { instance_id: 777 });
    await until(() => dialectOf(h.srv).summary().pendingRequests === 2);
    await advance(59_000);
    const { peer, first } = await resume(s.token, 0);
    expect(first).toEqual({ seq: 0, type: 'continue', data: { last_seq: 1 } });
    expect(await next(peer)).toEqual(a1);
    expect(await next(peer)).toEqual({ seq: 2, type: 'start_instance_request', data: { instance_id: 777 } });
    peer.send({ seq: 2, type: 'assign_instance_response', data: { seq: 1 } });
    peer.send({ seq: 3, type: 'start_instance_response', data: { seq: 2 } });
    expect((await c.next()).data).toEqual({ seq });
    expect((await c.next()).data).toEqual({ seq: seq2 });
  });

  it('resends only what comes after the client\'s last_seq', async () => {
    const s = await sessionControl();
    for (let i = 1; i <= 3; i++) s.peer.send({ seq: i, type: 'list_slaves_request', data: {} });
    for (let i = 1; i <= 3; i++) expect((await next(s.peer)).seq).toBe(i);
    s.peer.ws.terminate();
    await until(() => dialectOf(h.srv).summary().connections === 0);
    const { peer, first } = await resume(s.token, 2);
    expect(first).toEqual({ seq: 0, type: 'continue', data: { last_seq: 3 } });
    expect(await next(peer)).toEqual({ seq: 3, type: 'list_slaves_response', data: { seq: 3, list: [] } });
    // The client's replay of frames the server already has is dropped.
    peer.send({ seq: 3, type: 'list_slaves_request', data: {} });
    peer.send({ seq: 4, type: 'list_instances_request', data: {} });
    expect(await next(peer)).toEqual({ seq: 4, type: 'list_instances_response', data: { seq: 4, list: [] } });
  });

  it('after sessionTimeout a resume gets invalidate, and the client registers anew on the same socket', async () => {
    const s = await sessionControl();
    s.peer.ws.terminate();
    await until(() => dialectOf(h.srv).summary().connections === 0);
    h.srv.clock.advance(60_000);
    const { peer, first } = await resume(s.token, 0);
    expect(first).toEqual({ seq: 0, type: 'invalidate', data: {} });
    peer.send({ seq: 0, type: 'register_control', data: { token: await controlToken(), agent: 'a', version: 'v', features: ['session'] } });
    const ready = await next(peer);
    expect(ready.type).toBe('ready');
    expect(ready.data.session_token).not.toBe(s.token);
    const metrics = await (await fetch(`${h.srv.httpBase}/metrics`)).text();
    expect(metrics).toContain('muster_clusterio_invalidations_total 1');
  });

  it('an unknown token gets invalidate', async () => {
    const { first } = await resume('not-a-token', 0);
    expect(first).toEqual({ seq: 0, type: 'invalidate', data: {} });
  });

  it('a resume with last_seq beyond what was sent, or before what was acknowledged, gets invalidate', async () => {
    const s = await sessionControl();
    s.peer.send({ seq: 1, type: 'list_slaves_request', data: {} });
    await next(s.peer);
    s.peer.send({ seq: 0, type: 'heartbeat', data: { last_seq: 1 } });
    s.peer.ws.terminate();
    await until(() => dialectOf(h.srv).summary().connections === 0);
    const { first } = await resume(s.token, 0);
    expect(first.type).toBe('invalidate');
    const s2 = await sessionControl();
    s2.peer.ws.terminate();
    await until(() => dialectOf(h.srv).summary().connections === 1);
    expect((await resume(s2.token, 5)).first.type).toBe('invalidate');
  });

  it('a client that says close ends its session: a resume gets invalidate', async () => {
    const s = await sessionControl();
    s.peer.send({ seq: 0, type: 'close', data: { reason: 'bye' } });
    await s.peer.waitClose();
    await until(() => dialectOf(h.srv).summary().sessions === 0);
    expect((await resume(s.token, 0)).first.type).toBe('invalidate');
  });

  it('a resume while the old socket is still open takes the session over', async () => {
    const s = await sessionControl();
    const { peer, first } = await resume(s.token, 0);
    expect(first.type).toBe('continue');
    await expectClose(s.peer, 'Resumed from another connection', 1008);
    peer.send({ seq: 1, type: 'list_slaves_request', data: {} });
    expect((await next(peer)).type).toBe('list_slaves_response');
  });

  it('requests to a session slave whose session expires get an error response', async () => {
    const s = await sessionSlave(4242);
    const c = await seedControl();
    await c.request('create_instance_request', { serialized_config: instanceConfig(777, 'x', 4242) });
    s.peer.ws.terminate();
    await until(() => dialectOf(h.srv).summary().connections === 1);
    const seq = c.send('start_instance_request', { instance_id: 777 });
    await advance(59_999);
    expect(await c.peer.quiet()).toBe(true);
    h.srv.clock.advance(1);
    expect((await c.next()).data).toEqual({ seq, error: expect.stringMatching(/Slave 4242 went offline \(session expired\)/) });
    expect((await c.request('list_slaves_request')).data.list).toEqual([expect.objectContaining({ id: 4242, connected: false })]);
  });

  it('a detached session slave counts as connected until its session expires', async () => {
    const s = await sessionSlave(4242);
    s.peer.ws.terminate();
    await until(() => dialectOf(h.srv).summary().connections === 0);
    const c = await seedControl();
    expect((await c.request('list_slaves_request')).data.list).toEqual([expect.objectContaining({ id: 4242, connected: true })]);
    await advance(60_000);
    expect((await c.request('list_slaves_request')).data.list).toEqual([expect.objectContaining({ id: 4242, connected: false })]);
  });

  it('output for a detached session control is buffered and replayed on resume', async () => {
    const ctl = await sessionControl();
    ctl.peer.send({ seq: 1, type: 'set_instance_output_subscriptions_request', data: { instance_ids: [777] } });
    expect((await next(ctl.peer)).seq).toBe(1);
    const slave = await Seed2020.connect(h.srv, 'slave', { id: 1 });
    seeds.push(slave);
    ctl.peer.ws.terminate();
    await until(() => dialectOf(h.srv).summary().connections === 1);
    slave.sendRaw('{"seq":2,"type":"instance_output_event","data":{"instance_id":777,"output":{"n":870000000000000123}}}');
    await slave.peer.barrier();
    const { peer, first } = await resume(ctl.token, 1);
    expect(first.type).toBe('continue');
    expect(await peer.nextRaw()).toBe('{"seq":2,"type":"instance_output_event","data":{"instance_id":777,"output":{"n":870000000000000123}}}');
  });

  it('never sends session frames to a seed client', async () => {
    const c = await seedControl();
    await advance(60_000);
    await c.request('list_slaves_request');
    expect(c.violations).toEqual([]);
  });
});
