/**
 * A runnable CONTROL for Muster's sharding dialect, running real Discord shards with
 * `@discordjs/ws` through `MusterShardManager`: Muster decides which shards run here, when
 * each one may identify (fleet-wide), and moves them elsewhere if this host dies.
 *
 *   MUSTER_URL=ws://127.0.0.1:7373/sharding MUSTER_KEY=<dialects.sharding.authorization> \
 *   CONTROL_NAME=host-1 CONTROL_CAPACITY=1 npx tsx examples/sharding-control.ts
 *
 * The bot token and the shard count come from Muster (`dialects.sharding.botToken`,
 * `shardCount`). Needs `@discordjs/ws` and `@discordjs/rest` in your project. Start two or
 * three of them with different names, then watch `GET /api/v1/sharding/shards` (admin
 * token) while you kill one: its shards move to a standby, or are split over the others,
 * once it is declared dead.
 *
 * In your own project, import from `muster/client` instead of `../src/client/index.js`.
 */
import { REST } from '@discordjs/rest';
import * as discord from '@discordjs/ws';
import { MusterShardManager, type DiscordWsModule } from '../src/client/index.js';
import type { Range } from '../src/protocols/sharding/ranges.js';

const url = process.env.MUSTER_URL ?? 'ws://127.0.0.1:7373/sharding';
const authorization = process.env.MUSTER_KEY ?? '';
const name = process.env.CONTROL_NAME ?? `control-${process.pid}`;
const capacity = Number(process.env.CONTROL_CAPACITY ?? 1);
/** Gateway intents (a bit field); 1 = GUILDS. */
const intents = Number(process.env.DISCORD_INTENTS ?? 1);

const rest = new REST();
const shards = new MusterShardManager({
  discord: discord as unknown as DiscordWsModule,
  control: { url, authorization, name, capacity },
  manager: { intents, rest },
});

// Your bot: every gateway event of every shard running here.
shards.on('dispatch', (payload: { t: string | null }, shardId: number) => {
  if (payload.t === 'GUILD_CREATE') console.log(`[${name}] shard ${shardId}: ${payload.t}`);
});
shards.on('shardReady', (id: number) => console.log(`[${name}] shard ${id} READY`));
shards.on('shardStopped', (id: number, reason: string) => console.log(`[${name}] shard ${id} stopped: ${reason}`));
shards.on('error', (err: Error) => console.error(`[${name}] ${err.message}`));

const { control } = shards;
// The REST client needs the token Muster hands out in INITIALISE.
control.once('initialise', (d: { token: string }) => rest.setToken(d.token));
control.on('identified', (d: { resumed: boolean }) => console.log(`[${name}] identified (resumed: ${d.resumed})`));
control.on('connect', (d: { shards: Range[]; redundant: boolean }) =>
  console.log(`[${name}] CONNECT ${d.redundant ? 'as a standby' : JSON.stringify(d.shards)}`),
);
control.on('offload', (d: { shards: Range[]; reason: string; from?: string }) =>
  console.log(`[${name}] OFFLOAD ${JSON.stringify(d.shards)} (${d.reason}${d.from ? ` from ${d.from}` : ''})`),
);
control.on('fenced', (reason: string) => console.log(`[${name}] fenced: ${reason}`));
control.on('close', (code: number, reason: string) => console.log(`[${name}] disconnected: ${code} ${reason}`));
control.on('error', (err: Error) => console.error(`[${name}] ${err.message}`));

const stop = async (): Promise<void> => {
  await shards.close(); // every shard destroyed, and each destroy() settled
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());

await shards.connect();
console.log(`[${name}] connected to ${url}`);
