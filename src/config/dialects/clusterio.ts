/**
 * The Clusterio dialect's config section (`dialects.clusterio`; docs/dialects/clusterio.md):
 * its keys, defaults, minimums, secrets and limits, in one place. `config/schema.ts`
 * composes it; the dialect's factory (`dialects/clusterio/index.ts`) gets it, resolved,
 * with its limits, as its config.
 */
import type { StaticDecode } from '@sinclair/typebox';
import { Bool, Bytes, Duration, SECOND, Secret, Section, WsPath, type Resolved } from '../builders.js';

export const ClusterioSection = Section({
  enabled: Bool(true),
  path: WsPath('/api/socket'),
  /** The HMAC key of slave and control tokens; generated at first start when absent. */
  authSecret: Secret(),
  heartbeatInterval: Duration(15_000, SECOND),
  sessionTimeout: Duration(60_000, SECOND),
  preAuthMaxBytes: Bytes(16_384, 1024),
});

/** Limits that are not config keys. */
export const CLUSTERIO_LIMITS = {
  /** Unsent bytes per socket before it is a slow consumer. */
  maxBufferedBytes: 4 * 1024 * 1024,
  /** Unacknowledged bytes a session keeps for replay. */
  sessionBufferBytes: 4 * 1024 * 1024,
} as const;

/** `dialects.clusterio` as loaded (the authSecret may still be unresolved). */
export type ClusterioSection = StaticDecode<typeof ClusterioSection>;
/** `dialects.clusterio` with its authSecret resolved: what the dialect is built from. */
export type ClusterioResolved = Resolved<typeof ClusterioSection>;
