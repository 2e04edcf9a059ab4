import { describe, expect, it } from 'vitest';
import { ClusterioClose, CloseReason } from '../../src/protocols/clusterio/messages.js';
import { worldSummary } from '../../src/dialects/clusterio/world/state.js';
import { closeOf, cluster, config, framesTo, harness } from '../support/clusterio-world.js';

/** The Clusterio world's opt-in sessions: numbering, acks, the replay buffer, resume and its window. */

describe('clusterio world: sessions', () => {
  const session = (h: ReturnType<typeof harness>, conn: string, id: number) => h.slave(conn, id, { features: ['session'] });

  it('opts in: ready is seq 0 with the token; frames are numbered per session; heartbeats ack and are answered', () => {
    const h = harness();
    h.loaded();
    const fx = session(h, 's', 7);
    expect(framesTo(fx, 's').at(-1)).toEqual({ seq: 0, type: 'ready', data: { session_token: 'token-1', heartbeat_interval: 10 } });
    h.control('c');
    h.settle(h.frame('c', 2, 'create_instance_request', { serialized_config: config(42, 7) }));
    const req = framesTo(h.frame('c', 3, 'start_instance_request', { instance_id: 42 }), 's');
    expect(req).toEqual([{ seq: 1, type: 'start_instance_request', data: { instance_id: 42 } }]);
    expect(h.world().sessions.get('token-1')?.session?.buffer).toHaveLength(1);
    h.frame('s', 0, 'heartbeat', { last_seq: 1 });
    expect(h.world().sessions.get('token-1')?.session?.buffer).toHaveLength(0);
    const beat = h.d.advance(10_000);
    expect(framesTo(beat, 's')).toEqual([{ seq: 0, type: 'heartbeat', data: { last_seq: 0 } }]);
  });

  it('keeps requests to a detached session and replays them on resume; a duplicate frame is dropped', () => {
    const h = harness();
    h.loaded();
    session(h, 's', 7);
    h.control('c');
    h.settle(h.frame('c', 2, 'create_instance_request', { serialized_config: config(42, 7) }));
    h.frame('s', 1, 'update_instances_event', { instances: [] });
    const closed = h.d.feed({ type: 'closed', now: h.clock.now(), conn: 's' });
    expect(closed).toContainEqual({ type: 'timer', key: { kind: 'session', token: 'token-1' }, at: h.clock.now() + 60_000 });
    // The slave is still online; a request to it is kept for replay.
    expect(worldSummary(h.world())).toMatchObject({ slaves: 1, sessions: 1, connections: 1 });
    const kept = h.frame('c', 3, 'start_instance_request', { instance_id: 42 });
    expect(framesTo(kept, 's')).toEqual([]);
    h.open('s2');
    const back = h.frame('s2', 0, 'resume', { session_token: 'token-1', last_seq: 0 });
    expect(back).toContainEqual({ type: 'count', metric: 'resumes' });
    expect(back).toContainEqual({ type: 'timer', key: { kind: 'session', token: 'token-1' }, at: null });
    expect(framesTo(back, 's2')).toEqual([
      { seq: 0, type: 'continue', data: { last_seq: 1 } },
      { seq: 1, type: 'assign_instance_request', data: expect.any(Object) },
      { seq: 2, type: 'start_instance_request', data: { instance_id: 42 } },
    ]);
    // Already received before the reconnect: dropped, not delivered twice.
    expect(h.frame('s2', 1, 'update_instances_event', { instances: [] })).toEqual([]);
    const ans = h.frame('s2', 2, 'start_instance_response', { seq: 2 });
    expect(framesTo(ans, 'c').map((f) => f.data)).toEqual([{ seq: 3 }]);
  });

  // Beats far apart: the control stays quiet through the resume window without a ping timeout.
  const slow = { heartbeatInterval: 100_000, machine: { heartbeatInterval: 100_000, preAuthMaxBytes: 4096 } };

  it('after the resume window the session expires: its requests fail and a resume gets invalidate', () => {
    const h = harness(slow);
    h.loaded();
    session(h, 's', 7);
    h.control('c');
    h.settle(h.frame('c', 2, 'create_instance_request', { serialized_config: config(42, 7) }));
    h.d.feed({ type: 'closed', now: h.clock.now(), conn: 's' });
    h.frame('c', 3, 'start_instance_request', { instance_id: 42 });
    // The request's deadline (5 s) passes inside the window: it times out first.
    const fx = h.d.advance(60_000);
    const errors = framesTo(fx, 'c').map((f) => f.data);
    expect(errors).toEqual([{ seq: 3, error: 'Slave 7 did not answer start_instance_request in time' }]);
    h.open('s2');
    const inv = h.frame('s2', 0, 'resume', { session_token: 'token-1', last_seq: 0 });
    expect(framesTo(inv, 's2')).toEqual([{ seq: 0, type: 'invalidate', data: {} }]);
    expect(inv).toContainEqual({ type: 'count', metric: 'invalidations' });
    expect(worldSummary(h.world())).toMatchObject({ slaves: 0, sessions: 0 });
    // The client registers anew on the same socket.
    h.frame('s2', 0, 'register_slave', { token: 'jwt', agent: 'x', version: '1', name: 'n', id: 7, features: ['session'] });
    expect(framesTo(h.settle(h.auth('s2')), 's2').map((f) => f.type)).toEqual(['ready']);
  });

  it('expires a session with a request outstanding: the request fails as the slave goes offline', () => {
    const h = harness({ ...slow, requestTimeout: 120_000 });
    h.loaded();
    session(h, 's', 7);
    h.control('c');
    h.settle(h.frame('c', 2, 'create_instance_request', { serialized_config: config(42, 7) }));
    h.frame('c', 3, 'start_instance_request', { instance_id: 42 });
    h.d.feed({ type: 'closed', now: h.clock.now(), conn: 's' });
    const fx = h.d.advance(60_000);
    expect(framesTo(fx, 'c').map((f) => f.data)).toEqual([{ seq: 3, error: 'Slave 7 went offline (session expired) before answering start_instance_request' }]);
    expect(worldSummary(h.world())).toMatchObject({ slaves: 0, sessions: 0, pendingRequests: 0 });
  });

  it('keeps at most sessionBufferBytes for replay: a resume that would miss a frame is invalidated; an ack past what was sent is clamped', () => {
    const h = harness({ sessionBufferBytes: 200 });
    h.loaded();
    session(h, 's', 7);
    h.slave('o', 8);
    const chat = (n: number) => h.frame('o', n, 'global_chat:chat_event', { instance_name: 'x', content: 'c'.repeat(40) });
    chat(2);
    chat(3);
    const s = h.world().sessions.get('token-1')?.session;
    // Two frames sent, one kept: the second did not fit.
    expect({ seq: s?.seq, kept: s?.buffer.length }).toEqual({ seq: 2, kept: 1 });
    h.frame('s', 0, 'heartbeat', { last_seq: 99 });
    expect({ acked: s?.acked, kept: s?.buffer.length, bytes: s?.bytes }).toEqual({ acked: 2, kept: 0, bytes: 0 });
    chat(4);
    chat(5);
    h.d.feed({ type: 'closed', now: h.clock.now(), conn: 's' });
    h.open('s2');
    expect(framesTo(h.frame('s2', 0, 'resume', { session_token: 'token-1', last_seq: 2 }), 's2').map((f) => f.type)).toEqual(['invalidate']);
  });

  it('each detach starts a fresh window; a fresh register of the slave id ends a detached session and its window', () => {
    const h = harness(slow);
    h.loaded();
    session(h, 's', 7);
    h.d.feed({ type: 'closed', now: h.clock.now(), conn: 's' });
    h.clock.advance(30_000);
    h.open('s2');
    h.frame('s2', 0, 'resume', { session_token: 'token-1', last_seq: 0 });
    expect(h.d.timers.has('session:token-1')).toBe(false);
    h.d.feed({ type: 'closed', now: h.clock.now(), conn: 's2' });
    expect(h.d.timers.get('session:token-1')?.at).toBe(h.clock.now() + 60_000);
    h.d.advance(59_999);
    expect(worldSummary(h.world())).toMatchObject({ slaves: 1, sessions: 1 });
    const fresh = session(h, 's3', 7);
    expect(fresh).toContainEqual({ type: 'timer', key: { kind: 'session', token: 'token-1' }, at: null });
    expect(h.d.timers.has('session:token-1')).toBe(false);
    expect([...h.world().sessions.keys()]).toEqual(['token-2']);
    expect(h.world().slaves.get('7')?.link?.conn).toBe('s3');
  });

  it('a resume past what was sent, or before what was acknowledged, ends the session (invalidate)', () => {
    const h = harness();
    h.loaded();
    session(h, 's', 7);
    h.d.feed({ type: 'closed', now: h.clock.now(), conn: 's' });
    h.open('s2');
    expect(framesTo(h.frame('s2', 0, 'resume', { session_token: 'token-1', last_seq: 5 }), 's2').map((f) => f.type)).toEqual(['invalidate']);
    expect(worldSummary(h.world()).sessions).toBe(0);
  });

  it('a resume while the old socket is still open takes the session over; a client `close` ends it', () => {
    const h = harness();
    h.loaded();
    session(h, 's', 7);
    h.open('s2');
    const fx = h.frame('s2', 0, 'resume', { session_token: 'token-1', last_seq: 0 });
    expect(closeOf(fx, 's')).toEqual({ code: ClusterioClose.POLICY_VIOLATION, reason: CloseReason.RESUMED_ELSEWHERE });
    expect(framesTo(fx, 's2').map((f) => f.type)).toEqual(['continue']);
    h.d.feed({ type: 'closed', now: h.clock.now(), conn: 's' });
    expect(worldSummary(h.world())).toMatchObject({ slaves: 1, sessions: 1 });
    const bye = h.frame('s2', 0, 'close', { reason: 'done' });
    expect(closeOf(bye, 's2')).toEqual({ code: ClusterioClose.NORMAL, reason: 'closed by the client' });
    expect(worldSummary(h.world())).toMatchObject({ slaves: 0, sessions: 0 });
  });

  it('a session slave silent for 2 × heartbeat_interval is closed with 3008 and its session waits', () => {
    const h = harness();
    h.loaded();
    session(h, 's', 7);
    const fx = h.d.advance(20_000);
    expect(closeOf(fx, 's')).toEqual({ code: ClusterioClose.TIMEOUT, reason: CloseReason.HEARTBEAT_TIMEOUT });
    h.d.feed({ type: 'closed', now: h.clock.now(), conn: 's' });
    expect(worldSummary(h.world())).toMatchObject({ slaves: 1, sessions: 1, connections: 0 });
  });

  it('shutdown fails what waits and ends the sessions', () => {
    const h = cluster();
    h.frame('c', 9, 'start_instance_request', { instance_id: 42 });
    const fx = h.d.feed({ type: 'shutdown', now: h.clock.now() });
    expect(framesTo(fx, 'c').map((f) => f.data)).toEqual([{ seq: 9, error: 'the server is shutting down' }]);
    expect(worldSummary(h.world()).pendingRequests).toBe(0);
  });
});
