import type { Dialect, DialectContext } from '../core/dialect.js';
import type { MusterConfig } from '../config/schema.js';
import { BusDialect } from './bus/dialect.js';

/** Secrets the config module has filled in (generated or configured). */
export interface DialectDeps {
  secretEquals: (a: string, b: string) => boolean;
}

/**
 * The dialect registry: every enabled dialect, built from its config section.
 * This is the one place that knows the dialects by name.
 */
export function buildDialects(config: MusterConfig, ctx: DialectContext, deps: DialectDeps): Dialect[] {
  const out: Dialect[] = [];
  const bus = config.dialects.bus;
  if (bus.enabled) {
    if (bus.token === undefined) throw new Error('bus: token must be resolved before start');
    out.push(
      new BusDialect(
        {
          path: bus.path,
          token: bus.token,
          heartbeatInterval: bus.heartbeatInterval,
          maxMessageBytes: bus.maxMessageBytes,
          requestTimeout: bus.requestTimeout,
          identifyTimeout: bus.identifyTimeout,
          maxBufferedBytes: bus.maxBufferedBytes,
        },
        ctx,
        deps,
      ),
    );
  }
  return out;
}

/** The secrets each dialect reloads on SIGHUP, picked from the config. */
export function dialectSecrets(config: MusterConfig, name: string): Record<string, unknown> {
  switch (name) {
    case 'bus':
      return { token: config.dialects.bus.token };
    default:
      return {};
  }
}
