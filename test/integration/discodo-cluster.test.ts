import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RawPeer } from '../support/server.js';
import { haveRedisServer, startRedisServer, type RedisServer } from '../support/redis-server.js';
import { pollUntil } from '../support/muster-cluster.js';
import { ensureBuilt, SECRETS, startServer, type RunningServer } from '../chaos/server.js';

/**
 * Discodo in cluster mode: two built Muster processes on one redis-server. A bot that
 * reconnects to the other instance gets its session (RESUMED, the same voice clients),
 * and a newer socket on one instance takes a live session over from the other (4005).
 */

const AUTH = { authorization: SECRETS.discodo };
const BOT = '870000000000000123';
const IDENTIFY = `{"op":"IDENTIFY","d":{"user_id":${BOT},"shard_id":3}}`;
const KEY = `${BOT}-3`;
const vstate = (g: string, c: string): string =>
  `{"op":"DISCORD_EVENT","d":{"t":"VOICE_STATE_UPDATE","d":{"guild_id":${g},"channel_id":${c},"user_id":${BOT},"session_id":"s1"}}}`;
const vserver = (g: string): string => `{"op":"DISCORD_EVENT","d":{"t":"VOICE_SERVER_UPDATE","d":{"guild_id":${g},"token":"vt","endpoint":"e.discord.media:443"}}}`;

let redis: RedisServer;
let root: string;
let a: RunningServer;
let b: RunningServer;
const peers: RawPeer[] = [];
let run = 0;

beforeAll(async () => {
  if (!haveRedisServer) return;
  ensureBuilt();
  redis = await startRedisServer();
  root = mkdtempSync(join(tmpdir(), 'muster-discodo-cluster-'));
});
afterAll(async () => {
  if (!haveRedisServer) return;
  await redis.close();
  rmSync(root, { recursive: true, force: true });
});

async function boot(id: string, prefix: string): Promise<RunningServer> {
  return startServer({
    dataDir: join(root, `${id}-${run}`),
    dialects: ['discodo'],
    logLevel: 'info',
    extra: {
      instanceId: id,
      store: { kind: 'redis', url: redis.url, prefix },
      cluster: { prefix, presenceTtl: 1000 },
    },
  });
}

/** Both instances up, each knowing the other. */
async function startPair(): Promise<void> {
  const prefix = `dc${++run}:`;
  a = await boot('a', prefix);
  b = await boot('b', prefix);
  const knows = (s: RunningServer, other: string): boolean => s.stdout().includes(`"instance":"${other}","msg":"cluster: peer up"`);
  expect(await pollUntil(() => knows(a, 'b') && knows(b, 'a'), 10_000)).toBe(true);
}

afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  await Promise.all([a?.stop(), b?.stop()]);
});

/** A bot socket the way Discodo 3's client opens one: IDENTIFY right away. Returns it after HELLO. */
async function bot(s: RunningServer, identify = IDENTIFY): Promise<RawPeer> {
  const peer = new RawPeer(`${s.ws}/ws`, { headers: AUTH });
  peers.push(peer);
  await new Promise<void>((resolve, reject) => {
    peer.ws.once('open', () => {
      peer.send(identify);
      resolve();
    });
    peer.ws.once('error', reject);
  });
  expect(await peer.next()).toMatchObject({ op: 'HELLO' });
  return peer;
}

interface SessionView {
  key: string;
  state: string;
  instance?: string;
  voiceClients: Array<{ id: string }>;
}

async function admin<T>(s: RunningServer, path: string): Promise<{ status: number; body: T; headers: Headers }> {
  const r = await fetch(`${s.base}${path}`, { headers: { authorization: `Bearer ${SECRETS.admin}` } });
  return { status: r.status, body: (await r.json()) as T, headers: r.headers };
}

async function sessions(s: RunningServer): Promise<SessionView[]> {
  const r = await admin<SessionView[]>(s, '/api/v1/discodo/sessions');
  expect(r.status).toBe(200);
  return r.body;
}

