/**
 * The gamelist dialect's harness (`/v2/server/ws`): a server with gamelist on and the
 * given registration tokens, peers, and the registration frame both tiers send. Its
 * round trip is a re-registration: its answer (type -1) comes after every frame sent
 * before it. Wire-level, so the conformance tests use it too.
 */
import type { TestServer } from '../server.js';
import { startTestServer } from '../server.js';
import { Harness, withDialect, type Overrides } from './harness.js';

export class GamelistHarness extends Harness<TestServer, [extra?: Overrides, top?: Overrides]> {
  constructor(readonly regTokens: readonly string[]) {
    super('/v2/server/ws', (extra = {}, top = {}) =>
      startTestServer(withDialect('gamelist', { enabled: true, regTokens: [...regTokens], ...extra }, top)),
    );
  }
}

/** A game server's `info`, as it registers it. */
export interface Info {
  name: string;
  desc: string;
  port: number;
  map: string;
  playlist: string;
  curPlayers: number;
  maxPlayers: number;
  password?: string;
  gameState: number;
}

/** A registration (or refresh) frame; `id` is written as raw digits, so it may be beyond 2^53. */
export function regFrame(info: unknown, token: string, id: string | number): string {
  return `{"metadata":{"type":1,"id":${id}},"info":${JSON.stringify(info)},"regToken":${JSON.stringify(token)}}`;
}

/** The answer to a registration. */
export interface RegResponse {
  metadata: { type: number; id: number };
  success: boolean;
  error?: { type: number; msg: string };
  server_id?: string | number;
}
