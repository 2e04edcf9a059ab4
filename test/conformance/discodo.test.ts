/**
 * Conformance tests for the discodo dialect, written from the contract alone
 * (specs/discodo.md, its seed 003-discodo-session.rst, operations.md and the
 * Discodo 3.0.7 trace), not from the implementation.
 */
import { parse as losslessParse } from 'lossless-json';
import { afterEach, describe, expect, it } from 'vitest';
import { DiscodoHarness, takeRoundTrip } from '../support/harness/discodo.js';
import { ADMIN_TOKEN, RawPeer, until, type TestServer } from '../support/server.js';

const PW = 'pw';
const VC_TIMEOUT = 300_000;
const HANDSHAKE_TIMEOUT = 60_000;

const BOT_A = '870000000000000123';
const BOT_B = '870000000000000124';
const BOT_ROUNDED = '870000000000000100';
const GUILD = '111111111111111111';
const GUILD2 = '333333333333333333';
const CHAN = '222222222222222222';
const CHAN2 = '444444444444444444';

const h = new DiscodoHarness(PW);

type Extra = Record<string, unknown>;

const boot = (extra: Extra = {}): Promise<TestServer> => h.start(extra);
const server = (): TestServer => h.srv;

function summary(): Record<string, unknown> {
  const d = server().muster.dialect('discodo');
  if (!d) throw new Error('discodo dialect not registered');
  return d.summary?.() ?? {};
}

afterEach(() =>
  h.teardown(() => {
    // Every detached session is released once the window passes.
    server().clock.advance(VC_TIMEOUT + 1);
    const s = summary();
    for (const [k, v] of Object.entries(s)) {
      if (typeof v === 'number') expect({ [k]: v }).toEqual({ [k]: 0 });
    }
    h.expectNoWakesLeft();
  }),
);

/** Parses a frame keeping every integer beyond 2^53 exact, as a bigint. */
function exact(raw: string): { op: string; d: Record<string, unknown> } {
  return losslessParse(raw, null, (s: string) => {
    if (/^-?\d+$/.test(s) && !Number.isSafeInteger(Number(s))) return BigInt(s);
    return Number(s);
  }) as { op: string; d: Record<string, unknown> };
}

const big = (s: string): bigint => BigInt(s);

/** Frame text with big integers written as digits (JSON.stringify cannot). */
function frame(op: string, dRaw: string): string {
  return `{"op":${JSON.stringify(op)},"d":${dRaw}}`;
}

const connect = (auth: string | null = PW): Promise<RawPeer> => h.connect(auth);
/** Opens, reads HELLO. */
const open = (): Promise<RawPeer> => h.hello();
/** A HEARTBEAT round trip: returns the raw frames that arrived before its ACK. */
const roundTrip = takeRoundTrip;

/** Sends IDENTIFY (ids as raw JSON text) and expects IDENTIFIED {}. */
async function identify(p: RawPeer, userRaw: string, shardRaw = 'null'): Promise<void> {
  p.send(frame('IDENTIFY', `{"user_id":${userRaw},"shard_id":${shardRaw}}`));
  const f = exact(await p.nextRaw());
  expect(f).toEqual({ op: 'IDENTIFIED', d: {} });
}

/** A fresh session (never held, or released after vcTimeout): no RESUMED at all (docs: choices). */
async function expectNoResume(p: RawPeer): Promise<void> {
  expect(await roundTrip(p)).toEqual([]);
}

function vsu(userRaw: string, guildRaw: string, channelRaw: string): string {
  return frame(
    'DISCORD_EVENT',
    `{"t":"VOICE_STATE_UPDATE","s":12,"op":0,"d":{"guild_id":${guildRaw},"channel_id":${channelRaw},"user_id":${userRaw},"session_id":"sess-abc","deaf":false,"mute":false,"self_deaf":true,"self_mute":false}}`,
  );
}

function vserver(guildRaw: string): string {
  return frame(
    'DISCORD_EVENT',
    `{"t":"VOICE_SERVER_UPDATE","s":13,"op":0,"d":{"token":"tok-xyz","guild_id":${guildRaw},"endpoint":"us-east1.discord.media:443"}}`,
  );
}

/** Creates a voice client for `guildRaw`; returns the VC_CREATED frame (raw and parsed). */
async function createVc(
  p: RawPeer,
  userRaw: string,
  guildRaw: string,
  channelRaw: string,
): Promise<{ raw: string; id: unknown }> {
  p.send(vsu(userRaw, guildRaw, channelRaw));
  p.send(vserver(guildRaw));
  const raw = await p.nextRaw();
  const f = exact(raw);
  expect(f.op).toBe('VC_CREATED');
  expect(f.d.guild_id).toEqual(exact(guildRaw));
  expect(f.d.id).toBeDefined();
  expect(f.d.id).not.toBeNull();
  return { raw, id: f.d.id };
}

async function closeAndSettle(p: RawPeer): Promise<void> {
  const before = server().muster.transport.size;
  p.close();
  await p.waitClose();
  await until(() => server().muster.transport.size < before);
}

/** Keeps a connection alive like Discodo 3's client: a HEARTBEAT every 5 s. */
async function liveFor(ms: number, ...ps: RawPeer[]): Promise<void> {
  for (let t = 0; t < ms; t += 5000) {
    server().clock.advance(Math.min(5000, ms - t));
    for (const p of ps) await roundTrip(p);
  }
}

