import type { MusterConfig } from '../config/schema.js';
import type { Dialect, DialectContext } from '../core/dialect.js';
import { busFactory } from './bus/index.js';
import { shardingFactory } from './sharding/index.js';
import { clusterioFactory } from './clusterio/index.js';
import { gamelistFactory } from './gamelist/index.js';
import { discodoFactory } from './discodo/index.js';
import type { DialectDeps, DialectFactory } from './registry.js';

export type { DialectDeps, DialectFactory } from './registry.js';
export { dialectSecrets } from './load.js';

/**
 * The dialect registry: the one place that knows the dialects by name.
 * To add a dialect, export a DialectFactory from its folder and list it here, and in
 * `DIALECT_LOADERS` (load.ts), which the server starts from: it imports only the
 * dialects that are enabled.
 */
export const DIALECTS: readonly DialectFactory[] = [
  busFactory,
  shardingFactory,
  clusterioFactory,
  gamelistFactory,
  discodoFactory,
];

/** Every enabled dialect, built from its config section. */
export function buildDialects(config: MusterConfig, ctx: DialectContext, deps: DialectDeps): Dialect[] {
  return DIALECTS.filter((f) => config.dialects[f.name].enabled).map((f) => f.build(config.dialects[f.name], ctx, deps));
}

