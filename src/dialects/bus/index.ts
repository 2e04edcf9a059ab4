import type { DialectFactory } from '../registry.js';
import { BusDialect } from './dialect.js';

export const busFactory: DialectFactory<'bus'> = {
  name: 'bus',
  build(bus, ctx, deps) {
    if (bus.token === undefined) throw new Error('bus: token must be resolved before start');
    return new BusDialect(
      {
        path: bus.path,
        token: bus.token,
        heartbeatInterval: bus.heartbeatInterval,
        maxMessageBytes: bus.maxMessageBytes,
        requestTimeout: bus.requestTimeout,
        identifyTimeout: bus.identifyTimeout,
        maxBufferedBytes: bus.maxBufferedBytes,
        maxEventsPerSecond: bus.maxEventsPerSecond,
        maxEventBytesPerSecond: bus.maxEventBytesPerSecond,
        preAuthMaxBytes: bus.preAuthMaxBytes,
      },
      ctx,
      deps,
    );
  },
};
