/**
 * The discodo dialect's config section (`dialects.discodo`; docs/dialects/discodo.md):
 * its keys, defaults, minimums, secrets and limits, in one place. `config/schema.ts`
 * composes it; the dialect's factory (`dialects/discodo/index.ts`) gets it, resolved, as
 * its config.
 */
import { Type, type StaticDecode } from '@sinclair/typebox';
import { Bool, Duration, Enum, SECOND, Secret, Section, WsPath, type Resolved } from '../builders.js';

export const DiscodoSection = Section({
  enabled: Bool(true),
  path: WsPath('/ws'),
  /** The Authorization a client presents; generated at first start when absent. */
  password: Secret(),
  heartbeatInterval: Duration(15_000, SECOND),
  vcTimeout: Duration(300_000, SECOND),
  handshakeTimeout: Duration(60_000, SECOND),
  compat: Enum([Type.Literal('seed'), Type.Literal('discodo-3')], 'seed'),
  /**
   * Cluster mode: how long an IDENTIFY for a session another instance holds waits for that
   * instance to hand it over before the session is taken as gone there (a new one starts).
   */
  claimTimeout: Duration(2_000, 100),
});

/** Limits that are not config keys. */
export const DISCODO_LIMITS = {
  /** Unsent bytes per connection before it is cut as a slow consumer. */
  maxBufferedBytes: 4 * 1024 * 1024,
} as const;

/** `dialects.discodo` as loaded (the password may still be unresolved). */
export type DiscodoSection = StaticDecode<typeof DiscodoSection>;
/** `dialects.discodo` with its password resolved: what the dialect is built from. */
export type DiscodoResolved = Resolved<typeof DiscodoSection>;
