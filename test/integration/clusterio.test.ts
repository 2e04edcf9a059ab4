import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/dialects/clusterio/token.js';
import type { PeerOptions } from '../support/harness/harness.js';
import { ADMIN_TOKEN, RawPeer, settle, until } from '../support/server.js';
import {
  controlToken,
  dialectOf,
  expectClose,
  instanceConfig,
  ClusterioHarness,
  Seed2020,
  slaveToken,
  type Frame,
} from '../support/harness/clusterio.js';

const h = new ClusterioHarness();
const peers = h.peers;
const seeds: Seed2020[] = [];

const open = (opts: PeerOptions = {}): Promise<RawPeer> => h.hello(opts);

async function slave(id = 4242, name = 'muster-slave-1'): Promise<Seed2020> {
  const s = await Seed2020.connect(h.srv, 'slave', { id, name });
  seeds.push(s);
  return s;
}

async function control(): Promise<Seed2020> {
  const c = await Seed2020.connect(h.srv, 'control');
  seeds.push(c);
  return c;
}

const next = async (p: RawPeer): Promise<Frame> => JSON.parse(await p.nextRaw()) as Frame;

/** Moves the clock in heartbeat-sized steps, letting peers answer pings between them (round trips). */
async function advance(ms: number, stepMs = 10_000): Promise<void> {
  for (let left = ms; left > 0; left -= stepMs) {
    h.srv.clock.advance(Math.min(stepMs, left));
    await settle([...peers, ...seeds.map((x) => x.peer)]);
  }
}

/** A list_slaves round trip on a control: every frame before it has been handled. */
async function sync(c: Seed2020): Promise<void> {
  await c.request('list_slaves_request');
}

beforeEach(async () => {
  await h.start();
});

afterEach(async () => {
  for (const s of seeds.splice(0)) {
    expect(s.violations).toEqual([]);
    s.close();
  }
  await h.teardown((srv) => {
    const sum = dialectOf(srv).summary();
    expect({ ...sum, knownSlaves: 0, instances: 0 }).toEqual({
      connections: 0,
      slaves: 0,
      controls: 0,
      sessions: 0,
      pendingRequests: 0,
      knownSlaves: 0,
      instances: 0,
    });
  });
});