function traceback(f: { d: unknown }): Record<string, unknown> {
  expect(f.d).toBeTypeOf('object');
  expect(f.d).not.toBeNull();
  const tb = (f.d as Record<string, unknown>).traceback;
  expect(tb).toBeTypeOf('object');
  return tb as Record<string, unknown>;
}

// ---------------------------------------------------------------------------

describe('discodo conformance: connection', () => {
  it('sends HELLO with heartbeat_interval 15 (seconds, a JSON number) and a version', async () => {
    await boot();
    const p = await connect();
    const raw = await p.nextRaw();
    expect(raw).toMatch(/"heartbeat_interval":15(\.0+)?[,}]/);
    const f = JSON.parse(raw) as { op: string; d: { heartbeat_interval: number; version: unknown } };
    expect(f.op).toBe('HELLO');
    expect(f.d.heartbeat_interval).toBe(15);
    expect(typeof f.d.version).toBe('string');
  });

  it('converts heartbeatInterval from ms to seconds (2500 ms -> 2.5)', async () => {
    await boot({ heartbeatInterval: 2500 });
    const p = await connect();
    const raw = await p.nextRaw();
    expect(raw).toMatch(/"heartbeat_interval":2\.50*[,}]/);
  });

  it('serves on the configured path /ws by default', async () => {
    await boot();
    const p = await connect();
    expect((await p.next<{ op: string }>()).op).toBe('HELLO');
  });

  it('sends FORBIDDEN "<why>" then closes 4003 on a wrong password', async () => {
    await boot();
    const p = await connect('wrong');
    const f = await p.next<{ op: string; d: unknown }>();
    expect(f.op).toBe('FORBIDDEN');
    expect(typeof f.d).toBe('string');
    expect((f.d as string).length).toBeGreaterThan(0);
    const c = await p.waitClose();
    expect(c.code).toBe(4003);
    expect(p.frames).toEqual([]);
  });

  it('sends FORBIDDEN then closes 4003 on a missing Authorization header', async () => {
    await boot();
    const p = await connect(null);
    const f = await p.next<{ op: string; d: unknown }>();
    expect(f.op).toBe('FORBIDDEN');
    expect(typeof f.d).toBe('string');
    expect((await p.waitClose()).code).toBe(4003);
  });

  it('password comparison is exact (case matters)', async () => {
    await boot();
    const p = await connect('PW');
    expect((await p.next<{ op: string }>()).op).toBe('FORBIDDEN');
    expect((await p.waitClose()).code).toBe(4003);
  });

  it('does not identify a forbidden socket whose IDENTIFY was sent on open (Discodo 3 client)', async () => {
    await boot();
    const p = new RawPeer(h.url, { headers: { authorization: 'nope' } });
    h.track(p);
    p.ws.on('open', () => p.send({ op: 'IDENTIFY', d: { user_id: 1234, shard_id: null } }));
    await p.waitClose();
    const ops = p.frames.map((r) => (JSON.parse(r) as { op: string }).op);
    expect(ops).toEqual(['FORBIDDEN']);
    expect((await p.closed).code).toBe(4003);
  });

  it('echoes HEARTBEAT d exactly in HEARTBEAT_ACK: numbers, null, strings, objects', async () => {
    await boot();
    const p = await open();
    const cases = [
      '0',
      'null',
      '1795306231786',
      '870000000000000123',
      '12345678901234567890123',
      '1.5',
      '"hello"',
      '{"a":[1,2,{"b":null}],"id":870000000000000123,"s":"870000000000000124"}',
      '[870000000000000123,"x",true]',
      'false',
    ];
    for (const d of cases) {
      p.send(frame('HEARTBEAT', d));
      const raw = await p.nextRaw();
      const f = exact(raw);
      expect(f.op).toBe('HEARTBEAT_ACK');
      expect(f.d).toEqual(exact(`{"op":"x","d":${d}}`).d);
      if (d === 'null') expect('d' in (JSON.parse(raw) as object)).toBe(true);
    }
    // Big numbers appear as their exact digits in the raw text.
    p.send(frame('HEARTBEAT', '870000000000000123'));
    expect(await p.nextRaw()).toContain('870000000000000123');
  });

  it('answers HEARTBEAT before IDENTIFY', async () => {
    await boot();
    const p = await open();
    p.send({ op: 'HEARTBEAT', d: 1795306231786 });
    expect(await p.next()).toEqual({ op: 'HEARTBEAT_ACK', d: 1795306231786 });
  });

  it('closes a silent connection with 4000 after handshakeTimeout (60 s), not before', async () => {
    await boot();
    const p = await open();
    server().clock.advance(HANDSHAKE_TIMEOUT - 1);
    expect(await p.quiet()).toBe(true);
    expect(p.isClosed).toBe(false);
    server().clock.advance(1);
    expect((await p.waitClose()).code).toBe(4000);
  });

  it('honours a configured handshakeTimeout', async () => {
    await boot({ handshakeTimeout: 10_000 });
    const p = await open();
    server().clock.advance(9_999);
    expect(await p.quiet()).toBe(true);
    server().clock.advance(1);
    expect((await p.waitClose()).code).toBe(4000);
  });

  it('keeps a Discodo-3-style client (HEARTBEAT every 5 s) open for minutes', async () => {
    await boot();
    const p = await open();
    await identify(p, '1234');
    await liveFor(10 * 60_000, p);
    expect(p.isClosed).toBe(false);
  });

  it('closes 4002 on malformed JSON', async () => {
    await boot();
    const p = await open();
    p.send('{"op": "HEARTBEAT", "d": ');
    expect((await p.waitClose()).code).toBe(4002);
  });

  it('closes 4002 on malformed JSON after IDENTIFY too', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    p.send('not json at all');
    expect((await p.waitClose()).code).toBe(4002);
  });

  it('closes 1007 on non-UTF-8 text', async () => {
    await boot();
    const p = await open();
    p.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await p.waitClose()).code).toBe(1007);
  });
});

