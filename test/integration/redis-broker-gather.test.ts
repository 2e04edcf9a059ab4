import { describe, expect, it } from 'vitest';
import type { RedisBroker } from '../../src/cluster/redis-broker.js';
import type { CloseOrder } from '../../src/cluster/gather.js';
import { redisBrokers } from '../support/redis-brokers.js';

/**
 * Gathers and remote closes of the Redis broker against a real redis-server: two brokers
 * (two instances) on one Redis. Waits are on answers, never on a timer.
 */

class Endpoint {
  readonly closed: Array<[number, string]> = [];
  #onClose: (() => void) | undefined;
  constructor(readonly id: string) {}
  send(): boolean {
    return true;
  }
  close(code: number, reason: string): void {
    this.closed.push([code, reason]);
    this.#onClose?.();
  }
  whenClosed(): Promise<void> {
    return this.closed.length > 0 ? Promise.resolve() : new Promise((r) => (this.#onClose = r));
  }
}

const ORDER: CloseOrder = { code: 1008, reason: 'kicked by an operator', by: 'test' };

const brokers = redisBrokers('g');
/** Two started brokers that see each other, on a fresh prefix (a short TTL: they meet within a heartbeat). */
const pair = (ttl = 900): Promise<[RedisBroker, RedisBroker]> => brokers.pair(ttl, { met: true });

describe('RedisBroker: closes and gathers across instances', () => {
  it('closes a connection held by the other instance, and says which', async () => {
    const [one, two] = await pair();
    const there = new Endpoint('c-there');
    two.attach('bus', there);
    expect(await one.closeConn('c-there', ORDER)).toEqual({ closed: true, instance: 'two' });
    expect(there.closed).toEqual([[1008, 'kicked by an operator']]);
  });

  it("uses the holder's closer, which hears who asked", async () => {
    const [one, two] = await pair();
    const asked: unknown[] = [];
    two.setCloser((id, order, from) => {
      asked.push({ id, by: order.by, note: order.note, from });
      return true;
    });
    expect(await one.closeConn('anything', { ...ORDER, note: 'flooding' })).toEqual({ closed: true, instance: 'two' });
    expect(asked).toEqual([{ id: 'anything', by: 'test', note: 'flooding', from: 'one' }]);
  });

  it('is not found when neither instance has it (every instance answered)', async () => {
    const [one] = await pair();
    expect(await one.closeConn('nowhere', ORDER)).toEqual({ closed: false, missing: [], reachable: true });
  });

  it("gathers every instance's answer", async () => {
    const [one, two] = await pair();
    one.answer('who', (q) => ({ me: 'one', q }));
    two.answer('who', (q, from) => ({ me: 'two', q, from }));
    const g = await one.gather('who', 7);
    expect([...g.answers.entries()]).toEqual([
      ['one', { ok: true, value: { me: 'one', q: 7 } }],
      ['two', { ok: true, value: { me: 'two', q: 7, from: 'one' } }],
    ]);
    expect(g.missing).toEqual([]);
  });

  it('while Redis is down: a local close works, a remote one is refused as unreachable at once', async () => {
    const [one, two] = await pair();
    const here = new Endpoint('c-here');
    one.attach('bus', here);
    two.attach('bus', new Endpoint('c-there'));
    const down = new Promise<void>((resolve) => one.onReady((r) => r || resolve()));
    await brokers.server().stop('SIGKILL');
    try {
      await down;
      expect(await one.closeConn('c-here', ORDER)).toEqual({ closed: true, instance: 'one' });
      expect(await one.closeConn('c-there', ORDER)).toEqual({ closed: false, missing: ['two'], reachable: false });
      one.answer('who', () => 'one');
      const g = await one.gather('who', null);
      expect(g.reachable).toBe(false);
      expect(g.missing).toEqual(['two']);
      expect(g.answers.get('one')).toEqual({ ok: true, value: 'one' });
    } finally {
      await brokers.server().start();
    }
  });
});
