import { afterEach, describe, expect, it } from 'vitest';
import { RawPeer, until, type TestServer } from '../support/server.js';
import type { Overrides } from '../support/harness/harness.js';
import {
  ADMIN,
  DiscodoHarness,
  AUTH,
  PASSWORD,
  connectBot,
  createVoiceClient,
  discodo,
  roundTrip,
  voiceServer,
  voiceState,
} from '../support/harness/discodo.js';

const VC_TIMEOUT = 300_000;
const BOT = '870000000000000123';

const h = new DiscodoHarness();
const peers = h.peers;
const setup = (discodoOverrides: Overrides = {}): Promise<TestServer> => h.start(discodoOverrides);
const server = (): TestServer => h.srv;
const open = (headers: Record<string, string> = AUTH): Promise<RawPeer> => h.open({ headers });
const opened = (): Promise<RawPeer> => h.hello();

async function bot(userId: string | number = BOT, shardId: string | number | null = null): Promise<RawPeer> {
  const sid = shardId === null ? 'null' : String(shardId);
  const uid = String(userId);
  const { peer } = await connectBot(h.url, `{"op":"IDENTIFY","d":{"user_id":${uid},"shard_id":${sid}}}`, peers);
  return peer;
}

async function expectClose(peer: RawPeer, code: number): Promise<void> {
  expect((await peer.waitClose()).code).toBe(code);
}

afterEach(() =>
  h.teardown((s) => {
    // Detached sessions are kept for vcTimeout; after it nothing is left.
    s.clock.advance(VC_TIMEOUT);
    expect(discodo(s).summary()).toEqual({
      connections: 0,
      sessions: 0,
      liveSessions: 0,
      detachedSessions: 0,
      voiceClients: 0,
      pendingVoice: 0,
    });
    expect(s.muster.scheduler.size).toBe(h.baselineWakes);
  }),
);

describe('discodo: connection', () => {
  it('sends HELLO with heartbeat_interval in seconds as a JSON number, and a version', async () => {
    await setup();
    const p = await open();
    expect(await p.nextRaw()).toBe('{"op":"HELLO","d":{"heartbeat_interval":15,"version":"muster-0.1.0"}}');
  });

  it('converts a configured heartbeatInterval in ms to seconds (2500 → 2.5)', async () => {
    await setup({ heartbeatInterval: 2500 });
    const p = await open();
    expect(await p.next()).toEqual({ op: 'HELLO', d: { heartbeat_interval: 2.5, version: expect.any(String) } });
  });

  it('sends FORBIDDEN "<why>" and closes with 4003 on a wrong password', async () => {
    await setup();
    const p = await open({ authorization: 'wrong' });
    expect(await p.nextRaw()).toBe('{"op":"FORBIDDEN","d":"Password mismatch."}');
    await expectClose(p, 4003);
  });

  it('sends FORBIDDEN and closes with 4003 when the Authorization header is missing', async () => {
    await setup();
    const p = await open({});
    expect(await p.next()).toEqual({ op: 'FORBIDDEN', d: expect.any(String) });
    await expectClose(p, 4003);
  });

  it('does not take the password as "Bearer <password>" (it must equal the password)', async () => {
    await setup();
    const p = await open({ authorization: `Bearer ${PASSWORD}` });
    expect(await p.next()).toMatchObject({ op: 'FORBIDDEN' });
    await expectClose(p, 4003);
  });

  it('ignores an IDENTIFY that a refused client sent right after opening: no session', async () => {
    await setup();
    const p = new RawPeer(h.url, { headers: { authorization: 'nope' } });
    peers.push(p);
    p.ws.once('open', () => p.send({ op: 'IDENTIFY', d: { user_id: 1234, shard_id: null } }));
    expect(await p.next()).toMatchObject({ op: 'FORBIDDEN' });
    await expectClose(p, 4003);
    expect(p.frames).toEqual([]);
    expect(discodo(server()).summary().sessions).toBe(0);
  });

  it('answers HEARTBEAT with HEARTBEAT_ACK echoing d exactly, before and after IDENTIFY', async () => {
    await setup();
    const p = await opened();
    const ds = ['0', '1795306231786', 'null', '870000000000000123', '18446744073709551615', '1.50', '"x\\u00e9"', '{"a":[1,{"b":null}],"n":870000000000000123}', '[]', 'true'];
    for (const d of ds) {
      p.send(`{"op":"HEARTBEAT","d":${d}}`);
      expect(await p.nextRaw()).toBe(`{"op":"HEARTBEAT_ACK","d":${d}}`);
    }
    p.send({ op: 'IDENTIFY', d: { user_id: 1, shard_id: null } });
    expect(await p.next()).toEqual({ op: 'IDENTIFIED', d: {} });
    p.send('{"op":"HEARTBEAT","d":870000000000000123}');
    expect(await p.nextRaw()).toBe('{"op":"HEARTBEAT_ACK","d":870000000000000123}');
  });

  it('echoes a HEARTBEAT without d as null, and keeps d exact whatever the spacing', async () => {
    await setup();
    const p = await opened();
    p.send('{"op":"HEARTBEAT"}');
    expect(await p.nextRaw()).toBe('{"op":"HEARTBEAT_ACK","d":null}');
    p.send('{ "d" : 870000000000000123 , "op" : "HEARTBEAT" }');
    expect(await p.nextRaw()).toBe('{"op":"HEARTBEAT_ACK","d":870000000000000123}');
  });

  it('closes a connection that sends nothing for handshakeTimeout with 4000', async () => {
    const s = await setup();
    const p = await opened();
    s.clock.advance(59_999);
    expect(await p.quiet()).toBe(true);
    s.clock.advance(1);
    await expectClose(p, 4000);
  });

  it('honours a configured handshakeTimeout', async () => {
    const s = await setup({ handshakeTimeout: 1000 });
    const p = await opened();
    s.clock.advance(999);
    expect(await p.quiet()).toBe(true);
    s.clock.advance(1);
    await expectClose(p, 4000);
  });

  it('counts silence from the last frame: heartbeats keep a connection open, silence after them closes it', async () => {
    const s = await setup();
    const p = await bot();
    for (let i = 0; i < 30; i++) {
      s.clock.advance(5_000);
      await roundTrip(p);
    }
    s.clock.advance(59_999);
    expect(await p.quiet()).toBe(true);
    s.clock.advance(1);
    await expectClose(p, 4000);
  });

  it('kicked by an operator: closed with 1008, the session stays resumable', async () => {
    const s = await setup();
    const p = await bot();
    const conn = s.muster.transport.connections()[0];
    const res = await s.muster.http.inject({ method: 'DELETE', url: `/api/v1/connections/${conn?.id ?? ''}`, headers: ADMIN });
    expect(res.statusCode).toBe(200);
    await expectClose(p, 1008);
    await until(() => discodo(s).summary().detachedSessions === 1);
  });
});

