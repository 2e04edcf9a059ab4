import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GamelistDialect } from '../../src/dialects/gamelist/dialect.js';
import { GamelistHarness, regFrame as reg, type Info } from '../support/harness/gamelist.js';
import type { PeerOptions } from '../support/harness/harness.js';
import { ADMIN_TOKEN, RawPeer, until } from '../support/server.js';

/**
 * The gamelist dialect over real sockets and real HTTP: close rules, INT64 ids,
 * registration, liveness, joins and the public list. Every timeout runs on the
 * manual clock.
 */

const TOKEN = 'reg-token-a';
const TOKEN_B = 'reg-token-b';
const TTL = 30_000;

const h = new GamelistHarness([TOKEN, TOKEN_B]);

async function start(overrides: Record<string, unknown> = {}): Promise<void> {
  await h.start(overrides);
}

/** Restarts the server with other gamelist settings (for limit tests). */
async function restart(overrides: Record<string, unknown>): Promise<void> {
  await h.restart(overrides);
}

function gl(): GamelistDialect {
  return h.srv.muster.dialect<GamelistDialect>('gamelist') as GamelistDialect;
}

const open = (opts: PeerOptions = {}): Promise<RawPeer> => h.open(opts);

function info(over: Partial<Info> = {}): Info {
  return { name: 'Alpha', desc: 'a test server', port: 37015, map: 'mp_glitch', playlist: 'tdm', curPlayers: 3, maxPlayers: 16, gameState: 1, ...over };
}

let nextId = 100;
function regFrame(i: Partial<Info> = {}, token = TOKEN, id: string | number = nextId++): string {
  return reg(info(i), token, id);
}

interface Response {
  metadata: { type: number; id: number };
  success: boolean;
  error?: { type: number; msg: string };
  server_id?: string;
}

async function register(peer: RawPeer, i: Partial<Info> = {}, token = TOKEN): Promise<Response> {
  peer.send(regFrame(i, token));
  return peer.next<Response>();
}

/** Opens a socket and registers; returns the peer and its server_id. */
async function listed(i: Partial<Info> = {}, opts: ConstructorParameters<typeof RawPeer>[1] = {}): Promise<{ peer: RawPeer; id: string }> {
  const peer = await open(opts);
  const r = await register(peer, i);
  expect(r.success).toBe(true);
  return { peer, id: r.server_id as string };
}

/** A registration refresh and its answer: proves every frame sent before it was handled. */
async function roundTrip(peer: RawPeer): Promise<void> {
  const r = await register(peer, { name: 'roundtrip' });
  expect(r.metadata.type).toBe(-1);
}

async function list(query = ''): Promise<{ servers: Array<Record<string, unknown>>; total: number; nextCursor: string | null }> {
  const res = await h.srv.muster.http.inject({ method: 'GET', url: `/v2/servers${query}` });
  expect(res.statusCode).toBe(200);
  return res.json();
}

function join(serverId: string, body: unknown = { sessionToken: 'st', username: 'player', clantag: 'TAG' }) {
  return h.srv.muster.http.inject({ method: 'POST', url: `/v2/servers/${serverId}/join`, payload: body as Record<string, unknown> });
}

/**
 * Moves the clock in pingInterval steps and lets every socket's automatic pong
 * arrive after each ping, so long waits do not trip the pong deadline.
 */
async function tick(ms: number): Promise<void> {
  while (ms > 0) {
    const step = Math.min(ms, 10_000);
    h.srv.clock.advance(step);
    ms -= step;
    const now = h.srv.clock.now();
    await until(() => h.srv.muster.transport.connections().every((c) => (now - c.connectedAt) % 10_000 !== 0 || c.lastSeen === now));
  }
}

/** Lets the snapshot rebuild on the next list request. */
function nextSecond(): void {
  h.srv.clock.advance(1000);
}

beforeEach(async () => {
  await start();
});

afterEach(() =>
  // Nothing leaks: connections, listed servers, pending joins; kept ids expire with the TTL.
  h.teardown((srv) => {
    expect(gl().summary()).toMatchObject({ connections: 0, servers: 0, pendingJoins: 0 });
    srv.clock.advance(TTL);
    expect(gl().summary()).toEqual({ connections: 0, servers: 0, pendingJoins: 0, reservedIds: 0 });
  }),
);

