import { describe, expect, it } from 'vitest';
import { ClusterioClose, CloseReason } from '../../src/protocols/clusterio/messages.js';
import { loadConfig } from '../../src/protocols/clusterio/config.js';
import { parseTree } from '../../src/protocols/clusterio/codec.js';
import { decodeClusterMsg, encodeClusterMsg } from '../../src/dialects/clusterio/cluster-wire.js';
import { INSTANCES_NS } from '../../src/dialects/clusterio/world/registry.js';
import type { ClusterMsg, Eff, InstanceRecord } from '../../src/dialects/clusterio/world/state.js';
import { closeOf, config, framesTo, harness } from '../support/clusterio-world.js';

/**
 * The Clusterio world across two instances, A and B (cluster mode), each on its own
 * manual clock: the test carries the `cluster` messages between them as the Broker would.
 */

type Name = 'A' | 'B';

function pair() {
  const nodes = { A: harness({ cluster: { instance: 'A' } }), B: harness({ cluster: { instance: 'B' } }) };
  nodes.A.loaded();
  nodes.B.loaded();
  /** Carries every cluster message in `fx` (said by `from`) and what it sets off, until quiet; returns what each side did. */
  const carry = (from: Name, fx: readonly Eff[]): Record<Name, Eff[]> => {
    const out: Record<Name, Eff[]> = { A: [], B: [] };
    const queue: Array<[Name, Eff]> = fx.map((e) => [from, e]);
    while (queue.length > 0) {
      const [src, e] = queue.shift() as [Name, Eff];
      if (e.type !== 'cluster') continue;
      const dst: Name = src === 'A' ? 'B' : 'A';
      if (e.to !== null && e.to !== dst) continue;
      // Through the wire format, as between processes.
      const wire = decodeClusterMsg(encodeClusterMsg(src, e.msg));
      expect(wire).toEqual({ from: src, msg: e.msg });
      const got = nodes[dst].d.feed({ type: 'remote', now: nodes[dst].clock.now(), from: src, msg: e.msg });
      out[dst].push(...got);
      for (const g of got) queue.push([dst, g]);
    }
    return out;
  };
  const msgs = (fx: readonly Eff[]): ClusterMsg[] => fx.flatMap((e) => (e.type === 'cluster' ? [e.msg] : []));
  return { ...nodes, carry, msgs };
}

function instance(id: number, slave: number | null): InstanceRecord {
  const loaded = loadConfig(parseTree(JSON.stringify(config(id, slave))));
  if (!loaded.ok) throw new Error(loaded.error);
  return { config: loaded.value, status: null };
}

/** A: control `c` and instance 42 (assigned to slave 7); B: slave 7 on socket `s`, known to A. */
function split() {
  const p = pair();
  const rec = instance(42, 7);
  p.A.d.feed({ type: 'registryRead', now: p.A.clock.now(), gen: 0, slaves: [], instances: [rec] });
  p.A.control('c');
  p.carry('B', p.B.slave('s', 7));
  return p;
}

