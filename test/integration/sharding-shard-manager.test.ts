/**
 * `MusterShardManager`'s own logic against a real MASTER, with a scripted stand-in for
 * `@discordjs/ws` (shards that emit what the test tells them to). The real library runs
 * in sharding-discordjs.test.ts; this file pins the edge cases that are hard to provoke
 * there: a shard destroyed before READY, a stopped shard that discord.js reconnects on
 * its own, and a non-retryable Discord close code.
 */
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { MusterShardManager, type DiscordWsModule } from '../../src/client/index.js';
import { until } from '../support/server.js';
import { admin, KEY, shards, startSharding, type ShardingServer } from '../support/harness/sharding.js';

class ScriptedShard extends EventEmitter {
  status = 0;
  connects = 0;
  destroys: Array<{ code?: number; reason?: string } | undefined> = [];
  readonly sent: unknown[] = [];
  /** When set, destroy() settles only once this does (a slow close handshake). */
  gate: Promise<void> | undefined;
  constructor(
    readonly strategy: { manager: FakeManager },
    readonly id: number,
  ) {
    super();
  }
  connect(): Promise<void> {
    this.connects++;
    this.status = 1;
    // Like discord.js: settles only at READY or RESUMED (never when destroyed first).
    return new Promise((resolve) => this.once('ready', () => resolve()));
  }
  destroy(options?: { code?: number; reason?: string }): Promise<void> {
    this.destroys.push(options);
    this.status = 0;
    return this.gate ?? Promise.resolve();
  }
  send(payload: unknown): Promise<void> {
    this.sent.push(payload);
    return Promise.resolve();
  }
}

class FakeManager {
  readonly shards = new Map<number, ScriptedShard>();
  constructor(readonly options: Record<string, unknown>) {}
  fetchGatewayInformation(): Promise<unknown> {
    return Promise.resolve({ url: 'ws://gateway.invalid', shards: 16, session_start_limit: { max_concurrency: 1 } });
  }
}

function fakeDiscord(): { module: DiscordWsModule; managers: FakeManager[]; shard: (id: number) => ScriptedShard[] } {
  const managers: FakeManager[] = [];
  const all: ScriptedShard[] = [];
  const module = {
    WebSocketManager: class extends FakeManager {
      constructor(options: Record<string, unknown>) {
        super(options);
        managers.push(this);
      }
    },
    SimpleContextFetchingStrategy: class {
      constructor(
        readonly manager: FakeManager,
        readonly options: unknown,
      ) {}
    },
    WebSocketShard: class extends ScriptedShard {
      constructor(strategy: { manager: FakeManager }, id: number) {
        super(strategy, id);
        all.push(this);
      }
    },
    managerToFetchingStrategyOptions: async (m: FakeManager) => ({ gatewayInformation: await m.fetchGatewayInformation(), shardCount: m.options.shardCount }),
  } as unknown as DiscordWsModule;
  return { module, managers, shard: (id) => all.filter((s) => s.id === id) };
}

let srv: ShardingServer | undefined;
let mgr: MusterShardManager | undefined;

afterEach(async () => {
  await mgr?.close();
  mgr = undefined;
  await srv?.stop();
  srv = undefined;
});

function make(discord: DiscordWsModule, name = 'a'): MusterShardManager {
  mgr = new MusterShardManager({
    discord,
    control: { url: srv!.wsUrl, authorization: KEY, name, clock: srv!.clock, reconnect: { minMs: 100, maxMs: 100, random: () => 0.5 } },
    manager: { intents: 1, rest: {} },
  });
  return mgr;
}

