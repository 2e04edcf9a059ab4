import type { MusterConfig } from '../config/schema.js';
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
  return DIALECTS.filter((f) => config.dialects[f.name].enabled).map((f) => f.build(config, ctx, deps));
}

/** The secrets a dialect reloads on SIGHUP, picked from the config. */
export function dialectSecrets(config: MusterConfig, name: string): Record<string, unknown> {
  return DIALECTS.find((f) => f.name === name)?.secrets(config) ?? {};
}
