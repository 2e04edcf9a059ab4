import { resolvedSection } from '../../config/builders.js';
import { BusSection } from '../../config/dialects/bus.js';
import type { DialectFactory } from '../registry.js';
import { BusDialect } from './dialect.js';

export const busFactory: DialectFactory<'bus'> = {
  name: 'bus',
  build(section, ctx, deps) {
    return new BusDialect(resolvedSection(BusSection, section, 'bus'), ctx, deps);
  },
};
