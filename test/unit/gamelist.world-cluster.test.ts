import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { driveWorldModule, type WorldDriver } from '../support/world-driver.js';
import { gamelistWorldConfig, INFO, JOIN, registerText } from '../support/gamelist-world.js';
import { initialWorld, step, timerId, type GamelistWorld, type TimerKey, type WorldConfig, type WorldEffect, type WorldEvent } from '../../src/dialects/gamelist/world.js';
import type { ClusterMsg } from '../../src/dialects/gamelist/world-cluster.js';
import { decodeGamelistMsg, encodeGamelistMsg } from '../../src/dialects/gamelist/cluster-wire.js';

/**
 * The gamelist worlds of several instances, fed events with manual clocks and wired to
 * each other by hand: the test plays the Broker (topics, peer reports) and the runtime.
 * Every message crosses through the wire encoding, as over Redis.
 */

const reg = (id = 1, over: Record<string, unknown> = {}): string => registerText('tok', id, over);

type Drv = WorldDriver<GamelistWorld, WorldEvent, WorldEffect, TimerKey>;

interface Node {
  readonly name: string;
  readonly clock: ManualClock;
  readonly d: Drv;
  /** Peers this node hears from (a cut one hears nothing). */
  up: boolean;
}

function cluster(names: string[], over: Partial<WorldConfig> = {}) {
  const cfg = gamelistWorldConfig({ cluster: true, ...over });
  const nodes = new Map<string, Node>();
  /** Every message sent between instances: [from, to, msg]. */
  const wire: Array<[string, string, ClusterMsg]> = [];
  /** Drop messages (an instance that does not answer). */
  let drop: ((from: string, to: string, msg: ClusterMsg) => boolean) | undefined;
  const queue: Array<[string, string, Buffer]> = [];
  let pumping = false;
  const pump = (): void => {
    if (pumping) return;
    pumping = true;
    try {
      for (let m = queue.shift(); m; m = queue.shift()) {
        const [from, to, buf] = m;
        const n = nodes.get(to);
        const dec = decodeGamelistMsg(buf);
        if (!n || !n.up || !dec) continue;
        expect(dec.from).toBe(from);
        if (drop?.(from, to, dec.msg)) continue;
        wire.push([from, to, dec.msg]);
        const now = n.clock.now();
        if (dec.msg.t === 'join') n.d.feed({ type: 'join', now, call: `remote-${from}-${dec.msg.id}`, serverId: dec.msg.serverId, body: dec.msg.body, origin: { instance: from, id: dec.msg.id } });
        else n.d.feed({ type: 'remote', now, from, msg: dec.msg });
      }
    } finally {
      pumping = false;
    }
  };
  const carry = (from: string, fx: readonly WorldEffect[]): void => {
    for (const e of fx) {
      if (e.type !== 'cluster') continue;
      const buf = encodeGamelistMsg(from, e.msg);
      for (const to of e.to === null ? [...nodes.keys()].filter((k) => k !== from) : [e.to]) queue.push([from, to, buf]);
    }
    pump();
  };
  const add = (name: string): Node => {
    const clock = new ManualClock(1_000_000);
    const inner = driveWorldModule(clock, { initialWorld, step, timerId }, cfg);
    // Every effect that leaves a world goes over the wire at once.
    const d: Drv = {
      ...inner,
      feed: (ev) => {
        const fx = inner.feed(ev);
        carry(name, fx);
        return fx;
      },
      advance: (ms) => {
        const fx = inner.advance(ms);
        carry(name, fx);
        return fx;
      },
    };
    const n: Node = { name, clock, d, up: true };
    nodes.set(name, n);
    return n;
  };
  for (const name of names) add(name);
  const node = (name: string): Node => nodes.get(name) as Node;
  const open = (at: string, conn: string, address = '10.0.0.1'): WorldEffect[] => node(at).d.feed({ type: 'open', now: node(at).clock.now(), conn, address });
  const frame = (at: string, conn: string, text: string): WorldEffect[] => node(at).d.feed({ type: 'frame', now: node(at).clock.now(), conn, data: Buffer.from(text), binary: false });
  const sent = (fx: WorldEffect[], conn: string): Array<Record<string, unknown>> => fx.flatMap((e) => (e.type === 'send' && e.conn === conn ? [JSON.parse(e.frame) as Record<string, unknown>] : []));
  const listed = (at: string, conn: string, address = '10.0.0.1', over: Record<string, unknown> = {}): string => {
    open(at, conn, address);
    return sent(frame(at, conn, reg(1, over)), conn)[0]?.server_id as string;
  };
  const join = (at: string, call: string, serverId: string, body: unknown = JOIN): WorldEffect[] => node(at).d.feed({ type: 'join', now: node(at).clock.now(), call, serverId, body });
  const replies = (fx: readonly WorldEffect[]): Array<{ call: string | undefined; status: number; body: unknown }> =>
    fx.flatMap((e) => (e.type === 'reply' ? [{ call: e.call, status: e.status, body: e.body }] : []));
  /** Replies a node gave (over the test). */
  const repliesOf = (at: string): Array<{ call: string | undefined; status: number; body: unknown }> => replies(node(at).d.out);
  const peer = (at: string, instance: string, up: boolean): WorldEffect[] => node(at).d.feed({ type: 'peer', now: node(at).clock.now(), instance, up });
  /** Every instance learns of every other (as the Broker's first scan reports them). */
  const meet = (): void => {
    for (const a of nodes.keys()) for (const b of nodes.keys()) if (a !== b) peer(a, b, true);
  };
  const replicas = (at: string): string[] => [...node(at).d.state().cluster.replicas.keys()].sort();
  return {
    cfg,
    wire,
    node,
    add,
    open,
    frame,
    sent,
    listed,
    join,
    replies,
    repliesOf,
    peer,
    meet,
    replicas,
    setDrop: (f: typeof drop) => (drop = f),
  };
}