describe('clusterio: the seed handshake', () => {
  it('sends hello {version} as seq 1, and ready {} as seq 2 to a slave', async () => {
    const p = await open();
    p.send({ seq: 1, type: 'register_slave', data: { token: await slaveToken(4242), agent: 'Clusterio Slave', version: '2.0.0-alpha', id: 4242, name: 'muster-slave-1' } });
    expect(await next(p)).toEqual({ seq: 2, type: 'ready', data: {} });
    p.send({ seq: 2, type: 'update_instances_event', data: { instances: [] } });
    expect(await p.quiet()).toBe(true);
    expect(dialectOf(h.srv).summary().slaves).toBe(1);
  });

  it('answers register_control with ready {}', async () => {
    const p = await open();
    p.send({ seq: 1, type: 'register_control', data: { token: await controlToken(), agent: 'clusterctl', version: '2.0.0-alpha' } });
    expect(await next(p)).toEqual({ seq: 2, type: 'ready', data: {} });
  });

  const badHandshakes: Array<[string, (p: RawPeer) => Promise<void> | void]> = [
    ['malformed JSON', (p) => p.send('{"seq":1,')],
    ['a request before registering', (p) => p.send({ seq: 1, type: 'list_slaves_request', data: {} })],
    ['an unknown type', (p) => p.send({ seq: 1, type: 'bogus', data: {} })],
    ['register_slave without a token', (p) => p.send({ seq: 1, type: 'register_slave', data: { agent: 'a', version: 'v', id: 1, name: 'n' } })],
    ['register_control with an extra property', async (p) => p.send({ seq: 1, type: 'register_control', data: { token: await controlToken(), agent: 'a', version: 'v', x: 1 } })],
    ['register_slave with a string id', async (p) => p.send({ seq: 1, type: 'register_slave', data: { token: await slaveToken(1), agent: 'a', version: 'v', id: '1', name: 'n' } })],
    ['an extra envelope property', async (p) => p.send({ seq: 1, type: 'register_control', data: { token: await controlToken(), agent: 'a', version: 'v' }, ts: 1 })],
    ['a string seq', async (p) => p.send({ seq: '1', type: 'register_control', data: { token: await controlToken(), agent: 'a', version: 'v' } })],
    ['a binary frame', (p) => p.ws.send(Buffer.from('{}'), { binary: true })],
    ['a JSON array', (p) => p.send('[]')],
  ];
  for (const [name, act] of badHandshakes) {
    it(`closes ${name} with close {reason: "Invalid handshake"} and 1008`, async () => {
      const p = await open();
      await act(p);
      const f = await expectClose(p, 'Invalid handshake', 1008);
      expect(f.seq).toBe(2);
    });
  }

  const badTokens: Array<[string, () => Promise<Record<string, unknown>>]> = [
    ['a token signed with another secret', async () => ({ type: 'register_control', data: { token: await mintToken('other', { aud: 'control' }), agent: 'a', version: 'v' } })],
    ['a slave token used by a control', async () => ({ type: 'register_control', data: { token: await slaveToken(1), agent: 'a', version: 'v' } })],
    ['a control token used by a slave', async () => ({ type: 'register_slave', data: { token: await controlToken(), agent: 'a', version: 'v', id: 1, name: 'n' } })],
    ['a slave token for another id', async () => ({ type: 'register_slave', data: { token: await slaveToken(2), agent: 'a', version: 'v', id: 1, name: 'n' } })],
    ['a token that is not a JWT', async () => ({ type: 'register_control', data: { token: 'nope', agent: 'a', version: 'v' } })],
    [
      'an unsigned (alg none) token',
      async () => {
        const b = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
        return { type: 'register_control', data: { token: `${b({ alg: 'none' })}.${b({ aud: 'control' })}.`, agent: 'a', version: 'v' } };
      },
    ],
  ];
  for (const [name, frame] of badTokens) {
    it(`refuses ${name} with close {reason: "Authentication failed"} and 4003`, async () => {
      const p = await open();
      p.send({ seq: 1, ...(await frame()) });
      await expectClose(p, 'Authentication failed', 4003);
    });
  }

  it('accepts a slave id beyond 2^53 whose token carries the same digits', async () => {
    const id = '870000000000000123';
    const p = await open();
    p.send(`{"seq":1,"type":"register_slave","data":{"token":"${await slaveToken(id)}","agent":"a","version":"v","id":${id},"name":"big"}}`);
    expect(await next(p)).toEqual({ seq: 2, type: 'ready', data: {} });
    const c = await control();
    c.sendRaw('{"seq":2,"type":"list_slaves_request","data":{}}');
    const raw = await c.peer.nextRaw();
    expect(raw).toContain(`"id":${id}`);
  });

  it('closes a socket that does not register within the handshake timeout (1008)', async () => {
    const p = await open();
    h.srv.clock.advance(29_999);
    expect(await p.quiet()).toBe(true);
    h.srv.clock.advance(1);
    await expectClose(p, 'Handshake timeout', 1008);
  });

  it('a close during the handshake closes the socket, with nothing sent back', async () => {
    const p = await open();
    p.send({ seq: 1, type: 'close', data: { reason: 'quit' } });
    expect((await p.waitClose()).code).toBe(1000);
    expect(p.frames).toEqual([]);
  });

  it('a slave that registers again closes its older connection with "Registered from another connection"', async () => {
    const first = await slave(4242);
    const second = await slave(4242);
    const f = await first.next();
    expect(f).toEqual({ seq: 3, type: 'close', data: { reason: 'Registered from another connection' } });
    expect((await first.peer.waitClose()).code).toBe(1008);
    const c = await control();
    const list = await c.request('list_slaves_request');
    expect(list.data.list).toEqual([{ agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'muster-slave-1', id: 4242, connected: true }]);
    expect(second.peer.isClosed).toBe(false);
  });
});