describe('discodo conformance: IDENTIFY', () => {
  it('answers IDENTIFY with IDENTIFIED {} (no voice clients to resume)', async () => {
    await boot();
    const p = await open();
    await identify(p, '1234');
    await expectNoResume(p);
  });

  it('accepts IDENTIFY sent right on open, before HELLO is read (Discodo 3 client)', async () => {
    await boot();
    const p = new RawPeer(h.url, { headers: { authorization: PW } });
    h.track(p);
    p.ws.on('open', () => p.send('{"op":"IDENTIFY","d":{"user_id":1234,"shard_id":null}}'));
    const first = await p.next<{ op: string }>();
    expect(first.op).toBe('HELLO');
    expect(await p.next()).toEqual({ op: 'IDENTIFIED', d: {} });
    p.send({ op: 'GET_STATUS', d: null });
    const s = await p.next<{ op: string; d: unknown }>();
    expect(s.op).toBe('STATUS');
  });

  it('accepts IDENTIFY with shard_id 0', async () => {
    await boot();
    const p = await open();
    await identify(p, '1234', '0');
  });

  it('accepts string ids in IDENTIFY (the seed example)', async () => {
    await boot();
    const p = await open();
    await identify(p, `"${BOT_A}"`);
  });

  it('answers a second IDENTIFY with IDENTIFY {traceback: {ALREADY_IDENTIFIED}} and keeps the socket', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    p.send(frame('IDENTIFY', `{"user_id":${BOT_A},"shard_id":null}`));
    const f = await p.next<{ op: string; d: Record<string, unknown> }>();
    expect(f.op).toBe('IDENTIFY');
    const tb = traceback(f);
    expect(Object.keys(tb)).toEqual(['ALREADY_IDENTIFIED']);
    expect(typeof tb.ALREADY_IDENTIFIED).toBe('string');
    expect(p.isClosed).toBe(false);
    await roundTrip(p);
  });

  it('answers ops before IDENTIFY with <op> {traceback: {NOT_IDENTIFIED: "Identify first."}}', async () => {
    await boot();
    const p = await open();
    const ops: Array<[string, unknown]> = [
      ['GET_STATUS', null],
      ['DISCORD_EVENT', { t: 'VOICE_STATE_UPDATE', d: { guild_id: '1', channel_id: '2', user_id: '3' } }],
      ['VC_DESTROY', { guild_id: '1' }],
      ['getState', { guild_id: '1' }],
      ['getQueue', { guild_id: '1' }],
      ['putSource', { guild_id: '1', source: {} }],
      ['skip', { guild_id: '1' }],
    ];
    for (const [op, d] of ops) {
      p.send({ op, d });
      const f = await p.next<{ op: string; d: Record<string, unknown> }>();
      expect(f.op).toBe(op);
      expect(traceback(f)).toEqual({ NOT_IDENTIFIED: 'Identify first.' });
    }
    expect(p.isClosed).toBe(false);
    // Still able to identify afterwards.
    await identify(p, '1234');
  });

  it('answers an unknown op before IDENTIFY with a traceback under the same op', async () => {
    await boot();
    const p = await open();
    p.send({ op: 'FROBNICATE', d: {} });
    const f = await p.next<{ op: string; d: Record<string, unknown> }>();
    expect(f.op).toBe('FROBNICATE');
    const tb = traceback(f);
    // "Any op other than IDENTIFY or HEARTBEAT before IDENTIFY gets NOT_IDENTIFIED."
    expect(tb).toEqual({ NOT_IDENTIFIED: 'Identify first.' });
  });

  it('rejects an IDENTIFY without user_id clearly and does not identify', async () => {
    await boot();
    const p = await open();
    p.send({ op: 'IDENTIFY', d: { shard_id: null } });
    const f = await p.next<{ op: string; d: Record<string, unknown> }>().catch(() => undefined);
    if (!p.isClosed) {
      expect(f?.op).toBe('IDENTIFY');
      expect(Object.keys(traceback(f as { d: unknown })).length).toBe(1);
      p.send({ op: 'GET_STATUS', d: null });
      const g = await p.next<{ op: string; d: Record<string, unknown> }>();
      expect(traceback(g)).toEqual({ NOT_IDENTIFIED: 'Identify first.' });
    } else {
      expect((await p.closed).code).toBeGreaterThanOrEqual(4000);
    }
  });

  it('rejects an IDENTIFY whose d is not an object clearly', async () => {
    await boot();
    for (const d of ['5', '"abc"', 'null', '[1,2]']) {
      const p = await open();
      p.send(frame('IDENTIFY', d));
      const f = await p.next<{ op: string; d: Record<string, unknown> }>().catch(() => undefined);
      if (!p.isClosed || f) {
        expect(f?.op).toBe('IDENTIFY');
        expect(Object.keys(traceback(f as { d: unknown })).length).toBe(1);
      } else {
        expect((await p.closed).code).toBeGreaterThanOrEqual(4000);
      }
      p.close();
    }
  });

  it('answers an unknown op after IDENTIFY with <op> {traceback: {UNKNOWN_OP}}', async () => {
    await boot();
    const p = await open();
    await identify(p, '1234');
    p.send({ op: 'FROBNICATE', d: { guild_id: '1' } });
    const f = await p.next<{ op: string; d: Record<string, unknown> }>();
    expect(f.op).toBe('FROBNICATE');
    const tb = traceback(f);
    expect(Object.keys(tb)).toEqual(['UNKNOWN_OP']);
    expect(typeof tb.UNKNOWN_OP).toBe('string');
    expect(p.isClosed).toBe(false);
  });

  it('answers GET_STATUS with STATUS {…}', async () => {
    await boot();
    const p = await open();
    await identify(p, '1234');
    p.send({ op: 'GET_STATUS', d: null });
    const f = await p.next<{ op: string; d: Record<string, unknown> }>();
    expect(f.op).toBe('STATUS');
    expect(typeof f.d).toBe('object');
    expect(f.d).not.toBeNull();
    expect(Object.keys(f.d).length).toBeGreaterThan(0);
  });
});

