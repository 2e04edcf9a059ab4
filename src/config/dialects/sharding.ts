/**
 * The sharding dialect's config section (`dialects.sharding`; docs/dialects/sharding.md):
 * its keys, defaults, minimums, secrets and limits, in one place. `config/schema.ts`
 * composes it; the dialect's factory (`dialects/sharding/index.ts`) gets it, resolved, as
 * its config.
 */
import { Type, type StaticDecode } from '@sinclair/typebox';
import { Bool, Duration, Enum, Int, OptionalSecret, SECOND, Secret, Section, WsPath, type Resolved } from '../builders.js';

export const ShardingSection = Section({
  enabled: Bool(true),
  path: WsPath('/sharding'),
  /** The key a CONTROL presents; generated at first start when absent. */
  authorization: Secret(),
  /** The Discord bot token INITIALISE carries; never generated (absent: an empty token and a warning). */
  botToken: OptionalSecret(),
  shardCount: Int(16, 1),
  maxConcurrency: Int(1, 1),
  heartbeatInterval: Duration(30_000, SECOND),
  heartbeatGrace: Duration(15_000, 0),
  reconnectWindow: Duration(30_000, 0),
  startupDelay: Duration(45_000, 0),
  expectedControls: Int(0, 0),
  redundancy: Int(0, 0),
  startup: Enum([Type.Literal('sequential'), Type.Literal('parallel')], 'sequential'),
  connectTimeout: Duration(120_000, SECOND),
  identifyWindow: Duration(5_000, 100),
  identifyMargin: Duration(250, 0),
  sessionStartLimit: Int(1_000, 0),
  fenceMargin: Duration(5_000, 0),
  identifyTimeout: Duration(10_000, SECOND),
});

/** Limits that are not config keys. */
export const SHARDING_LIMITS = {
  /** Unsent bytes per CONTROL before it is treated as a slow consumer. */
  maxBufferedBytes: 4 * 1024 * 1024,
} as const;

/** `dialects.sharding` as loaded (the secrets may still be unresolved). */
export type ShardingSection = StaticDecode<typeof ShardingSection>;
/** `dialects.sharding` with its authorization resolved: what the dialect is built from. */
export type ShardingResolved = Resolved<typeof ShardingSection>;
