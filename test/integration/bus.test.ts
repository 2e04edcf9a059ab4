import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BusDialect } from '../../src/dialects/bus/dialect.js';
import { BUS_TOKEN, BusHarness, roundTrip, type Identified } from '../support/harness/bus.js';
import type { PeerOptions } from '../support/harness/harness.js';
import { RawPeer, until } from '../support/server.js';

const h = new BusHarness();

function bus(): BusDialect {
  return h.srv.muster.dialect<BusDialect>('bus') as BusDialect;
}

const open = (opts: PeerOptions = {}): Promise<RawPeer> => h.open(opts);

const identify = (data: Record<string, unknown> = {}): Promise<Identified> => h.identify(data);

async function expectDisconnect(peer: RawPeer, reason: string, code: number): Promise<Record<string, unknown>> {
  const f = await peer.next<{ op: number; data: Record<string, unknown> }>();
  expect(f.op).toBe(2);
  expect(f.data.reason).toBe(reason);
  const c = await peer.waitClose();
  expect(c.code).toBe(code);
  return f.data;
}

async function start(bus: Record<string, unknown> = {}): Promise<void> {
  await h.start({ maxBufferedBytes: 256 * 1024, ...bus });
}

/** Restarts the server with other bus settings (before any peer is opened). */
async function restart(bus: Record<string, unknown>): Promise<void> {
  await h.restart({ maxBufferedBytes: 256 * 1024, ...bus });
}

beforeEach(async () => {
  await start();
});

afterEach(() =>
  // Nothing leaks: every connection, service, group and pending request is released.
  h.teardown(() => {
    expect(bus().summary()).toEqual({ services: 0, connections: 0, groups: 0, pendingRequests: 0 });
  }),
);

describe('bus: handshake', () => {
  it('answers IDENTIFY with a service uuid and heartbeat_interval in ms', async () => {
    const peer = await open();
    peer.send({ op: 1, data: { token: BUS_TOKEN } });
    const f = await peer.next<{ op: number; data: { id: string; heartbeat_interval: number } }>();
    expect(f).toEqual({ op: 1, data: { id: expect.stringMatching(/^[0-9a-f-]{36}$/), heartbeat_interval: 30000 } });
  });

  it('takes the token from the Authorization header (raw or Bearer)', async () => {
    for (const header of [BUS_TOKEN, `Bearer ${BUS_TOKEN}`]) {
      const peer = await open({ headers: { authorization: header } });
      peer.send({ op: 1, data: {} });
      expect((await peer.next<{ op: number }>()).op).toBe(1);
    }
  });

  it('refuses a wrong token with IDENTIFY_FAILED and 4004', async () => {
    const peer = await open();
    peer.send({ op: 1, data: { token: 'nope' } });
    await expectDisconnect(peer, 'IDENTIFY_FAILED', 4004);
  });

  it('refuses a missing token with IDENTIFY_FAILED and 4004', async () => {
    const peer = await open();
    peer.send({ op: 1 });
    await expectDisconnect(peer, 'IDENTIFY_FAILED', 4004);
  });

  it('refuses a wrong header token even when IDENTIFY has none', async () => {
    const peer = await open({ headers: { authorization: 'Bearer wrong' } });
    peer.send({ op: 1, data: {} });
    await expectDisconnect(peer, 'IDENTIFY_FAILED', 4004);
  });

  for (const frame of [
    { op: 0, event: 'X', intent: { target: 'GLOBAL' } },
    { op: 5, id: 'a' },
    { op: 4 },
    { op: 2, data: { reason: 'bye' } },
  ]) {
    it(`closes op ${frame.op} before IDENTIFY with NOT_IDENTIFIED and 4003`, async () => {
      const peer = await open();
      peer.send(frame);
      await expectDisconnect(peer, 'NOT_IDENTIFIED', 4003);
    });
  }

  it('answers PING before IDENTIFY with PONG', async () => {
    const peer = await open();
    peer.send({ op: 3 });
    expect(await peer.next()).toEqual({ op: 4 });
  });

  it('closes with IDENTIFY_TIMEOUT and 4003 when no IDENTIFY comes within identifyTimeout', async () => {
    const peer = await open();
    await roundTrip(peer);
    h.srv.clock.advance(9999);
    expect(await peer.quiet()).toBe(true);
    h.srv.clock.advance(1);
    await expectDisconnect(peer, 'IDENTIFY_TIMEOUT', 4003);
  });

  it('closes a second IDENTIFY with ALREADY_IDENTIFIED and 4002', async () => {
    const { peer } = await identify();
    peer.send({ op: 1, data: { token: BUS_TOKEN } });
    await expectDisconnect(peer, 'ALREADY_IDENTIFIED', 4002);
  });

  it('refuses a name already in use with NAME_TAKEN and 4004, and keeps the first', async () => {
    const a = await identify({ name: 'music' });
    const b = await open();
    b.send({ op: 1, data: { token: BUS_TOKEN, name: 'music' } });
    await expectDisconnect(b, 'NAME_TAKEN', 4004);
    await roundTrip(a.peer);
  });

  it('treats DISCONNECT from the client as a goodbye: removed, closed with 1000', async () => {
    const { peer } = await identify({ group: 'g' });
    peer.send({ op: 2, data: { reason: 'done' } });
    expect((await peer.waitClose()).code).toBe(1000);
    await until(() => bus().summary().services === 0);
  });
});