describe('gamelist world across instances: replicas', () => {
  it('announces listings, refreshes and removals to the others; the password never crosses', () => {
    const c = cluster(['a', 'b', 'c']);
    c.meet();
    const id = c.listed('a', 'g1', '10.0.0.1', { password: 'secret' });
    expect(c.replicas('b')).toEqual([id]);
    expect(c.replicas('c')).toEqual([id]);
    expect(c.replicas('a')).toEqual([]);
    const r = c.node('b').d.state().cluster.replicas.get(id);
    expect(r).toMatchObject({ instance: 'a', conn: 'g1', address: '10.0.0.1', info: { name: 'n', password: '*' } });
    expect(c.node('b').d.out).toContainEqual({ type: 'list', change: 'listed', serverId: id, servers: 0 });

    c.frame('a', 'g1', reg(2, { curPlayers: 3, password: 'secret' }));
    expect(c.node('c').d.state().cluster.replicas.get(id)?.info.curPlayers).toBe(3);
    expect(c.node('c').d.out).toContainEqual({ type: 'list', change: 'refreshed', serverId: id, servers: 0 });

    c.node('a').d.feed({ type: 'closed', now: c.node('a').clock.now(), conn: 'g1' });
    expect(c.replicas('b')).toEqual([]);
    expect(c.node('b').d.out).toContainEqual({ type: 'list', change: 'unlisted', serverId: id, servers: 0 });
    expect(JSON.stringify(c.wire)).not.toContain('secret');
    expect(JSON.stringify(c.wire)).not.toContain('tok');
  });

  it('a server leaving on its own (no pong, no refresh) leaves the other instances too', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    c.listed('a', 'g1');
    expect(c.replicas('b')).toHaveLength(1);
    c.node('a').d.advance(30_000);
    expect(c.replicas('b')).toEqual([]);
  });

  it('a newly started instance gets every listing from the others, and gives its own', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const x = c.listed('a', 'g1');
    const y = c.listed('b', 'g2', '10.0.0.2');
    c.add('c');
    const z = c.listed('c', 'g3', '10.0.0.3');
    // The new instance's broker reports the others up; theirs report it at their next scan.
    c.peer('c', 'a', true);
    c.peer('c', 'b', true);
    expect(c.replicas('c')).toEqual([x, y].sort());
    expect(c.replicas('a')).toEqual([y, z].sort());
    expect(c.replicas('b')).toEqual([x, z].sort());
    // A peer reported up again (after an outage) resyncs, without duplicates.
    c.peer('a', 'c', true);
    expect(c.replicas('a')).toEqual([y, z].sort());
  });

  it('a sync is the whole truth: replicas its sender no longer lists go', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const x = c.listed('a', 'g1');
    const y = c.listed('a', 'g2', '10.0.0.2');
    // b misses the removal of y (Redis was away), then a comes back up.
    c.node('b').up = false;
    c.node('a').d.feed({ type: 'closed', now: c.node('a').clock.now(), conn: 'g2' });
    c.node('b').up = true;
    expect(c.replicas('b')).toEqual([x, y].sort());
    c.peer('b', 'a', true);
    expect(c.replicas('b')).toEqual([x]);
    expect(c.node('b').d.out).toContainEqual({ type: 'list', change: 'unlisted', serverId: y, servers: 0 });
  });

  it('an instance reported gone takes its servers off every other list', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    c.listed('a', 'g1');
    c.listed('a', 'g2', '10.0.0.2');
    const own = c.listed('b', 'g3', '10.0.0.3');
    expect(c.replicas('b')).toHaveLength(2);
    const fx = c.peer('b', 'a', false);
    expect(c.replicas('b')).toEqual([]);
    expect(fx.filter((e) => e.type === 'list' && e.change === 'unlisted')).toHaveLength(2);
    expect([...c.node('b').d.state().listed.keys()]).toEqual([own]);
    expect(c.node('b').d.state().cluster.byInstance.size).toBe(0);
    expect(c.node('b').d.state().cluster.perIp.size).toBe(0);
  });

  it('counts maxServers and maxServersPerIp across the cluster', () => {
    const c = cluster(['a', 'b'], { maxServers: 3, maxServersPerIp: 2 });
    c.meet();
    c.listed('a', 'g1', '10.0.0.1');
    c.listed('b', 'g2', '10.0.0.1');
    // A third from the same address, on either instance: over maxServersPerIp.
    c.open('a', 'g3', '10.0.0.1');
    expect(c.sent(c.frame('a', 'g3', reg()), 'g3')[0]).toMatchObject({ success: false, error: { type: 2 } });
    c.listed('b', 'g4', '10.0.0.2');
    // Three listed cluster-wide: over maxServers.
    c.open('a', 'g5', '10.0.0.3');
    expect(c.sent(c.frame('a', 'g5', reg()), 'g5')[0]).toMatchObject({ success: false, error: { type: 2 } });
    // The dead instance's servers no longer count.
    c.peer('a', 'b', false);
    expect(c.sent(c.frame('a', 'g5', reg(2)), 'g5')[0]).toMatchObject({ success: true });
  });

  it('ignores a replica that claims a server id listed here, and messages from an instance about servers it does not hold', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const id = c.listed('a', 'g1');
    const fx = c.node('a').d.feed({
      type: 'remote',
      now: c.node('a').clock.now(),
      from: 'b',
      msg: { t: 'up', s: { serverId: id, info: INFO, registeredAt: 0, lastRefresh: 0, conn: 'x', address: '10.9.9.9' } },
    });
    expect(fx.some((e) => e.type === 'log' && e.level === 'warn')).toBe(true);
    expect(c.replicas('a')).toEqual([]);
    // b cannot remove a's server from c's list.
    c.add('c');
    c.peer('c', 'a', true);
    c.node('c').d.feed({ type: 'remote', now: c.node('c').clock.now(), from: 'b', msg: { t: 'down', id } });
    expect(c.replicas('c')).toEqual([id]);
  });

  it('sends nothing to other instances without cluster mode', () => {
    const c = cluster(['a', 'b'], { cluster: false });
    c.listed('a', 'g1');
    c.node('a').d.feed({ type: 'closed', now: c.node('a').clock.now(), conn: 'g1' });
    expect(c.node('a').d.out.filter((e) => e.type === 'cluster')).toEqual([]);
  });
});

