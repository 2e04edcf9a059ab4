import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { settle, until, type TestServer } from '../support/server.js';
import { dialectOf, instanceConfig, Seed2020, startClusterio } from '../support/harness/clusterio.js';

/**
 * Seed-mode conformance: the 2020 slave and control CLI, as traces/clusterio-2020.md
 * recorded them, against the real server. The Seed2020 peers validate every frame they
 * receive as the 2020 clients do, and know only the seed's types.
 */

const servers: TestServer[] = [];
const seeds: Seed2020[] = [];

async function server(extra: Record<string, unknown> = {}): Promise<TestServer> {
  const s = await startClusterio(extra);
  servers.push(s);
  return s;
}

afterEach(async () => {
  for (const s of seeds.splice(0)) {
    expect(s.violations).toEqual([]);
    s.close();
  }
  for (const srv of servers.splice(0)) {
    await until(() => srv.muster.transport.size === 0);
    await srv.stop();
  }
});

async function connect(srv: TestServer, role: 'slave' | 'control', opts: { id?: number; name?: string } = {}): Promise<Seed2020> {
  const c = await Seed2020.connect(srv, role, opts);
  seeds.push(c);
  return c;
}

/** One clusterctl invocation: register, run the requests, say close {reason: "quit"}. */
async function ctl(srv: TestServer, run: (c: Seed2020) => Promise<void>): Promise<void> {
  const c = await connect(srv, 'control');
  await run(c);
  c.send('close', { reason: 'quit' });
  c.peer.ws.close();
  await c.peer.waitClose();
  expect(c.violations).toEqual([]);
}