describe('gamelist: close rules', () => {
  it('closes a non-UTF-8 text frame with 1007 and no frame first', async () => {
    const { peer } = await listed();
    peer.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await peer.waitClose()).code).toBe(1007);
    expect(peer.frames).toEqual([]);
    await until(() => gl().summary().servers === 0);
  });

  const malformed = ['{', 'not json', '{"metadata":{"type":1,"id":1}', '{"metadata":{"type":1,"id":1}} x', "{'metadata':1}", '{"a":1,"a":2}', ''];
  for (const frame of malformed) {
    it(`closes malformed JSON ${JSON.stringify(frame)} with 1007`, async () => {
      const peer = await open();
      peer.send(frame);
      const c = await peer.waitClose();
      expect(c.code).toBe(1007);
      expect(peer.frames).toEqual([]);
    });
  }

  const badMetadata: Array<[string, string]> = [
    ['an array', '[1]'],
    ['a number', '42'],
    ['null', 'null'],
    ['a string', '"x"'],
    ['no metadata', '{"info":{},"regToken":"x"}'],
    ['metadata not an object', '{"metadata":1}'],
    ['metadata an array', '{"metadata":[1,2]}'],
    ['no type', '{"metadata":{"id":1}}'],
    ['no id', '{"metadata":{"type":1}}'],
    ['type as a string', '{"metadata":{"type":"1","id":1}}'],
    ['an unknown type 3', '{"metadata":{"type":3,"id":1}}'],
    ['type 0', '{"metadata":{"type":0,"id":1}}'],
    ['a fractional type', '{"metadata":{"type":1.5,"id":1}}'],
    ['id as a string', '{"metadata":{"type":-2,"id":"1"}}'],
    ['a fractional id', '{"metadata":{"type":-2,"id":1.5}}'],
    ['an id with an exponent', '{"metadata":{"type":-2,"id":1e3}}'],
    ['an id of 2^63', '{"metadata":{"type":-2,"id":9223372036854775808}}'],
    ['an id below -2^63', '{"metadata":{"type":-2,"id":-9223372036854775809}}'],
    ['id null', '{"metadata":{"type":-2,"id":null}}'],
    ['an extra metadata field', '{"metadata":{"type":-2,"id":1,"x":1},"success":true}'],
  ];
  for (const [name, frame] of badMetadata) {
    it(`closes a message with ${name} (invalid metadata) with 1008`, async () => {
      const peer = await open();
      peer.send(frame);
      expect((await peer.waitClose()).code).toBe(1008);
      expect(peer.frames).toEqual([]);
    });
  }

  const good = JSON.stringify(info());
  const wrongSchema: Array<[string, string]> = [
    ['a registration without info', `{"metadata":{"type":1,"id":1},"regToken":"${TOKEN}"}`],
    ['a registration without regToken', `{"metadata":{"type":1,"id":1},"info":${good}}`],
    ['a registration with an extra field', `{"metadata":{"type":1,"id":1},"info":${good},"regToken":"${TOKEN}","x":1}`],
    ['info not an object', `{"metadata":{"type":1,"id":1},"info":"x","regToken":"${TOKEN}"}`],
    ['info without name', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), name: undefined })},"regToken":"${TOKEN}"}`],
    ['info without gameState', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), gameState: undefined })},"regToken":"${TOKEN}"}`],
    ['info with an extra field', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), ip: '1.2.3.4' })},"regToken":"${TOKEN}"}`],
    ['a numeric name', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), name: 5 })},"regToken":"${TOKEN}"}`],
    ['a port of 65536 (UINT16)', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), port: 65536 })},"regToken":"${TOKEN}"}`],
    ['a negative port', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), port: -1 })},"regToken":"${TOKEN}"}`],
    ['a port as a string', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), port: '80' })},"regToken":"${TOKEN}"}`],
    ['curPlayers of 2^31 (INT32)', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), curPlayers: 2 ** 31 })},"regToken":"${TOKEN}"}`],
    ['maxPlayers below -2^31', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), maxPlayers: -(2 ** 31) - 1 })},"regToken":"${TOKEN}"}`],
    ['a fractional maxPlayers', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), maxPlayers: 1.5 })},"regToken":"${TOKEN}"}`],
    ['gameState as a boolean', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), gameState: true })},"regToken":"${TOKEN}"}`],
    ['a numeric password', `{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), password: 5 })},"regToken":"${TOKEN}"}`],
    ['a numeric regToken', `{"metadata":{"type":1,"id":1},"info":${good},"regToken":5}`],
    ['a response without success', '{"metadata":{"type":-2,"id":1}}'],
    ['a response with success as a string', '{"metadata":{"type":-2,"id":1},"success":"true"}'],
    ['a response with an extra field', '{"metadata":{"type":-2,"id":1},"success":true,"x":1}'],
    ['a response whose error is a string', '{"metadata":{"type":-2,"id":1},"success":false,"error":"no"}'],
    ['a response whose error has no msg', '{"metadata":{"type":-2,"id":1},"success":false,"error":{"type":1}}'],
    ['a response whose error.type is a string', '{"metadata":{"type":-2,"id":1},"success":false,"error":{"type":"1","msg":"x"}}'],
    ['a response whose error has an extra field', '{"metadata":{"type":-2,"id":1},"success":false,"error":{"type":1,"msg":"x","y":1}}'],
    ['a join request (type 2) from a GS', '{"metadata":{"type":2,"id":1},"sessionToken":"a","username":"b","clantag":"c","conv":1}'],
  ];
  for (const [name, frame] of wrongSchema) {
    it(`closes ${name} (wrong schema) with 1008`, async () => {
      const peer = await open();
      peer.send(frame);
      expect((await peer.waitClose()).code).toBe(1008);
      expect(peer.frames).toEqual([]);
    });
  }

  it('closes a binary frame with 1003', async () => {
    const { peer } = await listed();
    peer.ws.send(Buffer.from(regFrame()), { binary: true });
    expect((await peer.waitClose()).code).toBe(1003);
    expect(peer.frames).toEqual([]);
  });

  it('removes the entry at once when a bad frame closes a listed server', async () => {
    const { peer } = await listed();
    expect((await list()).total).toBe(1);
    peer.send('{');
    expect((await peer.waitClose()).code).toBe(1007);
    expect(gl().summary().servers).toBe(0);
    expect((await list()).total).toBe(0);
  });

  it('ignores a response whose metadata.id matches no pending request, and stays open', async () => {
    const { peer } = await listed();
    peer.send('{"metadata":{"type":-2,"id":424242},"success":true}');
    peer.send('{"metadata":{"type":-2,"id":9223372036854775807},"success":false,"error":{"type":1,"msg":"x"}}');
    peer.send('{"metadata":{"type":-1,"id":7},"success":true}');
    await roundTrip(peer);
    expect(peer.isClosed).toBe(false);
    expect(gl().summary().servers).toBe(1);
  });

  it('closes null for the optional password or error field with 1008 (null is not a STRING or an object)', async () => {
    const a = await open();
    a.send(`{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info(), password: null })},"regToken":"${TOKEN}"}`);
    expect((await a.waitClose()).code).toBe(1008);
    const b = await open();
    b.send('{"metadata":{"type":-2,"id":1},"success":true,"error":null}');
    expect((await b.waitClose()).code).toBe(1008);
  });
});

describe('gamelist: INT64 ids', () => {
  for (const id of ['0', '9007199254740993', '9223372036854775807', '-1', '-9223372036854775808', '-0']) {
    it(`echoes metadata.id ${id} byte for byte`, async () => {
      const peer = await open();
      peer.send(regFrame({}, TOKEN, id));
      const raw = await peer.nextRaw();
      expect(raw.startsWith(`{"metadata":{"type":-1,"id":${id}},"success":true`)).toBe(true);
      // And an error response too.
      peer.send(regFrame({}, 'wrong', id));
      expect(await peer.nextRaw()).toBe(`{"metadata":{"type":-1,"id":${id}},"success":false,"error":{"type":1,"msg":"Invalid registration token"}}`);
    });
  }

  it("sends its own join request ids as INT64 and matches the answer exactly (2^63-1, then it wraps to 1)", async () => {
    const { peer, id } = await listed();
    gl().setNextRequestId(2n ** 63n - 1n);
    const pending = join(id);
    const raw = await peer.nextRaw();
    expect(raw).toMatch(/^\{"metadata":\{"type":2,"id":9223372036854775807\},/);
    // A GS that rounds the id through a double (9223372036854775808) does not match.
    peer.send('{"metadata":{"type":-2,"id":9223372036854775806},"success":false}');
    peer.send('{"metadata":{"type":-2,"id":9223372036854775807},"success":true}');
    const res = await pending;
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ success: true });
    const second = join(id);
    expect(await peer.nextRaw()).toMatch(/^\{"metadata":\{"type":2,"id":1\},/);
    peer.send('{"metadata":{"type":-2,"id":1},"success":true}');
    expect((await second).statusCode).toBe(200);
  });
});

describe('gamelist: registration', () => {
  it('answers a valid registration with success and a server_id, and lists the server', async () => {
    const peer = await open();
    peer.send(regFrame({ name: 'First' }, TOKEN, 5));
    const raw = await peer.nextRaw();
    const r = JSON.parse(raw) as Response;
    expect(r).toEqual({ metadata: { type: -1, id: 5 }, success: true, server_id: expect.any(String) });
    const l = await list();
    expect(l.servers.map((s) => s.server_id)).toEqual([r.server_id]);
  });

  it('accepts any of the configured regTokens', async () => {
    const peer = await open();
    expect((await register(peer, {}, TOKEN_B)).success).toBe(true);
  });

  it('answers an invalid token with error type 1 and leaves the server unlisted', async () => {
    const peer = await open();
    const r = await register(peer, {}, 'wrong');
    expect(r).toEqual({ metadata: { type: -1, id: expect.any(Number) }, success: false, error: { type: 1, msg: 'Invalid registration token' } });
    expect(gl().summary().servers).toBe(0);
    expect((await list()).total).toBe(0);
  });

  it('closes with 1008 after maxFailedRegistrations (5) invalid tokens', async () => {
    const peer = await open();
    for (let i = 0; i < 4; i++) expect((await register(peer, {}, 'wrong')).error?.type).toBe(1);
    expect(peer.isClosed).toBe(false);
    expect((await register(peer, {}, 'wrong')).error?.type).toBe(1);
    expect((await peer.waitClose()).code).toBe(1008);
  });

  it('honours a configured maxFailedRegistrations', async () => {
    await restart({ maxFailedRegistrations: 1 });
    const peer = await open();
    expect((await register(peer, {}, 'wrong')).error?.type).toBe(1);
    expect((await peer.waitClose()).code).toBe(1008);
  });

  it('refuses past maxServers with error type 2 (not counted as a failure)', async () => {
    await restart({ maxServers: 2 });
    const a = await listed({ port: 1 });
    await listed({ port: 2 });
    const c = await open();
    for (let i = 0; i < 6; i++) {
      expect(await register(c, { port: 3 })).toEqual({
        metadata: { type: -1, id: expect.any(Number) },
        success: false,
        error: { type: 2, msg: 'Server limit reached' },
      });
    }
    expect(c.isClosed).toBe(false);
    a.peer.close();
    await until(() => gl().summary().servers === 1);
    expect((await register(c, { port: 3 })).success).toBe(true);
  });

  it('refuses past maxServersPerIp with error type 2', async () => {
    await restart({ maxServersPerIp: 2 });
    await listed({ port: 1 });
    await listed({ port: 2 });
    const c = await open();
    expect((await register(c, { port: 3 })).error).toEqual({ type: 2, msg: 'Server limit reached' });
    expect(gl().summary().servers).toBe(2);
  });

  it('refreshes the entry on re-registration: new info, no server_id, same id on the list', async () => {
    const { peer, id } = await listed({ curPlayers: 1 });
    const r = await register(peer, { curPlayers: 9, map: 'mp_rise' });
    expect(r).toEqual({ metadata: { type: -1, id: expect.any(Number) }, success: true });
    nextSecond();
    const l = await list();
    expect(l.servers).toEqual([expect.objectContaining({ server_id: id, curPlayers: 9, map: 'mp_rise' })]);
    expect(gl().summary().servers).toBe(1);
  });

  it('removes an entry not refreshed for registrationTtl, and the socket may list it again', async () => {
    const { peer, id } = await listed();
    await tick(TTL - 1);
    expect(gl().summary().servers).toBe(1);
    await tick(1);
    expect(gl().summary().servers).toBe(0);
    expect((await list()).total).toBe(0);
    expect(peer.isClosed).toBe(false);
    const r = await register(peer);
    expect(r.success).toBe(true);
    expect(gl().summary().servers).toBe(1);
    nextSecond();
    expect((await list()).servers.map((s) => s.server_id)).toEqual([id]);
  });

  it('a refresh restarts the TTL', async () => {
    const { peer } = await listed();
    await tick(20_000);
    await roundTrip(peer);
    await tick(20_000);
    expect(gl().summary().servers).toBe(1);
    await tick(TTL - 20_000);
    expect(gl().summary().servers).toBe(0);
    expect(peer.isClosed).toBe(false);
  });

  it('keeps the server_id when the GS reconnects with the same regToken, name and port within the TTL', async () => {
    const a = await listed({ name: 'Keep', port: 4000 });
    a.peer.close();
    await until(() => gl().summary().servers === 0);
    h.srv.clock.advance(TTL - 1);
    const b = await open();
    const r = await register(b, { name: 'Keep', port: 4000, curPlayers: 0 });
    expect(r.server_id).toBe(a.id);
  });

  it('gives a new server_id after the TTL, or with another token, name or port', async () => {
    const a = await listed({ name: 'Keep', port: 4000 });
    a.peer.close();
    await until(() => gl().summary().servers === 0);
    const other = await open();
    expect((await register(other, { name: 'Keep', port: 4001 })).server_id).not.toBe(a.id);
    expect((await register(await open(), { name: 'Keep2', port: 4000 })).server_id).not.toBe(a.id);
    expect((await register(await open(), { name: 'Keep', port: 4000 }, TOKEN_B)).server_id).not.toBe(a.id);
    await tick(TTL);
    expect(gl().summary().reservedIds).toBe(0);
    expect(gl().summary().connections).toBe(3);
    expect((await register(await open(), { name: 'Keep', port: 4000 })).server_id).not.toBe(a.id);
  });

  it('does not give a disconnected server_id to the same regToken, name and port from another address', async () => {
    const a = await listed({ name: 'Keep', port: 4000 });
    a.peer.close();
    await until(() => gl().summary().servers === 0);
    // Another game server that knows the token, name and port, from 127.0.0.2.
    const thief = await open({ localAddress: '127.0.0.2' });
    const r = await register(thief, { name: 'Keep', port: 4000 });
    expect(r.success).toBe(true);
    expect(r.server_id).not.toBe(a.id);
    // The real one, back from its own address within the TTL, still gets its id.
    const back = await open();
    expect((await register(back, { name: 'Keep', port: 4000 })).server_id).toBe(a.id);
  });

  it('gives two live sockets with the same name and port different server_ids', async () => {
    const a = await listed({ name: 'Twin', port: 5 });
    const b = await listed({ name: 'Twin', port: 5 });
    expect(a.id).not.toBe(b.id);
  });

  it('removes the entry at once when the socket closes, even from a built snapshot', async () => {
    const { peer, id } = await listed();
    expect((await list()).servers.map((s) => s.server_id)).toEqual([id]);
    peer.close();
    await until(() => gl().summary().servers === 0);
    // No clock advance: the snapshot was built this second, yet the server is gone.
    expect(await list()).toEqual({ servers: [], total: 0, nextCursor: null });
    const c = await h.srv.muster.http.inject({ method: 'GET', url: '/client/servers' });
    expect(c.json()).toEqual([]);
    expect((await join(id)).statusCode).toBe(404);
  });
});

describe('gamelist: liveness', () => {
  it('sends a ping frame every pingInterval', async () => {
    const peer = await open();
    let pings = 0;
    peer.ws.on('ping', () => pings++);
    h.srv.clock.advance(9_999);
    await peer.quiet();
    expect(pings).toBe(0);
    h.srv.clock.advance(1);
    await until(() => pings === 1);
    h.srv.clock.advance(10_000);
    await until(() => pings === 2);
  });

  it('closes with 1001 and removes the entry when no pong comes within pongTimeout', async () => {
    const { peer } = await listed({}, { autoPong: false });
    let pings = 0;
    peer.ws.on('ping', () => pings++);
    h.srv.clock.advance(10_000);
    await until(() => pings === 1);
    h.srv.clock.advance(19_999);
    await peer.quiet();
    expect(peer.isClosed).toBe(false);
    expect(gl().summary().servers).toBe(1);
    h.srv.clock.advance(1);
    expect(gl().summary().servers).toBe(0);
    const c = await peer.waitClose();
    expect(c.code).toBe(1001);
  });

  it('keeps a server that answers pings', async () => {
    const { peer } = await listed();
    const conn = h.srv.muster.transport.connections()[0];
    for (let i = 1; i <= 5; i++) {
      h.srv.clock.advance(10_000);
      await until(() => conn?.lastSeen === h.srv.clock.now());
    }
    await roundTrip(peer); // also refreshes the registration
    h.srv.clock.advance(20_000);
    expect(peer.isClosed).toBe(false);
  });
});

describe('gamelist: player join', () => {
  it('forwards a join as type 2 with a fresh UINT32 conv and answers {success, conv}', async () => {
    const { peer, id } = await listed();
    const pending = join(id, { sessionToken: 'session', username: 'pilot', clantag: 'NS' });
    const raw = await peer.nextRaw();
    const req = JSON.parse(raw) as { metadata: { type: number; id: number }; conv: number };
    expect(req).toEqual({ metadata: { type: 2, id: expect.any(Number) }, sessionToken: 'session', username: 'pilot', clantag: 'NS', conv: expect.any(Number) });
    expect(Number.isInteger(req.conv) && req.conv >= 0 && req.conv <= 2 ** 32 - 1).toBe(true);
    const reqId = /"id":(-?\d+)/.exec(raw)?.[1];
    peer.send(`{"metadata":{"type":-2,"id":${reqId}},"success":true}`);
    const res = await pending;
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ success: true, conv: req.conv });
  });

  it('passes a refusal through: {success: false, conv, error}', async () => {
    const { peer, id } = await listed();
    const pending = join(id);
    const raw = await peer.nextRaw();
    const reqId = /"id":(-?\d+)/.exec(raw)?.[1];
    peer.send(`{"metadata":{"type":-2,"id":${reqId}},"success":false,"error":{"type":7,"msg":"server full"}}`);
    const res = await pending;
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ success: false, conv: (JSON.parse(raw) as { conv: number }).conv, error: { type: 7, msg: 'server full' } });
  });

  it('answers 504 when the GS does not answer within joinTimeout, and ignores the late answer', async () => {
    const { peer, id } = await listed();
    const pending = join(id);
    const raw = await peer.nextRaw();
    h.srv.clock.advance(4_999);
    expect(gl().summary().pendingJoins).toBe(1);
    h.srv.clock.advance(1);
    const res = await pending;
    expect(res.statusCode).toBe(504);
    expect(res.json()).toMatchObject({ success: false, error: { type: 'TIMEOUT' } });
    const reqId = /"id":(-?\d+)/.exec(raw)?.[1];
    peer.send(`{"metadata":{"type":-2,"id":${reqId}},"success":true}`);
    await roundTrip(peer);
    expect(peer.isClosed).toBe(false);
  });

  it('answers 404 for an unknown server', async () => {
    const res = await join('no-such-server');
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ success: false, error: { type: 'NOT_FOUND' } });
  });

  it('answers 403 for a wrong or missing password, and the GS never hears of it', async () => {
    const { peer, id } = await listed({ password: 'hunter2' });
    const wrong = await join(id, { sessionToken: 's', username: 'u', clantag: '', password: 'nope' });
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json()).toMatchObject({ success: false, error: { type: 'WRONG_PASSWORD' } });
    expect((await join(id, { sessionToken: 's', username: 'u', clantag: '' })).statusCode).toBe(403);
    expect(await peer.quiet()).toBe(true);
    // The right password goes through, and is not forwarded.
    const ok = join(id, { sessionToken: 's', username: 'u', clantag: '', password: 'hunter2' });
    const raw = await peer.nextRaw();
    expect(raw).not.toContain('hunter2');
    const reqId = /"id":(-?\d+)/.exec(raw)?.[1];
    peer.send(`{"metadata":{"type":-2,"id":${reqId}},"success":true}`);
    expect((await ok).statusCode).toBe(200);
  });

  it('answers 400 for a body without sessionToken or username', async () => {
    const { peer, id } = await listed();
    for (const body of [{ username: 'u' }, { sessionToken: 's' }, { sessionToken: 1, username: 'u' }, { sessionToken: 's', username: 'u', clantag: 5 }]) {
      expect((await join(id, body)).statusCode).toBe(400);
    }
    expect(await peer.quiet()).toBe(true);
  });

  it('answers 502 when the GS goes away before answering', async () => {
    const { peer, id } = await listed();
    const pending = join(id);
    await peer.nextRaw();
    peer.close();
    const res = await pending;
    expect(res.statusCode).toBe(502);
    expect(res.json()).toMatchObject({ success: false, error: { type: 'SERVER_GONE' } });
  });

  it('picks a conv unique among live joins', async () => {
    const { peer, id } = await listed();
    const pending = Array.from({ length: 40 }, () => join(id));
    const frames: string[] = [];
    for (let i = 0; i < 40; i++) frames.push(await peer.nextRaw());
    const convs = frames.map((f) => (JSON.parse(f) as { conv: number }).conv);
    expect(new Set(convs).size).toBe(40);
    for (const f of frames) peer.send(`{"metadata":{"type":-2,"id":${/"id":(-?\d+)/.exec(f)?.[1]}},"success":true}`);
    const answers = await Promise.all(pending);
    expect(answers.map((a) => (a.json() as { conv: number }).conv).sort()).toEqual([...convs].sort());
  });

  it('ignores an answer from another GS that carries the pending id', async () => {
    const a = await listed({ port: 1 });
    const b = await listed({ port: 2 });
    const pending = join(a.id);
    const raw = await a.peer.nextRaw();
    const reqId = /"id":(-?\d+)/.exec(raw)?.[1];
    b.peer.send(`{"metadata":{"type":-2,"id":${reqId}},"success":false}`);
    await roundTrip(b.peer);
    expect(gl().summary().pendingJoins).toBe(1);
    a.peer.send(`{"metadata":{"type":-2,"id":${reqId}},"success":true}`);
    expect((await pending).json()).toMatchObject({ success: true });
  });

  it('works over real HTTP too', async () => {
    const { peer, id } = await listed();
    const pending = fetch(`${h.srv.httpBase}/v2/servers/${id}/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sessionToken: 's', username: 'u', clantag: 'c' }),
    });
    const raw = await peer.nextRaw();
    peer.send(`{"metadata":{"type":-2,"id":${/"id":(-?\d+)/.exec(raw)?.[1]}},"success":true}`);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ success: true, conv: expect.any(Number) });
  });
});