describe('clusterio: invalid messages after ready close with 4000', () => {
  const cases: Array<[string, 'slave' | 'control', string | Record<string, unknown>]> = [
    ['an unknown type', 'slave', { seq: 2, type: 'bogus_event', data: {} }],
    ['an unknown plugin-less request', 'control', { seq: 2, type: 'frobnicate_request', data: {} }],
    ['data failing its schema (string instance_id)', 'control', { seq: 2, type: 'start_instance_request', data: { instance_id: '777' } }],
    ['an extra data property', 'control', { seq: 2, type: 'list_slaves_request', data: { x: 1 } }],
    ['an extra envelope property', 'slave', { seq: 2, type: 'update_instances_event', data: { instances: [] }, ts: 5 }],
    ['malformed JSON', 'control', '{"seq":2,"type"'],
    ['a fractional seq', 'control', { seq: 2.5, type: 'list_slaves_request', data: {} }],
    ['data that is not an object', 'control', { seq: 2, type: 'list_slaves_request', data: [] }],
    ['a control request from a slave', 'slave', { seq: 2, type: 'list_slaves_request', data: {} }],
    ['a slave event from a control', 'control', { seq: 2, type: 'update_instances_event', data: { instances: [] } }],
    ['a heartbeat from a seed client', 'slave', { seq: 2, type: 'heartbeat', data: { last_seq: 1 } }],
    ['a response to an unknown seq', 'slave', { seq: 2, type: 'start_instance_response', data: { seq: 99 } }],
    ['a plugin response to an unknown seq', 'slave', { seq: 2, type: 'research_sync:sync_technologies_response', data: { seq: 5 } }],
    ['a response from a control', 'control', { seq: 2, type: 'list_slaves_response', data: { seq: 1, list: [] } }],
    ['update_instances_event with a bad instance', 'slave', { seq: 2, type: 'update_instances_event', data: { instances: [{ config: {} }] } }],
  ];
  for (const [name, role, frame] of cases) {
    it(`${name} (${role})`, async () => {
      const c = role === 'slave' ? await slave() : await control();
      c.sendRaw(typeof frame === 'string' ? frame : JSON.stringify(frame));
      const f = await c.next();
      expect(f.type).toBe('close');
      expect(f.data.reason).toMatch(/^Invalid message: /);
      expect((await c.peer.waitClose()).code).toBe(4000);
    });
  }

  it('a binary frame', async () => {
    const c = await control();
    c.peer.ws.send(Buffer.from('{}'), { binary: true });
    const f = await c.next();
    expect(f.data.reason).toMatch(/^Invalid message: /);
    expect((await c.peer.waitClose()).code).toBe(4000);
  });

  it('non-UTF-8 text closes with 1007 and no close frame', async () => {
    const c = await control();
    c.peer.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await c.peer.waitClose()).code).toBe(1007);
    expect(c.peer.frames).toEqual([]);
  });

  it('a control that says close is disconnected, without anything sent back', async () => {
    const c = await control();
    c.send('close', { reason: 'quit' });
    expect((await c.peer.waitClose()).code).toBe(1000);
    expect(c.peer.frames).toEqual([]);
    await until(() => dialectOf(h.srv).summary().controls === 0);
  });
});

