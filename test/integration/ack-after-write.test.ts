import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { loadConfig } from '../../src/config/load.js';
import { startMuster, type Muster } from '../../src/server.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { JsonValue, SetOptions, Store } from '../../src/store/types.js';
import { ADMIN_TOKEN, RawPeer, until } from '../support/server.js';
import { controlToken, instanceConfig, SECRET } from '../support/harness/clusterio.js';
import { BOT_TOKEN, KEY } from '../support/harness/sharding.js';

/**
 * Nothing that tells a peer or an operator "done" goes out before the store has the
 * write. A store whose writes take effect at once (call order) but whose promises
 * resolve only when the test says so shows what waits for durability and what does not.
 */
class GatedStore implements Store {
  readonly kind = 'gated';
  readonly inner = new MemoryStore();
  holding = false;
  #held: Array<() => void> = [];

  get held(): number {
    return this.#held.length;
  }

  release(): void {
    this.holding = false;
    for (const r of this.#held.splice(0)) r();
  }

  #gate<T>(p: Promise<T>): Promise<T> {
    if (!this.holding) return p;
    return new Promise<T>((resolve, reject) => this.#held.push(() => p.then(resolve, reject)));
  }

  get<T extends JsonValue = JsonValue>(ns: string, key: string): Promise<T | undefined> {
    return this.inner.get<T>(ns, key);
  }
  set(ns: string, key: string, value: JsonValue, opts?: SetOptions): Promise<void> {
    return this.#gate(this.inner.set(ns, key, value, opts));
  }
  delete(ns: string, key: string): Promise<boolean> {
    return this.#gate(this.inner.delete(ns, key));
  }
  list<T extends JsonValue = JsonValue>(ns: string): Promise<Array<[string, T]>> {
    return this.inner.list<T>(ns);
  }
  incr(ns: string, key: string, delta?: number, opts?: SetOptions): Promise<number> {
    return this.#gate(this.inner.incr(ns, key, delta, opts));
  }
  compareAndSet(ns: string, key: string, expected: JsonValue | undefined, value: JsonValue, opts?: SetOptions): Promise<boolean> {
    return this.#gate(this.inner.compareAndSet(ns, key, expected, value, opts));
  }
  ping(): Promise<void> {
    return this.inner.ping();
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

let muster: Muster | undefined;
let gated: GatedStore | undefined;
const peers: RawPeer[] = [];
afterEach(async () => {
  gated?.release();
  for (const p of peers.splice(0)) p.close();
  await muster?.stop();
  muster = undefined;
});

async function start(store: GatedStore, dialects: Record<string, unknown>): Promise<string> {
  gated = store;
  const off = { enabled: false };
  const config = loadConfig({
    env: {},
    overrides: {
      listen: { host: '127.0.0.1', port: 0 },
      store: { kind: 'memory' },
      admin: { token: ADMIN_TOKEN },
      log: { level: 'silent' },
      shutdownTimeout: 2000,
      dialects: { bus: off, sharding: off, clusterio: off, discodo: off, gamelist: off, ...dialects },
    } as never,
  });
  muster = await startMuster({ config, clock: new ManualClock(), store, logger: pino({ level: 'silent' }), defaultMetrics: false });
  return muster.url();
}

interface Frame {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}
const next = async (p: RawPeer): Promise<Frame> => JSON.parse(await p.nextRaw()) as Frame;

async function control(base: string): Promise<RawPeer> {
  const p = await RawPeer.open(`${base.replace(/^http/, 'ws')}/api/socket`);
  peers.push(p);
  expect((await next(p)).type).toBe('hello');
  p.send({ seq: 1, type: 'register_control', data: { token: await controlToken(), agent: 'clusterctl', version: '2.0.0-alpha' } });
  expect((await next(p)).type).toBe('ready');
  return p;
}

describe('acknowledged means durable', () => {
  it('clusterio: create_instance and set_instance_config_field are answered only after their write resolves', async () => {
    const store = new GatedStore();
    const c = await control(await start(store, { clusterio: { enabled: true, authSecret: SECRET } }));

    store.holding = true;
    c.send({ seq: 2, type: 'create_instance_request', data: { serialized_config: instanceConfig(777) } });
    // A read sent after it is answered at once: the server has handled the create...
    c.send({ seq: 3, type: 'list_instances_request', data: {} });
    const first = await next(c);
    expect(first.type).toBe('list_instances_response');
    // ...and the write is with the store (it takes effect in call order), not yet acknowledged.
    expect(store.held).toBe(1);
    expect(await store.inner.get('clusterio:instances', '777')).toBeDefined();
    expect(c.frames).toEqual([]);
    store.release();
    expect(await next(c)).toEqual({ seq: 4, type: 'create_instance_response', data: { seq: 2 } });

    store.holding = true;
    c.send({ seq: 4, type: 'set_instance_config_field_request', data: { instance_id: 777, field: 'instance.name', value: 'renamed' } });
    c.send({ seq: 5, type: 'list_slaves_request', data: {} });
    expect((await next(c)).type).toBe('list_slaves_response');
    expect(store.held).toBe(1);
    expect(c.frames).toEqual([]);
    store.release();
    expect(await next(c)).toEqual({ seq: 6, type: 'set_instance_config_field_response', data: { seq: 4 } });
  });

  it('clusterio: a write the store refuses is answered with an error, never a success', async () => {
    const store = new GatedStore();
    const c = await control(await start(store, { clusterio: { enabled: true, authSecret: SECRET } }));
    store.set = () => Promise.reject(new Error('disk full'));
    c.send({ seq: 2, type: 'create_instance_request', data: { serialized_config: instanceConfig(778) } });
    expect(await next(c)).toEqual({ seq: 3, type: 'create_instance_response', data: { seq: 2, error: 'The master could not save the change' } });
  });

  it('sharding: POST /halt answers only once the halt state is durable', async () => {
    const store = new GatedStore();
    const base = await start(store, { sharding: { enabled: true, authorization: KEY, botToken: BOT_TOKEN, shardCount: 4 } });
    store.holding = true;
    let answered = false;
    const reply = fetch(`${base}/api/v1/sharding/halt`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).then(async (r) => {
      answered = true;
      return { status: r.status, body: (await r.json()) as unknown };
    });
    // A later read that the server answers proves it has handled the halt.
    for (let i = 0; i < 50 && store.held === 0; i++) {
      await fetch(`${base}/api/v1/sharding`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    }
    expect(store.held).toBeGreaterThan(0);
    expect(await store.inner.get('sharding', 'fleet')).toMatchObject({ halted: true });
    expect(answered).toBe(false);
    store.release();
    expect(await reply).toEqual({ status: 200, body: { halted: true, reason: 'halted by an operator' } });
  });

  it('sharding: an IDENTIFY_GRANT goes out only once the budget it spends is durable', async () => {
    const store = new GatedStore();
    const base = await start(store, {
      sharding: { enabled: true, authorization: KEY, botToken: BOT_TOKEN, shardCount: 2, expectedControls: 1, startup: 'parallel' },
    });
    const a = await RawPeer.open(`${base.replace(/^http/, 'ws')}/sharding`, { headers: { authorization: KEY } });
    peers.push(a);
    expect((JSON.parse(await a.nextRaw()) as { o: number }).o).toBe(5);
    a.send({ o: 10, d: { name: 'a', features: ['identify-queue'] } });
    expect((JSON.parse(await a.nextRaw()) as { o: number }).o).toBe(15);
    expect((JSON.parse(await a.nextRaw()) as { o: number }).o).toBe(6);
    await until(() => store.held === 0);

    store.holding = true;
    a.send({ o: 13, d: { shard_id: 0 } });
    await until(() => store.held > 0);
    expect(await store.inner.get('sharding', 'budget')).toMatchObject({ used: 1 });
    expect(await a.quiet()).toBe(true);
    store.release();
    expect(JSON.parse(await a.nextRaw())).toEqual({ o: 14, d: { shard_id: 0 } });
  });
});
