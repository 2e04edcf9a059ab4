import { describe, expect, it } from 'vitest';
import { parseLossless, snowflakeKey, type Snowflake } from '../../src/protocols/discodo/messages.js';
import {
  MAX_PENDING,
  destroyVoiceClient,
  newBotState,
  onDiscordEvent,
  playerQuery,
  releaseAll,
  resumedList,
  type BotState,
  type VoiceEffect,
} from '../../src/dialects/discodo/voice.js';

const USER = parseLossless('870000000000000123') as Snowflake;
let n = 0;
const ctx = { now: 5, newId: () => `vc-${++n}` };

function ev(state: BotState, t: string, json: string): { state: BotState; effects: readonly VoiceEffect[] } {
  return onDiscordEvent(state, t, parseLossless(json), ctx);
}

const vsu = (guild: string, channel: string, user = '870000000000000123', session = 's1'): string =>
  `{"guild_id":${guild},"channel_id":${channel},"user_id":${user},"session_id":"${session}"}`;
const vsrv = (guild: string, endpoint = 'e1'): string => `{"guild_id":${guild},"token":"t","endpoint":"${endpoint}"}`;

function created(): BotState {
  let s = newBotState(USER, null);
  s = ev(s, 'VOICE_STATE_UPDATE', vsu('111', '222')).state;
  return ev(s, 'VOICE_SERVER_UPDATE', vsrv('111')).state;
}

