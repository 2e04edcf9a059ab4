import { beforeAll, describe, expect, it } from 'vitest';
import { crashRun } from '../chaos/crash.js';
import { ensureBuilt } from '../chaos/server.js';

/**
 * kill -9 under write load, against the built server and a real SQLite file: every
 * write the server acknowledged is there after the restart. Three seeded kills on one
 * data dir (four server starts); `npm run chaos` runs many more. On the code that
 * answered before writing, these seeds lost acknowledged creates and config changes.
 */
beforeAll(() => ensureBuilt());

describe('crash: kill -9 under pipelined Clusterio writes', () => {
  it('loses no acknowledged create_instance or set_instance_config_field', { timeout: 90_000 }, async () => {
    const results = await crashRun({ seed: 0x5eed, kills: 3, maxAcks: 300 });
    expect(results).toHaveLength(3);
    for (const r of results) {
      // The kill came while writes were being acknowledged, not before any.
      expect(r.ackedCreates + r.ackedSets).toBeGreaterThanOrEqual(r.killAfter);
      expect({ seed: r.seed, kill: r.kill, lost: r.details }).toEqual({ seed: r.seed, kill: r.kill, lost: [] });
    }
  });
});
