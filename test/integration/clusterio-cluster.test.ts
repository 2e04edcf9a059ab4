import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { mintToken } from '../../src/dialects/clusterio/token.js';
import { config as instanceConfig, Control } from '../chaos/crash.js';
import { ensureBuilt, SECRETS, startServer, type RunningServer } from '../chaos/server.js';
import { pollUntil } from '../support/muster-cluster.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';

/**
 * Clusterio in cluster mode with real processes: two built Muster instances ("a" and
 * "b") on one redis-server, a 2020-style slave on b and a control on a. Presence runs on
 * real time (presenceTtl 1 s, for the kill -9).
 */

const PRESENCE_TTL = 1000;

interface Frame {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}

/** A registered 2020-style slave: seed numbering; answers requests with `answer(frame)`. */
class Slave {
  readonly frames: Frame[] = [];
  #seq = 1;
  answer: (f: Frame) => Record<string, unknown> | undefined = () => ({});

  private constructor(readonly ws: WebSocket) {}

  static async open(wsBase: string, id: number): Promise<Slave> {
    const ws = new WebSocket(`${wsBase}/api/socket`);
    ws.on('error', () => undefined);
    const s = new Slave(ws);
    const ready = new Promise<void>((resolve, reject) => {
      ws.on('message', (d: Buffer) => {
        const f = JSON.parse(d.toString('utf8')) as Frame;
        s.frames.push(f);
        if (f.type === 'hello') {
          void mintToken(SECRETS.clusterio, { aud: 'slave', id: String(id) }).then((token) => s.send('register_slave', { token, agent: 'clusterio', version: '2.0.0-alpha', name: `slave-${id}`, id }));
        } else if (f.type === 'ready') resolve();
        else if (f.type === 'close') reject(new Error(JSON.stringify(f.data)));
        else if (f.type.endsWith('_request')) {
          const body = s.answer(f);
          if (body) s.send(`${f.type.slice(0, -'_request'.length)}_response`, { seq: f.seq, ...body });
        }
      });
    });
    await ready;
    return s;
  }

  send(type: string, data: Record<string, unknown>): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ seq: this.#seq++, type, data }));
  }

  close(): void {
    this.ws.terminate();
  }
}

async function admin<T>(s: RunningServer, route: string): Promise<T> {
  const r = await fetch(`${s.base}/api/v1/clusterio/${route}`, { headers: { authorization: `Bearer ${SECRETS.admin}` } });
  expect(r.status).toBe(200);
  return (await r.json()) as T;
}

interface SlaveRow {
  id: number;
  connected: boolean;
  instance?: string;
}

let redis: RedisServer;
let root: string;
let a: RunningServer;
let b: RunningServer | undefined;

async function boot(name: string): Promise<RunningServer> {
  return startServer({
    dataDir: join(root, name),
    dialects: ['clusterio'],
    extra: {
      instanceId: name,
      store: { kind: 'redis', url: redis.url, prefix: 'cio:' },
      cluster: { prefix: 'cio:', presenceTtl: PRESENCE_TTL },
    },
  });
}

beforeAll(async () => {
  ensureBuilt();
  redis = await startRedisServer();
  root = mkdtempSync(join(tmpdir(), 'muster-clusterio-cluster-'));
  [a, b] = await Promise.all([boot('a'), boot('b')]);
}, 60_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.close();
  rmSync(root, { recursive: true, force: true });
});