describe.skipIf(!haveRedisServer)('discodo across two instances', () => {
  it('a bot identified on A resumes on B: RESUMED lists its voice clients, which answer on B with their ids', { timeout: 30_000 }, async () => {
    await startPair();
    const first = await bot(a);
    expect(await first.nextRaw()).toBe('{"op":"IDENTIFIED","d":{}}');
    first.send(vstate('1', '10'));
    first.send(vserver('1'));
    const created = await first.next<{ op: string; d: { guild_id: number; id: string } }>();
    expect(created).toMatchObject({ op: 'VC_CREATED', d: { guild_id: 1 } });
    first.close();
    await first.closed;
    expect(await pollUntil(async () => (await sessions(a)).some((x) => x.key === KEY && x.state === 'detached'), 5000)).toBe(true);

    const second = await bot(b);
    expect(await second.nextRaw()).toBe('{"op":"IDENTIFIED","d":{}}');
    expect(await second.nextRaw()).toBe('{"op":"RESUMED","d":{"voice_clients":[[1,10]]}}');
    second.send('{"op":"getState","d":{"guild_id":1}}');
    expect(await second.next()).toMatchObject({ op: 'getState', d: { id: created.d.id, guild_id: 1, channel_id: 10 } });
    // The session left A; the admin API of either instance lists every instance's sessions.
    const other = await bot(a, '{"op":"IDENTIFY","d":{"user_id":42}}');
    expect(await other.nextRaw()).toBe('{"op":"IDENTIFIED","d":{}}');
    for (const s of [a, b]) {
      expect(await sessions(s)).toEqual([
        expect.objectContaining({ key: '42', state: 'connected', instance: 'a', voiceClients: [] }),
        expect.objectContaining({ key: KEY, state: 'connected', instance: 'b', voiceClients: [expect.objectContaining({ id: created.d.id })] }),
      ]);
    }
    expect(await admin(a, `/api/v1/discodo/sessions/${KEY}`)).toMatchObject({ status: 200, body: { key: KEY, instance: 'b' } });
    expect(await admin(b, '/api/v1/discodo/sessions/42')).toMatchObject({ status: 200, body: { key: '42', instance: 'a' } });
    const none = await admin(a, '/api/v1/discodo/sessions/77');
    expect(none.status).toBe(404);
    expect(none.headers.get('muster-instances')).toBe('a, b');
    // Every instance answered: the list says so in the headers every admin list uses.
    const all = await admin(b, '/api/v1/discodo/sessions');
    expect([all.headers.get('muster-instances'), all.headers.get('muster-instances-missing')]).toEqual(['b, a', null]);
  });

  it('a newer socket on B takes over the session live on A: A closes its socket 4005', { timeout: 30_000 }, async () => {
    await startPair();
    const first = await bot(a);
    expect(await first.nextRaw()).toBe('{"op":"IDENTIFIED","d":{}}');
    first.send(vstate('7', '70'));
    first.send(vserver('7'));
    expect(await first.next()).toMatchObject({ op: 'VC_CREATED' });

    const second = await bot(b);
    expect(await second.nextRaw()).toBe('{"op":"IDENTIFIED","d":{}}');
    expect(await second.nextRaw()).toBe('{"op":"RESUMED","d":{"voice_clients":[[7,70]]}}');
    expect((await first.waitClose()).code).toBe(4005);
    // The voice client is B's now: VC_DESTROY there destroys it.
    second.send('{"op":"VC_DESTROY","d":{"guild_id":7}}');
    expect(await second.next()).toEqual({ op: 'VC_DESTROYED', d: { guild_id: 7 } });
    // And back to A: the session follows the bot again.
    const third = await bot(a);
    expect(await third.nextRaw()).toBe('{"op":"IDENTIFIED","d":{}}');
    expect(await third.nextRaw()).toBe('{"op":"RESUMED","d":{"voice_clients":[]}}');
    expect((await second.waitClose()).code).toBe(4005);
  });

  it('an instance that dies does not hold IDENTIFY up for long: a new session on the other within the claim timeout', { timeout: 30_000 }, async () => {
    await startPair();
    const first = await bot(a);
    expect(await first.nextRaw()).toBe('{"op":"IDENTIFIED","d":{}}');
    a.kill9();
    await a.exited;
    const t0 = performance.now();
    const second = await bot(b);
    expect(await second.nextRaw(5000)).toBe('{"op":"IDENTIFIED","d":{}}');
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(await second.quiet()).toBe(true);
  });
});
