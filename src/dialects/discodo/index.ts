import { resolvedSection } from '../../config/builders.js';
import { DiscodoSection } from '../../config/dialects/discodo.js';
import type { DialectFactory } from '../registry.js';
import { DiscodoDialect } from './dialect.js';

export { DiscodoDialect } from './dialect.js';
export { noopVoiceBackend, type VoiceBackend, type VoiceSessionRef } from './backend.js';
export type { VoiceClientState, DestroyReason } from './voice.js';

export const discodoFactory: DialectFactory<'discodo'> = {
  name: 'discodo',
  build(section, ctx, deps) {
    return new DiscodoDialect(resolvedSection(DiscodoSection, section, 'discodo'), ctx, deps);
  },
};
