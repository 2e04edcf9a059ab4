import type { DialectFactory } from '../registry.js';
import { ClusterioDialect } from './dialect.js';

export const clusterioFactory: DialectFactory = {
  name: 'clusterio',
  build(config, ctx) {
    const c = config.dialects.clusterio;
    if (c.authSecret === undefined) throw new Error('clusterio: authSecret must be resolved before start');
    return new ClusterioDialect(
      {
        path: c.path,
        authSecret: c.authSecret,
        heartbeatInterval: c.heartbeatInterval,
        sessionTimeout: c.sessionTimeout,
        preAuthMaxBytes: c.preAuthMaxBytes,
      },
      ctx,
    );
  },
  secrets: (config) => ({ authSecret: config.dialects.clusterio.authSecret }),
};
