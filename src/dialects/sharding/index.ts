import type { DialectFactory } from '../registry.js';
import { ShardingDialect } from './dialect.js';

export const shardingFactory: DialectFactory<'sharding'> = {
  name: 'sharding',
  build(c, ctx, deps) {
    if (c.authorization === undefined) throw new Error('sharding: authorization must be resolved before start');
    return new ShardingDialect(
      {
        path: c.path,
        authorization: c.authorization,
        botToken: c.botToken ?? '',
        shardCount: c.shardCount,
        maxConcurrency: c.maxConcurrency,
        heartbeatInterval: c.heartbeatInterval,
        heartbeatGrace: c.heartbeatGrace,
        reconnectWindow: c.reconnectWindow,
        startupDelay: c.startupDelay,
        expectedControls: c.expectedControls,
        redundancy: c.redundancy,
        startup: c.startup,
        connectTimeout: c.connectTimeout,
        identifyWindow: c.identifyWindow,
        identifyMargin: c.identifyMargin,
        sessionStartLimit: c.sessionStartLimit,
        fenceMargin: c.fenceMargin,
        identifyTimeout: c.identifyTimeout,
      },
      ctx,
      deps,
    );
  },
};