describe('discodo conformance: voice clients from DISCORD_EVENT', () => {
  it('creates a voice client after VOICE_STATE_UPDATE then VOICE_SERVER_UPDATE (string ids as Discord sends them)', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    p.send(vsu(`"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`));
    expect(await p.quiet()).toBe(true);
    p.send(vserver(`"${GUILD}"`));
    const raw = await p.nextRaw();
    const f = exact(raw);
    expect(f.op).toBe('VC_CREATED');
    expect(Object.keys(f.d).sort()).toEqual(['guild_id', 'id']);
    expect(f.d.guild_id).toBe(GUILD);
    expect(f.d.id).toBeTruthy();
  });

  it('creates a voice client when VOICE_SERVER_UPDATE comes first', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    p.send(vserver(`"${GUILD}"`));
    expect(await p.quiet()).toBe(true);
    p.send(vsu(`"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`));
    const f = exact(await p.nextRaw());
    expect(f.op).toBe('VC_CREATED');
    expect(f.d.guild_id).toBe(GUILD);
  });

  it('writes ids back as JSON numbers, exact, when they arrived as numbers', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    const { raw } = await createVc(p, BOT_A, GUILD, CHAN);
    expect(raw).toContain(`"guild_id":${GUILD}`);
    p.send(frame('getState', `{"guild_id":${GUILD}}`));
    const sraw = await p.nextRaw();
    expect(sraw).toContain(`"guild_id":${GUILD}`);
    expect(sraw).toContain(`"channel_id":${CHAN}`);
  });

  it('matches the identified user by digits whether its id is a number or a string', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A); // a JSON number, as Discodo 3's client sends it
    await createVc(p, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`); // strings, as Discord sends them
  });

  it('ignores voice events of other users (including one whose id only differs past 2^53)', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    for (const other of [BOT_B, BOT_ROUNDED, `"${BOT_B}"`]) {
      p.send(vsu(other, `"${GUILD}"`, `"${CHAN}"`));
      p.send(vserver(`"${GUILD}"`));
      expect(await roundTrip(p)).toEqual([]);
    }
    p.send(frame('getState', `{"guild_id":"${GUILD}"}`));
    const f = exact(await p.nextRaw());
    expect(Object.keys(traceback(f))).toEqual(['VOICE_CLIENT_NOT_FOUND']);
  });

  it('ignores other gateway events and malformed DISCORD_EVENTs without closing', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    p.send({ op: 'DISCORD_EVENT', d: { t: 'MESSAGE_CREATE', d: { content: 'hi' } } });
    p.send({ op: 'DISCORD_EVENT', d: { t: 'VOICE_STATE_UPDATE', d: 5 } });
    p.send({ op: 'DISCORD_EVENT', d: { t: 'VOICE_SERVER_UPDATE' } });
    p.send({ op: 'DISCORD_EVENT', d: null });
    p.send({ op: 'DISCORD_EVENT', d: 'x' });
    const before = await roundTrip(p);
    for (const raw of before) {
      // Anything said must be a traceback under DISCORD_EVENT, never a voice-client event.
      const f = exact(raw);
      expect(f.op).toBe('DISCORD_EVENT');
      traceback(f);
    }
    expect(p.isClosed).toBe(false);
  });

  it('a VOICE_STATE_UPDATE with a null channel for a guild with no voice client sends nothing', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    p.send(vsu(BOT_A, `"${GUILD}"`, 'null'));
    expect(await roundTrip(p)).toEqual([]);
  });

  it('sends VC_CHANNEL_EDITED {guild_id, channel_id} on a channel change', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    await createVc(p, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`);
    p.send(vsu(`"${BOT_A}"`, `"${GUILD}"`, `"${CHAN2}"`));
    const f = exact(await p.nextRaw());
    expect(f).toEqual({ op: 'VC_CHANNEL_EDITED', d: { guild_id: GUILD, channel_id: CHAN2 } });
    // getState reports the new channel.
    p.send({ op: 'getState', d: { guild_id: GUILD } });
    const s = exact(await p.nextRaw());
    expect(s.d.channel_id).toBe(CHAN2);
  });

  it('sends VC_CHANNEL_EDITED with exact numeric ids', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    await createVc(p, BOT_A, GUILD, CHAN);
    p.send(vsu(BOT_A, GUILD, CHAN2));
    const raw = await p.nextRaw();
    expect(exact(raw)).toEqual({ op: 'VC_CHANNEL_EDITED', d: { guild_id: big(GUILD), channel_id: big(CHAN2) } });
  });

  it('sends nothing when the channel does not change', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    await createVc(p, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`);
    p.send(vsu(`"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`));
    expect(await roundTrip(p)).toEqual([]);
  });

  it('destroys the voice client on a null channel: VC_DESTROYED {guild_id}', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    await createVc(p, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`);
    p.send(vsu(`"${BOT_A}"`, `"${GUILD}"`, 'null'));
    expect(exact(await p.nextRaw())).toEqual({ op: 'VC_DESTROYED', d: { guild_id: GUILD } });
    p.send({ op: 'getState', d: { guild_id: GUILD } });
    expect(Object.keys(traceback(exact(await p.nextRaw())))).toEqual(['VOICE_CLIENT_NOT_FOUND']);
  });

  it('keeps one voice client per guild', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    const a = await createVc(p, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`);
    const b = await createVc(p, `"${BOT_A}"`, `"${GUILD2}"`, `"${CHAN2}"`);
    expect(a.id).not.toEqual(b.id);
    p.send({ op: 'VC_DESTROY', d: { guild_id: GUILD } });
    const frames = [...(await roundTrip(p))].map(exact);
    for (const f of frames) expect(f).toEqual({ op: 'VC_DESTROYED', d: { guild_id: GUILD } });
    p.send({ op: 'getState', d: { guild_id: GUILD2 } });
    expect(exact(await p.nextRaw()).op).toBe('getState');
  });

  it('VC_DESTROY {guild_id} destroys a voice client on request', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    await createVc(p, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`);
    p.send({ op: 'VC_DESTROY', d: { guild_id: GUILD } });
    p.send({ op: 'getState', d: { guild_id: GUILD } });
    let f = exact(await p.nextRaw());
    if (f.op === 'VC_DESTROYED') {
      expect(f.d).toEqual({ guild_id: GUILD });
      f = exact(await p.nextRaw());
    }
    expect(f.op).toBe('getState');
    expect(Object.keys(traceback(f))).toEqual(['VOICE_CLIENT_NOT_FOUND']);
  });

  it('VC_DESTROY for a guild with no voice client is answered, not ignored or fatal', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    p.send({ op: 'VC_DESTROY', d: { guild_id: GUILD } });
    const before = await roundTrip(p);
    for (const raw of before) {
      const f = exact(raw);
      expect(f.op).toBe('VC_DESTROY');
      traceback(f);
    }
    expect(p.isClosed).toBe(false);
  });
});

describe('discodo conformance: getState / getQueue / player ops', () => {
  it('answers getState with the exact idle player', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    const { id } = await createVc(p, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`);
    p.send({ op: 'getState', d: { guild_id: GUILD } });
    const raw = await p.nextRaw();
    const f = exact(raw);
    expect(f.op).toBe('getState');
    expect(f.d).toMatchObject({
      id,
      guild_id: GUILD,
      channel_id: CHAN,
      state: 0,
      current: null,
      context: {},
      options: { autoplay: true, volume: 1, crossfade: 10, filter: {} },
    });
    expect(Number.isInteger(f.d.state)).toBe(true);
    expect(f.d.traceback).toBeUndefined();
  });

  it('answers getQueue with {guild_id, entries: []}', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    await createVc(p, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`);
    p.send({ op: 'getQueue', d: { guild_id: GUILD } });
    const f = exact(await p.nextRaw());
    expect(f.op).toBe('getQueue');
    expect(f.d).toMatchObject({ guild_id: GUILD, entries: [] });
    expect(f.d.traceback).toBeUndefined();
  });

  it('answers getState/getQueue with the guild id in the form it arrived (number)', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    await createVc(p, BOT_A, GUILD, CHAN);
    p.send(frame('getQueue', `{"guild_id":${GUILD}}`));
    const raw = await p.nextRaw();
    expect(exact(raw).d).toMatchObject({ guild_id: big(GUILD), entries: [] });
  });

  it('answers getState/getQueue for a guild without a voice client with VOICE_CLIENT_NOT_FOUND', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    for (const op of ['getState', 'getQueue']) {
      p.send({ op, d: { guild_id: GUILD } });
      const f = exact(await p.nextRaw());
      expect(f.op).toBe(op);
      expect(Object.keys(traceback(f))).toEqual(['VOICE_CLIENT_NOT_FOUND']);
    }
  });

  it('answers other player ops with a NOT_SUPPORTED traceback under the same op', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    await createVc(p, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`);
    for (const op of ['putSource', 'skip', 'seek']) {
      p.send({ op, d: { guild_id: GUILD } });
      const f = exact(await p.nextRaw());
      expect(f.op).toBe(op);
      expect(Object.keys(traceback(f))).toEqual(['NOT_SUPPORTED']);
    }
    expect(p.isClosed).toBe(false);
  });

  it('answers player ops for a guild without a voice client with a traceback', async () => {
    await boot();
    const p = await open();
    await identify(p, BOT_A);
    p.send({ op: 'skip', d: { guild_id: GUILD } });
    const f = exact(await p.nextRaw());
    expect(f.op).toBe('skip');
    expect(['NOT_SUPPORTED', 'VOICE_CLIENT_NOT_FOUND']).toContain(Object.keys(traceback(f))[0]);
  });
});

