import { sectionSecrets } from '../config/builders.js';
import { DialectsSchema, type MusterConfig } from '../config/schema.js';
import type { Dialect, DialectContext } from '../core/dialect.js';
import { busFactory } from './bus/index.js';
import { shardingFactory } from './sharding/index.js';
import { clusterioFactory } from './clusterio/index.js';
import { gamelistFactory } from './gamelist/index.js';
import { discodoFactory } from './discodo/index.js';
import type { DialectDeps, DialectFactory } from './registry.js';

export type { DialectDeps, DialectFactory } from './registry.js';

/**
 * The dialect registry: the one place that knows the dialects by name.
 * To add a dialect, export a DialectFactory from its folder and list it here.
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

/** The secrets a dialect reloads on SIGHUP: its section's keys the schema marks secret. */
export function dialectSecrets(config: MusterConfig, name: string): Record<string, unknown> {
  if (!Object.hasOwn(DialectsSchema.properties, name)) return {};
  const n = name as keyof typeof DialectsSchema.properties;
  return sectionSecrets(DialectsSchema.properties[n], config.dialects[n]);
}