describe('discodo: identify and errors', () => {
  it('answers IDENTIFY with IDENTIFIED {}', async () => {
    await setup();
    const p = await opened();
    p.send({ op: 'IDENTIFY', d: { user_id: 1234, shard_id: null } });
    expect(await p.nextRaw()).toBe('{"op":"IDENTIFIED","d":{}}');
  });

  it('answers a second IDENTIFY with the ALREADY_IDENTIFIED traceback and stays open', async () => {
    await setup();
    const p = await bot();
    p.send({ op: 'IDENTIFY', d: { user_id: 99, shard_id: null } });
    expect(await p.next()).toEqual({ op: 'IDENTIFY', d: { traceback: { ALREADY_IDENTIFIED: expect.any(String) } } });
    await roundTrip(p);
    expect(discodo(server()).summary().sessions).toBe(1);
  });

  for (const op of ['GET_STATUS', 'DISCORD_EVENT', 'VC_DESTROY', 'getState', 'getQueue', 'putSource', 'SOMETHING_ELSE']) {
    it(`answers ${op} before IDENTIFY with <op> {traceback: {NOT_IDENTIFIED: "Identify first."}}`, async () => {
      await setup();
      const p = await opened();
      p.send({ op, d: { guild_id: 1 } });
      expect(await p.nextRaw()).toBe(`{"op":"${op}","d":{"traceback":{"NOT_IDENTIFIED":"Identify first."}}}`);
      await roundTrip(p);
      expect(p.isClosed).toBe(false);
    });
  }

  it('answers an unknown op with the UNKNOWN_OP traceback under the same op', async () => {
    await setup();
    const p = await bot();
    p.send({ op: 'FLY_TO_THE_MOON', d: null });
    expect(await p.next()).toEqual({ op: 'FLY_TO_THE_MOON', d: { traceback: { UNKNOWN_OP: expect.any(String) } } });
    await roundTrip(p);
  });

  for (const op of ['putSource', 'loadSource', 'getSource', 'skip', 'seek', 'setVolume', 'pause', 'resume', 'shuffle', 'setFilter']) {
    it(`answers the player op ${op} with the NOT_SUPPORTED traceback, echoing guild_id`, async () => {
      await setup();
      const p = await bot();
      p.send(`{"op":"${op}","d":{"guild_id":111111111111111111,"offset":1}}`);
      const raw = await p.nextRaw();
      expect(JSON.parse(raw)).toEqual({ op, d: { traceback: { NOT_SUPPORTED: expect.any(String) }, guild_id: expect.anything() } });
      expect(raw).toContain('"guild_id":111111111111111111');
    });
  }

  const malformed: Array<[string, string]> = [
    ['malformed JSON', '{"op":"HEARTBEAT",'],
    ['not JSON at all', 'hello'],
    ['a JSON array', '["HEARTBEAT",1]'],
    ['a JSON string', '"HEARTBEAT"'],
    ['JSON null', 'null'],
    ['a missing op', '{"d":1}'],
    ['a numeric op', '{"op":1,"d":null}'],
    ['an empty op', '{"op":"","d":null}'],
  ];
  for (const [name, frame] of malformed) {
    it(`closes ${name} with 4002 (before and after IDENTIFY)`, async () => {
      await setup();
      const before = await opened();
      before.send(frame);
      await expectClose(before, 4002);
      const after = await bot();
      after.send(frame);
      await expectClose(after, 4002);
    });
  }

  it('closes a binary frame with 4002', async () => {
    await setup();
    const p = await bot();
    p.ws.send(Buffer.from('{"op":"HEARTBEAT","d":1}'), { binary: true });
    await expectClose(p, 4002);
  });

  it('closes non-UTF-8 text with 1007 and no frame', async () => {
    await setup();
    const p = await opened();
    p.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    await expectClose(p, 1007);
    expect(p.frames).toEqual([]);
  });

  const badIdentify: Array<[string, unknown]> = [
    ['without user_id', { shard_id: null }],
    ['with d null', null],
    ['with d a string', 'my bot'],
    ['with d an array', [1234]],
    ['with a negative user_id', { user_id: -5 }],
    ['with a fractional user_id', { user_id: 1.5 }],
    ['with an object user_id', { user_id: { id: 1 } }],
    ['with a bad shard_id', { user_id: 1234, shard_id: 'zero' }],
    ['with a user_id string that is not an integer', { user_id: 'my-bot' }],
    ['with a user_id string shaped like a session key', { user_id: '1234-0' }],
  ];
  for (const [name, d] of badIdentify) {
    it(`answers IDENTIFY ${name} with a BAD_REQUEST traceback and stays unidentified`, async () => {
      await setup();
      const p = await opened();
      p.send({ op: 'IDENTIFY', d });
      expect(await p.next()).toEqual({ op: 'IDENTIFY', d: { traceback: { BAD_REQUEST: expect.any(String) } } });
      p.send({ op: 'GET_STATUS', d: null });
      expect(await p.next()).toEqual({ op: 'GET_STATUS', d: { traceback: { NOT_IDENTIFIED: 'Identify first.' } } });
      p.send({ op: 'IDENTIFY', d: { user_id: 1234 } });
      expect(await p.next()).toEqual({ op: 'IDENTIFIED', d: {} });
    });
  }

  for (const [op, d] of [
    ['DISCORD_EVENT', 'VOICE_STATE_UPDATE'],
    ['DISCORD_EVENT', { d: {} }],
    ['VC_DESTROY', 5],
    ['VC_DESTROY', {}],
    ['getState', null],
    ['getQueue', { guild_id: true }],
  ] as Array<[string, unknown]>) {
    it(`answers ${op} with a malformed d (${JSON.stringify(d)}) with a BAD_REQUEST traceback`, async () => {
      await setup();
      const p = await bot();
      p.send({ op, d });
      expect(await p.next()).toEqual({ op, d: { traceback: { BAD_REQUEST: expect.any(String) } } });
      await roundTrip(p);
    });
  }

  it('answers GET_STATUS with STATUS: node load, memory and counts', async () => {
    await setup();
    const p = await bot();
    await createVoiceClient(p, '111', '222', BOT);
    p.send({ op: 'GET_STATUS', d: null });
    const f = await p.next<{ op: string; d: Record<string, unknown> }>();
    expect(f.op).toBe('STATUS');
    expect(f.d).toMatchObject({
      UsedMemory: expect.any(Number),
      TotalMemory: expect.any(Number),
      ProcessLoad: expect.any(Number),
      TotalLoad: expect.any(Number),
      Cores: expect.any(Number),
      load: { avg1: expect.any(Number), avg5: expect.any(Number), avg15: expect.any(Number) },
      memory: { rss: expect.any(Number), heap_used: expect.any(Number) },
      connections: 1,
      sessions: 1,
      live_sessions: 1,
      detached_sessions: 0,
      voice_clients: 1,
    });
  });
});

