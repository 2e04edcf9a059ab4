import { describe, expect, it } from 'vitest';
import { ClusterioClose, CloseReason } from '../../src/protocols/clusterio/messages.js';
import { MAX_FRAMES_BEFORE_LOAD } from '../../src/dialects/clusterio/types.js';
import { INSTANCES_NS, SLAVES_NS } from '../../src/dialects/clusterio/world/registry.js';
import { worldSummary, type Eff } from '../../src/dialects/clusterio/world/state.js';
import { closeOf, cluster, config, framesTo, harness, writes, type Frame } from '../support/clusterio-world.js';

/** The Clusterio world's handshake, registry, forwarding and plugin events (harness: test/support/clusterio-world.ts). */

describe('clusterio world: handshake', () => {
  it('says hello as seq 1, checks the token, puts the slave on record and sends ready only once that is durable', () => {
    const h = harness();
    h.loaded();
    expect(framesTo(h.open('s'), 's')).toEqual([{ seq: 1, type: 'hello', data: { version: '2.0.0-alpha' } }]);
    expect(h.d.timers.get('handshake:s')?.at).toBe(h.clock.now() + 20_000);
    const reg = h.frame('s', 1, 'register_slave', { token: 'jwt', agent: 'clusterio', version: '2.0.0-alpha', name: 'one', id: 7 });
    expect(reg).toContainEqual({ type: 'verify', conn: 's', attempt: 1, role: 'slave', token: 'jwt', id: '7' });
    const ok = h.auth('s');
    expect(writes(ok)).toEqual([{ type: 'persist', namespace: SLAVES_NS, key: '7', value: { name: 'one', agent: 'clusterio', version: '2.0.0-alpha' }, settled: 'w1' }]);
    expect(framesTo(ok, 's')).toEqual([]);
    const ready = h.settle(ok);
    expect(framesTo(ready, 's')).toEqual([{ seq: 2, type: 'ready', data: {} }]);
    expect(ready).toContainEqual({ type: 'authenticated', conn: 's' });
    expect(ready).toContainEqual({ type: 'identity', conn: 's', identity: 'slave 7 (one)' });
    expect(h.d.timers.has('handshake:s')).toBe(false);
    expect(h.d.timers.get('beat:s')?.at).toBe(h.clock.now() + 10_000);
    expect(worldSummary(h.world())).toMatchObject({ connections: 1, slaves: 1, knownSlaves: 1 });
    // The same slave again with the same record: nothing to write, ready at once.
    const again = h.slave('s2', 7, { name: 'one' });
    expect(writes(again)).toEqual([]);
    expect(framesTo(again, 's2').map((f) => f.type)).toEqual(['hello', 'ready']);
    // ...and its older connection goes.
    expect(closeOf(again, 's')).toEqual({ code: ClusterioClose.POLICY_VIOLATION, reason: CloseReason.REPLACED });
    expect(again).toContainEqual({ type: 'why', conn: 's', why: 'superseded' });
  });

  it('refuses a bad token (4003), a bad first frame (1008), silence (handshake timeout) and a failed registration write (1011)', () => {
    const h = harness();
    h.loaded();
    h.open('a');
    h.frame('a', 1, 'register_control', { token: 'bad', agent: 'x', version: '1' });
    const refused = h.auth('a', false);
    expect(refused).toContainEqual({ type: 'refused', conn: 'a', detail: 'control token refused' });
    expect(closeOf(refused, 'a')).toEqual({ code: ClusterioClose.AUTHENTICATION_FAILED, reason: CloseReason.AUTH_FAILED });
    expect(framesTo(refused, 'a')).toEqual([{ seq: 2, type: 'close', data: { reason: CloseReason.AUTH_FAILED } }]);

    h.open('b');
    expect(closeOf(h.frame('b', 1, 'list_slaves_request', {}), 'b')).toEqual({ code: ClusterioClose.POLICY_VIOLATION, reason: CloseReason.INVALID_HANDSHAKE });

    h.open('c');
    const late = h.d.advance(20_000);
    expect(closeOf(late, 'c')).toEqual({ code: ClusterioClose.POLICY_VIOLATION, reason: CloseReason.HANDSHAKE_TIMEOUT });

    h.open('d');
    h.frame('d', 1, 'register_slave', { token: 'jwt', agent: 'x', version: '1', name: 'n', id: 9 });
    const failed = h.settle(h.auth('d'), false);
    expect(closeOf(failed, 'd')).toEqual({ code: ClusterioClose.INTERNAL_ERROR, reason: CloseReason.INTERNAL });
    expect(worldSummary(h.world()).slaves).toBe(0);
  });

  it('ignores the answer to an older token check, and one for a socket gone', () => {
    const h = harness();
    h.loaded();
    h.open('a');
    h.frame('a', 1, 'register_control', { token: 'jwt', agent: 'x', version: '1' });
    expect(h.d.feed({ type: 'authenticated', now: h.clock.now(), conn: 'a', attempt: 0, ok: true })).toEqual([]);
    h.d.feed({ type: 'closed', now: h.clock.now(), conn: 'a' });
    expect(h.d.feed({ type: 'authenticated', now: h.clock.now(), conn: 'a', attempt: 1, ok: true })).toEqual([]);
    expect(worldSummary(h.world())).toMatchObject({ connections: 0, controls: 0 });
  });

  it('holds frames until the registry has loaded, and closes a socket that sends too much meanwhile', () => {
    const h = harness();
    h.open('a');
    const held = h.frame('a', 1, 'register_control', { token: 'jwt', agent: 'x', version: '1' });
    expect(held.some((e) => e.type === 'verify')).toBe(false);
    expect(h.loaded()).toContainEqual({ type: 'verify', conn: 'a', attempt: 1, role: 'control', token: 'jwt', id: '' });
    // Frames behind a registration wait for its token check, then go in order.
    h.frame('a', 2, 'list_slaves_request', {});
    expect(framesTo(h.auth('a'), 'a').map((f) => f.type)).toEqual(['ready', 'list_slaves_response']);

    const g = harness();
    g.open('b');
    let fx: Eff[] = [];
    for (let i = 0; i <= MAX_FRAMES_BEFORE_LOAD; i++) fx = g.frame('b', 1, 'register_control', { token: 'jwt', agent: 'x', version: '1' });
    expect(closeOf(fx, 'b')).toEqual({ code: ClusterioClose.POLICY_VIOLATION, reason: CloseReason.INVALID_HANDSHAKE });
    expect(g.loaded().some((e) => e.type === 'verify')).toBe(false);
  });

  it('pings a seed client each interval and closes it (3008) after 2 × interval of silence', () => {
    const h = harness();
    h.loaded();
    h.control('c');
    expect(h.d.advance(10_000)).toContainEqual({ type: 'ping', conn: 'c' });
    const fx = h.d.advance(10_000);
    expect(closeOf(fx, 'c')).toEqual({ code: ClusterioClose.TIMEOUT, reason: CloseReason.PING_TIMEOUT });
  });
});

