import { sectionSecrets } from '../config/builders.js';
import { DialectsSchema, type MusterConfig } from '../config/schema.js';
import type { Dialect, DialectContext } from '../core/dialect.js';
import type { DialectDeps, DialectFactory, DialectName } from './registry.js';

/**
 * How the server loads its dialects: only the enabled ones, each imported when it is
 * built. A server with one dialect does not carry the others' code, schemas and
 * protocol tables (some 2 MiB of heap and code for four unused dialects). The order is
 * the registry's (`DIALECTS` in index.ts, which a test holds this list to).
 */
export const DIALECT_LOADERS: ReadonlyArray<{ readonly name: DialectName; readonly load: () => Promise<DialectFactory> }> = [
  { name: 'bus', load: async () => (await import('./bus/index.js')).busFactory },
  { name: 'sharding', load: async () => (await import('./sharding/index.js')).shardingFactory },
  { name: 'clusterio', load: async () => (await import('./clusterio/index.js')).clusterioFactory },
  { name: 'gamelist', load: async () => (await import('./gamelist/index.js')).gamelistFactory },
  { name: 'discodo', load: async () => (await import('./discodo/index.js')).discodoFactory },
];

/** The factories of the enabled dialects, loaded, in the registry's order. */
export function loadDialectFactories(config: MusterConfig): Promise<DialectFactory[]> {
  return Promise.all(DIALECT_LOADERS.filter((l) => config.dialects[l.name].enabled).map((l) => l.load()));
}

/** Builds each loaded dialect from its config section. */
export function buildLoaded(factories: readonly DialectFactory[], config: MusterConfig, ctx: DialectContext, deps: DialectDeps): Dialect[] {
  return factories.map((f) => f.build(config.dialects[f.name], ctx, deps));
}

/** Every enabled dialect, loaded and built from its config section, in the registry's order. */
export async function loadDialects(config: MusterConfig, ctx: DialectContext, deps: DialectDeps): Promise<Dialect[]> {
  return buildLoaded(await loadDialectFactories(config), config, ctx, deps);
}

/** The secrets a dialect reloads on SIGHUP: its section's keys the schema marks secret. */
export function dialectSecrets(config: MusterConfig, name: string): Record<string, unknown> {
  if (!Object.hasOwn(DialectsSchema.properties, name)) return {};
  const n = name as keyof typeof DialectsSchema.properties;
  return sectionSecrets(DialectsSchema.properties[n], config.dialects[n]);
}