describe('discodo: snowflakes', () => {
  it('gives bots 870000000000000123, …124 and …100 three sessions (no rounding)', async () => {
    const s = await setup();
    await bot('870000000000000123');
    await bot('870000000000000124');
    await bot('870000000000000100');
    const res = await s.muster.http.inject({ url: '/api/v1/discodo/sessions', headers: ADMIN });
    expect((res.json() as Array<{ key: string }>).map((x) => x.key)).toEqual(['870000000000000100', '870000000000000123', '870000000000000124']);
  });

  it('does not let a second bot with a rounding-equal id take the first one over', async () => {
    await setup();
    const a = await bot('870000000000000123');
    const b = await bot('870000000000000124');
    await roundTrip(a);
    await roundTrip(b);
    expect(a.isClosed).toBe(false);
    expect(discodo(server()).summary().liveSessions).toBe(2);
  });

  it('writes guild and channel ids back as numbers with the same digits when they came as numbers', async () => {
    await setup();
    const p = await bot();
    const created = await createVoiceClient(p, '870000000000000999', '870000000000000555', BOT);
    expect(created).toMatch(/^\{"op":"VC_CREATED","d":\{"guild_id":870000000000000999,"id":"[0-9a-f-]{36}"\}\}$/);
    p.send(voiceState('870000000000000999', '870000000000000556', BOT));
    expect(await p.nextRaw()).toBe('{"op":"VC_CHANNEL_EDITED","d":{"guild_id":870000000000000999,"channel_id":870000000000000556}}');
  });

  it('writes ids back as strings when they came as strings', async () => {
    await setup();
    const p = await bot(`"${BOT}"`);
    const created = await createVoiceClient(p, '"870000000000000999"', '"870000000000000555"', `"${BOT}"`);
    expect(created).toContain('"guild_id":"870000000000000999"');
    p.send(voiceState('"870000000000000999"', null, `"${BOT}"`));
    expect(await p.nextRaw()).toBe('{"op":"VC_DESTROYED","d":{"guild_id":"870000000000000999"}}');
  });

  it('matches a user id sent as a number with the same id sent as a string', async () => {
    await setup();
    const p = await bot(BOT);
    const created = await createVoiceClient(p, '"111"', '"222"', `"${BOT}"`);
    expect(created).toContain('"guild_id":"111"');
  });
});

