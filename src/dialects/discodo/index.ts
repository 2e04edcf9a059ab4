import type { DialectFactory } from '../registry.js';
import { DiscodoDialect } from './dialect.js';

export { DiscodoDialect } from './dialect.js';
export { noopVoiceBackend, type VoiceBackend, type VoiceSessionRef } from './backend.js';
export type { VoiceClientState, DestroyReason } from './voice.js';

export const discodoFactory: DialectFactory<'discodo'> = {
  name: 'discodo',
  build(d, ctx, deps) {
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
};