describe('clusterio world: the registry, acknowledged once durable', () => {
  it('create_instance: written first, answered when the write settles; a read meanwhile is answered at once', () => {
    const h = harness();
    h.loaded();
    h.control('c');
    const create = h.frame('c', 2, 'create_instance_request', { serialized_config: config(42) });
    expect(writes(create)).toEqual([{ type: 'persist', namespace: INSTANCES_NS, key: '42', value: { config: expect.stringContaining('"id":42'), status: null }, settled: expect.any(String) }]);
    expect(framesTo(create, 'c')).toEqual([]);
    const list = h.frame('c', 3, 'list_instances_request', {});
    expect(framesTo(list, 'c')).toEqual([{ seq: 3, type: 'list_instances_response', data: { seq: 3, list: [{ name: 'inst', id: 42, assigned_slave: null }] } }]);
    expect(framesTo(h.settle(create), 'c')).toEqual([{ seq: 4, type: 'create_instance_response', data: { seq: 2 } }]);
    // A duplicate id is refused at once, nothing written.
    const dup = h.frame('c', 4, 'create_instance_request', { serialized_config: config(42) });
    expect(writes(dup)).toEqual([]);
    expect(framesTo(dup, 'c')[0]?.data).toEqual({ seq: 4, error: 'Instance with ID 42 already exists' });
  });

  it('answers a write the store refused with an error, never a success', () => {
    const h = harness();
    h.loaded();
    h.control('c');
    const fx = h.settle(h.frame('c', 2, 'create_instance_request', { serialized_config: config(1) }), false);
    expect(framesTo(fx, 'c')).toEqual([{ seq: 3, type: 'create_instance_response', data: { seq: 2, error: 'The master could not save the change' } }]);
  });

  it('assign_instance_command: the assignment is durable before assign_instance_request goes to the slave, whose answer is relayed', () => {
    const h = harness();
    h.loaded();
    h.control('c');
    h.slave('s', 7);
    h.settle(h.frame('c', 2, 'create_instance_request', { serialized_config: config(42) }));
    const cmd = h.frame('c', 3, 'assign_instance_command_request', { instance_id: 42, slave_id: 7 });
    expect(writes(cmd)).toHaveLength(1);
    expect(framesTo(cmd, 's')).toEqual([]);
    const pushed = h.settle(cmd);
    const req = framesTo(pushed, 's');
    expect(req).toEqual([{ seq: 3, type: 'assign_instance_request', data: { instance_id: 42, serialized_config: expect.any(Object) } }]);
    // To another socket than the one served: through the Broker.
    expect(pushed.some((e) => e.type === 'deliver' && e.target.to === 'conn' && e.target.conn === 's')).toBe(true);
    const relayed = h.frame('s', 2, 'assign_instance_response', { seq: 3 });
    expect(framesTo(relayed, 'c')).toEqual([{ seq: 4, type: 'assign_instance_command_response', data: { seq: 3 } }]);
    // An unknown slave is refused at once.
    const none = h.frame('c', 4, 'assign_instance_command_request', { instance_id: 42, slave_id: 99 });
    expect(framesTo(none, 'c')[0]?.data).toEqual({ seq: 4, error: 'Slave 99 is not connected' });
  });

  it('set_instance_config_field: a new id deletes the old key and writes the new one; the answer waits for both, then the hosting slave', () => {
    const h = cluster();
    const fx = h.frame('c', 4, 'set_instance_config_field_request', { instance_id: 42, field: 'instance.id', value: '43' });
    expect(writes(fx).map((e) => [e.type, e.key])).toEqual([
      ['unpersist', '42'],
      ['persist', '43'],
    ]);
    const [del, put] = writes(fx);
    expect(framesTo(h.d.feed({ type: 'settled', now: h.clock.now(), id: (del as { settled: string }).settled, ok: true }), 's')).toEqual([]);
    const pushed = h.d.feed({ type: 'settled', now: h.clock.now(), id: (put as { settled: string }).settled, ok: true });
    const req = framesTo(pushed, 's')[0] as Frame;
    expect(req.type).toBe('assign_instance_request');
    expect(req.data.instance_id).toBe(43);
    expect(framesTo(h.frame('s', 3, 'assign_instance_response', { seq: req.seq }), 'c').map((f) => f.data)).toEqual([{ seq: 4 }]);
  });
});

