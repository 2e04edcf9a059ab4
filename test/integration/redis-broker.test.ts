import { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import type { RedisBroker } from '../../src/cluster/redis-broker.js';
import { redisBrokers } from '../support/redis-brokers.js';

/**
 * The Redis broker against a real redis-server: two brokers (two instances) on one Redis.
 * Waits are on what arrives (a frame, a peer event); "nothing else arrived" is checked
 * behind a marker sent after it on the same path (order is per sender).
 */

class Endpoint {
  readonly frames: Array<string | Buffer> = [];
  #waiters: Array<{ n: number; resolve: () => void }> = [];
  constructor(readonly id: string) {}
  send(frame: string | Buffer): boolean {
    this.frames.push(frame);
    this.#waiters = this.#waiters.filter((w) => {
      if (this.frames.length < w.n) return true;
      w.resolve();
      return false;
    });
    return true;
  }
  /** Resolves once `n` frames have arrived in all. */
  async count(n: number): Promise<Array<string | Buffer>> {
    if (this.frames.length < n) await new Promise<void>((resolve) => this.#waiters.push({ n, resolve }));
    return this.frames;
  }
}

const brokers = redisBrokers('t');
/** Two started brokers on one prefix; with `ttl`, a short presence TTL. */
const pair = (ttl = 15_000): Promise<[RedisBroker, RedisBroker]> => brokers.pair(ttl);

function peerEvent(b: RedisBroker, instance: string, up: boolean): Promise<void> {
  return new Promise((resolve) => {
    const off = b.onPeer((id, u) => {
      if (id === instance && u === up) {
        off();
        resolve();
      }
    });
  });
}

