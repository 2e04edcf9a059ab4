/**
 * The bus dialect's config section (`dialects.bus`; docs/dialects/bus.md): its keys,
 * defaults, minimums and secrets, in one place. `config/schema.ts` composes it; the
 * dialect's factory (`dialects/bus/index.ts`) gets it, resolved, as its config.
 */
import type { StaticDecode } from '@sinclair/typebox';
import { Bool, Bytes, Duration, Int, SECOND, Secret, Section, WsPath, type Resolved } from '../builders.js';

export const BusSection = Section({
  enabled: Bool(true),
  path: WsPath('/bus'),
  /** Generated at first start when absent. */
  token: Secret(),
  heartbeatInterval: Duration(30_000, SECOND),
  maxMessageBytes: Bytes(32_768),
  requestTimeout: Duration(10_000, 100),
  identifyTimeout: Duration(10_000, SECOND),
  /** Unsent bytes per service before it is cut as a slow consumer. */
  maxBufferedBytes: Bytes(4_194_304),
  /** Per service: EVENTs and EVENT bytes a second (0: no limit); bursts of 2 s are allowed. */
  maxEventsPerSecond: Int(1000, 0),
  maxEventBytesPerSecond: Bytes(1_048_576, 0),
  preAuthMaxBytes: Bytes(16_384, 1024),
});

/** `dialects.bus` as loaded (the token may still be unresolved). */
export type BusSection = StaticDecode<typeof BusSection>;
/** `dialects.bus` with its token resolved: what the dialect is built from. */
export type BusResolved = Resolved<typeof BusSection>;
