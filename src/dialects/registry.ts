import type { MusterConfig } from '../config/schema.js';
import type { Dialect, DialectContext } from '../core/dialect.js';

/** What the composition root gives every dialect besides the context. */
export interface DialectDeps {
  /** Compares secrets in constant time. */
  secretEquals: (a: string, b: string) => boolean;
}

export type DialectName = keyof MusterConfig['dialects'];

/** How a dialect is built from the config. Each dialect's folder exports one. */
export interface DialectFactory {
  readonly name: DialectName;
  /** Called only when the dialect is enabled; secrets are already resolved. */
  build(config: MusterConfig, ctx: DialectContext, deps: DialectDeps): Dialect;
  /** The secrets the dialect reloads on SIGHUP, picked from a new config. */
  secrets(config: MusterConfig): Record<string, unknown>;
}
