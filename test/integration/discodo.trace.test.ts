import { afterEach, describe, expect, it } from 'vitest';
import { RawPeer, until, type TestServer } from '../support/server.js';
import { ADMIN, DiscodoHarness, PASSWORD, discodo } from '../support/harness/discodo.js';

/**
 * The frames Discodo 3.0.7's own Python client sends and expects
 * (specs/traces/discodo-3.md), replayed byte for byte: Python's json.dumps puts a
 * space after ':' and ','. The client sends IDENTIFY as soon as the socket opens,
 * before it has read HELLO, and heartbeats every min(heartbeat_interval, 5.0) s.
 */

const VC_TIMEOUT = 300_000;
const HEADERS = { Authorization: PASSWORD, 'User-Agent': 'Python/3.11 websockets/10.4' };
const GUILD = '111111111111111111';
const CHANNEL = '222222222222222222';

const h = new DiscodoHarness();
const peers = h.peers;
const setup = (compat?: 'seed' | 'discodo-3'): Promise<TestServer> => h.start(compat ? { compat } : {});

/** Python's json.dumps(payload). */
function py(op: string, d: string): string {
  return `{"op": "${op}", "d": ${d}}`;
}

/** What `Node.connect()` does: open, then at once (no wait for HELLO) send IDENTIFY. */
async function pythonConnect(s: TestServer, identifyD: string, headers: Record<string, string> = HEADERS): Promise<RawPeer> {
  const peer = new RawPeer(`${s.wsBase}/ws`, { headers });
  peers.push(peer);
  await new Promise<void>((resolve, reject) => {
    peer.ws.once('open', () => {
      peer.send(py('IDENTIFY', identifyD));
      resolve();
    });
    peer.ws.once('error', reject);
  });
  return peer;
}

/** The client's `poll()`: `Operation, Data = JsonData["op"], JsonData["d"]`. */
async function poll(peer: RawPeer): Promise<[string, unknown]> {
  const m = await peer.next<{ op: string; d: unknown }>();
  expect(Object.keys(m).sort()).toEqual(['d', 'op']);
  return [m.op, m.d];
}

/** A raw gateway event as DPYClient forwards it (`on_socket_response` payload, string ids). */
function voiceStateUpdate(channel: string | null, user = '1234'): string {
  return py(
    'DISCORD_EVENT',
    `{"t": "VOICE_STATE_UPDATE", "s": 7, "op": 0, "d": {"member": {"user": {"id": "${user}", "bot": true}}, "user_id": "${user}", ` +
      `"suppress": false, "session_id": "9f1c2e", "self_video": false, "self_mute": false, "self_deaf": false, ` +
      `"request_to_speak_timestamp": null, "mute": false, "guild_id": "${GUILD}", "deaf": false, ` +
      `"channel_id": ${channel === null ? 'null' : `"${channel}"`}}}`,
  );
}

function voiceServerUpdate(): string {
  return py('DISCORD_EVENT', `{"t": "VOICE_SERVER_UPDATE", "s": 8, "op": 0, "d": {"token": "abc123", "guild_id": "${GUILD}", "endpoint": "seoul1234.discord.media:443"}}`);
}

afterEach(() =>
  h.teardown((s) => {
    s.clock.advance(VC_TIMEOUT);
    expect(discodo(s).summary()).toMatchObject({ connections: 0, sessions: 0, voiceClients: 0, pendingVoice: 0 });
    expect(s.muster.scheduler.size).toBe(h.baselineWakes);
  }),
);