describe('clusterio world: forwarding', () => {
  it('forwards a control request to the hosting slave under its own seq and relays the answer under the control seq', () => {
    const h = cluster();
    const fx = h.frame('c', 9, 'send_rcon_request', { instance_id: 42, command: '/time' });
    expect(fx).toContainEqual({ type: 'forwarded', requestType: 'send_rcon_request' });
    const req = framesTo(fx, 's');
    expect(req).toEqual([{ seq: 4, type: 'send_rcon_request', data: { instance_id: 42, command: '/time' } }]);
    expect(worldSummary(h.world()).pendingRequests).toBe(1);
    const back = h.frame('s', 3, 'send_rcon_response', { seq: 4, result: 'noon' });
    expect(framesTo(back, 'c')).toEqual([{ seq: 5, type: 'send_rcon_response', data: { result: 'noon', seq: 9 } }]);
    expect(h.d.timers.has('request:slave:s#4')).toBe(false);
    expect(worldSummary(h.world()).pendingRequests).toBe(0);
  });

  it('times a request out (typed timer), answers the control with an error, and ignores the late answer', () => {
    const h = cluster();
    h.frame('c', 9, 'start_instance_request', { instance_id: 42 });
    expect(h.d.timers.get('request:slave:s#4')?.at).toBe(h.clock.now() + 5_000);
    // The slave keeps its link alive meanwhile.
    h.clock.advance(4_999);
    h.frame('s', 3, 'update_instances_event', { instances: [] });
    const fx = h.d.advance(1);
    expect(framesTo(fx, 'c').map((f) => f.data)).toEqual([{ seq: 9, error: 'Slave 7 did not answer start_instance_request in time' }]);
    const late = h.frame('s', 4, 'start_instance_response', { seq: 4 });
    expect(closeOf(late, 's')).toBeUndefined();
    expect(late.filter((e) => e.type === 'log').map((e) => e.type === 'log' && e.msg)).toEqual(['clusterio: late answer to a timed-out request ignored']);
    // An answer to a seq never sent is a violation (4000).
    expect(closeOf(h.frame('s', 5, 'start_instance_response', { seq: 77 }), 's')?.code).toBe(ClusterioClose.INVALID_MESSAGE);
  });

  it('fails the control request when its slave goes, and answers at once for an instance whose slave is offline', () => {
    const h = cluster();
    h.frame('c', 9, 'stop_instance_request', { instance_id: 42 });
    const gone = h.d.feed({ type: 'closed', now: h.clock.now(), conn: 's' });
    expect(framesTo(gone, 'c').map((f) => f.data)).toEqual([{ seq: 9, error: 'Slave 7 went offline (disconnected) before answering stop_instance_request' }]);
    expect(gone).toContainEqual({ type: 'timer', key: { kind: 'request', key: 'slave:s#4' }, at: null });
    const now = h.frame('c', 10, 'stop_instance_request', { instance_id: 42 });
    expect(framesTo(now, 'c').map((f) => f.data)).toEqual([{ seq: 10, error: 'Slave 7 hosting instance 42 is not connected' }]);
  });

  it('deletes an instance the slave deleted, and relays the answer only once that is durable', () => {
    const h = cluster();
    h.frame('c', 9, 'delete_instance_request', { instance_id: 42 });
    const ans = h.frame('s', 3, 'delete_instance_response', { seq: 4 });
    expect(writes(ans)).toEqual([{ type: 'unpersist', namespace: INSTANCES_NS, key: '42', settled: expect.any(String) }]);
    expect(framesTo(ans, 'c')).toEqual([]);
    expect(framesTo(h.settle(ans), 'c').map((f) => f.data)).toEqual([{ seq: 9 }]);
    expect(worldSummary(h.world()).instances).toBe(0);
  });

  it('answers a metrics scrape call with what each attached slave answered', () => {
    const h = cluster();
    const fx = h.d.feed({ type: 'scrape', now: h.clock.now(), call: 'scrape:1' });
    const req = framesTo(fx, 's')[0] as Frame;
    expect(req.type).toBe('statistics_exporter:get_metrics_request');
    const answer = h.frame('s', 3, 'statistics_exporter:get_metrics_response', { seq: req.seq, results: [{ metric: { name: 'x' }, samples: [] }] });
    expect(answer).toContainEqual({ type: 'reply', call: 'scrape:1', status: 200, body: [{ slaveId: '7', results: [{ metric: { name: 'x' }, samples: [] }] }] });
    // A slave that does not answer in metricsTimeout is left out.
    h.d.feed({ type: 'scrape', now: h.clock.now(), call: 'scrape:2' });
    expect(h.d.advance(1_500)).toContainEqual({ type: 'reply', call: 'scrape:2', status: 200, body: [] });
  });
});

