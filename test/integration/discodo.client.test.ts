import { afterEach, describe, expect, it, vi } from 'vitest';
import { DiscodoClient, DiscodoTracebackError, type VoiceClientInfo } from '../../src/client/index.js';
import { until, type TestServer } from '../support/server.js';
import { ADMIN, DiscodoHarness, PASSWORD, discodo } from '../support/harness/discodo.js';

const VC_TIMEOUT = 300_000;
const BOT = '870000000000000123';
const GUILD = '870000000000000999';

const h = new DiscodoHarness();
const clients: DiscodoClient[] = [];

const setup = (over: Record<string, unknown> = {}): Promise<TestServer> => h.start(over);

function client(s: TestServer, opts: Partial<ConstructorParameters<typeof DiscodoClient>[0]> = {}): DiscodoClient {
  const c = new DiscodoClient({ url: `${s.wsBase}/ws`, password: PASSWORD, userId: BOT, reconnect: { minMs: 5, maxMs: 20 }, ...opts });
  clients.push(c);
  return c;
}

function gatewayState(channel: string | null, user = BOT): string {
  return `{"t":"VOICE_STATE_UPDATE","s":3,"op":0,"d":{"guild_id":"${GUILD}","channel_id":${channel === null ? 'null' : `"${channel}"`},"user_id":"${user}","session_id":"abc"}}`;
}
const gatewayServer = `{"t":"VOICE_SERVER_UPDATE","s":4,"op":0,"d":{"guild_id":"${GUILD}","token":"tok","endpoint":"x.discord.media:443"}}`;

function once<T>(c: DiscodoClient, event: string): Promise<T> {
  return new Promise((resolve) => c.once(event, (v: T) => resolve(v)));
}

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await h.teardown((s) => {
    s.clock.advance(VC_TIMEOUT);
    expect(discodo(s).summary()).toMatchObject({ connections: 0, sessions: 0, voiceClients: 0 });
    expect(s.muster.scheduler.size).toBe(h.baselineWakes);
  });
});