describe('discodo: voice clients', () => {
  it('creates a voice client once VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE have both arrived', async () => {
    await setup();
    const p = await bot();
    p.send(voiceState('111', '222', BOT));
    await roundTrip(p);
    expect(p.frames).toEqual([]);
    p.send(voiceServer('111'));
    expect(await p.next()).toEqual({ op: 'VC_CREATED', d: { guild_id: 111, id: expect.any(String) } });
    expect(discodo(server()).summary().voiceClients).toBe(1);
  });

  it('creates it whichever event comes first, and only once (a fresh pair announces the same client again)', async () => {
    await setup();
    const p = await bot();
    p.send(voiceServer('111'));
    await roundTrip(p);
    expect(p.frames).toEqual([]);
    p.send(voiceState('111', '222', BOT));
    const created = await p.nextRaw();
    expect(JSON.parse(created)).toMatchObject({ op: 'VC_CREATED', d: { guild_id: 111 } });
    p.send(voiceServer('111', 'other.discord.media:443'));
    await roundTrip(p);
    expect(p.frames).toEqual([]);
    p.send(voiceState('111', '222', BOT));
    expect(await p.nextRaw()).toBe(created);
    await roundTrip(p);
    expect(p.frames).toEqual([]);
    expect(discodo(server()).summary().voiceClients).toBe(1);
  });

  it('keeps one voice client per guild', async () => {
    await setup();
    const p = await bot();
    await createVoiceClient(p, '1', '10', BOT);
    await createVoiceClient(p, '2', '20', BOT);
    await createVoiceClient(p, '3', '30', BOT);
    expect(discodo(server()).summary().voiceClients).toBe(3);
  });

  it('sends VC_CHANNEL_EDITED on a channel change, and nothing when the channel is the same', async () => {
    await setup();
    const p = await bot();
    await createVoiceClient(p, '111', '222', BOT);
    p.send(voiceState('111', '222', BOT, 'sess-2'));
    await roundTrip(p);
    expect(p.frames).toEqual([]);
    p.send(voiceState('111', '333', BOT));
    expect(await p.next()).toEqual({ op: 'VC_CHANNEL_EDITED', d: { guild_id: 111, channel_id: 333 } });
  });

  it('destroys the voice client on a null channel with VC_DESTROYED', async () => {
    await setup();
    const p = await bot();
    await createVoiceClient(p, '111', '222', BOT);
    p.send(voiceState('111', null, BOT));
    expect(await p.nextRaw()).toBe('{"op":"VC_DESTROYED","d":{"guild_id":111}}');
    expect(discodo(server()).summary().voiceClients).toBe(0);
  });

  it('ignores events for guilds that have no voice client (null channel, no VC)', async () => {
    await setup();
    const p = await bot();
    p.send(voiceState('999', null, BOT));
    p.send({ op: 'VC_DESTROY', d: { guild_id: 999 } });
    expect(await p.next()).toEqual({ op: 'VC_DESTROY', d: { traceback: { VOICE_CLIENT_NOT_FOUND: expect.any(String) }, guild_id: 999 } });
    await roundTrip(p);
    expect(p.frames).toEqual([]);
  });

  it('drops a half voice client when the bot leaves before the server update', async () => {
    await setup();
    const p = await bot();
    p.send(voiceState('111', '222', BOT));
    p.send(voiceState('111', null, BOT));
    p.send(voiceServer('111'));
    await roundTrip(p);
    expect(p.frames).toEqual([]);
    expect(discodo(server()).summary()).toMatchObject({ voiceClients: 0, pendingVoice: 1 });
  });

  it('ignores voice state updates for other users', async () => {
    await setup();
    const p = await bot();
    p.send(voiceState('111', '222', '870000000000000124'));
    p.send(voiceServer('111'));
    await roundTrip(p);
    expect(p.frames).toEqual([]);
    expect(discodo(server()).summary().voiceClients).toBe(0);
    // The server half waits for the bot's own state.
    p.send(voiceState('111', '222', BOT));
    expect(await p.next()).toMatchObject({ op: 'VC_CREATED' });
  });

  it('ignores other gateway events and voice events without a guild', async () => {
    await setup();
    const p = await bot();
    p.send({ op: 'DISCORD_EVENT', d: { t: 'READY', d: { user: { id: '1' } } } });
    p.send({ op: 'DISCORD_EVENT', d: { t: 'MESSAGE_CREATE', d: { content: 'hi' } } });
    p.send({ op: 'DISCORD_EVENT', d: { t: 'VOICE_STATE_UPDATE', d: { channel_id: '1', user_id: BOT } } });
    p.send({ op: 'DISCORD_EVENT', d: { t: 'VOICE_SERVER_UPDATE', d: null } });
    p.send({ op: 'DISCORD_EVENT', d: { t: 'VOICE_SERVER_UPDATE' } });
    await roundTrip(p);
    expect(p.frames).toEqual([]);
    expect(discodo(server()).summary()).toMatchObject({ voiceClients: 0, pendingVoice: 0 });
  });

  it('destroys on VC_DESTROY with VC_DESTROYED, echoing guild_id as asked', async () => {
    await setup();
    const p = await bot();
    await createVoiceClient(p, '111', '222', BOT);
    p.send({ op: 'VC_DESTROY', d: { guild_id: '111' } });
    expect(await p.nextRaw()).toBe('{"op":"VC_DESTROYED","d":{"guild_id":"111"}}');
    expect(discodo(server()).summary().voiceClients).toBe(0);
    p.send({ op: 'getState', d: { guild_id: '111' } });
    expect(await p.next()).toMatchObject({ op: 'getState', d: { traceback: { VOICE_CLIENT_NOT_FOUND: expect.any(String) } } });
  });

  it('answers getState and getQueue as an idle player, exactly as the contract shows', async () => {
    await setup();
    const p = await bot();
    const created = JSON.parse(await createVoiceClient(p, '"111"', '"222"', BOT)) as { d: { id: string } };
    p.send({ op: 'getState', d: { guild_id: '111' } });
    expect(await p.nextRaw()).toBe(
      `{"op":"getState","d":{"id":"${created.d.id}","guild_id":"111","channel_id":"222","state":0,"current":null,"context":{},` +
        '"options":{"autoplay":true,"volume":1.0,"crossfade":10.0,"filter":{}}}}',
    );
    p.send({ op: 'getQueue', d: { guild_id: '111' } });
    expect(await p.nextRaw()).toBe('{"op":"getQueue","d":{"guild_id":"111","entries":[]}}');
  });

  it('answers getState and getQueue for a guild with no voice client with VOICE_CLIENT_NOT_FOUND', async () => {
    await setup();
    const p = await bot();
    for (const op of ['getState', 'getQueue']) {
      p.send(`{"op":"${op}","d":{"guild_id":870000000000000999}}`);
      const raw = await p.nextRaw();
      expect(JSON.parse(raw)).toEqual({ op, d: { traceback: { VOICE_CLIENT_NOT_FOUND: expect.any(String) }, guild_id: expect.anything() } });
      expect(raw).toContain('"guild_id":870000000000000999');
    }
  });

  it("keeps one bot's voice clients away from another bot", async () => {
    await setup();
    const a = await bot('1');
    const b = await bot('2');
    await createVoiceClient(a, '111', '222', '1');
    b.send({ op: 'getState', d: { guild_id: 111 } });
    expect(await b.next()).toMatchObject({ d: { traceback: { VOICE_CLIENT_NOT_FOUND: expect.any(String) } } });
  });
});

