import { resolvedSection } from '../../config/builders.js';
import { GamelistSection } from '../../config/dialects/gamelist.js';
import type { DialectFactory } from '../registry.js';
import { GamelistDialect } from './dialect.js';

export const gamelistFactory: DialectFactory<'gamelist'> = {
  name: 'gamelist',
  build(section, ctx, deps) {
    return new GamelistDialect(resolvedSection(GamelistSection, section, 'gamelist'), ctx, deps);
  },
};
