import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/index.js';
import type { DialectContext } from '../../src/core/dialect.js';
import { DIALECTS } from '../../src/dialects/index.js';
import { DIALECT_LOADERS, loadDialects } from '../../src/dialects/load.js';

/** The server loads only enabled dialects (load.ts); the registry (index.ts) lists them all. */
describe('dialect loading', () => {
  it('lists the registry\'s dialects, in its order, each loading the registry\'s factory', async () => {
    expect(DIALECT_LOADERS.map((l) => l.name)).toStrictEqual(DIALECTS.map((f) => f.name));
    for (const [i, l] of DIALECT_LOADERS.entries()) expect(await l.load()).toBe(DIALECTS[i]);
  });

  it('builds nothing when no dialect is enabled', async () => {
    const c = defaultConfig();
    for (const d of Object.values(c.dialects)) d.enabled = false;
    expect(await loadDialects(c, {} as DialectContext, { secretEquals: (a, b) => a === b })).toStrictEqual([]);
  });
});