describe('gamelist world across instances: kept server ids', () => {
  it('a game server that reconnects to another instance within registrationTtl keeps its server_id', () => {
    const c = cluster(['a', 'b', 'c']);
    c.meet();
    const id = c.listed('a', 'g1', '10.0.0.1', { name: 'keep-me' });
    c.node('a').d.feed({ type: 'closed', now: c.node('a').clock.now(), conn: 'g1' });
    expect(c.node('b').d.state().cluster.kept.size).toBe(1);
    expect(c.listed('b', 'g1b', '10.0.0.1', { name: 'keep-me' })).toBe(id);
    // Everyone forgets it: a's own reservation and c's copy.
    expect(c.node('a').d.state().reserved.size).toBe(0);
    expect(c.node('c').d.state().cluster.kept.size).toBe(0);
    expect(c.node('c').d.timers.size).toBe(0);
    expect(c.replicas('a')).toEqual([id]);
    // The digest stands for the key: the regToken never crosses.
    expect(JSON.stringify(c.wire)).not.toContain('"tok"');
  });

  it('another game server (other address, name or port) does not take the kept id, and it ends after registrationTtl', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const id = c.listed('a', 'g1', '10.0.0.1');
    c.node('a').d.feed({ type: 'closed', now: c.node('a').clock.now(), conn: 'g1' });
    expect(c.listed('b', 'x1', '10.0.0.2')).not.toBe(id);
    expect(c.listed('b', 'x2', '10.0.0.1', { port: 1 })).not.toBe(id);
    c.node('b').d.advance(30_000);
    expect(c.node('b').d.state().cluster.kept.size).toBe(0);
    expect(c.listed('b', 'g1b', '10.0.0.1')).not.toBe(id);
  });

  it('never gives a kept id that is listed again elsewhere', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const id = c.listed('a', 'g1');
    c.node('a').d.feed({ type: 'closed', now: c.node('a').clock.now(), conn: 'g1' });
    // b misses the claim when the game server comes back to a.
    c.setDrop((_f, to, m) => to === 'b' && m.t === 'claim');
    expect(c.listed('a', 'g1a')).toBe(id);
    c.setDrop(undefined);
    expect(c.node('b').d.state().cluster.kept.size).toBe(1);
    expect(c.listed('b', 'g1b')).not.toBe(id);
    expect(c.node('b').d.state().cluster.kept.size).toBe(0);
  });

  it('drops kept ids on shutdown', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    c.listed('a', 'g1');
    c.node('a').d.feed({ type: 'closed', now: c.node('a').clock.now(), conn: 'g1' });
    c.node('b').d.feed({ type: 'shutdown', now: c.node('b').clock.now() });
    expect(c.node('b').d.state().cluster.kept.size).toBe(0);
    expect(c.node('b').d.timers.size).toBe(0);
  });
});