describe('clusterio: the registry', () => {
  it('lists slaves with {agent, version, name, id, connected}', async () => {
    const c = await control();
    expect((await c.request('list_slaves_request')).data).toEqual({ seq: 2, list: [] });
    const s = await slave(4242);
    expect((await c.request('list_slaves_request')).data.list).toEqual([
      { agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'muster-slave-1', id: 4242, connected: true },
    ]);
    s.close();
    await until(() => dialectOf(h.srv).summary().slaves === 0);
    expect((await c.request('list_slaves_request')).data.list).toEqual([
      { agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'muster-slave-1', id: 4242, connected: false },
    ]);
  });

  it('creates an instance (the ctl payload), lists it, and refuses a duplicate id', async () => {
    const c = await control();
    expect((await c.request('create_instance_request', { serialized_config: instanceConfig(777) })).data).toEqual({ seq: 2 });
    expect((await c.request('list_instances_request')).data).toEqual({ seq: 3, list: [{ name: 'test-inst', id: 777, assigned_slave: null }] });
    const dup = await c.request('create_instance_request', { serialized_config: instanceConfig(777, 'again') });
    expect(dup.data).toEqual({ seq: 4, error: 'Instance with ID 777 already exists' });
  });

  it('refuses a config without an integer instance.id with an error response', async () => {
    const c = await control();
    const r = await c.request('create_instance_request', { serialized_config: { groups: [{ name: 'factorio', fields: {} }] } });
    expect(r.data.error).toMatch(/instance\.id/);
  });

  it('returns the config with unknown groups and fields kept, and big numbers exact', async () => {
    const c = await control();
    const cfg = instanceConfig(101, 'inst-a');
    (cfg.groups as unknown[]).push({ name: 'global_chat', fields: { enabled: true, extra: 'x' } });
    const text = JSON.stringify({ serialized_config: cfg }).replace('"extra":"x"', '"channel":870000000000000123');
    c.sendRaw(`{"seq":2,"type":"create_instance_request","data":${text}}`);
    expect((await c.next()).data).toEqual({ seq: 2 });
    c.send('get_instance_config_request', { instance_id: 101 });
    const raw = await c.peer.nextRaw();
    c.check(raw);
    expect(raw).toContain('"channel":870000000000000123');
    const f = JSON.parse(raw) as Frame;
    expect(f.type).toBe('get_instance_config_response');
    const groups = (f.data.serialized_config as { groups: Array<{ name: string }> }).groups.map((g) => g.name);
    expect(groups).toEqual(['instance', 'factorio', 'global_chat']);
  });

  it('answers get_instance_config for an unknown instance with an error', async () => {
    const c = await control();
    expect((await c.request('get_instance_config_request', { instance_id: 5 })).data).toEqual({ seq: 2, error: 'Instance with ID 5 does not exist' });
  });

  describe('set_instance_config_field converts the string value as the 2020 master did', () => {
    const cases: Array<[string, string, unknown]> = [
      ['factorio.game_port', '34197', 34197],
      ['factorio.game_port', '1.5', 1.5],
      ['factorio.game_port', '', null],
      ['factorio.rcon_password', 'hunter2', 'hunter2'],
      ['factorio.rcon_password', '', null],
      ['factorio.settings', '{"tags":["a"],"auto_pause":true}', { tags: ['a'], auto_pause: true }],
      ['instance.name', 'renamed', 'renamed'],
      ['factorio.unknown_field', '42', '42'],
      ['mygroup.flag', 'on', 'on'],
    ];
    for (const [field, value, expected] of cases) {
      it(`${field} = ${JSON.stringify(value)} → ${JSON.stringify(expected)}`, async () => {
        const c = await control();
        await c.request('create_instance_request', { serialized_config: instanceConfig(777) });
        expect((await c.request('set_instance_config_field_request', { instance_id: 777, field, value })).data).toEqual({ seq: 3 });
        const cfg = (await c.request('get_instance_config_request', { instance_id: 777 })).data.serialized_config as {
          groups: Array<{ name: string; fields: Record<string, unknown> }>;
        };
        const [g, f] = field.split('.') as [string, string];
        expect(cfg.groups.find((x) => x.name === g)?.fields[f]).toEqual(expected);
      });
    }

    const errors: Array<[string, string]> = [
      ['factorio.game_port', 'abc'],
      ['factorio.game_port', '12abc'],
      ['factorio.settings', '{not json'],
      ['factorio.settings', '[1,2]'],
      ['factorio.settings', ''],
      ['instance.name', ''],
      ['instance.id', '1.5'],
    ];
    for (const [field, value] of errors) {
      it(`${field} = ${JSON.stringify(value)} is an error response`, async () => {
        const c = await control();
        await c.request('create_instance_request', { serialized_config: instanceConfig(777) });
        const r = await c.request('set_instance_config_field_request', { instance_id: 777, field, value });
        expect(r.data).toEqual({ seq: 3, error: expect.any(String) });
      });
    }

    it('keeps every digit of an integer beyond 2^53', async () => {
      const c = await control();
      await c.request('create_instance_request', { serialized_config: instanceConfig(777) });
      await c.request('set_instance_config_field_request', { instance_id: 777, field: 'factorio.rcon_port', value: '870000000000000123' });
      c.send('get_instance_config_request', { instance_id: 777 });
      expect(await c.peer.nextRaw()).toContain('"rcon_port":870000000000000123');
    });

    it('instance.id moves the instance to its new id', async () => {
      const c = await control();
      await c.request('create_instance_request', { serialized_config: instanceConfig(777) });
      await c.request('create_instance_request', { serialized_config: instanceConfig(778, 'other') });
      expect((await c.request('set_instance_config_field_request', { instance_id: 777, field: 'instance.id', value: '778' })).data.error).toMatch(/already exists/);
      expect((await c.request('set_instance_config_field_request', { instance_id: 777, field: 'instance.id', value: '779' })).data).toEqual({ seq: 5 });
      expect((await c.request('list_instances_request')).data.list).toEqual([
        { name: 'other', id: 778, assigned_slave: null },
        { name: 'test-inst', id: 779, assigned_slave: null },
      ]);
    });

    it('an unknown instance is an error', async () => {
      const c = await control();
      const r = await c.request('set_instance_config_field_request', { instance_id: 1, field: 'instance.name', value: 'x' });
      expect(r.data).toEqual({ seq: 2, error: 'Instance with ID 1 does not exist' });
    });
  });
});

