import type { Leadership } from '../cluster/leadership.js';
import type { DialectsConfig } from '../config/schema.js';
import type { Dialect, DialectContext } from '../core/dialect.js';

/** What the composition root gives every dialect besides the context. */
export interface DialectDeps {
  /** Compares secrets in constant time. */
  secretEquals: (a: string, b: string) => boolean;
  /**
   * Cluster mode: who runs the singleton jobs (the sharding orchestrator). Absent: one
   * process, always the leader.
   */
  leadership?: Leadership;
}

export type DialectName = keyof DialectsConfig;

/**
 * How a dialect is built from its config section (`dialects.<name>`, whose schema the
 * dialect owns in `config/dialects/<name>.ts`). Each dialect's folder exports one. The
 * secrets it reloads on SIGHUP are the section's secret keys, read from the schema.
 */
export interface DialectFactory<N extends DialectName = DialectName> {
  readonly name: N;
  /** Called only when the dialect is enabled; secrets are already resolved. */
  build(section: DialectsConfig[N], ctx: DialectContext, deps: DialectDeps): Dialect;
}
