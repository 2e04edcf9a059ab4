import { describe, expect, it } from 'vitest';
import { dialectOf, instanceConfig, Seed2020, ClusterioHarness, serverPerTest } from '../support/harness/clusterio.js';

/**
 * One response larger than maxBufferedBytes (4 MiB) is not a slow consumer: a
 * list_instances answer that big used to cut the control that asked for it, always.
 */

const h = new ClusterioHarness();
const seeds = serverPerTest(h);

describe('clusterio: a response larger than maxBufferedBytes', () => {
  it('delivers a 4.5 MB list_instances response to a control that reads, and keeps it connected', async () => {
    const c = await Seed2020.connect(h.srv, 'control');
    seeds.push(c);
    // 150 instances with 30 KB names: about 4.5 MB of list, over the 4 MiB allowance.
    const pad = 'n'.repeat(30_000);
    for (let i = 0; i < 150; i++) c.send('create_instance_request', { serialized_config: instanceConfig(1000 + i, `${pad}${i}`) });
    for (let i = 0; i < 150; i++) expect((await c.next(10_000)).data.error).toBeUndefined();
    expect(dialectOf(h.srv).summary().instances).toBe(150);
    const seq = c.send('list_instances_request', {});
    const raw = await c.peer.nextRaw(10_000);
    expect(raw.length).toBeGreaterThan(4 * 1024 * 1024);
    const f = JSON.parse(raw) as { type: string; data: { seq: number; list: unknown[] } };
    expect(f.type).toBe('list_instances_response');
    expect(f.data.seq).toBe(seq);
    expect(f.data.list).toHaveLength(150);
    // Still connected and answering.
    expect((await c.request('list_slaves_request')).data.list).toEqual([]);
    expect(c.peer.isClosed).toBe(false);
  });
});