describe('clusterio world across instances: slaves', () => {
  it('announces a slave on register and on going; the other keeps a replica and lists it connected', () => {
    const p = pair();
    const fx = p.B.slave('s', 7);
    expect(p.msgs(fx)).toContainEqual({ t: 'up', slave: { id: '7', mode: 'seed', attached: true, at: p.B.clock.now() } });
    p.carry('B', fx);
    expect(p.A.world().replicas.get('7')).toMatchObject({ instance: 'B', attached: true });
    // Slave records come from the shared store: A reads the one B wrote.
    p.A.d.feed({ type: 'registryRead', now: p.A.clock.now(), gen: 0, ns: 'clusterio:slaves', key: '7', slaves: [{ id: '7', name: 'slave-7', agent: 'clusterio', version: '2.0.0-alpha' }], instances: [] });
    p.A.control('c');
    const list = p.A.frame('c', 2, 'list_slaves_request', {});
    expect(framesTo(list, 'c')[0]?.data).toEqual({ seq: 2, list: [{ agent: 'clusterio', version: '2.0.0-alpha', name: 'slave-7', id: 7, connected: true }] });
    const gone = p.B.d.feed({ type: 'closed', now: p.B.clock.now(), conn: 's' });
    expect(p.msgs(gone)).toEqual([{ t: 'down', id: '7' }]);
    p.carry('B', gone);
    expect(p.A.world().replicas.size).toBe(0);
  });

  it('an instance that comes up is sent every slave here and sends its own back; one that goes takes its slaves along', () => {
    const p = pair();
    p.B.slave('s', 7);
    const up = p.B.d.feed({ type: 'peer', now: p.B.clock.now(), instance: 'A', up: true });
    expect(up).toContainEqual({ type: 'reread', gen: 1 });
    const sent = p.carry('B', up);
    expect(p.A.world().replicas.get('7')?.instance).toBe('B');
    expect(p.msgs(sent.A)).toEqual([{ t: 'sync', slaves: [], ask: false }]);
    p.A.d.feed({ type: 'peer', now: p.A.clock.now(), instance: 'B', up: false });
    expect(p.A.world().replicas.size).toBe(0);
  });

  it('one slave id on two instances: the later registration wins, on both sides, and the older connection is replaced', () => {
    const p = pair();
    const first = p.A.slave('a', 7);
    p.B.clock.advance(10);
    const second = p.B.slave('b', 7);
    // Both hear of the other: A closes its connection, B keeps its own.
    const onB = p.carry('A', first);
    expect(closeOf(onB.B, 'b')).toBeUndefined();
    const onA = p.carry('B', second);
    expect(closeOf(onA.A, 'a')).toEqual({ code: ClusterioClose.POLICY_VIOLATION, reason: CloseReason.REPLACED });
    expect(framesTo(onA.A, 'a').at(-1)?.data).toEqual({ reason: CloseReason.REPLACED });
    expect(p.A.world().slaves.has('7')).toBe(false);
    expect(p.A.world().replicas.get('7')?.instance).toBe('B');
    expect(p.B.world().slaves.has('7')).toBe(true);
    expect(p.B.world().replicas.has('7')).toBe(false);
    // Registering again on A, with B's known: later than B's whatever the clocks say.
    p.B.clock.advance(60_000);
    const third = p.A.slave('a2', 7);
    expect(p.A.world().slaves.get('7')?.registeredAt).toBe(p.B.clock.now() - 60_000 + 1);
    const back = p.carry('A', third);
    expect(closeOf(back.B, 'b')?.reason).toBe(CloseReason.REPLACED);
    expect(p.B.world().replicas.get('7')?.instance).toBe('A');
  });
});