describe('DiscodoClient', () => {
  it('waits for HELLO, identifies, and reports the interval in ms', async () => {
    const s = await setup();
    const c = client(s);
    const hello = once<{ heartbeatInterval: number; version: string }>(c, 'hello');
    await c.connect();
    expect(await hello).toEqual({ heartbeatInterval: 15_000, version: 'muster-0.1.0' });
    expect(c.connected).toBe(true);
    const status = await c.getStatus();
    expect(status).toMatchObject({ sessions: 1, live_sessions: 1, voice_clients: 0 });
  });

  it('identifies with an exact big user id given as a string or a bigint', async () => {
    const s = await setup();
    await client(s, { userId: BOT }).connect();
    await client(s, { userId: 870000000000000124n, shardId: 2 }).connect();
    const res = await s.muster.http.inject({ url: '/api/v1/discodo/sessions', headers: ADMIN });
    expect((res.json() as Array<{ key: string }>).map((x) => x.key)).toEqual([BOT, '870000000000000124-2']);
  });

  it('forwards voice events, tracks voice clients, and queries them', async () => {
    const s = await setup();
    const c = client(s);
    await c.connect();
    const created = once<VoiceClientInfo>(c, 'vcCreated');
    expect(c.forwardDiscordEvent(gatewayState('222'))).toBe(true);
    expect(c.forwardDiscordEvent(gatewayServer)).toBe(true);
    expect(c.forwardDiscordEvent('{"t":"MESSAGE_CREATE","d":{}}')).toBe(false);
    const vc = await created;
    expect(vc).toEqual({ guildId: GUILD, id: expect.any(String), channelId: null });
    expect(c.voiceClients.get(GUILD)?.id).toBe(vc.id);

    const edited = once<{ guildId: string; channelId: string }>(c, 'vcChannelEdited');
    c.forwardDiscordEvent({ t: 'VOICE_STATE_UPDATE', d: { guild_id: GUILD, channel_id: '333', user_id: BOT, session_id: 'abc' } });
    expect(await edited).toEqual({ guildId: GUILD, channelId: '333' });
    expect(c.voiceClients.get(GUILD)?.channelId).toBe('333');

    expect(await c.getState(GUILD)).toEqual({
      id: vc.id,
      guild_id: GUILD,
      channel_id: '333',
      state: 0,
      current: null,
      context: {},
      options: { autoplay: true, volume: 1, crossfade: 10, filter: {} },
    });
    expect(await c.getQueue(BigInt(GUILD))).toEqual({ guild_id: GUILD, entries: [] });

    const destroyed = once<{ guildId: string }>(c, 'vcDestroyed');
    await c.destroyVoiceClient(GUILD);
    expect(await destroyed).toEqual({ guildId: GUILD });
    expect(c.voiceClients.size).toBe(0);
    const err = await c.getState(GUILD).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DiscodoTracebackError);
    expect(err).toMatchObject({ op: 'getState', code: 'VOICE_CLIENT_NOT_FOUND', guildId: GUILD });
  });

  it('heartbeats on HELLO\'s interval and gets ACKs', async () => {
    const s = await setup({ heartbeatInterval: 1000 });
    // The client's interval timer is faked (sockets stay real): each tick is one heartbeat, each ACK its round trip.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const c = client(s);
      let acks = 0;
      let interval = 0;
      c.on('hello', (h: { heartbeatInterval: number }) => (interval = h.heartbeatInterval));
      c.on('heartbeatAck', () => acks++);
      await c.connect();
      expect(interval).toBe(1000);
      for (const want of [1, 2]) {
        vi.advanceTimersByTime(999);
        expect(acks).toBe(want - 1);
        vi.advanceTimersByTime(1);
        await until(() => acks >= want);
      }
    } finally {
      vi.useRealTimers();
    }
  });

  for (const compat of ['seed', 'discodo-3'] as const) {
    it(`reconnects after a drop and is told what it still holds (RESUMED, compat ${compat})`, async () => {
      const s = await setup({ compat });
      const c = client(s, { shardId: 0 });
      await c.connect();
      const created = once<VoiceClientInfo>(c, 'vcCreated');
      c.forwardDiscordEvent(gatewayState('222'));
      c.forwardDiscordEvent(gatewayServer);
      const vc = await created;
      const resumed = once<VoiceClientInfo[]>(c, 'resumed');
      const closed = once<number>(c, 'close');
      const conn = s.muster.transport.connections()[0];
      await s.muster.http.inject({ method: 'DELETE', url: `/api/v1/connections/${conn?.id ?? ''}`, headers: ADMIN });
      expect(await closed).toBe(1008);
      const list = await resumed;
      expect(list).toEqual([{ guildId: GUILD, id: compat === 'seed' ? '' : vc.id, channelId: '222' }]);
      expect(c.voiceClients.get(GUILD)).toEqual(list[0]);
      expect(c.connected).toBe(true);
      expect(discodo(s).summary()).toMatchObject({ sessions: 1, liveSessions: 1, voiceClients: 1 });
    });
  }

  it('does not reconnect after FORBIDDEN (4003); connect() rejects', async () => {
    const s = await setup();
    const c = client(s, { password: 'wrong' });
    const forbidden = once<string>(c, 'forbidden');
    let reconnecting = 0;
    c.on('reconnecting', () => reconnecting++);
    await expect(c.connect()).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(await forbidden).toBe('Password mismatch.');
    await until(() => s.muster.transport.size === 0);
    expect(reconnecting).toBe(0);
  });

  it('does not reconnect after being taken over (4005)', async () => {
    const s = await setup();
    const a = client(s);
    await a.connect();
    const closed = once<number>(a, 'close');
    let reconnecting = 0;
    a.on('reconnecting', () => reconnecting++);
    const b = client(s);
    const resumed = once<VoiceClientInfo[]>(b, 'resumed');
    await b.connect();
    expect(await resumed).toEqual([]);
    expect(await closed).toBe(4005);
    expect(reconnecting).toBe(0);
    expect(a.connected).toBe(false);
  });

  it('rejects requests when not connected, and tracebacks as typed errors', async () => {
    const s = await setup();
    const c = client(s, { reconnect: false });
    await expect(c.getStatus()).rejects.toMatchObject({ code: 'DISCONNECTED' });
    await c.connect();
    c.forwardDiscordEvent(gatewayState('222'));
    c.forwardDiscordEvent(gatewayServer);
    await once(c, 'vcCreated');
    const pending = c.getState('1');
    await expect(pending).rejects.toMatchObject({ code: 'VOICE_CLIENT_NOT_FOUND' });
    await c.close();
    expect(() => c.forwardDiscordEvent(gatewayServer)).toThrow(DiscodoTracebackError);
    await until(() => discodo(s).summary().detachedSessions === 1);
  });
});