describe('clusterio: assigning and forwarding', () => {
  async function assigned(): Promise<{ c: Seed2020; s: Seed2020 }> {
    const s = await slave(4242);
    s.send('update_instances_event', { instances: [] });
    const c = await control();
    await c.request('create_instance_request', { serialized_config: instanceConfig(777) });
    const seq = c.send('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
    const a = await s.next();
    expect(a.type).toBe('assign_instance_request');
    s.send('assign_instance_response', { seq: a.seq });
    expect((await c.next()).data).toEqual({ seq });
    return { c, s };
  }

  it('assign_instance_command: the slave gets assign_instance_request with the master seq; the control gets the answer with its seq', async () => {
    const s = await slave(4242);
    const c = await control();
    await c.request('create_instance_request', { serialized_config: instanceConfig(777) });
    const seq = c.send('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
    const a = await s.next();
    expect(a).toEqual({
      seq: 3,
      type: 'assign_instance_request',
      data: { instance_id: 777, serialized_config: instanceConfig(777, 'test-inst', 4242) },
    });
    s.send('assign_instance_response', { seq: 3 });
    expect(await c.next()).toEqual({ seq: 4, type: 'assign_instance_command_response', data: { seq } });
    expect((await c.request('list_instances_request')).data.list).toEqual([{ name: 'test-inst', id: 777, assigned_slave: 4242 }]);
  });

  it('assign_instance_command to an offline slave, or an unknown instance, is an error', async () => {
    const c = await control();
    await c.request('create_instance_request', { serialized_config: instanceConfig(777) });
    expect((await c.request('assign_instance_command_request', { instance_id: 777, slave_id: 1 })).data).toEqual({ seq: 3, error: 'Slave 1 is not connected' });
    expect((await c.request('assign_instance_command_request', { instance_id: 9, slave_id: 1 })).data.error).toBe('Instance with ID 9 does not exist');
  });

  const forwarded: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
    ['start_instance_request', { instance_id: 777 }, {}],
    ['stop_instance_request', { instance_id: 777 }, {}],
    ['create_save_request', { instance_id: 777 }, {}],
    ['send_rcon_request', { instance_id: 777, command: '/c game.print(1)' }, { result: 'printed' }],
  ];
  for (const [type, data, answer] of forwarded) {
    it(`forwards ${type} with the master's seq and relays the answer under the control's seq`, async () => {
      const { c, s } = await assigned();
      const seq = c.send(type, data);
      const f = await s.next();
      expect(f).toEqual({ seq: expect.any(Number), type, data });
      s.send(type.replace('_request', '_response'), { seq: f.seq, ...answer });
      expect((await c.next()).data).toEqual({ ...answer, seq });
    });

    it(`relays the slave's error for ${type}`, async () => {
      const { c, s } = await assigned();
      const seq = c.send(type, data);
      const f = await s.next();
      s.send(type.replace('_request', '_response'), { seq: f.seq, error: 'Instance ID 777 is not running' });
      expect((await c.next()).data).toEqual({ error: 'Instance ID 777 is not running', seq });
    });
  }

  it('delete_instance: forwarded, and on success the master forgets the instance', async () => {
    const { c, s } = await assigned();
    const seq = c.send('delete_instance_request', { instance_id: 777 });
    const f = await s.next();
    expect(f.type).toBe('delete_instance_request');
    s.send('delete_instance_response', { seq: f.seq });
    expect((await c.next()).data).toEqual({ seq });
    expect((await c.request('list_instances_request')).data.list).toEqual([]);
  });

  it('forwards the request data unchanged (numbers beyond 2^53 included)', async () => {
    const { c, s } = await assigned();
    c.sendRaw('{"seq":9,"type":"send_rcon_request","data":{"instance_id":777,"command":"/c x"}}');
    const raw = await s.peer.nextRaw();
    s.check(raw);
    const f = JSON.parse(raw) as Frame;
    expect(raw).toBe(`{"seq":${f.seq},"type":"send_rcon_request","data":{"instance_id":777,"command":"/c x"}}`);
    s.peer.send(`{"seq":50,"type":"send_rcon_response","data":{"seq":${f.seq},"result":"id 870000000000000123"}}`);
    const back = await c.peer.nextRaw();
    c.check(back);
    expect(back).toContain('"result":"id 870000000000000123"');
  });

  it('an unassigned instance, an unknown instance and an offline slave each get an error response', async () => {
    const c = await control();
    await c.request('create_instance_request', { serialized_config: instanceConfig(777) });
    expect((await c.request('start_instance_request', { instance_id: 777 })).data).toEqual({ seq: 3, error: 'Instance 777 is not assigned to a slave' });
    expect((await c.request('start_instance_request', { instance_id: 5 })).data).toEqual({ seq: 4, error: 'Instance with ID 5 does not exist' });
    await c.request('create_instance_request', { serialized_config: instanceConfig(778, 'b', 4242) });
    expect((await c.request('stop_instance_request', { instance_id: 778 })).data).toEqual({ seq: 6, error: 'Slave 4242 hosting instance 778 is not connected' });
  });

  it('a request whose slave disappears mid-flight gets an error response', async () => {
    const { c, s } = await assigned();
    const seq = c.send('start_instance_request', { instance_id: 777 });
    expect((await s.next()).type).toBe('start_instance_request');
    s.close();
    const f = await c.next();
    expect(f.data).toEqual({ seq, error: expect.stringMatching(/Slave 4242 went offline/) });
  });

  it('a request the slave never answers times out with an error; a late answer is ignored', async () => {
    const { c, s } = await assigned();
    const seq = c.send('start_instance_request', { instance_id: 777 });
    const f = await s.next();
    // In steps, so that both peers can answer the pings on the way.
    await advance(119_999);
    expect(await c.peer.quiet()).toBe(true);
    h.srv.clock.advance(1);
    expect((await c.next()).data).toEqual({ seq, error: expect.stringMatching(/did not answer/) });
    s.send('start_instance_response', { seq: f.seq });
    await sync(c);
    expect(s.peer.isClosed).toBe(false);
    expect(dialectOf(h.srv).summary().pendingRequests).toBe(0);
  });

  it('a response of the wrong type for a seq closes the slave with 4000', async () => {
    const { c, s } = await assigned();
    c.send('start_instance_request', { instance_id: 777 });
    const f = await s.next();
    s.send('stop_instance_response', { seq: f.seq });
    const close = await s.next();
    expect(close.data.reason).toMatch(/^Invalid message: /);
    expect((await s.peer.waitClose()).code).toBe(4000);
    expect((await c.next()).data.error).toMatch(/went offline/);
  });

  it('set_instance_config_field on an assigned instance sends the slave the new config, and answers with its answer', async () => {
    const { c, s } = await assigned();
    const seq = c.send('set_instance_config_field_request', { instance_id: 777, field: 'factorio.game_port', value: '34197' });
    const f = await s.next();
    expect(f.type).toBe('assign_instance_request');
    const groups = (f.data.serialized_config as { groups: Array<{ name: string; fields: Record<string, unknown> }> }).groups;
    expect(groups.find((g) => g.name === 'factorio')?.fields.game_port).toBe(34197);
    s.send('assign_instance_response', { seq: f.seq });
    expect((await c.next()).data).toEqual({ seq });
  });
});

describe('clusterio: update_instances_event', () => {
  it('sends assign_instance_request for an instance the slave reported and the master did not know (trace 1.6.3)', async () => {
    const s = await slave(4242);
    const cfg = instanceConfig(101, 'inst-a', 4242);
    (cfg.groups as unknown[]).push(
      { name: 'global_chat', fields: { enabled: true } },
      { name: 'research_sync', fields: { enabled: true } },
      { name: 'statistics_exporter', fields: { enabled: true } },
      { name: 'subspace_storage', fields: { enabled: true, log_item_transfers: false } },
    );
    s.send('update_instances_event', { instances: [{ serialized_config: cfg }] });
    expect(await s.next()).toEqual({ seq: 3, type: 'assign_instance_request', data: { instance_id: 101, serialized_config: cfg } });
    s.send('assign_instance_response', { seq: 3 });
    const c = await control();
    expect((await c.request('list_instances_request')).data.list).toEqual([{ name: 'inst-a', id: 101, assigned_slave: 4242 }]);
  });

  it('records a reported instance as assigned to the reporting slave', async () => {
    const s = await slave(4242);
    s.send('update_instances_event', { instances: [{ serialized_config: instanceConfig(5, 'x', null) }] });
    const f = await s.next();
    expect((f.data.serialized_config as { groups: Array<{ fields: Record<string, unknown> }> }).groups[0]?.fields.assigned_slave).toBe(4242);
    s.send('assign_instance_response', { seq: f.seq });
  });

  it('pushes the configs of the instances assigned to the slave, and leaves others alone', async () => {
    const c = await control();
    await c.request('create_instance_request', { serialized_config: instanceConfig(1, 'mine', 4242) });
    await c.request('create_instance_request', { serialized_config: instanceConfig(2, 'theirs', 9) });
    const s = await slave(4242);
    s.send('update_instances_event', { instances: [{ serialized_config: instanceConfig(2, 'theirs-copy', 4242) }] });
    const f = await s.next();
    expect(f.data.instance_id).toBe(1);
    s.send('assign_instance_response', { seq: f.seq });
    expect(await s.peer.quiet()).toBe(true);
    expect((await c.request('list_instances_request')).data.list).toEqual([
      { name: 'mine', id: 1, assigned_slave: 4242 },
      { name: 'theirs', id: 2, assigned_slave: 9 },
    ]);
  });

  it('accepts the optional status and shows it in the admin API and metrics', async () => {
    const s = await slave(4242);
    s.send('update_instances_event', { instances: [{ serialized_config: instanceConfig(7, 'st', 4242), status: 'running' }] });
    const f = await s.next();
    s.send('assign_instance_response', { seq: f.seq });
    await until(() => dialectOf(h.srv).summary().pendingRequests === 0);
    const res = await fetch(`${h.srv.httpBase}/api/v1/clusterio/instances`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(await res.json()).toEqual([
      expect.objectContaining({ id: 7, name: 'st', assigned_slave: 4242, status: 'running', slave_connected: true }),
    ]);
  });
});

describe('clusterio: instance output and plugins', () => {
  it('fans instance_output_event out to subscribed controls only, unchanged', async () => {
    const s = await slave(4242);
    const a = await control();
    const b = await control();
    expect((await a.request('set_instance_output_subscriptions_request', { instance_ids: [777] })).data).toEqual({ seq: 2 });
    await b.request('set_instance_output_subscriptions_request', { instance_ids: [1] });
    const output = { source: 'stdout', received: 1585000000.5, format: 'seconds', type: 'log', message: 'Hello' };
    s.send('instance_output_event', { instance_id: 777, output });
    const f = await a.next();
    expect(f).toEqual({ seq: 4, type: 'instance_output_event', data: { instance_id: 777, output } });
    expect(await b.peer.quiet()).toBe(true);
  });

  it('keeps numbers beyond 2^53 in instance output exactly', async () => {
    const s = await slave(4242);
    const a = await control();
    await a.request('set_instance_output_subscriptions_request', { instance_ids: [777] });
    s.sendRaw('{"seq":2,"type":"instance_output_event","data":{"instance_id":777,"output":{"source":"s","received":1,"format":"f","type":"t","message":"m","id":870000000000000123}}}');
    const raw = await a.peer.nextRaw();
    expect(raw).toBe('{"seq":4,"type":"instance_output_event","data":{"instance_id":777,"output":{"source":"s","received":1,"format":"f","type":"t","message":"m","id":870000000000000123}}}');
  });

  it('replacing subscriptions stops the old ones', async () => {
    const s = await slave(4242);
    const a = await control();
    await a.request('set_instance_output_subscriptions_request', { instance_ids: [777] });
    await a.request('set_instance_output_subscriptions_request', { instance_ids: [] });
    s.send('instance_output_event', { instance_id: 777, output: { source: 's', received: 1, format: 'f', type: 't', message: 'm' } });
    await sync(a);
    expect(await a.peer.quiet()).toBe(true);
  });

  for (const type of ['global_chat:chat_event', 'research_sync:finished_event']) {
    it(`broadcasts ${type} unchanged to every other slave, not back to the sender`, async () => {
      const s1 = await slave(1, 'one');
      const s2 = await slave(2, 'two');
      const s3 = await slave(3, 'three');
      const data = type === 'global_chat:chat_event' ? { instance_name: 'inst', content: 'hi' } : { name: 'automation', level: 1 };
      s1.send(type, data);
      expect((await s2.next()).data).toEqual(data);
      expect((await s3.next()).data).toEqual(data);
      expect(await s1.peer.quiet()).toBe(true);
    });
  }

  it('broadcasts plugin event data with big numbers exactly', async () => {
    const s1 = await slave(1, 'one');
    const s2 = await slave(2, 'two');
    s1.sendRaw('{"seq":2,"type":"research_sync:finished_event","data":{"name":"x","level":870000000000000123}}');
    expect(await s2.peer.nextRaw()).toBe('{"seq":3,"type":"research_sync:finished_event","data":{"name":"x","level":870000000000000123}}');
  });

  it('accepts, counts and drops any other plugin event', async () => {
    const s1 = await slave(1, 'one');
    const s2 = await slave(2, 'two');
    const c = await control();
    s1.send('research_sync:contribution_event', { name: 'automation', level: 1, contribution: 0.5 });
    s1.send('subspace_storage:place_event', { items: [] });
    await sync(c);
    expect(await s2.peer.quiet()).toBe(true);
    expect(await s1.peer.quiet()).toBe(true);
    const scrape = fetch(`${h.srv.httpBase}/metrics`).then((r) => r.text());
    for (const s of [s1, s2]) {
      const f = await s.next();
      s.send('statistics_exporter:get_metrics_response', { seq: f.seq, error: 'no instance running' });
    }
    const metrics = await scrape;
    expect(metrics).toContain('muster_clusterio_plugin_events_total{type="research_sync:contribution_event",action="dropped"} 1');
  });

  it('answers a plugin request with no handler with "No handler for <type>" and keeps the link', async () => {
    const s = await slave(1);
    const seq = s.send('research_sync:sync_technologies_request', { technologies: [] });
    expect(await s.next()).toEqual({ seq: 3, type: 'research_sync:sync_technologies_response', data: { seq, error: 'No handler for research_sync:sync_technologies_request' } });
    s.send('update_instances_event', { instances: [] });
    expect(await s.peer.quiet()).toBe(true);
    expect(s.peer.isClosed).toBe(false);
  });

  it('a /metrics scrape asks each slave for statistics_exporter:get_metrics and merges samples with slave_id', async () => {
    const s1 = await slave(4242, 'one');
    const s2 = await slave(7, 'two');
    const scrape = fetch(`${h.srv.httpBase}/metrics`).then((r) => r.text());
    for (const [s, cpu, labels] of [
      [s1, 0.248, 'slave_id="4242"'],
      [s2, 1.5, ''],
    ] as const) {
      const f = await s.next();
      expect(f).toEqual({ seq: 3, type: 'statistics_exporter:get_metrics_request', data: {} });
      s.send('statistics_exporter:get_metrics_response', {
        seq: f.seq,
        results: [
          { metric: { type: 'gauge', name: 'clusterio_slave_cpu_seconds', help: 'CPU time', labels: [] }, samples: [[labels, cpu]] },
          { metric: { type: 'counter', name: 'clusterio_instance_game_ticks_total', help: 'Ticks', labels: ['instance_id'] }, samples: [['instance_id="1"', 60]] },
        ],
      });
    }
    const text = await scrape;
    expect(text).toContain('# TYPE clusterio_slave_cpu_seconds gauge');
    expect(text).toContain('clusterio_slave_cpu_seconds{slave_id="4242"} 0.248');
    expect(text).toContain('clusterio_slave_cpu_seconds{slave_id="7"} 1.5');
    expect(text).toMatch(/clusterio_instance_game_ticks_total\{instance_id="1",slave_id="4242"\} 60/);
    expect(text).toContain('muster_clusterio_slaves_connected 2');
  });

  it('a scrape does not wait forever for a slave that does not answer', async () => {
    const s = await slave(1);
    const scrape = fetch(`${h.srv.httpBase}/metrics`).then((r) => r.text());
    expect((await s.next()).type).toBe('statistics_exporter:get_metrics_request');
    h.srv.clock.advance(5000);
    expect(await scrape).toContain('muster_clusterio_slaves_connected 1');
  });
});

describe('clusterio: liveness, kick, shutdown, admin API', () => {
  it('pings every client; one that answers no ping for 2 × heartbeatInterval is closed (3008)', async () => {
    const p = await open({ autoPong: false });
    let pings = 0;
    p.ws.on('ping', () => pings++);
    p.send({ seq: 1, type: 'register_control', data: { token: await controlToken(), agent: 'a', version: 'v' } });
    expect((await next(p)).type).toBe('ready');
    h.srv.clock.advance(15_000);
    await until(() => pings === 1);
    h.srv.clock.advance(14_999);
    expect(await p.quiet()).toBe(true);
    h.srv.clock.advance(1);
    await expectClose(p, 'Ping timeout', 3008);
  });

  it('a client that answers pings stays connected', async () => {
    const c = await control();
    for (let i = 0; i < 4; i++) {
      h.srv.clock.advance(15_000);
      await settle([...peers, ...seeds.map((x) => x.peer)]);
    }
    await sync(c);
  });

  it('a kick sends close {reason} then 1008', async () => {
    const c = await control();
    const id = h.srv.muster.transport.connections()[0]?.id as string;
    const res = await fetch(`${h.srv.httpBase}/api/v1/connections/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).toBe(200);
    expect((await c.next()).data).toEqual({ reason: 'Kicked by an operator' });
    expect((await c.peer.waitClose()).code).toBe(1008);
  });

  it('lists slaves and instances on the admin API (token required)', async () => {
    await slave(4242);
    const c = await control();
    await c.request('create_instance_request', { serialized_config: instanceConfig(777, 'x', 4242) });
    expect((await fetch(`${h.srv.httpBase}/api/v1/clusterio/slaves`)).status).toBe(401);
    const auth = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };
    expect(await (await fetch(`${h.srv.httpBase}/api/v1/clusterio/slaves`, auth)).json()).toEqual([
      { id: 4242, name: 'muster-slave-1', agent: 'Clusterio Slave', version: '2.0.0-alpha', connected: true, mode: 'seed', attached: true, remoteAddress: '127.0.0.1', instances: 1 },
    ]);
    const inst = (await (await fetch(`${h.srv.httpBase}/api/v1/clusterio/instances`, auth)).json()) as Array<Record<string, unknown>>;
    expect(inst).toEqual([
      { id: 777, name: 'x', assigned_slave: 4242, slave_connected: true, status: 'unknown', serialized_config: instanceConfig(777, 'x', 4242) },
    ]);
  });
});

describe('clusterio: shutdown', () => {
  it('says close {reason: "Server shutting down"} and closes with 1001', async () => {
    const c = await control();
    const stopping = h.srv.muster.stop();
    expect((await c.next()).data).toEqual({ reason: 'Server shutting down' });
    expect((await c.peer.waitClose()).code).toBe(1001);
    await stopping;
    seeds.splice(0);
    // a fresh server for afterEach to check and stop
    await h.start();
  });
});
