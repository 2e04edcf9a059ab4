import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { type BusWorldConfig, type ClaimOutcome, type Eff } from '../../src/dialects/bus/world.js';
import { MAX_HELD_FRAMES } from '../../src/dialects/bus/world-names.js';
import { busWorldConfig, driveBusWorld } from '../support/bus-world.js';

/**
 * Names claimed cluster-wide (world-names.ts), fed events: the world asks (`claim`), the
 * test plays Redis and answers (`claimed`). No socket, runtime or Redis.
 */

const base: BusWorldConfig = busWorldConfig({ claimNames: true });

function world(clock: ManualClock, cfg: BusWorldConfig = base) {
  const d = driveBusWorld(clock, cfg);
  const frame = (conn: string, msg: unknown): Eff[] =>
    d.feed({ type: 'frame', now: clock.now(), conn, data: Buffer.from(JSON.stringify(msg)), binary: false, headerToken: undefined });
  const identify = (conn: string, data: Record<string, unknown> = {}): Eff[] => {
    d.feed({ type: 'open', now: clock.now(), conn, headerToken: undefined });
    return frame(conn, { op: 1, data: { token: 'tok', ...data } });
  };
  const claimed = (conn: string, name: string, outcome: ClaimOutcome): Eff[] => d.feed({ type: 'claimed', now: clock.now(), conn, name, outcome });
  return { ...d, frame, identify, claimed };
}

const sent = (fx: Eff[], conn: string): unknown[] =>
  fx.flatMap((e) => (e.type === 'send' && e.conn === conn ? [JSON.parse(e.frame.toString())] : e.type === 'deliver' && e.target.to === 'conn' && e.target.conn === conn ? [JSON.parse(e.frame.toString())] : []));
const of = (fx: Eff[], type: Eff['type']): Eff[] => fx.filter((e) => e.type === type);

