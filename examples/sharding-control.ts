/**
 * A runnable CONTROL for Muster's sharding dialect. Its shards are simulated workers;
 * the place to plug in the real Discord gateway is marked below.
 *
 *   MUSTER_URL=ws://127.0.0.1:7373/sharding MUSTER_KEY=<dialects.sharding.authorization> \
 *   CONTROL_NAME=host-1 CONTROL_CAPACITY=1 npx tsx examples/sharding-control.ts
 *
 * Start two or three of them with different names, then watch
 * `GET /api/v1/sharding/shards` (admin token) while you kill one: its shards move to a
 * standby, or are split over the others, once it is declared dead.
 *
 * In your own project, import from `muster/client` instead of `../src/client/index.js`.
 */
import { IdentifySlotError, MusterIdentifyThrottler, ShardingControl, shardIdsOf, type StartContext } from '../src/client/index.js';
import type { Range } from '../src/protocols/sharding/ranges.js';

const url = process.env.MUSTER_URL ?? 'ws://127.0.0.1:7373/sharding';
const authorization = process.env.MUSTER_KEY ?? '';
const name = process.env.CONTROL_NAME ?? `control-${process.pid}`;
const capacity = Number(process.env.CONTROL_CAPACITY ?? 1);

/** Stands in for one Discord gateway connection. */
class SimulatedShard {
  readonly startedAt = Date.now();
  latency = 40 + Math.round(Math.random() * 40);
  readonly #timer: NodeJS.Timeout;

  constructor(readonly id: number) {
    this.#timer = setInterval(() => {
      this.latency = 40 + Math.round(Math.random() * 40);
    }, 5_000);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

const running = new Map<number, SimulatedShard>();

async function startShards(ranges: Range[], ctx: StartContext): Promise<void> {
  for (const id of shardIdsOf(ranges)) {
    // Wait for the MASTER's fleet-wide identify slot (one per max_concurrency bucket per 5 s).
    try {
      await control.identifySlot(id, ctx.signal);
    } catch (err) {
      if (err instanceof IdentifySlotError) continue; // stopped (or closing) meanwhile
      throw err;
    }
    // ── Plug the real gateway in here: identify shard `id` of
    //    `control.initialise.shard_count` with the token `control.initialise.token`.
    running.set(id, new SimulatedShard(id));
    console.log(`[${name}] shard ${id} connected (${ctx.reason})`);
  }
}

function stopShards(ranges: Range[], reason: string): void {
  for (const id of shardIdsOf(ranges)) {
    // ── And close the real gateway connection of shard `id` here, at once.
    running.get(id)?.stop();
    running.delete(id);
  }
  console.log(`[${name}] stopped ${JSON.stringify(ranges)}: ${reason}`);
}

const control: ShardingControl = new ShardingControl({
  url,
  authorization,
  name,
  capacity,
  start: startShards,
  stop: (ranges, ctx) => stopShards(ranges, ctx.reason),
  info: () => ({
    shards: [...running.values()].map((s) => ({ id: s.id, status: 'ready', latency_ms: s.latency })),
    memory_mb: Math.round(process.memoryUsage().rss / 1024 / 1024),
  }),
});

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

// With @discordjs/ws instead of simulated shards, let Muster pace the identifies:
//
//   const manager = new WebSocketManager({
//     token: control.initialise!.token,
//     intents: GatewayIntentBits.Guilds,
//     rest,
//     shardCount: control.initialise!.shard_count,
//     shardIds: shardIdsOf(ranges),
//     buildIdentifyThrottler: () => new MusterIdentifyThrottler(control),
//   });
void MusterIdentifyThrottler;

const stop = async (): Promise<void> => {
  await control.close();
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());

await control.connect();
console.log(`[${name}] connected to ${url}`);