describe('clusterio world across instances: forwarding', () => {
  it('forwards a control request on A to the slave on B and relays its answer under the control seq, bytes unchanged', () => {
    const p = split();
    const req = p.A.text('c', '{"seq":9,"type":"send_rcon_request","data":{"instance_id":42,"command":"/time"}}');
    expect(framesTo(req, 'c')).toEqual([]);
    expect(p.A.d.timers.get('request:ask#1')?.at).toBe(p.A.clock.now() + 5_000);
    const onB = p.carry('A', req);
    const asked = framesTo(onB.B, 's');
    expect(asked).toEqual([{ seq: 3, type: 'send_rcon_request', data: { instance_id: 42, command: '/time' } }]);
    const answer = p.B.text('s', '{"seq":3,"type":"send_rcon_response","data":{"seq":3,"result":"1234567890123456789012"}}');
    const back = p.carry('B', answer);
    const relayed = back.A.filter((e) => (e.type === 'send' || e.type === 'deliver') && 'frame' in e).map((e) => (e as { frame: string }).frame);
    expect(relayed).toEqual(['{"seq":3,"type":"send_rcon_response","data":{"result":"1234567890123456789012","seq":9}}']);
    expect(p.A.d.timers.has('request:ask#1')).toBe(false);
    expect(p.A.world().asks.size).toBe(0);
    expect(p.B.world().pending.size).toBe(0);
  });

  it('times out when the other instance does not answer, and ignores its late answer', () => {
    const p = split();
    const req = p.A.frame('c', 9, 'start_instance_request', { instance_id: 42 });
    const fx = p.A.d.advance(5_000);
    expect(framesTo(fx, 'c').map((f) => f.data)).toEqual([{ seq: 9, error: 'Slave 7 did not answer start_instance_request in time' }]);
    // B asked the slave; its answer comes back too late for A.
    const onB = p.carry('A', req);
    expect(framesTo(onB.B, 's')[0]?.type).toBe('start_instance_request');
    const late = p.carry('B', p.B.frame('s', 3, 'start_instance_response', { seq: 3 }));
    expect(framesTo(late.A, 'c')).toEqual([]);
    expect(late.A.some((e) => e.type === 'log' && e.msg === 'clusterio: late answer from another instance ignored')).toBe(true);
  });

  it('fails a request when the slave goes before answering, or when its instance is gone', () => {
    const p = split();
    p.carry('A', p.A.frame('c', 9, 'stop_instance_request', { instance_id: 42 }));
    const gone = p.carry('B', p.B.d.feed({ type: 'closed', now: p.B.clock.now(), conn: 's' }));
    expect(framesTo(gone.A, 'c').map((f) => f.data)).toEqual([{ seq: 9, error: 'Slave 7 went offline (disconnected) before answering stop_instance_request' }]);
    expect(framesTo(p.A.frame('c', 10, 'stop_instance_request', { instance_id: 42 }), 'c').map((f) => f.data)).toEqual([
      { seq: 10, error: 'Slave 7 hosting instance 42 is not connected' },
    ]);

    const q = split();
    q.A.frame('c', 9, 'create_save_request', { instance_id: 42 });
    const down = q.A.d.feed({ type: 'peer', now: q.A.clock.now(), instance: 'B', up: false });
    expect(framesTo(down, 'c').map((f) => f.data)).toEqual([{ seq: 9, error: 'Slave 7 went offline (its Muster instance B is gone) before answering create_save_request' }]);
    expect(q.A.d.timers.size).toBeGreaterThan(0);
    expect([...q.A.d.timers.keys()].some((k) => k.startsWith('request:'))).toBe(false);
  });

  it('assigns an instance to a slave on the other instance: durable first, then assign_instance_request there, its answer relayed', () => {
    const p = split();
    p.A.settle(p.A.frame('c', 2, 'create_instance_request', { serialized_config: config(5) }));
    const cmd = p.A.frame('c', 3, 'assign_instance_command_request', { instance_id: 5, slave_id: 7 });
    expect(p.msgs(cmd).filter((m) => m.t === 'ask')).toEqual([]);
    const settled = p.A.settle(cmd);
    const onB = p.carry('A', settled);
    const push = framesTo(onB.B, 's');
    expect(push.map((f) => f.type)).toEqual(['assign_instance_request']);
    expect(push[0]?.data).toMatchObject({ instance_id: 5 });
    const back = p.carry('B', p.B.frame('s', 2, 'assign_instance_response', { seq: push[0]?.seq }));
    expect(framesTo(back.A, 'c')).toEqual([{ seq: 4, type: 'assign_instance_command_response', data: { seq: 3 } }]);
  });

  it('deletes an instance through a slave on the other instance: off the registry once the slave says so', () => {
    const p = split();
    const onB = p.carry('A', p.A.frame('c', 9, 'delete_instance_request', { instance_id: 42 }));
    const asked = framesTo(onB.B, 's')[0];
    const back = p.carry('B', p.B.frame('s', 2, 'delete_instance_response', { seq: asked?.seq }));
    expect(back.A).toContainEqual(expect.objectContaining({ type: 'unpersist', namespace: INSTANCES_NS, key: '42' }));
    expect(p.A.world().registry.instances.has('42')).toBe(false);
  });

  it('carries broadcast plugin events and instance output to the other instance', () => {
    const p = split();
    p.A.slave('s2', 8);
    p.A.frame('c', 2, 'set_instance_output_subscriptions_request', { instance_ids: [42] });
    const chat = p.carry('B', p.B.frame('s', 2, 'global_chat:chat_event', { instance_name: 'x', content: 'hi' }));
    expect(framesTo(chat.A, 's2')).toEqual([{ seq: 3, type: 'global_chat:chat_event', data: { instance_name: 'x', content: 'hi' } }]);
    const out = p.carry('B', p.B.frame('s', 3, 'instance_output_event', { instance_id: 42, output: { message: 'x' } }));
    expect(framesTo(out.A, 'c').map((f) => f.type)).toEqual(['instance_output_event']);
  });
});