describe('gamelist world across instances: joins', () => {
  it('sends a join for another instance’s server there; the game server’s answer comes back with its conv', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const id = c.listed('a', 'g1');
    const fx = c.join('b', 'q1', id);
    expect(c.replies(fx)).toEqual([]);
    const asked = c.sent(c.node('a').d.out, 'g1').filter((m) => (m.metadata as { type: number }).type === 2);
    expect(asked).toEqual([{ metadata: { type: 2, id: 1 }, sessionToken: 's', username: 'u', clantag: '', conv: 1 }]);
    c.frame('a', 'g1', '{"metadata":{"type":-2,"id":1},"success":true}');
    expect(c.repliesOf('b')).toEqual([{ call: 'q1', status: 200, body: { success: true, conv: 1 } }]);
    // The holding instance answers no local call of its own.
    expect(c.repliesOf('a')).toEqual([]);
    expect(c.node('a').d.state().cluster.answerTo.size).toBe(0);
    expect(c.node('b').d.state().cluster.forwarded.size).toBe(0);
    expect(c.node('b').d.timers.size).toBe(0);
  });

  it('checks the password on the holding instance: a wrong one gets 403 and never reaches the game server', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const id = c.listed('a', 'g1', '10.0.0.1', { password: 'pw' });
    c.join('b', 'q1', id, { ...JOIN, password: 'nope' });
    expect(c.repliesOf('b')).toEqual([{ call: 'q1', status: 403, body: { success: false, error: { type: 'WRONG_PASSWORD', msg: 'Wrong password' } } }]);
    expect(c.sent(c.node('a').d.out, 'g1').filter((m) => (m.metadata as { type: number }).type === 2)).toEqual([]);
    c.join('b', 'q2', id, { ...JOIN, password: 'pw' });
    expect(c.sent(c.node('a').d.out, 'g1').filter((m) => (m.metadata as { type: number }).type === 2)).toHaveLength(1);
  });

  it('answers 404 when the server left its instance before the join arrived', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const id = c.listed('a', 'g1');
    // The removal has not reached b yet.
    c.setDrop((_f, _t, m) => m.t === 'down');
    c.node('a').d.feed({ type: 'closed', now: c.node('a').clock.now(), conn: 'g1' });
    c.setDrop(undefined);
    c.join('b', 'q1', id);
    expect(c.repliesOf('b')).toEqual([{ call: 'q1', status: 404, body: { success: false, error: { type: 'NOT_FOUND', msg: `No listed server ${id}` } } }]);
  });

  it('answers 504 at joinTimeout when the holding instance does not answer, and ignores a late answer', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const id = c.listed('a', 'g1');
    c.setDrop((_f, _t, m) => m.t === 'join');
    c.join('b', 'q1', id);
    expect(c.replies(c.node('b').d.advance(2_999))).toEqual([]);
    expect(c.replies(c.node('b').d.advance(1))).toEqual([
      { call: 'q1', status: 504, body: { success: false, error: { type: 'TIMEOUT', msg: 'The game server did not answer within 3000 ms' } } },
    ]);
    const late = c.node('b').d.feed({ type: 'remote', now: c.node('b').clock.now(), from: 'a', msg: { t: 'joined', id: '1', status: 200, body: { success: true, conv: 9 } } });
    expect(c.replies(late)).toEqual([]);
  });

  it('relays the holding instance’s own 504 and 502 (the game server silent, or gone)', () => {
    const c = cluster(['a', 'b'], { joinTimeout: 3_000 });
    c.meet();
    const x = c.listed('a', 'g1');
    const y = c.listed('a', 'g2', '10.0.0.2');
    // a's clock is ahead: its deadline falls first.
    c.join('b', 'q1', x);
    c.node('a').d.advance(3_000);
    expect(c.repliesOf('b')).toEqual([{ call: 'q1', status: 504, body: { success: false, conv: 1, error: { type: 'TIMEOUT', msg: 'The game server did not answer within 3000 ms' } } }]);
    c.join('b', 'q2', y);
    c.node('a').d.feed({ type: 'closed', now: c.node('a').clock.now(), conn: 'g2' });
    expect(c.repliesOf('b')[1]).toMatchObject({ call: 'q2', status: 502, body: { success: false, error: { type: 'SERVER_GONE' } } });
  });

  it('answers 502 when the holding instance is reported gone, and takes answers only from it', () => {
    const c = cluster(['a', 'b', 'c']);
    c.meet();
    const id = c.listed('a', 'g1');
    c.setDrop((_f, _t, m) => m.t === 'join');
    c.join('b', 'q1', id);
    const forged = c.node('b').d.feed({ type: 'remote', now: c.node('b').clock.now(), from: 'c', msg: { t: 'joined', id: '1', status: 200, body: { success: true, conv: 9 } } });
    expect(c.replies(forged)).toEqual([]);
    const fx = c.peer('b', 'a', false);
    expect(c.replies(fx)).toEqual([
      { call: 'q1', status: 502, body: { success: false, error: { type: 'SERVER_GONE', msg: "The game server's instance went away before answering" } } },
    ]);
    expect(fx).toContainEqual({ type: 'count', metric: 'joins', result: 'server_gone' });
    expect(c.node('b').d.timers.size).toBe(0);
  });

  it('answers joins sent away with 503 when this instance shuts down', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const id = c.listed('a', 'g1');
    c.setDrop((_f, _t, m) => m.t === 'join');
    c.join('b', 'q1', id);
    const fx = c.node('b').d.feed({ type: 'shutdown', now: c.node('b').clock.now() });
    expect(c.replies(fx)).toEqual([{ call: 'q1', status: 503, body: { success: false, error: { type: 'SHUTTING_DOWN', msg: 'The masterserver is shutting down' } } }]);
    expect(c.node('b').d.state().cluster.forwarded.size).toBe(0);
  });

  it('still ends the joins it runs for an instance that went away (their answers go nowhere)', () => {
    const c = cluster(['a', 'b']);
    c.meet();
    const id = c.listed('a', 'g1');
    c.join('b', 'q1', id);
    c.peer('a', 'b', false);
    const fx = c.frame('a', 'g1', '{"metadata":{"type":-2,"id":1},"success":true}');
    expect(fx.filter((e) => e.type === 'reply')).toEqual([]);
    expect(fx).toContainEqual({ type: 'cluster', to: 'b', msg: { t: 'joined', id: '1', status: 200, body: { success: true, conv: 1 } } });
    expect(c.node('a').d.state().cluster.answerTo.size).toBe(0);
  });
});