describe('bus: bad input', () => {
  const cases: Array<[string, string | Buffer]> = [
    ['malformed JSON', '{"op":0,'],
    ['JSON that is an array', '[1,2]'],
    ['JSON that is a number', '42'],
    ['JSON that is a string', '"hello"'],
    ['JSON null', 'null'],
    ['op as a string', '{"op":"0"}'],
    ['missing op', '{"event":"X"}'],
    ['an unknown op', '{"op":9}'],
    ['a fractional op', '{"op":0.5}'],
    ['an unknown intent target', '{"op":0,"intent":{"target":"EVERYONE"}}'],
    ['GROUP without identifier', '{"op":0,"intent":{"target":"GROUP"}}'],
    ['DIRECT with a numeric identifier', '{"op":0,"intent":{"target":"DIRECT","identifier":5}}'],
    ['an id that is not a string', '{"op":0,"id":5,"intent":{"target":"GLOBAL"}}'],
    ['a bad expect_reply', '{"op":0,"id":"x","expect_reply":"some","intent":{"target":"GLOBAL"}}'],
    ['a REPLY without id', '{"op":5,"data":{}}'],
  ];
  for (const [name, frame] of cases) {
    it(`closes ${name} with BAD_MESSAGE and 4002`, async () => {
      const { peer } = await identify();
      peer.send(frame);
      const d = await expectDisconnect(peer, 'BAD_MESSAGE', 4002);
      expect(typeof d.detail).toBe('string');
    });
  }

  it('closes malformed JSON before IDENTIFY with BAD_MESSAGE and 4002', async () => {
    const peer = await open();
    peer.send('not json');
    await expectDisconnect(peer, 'BAD_MESSAGE', 4002);
  });

  it('closes a binary frame with BAD_MESSAGE and 4002', async () => {
    const { peer } = await identify();
    peer.ws.send(Buffer.from('{"op":3}'), { binary: true });
    await expectDisconnect(peer, 'BAD_MESSAGE', 4002);
  });

  it('closes a frame over maxMessageBytes with MESSAGE_TOO_BIG and 1009', async () => {
    const { peer } = await identify();
    peer.send({ op: 0, event: 'BIG', data: 'x'.repeat(32 * 1024), intent: { target: 'GLOBAL' } });
    await expectDisconnect(peer, 'MESSAGE_TOO_BIG', 1009);
  });

  it('accepts a frame of exactly maxMessageBytes', async () => {
    const { peer } = await identify();
    const base = JSON.stringify({ op: 0, event: 'E', data: '', intent: { target: 'GLOBAL' } });
    const frame = JSON.stringify({ op: 0, event: 'E', data: 'x'.repeat(32768 - base.length), intent: { target: 'GLOBAL' } });
    expect(Buffer.byteLength(frame)).toBe(32768);
    peer.send(frame);
    await roundTrip(peer);
  });

  it('closes non-UTF-8 text with 1007 and no DISCONNECT frame', async () => {
    const { peer } = await identify();
    peer.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    const c = await peer.waitClose();
    expect(c.code).toBe(1007);
    expect(peer.frames).toEqual([]);
  });

  it('ignores a REPLY to an unknown id and stays connected', async () => {
    const { peer } = await identify();
    peer.send({ op: 5, id: 'never-asked', data: {} });
    await roundTrip(peer);
    expect(peer.isClosed).toBe(false);
  });

  it('keeps other peers working while one is thrown out', async () => {
    const a = await identify({ group: 'g' });
    const b = await identify({ group: 'g' });
    const bad = await identify({ group: 'g' });
    bad.peer.send('{oops');
    await expectDisconnect(bad.peer, 'BAD_MESSAGE', 4002);
    a.peer.send({ op: 0, event: 'HI', intent: { target: 'GROUP', identifier: 'g' } });
    expect((await b.peer.next<{ event: string }>()).event).toBe('HI');
  });
});

