import { expect } from 'vitest';
import type { DiscodoDialect } from '../../src/dialects/discodo/dialect.js';
import { RawPeer, type TestServer } from '../support/server.js';

/** Helpers for the discodo dialect's integration tests (raw `ws` peers). */

export const PASSWORD = 'hellodiscodo';
export const AUTH = { authorization: PASSWORD };
export const ADMIN = { authorization: 'Bearer admin-secret-for-tests' };

export function discodo(srv: TestServer): DiscodoDialect {
  return srv.muster.dialect<DiscodoDialect>('discodo') as DiscodoDialect;
}

let rt = 0;

/** A HEARTBEAT round trip: proves every frame sent before it was processed. Frames before the ACK stay queued. */
export async function roundTrip(peer: RawPeer): Promise<void> {
  const marker = `rt-${++rt}`;
  peer.send({ op: 'HEARTBEAT', d: marker });
  const want = `{"op":"HEARTBEAT_ACK","d":"${marker}"}`;
  const skipped: string[] = [];
  for (;;) {
    const raw = await peer.nextRaw();
    if (raw === want) break;
    skipped.push(raw);
  }
  peer.frames.unshift(...skipped);
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
