import { resolvedSection } from '../../config/builders.js';
import { ShardingSection } from '../../config/dialects/sharding.js';
import type { DialectFactory } from '../registry.js';
import { ShardingDialect } from './dialect.js';

export const shardingFactory: DialectFactory<'sharding'> = {
  name: 'sharding',
  build(section, ctx, deps) {
    const c = resolvedSection(ShardingSection, section, 'sharding');
    // no botToken: INITIALISE carries an empty token (the dialect warns once)
    const cluster = deps.leadership ? { cluster: { leadership: deps.leadership } } : {};
    return new ShardingDialect({ ...c, botToken: c.botToken ?? '' }, ctx, { secretEquals: deps.secretEquals, ...cluster });
  },
};