describe('bus: routing', () => {
  it('GLOBAL reaches every identified service but the sender', async () => {
    const a = await identify();
    const b = await identify();
    const c = await identify();
    const unidentified = await open();
    a.peer.send({ op: 0, event: 'E', data: { n: 1 }, intent: { target: 'GLOBAL' } });
    for (const p of [b, c]) expect(await p.peer.next()).toMatchObject({ op: 0, event: 'E', data: { n: 1 }, source: a.id });
    await roundTrip(a.peer);
    expect(a.peer.frames).toEqual([]);
    expect(await unidentified.quiet()).toBe(true);
  });

  it('GLOBAL with intent.self includes the sender', async () => {
    const a = await identify();
    const b = await identify();
    a.peer.send({ op: 0, event: 'E', intent: { target: 'GLOBAL', self: true } });
    expect(await a.peer.next()).toMatchObject({ event: 'E', source: a.id });
    expect(await b.peer.next()).toMatchObject({ event: 'E', source: a.id });
  });

  it('an EVENT without intent is GLOBAL', async () => {
    const a = await identify();
    const b = await identify();
    a.peer.send({ op: 0, event: 'E' });
    expect(await b.peer.next()).toMatchObject({ event: 'E', source: a.id });
  });

  it('GROUP reaches every member of the group (group and groups), and nobody else', async () => {
    const a = await identify();
    const m1 = await identify({ group: 'damon' });
    const m2 = await identify({ groups: ['other', 'damon'] });
    const out = await identify({ group: 'other' });
    a.peer.send({ op: 0, event: 'INFO', intent: { target: 'GROUP', identifier: 'damon' } });
    expect(await m1.peer.next()).toMatchObject({ event: 'INFO', source: a.id });
    expect(await m2.peer.next()).toMatchObject({ event: 'INFO', source: a.id });
    expect(await out.peer.quiet()).toBe(true);
  });

  it('groups are created and removed implicitly (admin view)', async () => {
    const auth = { authorization: 'Bearer admin-secret-for-tests' };
    const m = await identify({ groups: ['g1', 'g2'] });
    let res = await h.srv.muster.http.inject({ url: '/api/v1/bus/groups', headers: auth });
    expect(res.json()).toEqual([
      { name: 'g1', members: [m.id] },
      { name: 'g2', members: [m.id] },
    ]);
    m.peer.close();
    await until(() => bus().summary().groups === 0);
    res = await h.srv.muster.http.inject({ url: '/api/v1/bus/groups', headers: auth });
    expect(res.json()).toEqual([]);
  });

  it('DIRECT reaches one service by id or by unique name', async () => {
    const a = await identify();
    const b = await identify({ name: 'worker-b' });
    const c = await identify();
    a.peer.send({ op: 0, event: 'BY_ID', intent: { target: 'DIRECT', identifier: b.id } });
    a.peer.send({ op: 0, event: 'BY_NAME', intent: { target: 'DIRECT', identifier: 'worker-b' } });
    expect(await b.peer.next()).toMatchObject({ event: 'BY_ID', source: a.id });
    expect(await b.peer.next()).toMatchObject({ event: 'BY_NAME', source: a.id });
    expect(await c.peer.quiet()).toBe(true);
  });

  it("relays the sender's frame unchanged plus source, snowflakes included", async () => {
    const a = await identify();
    const b = await identify();
    const frame = '{"id":"r1","op":0,"event":"GUILD","data":{"guild_id":870000000000000123,"ids":[18446744073709551615],"f":1.50},"intent":{"target":"DIRECT","identifier":"' + b.id + '"}}';
    a.peer.send(frame);
    const got = await b.peer.nextRaw();
    expect(got).toBe(`${frame.slice(0, -1)},"source":"${a.id}"}`);
    expect(got).toContain('870000000000000123');
    expect(got).toContain('18446744073709551615');
  });

  it("source set by the server wins over a sender's own", async () => {
    const a = await identify();
    const b = await identify();
    a.peer.send({ op: 0, event: 'E', source: 'forged', intent: { target: 'DIRECT', identifier: b.id } });
    expect((await b.peer.next<{ source: string }>()).source).toBe(a.id);
  });

  it('answers a DIRECT to an unknown service with NO_ROUTE and the same id', async () => {
    const a = await identify();
    a.peer.send({ op: 0, id: 'q1', event: 'E', intent: { target: 'DIRECT', identifier: 'ghost' } });
    expect(await a.peer.next()).toMatchObject({ op: 5, id: 'q1', data: { error: 'NO_ROUTE' } });
  });

  it('answers a GROUP with no members with NO_ROUTE', async () => {
    const a = await identify();
    a.peer.send({ op: 0, id: 'q2', event: 'E', intent: { target: 'GROUP', identifier: 'empty' } });
    expect(await a.peer.next()).toMatchObject({ op: 5, id: 'q2', data: { error: 'NO_ROUTE' } });
  });

  it('keeps order from one sender to one receiver', async () => {
    const a = await identify();
    const b = await identify();
    for (let i = 0; i < 300; i++) a.peer.send({ op: 0, event: 'N', data: i, intent: { target: 'DIRECT', identifier: b.id } });
    for (let i = 0; i < 300; i++) expect((await b.peer.next<{ data: number }>()).data).toBe(i);
  });
});