describe('discodo voice clients', () => {
  it('creates a voice client when both halves are in: VC_CREATED + connect', () => {
    n = 0;
    let s = newBotState(USER, null);
    const a = ev(s, 'VOICE_STATE_UPDATE', vsu('111', '222'));
    expect(a.effects).toEqual([]);
    expect(a.state.pending.size).toBe(1);
    s = a.state;
    const b = ev(s, 'VOICE_SERVER_UPDATE', vsrv('111'));
    expect(b.effects[0]).toEqual({ type: 'send', frame: '{"op":"VC_CREATED","d":{"guild_id":111,"id":"vc-1"}}' });
    expect(b.effects[1]).toMatchObject({ type: 'connect', vc: { id: 'vc-1', sessionId: 's1', server: { token: 't', endpoint: 'e1' }, createdAt: 5 } });
    expect(b.state.pending.size).toBe(0);
    expect(b.state.voiceClients.size).toBe(1);
    // The input state is not changed.
    expect(s.voiceClients.size).toBe(0);
  });

  it('creates it with the server half first, too', () => {
    let s = newBotState(USER, null);
    s = ev(s, 'VOICE_SERVER_UPDATE', vsrv('"111"')).state;
    const r = ev(s, 'VOICE_STATE_UPDATE', vsu('"111"', '"222"'));
    expect(r.effects[0]).toMatchObject({ type: 'send', frame: expect.stringContaining('"guild_id":"111"') });
  });

  it('needs a channel: a state with a null channel never creates', () => {
    let s = newBotState(USER, null);
    s = ev(s, 'VOICE_SERVER_UPDATE', vsrv('111')).state;
    const r = ev(s, 'VOICE_STATE_UPDATE', vsu('111', 'null'));
    expect(r.effects).toEqual([]);
    expect(r.state.pending.size).toBe(0);
  });

  it('ignores other users, missing guilds and bad ids', () => {
    const s = newBotState(USER, null);
    expect(ev(s, 'VOICE_STATE_UPDATE', vsu('111', '222', '870000000000000124')).state).toBe(s);
    expect(ev(s, 'VOICE_STATE_UPDATE', vsu('111', '222', '870000000000000100')).state).toBe(s);
    expect(ev(s, 'VOICE_STATE_UPDATE', '{"channel_id":1,"user_id":870000000000000123}').state).toBe(s);
    expect(ev(s, 'VOICE_STATE_UPDATE', vsu('111', '{}')).state).toBe(s);
    expect(ev(s, 'VOICE_SERVER_UPDATE', '{"token":"t"}').state).toBe(s);
    expect(ev(s, 'VOICE_SERVER_UPDATE', 'null').state).toBe(s);
    expect(ev(s, 'GUILD_CREATE', vsu('111', '222')).state).toBe(s);
  });

  it('matches the user id whatever its form', () => {
    const s = newBotState('870000000000000123', null);
    expect(ev(s, 'VOICE_STATE_UPDATE', vsu('111', '222')).state.pending.size).toBe(1);
  });

  it('channel change → VC_CHANNEL_EDITED + update; same channel, same session → nothing', () => {
    const s = created();
    expect(ev(s, 'VOICE_STATE_UPDATE', vsu('111', '222')).effects).toEqual([]);
    const moved = ev(s, 'VOICE_STATE_UPDATE', vsu('111', '333'));
    expect(moved.effects[0]).toEqual({ type: 'send', frame: '{"op":"VC_CHANNEL_EDITED","d":{"guild_id":111,"channel_id":333}}' });
    expect(moved.effects[1]).toMatchObject({ type: 'update' });
    const vc = moved.state.voiceClients.get('111');
    expect(vc && snowflakeKey(vc.channelId)).toBe('333');
    // A new Discord voice session in the same channel: the backend hears of it, the bot does not.
    expect(ev(s, 'VOICE_STATE_UPDATE', vsu('111', '222', '870000000000000123', 's2')).effects).toEqual([
      { type: 'update', vc: expect.objectContaining({ sessionId: 's2' }) },
    ]);
  });

  it('server change on an existing voice client → update only', () => {
    const r = ev(created(), 'VOICE_SERVER_UPDATE', vsrv('111', 'e2'));
    expect(r.effects).toEqual([{ type: 'update', vc: expect.objectContaining({ server: { token: 't', endpoint: 'e2' } }) }]);
  });

  it('a fresh state + server pair for a guild that has a voice client answers VC_CREATED again, same id', () => {
    const s = created();
    const id = s.voiceClients.get('111')?.id as string;
    const created1 = `{"op":"VC_CREATED","d":{"guild_id":111,"id":"${id}"}}`;
    // state first, then server
    const a = ev(s, 'VOICE_STATE_UPDATE', vsu('111', '222', '870000000000000123', 's2'));
    expect(a.effects.some((e) => e.type === 'send')).toBe(false);
    const b = ev(a.state, 'VOICE_SERVER_UPDATE', vsrv('111', 'e2'));
    expect(b.effects).toEqual([
      { type: 'send', frame: created1 },
      { type: 'update', vc: expect.objectContaining({ id, sessionId: 's2', server: { token: 't', endpoint: 'e2' } }) },
    ]);
    expect(b.state.voiceClients.size).toBe(1);
    expect(b.state.pending.size).toBe(0);
    // server first, then the same state as before (the bot rejoins the same channel)
    const c = ev(b.state, 'VOICE_SERVER_UPDATE', vsrv('111', 'e3'));
    expect(c.effects).toEqual([{ type: 'update', vc: expect.objectContaining({ id }) }]);
    const d = ev(c.state, 'VOICE_STATE_UPDATE', vsu('111', '222', '870000000000000123', 's2'));
    expect(d.effects[0]).toEqual({ type: 'send', frame: created1 });
    // into another channel: VC_CHANNEL_EDITED, then VC_CREATED with the same id
    const e = ev(ev(d.state, 'VOICE_STATE_UPDATE', vsu('111', '333')).state, 'VOICE_SERVER_UPDATE', vsrv('111'));
    expect(e.effects.filter((x) => x.type === 'send')).toEqual([{ type: 'send', frame: created1 }]);
    // a lone half announces nothing; leaving drops the half with the client
    const lone = ev(s, 'VOICE_STATE_UPDATE', vsu('111', '222'));
    expect(lone.effects).toEqual([]);
    expect(ev(lone.state, 'VOICE_STATE_UPDATE', vsu('111', 'null')).state.pending.size).toBe(0);
  });

  it('null channel → VC_DESTROYED + disconnect(left)', () => {
    const r = ev(created(), 'VOICE_STATE_UPDATE', vsu('111', 'null'));
    expect(r.effects).toEqual([
      { type: 'send', frame: '{"op":"VC_DESTROYED","d":{"guild_id":111}}' },
      { type: 'disconnect', vc: expect.objectContaining({ guildId: expect.anything() }), reason: 'left' },
    ]);
    expect(r.state.voiceClients.size).toBe(0);
  });

  it('VC_DESTROY: VC_DESTROYED, or VOICE_CLIENT_NOT_FOUND', () => {
    const r = destroyVoiceClient(created(), 'VC_DESTROY', '111');
    expect(r.effects).toEqual([
      { type: 'send', frame: '{"op":"VC_DESTROYED","d":{"guild_id":"111"}}' },
      { type: 'disconnect', vc: expect.anything(), reason: 'requested' },
    ]);
    const miss = destroyVoiceClient(r.state, 'VC_DESTROY', '111');
    expect(miss.effects).toEqual([
      { type: 'send', frame: '{"op":"VC_DESTROY","d":{"traceback":{"VOICE_CLIENT_NOT_FOUND":"There is no voice client in this guild."},"guild_id":"111"}}' },
    ]);
    expect(miss.state).toBe(r.state);
  });

  it('getState/getQueue answer an idle player for a known guild', () => {
    const s = created();
    const id = s.voiceClients.get('111')?.id ?? '';
    expect(JSON.parse(playerQuery(s, 'getState', '111'))).toEqual({
      op: 'getState',
      d: { id, guild_id: '111', channel_id: 222, state: 0, current: null, context: {}, options: { autoplay: true, volume: 1, crossfade: 10, filter: {} } },
    });
    expect(playerQuery(s, 'getQueue', '111')).toBe('{"op":"getQueue","d":{"guild_id":"111","entries":[]}}');
    expect(JSON.parse(playerQuery(s, 'getQueue', '9'))).toMatchObject({ d: { traceback: { VOICE_CLIENT_NOT_FOUND: expect.any(String) } } });
  });

  it('releaseAll disconnects every voice client and clears the halves', () => {
    let s = created();
    s = ev(s, 'VOICE_STATE_UPDATE', vsu('5', '6')).state;
    const r = releaseAll(s, 'expired');
    expect(r.effects).toEqual([{ type: 'disconnect', vc: expect.anything(), reason: 'expired' }]);
    expect(r.state.voiceClients.size).toBe(0);
    expect(r.state.pending.size).toBe(0);
  });

  it('lists voice clients for RESUMED in creation order', () => {
    let s = created();
    s = ev(s, 'VOICE_STATE_UPDATE', vsu('"3"', '"4"')).state;
    s = ev(s, 'VOICE_SERVER_UPDATE', vsrv('"3"')).state;
    expect(resumedList(s).map((v) => [snowflakeKey(v.guildId), v.channelId && snowflakeKey(v.channelId)])).toEqual([
      ['111', '222'],
      ['3', '4'],
    ]);
  });

  it(`keeps at most ${MAX_PENDING} half voice clients, dropping the oldest`, () => {
    let s = newBotState(USER, null);
    for (let i = 0; i <= MAX_PENDING; i++) s = ev(s, 'VOICE_SERVER_UPDATE', vsrv(String(i + 1))).state;
    expect(s.pending.size).toBe(MAX_PENDING);
    expect(s.pending.has('1')).toBe(false);
    expect(s.pending.has(String(MAX_PENDING + 1))).toBe(true);
  });
});
