/**
 * The discodo dialect's harness (`/ws`): a server with discodo on, authorized peers,
 * the HEARTBEAT round trip, and the frames a bot forwards. Wire-level: the conformance
 * tests use it too; `discodo(srv)` (the dialect object, for summaries) is for the
 * integration tests only.
 */
import { expect } from 'vitest';
import type { DiscodoDialect } from '../../../src/dialects/discodo/dialect.js';
import { RawPeer, startTestServer, type TestServer } from '../server.js';
import { Harness, roundTripKeeping, takeUntilAnswer, withDialect, type Overrides } from './harness.js';

export const PASSWORD = 'hellodiscodo';
export const AUTH = { authorization: PASSWORD };
export const ADMIN = { authorization: 'Bearer admin-secret-for-tests' };

export class DiscodoHarness extends Harness<TestServer, [extra?: Overrides, top?: Overrides]> {
  constructor(readonly password = PASSWORD) {
    super('/ws', (extra = {}, top = {}) => startTestServer(withDialect('discodo', { enabled: true, password, ...extra }, top)));
  }

  /** Opens a socket with `Authorization: auth` (none for null); HELLO is left unread. */
  connect(auth: string | null = this.password): Promise<RawPeer> {
    return this.open({ headers: auth === null ? {} : { authorization: auth } });
  }

  /** An authorized socket with HELLO read. */
  async hello(): Promise<RawPeer> {
    const p = await this.connect();
    expect((await p.next<{ op: string }>()).op).toBe('HELLO');
    return p;
  }
}

export function discodo(srv: TestServer): DiscodoDialect {
  return srv.muster.dialect<DiscodoDialect>('discodo') as DiscodoDialect;
}

let rt = 0;

/** A HEARTBEAT round trip: returns the raw frames that arrived before its ACK (taken off the queue). */
export function takeRoundTrip(peer: RawPeer): Promise<string[]> {
  const marker = `rt-${++rt}`;
  return takeUntilAnswer(peer, { op: 'HEARTBEAT', d: marker }, (raw) => isAck(raw, marker));
}

/** A HEARTBEAT round trip: proves every frame sent before it was processed. Frames before the ACK stay queued. */
export function roundTrip(peer: RawPeer): Promise<void> {
  const marker = `rt-${++rt}`;
  return roundTripKeeping(peer, { op: 'HEARTBEAT', d: marker }, (raw) => isAck(raw, marker));
}

function isAck(raw: string, marker: string): boolean {
  try {
    const f = JSON.parse(raw) as { op?: unknown; d?: unknown };
    return f.op === 'HEARTBEAT_ACK' && f.d === marker;
  } catch {
    return false;
  }
}

/**
 * Opens a socket the way Discodo 3's client does: IDENTIFY goes out as soon as the
 * socket opens, before HELLO has been read. Returns once HELLO and IDENTIFIED are in.
 */
export async function connectBot(
  url: string,
  identify: string | Record<string, unknown>,
  peers: RawPeer[],
  headers: Record<string, string> = AUTH,
): Promise<{ peer: RawPeer; hello: string; identified: string }> {
  const peer = new RawPeer(url, { headers });
  peers.push(peer);
  const text = typeof identify === 'string' ? identify : JSON.stringify({ op: 'IDENTIFY', d: identify });
  await new Promise<void>((resolve, reject) => {
    peer.ws.once('open', () => {
      peer.send(text);
      resolve();
    });
    peer.ws.once('error', reject);
  });
  const hello = await peer.nextRaw();
  expect(JSON.parse(hello)).toMatchObject({ op: 'HELLO' });
  const identified = await peer.nextRaw();
  expect(identified).toBe('{"op":"IDENTIFIED","d":{}}');
  return { peer, hello, identified };
}

/** DISCORD_EVENT frames as a bot forwards them (raw text, so ids keep their digits). */
export function voiceState(guild: string, channel: string | null, user: string, sessionId = 'sess-1'): string {
  return `{"op":"DISCORD_EVENT","d":{"t":"VOICE_STATE_UPDATE","d":{"guild_id":${guild},"channel_id":${channel ?? 'null'},"user_id":${user},"session_id":"${sessionId}","deaf":false,"mute":false}}}`;
}

export function voiceServer(guild: string, endpoint = 'eu-west1.discord.media:443', token = 'voice-token'): string {
  return `{"op":"DISCORD_EVENT","d":{"t":"VOICE_SERVER_UPDATE","d":{"token":"${token}","guild_id":${guild},"endpoint":"${endpoint}"}}}`;
}

/** Creates a voice client in `guild` and returns VC_CREATED's raw text. */
export async function createVoiceClient(peer: RawPeer, guild: string, channel: string, user: string): Promise<string> {
  peer.send(voiceState(guild, channel, user));
  peer.send(voiceServer(guild));
  const raw = await peer.nextRaw();
  expect(JSON.parse(raw)).toMatchObject({ op: 'VC_CREATED' });
  return raw;
}
