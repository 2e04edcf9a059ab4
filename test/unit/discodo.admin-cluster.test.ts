import { describe, expect, it } from 'vitest';
import type { Broker } from '../../src/cluster/broker.js';
import { ManualClock } from '../../src/core/clock.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { ClusterLister, type View } from '../../src/dialects/discodo/admin-cluster.js';
import { CLUSTER_TOPIC, decodeClusterMsg, encodeClusterMsg, instanceTopic } from '../../src/dialects/discodo/cluster-wire.js';

/** The admin views across instances, with a broker that records what it is given and a manual clock. */
function harness(live: string[]) {
  const clock = new ManualClock(1_000_000);
  const scheduler = new Scheduler(clock);
  const sent: Array<{ topic: string; from: string; msg: unknown }> = [];
  const broker = {
    instanceId: 'a',
    publish: (topic: string, m: Buffer) => {
      const d = decodeClusterMsg(m);
      sent.push({ topic, from: d?.from ?? '?', msg: d?.msg });
    },
  } as unknown as Broker;
  const mine: View[] = [{ key: '1', state: 'connected' }];
  const lister = new ClusterLister(broker, scheduler, (key) => mine.filter((v) => key === null || v.key === key), () => live, 1000);
  return { clock, lister, sent };
}

const listed = (id: string, sessions: View[]) => {
  const d = decodeClusterMsg(encodeClusterMsg('x', { t: 'listed', id, sessions }));
  if (d?.msg.t !== 'listed') throw new Error('bad');
  return d.msg;
};

describe('discodo admin views across instances', () => {
  it('gathers every instance\'s sessions, tagged with their instance', async () => {
    const h = harness(['b', 'c']);
    const p = h.lister.list(null);
    expect(h.sent).toEqual([{ topic: CLUSTER_TOPIC, from: 'a', msg: { t: 'list', id: expect.any(String), key: null } }]);
    const id = (h.sent[0]?.msg as { id: string }).id;
    h.lister.onMessage('b', listed(id, [{ key: '2', state: 'detached' }]));
    // An answer to another ask, or a second one from b, changes nothing.
    h.lister.onMessage('b', listed(id, [{ key: 'dup' }]));
    h.lister.onMessage('c', listed('other', [{ key: 'zz' }]));
    h.lister.onMessage('c', listed(id, []));
    expect(await p).toEqual({
      views: [
        { key: '1', state: 'connected', instance: 'a' },
        { key: '2', state: 'detached', instance: 'b' },
      ],
      missing: [],
    });
  });

  it('answers after the timeout with what it has, naming the instances that did not answer', async () => {
    const h = harness(['b', 'c']);
    const p = h.lister.list('1');
    h.clock.advance(1000);
    expect(await p).toEqual({ views: [{ key: '1', state: 'connected', instance: 'a' }], missing: ['b', 'c'] });
  });

  it('does not wait for an instance reported gone; with no other instance it answers at once', async () => {
    const h = harness(['b']);
    const p = h.lister.list(null);
    h.lister.onPeerGone('b');
    expect((await p).missing).toEqual([]);
    expect(await harness([]).lister.list(null)).toEqual({ views: [{ key: '1', state: 'connected', instance: 'a' }], missing: [] });
  });

  it('answers another instance\'s ask on that instance\'s topic', () => {
    const h = harness(['b']);
    h.lister.onMessage('b', { t: 'list', id: 'q', key: '1' });
    h.lister.onMessage('b', { t: 'list', id: 'r', key: 'nope' });
    expect(h.sent).toEqual([
      { topic: instanceTopic('b'), from: 'a', msg: { t: 'listed', id: 'q', sessions: [{ key: '1', state: 'connected' }] } },
      { topic: instanceTopic('b'), from: 'a', msg: { t: 'listed', id: 'r', sessions: [] } },
    ]);
  });
});