describe('RedisBroker', () => {
  it('delivers to a connection on another instance (directory look-up) and to a requester, in order, bytes as they were', async () => {
    const [one, two] = await pair();
    const here = new Endpoint('c-here');
    const there = new Endpoint('c-there');
    one.attach('bus', here);
    two.attach('bus', there);
    expect(one.ready && two.ready).toBe(true);
    // Local: direct, counted here.
    expect(one.deliver('bus', { to: 'conn', conn: 'c-here' }, 'local')).toBe(1);
    expect(here.frames).toEqual(['local']);
    const binary = Buffer.from([0x00, 0x0a, 0xff, 0xfe, 0x7b]);
    for (let i = 0; i < 50; i++) one.deliver('bus', { to: 'conn', conn: 'c-there' }, `m${i}`);
    one.deliver('bus', { to: 'requester', requester: { instance: 'two', conn: 'c-there' } }, binary);
    one.deliver('bus', { to: 'conn', conn: 'c-there' }, 'last');
    const got = await there.count(52);
    expect(got.slice(0, 50)).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
    expect(Buffer.isBuffer(got[50])).toBe(true);
    expect((got[50] as Buffer).equals(binary)).toBe(true);
    expect(got[51]).toBe('last');
    expect(here.frames).toEqual(['local']);
  });

  it('reaches group members and everyone on every instance, minus `except`; `local` stays here', async () => {
    const [one, two] = await pair();
    const a = new Endpoint('a');
    const b = new Endpoint('b');
    const c = new Endpoint('c');
    one.attach('bus', a);
    two.attach('bus', b);
    two.attach('bus', c);
    one.join('bus', 'jobs', 'a');
    two.join('bus', 'jobs', 'b');
    await two.subscribed();
    expect(one.deliver('bus', { to: 'group', group: 'jobs', except: 'a' }, 'g1')).toBe(0);
    expect(one.deliver('bus', { to: 'group', group: 'jobs', local: true }, 'g-local')).toBe(1);
    expect(one.deliver('bus', { to: 'all' }, 'all1')).toBe(1);
    expect(one.deliver('bus', { to: 'all', except: 'b' }, 'all2')).toBe(1);
    // Another scope's "all" is not this one's.
    one.deliver('sharding', { to: 'all' }, 'other-scope');
    // Markers behind everything: what was wrongly delivered would be before them.
    one.deliver('bus', { to: 'conn', conn: 'b' }, 'marker');
    one.deliver('bus', { to: 'conn', conn: 'c' }, 'marker');
    expect(await b.count(3)).toEqual(['g1', 'all1', 'marker']);
    expect(await c.count(3)).toEqual(['all1', 'all2', 'marker']);
    expect(a.frames).toEqual(['g-local', 'all1', 'all2']);
    // Left the group: no more of its frames there.
    two.leave('bus', 'jobs', 'b');
    await two.subscribed();
    one.deliver('bus', { to: 'group', group: 'jobs' }, 'g2');
    one.deliver('bus', { to: 'conn', conn: 'b' }, 'marker2');
    expect(await b.count(4)).toEqual(['g1', 'all1', 'marker', 'marker2']);
  });

  it('carries topics to every subscribed instance, once to its own', async () => {
    const [one, two] = await pair();
    const seen: string[] = [];
    const got = new Promise<void>((resolve) =>
      two.subscribe('news', (m, t) => {
        seen.push(`two:${t}:${m.toString()}`);
        if (seen.length === 2) resolve();
      }),
    );
    const mine: string[] = [];
    one.subscribe('news', (m) => mine.push(m.toString()));
    await two.subscribed();
    one.publish('news', Buffer.from('hello'));
    one.publish('other', Buffer.from('nobody'));
    one.publish('news', Buffer.from('again'));
    await got;
    expect(seen).toEqual(['two:news:hello', 'two:news:again']);
    expect(mine).toEqual(['hello', 'again']);
  });

  it('batches one turn\'s messages per channel, keeping their order across channels and turns', async () => {
    const [one, two] = await pair();
    const log: string[] = [];
    two.attach('bus', { id: 'b', send: (f) => log.push(typeof f === 'string' ? f : `bin:${f.length}`) > 0 });
    two.join('bus', 'jobs', 'b');
    two.subscribe('news', (m) => log.push(`topic:${m.toString()}`));
    await two.subscribed();
    const to = { to: 'requester', requester: { instance: 'two', conn: 'b' } } as const;
    const published = one.stats.published;
    const publishes = one.stats.publishes;
    // One turn: runs of one channel (inst, grp, inst, all, topic, inst), frames that look
    // like batch framing, and one frame too big to share a batch.
    for (let i = 0; i < 5; i++) one.deliver('bus', to, `r${i}`);
    one.deliver('bus', { to: 'group', group: 'jobs' }, 'g1');
    one.deliver('bus', { to: 'group', group: 'jobs' }, '$3\ng2');
    one.deliver('bus', to, Buffer.alloc(70_000, 0x24));
    one.deliver('bus', to, 'r5');
    one.deliver('bus', { to: 'all' }, 'all1');
    one.publish('news', Buffer.from('n1'));
    one.deliver('bus', to, 'r6');
    await one.flushed();
    // The next turn's messages come after them.
    one.deliver('bus', to, 'r7');
    const want = ['r0', 'r1', 'r2', 'r3', 'r4', 'g1', '$3\ng2', 'bin:70000', 'r5', 'all1', 'topic:n1', 'r6', 'r7'];
    await vi.waitFor(() => expect(log).toHaveLength(want.length));
    expect(log).toEqual(want);
    expect(one.stats.published - published).toBe(want.length);
    // inst (5), grp (2), inst (the big one alone), inst, all, topic, inst; then the next turn's inst.
    expect(one.stats.publishes - publishes).toBe(8);
    expect(two.stats.received).toBe(want.length);
  });

  it('finds a crashed instance gone within its presence TTL; its connections leave the directory', async () => {
    const [one, two] = await pair(300);
    two.attach('bus', new Endpoint('doomed'));
    const probe = new Redis(brokers.server().url);
    try {
      await two.flushed();
      expect(await probe.hget(`${brokers.prefix()}dir`, 'doomed')).toBe('two');
      const gone = peerEvent(one, 'two', false);
      two.halt();
      await gone;
      expect(await probe.hget(`${brokers.prefix()}dir`, 'doomed')).toBeNull();
      expect(one.peers).toEqual([]);
      const before = one.stats.unroutable;
      one.deliver('bus', { to: 'conn', conn: 'doomed' }, 'x');
      await one.flushed();
      expect(one.stats.unroutable).toBe(before + 1);
    } finally {
      probe.disconnect();
    }
  });

  it('keeps local deliveries going while Redis is down, refuses remote ones, and recovers by itself', async () => {
    const [one, two] = await pair(300);
    const a = new Endpoint('a');
    const b = new Endpoint('b');
    one.attach('bus', a);
    two.attach('bus', b);
    one.join('bus', 'g', 'a');
    two.join('bus', 'g', 'b');
    await two.subscribed();
    const down = new Promise<void>((resolve) => one.onReady((r) => r || resolve()));
    await brokers.server().stop('SIGKILL');
    await down;
    const refused = one.stats.refused;
    expect(one.deliver('bus', { to: 'group', group: 'g' }, 'during')).toBe(1);
    expect(a.frames).toEqual(['during']);
    expect(one.ready).toBe(false);
    expect(one.stats.refused).toBeGreaterThan(refused);
    const back = peerEvent(one, 'two', true);
    const backTwo = peerEvent(two, 'one', true);
    await brokers.server().start();
    await back;
    await backTwo;
    expect(one.ready && two.ready).toBe(true);
    one.deliver('bus', { to: 'group', group: 'g' }, 'after');
    one.deliver('bus', { to: 'conn', conn: 'b' }, 'direct');
    expect(await b.count(2)).toEqual(['after', 'direct']);
  });
});