describe('discodo: resume (seed form)', () => {
  it('keeps voice clients for vcTimeout after the socket closes, then IDENTIFY gets IDENTIFIED and RESUMED [[guild, channel]]', async () => {
    const s = await setup();
    const p = await bot(BOT, 0);
    await createVoiceClient(p, '111111111111111111', '222222222222222222', BOT);
    await createVoiceClient(p, '"333"', '"444"', BOT);
    p.close();
    await p.waitClose();
    await until(() => discodo(s).summary().detachedSessions === 1);
    expect(discodo(s).summary().voiceClients).toBe(2);
    s.clock.advance(VC_TIMEOUT - 1);
    const q = await bot(BOT, 0);
    expect(await q.nextRaw()).toBe('{"op":"RESUMED","d":{"voice_clients":[[111111111111111111,222222222222222222],["333","444"]]}}');
    q.send({ op: 'getState', d: { guild_id: '333' } });
    expect(await q.next()).toMatchObject({ op: 'getState', d: { guild_id: '333', channel_id: '444', state: 0 } });
  });

  it('a bot that lost its handle after a resume gets VC_CREATED again (same id) when it joins the channel again', async () => {
    await setup();
    const p = await bot(BOT, 0);
    const first = await createVoiceClient(p, '111', '222', BOT);
    p.close();
    await p.waitClose();
    const q = await bot(BOT, 0);
    expect(await q.next()).toMatchObject({ op: 'RESUMED' });
    // Discodo 3 on the seed form cannot read RESUMED; it joins again: a fresh state + server pair.
    q.send(voiceState('111', '222', BOT, 'sess-2'));
    q.send(voiceServer('111', 'eu-west2.discord.media:443'));
    expect(await q.nextRaw()).toBe(first);
    q.send({ op: 'VC_DESTROY', d: { guild_id: 111 } });
    expect(await q.next()).toEqual({ op: 'VC_DESTROYED', d: { guild_id: 111 } });
  });

  it('sends RESUMED with an empty list when the session had no voice clients', async () => {
    await setup();
    const p = await bot('1234');
    p.close();
    await p.waitClose();
    const q = await bot('1234');
    expect(await q.nextRaw()).toBe('{"op":"RESUMED","d":{"voice_clients":[]}}');
  });

  it('sends no RESUMED to a first IDENTIFY', async () => {
    await setup();
    const p = await bot();
    await roundTrip(p);
    expect(p.frames).toEqual([]);
  });

  it('releases the session and every voice client once vcTimeout has passed', async () => {
    const s = await setup();
    const p = await bot();
    await createVoiceClient(p, '111', '222', BOT);
    p.close();
    await until(() => discodo(s).summary().detachedSessions === 1);
    s.clock.advance(VC_TIMEOUT);
    expect(discodo(s).summary()).toMatchObject({ sessions: 0, voiceClients: 0 });
    const q = await bot();
    await roundTrip(q);
    expect(q.frames).toEqual([]);
    q.send({ op: 'getState', d: { guild_id: 111 } });
    expect(await q.next()).toMatchObject({ d: { traceback: { VOICE_CLIENT_NOT_FOUND: expect.any(String) } } });
  });

  it('keys sessions by user_id-shard_id: another shard does not resume, the same shard does', async () => {
    const s = await setup();
    const p = await bot('1234', 0);
    await createVoiceClient(p, '111', '222', '1234');
    p.close();
    await until(() => discodo(s).summary().detachedSessions === 1);
    const other = await bot('1234', 1);
    const noShard = await bot('1234');
    await roundTrip(other);
    await roundTrip(noShard);
    expect(other.frames).toEqual([]);
    expect(noShard.frames).toEqual([]);
    const same = await bot('1234', '"0"');
    expect(await same.next()).toEqual({ op: 'RESUMED', d: { voice_clients: [[111, 222]] } });
    const res = await s.muster.http.inject({ url: '/api/v1/discodo/sessions', headers: ADMIN });
    expect((res.json() as Array<{ key: string }>).map((x) => x.key)).toEqual(['1234', '1234-0', '1234-1']);
  });

  it('does not let user_id "1234-0" take over the session of user 1234, shard 0', async () => {
    await setup();
    const p = await bot('1234', 0);
    const q = await opened();
    q.send({ op: 'IDENTIFY', d: { user_id: '1234-0', shard_id: null } });
    expect(await q.next()).toEqual({ op: 'IDENTIFY', d: { traceback: { BAD_REQUEST: expect.any(String) } } });
    await roundTrip(p);
    expect(p.isClosed).toBe(false);
    expect(p.frames).toEqual([]);
  });

  it('accepts IDENTIFY without shard_id as shard_id null', async () => {
    await setup();
    const p = await bot('1234');
    p.close();
    await p.waitClose();
    const { peer } = await connectBot(h.url, { user_id: 1234 }, peers);
    expect(await peer.next()).toEqual({ op: 'RESUMED', d: { voice_clients: [] } });
  });

  it('lets a newer socket with the same key take a live session over; the older is closed with 4005', async () => {
    const s = await setup();
    const old = await bot();
    await createVoiceClient(old, '111', '222', BOT);
    const fresh = await bot();
    expect(await fresh.next()).toEqual({ op: 'RESUMED', d: { voice_clients: [[111, 222]] } });
    await expectClose(old, 4005);
    await roundTrip(fresh);
    // The old socket's close does not detach the session the new one holds.
    expect(discodo(s).summary()).toMatchObject({ sessions: 1, liveSessions: 1, detachedSessions: 0, voiceClients: 1, connections: 1 });
    fresh.send(voiceState('111', null, BOT));
    expect(await fresh.next()).toEqual({ op: 'VC_DESTROYED', d: { guild_id: 111 } });
  });

  it('resumes after a takeover chain and after the window restarts on each close', async () => {
    const s = await setup();
    const a = await bot();
    await createVoiceClient(a, '111', '222', BOT);
    a.close();
    await until(() => discodo(s).summary().detachedSessions === 1);
    s.clock.advance(VC_TIMEOUT / 2);
    const b = await bot();
    expect(await b.next()).toMatchObject({ op: 'RESUMED' });
    b.close();
    await until(() => discodo(s).summary().detachedSessions === 1);
    s.clock.advance(VC_TIMEOUT - 1);
    const c = await bot();
    expect(await c.next()).toEqual({ op: 'RESUMED', d: { voice_clients: [[111, 222]] } });
  });
});

