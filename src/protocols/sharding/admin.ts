/**
 * The sharding admin API's request bodies: TypeBox schemas with their derived types.
 * The HTTP edge checks them (HttpRoute.body), so the fleet machine only ever sees
 * bodies of these shapes; what depends on the fleet (does the CONTROL exist, is the
 * shard below shardCount) stays the machine's to answer.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { Range } from './ranges.js';

const ShardId = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const AdminRange = Type.Tuple([ShardId, ShardId], { description: '[first, last], inclusive, first <= last' });
const AdminRanges = Type.Array(AdminRange);

/** `POST /api/v1/sharding/rebalance`: no body or `{}` (automatic plan), or named shards to one CONTROL. */
export const RebalanceBody = Type.Union([
  Type.Object({}, { additionalProperties: false, description: 'automatic rebalance by capacity' }),
  Type.Object({ to: Type.String({ description: 'the CONTROL that takes the shards' }), shards: AdminRanges }),
]);
export type RebalanceBody = Static<typeof RebalanceBody>;

/** `POST /api/v1/sharding/controls/:name/command`: relayed to the CONTROL as COMMAND. */
export const CommandBody = Type.Union([
  Type.Object({ command: Type.Literal('restart_shard'), args: Type.Object({ shard_id: ShardId }) }),
  Type.Object({
    command: Type.Literal('restart_cluster'),
    args: Type.Object({
      shards: Type.Union([Type.Array(AdminRange, { minItems: 1 }), Type.Array(ShardId, { minItems: 1 })], {
        description: '[[first, last], …] ranges, or a flat list of shard ids',
      }),
    }),
  }),
]);
export type CommandBody = Static<typeof CommandBody>;

const ordered = (ranges: readonly unknown[]): boolean => ranges.every((r) => !Array.isArray(r) || (r[0] as number) <= (r[1] as number));

/** Every `[first, last]` has `first <= last` (beyond what a JSON schema can say). */
export const rebalanceRefine = (body: unknown): boolean => !('shards' in (body as object)) || ordered((body as { shards: Range[] }).shards);
export const commandRefine = (body: unknown): boolean => (body as CommandBody).command !== 'restart_cluster' || ordered((body as { args: { shards: unknown[] } }).args.shards);

export const REBALANCE_BAD_BODY = 'body must be empty (automatic rebalance) or {"to": "<control>", "shards": [[first, last], ...]}';

/** The message of a refused COMMAND body, by what is wrong with it. */
export function commandBadBody(body: unknown, shardCount: number): string {
  const command = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>).command : undefined;
  if (typeof command !== 'string') return 'body must be {"command": "restart_shard" | "restart_cluster", "args": {...}}';
  if (command === 'restart_shard') return `restart_shard needs args.shard_id, an integer in [0, ${shardCount})`;
  if (command === 'restart_cluster') return 'restart_cluster needs args.shards, a non-empty list of [first, last] ranges or of shard ids';
  return `unknown command "${command}" (restart_shard, restart_cluster)`;
}