describe('gamelist: public list', () => {
  beforeEach(async () => {
    await restart({ maxServersPerIp: 100 });
  });

  it('lists entries in the contract shape, never with password, token or address', async () => {
    await listed({ name: 'Secret', password: 'pw', port: 4242 });
    const res = await h.srv.muster.http.inject({ method: 'GET', url: '/v2/servers' });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { servers: Array<Record<string, unknown>> };
    expect(body).toEqual({ servers: [expect.any(Object)], total: 1, nextCursor: null });
    const s = body.servers[0] as Record<string, unknown>;
    expect(Object.keys(s).sort()).toEqual(
      ['server_id', 'name', 'desc', 'map', 'playlist', 'curPlayers', 'maxPlayers', 'hasPassword', 'gameState', 'lastSeen'].sort(),
    );
    expect(s).toMatchObject({ name: 'Secret', hasPassword: true, lastSeen: new Date(h.srv.clock.now()).toISOString() });
    expect(res.body).not.toContain('pw"');
    expect(res.body).not.toContain(TOKEN);
    expect(res.body).not.toContain('127.0.0.1');
    expect(res.body).not.toContain('4242');
  });

  it('filters by map, playlist, gameState, hasPassword, notFull, notEmpty and q', async () => {
    await listed({ name: 'Alpha Base', map: 'm1', playlist: 'tdm', gameState: 1, curPlayers: 0, maxPlayers: 8 });
    await listed({ name: 'Bravo', desc: 'friendly ALPHA squad', map: 'm2', playlist: 'ctf', gameState: 2, curPlayers: 8, maxPlayers: 8 });
    await listed({ name: 'Charlie', map: 'm1', playlist: 'ctf', gameState: 1, curPlayers: 4, maxPlayers: 8, password: 'x' });
    const names = async (q: string): Promise<string[]> => (await list(q)).servers.map((s) => s.name as string).sort();
    expect(await names('?map=m1')).toEqual(['Alpha Base', 'Charlie']);
    expect(await names('?playlist=ctf')).toEqual(['Bravo', 'Charlie']);
    expect(await names('?gameState=2')).toEqual(['Bravo']);
    expect(await names('?hasPassword=true')).toEqual(['Charlie']);
    expect(await names('?hasPassword=false')).toEqual(['Alpha Base', 'Bravo']);
    expect(await names('?notFull=true')).toEqual(['Alpha Base', 'Charlie']);
    expect(await names('?notEmpty=true')).toEqual(['Bravo', 'Charlie']);
    expect(await names('?q=alpha')).toEqual(['Alpha Base', 'Bravo']);
    expect(await names('?map=m1&notEmpty=true')).toEqual(['Charlie']);
    expect((await list('?map=nowhere')).total).toBe(0);
  });

  it('sorts by players by default with full servers last, and by name or newest on request', async () => {
    await listed({ name: 'full', curPlayers: 10, maxPlayers: 10 });
    h.srv.clock.advance(1);
    await listed({ name: 'few', curPlayers: 1, maxPlayers: 10 });
    h.srv.clock.advance(1);
    await listed({ name: 'many', curPlayers: 9, maxPlayers: 10 });
    h.srv.clock.advance(1);
    await listed({ name: 'Empty', curPlayers: 0, maxPlayers: 10 });
    nextSecond();
    expect((await list()).servers.map((s) => s.name)).toEqual(['many', 'few', 'Empty', 'full']);
    expect((await list('?sort=name')).servers.map((s) => s.name)).toEqual(['Empty', 'few', 'many', 'full']);
    expect((await list('?sort=newest')).servers.map((s) => s.name)).toEqual(['Empty', 'many', 'few', 'full']);
  });

  it('pages with limit and cursor, with nextCursor null on the last page', async () => {
    for (let i = 0; i < 7; i++) await listed({ name: `s${i}`, port: i, curPlayers: i });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = await list(`?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.total).toBe(7);
      seen.push(...page.servers.map((s) => s.name as string));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect(seen).toEqual(['s6', 's5', 's4', 's3', 's2', 's1', 's0']);
  });

  it('answers 400 for bad parameters', async () => {
    for (const q of ['?limit=0', '?limit=abc', '?sort=ping', '?cursor=garbage', '?hasPassword=maybe', '?gameState=x', '?map=a&map=b']) {
      const res = await h.srv.muster.http.inject({ method: 'GET', url: `/v2/servers${q}` });
      expect(res.statusCode, q).toBe(400);
    }
    const page = await list('?limit=1');
    expect(page.nextCursor).toBeNull();
  });

  it('serves /client/servers in the Northstar shape', async () => {
    const { id } = await listed({ name: 'NS', desc: 'd', map: 'mp_box', playlist: 'ps', curPlayers: 2, maxPlayers: 12, password: 'p' });
    const res = await h.srv.muster.http.inject({ method: 'GET', url: '/client/servers' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('application/json');
    expect(res.json()).toEqual([{ id, name: 'NS', description: 'd', map: 'mp_box', playlist: 'ps', playerCount: 2, maxPlayers: 12, hasPassword: true }]);
    const filtered = await h.srv.muster.http.inject({ method: 'GET', url: '/client/servers?map=other' });
    expect(filtered.json()).toEqual([]);
  });

  it('rebuilds the snapshot at most once a second', async () => {
    await listed({ name: 'a', port: 1 });
    const before = gl().snapshotInfo().builds;
    expect((await list()).total).toBe(1);
    expect(gl().snapshotInfo().builds).toBe(before + 1);
    for (let i = 2; i <= 6; i++) {
      await listed({ name: `n${i}`, port: i });
      expect((await list()).total).toBe(1);
      await h.srv.muster.http.inject({ method: 'GET', url: '/client/servers' });
    }
    expect(gl().snapshotInfo().builds).toBe(before + 1);
    h.srv.clock.advance(999);
    expect((await list()).total).toBe(1);
    h.srv.clock.advance(1);
    expect((await list()).total).toBe(6);
    expect(gl().snapshotInfo().builds).toBe(before + 2);
    // Nothing changed: no rebuild however long it has been.
    h.srv.clock.advance(5000);
    await list();
    expect(gl().snapshotInfo().builds).toBe(before + 2);
  });

  it('rate-limits the public routes per IP with one shared budget (429)', async () => {
    await restart({ publicRatePerIpPerMinute: 3 });
    expect((await h.srv.muster.http.inject({ method: 'GET', url: '/v2/servers' })).statusCode).toBe(200);
    expect((await h.srv.muster.http.inject({ method: 'GET', url: '/client/servers' })).statusCode).toBe(200);
    expect((await join('nope')).statusCode).toBe(404);
    const limited = await h.srv.muster.http.inject({ method: 'GET', url: '/v2/servers' });
    expect(limited.statusCode).toBe(429);
    expect((await h.srv.muster.http.inject({ method: 'GET', url: '/client/servers' })).statusCode).toBe(429);
    expect((await join('nope')).statusCode).toBe(429);
    // Another address has its own budget.
    expect((await h.srv.muster.http.inject({ method: 'GET', url: '/v2/servers', remoteAddress: '10.0.0.9' })).statusCode).toBe(200);
    h.srv.clock.advance(60_000);
    expect((await h.srv.muster.http.inject({ method: 'GET', url: '/v2/servers' })).statusCode).toBe(200);
  });

  it('shows admins each server with its address and connection id', async () => {
    const { id } = await listed({ name: 'Admin view', port: 7777, password: 'pw' });
    const unauth = await h.srv.muster.http.inject({ method: 'GET', url: '/api/v1/gamelist/servers' });
    expect(unauth.statusCode).toBe(401);
    const res = await h.srv.muster.http.inject({ method: 'GET', url: '/api/v1/gamelist/servers', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.statusCode).toBe(200);
    const conn = h.srv.muster.transport.connections()[0];
    expect(res.json()).toEqual([
      expect.objectContaining({ server_id: id, name: 'Admin view', address: '127.0.0.1', port: 7777, connectionId: conn?.id, hasPassword: true }),
    ]);
    expect(res.body).not.toContain('"pw"');
    expect(res.body).not.toContain(TOKEN);
  });

  it('reports listed servers, registrations, joins and list requests in /metrics', async () => {
    const { peer, id } = await listed();
    await register(await open(), {}, 'wrong');
    await register(await open(), {}, TOKEN);
    await register(peer);
    await list();
    await h.srv.muster.http.inject({ method: 'GET', url: '/client/servers' });
    await join('nope');
    const pending = join(id);
    const raw = await peer.nextRaw();
    peer.send(`{"metadata":{"type":-2,"id":${/"id":(-?\d+)/.exec(raw)?.[1]}},"success":true}`);
    await pending;
    const text = (await h.srv.muster.http.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toContain('muster_gamelist_servers 2');
    expect(text).toContain('muster_gamelist_registrations_total{result="listed"} 2');
    expect(text).toContain('muster_gamelist_registrations_total{result="refreshed"} 1');
    expect(text).toContain('muster_gamelist_registrations_total{result="invalid_token"} 1');
    expect(text).toContain('muster_gamelist_joins_total{result="success"} 1');
    expect(text).toContain('muster_gamelist_joins_total{result="not_found"} 1');
    expect(text).toContain('muster_gamelist_list_requests_total{route="/v2/servers"} 1');
    expect(text).toContain('muster_gamelist_list_requests_total{route="/client/servers"} 1');
  });

  it('shows listed servers in the admin status summary', async () => {
    await listed();
    const res = await h.srv.muster.http.inject({ method: 'GET', url: '/api/v1/status', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect((res.json() as { dialects: Record<string, unknown> }).dialects.gamelist).toMatchObject({ path: '/v2/server/ws', servers: 1, connections: 1 });
  });
});

describe('gamelist: secrets reload', () => {
  it('takes new regTokens on reload (SIGHUP) without dropping listed servers', async () => {
    const { peer } = await listed();
    const c = h.srv.muster.config;
    h.srv.muster.reloadSecrets({ ...c, dialects: { ...c.dialects, gamelist: { ...c.dialects.gamelist, regTokens: ['rotated'] } } });
    expect(gl().summary().servers).toBe(1);
    expect((await register(peer, {}, TOKEN)).error?.type).toBe(1);
    expect((await register(peer, {}, 'rotated')).success).toBe(true);
    expect(peer.isClosed).toBe(false);
  });
});

describe('gamelist: shutdown and kick', () => {
  it('kicks a game server with 1008 through the admin API and unlists it at once', async () => {
    const { peer } = await listed();
    const conn = h.srv.muster.transport.connections()[0];
    const res = await h.srv.muster.http.inject({
      method: 'DELETE',
      url: `/api/v1/connections/${conn?.id}`,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(res.statusCode).toBe(200);
    expect(gl().summary().servers).toBe(0);
    expect(await peer.waitClose()).toEqual({ code: 1008, reason: 'kicked by an operator' });
  });

  it('says goodbye with 1001 at shutdown and answers pending joins with 503', async () => {
    const { peer, id } = await listed();
    const pending = join(id);
    await peer.nextRaw();
    const closed = peer.waitClose();
    const stopping = h.srv.muster.stop();
    expect((await closed).code).toBe(1001);
    await stopping;
    const res = await pending;
    expect([502, 503]).toContain(res.statusCode);
    await start();
  });
});

describe('gamelist: registration deadline', () => {
  it('closes a socket that answers pings but never registers with 1001 after registrationTtl', async () => {
    const peer = await open();
    await tick(TTL - 10_000);
    await peer.quiet();
    expect(peer.isClosed).toBe(false);
    h.srv.clock.advance(9_999);
    await peer.quiet();
    expect(peer.isClosed).toBe(false);
    h.srv.clock.advance(1);
    const c = await peer.waitClose();
    expect(c).toEqual({ code: 1001, reason: `no registration within ${TTL} ms` });
  });

  it('counts a refused registration as none, and a listing as one', async () => {
    const refused = await open();
    expect((await register(refused, {}, 'not-a-token')).error?.type).toBe(1);
    const { peer } = await listed();
    await tick(TTL - 10_000);
    await roundTrip(peer); // refreshes the entry
    h.srv.clock.advance(10_000);
    expect((await refused.waitClose()).code).toBe(1001);
    await roundTrip(peer);
    expect(peer.isClosed).toBe(false);
  });
});