describe('clusterio across two instances', () => {
  it('one slave id on two instances: the later registration replaces the first connection, as on one instance', async () => {
    const bb = b as RunningServer;
    const first = await Slave.open(a.ws, 9);
    const closed = new Promise<number>((resolve) => first.ws.once('close', (code) => resolve(code)));
    expect(await pollUntil(async () => (await admin<SlaveRow[]>(bb, 'slaves')).some((r) => r.id === 9 && r.instance === 'a'), 10_000)).toBe(true);
    const second = await Slave.open(bb.ws, 9);
    try {
      expect(await closed).toBe(1008);
      expect(first.frames.at(-1)).toMatchObject({ type: 'close', data: { reason: 'Registered from another connection' } });
      expect(await pollUntil(async () => (await admin<SlaveRow[]>(a, 'slaves')).some((r) => r.id === 9 && r.connected && r.instance === 'b'), 5_000)).toBe(true);
      expect((await admin<SlaveRow[]>(bb, 'slaves')).find((r) => r.id === 9)).toMatchObject({ connected: true, attached: true });
      expect(second.ws.readyState).toBe(WebSocket.OPEN);
    } finally {
      first.close();
      second.close();
    }
    // Gone from both once its socket closes.
    expect(await pollUntil(async () => (await admin<SlaveRow[]>(a, 'slaves')).some((r) => r.id === 9 && !r.connected), 5_000)).toBe(true);
  }, 30_000);

  it('forwards from a control on one instance to a slave on the other, shares the registry, and drops a killed instance’s slaves within presenceTtl', async () => {
    const bb = b as RunningServer;
    const slave = await Slave.open(bb.ws, 7);
    slave.answer = (f) => (f.type === 'send_rcon_request' ? { result: `ran ${String(f.data.command)}` } : {});
    const ctl = await Control.open(a.ws);
    try {
      // a knows the slave on b, and says where it is.
      expect(await pollUntil(async () => (await admin<SlaveRow[]>(a, 'slaves')).some((r) => r.id === 7 && r.connected && r.instance === 'b'), 10_000)).toBe(true);

      // An instance created through a is listed by b.
      const created = await ctl.request('create_instance_request', { serialized_config: instanceConfig(42, 'across') });
      expect(created.data).toEqual({ seq: created.data.seq });
      expect(await pollUntil(async () => (await admin<Array<{ id: number }>>(bb, 'instances')).some((r) => r.id === 42), 5_000)).toBe(true);

      // Assigned through a to the slave on b: the slave gets the config, the control its answer.
      const assigned = await ctl.request('assign_instance_command_request', { instance_id: 42, slave_id: 7 });
      expect(assigned.type).toBe('assign_instance_command_response');
      expect(assigned.data.error).toBeUndefined();
      expect(slave.frames.some((f) => f.type === 'assign_instance_request' && f.data.instance_id === 42)).toBe(true);
      expect(await pollUntil(async () => (await admin<Array<{ id: number; assigned_slave: number | null }>>(bb, 'instances')).some((r) => r.id === 42 && r.assigned_slave === 7), 5_000)).toBe(true);

      // A forwarded request and its answer.
      const rcon = await ctl.request('send_rcon_request', { instance_id: 42, command: '/time' });
      expect(rcon.type).toBe('send_rcon_response');
      expect(rcon.data).toEqual({ result: 'ran /time', seq: rcon.data.seq });
      const list = await ctl.request('list_slaves_request');
      expect(list.data.list).toContainEqual({ agent: 'clusterio', version: '2.0.0-alpha', name: 'slave-7', id: 7, connected: true });

      // kill -9 of b: its slave is gone from a's view within presenceTtl (and a little polling).
      const killedAt = performance.now();
      bb.kill9();
      await bb.exited;
      b = undefined;
      expect(await pollUntil(async () => (await admin<SlaveRow[]>(a, 'slaves')).some((r) => r.id === 7 && !r.connected), 3 * PRESENCE_TTL + 2_000)).toBe(true);
      const droppedMs = performance.now() - killedAt;
      // Presence expires presenceTtl after b's last heartbeat and is noticed at a's next one
      // (every third of it): at most 4/3 × presenceTtl after the kill, plus polling.
      expect(droppedMs).toBeLessThan((4 * PRESENCE_TTL) / 3 + 1_000);
      console.log(`clusterio-cluster: slave of the killed instance dropped after ${Math.round(droppedMs)} ms (presenceTtl ${PRESENCE_TTL})`);
      const after = await ctl.request('start_instance_request', { instance_id: 42 });
      expect(after.data.error).toBe('Slave 7 hosting instance 42 is not connected');
    } finally {
      ctl.close();
      slave.close();
    }
  }, 60_000);
});
