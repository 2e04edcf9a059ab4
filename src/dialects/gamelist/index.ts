import type { DialectFactory } from '../registry.js';
import { GamelistDialect } from './dialect.js';

export const gamelistFactory: DialectFactory<'gamelist'> = {
  name: 'gamelist',
  build(g, ctx, deps) {
    if (g.regTokens === undefined || g.regTokens.length === 0) throw new Error('gamelist: regTokens must be resolved before start');
    return new GamelistDialect(
      {
        path: g.path,
        regTokens: g.regTokens,
        registrationTtl: g.registrationTtl,
        pingInterval: g.pingInterval,
        pongTimeout: g.pongTimeout,
        joinTimeout: g.joinTimeout,
        maxServers: g.maxServers,
        maxServersPerIp: g.maxServersPerIp,
        maxFailedRegistrations: g.maxFailedRegistrations,
        publicRatePerIpPerMinute: g.publicRatePerIpPerMinute,
        preAuthMaxBytes: g.preAuthMaxBytes,
      },
      ctx,
      deps,
    );
  },
};
