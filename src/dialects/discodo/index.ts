import type { DialectFactory } from '../registry.js';
import { DiscodoDialect } from './dialect.js';

export { DiscodoDialect } from './dialect.js';
export { noopVoiceBackend, type VoiceBackend, type VoiceSessionRef } from './backend.js';
export type { VoiceClientState, DestroyReason } from './voice.js';

export const discodoFactory: DialectFactory = {
  name: 'discodo',
  build(config, ctx, deps) {
    const d = config.dialects.discodo;
    if (d.password === undefined) throw new Error('discodo: password must be resolved before start');
    return new DiscodoDialect(
      {
        path: d.path,
        password: d.password,
        heartbeatInterval: d.heartbeatInterval,
        vcTimeout: d.vcTimeout,
        handshakeTimeout: d.handshakeTimeout,
        compat: d.compat,
      },
      ctx,
      deps,
    );
  },
  secrets: (config) => ({ password: config.dialects.discodo.password }),
};