describe('discodo conformance: sessions and snowflakes', () => {
  it('two bots 870000000000000123 and 870000000000000124 do not share a session', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A);
    const b = await open();
    await identify(b, BOT_B);
    // Neither took the other over.
    expect(await a.quiet()).toBe(true);
    expect(a.isClosed).toBe(false);
    await createVc(a, BOT_A, GUILD, CHAN);
    await closeAndSettle(a);
    // A new bot B socket (B's live session is taken over, A's is untouched).
    const b2 = await open();
    await identify(b2, BOT_B);
    const rb = (await roundTrip(b2)).map(exact);
    for (const f of rb) {
      expect(f.op).toBe('RESUMED');
      expect(JSON.stringify(f.d.voice_clients ?? [], (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))).not.toContain(GUILD);
    }
    // Bot A resumes its own voice client.
    const a2 = await open();
    await identify(a2, BOT_A);
    const r = exact(await a2.nextRaw());
    expect(r).toEqual({ op: 'RESUMED', d: { voice_clients: [[big(GUILD), big(CHAN)]] } });
  });

  it('870000000000000123 and 870000000000000100 (what JSON.parse rounds it to) are distinct sessions', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A);
    await createVc(a, BOT_A, GUILD, CHAN);
    await closeAndSettle(a);
    const r = await open();
    await identify(r, BOT_ROUNDED);
    await expectNoResume(r);
  });

  it('the session key is user_id or user_id-shard_id: shard 0 and shard null are distinct', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A, '0');
    await createVc(a, BOT_A, GUILD, CHAN);
    await closeAndSettle(a);
    const n = await open();
    await identify(n, BOT_A, 'null');
    await expectNoResume(n);
    const s1 = await open();
    await identify(s1, BOT_A, '1');
    await expectNoResume(s1);
    const s0 = await open();
    await identify(s0, BOT_A, '0');
    expect(exact(await s0.nextRaw())).toEqual({ op: 'RESUMED', d: { voice_clients: [[big(GUILD), big(CHAN)]] } });
  });

  it('lists sessions by key (user_id and user_id-shard_id) in the admin API', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A, '0');
    const b = await open();
    await identify(b, BOT_B);
    const res = await fetch(`${server().httpBase}/api/v1/discodo/sessions`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain(`${BOT_A}-0`);
    expect(text).toContain(BOT_B);
    expect(text).not.toContain(BOT_ROUNDED);
  });
});

