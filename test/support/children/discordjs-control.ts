/**
 * A CONTROL in its own process: `MusterShardManager` running real `@discordjs/ws` shards
 * against the fake Discord of the test. Settings come from the environment; it reports to
 * its parent over IPC: `identified`, `shardReady`, `shardStopped`, `shardDestroyed`,
 * `fenced`, and answers `{cmd: "state"}` and `{cmd: "close"}` (close: every shard
 * destroyed and settled, then exit).
 */
import * as discord from '@discordjs/ws';
import { MusterShardManager, type DiscordWsModule } from '../../../src/client/index.js';

const env = (k: string): string => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const restBase = env('FAKE_DISCORD_REST');
const send = (m: Record<string, unknown>): void => {
  if (process.connected) process.send?.(m);
};

const rest = {
  async get(route: string): Promise<unknown> {
    const res = await fetch(`${restBase}/v10${route}`, { headers: { authorization: `Bot ${shards.control.initialise?.token ?? ''}` } });
    if (!res.ok) throw new Error(`GET ${route}: ${res.status}`);
    return res.json();
  },
};

const shards: MusterShardManager = new MusterShardManager({
  discord: discord as unknown as DiscordWsModule,
  control: {
    url: env('MUSTER_URL'),
    authorization: env('MUSTER_KEY'),
    name: env('CONTROL_NAME'),
    reconnect: { minMs: 50, maxMs: 200 },
    haltedRetryDelay: 200,
  },
  manager: { intents: 0, rest, helloTimeout: 5_000, readyTimeout: 5_000 },
});
shards.on('shardReady', (id: number) => send({ type: 'shardReady', id }));
shards.on('shardStopped', (id: number, reason: string, waiting: boolean) => send({ type: 'shardStopped', id, reason, waiting }));
shards.on('shardDestroyed', (id: number) => send({ type: 'shardDestroyed', id }));
shards.on('error', (err: Error) => send({ type: 'error', message: err.message }));
shards.control.on('identified', (d: unknown) => send({ type: 'identified', d }));
shards.control.on('fenced', (reason: string) => send({ type: 'fenced', reason }));
shards.control.on('error', (err: Error) => send({ type: 'controlError', message: err.message }));

const state = (): Record<string, unknown> => ({
  type: 'state',
  shards: shards.shardIds,
  ready: shards.readyShardIds,
  destroying: shards.destroying,
  waiting: shards.waitingForIdentify,
  stats: shards.stats,
  identified: shards.control.identified,
});

process.on('message', (m: { cmd?: string }) => {
  if (m.cmd === 'state') send(state());
  if (m.cmd === 'close') {
    void shards.close().then(() => {
      send({ ...state(), type: 'closed' });
      process.exit(0);
    });
  }
});
process.on('disconnect', () => process.exit(0));
await shards.connect();
