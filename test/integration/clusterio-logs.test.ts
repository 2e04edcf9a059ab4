import { describe, expect, it, vi } from 'vitest';
import { until } from '../support/server.js';
import { Seed2020, ClusterioHarness, serverPerTest } from '../support/harness/clusterio.js';

/** Warn lines a slave can cause at will are capped per slave. */

const h = new ClusterioHarness();
const seeds = serverPerTest(h, () => vi.restoreAllMocks());

describe('clusterio: per-slave log limit', () => {
  it('writes at most a burst of warn lines for 300 unusable reported instances, then counts the rest', async () => {
    const warn = vi.spyOn(h.srv.muster.logger, 'warn');
    const s = await Seed2020.connect(h.srv, 'slave', { id: 4242, name: 'noisy' });
    seeds.push(s);
    const c = await Seed2020.connect(h.srv, 'control');
    seeds.push(c);
    const bad = Array.from({ length: 300 }, () => ({ serialized_config: { groups: [] } }));
    s.send('update_instances_event', { instances: bad });
    await c.request('list_slaves_request');
    await until(() => warn.mock.calls.length >= 5);
    await c.request('list_slaves_request');
    const lines = () => warn.mock.calls.filter((call) => call[1] === 'clusterio: ignored a reported instance');
    expect(lines()).toHaveLength(5);
    h.srv.clock.advance(1000);
    s.send('update_instances_event', { instances: bad.slice(0, 1) });
    await c.request('list_slaves_request');
    await until(() => lines().length === 6);
    expect(lines().at(-1)?.[0]).toMatchObject({ slave: '4242', suppressed: 295 });
  });
});
