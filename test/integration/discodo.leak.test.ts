import { describe, expect, it } from 'vitest';
import { RawPeer, until } from '../support/server.js';
import { AUTH, DiscodoHarness, discodo, voiceServer, voiceState } from '../support/harness/discodo.js';

const VC_TIMEOUT = 300_000;
const N = 1000;
const BATCH = 250;
/** The transport's timer while connections arrive in a burst (core/connect-burst.ts). */
const BURST_CHECK = 1;

/** A bot that identifies (at once, as Discodo 3 does), creates a voice client, and returns the socket. */
async function botWithVoiceClient(url: string, user: string): Promise<RawPeer> {
  const p = new RawPeer(url, { headers: AUTH });
  await new Promise<void>((resolve, reject) => {
    p.ws.once('open', () => {
      p.send(`{"op":"IDENTIFY","d":{"user_id":${user},"shard_id":null}}`);
      p.send(voiceState('870000000000000001', '870000000000000002', user));
      p.send(voiceServer('870000000000000001'));
      resolve();
    });
    p.ws.once('error', reject);
  });
  expect((await p.next<{ op: string }>()).op).toBe('HELLO');
  expect((await p.next<{ op: string }>()).op).toBe('IDENTIFIED');
  expect((await p.next<{ op: string }>()).op).toBe('VC_CREATED');
  return p;
}

describe('discodo: no leaks', () => {
  it(`${N} sessions identify, create voice clients, drop and expire: everything is released`, async () => {
    const h = new DiscodoHarness();
    const srv = await h.start({}, { limits: { handshakesPerIpPerMinute: 100_000 } });
    const url = h.url;
    const baseline = h.baselineWakes;
    const d = discodo(srv);
    try {
      // Ids beyond 2^53 that JSON.parse would fold together: each must stay its own session.
      const users = Array.from({ length: N }, (_, i) => (870000000000000000n + BigInt(i)).toString());
      const open: RawPeer[] = [];
      for (let i = 0; i < N; i += BATCH) {
        open.push(...(await Promise.all(users.slice(i, i + BATCH).map((u) => botWithVoiceClient(url, u)))));
      }
      expect(d.summary()).toEqual({ connections: N, sessions: N, liveSessions: N, detachedSessions: 0, voiceClients: N, pendingVoice: 0 });
      // One silence deadline per connection, nothing more, but the transport's check of
      // the connection burst they made (N within one second of the manual clock).
      expect(srv.muster.scheduler.size).toBe(baseline + N + BURST_CHECK);

      for (const p of open) p.close();
      await until(() => srv.muster.transport.size === 0, 10_000);
      expect(d.summary()).toEqual({ connections: 0, sessions: N, liveSessions: 0, detachedSessions: N, voiceClients: N, pendingVoice: 0 });
      // One expiry timer per detached session (and the burst's check: no time has passed).
      expect(srv.muster.scheduler.size).toBe(baseline + N + BURST_CHECK);

      // Half of them come back within the window and drop again: their window restarts.
      srv.clock.advance(VC_TIMEOUT / 2);
      const back: RawPeer[] = [];
      const half = users.slice(0, N / 2);
      for (let i = 0; i < half.length; i += BATCH) {
        back.push(...(await Promise.all(half.slice(i, i + BATCH).map(async (u) => {
          const p = new RawPeer(url, { headers: AUTH });
          await new Promise<void>((resolve) => p.ws.once('open', () => resolve()));
          p.send(`{"op":"IDENTIFY","d":{"user_id":${u},"shard_id":null}}`);
          expect((await p.next<{ op: string }>()).op).toBe('HELLO');
          expect((await p.next<{ op: string }>()).op).toBe('IDENTIFIED');
          expect((await p.next<{ op: string; d: { voice_clients: unknown[] } }>()).d.voice_clients).toHaveLength(1);
          return p;
        }))));
      }
      for (const p of back) p.close();
      await until(() => srv.muster.transport.size === 0, 10_000);

      srv.clock.advance(VC_TIMEOUT / 2);
      expect(d.summary()).toMatchObject({ sessions: N / 2, voiceClients: N / 2 });
      srv.clock.advance(VC_TIMEOUT / 2);
      expect(d.summary()).toEqual({ connections: 0, sessions: 0, liveSessions: 0, detachedSessions: 0, voiceClients: 0, pendingVoice: 0 });
      expect(srv.muster.scheduler.size).toBe(baseline);
      const metrics = (await srv.muster.http.inject({ url: '/metrics' })).body;
      expect(metrics).toContain(`muster_discodo_session_expiries_total ${N}`);
      expect(metrics).toContain(`muster_discodo_voice_clients_destroyed_total{reason="expired"} ${N}`);
    } finally {
      await srv.stop();
    }
  });
});