describe('discodo: Discodo 3.0.7 Python client trace', () => {
  it('basic connection in wire order: HELLO, IDENTIFIED, STATUS, HEARTBEAT_ACK, then 5 s heartbeats past 60 s, close 1000', async () => {
    const s = await setup();
    const peer = await pythonConnect(s, '{"user_id": 1234, "shard_id": null}');

    const [op1, hello] = await poll(peer);
    expect(op1).toBe('HELLO');
    const h = hello as { heartbeat_interval: number; version: string };
    expect(typeof h.heartbeat_interval).toBe('number');
    expect(Math.min(h.heartbeat_interval, 5.0)).toBe(5);
    expect(typeof h.version).toBe('string');

    expect(await poll(peer)).toEqual(['IDENTIFIED', {}]);

    peer.send(py('GET_STATUS', 'null'));
    const [op3, status] = await poll(peer);
    expect(op3).toBe('STATUS');
    expect(status).toMatchObject({ sessions: 1, voice_clients: 0 });

    peer.send(py('HEARTBEAT', '1795306231786'));
    expect(await peer.nextRaw()).toBe('{"op":"HEARTBEAT_ACK","d":1795306231786}');

    // keepAlive: every 5 s for 100 s, each one ACKed; the 60 s silence limit never trips.
    let ts = 1795306231786;
    for (let i = 0; i < 20; i++) {
      s.clock.advance(5_000);
      ts += 5_000;
      peer.send(py('HEARTBEAT', String(ts)));
      expect(await poll(peer)).toEqual(['HEARTBEAT_ACK', ts]);
    }
    expect(peer.isClosed).toBe(false);

    peer.ws.close(1000);
    expect((await peer.waitClose()).code).toBe(1000);
    await until(() => discodo(s).summary().detachedSessions === 1);
  });

  it('Node.connect() without shard_id ({"user_id": 1234}) is identified', async () => {
    const s = await setup();
    const peer = await pythonConnect(s, '{"user_id": 1234}');
    expect((await poll(peer))[0]).toBe('HELLO');
    expect(await poll(peer)).toEqual(['IDENTIFIED', {}]);
  });

  it('a bot whose user_id is 870000000000000123 (a JSON number from Python) keeps its exact id', async () => {
    const s = await setup();
    const peer = await pythonConnect(s, '{"user_id": 870000000000000123, "shard_id": null}');
    await poll(peer);
    await poll(peer);
    const res = await s.muster.http.inject({ url: '/api/v1/discodo/sessions', headers: ADMIN });
    expect(res.json()).toEqual([expect.objectContaining({ key: '870000000000000123', userId: '870000000000000123' })]);
  });

  it('wrong password: FORBIDDEN "Password mismatch." then close 4003; the IDENTIFY it sent on open is ignored', async () => {
    const s = await setup();
    const peer = await pythonConnect(s, '{"user_id": 1234, "shard_id": null}', { ...HEADERS, Authorization: 'hellodiscodo!' });
    expect(await poll(peer)).toEqual(['FORBIDDEN', 'Password mismatch.']);
    expect((await peer.waitClose()).code).toBe(4003);
    expect(peer.frames).toEqual([]);
    expect(discodo(s).summary().sessions).toBe(0);
  });

  it('voice client life: VC_CREATED, then getState/getQueue answered in the shapes handleGetState reads; VC_DESTROY → VC_DESTROYED', async () => {
    const s = await setup('discodo-3');
    const peer = await pythonConnect(s, '{"user_id": 1234, "shard_id": 0}');
    await poll(peer);
    await poll(peer);

    peer.send(voiceStateUpdate(CHANNEL));
    peer.send(voiceServerUpdate());
    const [op, created] = await poll(peer);
    expect(op).toBe('VC_CREATED');
    const vc = created as { guild_id: string; id: string };
    // Node.onAnyEvent: int(Data["guild_id"]); VoiceClient(self, Data["id"], guild_id)
    expect(vc.guild_id).toBe(GUILD);
    expect(typeof vc.id).toBe('string');

    // VoiceClient.query: wait_for(op, condition=int(Data["guild_id"]) == int(self.guild_id))
    peer.send(py('getState', `{"guild_id": "${GUILD}"}`));
    peer.send(py('getQueue', `{"guild_id": "${GUILD}"}`));
    const [sop, state] = await poll(peer);
    expect(sop).toBe('getState');
    const st = state as Record<string, unknown>;
    expect(st).toEqual({
      id: vc.id,
      guild_id: GUILD,
      channel_id: CHANNEL,
      state: 0,
      current: null,
      context: {},
      options: { autoplay: true, volume: 1, crossfade: 10, filter: {} },
    });
    expect(Number.isInteger(st.state) && (st.state as number) >= -1 && (st.state as number) <= 3).toBe(true);
    expect(await poll(peer)).toEqual(['getQueue', { guild_id: GUILD, entries: [] }]);

    // A player op: the traceback carries guild_id, so the client's wait_for matches and raises NodeException.
    peer.send(py('putSource', `{"song": {"title": "x"}, "guild_id": "${GUILD}"}`));
    const [pop, perr] = await poll(peer);
    expect(pop).toBe('putSource');
    expect(perr).toMatchObject({ guild_id: GUILD, traceback: { NOT_SUPPORTED: expect.any(String) } });

    // VoiceClient.destroy(): query("VC_DESTROY", Event="VC_DESTROYED")
    peer.send(py('VC_DESTROY', `{"guild_id": "${GUILD}"}`));
    expect(await poll(peer)).toEqual(['VC_DESTROYED', { guild_id: GUILD }]);
  });

  it('resume run (compat "discodo-3"): close 1000, new socket: HELLO, IDENTIFY shard 0, IDENTIFIED {}, RESUMED dict, then heartbeats', async () => {
    const s = await setup('discodo-3');
    const first = await pythonConnect(s, '{"user_id": 1234, "shard_id": 0}');
    await poll(first);
    await poll(first);
    first.send(voiceStateUpdate(CHANNEL));
    first.send(voiceServerUpdate());
    const [, created] = await poll(first);
    const vcId = (created as { id: string }).id;
    first.ws.close(1000);
    await first.waitClose();
    await until(() => discodo(s).summary().detachedSessions === 1);
    s.clock.advance(10_000);

    const peer = await pythonConnect(s, '{"user_id": 1234, "shard_id": 0}');
    expect((await poll(peer))[0]).toBe('HELLO');
    expect(await poll(peer)).toEqual(['IDENTIFIED', {}]);
    const [rop, resumed] = await poll(peer);
    expect(rop).toBe('RESUMED');
    // Node._resumed: for guild_id, vc_data in Data["voice_clients"].items(): VoiceClient(self, vc_data["id"], guild_id)
    const vcs = (resumed as { voice_clients: unknown }).voice_clients;
    expect(Array.isArray(vcs)).toBe(false);
    expect(vcs).toEqual({ [GUILD]: { id: vcId, channel: CHANNEL } });
    for (const [gid, data] of Object.entries(vcs as Record<string, { id: unknown }>)) {
      expect(BigInt(gid)).toBe(BigInt(GUILD));
      expect(typeof data.id).toBe('string');
    }

    // The resumed VoiceClient then asks getState and getQueue at once, and getState every 5 s.
    peer.send(py('getState', `{"guild_id": "${GUILD}"}`));
    peer.send(py('getQueue', `{"guild_id": "${GUILD}"}`));
    expect(await poll(peer)).toEqual(['getState', expect.objectContaining({ id: vcId, guild_id: GUILD, channel_id: CHANNEL, state: 0 })]);
    expect(await poll(peer)).toEqual(['getQueue', { guild_id: GUILD, entries: [] }]);
    for (let i = 0; i < 3; i++) {
      s.clock.advance(5_000);
      peer.send(py('HEARTBEAT', String(1795306231786 + i)));
      peer.send(py('getState', `{"guild_id": "${GUILD}"}`));
      expect((await poll(peer))[0]).toBe('HEARTBEAT_ACK');
      expect((await poll(peer))[0]).toBe('getState');
    }

    // DPYClient reconnects to the channel: Discord sends the voice events again. Nothing new is
    // created; the bot is told again about the voice client it has (same id), as a bot that could
    // not read RESUMED needs to be.
    peer.send(voiceStateUpdate(CHANNEL));
    peer.send(voiceServerUpdate());
    peer.send(py('HEARTBEAT', '1'));
    expect(await poll(peer)).toEqual(['VC_CREATED', { guild_id: GUILD, id: vcId }]);
    expect(await poll(peer)).toEqual(['HEARTBEAT_ACK', 1]);
    expect(discodo(s).summary().voiceClients).toBe(1);
  });

  it('resume with the default (seed) form sends the list the Python client cannot read: compat "discodo-3" is needed', async () => {
    const s = await setup();
    const first = await pythonConnect(s, '{"user_id": 1234, "shard_id": 0}');
    await poll(first);
    await poll(first);
    first.ws.close(1000);
    await until(() => discodo(s).summary().detachedSessions === 1);
    const peer = await pythonConnect(s, '{"user_id": 1234, "shard_id": 0}');
    await poll(peer);
    await poll(peer);
    expect(await poll(peer)).toEqual(['RESUMED', { voice_clients: [] }]);
  });

  it('leaving the channel: VOICE_STATE_UPDATE with channel_id null → VC_DESTROYED {guild_id}', async () => {
    const s = await setup('discodo-3');
    const peer = await pythonConnect(s, '{"user_id": 1234, "shard_id": null}');
    await poll(peer);
    await poll(peer);
    peer.send(voiceStateUpdate(CHANNEL));
    peer.send(voiceServerUpdate());
    expect((await poll(peer))[0]).toBe('VC_CREATED');
    peer.send(voiceStateUpdate('333333333333333333'));
    expect(await poll(peer)).toEqual(['VC_CHANNEL_EDITED', { guild_id: GUILD, channel_id: '333333333333333333' }]);
    peer.send(voiceStateUpdate(null));
    expect(await poll(peer)).toEqual(['VC_DESTROYED', { guild_id: GUILD }]);
    expect(discodo(s).summary().voiceClients).toBe(0);
  });
});