describe('bus: replies', () => {
  it('routes a REPLY back to the requester whatever its intent says, once, without REPLY_END', async () => {
    const a = await identify();
    const b = await identify();
    const c = await identify();
    a.peer.send({ op: 0, id: 'req-1', event: 'ASK', expect_reply: 1, intent: { target: 'DIRECT', identifier: b.id } });
    expect(await b.peer.next()).toMatchObject({ id: 'req-1', event: 'ASK' });
    b.peer.send(`{"op":5,"id":"req-1","data":{"big":870000000000000123},"intent":{"target":"DIRECT","identifier":"${c.id}"}}`);
    const raw = await a.peer.nextRaw();
    expect(raw).toContain('870000000000000123');
    expect(JSON.parse(raw)).toMatchObject({ op: 5, id: 'req-1', source: b.id });
    // A second reply is not expected any more: ignored.
    b.peer.send({ op: 5, id: 'req-1', data: 2 });
    await roundTrip(b.peer);
    h.srv.clock.advance(20_000);
    expect(await a.peer.quiet()).toBe(true);
    expect(await c.peer.quiet()).toBe(true);
  });

  it('sends TIMEOUT when a DIRECT request is not answered within requestTimeout', async () => {
    const a = await identify();
    const b = await identify();
    a.peer.send({ op: 0, id: 'slow', event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: b.id } });
    await b.peer.next();
    h.srv.clock.advance(9_999);
    expect(await a.peer.quiet()).toBe(true);
    h.srv.clock.advance(1);
    expect(await a.peer.next()).toEqual({ op: 5, id: 'slow', data: { error: 'TIMEOUT' } });
    // A late reply goes nowhere.
    b.peer.send({ op: 5, id: 'slow', data: {} });
    await roundTrip(b.peer);
    expect(await a.peer.quiet()).toBe(true);
  });

  it('collects N replies from a GROUP, then REPLY_END', async () => {
    const a = await identify();
    const ms = [await identify({ group: 'g' }), await identify({ group: 'g' }), await identify({ group: 'g' })];
    a.peer.send({ op: 0, id: 'c1', event: 'ASK', expect_reply: 2, intent: { target: 'GROUP', identifier: 'g' } });
    for (const m of ms) await m.peer.next();
    ms[0]?.peer.send({ op: 5, id: 'c1', data: 0 });
    ms[1]?.peer.send({ op: 5, id: 'c1', data: 1 });
    ms[2]?.peer.send({ op: 5, id: 'c1', data: 2 });
    expect(await a.peer.next()).toMatchObject({ op: 5, id: 'c1', data: 0, source: ms[0]?.id });
    expect(await a.peer.next()).toMatchObject({ op: 5, id: 'c1', data: 1, source: ms[1]?.id });
    expect(await a.peer.next()).toEqual({ op: 5, id: 'c1', event: 'REPLY_END', data: { received: 2, expected: 2, missing: [] } });
    await roundTrip(ms[2]!.peer);
    expect(await a.peer.quiet()).toBe(true);
  });

  it('collects "all" from GLOBAL and names the missing services at the timeout', async () => {
    const a = await identify();
    const b = await identify();
    const silent = await identify();
    a.peer.send({ op: 0, id: 'c2', event: 'ASK', expect_reply: 'all', intent: { target: 'GLOBAL' } });
    await b.peer.next();
    await silent.peer.next();
    b.peer.send({ op: 5, id: 'c2', data: 'ok' });
    expect(await a.peer.next()).toMatchObject({ id: 'c2', source: b.id });
    h.srv.clock.advance(10_000);
    expect(await a.peer.next()).toEqual({ op: 5, id: 'c2', event: 'REPLY_END', data: { received: 1, expected: 2, missing: [silent.id] } });
  });

  it('ignores replies from services that were not asked', async () => {
    const a = await identify();
    const m = await identify({ group: 'g' });
    const outsider = await identify();
    a.peer.send({ op: 0, id: 'c3', event: 'ASK', expect_reply: 'all', intent: { target: 'GROUP', identifier: 'g' } });
    await m.peer.next();
    outsider.peer.send({ op: 5, id: 'c3', data: 'me too' });
    await roundTrip(outsider.peer);
    m.peer.send({ op: 5, id: 'c3', data: 'me' });
    expect(await a.peer.next()).toMatchObject({ source: m.id, data: 'me' });
    expect(await a.peer.next()).toMatchObject({ event: 'REPLY_END', data: { received: 1, expected: 1, missing: [] } });
  });

  it('drops pending requests when the requester leaves', async () => {
    const a = await identify();
    const b = await identify();
    a.peer.send({ op: 0, id: 'gone', event: 'ASK', expect_reply: 1, intent: { target: 'DIRECT', identifier: b.id } });
    await b.peer.next();
    expect(bus().summary().pendingRequests).toBe(1);
    a.peer.close();
    await until(() => bus().summary().pendingRequests === 0);
    b.peer.send({ op: 5, id: 'gone', data: {} });
    await roundTrip(b.peer);
  });
});

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${h.srv.httpBase}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

