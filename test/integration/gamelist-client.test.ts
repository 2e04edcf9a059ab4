import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { GameServerClient, RegistrationFailedError, type GameServerClientOptions, type GameServerInfo } from '../../src/client/index.js';
import type { GamelistDialect } from '../../src/dialects/gamelist/dialect.js';
import { GamelistHarness } from '../support/harness/gamelist.js';
import { ADMIN_TOKEN, until } from '../support/server.js';

/** GameServerClient against the real server. */

const TOKEN = 'client-reg-token';
const h = new GamelistHarness([TOKEN]);
const clients: GameServerClient[] = [];

function gl(): GamelistDialect {
  return h.srv.muster.dialect<GamelistDialect>('gamelist') as GamelistDialect;
}

const baseInfo: GameServerInfo = { name: 'Client GS', desc: 'd', port: 37015, map: 'mp_glitch', playlist: 'tdm', curPlayers: 0, maxPlayers: 12, gameState: 0 };

function client(opts: Partial<GameServerClientOptions> = {}): GameServerClient {
  const c = new GameServerClient({
    url: h.url,
    regToken: TOKEN,
    info: baseInfo,
    reconnect: { minMs: 5, maxMs: 20 },
    ...opts,
  });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

async function list(): Promise<Array<Record<string, unknown>>> {
  const res = await h.srv.muster.http.inject({ method: 'GET', url: '/v2/servers' });
  return (res.json() as { servers: Array<Record<string, unknown>> }).servers;
}

function join(serverId: string) {
  return h.srv.muster.http.inject({ method: 'POST', url: `/v2/servers/${serverId}/join`, payload: { sessionToken: 's', username: 'u', clantag: 'c' } });
}

beforeEach(async () => {
  await h.start();
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await h.teardown(() => {
    expect(gl().summary()).toMatchObject({ connections: 0, servers: 0, pendingJoins: 0 });
  });
});

describe('GameServerClient', () => {
  it('registers, gets a server_id and is listed', async () => {
    const c = client();
    const events: unknown[] = [];
    c.on('registered', (e) => events.push(e));
    const id = await c.connect();
    expect(id).toEqual(expect.any(String));
    expect(c.serverId).toBe(id);
    expect(c.listed).toBe(true);
    expect(events).toEqual([{ serverId: id, first: true }]);
    expect((await list()).map((s) => s.server_id)).toEqual([id]);
  });

  it('re-registers on its timer', async () => {
    const c = client({ refreshInterval: 20 });
    let n = 0;
    c.on('registered', () => n++);
    await c.connect();
    await until(() => n >= 3);
    expect(gl().summary().servers).toBe(1);
  });

  it('update() changes the info at once', async () => {
    const c = client();
    await c.connect();
    const r = await c.update({ curPlayers: 7, map: 'mp_rise' });
    expect(r.success).toBe(true);
    h.srv.clock.advance(1000);
    expect(await list()).toEqual([expect.objectContaining({ curPlayers: 7, map: 'mp_rise' })]);
  });

  it('answers joins through onJoin: accept, refuse, and a throw', async () => {
    const decisions = [
      { success: true },
      { success: false, error: { type: 3, msg: 'banned' } },
    ];
    const seen: number[] = [];
    const c = client({
      onJoin: (req) => {
        seen.push(req.conv);
        const d = decisions.shift();
        if (!d) throw new Error('boom');
        return d;
      },
    });
    const id = await c.connect();
    const a = await join(id);
    expect(a.statusCode).toBe(200);
    expect(a.json()).toEqual({ success: true, conv: seen[0] });
    expect((await join(id)).json()).toEqual({ success: false, conv: seen[1], error: { type: 3, msg: 'banned' } });
    expect((await join(id)).json()).toEqual({ success: false, conv: seen[2], error: { type: 0, msg: 'boom' } });
  });

  it('answers a join whose id is 2^63-1 with that exact id', async () => {
    const c = client({ onJoin: async () => ({ success: true }) });
    const id = await c.connect();
    gl().setNextRequestId(2n ** 63n - 1n);
    const res = await join(id);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ success: true });
  });

  it('is unlisted at once when it closes', async () => {
    const c = client();
    await c.connect();
    expect(gl().summary().servers).toBe(1);
    await c.close();
    await until(() => gl().summary().servers === 0);
  });

  it('answers pings, so it stays listed past pongTimeout', async () => {
    const c = client();
    await c.connect();
    const conn = h.srv.muster.transport.connections()[0];
    for (let i = 0; i < 4; i++) {
      h.srv.clock.advance(10_000);
      await until(() => conn?.lastSeen === h.srv.clock.now());
    }
    expect(conn?.closing).toBe(false);
  });

  it('reconnects after a kick and keeps its server_id', async () => {
    const c = client();
    const first = await c.connect();
    let reconnecting = 0;
    c.on('reconnecting', () => reconnecting++);
    const conn = h.srv.muster.transport.connections()[0];
    await h.srv.muster.http.inject({ method: 'DELETE', url: `/api/v1/connections/${conn?.id}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    await until(() => reconnecting === 1 && c.listed);
    expect(c.serverId).toBe(first);
    expect((await list()).map((s) => s.server_id)).toEqual([first]);
  });

  it('rejects connect() with error type 1 for a wrong token, and stops refreshing', async () => {
    // The refresh timer is faked (the socket stays real): no interval may be left running.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const c = client({ regToken: 'wrong', refreshInterval: 10 });
      const failures: unknown[] = [];
      c.on('registrationFailed', (e) => failures.push(e));
      const err = await c.connect().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RegistrationFailedError);
      expect((err as RegistrationFailedError).type).toBe(1);
      expect(vi.getTimerCount()).toBe(0);
      vi.advanceTimersByTime(1000);
      expect(failures).toEqual([{ type: 1, msg: 'Invalid registration token' }]);
      expect(c.listed).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it('rejects connect() with error type 2 when the server limit is reached', async () => {
    await h.restart({ maxServers: 1 });
    await client().connect();
    const err = await client({ info: { ...baseInfo, port: 2 } }).connect().catch((e: unknown) => e);
    expect((err as RegistrationFailedError).type).toBe(2);
  });
});

describe('GameServerClient: the strict rules, from the other side', () => {
  let fake: WebSocketServer;
  let sock: Promise<WebSocket>;

  beforeEach(async () => {
    fake = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise<void>((r) => fake.once('listening', () => r()));
    sock = new Promise((r) => fake.once('connection', (ws) => r(ws)));
  });

  afterEach(async () => {
    for (const ws of fake.clients) ws.terminate();
    await new Promise<void>((r) => fake.close(() => r()));
  });

  const cases: Array<[string, string, number]> = [
    ['malformed JSON', '{"metadata":', 1007],
    ['no metadata', '{"success":true}', 1008],
    ['a conv beyond UINT32', '{"metadata":{"type":2,"id":1},"sessionToken":"s","username":"u","clantag":"c","conv":4294967296}', 1008],
    ['a registration request from the MS', '{"metadata":{"type":1,"id":1},"info":{},"regToken":"x"}', 1008],
  ];
  for (const [name, frame, code] of cases) {
    it(`closes ${name} from the masterserver with ${code}, and does not reconnect`, async () => {
      const port = (fake.address() as AddressInfo).port;
      const c = client({ url: `ws://127.0.0.1:${port}` });
      let reconnecting = 0;
      c.on('reconnecting', () => reconnecting++);
      const closed = new Promise<number>((r) => c.once('close', (code: number) => r(code)));
      c.connect().catch(() => undefined);
      const ws = await sock;
      await new Promise((r) => ws.once('message', r)); // the registration
      ws.send(frame);
      expect(await closed).toBe(code);
      expect(reconnecting).toBe(0);
    });
  }

  it('answers a registration response with an unknown id by ignoring it', async () => {
    const port = (fake.address() as AddressInfo).port;
    const c = client({ url: `ws://127.0.0.1:${port}` });
    const ready = c.connect();
    const ws = await sock;
    const reg = await new Promise<string>((r) => ws.once('message', (d: Buffer) => r(d.toString())));
    const id = /"id":(-?\d+)/.exec(reg)?.[1];
    ws.send('{"metadata":{"type":-1,"id":9223372036854775807},"success":false,"error":{"type":1,"msg":"x"}}');
    ws.send(`{"metadata":{"type":-1,"id":${id}},"success":true,"server_id":"abc"}`);
    expect(await ready).toBe('abc');
  });
});
