/**
 * The gamelist dialect's config section (`dialects.gamelist`; docs/dialects/gamelist.md):
 * its keys, defaults, minimums, secrets and limits, in one place. `config/schema.ts`
 * composes it; the dialect's factory (`dialects/gamelist/index.ts`) gets it, resolved, as
 * its config.
 */
import type { StaticDecode } from '@sinclair/typebox';
import { Bool, Bytes, Duration, Int, SECOND, SecretList, Section, WsPath, type Resolved } from '../builders.js';

export const GamelistSection = Section({
  enabled: Bool(true),
  path: WsPath('/v2/server/ws'),
  /** The registration tokens a game server may present; one is generated at first start when absent. */
  regTokens: SecretList(),
  registrationTtl: Duration(30_000, SECOND),
  pingInterval: Duration(10_000, SECOND),
  pongTimeout: Duration(20_000, SECOND),
  joinTimeout: Duration(5_000, 100),
  maxServers: Int(10_000, 1),
  maxServersPerIp: Int(25, 1),
  maxFailedRegistrations: Int(5, 1),
  publicRatePerIpPerMinute: Int(1_200, 1),
  preAuthMaxBytes: Bytes(16_384, 1024),
});

/** Limits that are not config keys. */
export const GAMELIST_LIMITS = {
  /** Unsent bytes per game server before it is a slow consumer (MS → GS traffic is small). */
  maxBufferedBytes: 1 << 20,
} as const;

/** `dialects.gamelist` as loaded (the regTokens may still be unresolved). */
export type GamelistSection = StaticDecode<typeof GamelistSection>;
/** `dialects.gamelist` with its regTokens resolved: what the dialect is built from. */
export type GamelistResolved = Resolved<typeof GamelistSection>;