describe('bus world: names claimed cluster-wide', () => {
  it('an IDENTIFY with a name waits for its claim; frames sent meanwhile are handled after, in order', () => {
    const w = world(new ManualClock(1000));
    w.identify('b');
    let fx = w.identify('a', { name: 'alpha' });
    expect(of(fx, 'claim')).toEqual([{ type: 'claim', conn: 'a', name: 'alpha' }]);
    expect(sent(fx, 'a')).toEqual([]);
    expect(of(fx, 'cluster')).toEqual([]);
    // Not known by its name (nor by id) until the claim is answered.
    expect(w.state().names.has('alpha')).toBe(false);
    expect(w.state().byId.has('a')).toBe(false);
    expect(sent(w.frame('a', { op: 0, event: 'E1', intent: { target: 'DIRECT', identifier: 'b' } }), 'b')).toEqual([]);
    expect(w.frame('a', { op: 0, event: 'E2', intent: { target: 'DIRECT', identifier: 'b' } })).toEqual([]);
    fx = w.claimed('a', 'alpha', 'ok');
    expect(sent(fx, 'a')[0]).toMatchObject({ op: 1, data: { id: 'a' } });
    expect(of(fx, 'cluster')).toEqual([{ type: 'cluster', to: null, msg: { t: 'up', svc: { id: 'a', name: 'alpha', groups: [] } } }]);
    expect(sent(fx, 'b')).toEqual([expect.objectContaining({ event: 'E1', source: 'a' }), expect.objectContaining({ event: 'E2', source: 'a' })]);
    expect(w.state().names.get('alpha')?.conn).toBe('a');
    // Leaving releases the claim, once.
    fx = w.feed({ type: 'closed', now: 1000, conn: 'a' });
    expect(of(fx, 'release')).toEqual([{ type: 'release', conn: 'a', name: 'alpha' }]);
    expect(w.state().claims.size).toBe(0);
  });

  it('two instances, the same name at the same moment: the claim decides, exactly one wins', () => {
    const clock = new ManualClock(1000);
    const one = world(clock);
    const two = world(clock);
    // Neither knows of the other's service yet: each finds the name free and asks.
    const c1 = of(one.identify('x1', { name: 'dup' }), 'claim');
    const c2 = of(two.identify('x2', { name: 'dup' }), 'claim');
    expect(c1).toHaveLength(1);
    expect(c2).toHaveLength(1);
    // Redis takes them in some order: the first is granted, the second refused.
    const won = one.claimed('x1', 'dup', 'ok');
    const lost = two.claimed('x2', 'dup', 'taken');
    expect(sent(won, 'x1')[0]).toMatchObject({ op: 1 });
    expect(of(lost, 'disconnect')).toEqual([{ type: 'disconnect', conn: 'x2', reason: 'NAME_TAKEN', detail: 'the name "dup" is in use' }]);
    expect(of(lost, 'why')).toEqual([{ type: 'why', conn: 'x2', why: 'name in use' }]);
    expect(of(lost, 'cluster')).toEqual([]);
    expect(of(lost, 'release')).toEqual([]);
    expect(two.state().names.has('dup')).toBe(false);
  });

  it('a second IDENTIFY with a name being claimed here is refused at once', () => {
    const w = world(new ManualClock(1000));
    w.identify('a', { name: 'n' });
    const fx = w.identify('b', { name: 'n' });
    expect(of(fx, 'claim')).toEqual([]);
    expect(of(fx, 'disconnect')).toEqual([expect.objectContaining({ conn: 'b', reason: 'NAME_TAKEN' })]);
  });

  it('Redis unreachable: the IDENTIFY is refused with UNAVAILABLE (retryable), and nothing is held', () => {
    const w = world(new ManualClock(1000));
    w.identify('a', { name: 'n' });
    const fx = w.claimed('a', 'n', 'unavailable');
    expect(of(fx, 'disconnect')).toEqual([expect.objectContaining({ conn: 'a', reason: 'UNAVAILABLE' })]);
    expect(w.state().claims.size).toBe(0);
    // The name can be tried again.
    expect(of(w.identify('b', { name: 'n' }), 'claim')).toHaveLength(1);
  });

  it('a service that leaves, or times out, before its claim is answered releases what it got', () => {
    const w = world(new ManualClock(1000));
    w.identify('a', { name: 'n' });
    w.feed({ type: 'closed', now: 1000, conn: 'a' });
    expect(of(w.claimed('a', 'n', 'ok'), 'release')).toEqual([{ type: 'release', conn: 'a', name: 'n' }]);
    w.identify('b', { name: 'm' });
    const fx = w.advance(3_000);
    expect(of(fx, 'disconnect')).toEqual([expect.objectContaining({ conn: 'b', reason: 'IDENTIFY_TIMEOUT' })]);
    expect(of(w.claimed('b', 'm', 'taken'), 'release')).toEqual([]);
    expect(w.state().claims.size).toBe(0);
    expect(w.state().byId.size).toBe(0);
  });

  it(`more than ${MAX_HELD_FRAMES} frames before IDENTIFIED cut the service`, () => {
    const w = world(new ManualClock(1000));
    w.identify('a', { name: 'n' });
    for (let i = 0; i < MAX_HELD_FRAMES; i++) expect(w.frame('a', { op: 3 })).toEqual([]);
    expect(of(w.frame('a', { op: 3 }), 'disconnect')).toEqual([expect.objectContaining({ reason: 'BAD_MESSAGE' })]);
  });

  it('one process (claimNames off): names are decided at once, no claim, no release', () => {
    const w = world(new ManualClock(1000), { ...base, claimNames: false });
    const fx = w.identify('a', { name: 'n' });
    expect(of(fx, 'claim')).toEqual([]);
    expect(sent(fx, 'a')[0]).toMatchObject({ op: 1 });
    expect(of(w.feed({ type: 'closed', now: 1000, conn: 'a' }), 'release')).toEqual([]);
  });
});
