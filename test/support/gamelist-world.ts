import type { WorldConfig } from '../../src/dialects/gamelist/world.js';

/** What the gamelist world tests share: a game server's info, a join body, and the world's config. */
export const INFO = { name: 'n', desc: 'd', port: 37015, map: 'm', playlist: 'p', curPlayers: 0, maxPlayers: 8, gameState: 0 };
export const JOIN = { sessionToken: 's', username: 'u' };

/** A REGISTER frame's text (regToken `token`, frame id `id`, `over` on the info). */
export function registerText(token: string, id: number, over: Record<string, unknown> = {}): string {
  return JSON.stringify({ metadata: { type: 1, id }, info: { ...INFO, ...over }, regToken: token });
}

/** A world config with small limits and counting id/conv sources (each call its own). */
export function gamelistWorldConfig(over: Partial<WorldConfig> = {}): WorldConfig {
  let ids = 0;
  let convs = 0;
  return {
    machine: { regTokens: ['tok'], maxFailedRegistrations: 3, secretEquals: (a, b) => a === b },
    registrationTtl: 30_000,
    pingInterval: 10_000,
    pongTimeout: 5_000,
    joinTimeout: 3_000,
    maxServers: 100,
    maxServersPerIp: 5,
    newServerId: () => `srv-${++ids}`,
    newConv: () => ++convs,
    ...over,
  };
}