describe('clusterio world: plugin events and instance output', () => {
  it('broadcasts a known plugin event to the other slaves, drops an unknown one, refuses a plugin request', () => {
    const h = harness();
    h.loaded();
    h.slave('a', 1);
    h.slave('b', 2);
    const fx = h.frame('a', 2, 'global_chat:chat_event', { instance_name: 'x', content: 'hi' });
    expect(fx).toContainEqual({ type: 'plugin', label: 'global_chat:chat_event', action: 'broadcast' });
    expect(framesTo(fx, 'b')).toEqual([{ seq: 3, type: 'global_chat:chat_event', data: { instance_name: 'x', content: 'hi' } }]);
    expect(framesTo(fx, 'a')).toEqual([]);
    expect(h.frame('a', 3, 'other_plugin:thing_event', {})).toContainEqual({ type: 'plugin', label: 'other_plugin:thing_event', action: 'dropped' });
    const req = h.frame('a', 4, 'other_plugin:thing_request', {});
    expect(framesTo(req, 'a').map((f) => f.data)).toEqual([{ seq: 4, error: 'No handler for other_plugin:thing_request' }]);
  });

  it('sends instance output only to the controls subscribed to the instance', () => {
    const h = cluster();
    h.control('d');
    h.frame('c', 9, 'set_instance_output_subscriptions_request', { instance_ids: [42] });
    const fx = h.frame('s', 3, 'instance_output_event', { instance_id: 42, output: { message: 'hi' } });
    expect(framesTo(fx, 'c').map((f) => f.type)).toEqual(['instance_output_event']);
    expect(framesTo(fx, 'd')).toEqual([]);
  });
});
