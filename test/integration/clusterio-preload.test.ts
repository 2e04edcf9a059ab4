import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { loadConfig } from '../../src/config/load.js';
import type { ClusterioDialect } from '../../src/dialects/clusterio/dialect.js';
import { MAX_FRAMES_BEFORE_LOAD } from '../../src/dialects/clusterio/types.js';
import { startMuster, type Muster } from '../../src/server.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { JsonValue } from '../../src/store/types.js';
import { ADMIN_TOKEN, RawPeer, until } from '../support/server.js';
import { controlToken, expectClose, SECRET, type Frame } from '../support/harness/clusterio.js';

/**
 * Before the registry has loaded from the store (start-up only), a socket's frames wait;
 * the wait is bounded. The store here holds its first read until the test lets it go.
 */

class GatedStore extends MemoryStore {
  #open!: () => void;
  readonly gate = new Promise<void>((resolve) => (this.#open = resolve));
  release(): void {
    this.#open();
  }
  override async list<T extends JsonValue = JsonValue>(ns: string): Promise<Array<[string, T]>> {
    await this.gate;
    return super.list<T>(ns);
  }
}

let muster: Muster | undefined;
let store: GatedStore;
const peers: RawPeer[] = [];

async function start(): Promise<string> {
  const clock = new ManualClock();
  store = new GatedStore({ now: () => clock.now() });
  const config = loadConfig({
    env: {},
    overrides: {
      listen: { host: '127.0.0.1', port: 0 },
      store: { kind: 'memory' },
      admin: { token: ADMIN_TOKEN },
      log: { level: 'silent' },
      shutdownTimeout: 2000,
      dialects: {
        bus: { token: 'bus-token-for-tests' },
        sharding: { enabled: false },
        clusterio: { enabled: true, authSecret: SECRET },
        discodo: { enabled: false },
        gamelist: { enabled: false },
      },
    } as never,
  });
  muster = await startMuster({ config, clock, store, logger: pino({ level: 'silent' }), defaultMetrics: false });
  return `${muster.url().replace(/^http/, 'ws')}/api/socket`;
}

async function open(url: string): Promise<RawPeer> {
  const p = await RawPeer.open(url);
  peers.push(p);
  expect((JSON.parse(await p.nextRaw()) as Frame).type).toBe('hello');
  return p;
}

function dialect(): ClusterioDialect {
  return muster?.dialect<ClusterioDialect>('clusterio') as ClusterioDialect;
}

afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  store.release();
  await until(() => muster?.transport.size === 0);
  await muster?.stop();
  muster = undefined;
});

describe('clusterio: frames before the registry has loaded', () => {
  it('a client that sends its register and waits is answered once the registry loads', async () => {
    const url = await start();
    const p = await open(url);
    p.send({ seq: 1, type: 'register_control', data: { token: await controlToken(), agent: 'clusterctl', version: '2.0.0-alpha' } });
    await p.quiet();
    store.release();
    expect((JSON.parse(await p.nextRaw()) as Frame).type).toBe('ready');
  });

  it(`closes a socket that sends more than ${MAX_FRAMES_BEFORE_LOAD} frames with "Invalid handshake" (1008), and keeps nothing of it`, async () => {
    const url = await start();
    const bad = await open(url);
    const good = await open(url);
    good.send({ seq: 1, type: 'register_control', data: { token: await controlToken(), agent: 'clusterctl', version: '2.0.0-alpha' } });
    for (let i = 0; i <= MAX_FRAMES_BEFORE_LOAD; i++) bad.send({ seq: i + 1, type: 'heartbeat', data: {} });
    await expectClose(bad, 'Invalid handshake', 1008);
    await until(() => dialect().summary().connections === 1);
    store.release();
    expect((JSON.parse(await good.nextRaw()) as Frame).type).toBe('ready');
  });

  it('closes a socket whose waiting frames pass 4 × preAuthMaxBytes', async () => {
    const url = await start();
    const bad = await open(url);
    const big = 'x'.repeat(30_000);
    for (let i = 0; i < 3; i++) bad.send(big);
    await expectClose(bad, 'Invalid handshake', 1008);
  });
});
