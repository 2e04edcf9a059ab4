import { resolvedSection } from '../../config/builders.js';
import { CLUSTERIO_LIMITS, ClusterioSection } from '../../config/dialects/clusterio.js';
import type { DialectFactory } from '../registry.js';
import { ClusterioDialect } from './dialect.js';

export const clusterioFactory: DialectFactory<'clusterio'> = {
  name: 'clusterio',
  build(section, ctx) {
    return new ClusterioDialect({ ...CLUSTERIO_LIMITS, ...resolvedSection(ClusterioSection, section, 'clusterio') }, ctx);
  },
};