describe('bus: request isolation (two requesters, one id)', () => {
  const ask = (id: string, to: string) => ({ op: 0, id, event: 'ASK', expect_reply: 1, intent: { target: 'DIRECT', identifier: to } });

  it('gives each requester its own answer when both asked the same recipient with the same id', async () => {
    const a = await identify();
    const b = await identify({ name: 'bee' });
    const c = await identify();
    a.peer.send(ask('1', c.id));
    expect(await c.peer.next()).toMatchObject({ id: '1', source: a.id });
    b.peer.send(ask('1', c.id));
    expect(await c.peer.next()).toMatchObject({ id: '1', source: b.id });
    expect(bus().summary().pendingRequests).toBe(2);
    // C answers B first, naming B (by name) in the REPLY's intent, then A (by id).
    c.peer.send({ op: 5, id: '1', data: 'for-b', intent: { target: 'DIRECT', identifier: 'bee' } });
    c.peer.send({ op: 5, id: '1', data: 'for-a', intent: { target: 'DIRECT', identifier: a.id } });
    expect(await b.peer.next()).toMatchObject({ op: 5, id: '1', data: 'for-b', source: c.id });
    expect(await a.peer.next()).toMatchObject({ op: 5, id: '1', data: 'for-a', source: c.id });
    h.srv.clock.advance(20_000);
    expect(await a.peer.quiet()).toBe(true);
    expect(await b.peer.quiet()).toBe(true);
  });

  it('matches REPLYs that name nobody to the oldest request first', async () => {
    const a = await identify();
    const b = await identify();
    const c = await identify();
    a.peer.send(ask('1', c.id));
    await c.peer.next();
    b.peer.send(ask('1', c.id));
    await c.peer.next();
    c.peer.send({ op: 5, id: '1', data: 'first' });
    expect(await a.peer.next()).toMatchObject({ data: 'first', source: c.id });
    expect(await b.peer.quiet()).toBe(true);
    c.peer.send({ op: 5, id: '1', data: 'second' });
    expect(await b.peer.next()).toMatchObject({ data: 'second', source: c.id });
  });

  it('a second requester with the same id times out on its own; the first still gets its TIMEOUT', async () => {
    const a = await identify();
    const b = await identify();
    const c = await identify();
    a.peer.send(ask('1', c.id));
    await c.peer.next();
    b.peer.send(ask('1', c.id));
    await c.peer.next();
    h.srv.clock.advance(10_000);
    expect(await a.peer.next()).toEqual({ op: 5, id: '1', data: { error: 'TIMEOUT' } });
    expect(await b.peer.next()).toEqual({ op: 5, id: '1', data: { error: 'TIMEOUT' } });
  });

  it('drops and counts a REPLY from a service that was not asked; the real answer still arrives', async () => {
    const a = await identify();
    const thief = await identify();
    const c = await identify();
    const before = await metric('muster_bus_replies_dropped_total');
    a.peer.send(ask('1', c.id));
    await c.peer.next();
    thief.peer.send({ op: 5, id: '1', data: 'forged', intent: { target: 'DIRECT', identifier: a.id } });
    await roundTrip(thief.peer);
    c.peer.send({ op: 5, id: '1', data: 'real' });
    expect(await a.peer.next()).toMatchObject({ data: 'real', source: c.id });
    // A second answer from C is not expected any more: dropped too.
    c.peer.send({ op: 5, id: '1', data: 'again' });
    await roundTrip(c.peer);
    expect(await a.peer.quiet()).toBe(true);
    expect(await metric('muster_bus_replies_dropped_total')).toBe(before + 2);
  });

  it('answers a DIRECT request at once with NO_ROUTE when its recipient leaves', async () => {
    const a = await identify();
    const c = await identify({ name: 'worker' });
    a.peer.send(ask('1', 'worker'));
    await c.peer.next();
    c.peer.close();
    expect(await a.peer.next()).toEqual({ op: 5, id: '1', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'worker' } });
    expect(bus().summary().pendingRequests).toBe(0);
  });

  it('answers every DIRECT request to a receiver cut as a slow consumer at once with NO_ROUTE', async () => {
    await restart({ maxEventBytesPerSecond: 0 });
    const a = await identify();
    const slow = await identify({ name: 'stuck' });
    (slow.peer.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const payload = 'p'.repeat(30_000);
    const n = 250; // 7.5 MB: past the kernel buffers and the 256 KiB allowance
    for (let i = 0; i < n; i++) {
      a.peer.send({ op: 0, id: `r${i}`, event: 'ASK', data: payload, expect_reply: 1, intent: { target: 'DIRECT', identifier: 'stuck' } });
      if (i % 10 === 9) await roundTrip(a.peer);
    }
    // No clock movement: none of them waits for a TIMEOUT.
    const answers = [];
    for (let i = 0; i < n; i++) answers.push(await a.peer.next<{ id: string; data: { error: string } }>());
    expect(answers.map((f) => f.data.error)).toEqual(Array(n).fill('NO_ROUTE'));
    expect(new Set(answers.map((f) => f.id)).size).toBe(n);
    expect(bus().summary().pendingRequests).toBe(0);
    (slow.peer.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    await slow.peer.waitClose(5000);
  });

  it('ends a collection at once when every receiver that had not answered has left', async () => {
    const a = await identify();
    const m1 = await identify({ group: 'g' });
    const m2 = await identify({ group: 'g' });
    a.peer.send({ op: 0, id: 'c', event: 'ASK', expect_reply: 'all', intent: { target: 'GROUP', identifier: 'g' } });
    await m1.peer.next();
    await m2.peer.next();
    m1.peer.send({ op: 5, id: 'c', data: 1 });
    expect(await a.peer.next()).toMatchObject({ data: 1, source: m1.id });
    m2.peer.close();
    expect(await a.peer.next()).toEqual({ op: 5, id: 'c', event: 'REPLY_END', data: { received: 1, expected: 2, missing: [m2.id] } });
  });

  it('keeps two GROUP collections with the same id apart', async () => {
    const a = await identify();
    const b = await identify();
    const m = await identify({ group: 'g' });
    a.peer.send({ op: 0, id: 'x', event: 'ASK', expect_reply: 'all', intent: { target: 'GROUP', identifier: 'g' } });
    await m.peer.next();
    b.peer.send({ op: 0, id: 'x', event: 'ASK', expect_reply: 'all', intent: { target: 'GROUP', identifier: 'g' } });
    await m.peer.next();
    m.peer.send({ op: 5, id: 'x', data: 'to-b', intent: { target: 'DIRECT', identifier: b.id } });
    expect(await b.peer.next()).toMatchObject({ data: 'to-b', source: m.id });
    expect(await b.peer.next()).toMatchObject({ event: 'REPLY_END', data: { received: 1, expected: 1, missing: [] } });
    expect(await a.peer.quiet()).toBe(true);
    m.peer.send({ op: 5, id: 'x', data: 'to-a' });
    expect(await a.peer.next()).toMatchObject({ data: 'to-a', source: m.id });
    expect(await a.peer.next()).toMatchObject({ event: 'REPLY_END', data: { received: 1, expected: 1, missing: [] } });
  });
});

describe('bus: sender rate limit', () => {
  it('refuses EVENTs over maxEventsPerSecond (bursts of 2 s) with RATE_LIMITED; receivers never see them', async () => {
    await restart({ maxEventsPerSecond: 10 });
    const flooder = await identify();
    const healthy = await identify();
    for (let i = 0; i < 25; i++) flooder.peer.send({ op: 0, id: `e${i}`, event: 'SPAM', data: i, intent: { target: 'GLOBAL' } });
    await roundTrip(flooder.peer);
    const refused = flooder.peer.frames.splice(0).map((f) => JSON.parse(f) as { id: string; data: Record<string, unknown> });
    expect(refused).toHaveLength(5);
    expect(refused[0]).toEqual({ op: 5, id: 'e20', data: { error: 'RATE_LIMITED', retry_after: 100 } });
    await roundTrip(healthy.peer);
    expect(healthy.peer.frames.splice(0).map((f) => (JSON.parse(f) as { data: number }).data)).toEqual([...Array(20).keys()]);
    // A second sender has its own budget.
    healthy.peer.send({ op: 0, event: 'MINE', intent: { target: 'GLOBAL' } });
    expect(await flooder.peer.next()).toMatchObject({ event: 'MINE', source: healthy.id });
    // Time refills the bucket at the rate.
    h.srv.clock.advance(1000);
    for (let i = 0; i < 11; i++) flooder.peer.send({ op: 0, event: 'MORE', data: i, intent: { target: 'GLOBAL' } });
    await roundTrip(flooder.peer);
    expect(flooder.peer.frames.splice(0).map((f) => JSON.parse(f) as Record<string, unknown>)).toEqual([{ op: 5, data: { error: 'RATE_LIMITED', retry_after: 100 } }]);
    await roundTrip(healthy.peer);
    expect(healthy.peer.frames).toHaveLength(10);
    healthy.peer.frames.length = 0;
    expect(await metric('muster_bus_rate_limited_total')).toBe(6);
  });

  it('limits EVENT bytes too, and a request refused for rate fails at once', async () => {
    await restart({ maxEventBytesPerSecond: 1000, maxMessageBytes: 2048 });
    const a = await identify();
    const b = await identify();
    const data = 'x'.repeat(900);
    for (let i = 0; i < 3; i++) a.peer.send({ op: 0, event: 'BIG', data, intent: { target: 'DIRECT', identifier: b.id } });
    a.peer.send({ op: 0, id: 'q', event: 'ASK', expect_reply: 1, intent: { target: 'DIRECT', identifier: b.id } });
    await roundTrip(a.peer);
    // Two ~950-byte frames fit the 2048-byte burst; the third and the request do not.
    expect(a.peer.frames.splice(0).map((f) => JSON.parse(f) as Record<string, unknown>)).toEqual([
      { op: 5, data: { error: 'RATE_LIMITED', retry_after: expect.any(Number) } },
      { op: 5, id: 'q', data: { error: 'RATE_LIMITED', retry_after: expect.any(Number) } },
    ]);
    await roundTrip(b.peer);
    expect(b.peer.frames.splice(0)).toHaveLength(2);
    expect(bus().summary().pendingRequests).toBe(0);
  });

  it('keeps a reading receiver connected while a sender floods GLOBAL (at the default limits)', async () => {
    await restart({});
    const flooder = await identify();
    const healthy = await identify();
    const data = 'f'.repeat(30_000);
    // 10 MB offered in no time on the manual clock: only the 2 s burst (2 MiB) is relayed.
    for (let i = 0; i < 350; i++) {
      flooder.peer.send({ op: 0, event: 'FLOOD', data, intent: { target: 'GLOBAL' } });
      if (i % 50 === 49) await roundTrip(flooder.peer);
    }
    await roundTrip(flooder.peer);
    await roundTrip(healthy.peer);
    expect(healthy.peer.isClosed).toBe(false);
    const relayed = healthy.peer.frames.length;
    expect(relayed).toBeGreaterThan(0);
    expect(relayed * 30_000).toBeLessThanOrEqual(2 * 1024 * 1024);
    expect(bus().summary().services).toBe(2);
    healthy.peer.frames.length = 0;
    flooder.peer.frames.length = 0;
  });
});

describe('bus: liveness', () => {
  it('sends PING every heartbeat_interval and answers PONG to a PING', async () => {
    const { peer } = await identify();
    h.srv.clock.advance(30_000);
    expect(await peer.next()).toEqual({ op: 3 });
    peer.send({ op: 4 });
    peer.send({ op: 3 });
    expect(await peer.next()).toEqual({ op: 4 });
  });

  it('keeps a service that answers PINGs', async () => {
    const { peer } = await identify();
    for (let i = 0; i < 5; i++) {
      h.srv.clock.advance(30_000);
      expect(await peer.next()).toEqual({ op: 3 });
      peer.send({ op: 4 });
      await roundTrip(peer);
    }
    expect(peer.isClosed).toBe(false);
  });

  it('closes a silent service after two intervals with PING_TIMEOUT and 4001', async () => {
    const { peer } = await identify({ group: 'g' });
    h.srv.clock.advance(30_000);
    expect(await peer.next()).toEqual({ op: 3 });
    h.srv.clock.advance(30_000);
    await expectDisconnect(peer, 'PING_TIMEOUT', 4001);
  });
});

describe('bus: slow consumers', () => {
  it('cuts a receiver that does not read, without slowing the others', async () => {
    await restart({ maxEventBytesPerSecond: 0 }); // one sender's 6 MB, unthrottled
    const sender = await identify();
    const fast = await identify({ group: 'g' });
    const slow = await identify({ group: 'g' });
    // The slow one stops reading from its socket.
    (slow.peer.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const payload = 'y'.repeat(30_000);
    const n = 200; // 6 MB in all, far over the 256 KiB limit
    let sent = 0;
    const fastGot: number[] = [];
    fast.peer.ws.on('message', () => undefined);
    const pump = async (): Promise<void> => {
      while (sent < n) {
        sender.peer.send({ op: 0, event: 'BULK', data: { i: sent, payload }, intent: { target: 'GROUP', identifier: 'g' } });
        sent++;
        if (sent % 20 === 0) await roundTrip(sender.peer);
      }
    };
    const read = async (): Promise<void> => {
      while (fastGot.length < n) fastGot.push((await fast.peer.next<{ data: { i: number } }>(5000)).data.i);
    };
    await Promise.all([pump(), read()]);
    expect(fastGot).toEqual([...Array(n).keys()]);
    await until(() => bus().summary().services === 2);
    // The server holds at most about the limit for it, not the 6 MB.
    const conn = h.srv.muster.transport.connections().find((c) => c.id === slow.id);
    expect(conn?.slow).toBe(true);
    expect(conn?.bufferedAmount ?? 0).toBeLessThan(2 * 256 * 1024 + 64 * 1024);
    // Once it reads again it finds the backlog, then the goodbye.
    (slow.peer.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const c = await slow.peer.waitClose(5000);
    expect(c.code).toBe(4008);
    const last = JSON.parse(slow.peer.frames.at(-1) as string) as { op: number; data: { reason: string } };
    expect(last).toMatchObject({ op: 2, data: { reason: 'SLOW_CONSUMER' } });
  });

  it('destroys a slow consumer whose goodbye does not drain within 5 s', async () => {
    await restart({ maxEventBytesPerSecond: 0 });
    const sender = await identify();
    const slow = await identify({ group: 'g' });
    (slow.peer.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const payload = 'z'.repeat(30_000);
    for (let i = 0; i < 400 && bus().summary().services === 2; i++) {
      sender.peer.send({ op: 0, event: 'BULK', data: payload, intent: { target: 'GROUP', identifier: 'g' } });
      if (i % 10 === 9) await roundTrip(sender.peer);
    }
    await until(() => bus().summary().services === 1);
    expect(h.srv.muster.transport.size).toBe(2);
    h.srv.clock.advance(4_999);
    await roundTrip(sender.peer);
    sender.peer.frames.length = 0; // NO_ROUTE answers once the group emptied
    expect(h.srv.muster.transport.size).toBe(2);
    h.srv.clock.advance(1);
    await until(() => h.srv.muster.transport.size === 1);
  });
});

describe('bus: operators', () => {
  it('kicks a service through the admin API with DISCONNECT KICKED and 1008', async () => {
    const { peer, id } = await identify();
    const res = await h.srv.muster.http.inject({
      method: 'DELETE',
      url: `/api/v1/connections/${id}`,
      headers: { authorization: 'Bearer admin-secret-for-tests' },
    });
    expect(res.statusCode).toBe(200);
    await expectDisconnect(peer, 'KICKED', 1008);
  });

  it('lists services with their names and groups', async () => {
    const a = await identify({ name: 'web', groups: ['dash'] });
    const res = await h.srv.muster.http.inject({ url: '/api/v1/bus/services', headers: { authorization: 'Bearer admin-secret-for-tests' } });
    expect(res.json()).toEqual([
      expect.objectContaining({ id: a.id, name: 'web', groups: ['dash'], remoteAddress: '127.0.0.1' }),
    ]);
  });

  it('reloads the token without dropping identified services', async () => {
    const a = await identify();
    h.srv.muster.reloadSecrets({ ...h.srv.muster.config, dialects: { ...h.srv.muster.config.dialects, bus: { ...h.srv.muster.config.dialects.bus, token: 'rotated' } } });
    const b = await open();
    b.send({ op: 1, data: { token: 'rotated' } });
    expect((await b.next<{ op: number }>()).op).toBe(1);
    const c = await open();
    c.send({ op: 1, data: { token: BUS_TOKEN } });
    await expectDisconnect(c, 'IDENTIFY_FAILED', 4004);
    await roundTrip(a.peer);
  });

  it('says goodbye with SHUTTING_DOWN and 1001 at shutdown', async () => {
    const { peer } = await identify();
    const stopping = h.srv.muster.stop();
    await expectDisconnect(peer, 'SHUTTING_DOWN', 1001);
    await stopping;
  });
});