describe('discodo: resume (compat "discodo-3")', () => {
  it('sends RESUMED as {voice_clients: {"<guild_id>": {id, channel}}} with string keys', async () => {
    const s = await setup({ compat: 'discodo-3' });
    const p = await bot(BOT, 0);
    const c1 = JSON.parse(await createVoiceClient(p, '111111111111111111', '222222222222222222', BOT)) as { d: { id: string } };
    const c2 = JSON.parse(await createVoiceClient(p, '"333"', '"444"', BOT)) as { d: { id: string } };
    p.close();
    await until(() => discodo(s).summary().detachedSessions === 1);
    const q = await bot(BOT, 0);
    expect(await q.nextRaw()).toBe(
      `{"op":"RESUMED","d":{"voice_clients":{"111111111111111111":{"id":"${c1.d.id}","channel":222222222222222222},` +
        `"333":{"id":"${c2.d.id}","channel":"444"}}}}`,
    );
  });

  it('sends an empty dict when there are no voice clients', async () => {
    await setup({ compat: 'discodo-3' });
    const p = await bot('1234');
    p.close();
    await p.waitClose();
    const q = await bot('1234');
    expect(await q.nextRaw()).toBe('{"op":"RESUMED","d":{"voice_clients":{}}}');
  });
});

describe('discodo: admin API and metrics', () => {
  it('lists sessions: key, connected or detached, detached since, expiry and voice clients', async () => {
    const s = await setup();
    const a = await bot(BOT, 3);
    const created = JSON.parse(await createVoiceClient(a, '111111111111111111', '222222222222222222', BOT)) as { d: { id: string } };
    await bot('42');
    a.close();
    await until(() => discodo(s).summary().detachedSessions === 1);
    const detachedAt = s.clock.now();
    const res = await s.muster.http.inject({ url: '/api/v1/discodo/sessions', headers: ADMIN });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual([
      {
        key: '42',
        userId: '42',
        shardId: null,
        state: 'connected',
        connectionId: expect.any(String),
        remoteAddress: '127.0.0.1',
        detachedSince: null,
        expiresAt: null,
        voiceClients: [],
      },
      {
        key: `${BOT}-3`,
        userId: BOT,
        shardId: '3',
        state: 'detached',
        connectionId: null,
        remoteAddress: null,
        detachedSince: new Date(detachedAt).toISOString(),
        expiresAt: new Date(detachedAt + VC_TIMEOUT).toISOString(),
        voiceClients: [
          {
            guildId: '111111111111111111',
            id: created.d.id,
            channelId: '222222222222222222',
            endpoint: 'eu-west1.discord.media:443',
            createdAt: expect.any(String),
          },
        ],
      },
    ]);
    const one = await s.muster.http.inject({ url: `/api/v1/discodo/sessions/${BOT}-3`, headers: ADMIN });
    expect(one.json()).toMatchObject({ key: `${BOT}-3`, state: 'detached' });
    const missing = await s.muster.http.inject({ url: '/api/v1/discodo/sessions/nope', headers: ADMIN });
    expect(missing.statusCode).toBe(404);
  });

  it('needs the admin token', async () => {
    const s = await setup();
    const res = await s.muster.http.inject({ url: '/api/v1/discodo/sessions' });
    expect(res.statusCode).toBe(401);
  });

  it('shows the connection identity (session key) in /api/v1/connections', async () => {
    const s = await setup();
    await bot('1234', 2);
    const res = await s.muster.http.inject({ url: '/api/v1/connections', headers: ADMIN });
    expect(res.json()).toEqual([expect.objectContaining({ dialect: 'discodo', identity: '1234-2' })]);
  });

  it('exports sessions live and detached, voice clients, resumes and expiries', async () => {
    const s = await setup();
    const metric = async (): Promise<string> => (await s.muster.http.inject({ url: '/metrics' })).body;
    const a = await bot('1');
    await createVoiceClient(a, '111', '222', '1');
    await bot('2');
    a.close();
    await until(() => discodo(s).summary().detachedSessions === 1);
    let m = await metric();
    expect(m).toContain('muster_discodo_sessions{state="live"} 1');
    expect(m).toContain('muster_discodo_sessions{state="detached"} 1');
    expect(m).toContain('muster_discodo_voice_clients 1');
    await bot('1');
    const b2 = await bot('2');
    expect(await b2.next()).toMatchObject({ op: 'RESUMED' });
    m = await metric();
    expect(m).toContain('muster_discodo_resumes_total{kind="detached"} 1');
    expect(m).toContain('muster_discodo_resumes_total{kind="takeover"} 1');
    for (const p of peers) p.close();
    await until(() => discodo(s).summary().detachedSessions === 2);
    s.clock.advance(VC_TIMEOUT);
    m = await metric();
    expect(m).toContain('muster_discodo_session_expiries_total 2');
    expect(m).toContain('muster_discodo_voice_clients_destroyed_total{reason="expired"} 1');
    expect(m).toContain('muster_discodo_voice_clients_created_total 1');
  });

  it('says goodbye with 1001 at shutdown and releases every session', async () => {
    const s = await setup();
    const p = await bot();
    await createVoiceClient(p, '111', '222', BOT);
    h.release();
    await s.stop();
    expect((await p.waitClose()).code).toBe(1001);
    expect(discodo(s).summary()).toMatchObject({ sessions: 0, voiceClients: 0, connections: 0 });
  });
});