describe('clusterio world across instances: the shared registry', () => {
  it('says what it wrote once durable; the other reads it again; a record written here since a read was issued is kept', () => {
    const p = pair();
    p.A.control('c');
    const create = p.A.frame('c', 2, 'create_instance_request', { serialized_config: config(42) });
    expect(create).toContainEqual({ type: 'cluster', to: null, msg: { t: 'changed', ns: INSTANCES_NS, key: '42' }, afterWrites: true });
    const onB = p.carry('A', create);
    const reread = onB.B.find((e) => e.type === 'reread');
    expect(reread).toEqual({ type: 'reread', gen: 0, ns: INSTANCES_NS, key: '42' });
    p.B.d.feed({ type: 'registryRead', now: p.B.clock.now(), gen: 0, ns: INSTANCES_NS, key: '42', slaves: [], instances: [instance(42, null)] });
    expect(p.B.world().registry.instances.has('42')).toBe(true);
    // B deletes 42 after issuing a full read that still holds it: the read does not bring it back.
    p.B.control('c');
    const readGen = p.B.world().writeGen;
    p.B.frame('c', 2, 'delete_instance_request', { instance_id: 42 });
    p.B.frame('c', 3, 'set_instance_config_field_request', { instance_id: 42, field: 'instance.name', value: 'renamed' });
    expect(p.B.world().registry.instances.get('42')?.config).toBeDefined();
    p.B.d.feed({ type: 'registryRead', now: p.B.clock.now(), gen: readGen, slaves: [], instances: [instance(42, null), instance(43, null)] });
    expect(p.B.world().registry.instances.has('43')).toBe(true);
    const name = p.B.world().registry.instances.get('42')?.config.groups.find((g) => g.name === 'instance')?.fields.name;
    expect(name).toBe('renamed');
    // A record the store no longer has is dropped by a full read.
    p.B.d.feed({ type: 'registryRead', now: p.B.clock.now(), gen: p.B.world().writeGen, slaves: [], instances: [instance(42, null)] });
    expect(p.B.world().registry.instances.has('43')).toBe(false);
    // No read out: the write numbers are dropped.
    expect(p.B.world().written.size).toBe(0);
    // A failed read applies nothing.
    p.B.d.feed({ type: 'registryRead', now: p.B.clock.now(), gen: p.B.world().writeGen, slaves: [], instances: [], failed: true });
    expect(p.B.world().registry.instances.has('42')).toBe(true);
  });

  it('in one process (no cluster config) says nothing to other instances', () => {
    const h = harness();
    h.loaded();
    h.control('c');
    const fx = [...h.slave('s', 7), ...h.frame('c', 2, 'create_instance_request', { serialized_config: config(42) })];
    expect(fx.filter((e) => e.type === 'cluster' || e.type === 'reread')).toEqual([]);
  });
});