describe('clusterio: the 2020 clients, end to end', () => {
  it('registration, every control command, and a slave restart, with no frame a 2020 client would refuse', async () => {
    const srv = await server();
    // 1.6.1 slave start
    let slave = await connect(srv, 'slave', { id: 4242, name: 'muster-slave-1' });
    slave.send('update_instances_event', { instances: [] });

    // 1.6.2 each ctl command, one connection each
    await ctl(srv, async (c) => {
      expect((await c.request('list_slaves_request')).data.list).toEqual([
        { agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'muster-slave-1', id: 4242, connected: true },
      ]);
    });
    await ctl(srv, async (c) => {
      expect((await c.request('create_instance_request', { serialized_config: instanceConfig(777) })).data).toEqual({ seq: 2 });
    });
    await ctl(srv, async (c) => {
      expect((await c.request('list_instances_request')).data.list).toEqual([{ name: 'test-inst', id: 777, assigned_slave: null }]);
    });
    await ctl(srv, async (c) => {
      const list = await c.request('list_instances_request');
      const id = (list.data.list as Array<{ id: number }>)[0]?.id;
      expect((await c.request('get_instance_config_request', { instance_id: id })).data.serialized_config).toEqual(instanceConfig(777));
    });
    await ctl(srv, async (c) => {
      expect((await c.request('set_instance_config_field_request', { instance_id: 777, field: 'factorio.game_port', value: '34197' })).data).toEqual({ seq: 2 });
    });
    await ctl(srv, async (c) => {
      await c.request('list_instances_request');
      await c.request('list_slaves_request');
      const seq = c.send('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
      const a = await slave.next();
      expect(a).toMatchObject({ seq: 3, type: 'assign_instance_request', data: { instance_id: 777 } });
      slave.send('assign_instance_response', { seq: a.seq });
      expect(await c.next()).toEqual({ seq: 5, type: 'assign_instance_command_response', data: { seq } });
    });
    for (const cmd of ['create_save', 'start_instance', 'stop_instance']) {
      await ctl(srv, async (c) => {
        await c.request('set_instance_output_subscriptions_request', { instance_ids: [777] });
        const seq = c.send(`${cmd}_request`, { instance_id: 777 });
        const f = await slave.next();
        expect(f).toMatchObject({ type: `${cmd}_request`, data: { instance_id: 777 } });
        slave.send('instance_output_event', {
          instance_id: 777,
          output: { source: 'stdout', received: 1585000000, format: 'seconds', type: 'log', message: `${cmd} output` },
        });
        slave.send(`${cmd}_response`, { seq: f.seq, error: "ENOENT: no such file or directory, open 'factorio/data/changelog.txt'" });
        expect((await c.next()).type).toBe('instance_output_event');
        expect((await c.next()).data).toEqual({ error: "ENOENT: no such file or directory, open 'factorio/data/changelog.txt'", seq });
      });
    }
    await ctl(srv, async (c) => {
      const seq = c.send('send_rcon_request', { instance_id: 777, command: '/c game.print("hi")' });
      const f = await slave.next();
      slave.send('send_rcon_response', { seq: f.seq, error: 'Instance ID 777 is not running' });
      expect((await c.next()).data).toEqual({ error: 'Instance ID 777 is not running', seq });
    });
    await ctl(srv, async (c) => {
      await c.request('list_instances_request');
      await c.request('list_slaves_request');
      await c.request('create_instance_request', { serialized_config: instanceConfig(778, 'second') });
    });

    // 1.6.3 the slave restarts (SIGINT: the socket drops with no close frame) with instance 101 on disk
    slave.peer.ws.terminate();
    await until(() => dialectOf(srv).summary().slaves === 0);
    slave = await connect(srv, 'slave', { id: 4242, name: 'muster-slave-1' });
    const onDisk = instanceConfig(101, 'inst-a', 4242);
    (onDisk.groups as unknown[]).push(
      { name: 'global_chat', fields: { enabled: true } },
      { name: 'research_sync', fields: { enabled: true } },
      { name: 'statistics_exporter', fields: { enabled: true } },
      { name: 'subspace_storage', fields: { enabled: true, log_item_transfers: false } },
    );
    slave.send('update_instances_event', { instances: [{ serialized_config: onDisk }] });
    // First the instance the master assigned to it (777), then the one it reported (101).
    const a1 = await slave.next();
    expect(a1).toMatchObject({ seq: 3, type: 'assign_instance_request', data: { instance_id: 777 } });
    const a2 = await slave.next();
    expect(a2).toEqual({ seq: 4, type: 'assign_instance_request', data: { instance_id: 101, serialized_config: onDisk } });
    slave.send('assign_instance_response', { seq: 3 });
    slave.send('assign_instance_response', { seq: 4 });

    await ctl(srv, async (c) => {
      const seq = c.send('delete_instance_request', { instance_id: 777 });
      const f = await slave.next();
      slave.send('delete_instance_response', { seq: f.seq });
      expect((await c.next()).data).toEqual({ seq });
      expect((await c.request('list_instances_request')).data.list).toEqual([
        { name: 'inst-a', id: 101, assigned_slave: 4242 },
        { name: 'second', id: 778, assigned_slave: null },
      ]);
    });

    // Pings, plugin broadcasts and metrics requests are all things the 2020 slave accepts.
    const other = await connect(srv, 'slave', { id: 5, name: 'other' });
    other.send('global_chat:chat_event', { instance_name: 'x', content: 'hello' });
    expect((await slave.next()).type).toBe('global_chat:chat_event');
    other.send('research_sync:contribution_event', { name: 'automation', level: 1, contribution: 0.1 });
    const scrape = fetch(`${srv.httpBase}/metrics`);
    for (const s of [slave, other]) {
      const f = await s.next();
      expect(f.type).toBe('statistics_exporter:get_metrics_request');
      s.send('statistics_exporter:get_metrics_response', { seq: f.seq, results: [] });
    }
    expect((await scrape).status).toBe(200);
    for (let i = 0; i < 4; i++) {
      srv.clock.advance(15_000);
      await settle(seeds.map((s) => s.peer));
    }
    expect(slave.peer.isClosed).toBe(false);
    expect(slave.violations).toEqual([]);
  });

  it('slaves and instances survive a master restart (sqlite store)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-clusterio-'));
    try {
      const first = await server({ store: { kind: 'sqlite' }, dataDir });
      const slave = await connect(first, 'slave', { id: 4242, name: 'persisted' });
      slave.send('update_instances_event', { instances: [{ serialized_config: instanceConfig(101, 'inst-a', 4242) }] });
      const a = await slave.next();
      slave.send('assign_instance_response', { seq: a.seq });
      const c = await connect(first, 'control');
      const cfg = JSON.stringify({ serialized_config: instanceConfig(777, 'big') }).replace('"game_port":null', '"game_port":870000000000000123');
      c.sendRaw(`{"seq":2,"type":"create_instance_request","data":${cfg}}`);
      expect((await c.next()).data).toEqual({ seq: 2 });
      await c.request('set_instance_config_field_request', { instance_id: 777, field: 'factorio.rcon_password', value: 'pw' });
      await until(() => dialectOf(first).summary().pendingRequests === 0);
      seeds.splice(0).forEach((s) => s.close());
      await until(() => first.muster.transport.size === 0);
      await first.stop();
      servers.splice(servers.indexOf(first), 1);

      const second = await server({ store: { kind: 'sqlite' }, dataDir });
      const c2 = await connect(second, 'control');
      expect((await c2.request('list_slaves_request')).data.list).toEqual([
        { agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'persisted', id: 4242, connected: false },
      ]);
      expect((await c2.request('list_instances_request')).data.list).toEqual([
        { name: 'inst-a', id: 101, assigned_slave: 4242 },
        { name: 'big', id: 777, assigned_slave: null },
      ]);
      c2.send('get_instance_config_request', { instance_id: 777 });
      const raw = await c2.peer.nextRaw();
      expect(raw).toContain('"game_port":870000000000000123');
      expect(raw).toContain('"rcon_password":"pw"');
      // The slave reconnects and gets its instance back.
      const s2 = await connect(second, 'slave', { id: 4242, name: 'persisted' });
      s2.send('update_instances_event', { instances: [] });
      const back = await s2.next();
      expect(back).toMatchObject({ type: 'assign_instance_request', data: { instance_id: 101 } });
      s2.send('assign_instance_response', { seq: back.seq });
    } finally {
      for (const s of seeds.splice(0)) s.close();
      for (const srv of servers.splice(0)) {
        await until(() => srv.muster.transport.size === 0);
        await srv.stop();
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