describe('discodo conformance: resume (seed form)', () => {
  it('resumes within vcTimeout: IDENTIFIED then RESUMED {voice_clients: [[guild_id, channel_id]]}, ids as they arrived', async () => {
    await boot();
    const a = await open();
    await identify(a, '1234', '0');
    await createVc(a, '"1234"', `"${GUILD}"`, `"${CHAN}"`);
    await closeAndSettle(a);
    server().clock.advance(VC_TIMEOUT - 1);
    const b = await open();
    b.send('{"op":"IDENTIFY","d":{"user_id":1234,"shard_id":0}}');
    expect(exact(await b.nextRaw())).toEqual({ op: 'IDENTIFIED', d: {} });
    const raw = await b.nextRaw();
    expect(exact(raw)).toEqual({ op: 'RESUMED', d: { voice_clients: [[GUILD, CHAN]] } });
    // The voice client still works on the new socket.
    b.send({ op: 'getState', d: { guild_id: GUILD } });
    expect(exact(await b.nextRaw()).d).toMatchObject({ guild_id: GUILD, channel_id: CHAN, state: 0 });
  });

  it('resumes with numeric ids as exact JSON numbers, every voice client listed', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A);
    await createVc(a, BOT_A, GUILD, CHAN);
    await createVc(a, BOT_A, GUILD2, CHAN2);
    await closeAndSettle(a);
    const b = await open();
    await identify(b, BOT_A);
    const raw = await b.nextRaw();
    const f = exact(raw);
    expect(f.op).toBe('RESUMED');
    expect(Array.isArray(f.d.voice_clients)).toBe(true);
    expect(f.d.voice_clients).toHaveLength(2);
    expect(f.d.voice_clients).toEqual(
      expect.arrayContaining([
        [big(GUILD), big(CHAN)],
        [big(GUILD2), big(CHAN2)],
      ]),
    );
    expect(raw).toContain(`[${GUILD},${CHAN}]`);
  });

  it('a resumed session keeps working, and is not released on the old schedule', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A);
    await createVc(a, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`);
    await closeAndSettle(a);
    server().clock.advance(VC_TIMEOUT / 2);
    const b = await open();
    await identify(b, BOT_A);
    expect(exact(await b.nextRaw()).op).toBe('RESUMED');
    await liveFor(VC_TIMEOUT, b);
    b.send({ op: 'getState', d: { guild_id: GUILD } });
    expect(exact(await b.nextRaw()).op).toBe('getState');
    b.send(vsu(`"${BOT_A}"`, `"${GUILD}"`, 'null'));
    expect(exact(await b.nextRaw())).toEqual({ op: 'VC_DESTROYED', d: { guild_id: GUILD } });
  });

  it('releases the session and its voice clients once vcTimeout passes', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A);
    await createVc(a, BOT_A, GUILD, CHAN);
    await closeAndSettle(a);
    server().clock.advance(VC_TIMEOUT + 1);
    for (const [k, v] of Object.entries(summary())) {
      if (typeof v === 'number') expect({ [k]: v }).toEqual({ [k]: 0 });
    }
    const b = await open();
    await identify(b, BOT_A);
    await expectNoResume(b);
    b.send(frame('getState', `{"guild_id":${GUILD}}`));
    expect(Object.keys(traceback(exact(await b.nextRaw())))).toEqual(['VOICE_CLIENT_NOT_FOUND']);
  });

  it('a session with no voice clients left resumes with an empty list (documented choice)', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A);
    await closeAndSettle(a);
    const b = await open();
    await identify(b, BOT_A);
    expect(exact(await b.nextRaw())).toEqual({ op: 'RESUMED', d: { voice_clients: [] } });
  });

  it('a newer socket with the same key takes over; the older one is closed with 4005', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A, '0');
    await createVc(a, `"${BOT_A}"`, `"${GUILD}"`, `"${CHAN}"`);
    const b = await open();
    b.send(frame('IDENTIFY', `{"user_id":${BOT_A},"shard_id":0}`));
    expect((await a.waitClose()).code).toBe(4005);
    expect(exact(await b.nextRaw())).toEqual({ op: 'IDENTIFIED', d: {} });
    // The taken-over session keeps its voice clients; the new socket owns them.
    const before = (await roundTrip(b)).map(exact);
    for (const f of before) {
      expect(f.op).toBe('RESUMED');
      expect(f.d.voice_clients).toEqual([[GUILD, CHAN]]);
    }
    // The old socket's close does not detach or expire the live session.
    await liveFor(VC_TIMEOUT + 5000, b);
    b.send({ op: 'getState', d: { guild_id: GUILD } });
    expect(exact(await b.nextRaw()).op).toBe('getState');
    b.send(vsu(`"${BOT_A}"`, `"${GUILD}"`, `"${CHAN2}"`));
    expect(exact(await b.nextRaw())).toEqual({ op: 'VC_CHANNEL_EDITED', d: { guild_id: GUILD, channel_id: CHAN2 } });
  });

  it('each drop starts a new window: resumed, dropped again, resumable past the first window', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A);
    await createVc(a, BOT_A, GUILD, CHAN);
    await closeAndSettle(a);
    server().clock.advance(200_000);
    const b = await open();
    await identify(b, BOT_A);
    expect(exact(await b.nextRaw()).op).toBe('RESUMED');
    await closeAndSettle(b);
    server().clock.advance(200_000);
    const c = await open();
    await identify(c, BOT_A);
    expect(exact(await c.nextRaw())).toEqual({ op: 'RESUMED', d: { voice_clients: [[big(GUILD), big(CHAN)]] } });
  });

  it('a user_id sent as a number and as a string is the same session key', async () => {
    await boot();
    const a = await open();
    await identify(a, BOT_A, '0');
    await createVc(a, BOT_A, GUILD, CHAN);
    await closeAndSettle(a);
    const b = await open();
    await identify(b, `"${BOT_A}"`, '0');
    expect(exact(await b.nextRaw())).toEqual({ op: 'RESUMED', d: { voice_clients: [[big(GUILD), big(CHAN)]] } });
  });

  it('the timers of a detached session are released at expiry (no leak across many sessions)', async () => {
    await boot();
    for (let i = 0; i < 50; i++) {
      const p = await open();
      await identify(p, String(900000000000000000n + BigInt(i)), String(i % 3));
      await createVc(p, String(900000000000000000n + BigInt(i)), GUILD, CHAN);
      await closeAndSettle(p);
    }
    server().clock.advance(VC_TIMEOUT + 1);
    for (const [k, v] of Object.entries(summary())) {
      if (typeof v === 'number') expect({ [k]: v }).toEqual({ [k]: 0 });
    }
    h.expectNoWakesLeft();
  });

  it('a socket closed before IDENTIFY leaves nothing behind', async () => {
    await boot();
    const a = await open();
    await closeAndSettle(a);
    for (const [k, v] of Object.entries(summary())) {
      if (typeof v === 'number') expect({ [k]: v }).toEqual({ [k]: 0 });
    }
  });
});

describe('discodo conformance: resume (compat discodo-3)', () => {
  it('sends RESUMED {voice_clients: {"<guild_id>": {id, channel}}} with string guild keys', async () => {
    await boot({ compat: 'discodo-3' });
    const a = await open();
    await identify(a, '1234', '0');
    const { id } = await createVc(a, '"1234"', `"${GUILD}"`, `"${CHAN}"`);
    await closeAndSettle(a);
    server().clock.advance(VC_TIMEOUT - 1);
    const b = await open();
    b.send('{"op":"IDENTIFY","d":{"user_id":1234,"shard_id":0}}');
    expect(exact(await b.nextRaw())).toEqual({ op: 'IDENTIFIED', d: {} });
    const f = exact(await b.nextRaw());
    expect(f).toEqual({ op: 'RESUMED', d: { voice_clients: { [GUILD]: { id, channel: CHAN } } } });
  });

  it('keys numeric guild ids by their exact digits and keeps channel in its arrived form', async () => {
    await boot({ compat: 'discodo-3' });
    const a = await open();
    await identify(a, BOT_A);
    const v1 = await createVc(a, BOT_A, GUILD, CHAN);
    const v2 = await createVc(a, BOT_A, GUILD2, CHAN2);
    await closeAndSettle(a);
    const b = await open();
    await identify(b, BOT_A);
    const raw = await b.nextRaw();
    expect(raw).toContain(`"${GUILD}":`);
    expect(raw).toContain(`"${GUILD2}":`);
    const f = exact(raw);
    expect(f).toEqual({
      op: 'RESUMED',
      d: {
        voice_clients: {
          [GUILD]: { id: v1.id, channel: big(CHAN) },
          [GUILD2]: { id: v2.id, channel: big(CHAN2) },
        },
      },
    });
  });

  it('never sends the list form to a discodo-3 client (fresh, empty, or released session)', async () => {
    await boot({ compat: 'discodo-3' });
    const check = async (p: RawPeer): Promise<void> => {
      for (const raw of await roundTrip(p)) {
        const f = exact(raw);
        expect(f.op).toBe('RESUMED');
        expect(Array.isArray(f.d.voice_clients)).toBe(false);
        expect(f.d.voice_clients).toEqual({});
      }
    };
    const a = await open();
    await identify(a, BOT_A);
    await check(a);
    await closeAndSettle(a);
    const b = await open();
    await identify(b, BOT_A);
    await check(b);
    await createVc(b, BOT_A, GUILD, CHAN);
    await closeAndSettle(b);
    server().clock.advance(VC_TIMEOUT + 1);
    const c = await open();
    await identify(c, BOT_A);
    await check(c);
  });

  it('runs the trace resume: IDENTIFY on open, then HELLO, IDENTIFIED, RESUMED in order', async () => {
    await boot({ compat: 'discodo-3' });
    const a = await open();
    await identify(a, '1234', '0');
    const { id } = await createVc(a, '"1234"', `"${GUILD}"`, `"${CHAN}"`);
    await closeAndSettle(a);
    const p = new RawPeer(h.url, { headers: { authorization: PW } });
    h.track(p);
    p.ws.on('open', () => p.send('{"op":"IDENTIFY","d":{"user_id":1234,"shard_id":0}}'));
    expect(exact(await p.nextRaw()).op).toBe('HELLO');
    expect(exact(await p.nextRaw())).toEqual({ op: 'IDENTIFIED', d: {} });
    expect(exact(await p.nextRaw())).toEqual({ op: 'RESUMED', d: { voice_clients: { [GUILD]: { id, channel: CHAN } } } });
    // What the client does next: getState and getQueue for the resumed guild.
    p.send({ op: 'getState', d: { guild_id: GUILD } });
    p.send({ op: 'getQueue', d: { guild_id: GUILD } });
    expect(exact(await p.nextRaw()).d).toMatchObject({ id, guild_id: GUILD, state: 0, options: { volume: 1 } });
    expect(exact(await p.nextRaw()).d).toMatchObject({ guild_id: GUILD, entries: [] });
  });

  it('runs the trace: HELLO, IDENTIFY on open, IDENTIFIED, GET_STATUS, HEARTBEATs every 5 s', async () => {
    await boot({ compat: 'discodo-3' });
    const p = new RawPeer(h.url, { headers: { authorization: PW } });
    h.track(p);
    p.ws.on('open', () => p.send('{"op":"IDENTIFY","d":{"user_id":1234,"shard_id":null}}'));
    const hello = exact(await p.nextRaw());
    expect(hello.op).toBe('HELLO');
    expect(hello.d.heartbeat_interval).toBe(15);
    expect(exact(await p.nextRaw())).toEqual({ op: 'IDENTIFIED', d: {} });
    p.send({ op: 'GET_STATUS', d: null });
    expect(exact(await p.nextRaw()).op).toBe('STATUS');
    p.send({ op: 'HEARTBEAT', d: 1795306231786 });
    expect(await p.nextRaw()).toMatch(/^\{"op":"HEARTBEAT_ACK","d":1795306231786\}$|"d":1795306231786/);
    await liveFor(60_000, p);
    p.close();
    expect((await p.waitClose()).code).toBe(1000);
  });
});
