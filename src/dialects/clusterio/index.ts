import type { DialectFactory } from '../registry.js';
import { ClusterioDialect } from './dialect.js';

export const clusterioFactory: DialectFactory<'clusterio'> = {
  name: 'clusterio',
  build(c, ctx) {
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
};
