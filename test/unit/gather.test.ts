import { describe, expect, it } from 'vitest';
import { LocalBroker } from '../../src/cluster/broker.js';
import { Gatherer, GATHER_TIMEOUT_MS, type After, type CloseOrder } from '../../src/cluster/gather.js';
import { Hub } from '../support/gather-hub.js';

/**
 * Gathers and closes without Redis: the LocalBroker alone, and Gatherers on an in-memory
 * hub of instances (topics delivered on a microtask, like messages over a wire) with a
 * manual timer, so "did not answer in time" needs no real wait.
 */

const ORDER: CloseOrder = { code: 1008, reason: 'kicked by an operator', by: 'test' };

class Endpoint {
  closed: Array<[number, string]> = [];
  constructor(readonly id: string) {}
  send(): boolean {
    return true;
  }
  close(code: number, reason: string): void {
    this.closed.push([code, reason]);
  }
}

describe('LocalBroker: closeConn and gather', () => {
  it('closes an attached endpoint (in its scope, or any) and says so; an unknown id is not found', async () => {
    const b = new LocalBroker('solo');
    const e = new Endpoint('c1');
    b.attach('bus', e);
    expect(await b.closeConn('c1', { ...ORDER, scope: 'gamelist' })).toEqual({ closed: false, missing: [], reachable: true });
    expect(e.closed).toEqual([]);
    expect(await b.closeConn('c1', ORDER)).toEqual({ closed: true, instance: 'solo' });
    expect(e.closed).toEqual([[1008, 'kicked by an operator']]);
    expect(await b.closeConn('nope', ORDER)).toEqual({ closed: false, missing: [], reachable: true });
  });

  it('uses the closer once set, with the order and who asked', async () => {
    const b = new LocalBroker('solo');
    const seen: unknown[] = [];
    b.setCloser((id, order, from) => {
      seen.push([id, order.by, from]);
      return id === 'x';
    });
    expect((await b.closeConn('x', ORDER)).closed).toBe(true);
    expect((await b.closeConn('y', ORDER)).closed).toBe(false);
    expect(seen).toEqual([['x', 'test', 'solo'], ['y', 'test', 'solo']]);
  });

  it('answers a gather alone; an unanswered kind and a throwing answerer are errors, not missing', async () => {
    const b = new LocalBroker('solo');
    const off = b.answer('k', (q) => ({ echo: q }));
    b.answer('boom', () => {
      throw new Error('bad');
    });
    expect(await b.gather('k', 1)).toEqual({ answers: new Map([['solo', { ok: true, value: { echo: 1 } }]]), missing: [], reachable: true });
    expect((await b.gather('boom', 1)).answers.get('solo')).toEqual({ ok: false, error: 'bad' });
    off();
    expect((await b.gather('k', 1)).answers.get('solo')).toEqual({ ok: false, error: 'no answer to "k" here' });
    expect(() => b.answer('close', () => true)).toThrow(/closer/);
  });
});

function cluster(ids: string[]): { hub: Hub; g: Map<string, Gatherer>; closed: string[] } {
  const hub = new Hub();
  const g = new Map<string, Gatherer>();
  const closed: string[] = [];
  for (const id of ids) {
    const held = new Set([`${id}-conn`]);
    const gatherer = new Gatherer(
      hub.link(id, () => ids.filter((x) => x !== id)),
      (conn) => {
        if (!held.delete(conn)) return false;
        closed.push(conn);
        return true;
      },
      hub.after,
    );
    gatherer.answer('who', () => id);
    g.set(id, gatherer);
  }
  return { hub, g, closed };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Gatherer over several instances', () => {
  it('asks every live instance and resolves once all answered, this one first', async () => {
    const { g } = cluster(['a', 'b', 'c']);
    const res = await g.get('b')!.gather('who', null);
    expect([...res.answers.entries()]).toEqual([
      ['b', { ok: true, value: 'b' }],
      ['a', { ok: true, value: 'a' }],
      ['c', { ok: true, value: 'c' }],
    ]);
    expect(res.missing).toEqual([]);
    expect(res.reachable).toBe(true);
  });

  it("counts another instance's error as its answer (not missing)", async () => {
    const { g } = cluster(['a', 'b']);
    g.get('b')!.answer('who', () => {
      throw new Error('b is busy');
    });
    const res = await g.get('a')!.gather('who', null);
    expect(res.answers.get('b')).toEqual({ ok: false, error: 'b is busy' });
    expect(res.missing).toEqual([]);
  });

  it('waits the timeout it was made with (cluster.gatherTimeout), else GATHER_TIMEOUT_MS; a gather may name its own', async () => {
    const hub = new Hub();
    hub.deaf.add('b');
    const armed: number[] = [];
    const after: After = (ms, fn) => {
      armed.push(ms);
      return hub.after(ms, fn);
    };
    const made = new Gatherer(hub.link('a', () => ['b']), () => false, after, 250);
    const plain = new Gatherer(hub.link('c', () => ['b']), () => false, after);
    const gathers = [made.gather('who', null), made.gather('who', null, { timeoutMs: 40 }), plain.gather('who', null)];
    await tick();
    hub.fire();
    for (const g of await Promise.all(gathers)) expect(g.missing).toEqual(['b']);
    expect(armed).toEqual([250, 40, GATHER_TIMEOUT_MS]);
  });

  it('names an instance that did not answer once the timeout passes', async () => {
    const { hub, g } = cluster(['a', 'b', 'c']);
    hub.deaf.add('c');
    const p = g.get('a')!.gather('who', null);
    await tick();
    expect(g.get('a')!.pending).toBe(1);
    hub.fire();
    const res = await p;
    expect([...res.answers.keys()]).toEqual(['a', 'b']);
    expect(res.missing).toEqual(['c']);
    expect(g.get('a')!.pending).toBe(0);
  });

  it('closes a connection on another instance, stopping at the first that has it', async () => {
    const { hub, g, closed } = cluster(['a', 'b', 'c']);
    hub.deaf.add('c');
    // b has it: the answer comes before c's silence matters.
    expect(await g.get('a')!.close('b-conn', ORDER)).toEqual({ closed: true, instance: 'b' });
    expect(closed).toEqual(['b-conn']);
    expect(hub.timers.every((t) => t.cancelled)).toBe(true);
  });

  it('is not found when every instance said no; unknown while one is silent', async () => {
    const { hub, g } = cluster(['a', 'b', 'c']);
    expect(await g.get('a')!.close('nope', ORDER)).toEqual({ closed: false, missing: [], reachable: true });
    hub.deaf.add('c');
    const p = g.get('a')!.close('nope', ORDER);
    await tick();
    hub.fire();
    expect(await p).toEqual({ closed: false, missing: ['c'], reachable: true });
  });

  it('while the cluster is unreachable: closes here, asks nobody else, and says so', async () => {
    const { hub, g, closed } = cluster(['a', 'b']);
    hub.ready = false;
    expect(await g.get('a')!.close('a-conn', ORDER)).toEqual({ closed: true, instance: 'a' });
    expect(await g.get('a')!.close('b-conn', ORDER)).toEqual({ closed: false, missing: ['b'], reachable: false });
    expect(closed).toEqual(['a-conn']);
    expect(hub.timers).toEqual([]);
  });

  it('a stopped gatherer resolves what it waits for with what it has', async () => {
    const { hub, g } = cluster(['a', 'b']);
    hub.deaf.add('b');
    const p = g.get('a')!.gather('who', null);
    await tick();
    g.get('a')!.stop();
    expect((await p).missing).toEqual(['b']);
  });
});