describe('gamelist cluster wire', () => {
  it('drops messages of the wrong shape', () => {
    const bad = [
      '',
      'nope',
      '[]',
      JSON.stringify({ t: 'down', id: 'x' }),
      JSON.stringify({ f: 'a', t: 'down' }),
      JSON.stringify({ f: 'a', t: 'up', s: { serverId: 'x', info: { ...INFO, port: 70000 }, registeredAt: 0, lastRefresh: 0, conn: 'c', address: 'a' } }),
      JSON.stringify({ f: 'a', t: 'sync', servers: [{}], ask: true }),
      JSON.stringify({ f: 'a', t: 'joined', id: '1', status: 200, body: { success: 'yes' } }),
      JSON.stringify({ f: 'a', t: 'what' }),
      JSON.stringify({ f: 'a', t: 'down', id: 'x', keep: 1 }),
      JSON.stringify({ f: 'a', t: 'claim' }),
    ];
    for (const b of bad) expect(decodeGamelistMsg(Buffer.from(b))).toBeUndefined();
    const ok = { t: 'joined', id: '1', status: 200, body: { success: false, conv: 3, error: { type: 1, msg: 'full' } } } as const;
    expect(decodeGamelistMsg(encodeGamelistMsg('a', ok))).toEqual({ from: 'a', msg: ok });
  });
});