describe('MusterShardManager (scripted shards, real MASTER)', () => {
  it('builds the manager from INITIALISE, starts one shard each, and reports CONNECTED only once each is READY', async () => {
    srv = await startSharding({ expectedControls: 1, shardCount: 4 });
    const d = fakeDiscord();
    const m = make(d.module);
    await m.connect();
    await until(() => d.shard(3).length === 1);
    expect(d.managers).toHaveLength(1);
    expect(d.managers[0]?.options).toMatchObject({ token: 'bot-token-for-tests', shardCount: 4, intents: 1 });
    for (const id of [0, 1, 2]) d.shard(id)[0]?.emit('ready', {});
    await new Promise((r) => setTimeout(r, 20));
    expect((await shards(srv)).map((s) => s.state)).toEqual(['connecting', 'connecting', 'connecting', 'connecting']);
    d.shard(3)[0]?.emit('ready', {});
    await until(() => srv!.dialect().summary().connectedShards === 4);
    expect(m.readyShardIds).toEqual([0, 1, 2, 3]);
    await m.send(2, { op: 3, d: null });
    expect(d.shard(2)[0]?.sent).toEqual([{ op: 3, d: null }]);
  });

  it('a shard stopped before READY does not hold up CONNECTED for the others (no promise that never settles)', async () => {
    srv = await startSharding({ expectedControls: 1, shardCount: 2 });
    const d = fakeDiscord();
    const m = make(d.module);
    const stopped: unknown[] = [];
    m.on('shardStopped', (...args: unknown[]) => stopped.push(args));
    await m.connect();
    await until(() => d.shard(1).length === 1);
    d.shard(0)[0]?.emit('ready', {});
    // Shard 1 never gets READY; the operator restarts it, and it comes up the second time.
    expect((await admin(srv, 'POST', '/api/v1/sharding/controls/a/command', { command: 'restart_shard', args: { shard_id: 1 } })).status).toBe(202);
    await until(() => d.shard(1).length === 2);
    expect(d.shard(1)[0]?.destroys).toEqual([{ code: 1000, reason: 'command restart_shard' }]);
    expect(stopped).toEqual([[1, 'command restart_shard', false]]);
    d.shard(1)[1]?.emit('ready', {});
    await until(() => srv!.dialect().summary().connectedShards === 2);
  });

  it('a restarted shard opens its new session only once the old one’s destroy() has settled', async () => {
    srv = await startSharding({ expectedControls: 1, shardCount: 1 });
    const d = fakeDiscord();
    const m = make(d.module);
    await m.connect();
    await until(() => d.shard(0).length === 1);
    const old = d.shard(0)[0] as ScriptedShard;
    old.emit('ready', {});
    await until(() => srv!.dialect().summary().connectedShards === 1);
    let release: () => void = () => undefined;
    old.gate = new Promise<void>((r) => (release = r));
    await admin(srv, 'POST', '/api/v1/sharding/controls/a/command', { command: 'restart_shard', args: { shard_id: 0 } });
    await until(() => old.destroys.length === 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(d.shard(0)).toHaveLength(1);
    expect(m.destroying).toBe(1);
    release();
    await until(() => d.shard(0).length === 2);
    expect(m.destroying).toBe(0);
  });

  it('destroys again a stopped shard that discord.js reconnected on its own, at its HELLO', async () => {
    srv = await startSharding({ expectedControls: 1, shardCount: 1 });
    const d = fakeDiscord();
    const m = make(d.module);
    const events: unknown[] = [];
    m.on('hello', (...args: unknown[]) => events.push(args));
    await m.connect();
    await until(() => d.shard(0).length === 1);
    const s = d.shard(0)[0] as ScriptedShard;
    s.emit('hello');
    expect(events).toEqual([[0]]);
    s.emit('ready', {});
    await until(() => srv!.dialect().summary().connectedShards === 1);
    await admin(srv, 'POST', '/api/v1/sharding/halt');
    await until(() => s.destroys.length === 1);
    await m.settled();
    // discord.js's own reconnect (a shard destroyed in its 500 ms pause) says HELLO again.
    s.emit('hello');
    expect(s.destroys).toHaveLength(2);
    expect(m.stats.redestroyed).toBe(1);
    expect(events).toHaveLength(1); // a retired shard's events are not passed on
  });

  it('reports a non-retryable Discord close code with FATAL: the fleet halts', async () => {
    srv = await startSharding({ expectedControls: 1, shardCount: 2 });
    const d = fakeDiscord();
    const m = make(d.module);
    await m.connect();
    await until(() => d.shard(1).length === 1);
    d.shard(1)[0]?.emit('closed', 4014);
    await until(() => srv!.dialect().state.phase === 'halted');
    expect(srv.dialect().state.haltReason).toMatch(/4014/);
    await until(() => d.shard(0)[0]?.destroys.length === 1 && d.shard(1)[0]?.destroys.length === 1);
  });

  it('close() stops every shard and waits for every destroy()', async () => {
    srv = await startSharding({ expectedControls: 1, shardCount: 3 });
    const d = fakeDiscord();
    const m = make(d.module);
    await m.connect();
    await until(() => d.shard(2).length === 1);
    await m.close();
    mgr = undefined;
    for (const id of [0, 1, 2]) expect(d.shard(id)[0]?.destroys).toEqual([{ code: 1000, reason: 'control closed' }]);
    expect(m.destroying).toBe(0);
    expect(m.stats).toMatchObject({ started: 3, stopped: 3, destroyed: 3 });
  });
});
