/**
 * Conformance tests for the gamelist dialect, written from the contract alone
 * (specs/gamelist.md, specs/operations.md, seeds/004-gamelist.md, issue 4), over real
 * sockets and real HTTP, with the ManualClock for every timeout.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { GamelistDialect } from '../../src/dialects/gamelist/dialect.js';
import { GamelistHarness, regFrame as reg, type Info, type RegResponse } from '../support/harness/gamelist.js';
import type { PeerOptions } from '../support/harness/harness.js';
import { ADMIN_TOKEN, RawPeer, settle, until, type TestServer } from '../support/server.js';

const TOKEN = 'reg-secret-tok';
const PASSWORD = 'hunter2-secret';

const h = new GamelistHarness([TOKEN]);

const baseInfo = (over: Partial<Info> = {}): Info => ({
  name: 'Test server',
  desc: 'A description',
  port: 37015,
  map: 'mp_glitch',
  playlist: 'tdm',
  curPlayers: 0,
  maxPlayers: 16,
  gameState: 1,
  ...over,
});

/** Sends `text` on a fresh socket: it is closed with 1008 and a reason, and nothing is answered. */
async function closedWith1008(text: string): Promise<void> {
  await start();
  const peer = await open();
  peer.send(text);
  const c = await peer.waitClose();
  expect(c.code).toBe(1008);
  expect(c.reason.length).toBeGreaterThan(0);
  expect(peer.frames).toEqual([]);
}

const start = (gamelist: Record<string, unknown> = {}, top: Record<string, unknown> = {}): Promise<TestServer> => h.start(gamelist, top);
const s = (): TestServer => h.srv;
const open = (opts: PeerOptions = {}): Promise<RawPeer> => h.open(opts);

let nextId = 1000;

/** The raw text of the first `"id": <int>` in a frame. */
function rawId(raw: string): string {
  const m = /"id"\s*:\s*(-?\d+)/.exec(raw);
  if (!m?.[1]) throw new Error(`no id in ${raw}`);
  return m[1];
}

function regFrame(info: Info | Record<string, unknown>, opts: { id?: string; token?: string } = {}): string {
  return reg(info, opts.token ?? TOKEN, opts.id ?? String(nextId++));
}

async function sendReg(peer: RawPeer, info: Info, opts: { id?: string; token?: string } = {}): Promise<RegResponse> {
  peer.send(regFrame(info, opts));
  return peer.next<RegResponse>();
}

async function register(over: Partial<Info> = {}): Promise<{ peer: RawPeer; id: string }> {
  const peer = await open();
  const r = await sendReg(peer, baseInfo(over));
  expect(r.success).toBe(true);
  expect(r.server_id).toBeDefined();
  return { peer, id: String(r.server_id) };
}

interface Entry {
  server_id: string;
  name: string;
  desc: string;
  map: string;
  playlist: string;
  curPlayers: number;
  maxPlayers: number;
  hasPassword: boolean;
  gameState: number;
  region?: string;
  lastSeen: number | string;
}
interface ListBody {
  servers: Entry[];
  total: number;
  nextCursor: string | null;
}

async function getList(query = ''): Promise<ListBody> {
  const r = await fetch(`${s().httpBase}/v2/servers${query ? `?${query}` : ''}`);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type') ?? '').toMatch(/application\/json/);
  return (await r.json()) as ListBody;
}

/** Moves past the snapshot's minimum rebuild interval, then lists. */
async function freshList(query = ''): Promise<ListBody> {
  s().clock.advance(1000);
  return getList(query);
}

function join(serverId: string, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${s().httpBase}/v2/servers/${encodeURIComponent(serverId)}/join`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

const player = { sessionToken: 'sess-abc', username: 'pilot', clantag: 'TAG' };

/** Proves every frame sent before it was processed: a re-registration's answer. */
async function alive(peer: RawPeer, info: Info = baseInfo()): Promise<void> {
  const r = await sendReg(peer, info);
  expect(r.metadata.type).toBe(-1);
  expect(r.success).toBe(true);
}

async function expectClosedAtOnce(peer: RawPeer, code: number): Promise<void> {
  const c = await peer.waitClose();
  expect(c.code).toBe(code);
  expect(peer.frames).toEqual([]);
}

function pingCounter(peer: RawPeer): { count: number } {
  const c = { count: 0 };
  peer.ws.on('ping', () => c.count++);
  return c;
}

afterEach(() =>
  h.teardown((server) => {
    // Past every TTL, nothing the dialect counts is left behind.
    server.clock.advance(120_000);
    const summary = server.muster.dialect('gamelist')?.summary?.() ?? {};
    for (const [k, v] of Object.entries(summary)) {
      if (typeof v === 'number') expect({ [k]: v }).toEqual({ [k]: 0 });
    }
  }, 10_000),
);

// ---------------------------------------------------------------------------------

describe('gamelist: socket close rules', () => {
  it('accepts the upgrade at /v2/server/ws and answers in UTF-8 text frames', async () => {
    await start();
    const peer = await open();
    let binary: boolean | undefined;
    peer.ws.on('message', (_d, isBinary) => (binary = isBinary));
    const r = await sendReg(peer, baseInfo({ name: 'Ünïcødé ✓ 服务器' }));
    expect(r.success).toBe(true);
    expect(binary).toBe(false);
    const list = await freshList();
    expect(list.servers[0]?.name).toBe('Ünïcødé ✓ 服务器');
  });

  it('closes a non-UTF-8 text frame with 1007', async () => {
    await start();
    const peer = await open();
    peer.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    await expectClosedAtOnce(peer, 1007);
  });

  it('closes a non-UTF-8 text frame with 1007 after registration, and the entry goes', async () => {
    await start();
    const { peer } = await register();
    expect((await freshList()).total).toBe(1);
    peer.ws.send(Buffer.from([0xc3, 0x28]), { binary: false });
    expect((await peer.waitClose()).code).toBe(1007);
    expect((await freshList()).total).toBe(0);
  });

  it.each([['{oops'], ['{"metadata":{"type":1,"id":1}'], [''], ['undefined'], ["{'a':1}"]])(
    'closes malformed JSON %j with 1007',
    async (text) => {
      await start();
      const peer = await open();
      peer.send(text);
      await expectClosedAtOnce(peer, 1007);
    },
  );

  it('tells deeply nested JSON apart: valid JSON is 1008 (no metadata), unclosed nesting is 1007', async () => {
    await start();
    // Deep, but under the pre-registration frame cap (16 KiB): the nesting decides.
    const deep = await open();
    deep.send(`${'['.repeat(5_000)}${']'.repeat(5_000)}`);
    expect((await deep.waitClose()).code).toBe(1008);
    const deepInfo = await open();
    deepInfo.send(`{"metadata":{"type":1,"id":1},"info":${'['.repeat(5_000)}${']'.repeat(5_000)},"regToken":"${TOKEN}"}`);
    expect((await deepInfo.waitClose()).code).toBe(1008);
    const unclosed = await open();
    unclosed.send('['.repeat(5_000));
    expect((await unclosed.waitClose()).code).toBe(1007);
    // Over the cap, a frame is refused for its size before it is parsed (operations.md).
    const huge = await open();
    huge.send(`${'['.repeat(200_000)}${']'.repeat(200_000)}`);
    expect((await huge.waitClose()).code).toBe(1009);
  });

  it('closes a binary frame with 1003', async () => {
    await start();
    const peer = await open();
    peer.ws.send(Buffer.from(regFrame(baseInfo())), { binary: true });
    const c = await peer.waitClose();
    expect(c.code).toBe(1003);
    expect(c.reason.length).toBeGreaterThan(0);
    expect(peer.frames).toEqual([]);
  });

  const info = JSON.stringify(baseInfo());
  const rest = `"info":${info},"regToken":"${TOKEN}"`;
  it.each([
    ['no metadata', `{${rest}}`],
    ['metadata null', `{"metadata":null,${rest}}`],
    ['metadata a string', `{"metadata":"x",${rest}}`],
    ['metadata an array', `{"metadata":[1,1],${rest}}`],
    ['type missing', `{"metadata":{"id":1},${rest}}`],
    ['type a string', `{"metadata":{"type":"1","id":1},${rest}}`],
    ['type a fraction', `{"metadata":{"type":1.5,"id":1},${rest}}`],
    ['type unknown', `{"metadata":{"type":99,"id":1},${rest}}`],
    ['type null', `{"metadata":{"type":null,"id":1},${rest}}`],
    ['id missing', `{"metadata":{"type":1},${rest}}`],
    ['id a string', `{"metadata":{"type":1,"id":"1"},${rest}}`],
    ['id a fraction', `{"metadata":{"type":1,"id":1.5},${rest}}`],
    ['id null', `{"metadata":{"type":1,"id":null},${rest}}`],
    ['id a boolean', `{"metadata":{"type":1,"id":true},${rest}}`],
    ['id 2^63 (beyond INT64)', `{"metadata":{"type":1,"id":9223372036854775808},${rest}}`],
    ['id -2^63-1 (beyond INT64)', `{"metadata":{"type":1,"id":-9223372036854775809},${rest}}`],
    ['a JSON array', `[1,2,3]`],
    ['a JSON number', `42`],
    ['a JSON string', `"hello"`],
    ['JSON null', `null`],
  ])('closes a message with invalid metadata (%s) with 1008', (_what, text) => closedWith1008(text));

  const good = baseInfo();
  const without = (k: keyof Info): Record<string, unknown> => {
    const o: Record<string, unknown> = { ...good };
    delete o[k];
    return o;
  };
  const reg = (body: Record<string, unknown>): string => JSON.stringify({ metadata: { type: 1, id: 7 }, ...body });
  it.each([
    ['info missing', reg({ regToken: TOKEN })],
    ['regToken missing', reg({ info: good })],
    ['regToken a number', reg({ info: good, regToken: 5 })],
    ['an extra top-level field', reg({ info: good, regToken: TOKEN, extra: 1 })],
    ['an extra info field', reg({ info: { ...good, ip: '1.2.3.4' }, regToken: TOKEN })],
    ['info null', reg({ info: null, regToken: TOKEN })],
    ['info an array', reg({ info: [], regToken: TOKEN })],
    ['name missing', reg({ info: without('name'), regToken: TOKEN })],
    ['desc missing', reg({ info: without('desc'), regToken: TOKEN })],
    ['port missing', reg({ info: without('port'), regToken: TOKEN })],
    ['map missing', reg({ info: without('map'), regToken: TOKEN })],
    ['playlist missing', reg({ info: without('playlist'), regToken: TOKEN })],
    ['curPlayers missing', reg({ info: without('curPlayers'), regToken: TOKEN })],
    ['maxPlayers missing', reg({ info: without('maxPlayers'), regToken: TOKEN })],
    ['gameState missing', reg({ info: without('gameState'), regToken: TOKEN })],
    ['name a number', reg({ info: { ...good, name: 5 }, regToken: TOKEN })],
    ['desc null', reg({ info: { ...good, desc: null }, regToken: TOKEN })],
    ['map a number', reg({ info: { ...good, map: 1 }, regToken: TOKEN })],
    ['playlist an object', reg({ info: { ...good, playlist: {} }, regToken: TOKEN })],
    ['port a string', reg({ info: { ...good, port: '37015' }, regToken: TOKEN })],
    ['port 65536 (beyond UINT16)', reg({ info: { ...good, port: 65536 }, regToken: TOKEN })],
    ['port -1 (beyond UINT16)', reg({ info: { ...good, port: -1 }, regToken: TOKEN })],
    ['port a fraction', reg({ info: { ...good, port: 80.5 }, regToken: TOKEN })],
    ['curPlayers 2^31 (beyond INT32)', reg({ info: { ...good, curPlayers: 2147483648 }, regToken: TOKEN })],
    ['maxPlayers -2^31-1 (beyond INT32)', reg({ info: { ...good, maxPlayers: -2147483649 }, regToken: TOKEN })],
    ['curPlayers a fraction', reg({ info: { ...good, curPlayers: 1.5 }, regToken: TOKEN })],
    ['gameState a string', reg({ info: { ...good, gameState: '1' }, regToken: TOKEN })],
    ['gameState a boolean', reg({ info: { ...good, gameState: true }, regToken: TOKEN })],
    ['password a number', reg({ info: { ...good, password: 1234 }, regToken: TOKEN })],
    ['password null', reg({ info: { ...good, password: null }, regToken: TOKEN })],
    ['a join response with error null', JSON.stringify({ metadata: { type: -2, id: 5 }, success: true, error: null })],
    ['a join response without success', JSON.stringify({ metadata: { type: -2, id: 5 } })],
    ['a join response with success a string', JSON.stringify({ metadata: { type: -2, id: 5 }, success: 'yes' })],
    ['a join response with an extra field', JSON.stringify({ metadata: { type: -2, id: 5 }, success: true, conv: 1 })],
    [
      'a join response with a mistyped error',
      JSON.stringify({ metadata: { type: -2, id: 5 }, success: false, error: { type: 'x', msg: 'm' } }),
    ],
  ])('closes valid metadata with the wrong schema (%s) with 1008', (_what, text) => closedWith1008(text));

  it('accepts the edges of each range (port 0 and 65535, INT32 extremes, empty strings)', async () => {
    await start();
    const peer = await open();
    for (const over of [
      { port: 0 },
      { port: 65535, curPlayers: 2147483647, maxPlayers: 2147483647, gameState: -2147483648 },
      { name: '', desc: '', map: '', playlist: '' },
    ]) {
      const r = await sendReg(peer, baseInfo(over));
      expect(r.success).toBe(true);
    }
  });

  it('ignores a response whose metadata.id matches no pending request', async () => {
    await start();
    const { peer } = await register();
    peer.send('{"metadata":{"type":-2,"id":123456789},"success":true}');
    peer.send('{"metadata":{"type":-2,"id":9223372036854775807},"success":false,"error":{"type":1,"msg":"no"}}');
    await alive(peer);
    expect(peer.isClosed).toBe(false);
    expect((await freshList()).total).toBe(1);
  });

  it('a peer thrown out does not disturb another peer', async () => {
    await start();
    const a = await register({ name: 'A', port: 1 });
    const b = await register({ name: 'B', port: 2 });
    b.peer.send('{nope');
    expect((await b.peer.waitClose()).code).toBe(1007);
    await alive(a.peer, baseInfo({ name: 'A', port: 1 }));
    const list = await freshList();
    expect(list.servers.map((x) => x.name)).toEqual(['A']);
  });
});

describe('gamelist: INT64 metadata ids', () => {
  it.each([['0'], ['9007199254740993'], ['9223372036854775807'], ['-1'], ['-9223372036854775808'], ['12345']])(
    'echoes id %s byte-for-byte in the registration response',
    async (id) => {
      await start();
      const peer = await open();
      peer.send(regFrame(baseInfo(), { id }));
      const raw = await peer.nextRaw();
      expect(rawId(raw)).toBe(id);
      expect(raw).not.toContain(`"${id}"`);
      const parsed = JSON.parse(raw) as RegResponse;
      expect(parsed.metadata.type).toBe(-1);
      expect(parsed.success).toBe(true);
    },
  );

  it('echoes a big id byte-for-byte in an error response too', async () => {
    await start();
    const peer = await open();
    peer.send(regFrame(baseInfo(), { id: '9223372036854775807', token: 'wrong' }));
    const raw = await peer.nextRaw();
    expect(rawId(raw)).toBe('9223372036854775807');
    expect((JSON.parse(raw) as RegResponse).success).toBe(false);
  });

  it("the MS's own join request ids are INT64 integers, and the GS's reply with the same id settles the join", async () => {
    await start();
    const { peer, id } = await register();
    const pending = join(id, player);
    const raw = await peer.nextRaw();
    const reqId = rawId(raw);
    expect(reqId).toMatch(/^-?\d+$/);
    const big = BigInt(reqId);
    expect(big <= 2n ** 63n - 1n && big >= -(2n ** 63n)).toBe(true);
    peer.send(`{"metadata":{"type":-2,"id":${reqId}},"success":true}`);
    const r = await pending;
    expect(r.status).toBe(200);
    expect(((await r.json()) as { success: boolean }).success).toBe(true);
  });
});

describe('gamelist: registration', () => {
  it('answers success with the same id, success: true, and a server_id as the only extra field', async () => {
    await start();
    const peer = await open();
    peer.send(regFrame(baseInfo(), { id: '77' }));
    const r = await peer.next<RegResponse>();
    expect(r).toEqual({ metadata: { type: -1, id: 77 }, success: true, server_id: expect.anything() });
    expect(['string', 'number']).toContain(typeof r.server_id);
    const list = await freshList();
    expect(list.servers.map((x) => x.server_id)).toEqual([r.server_id]);
  });

  it('gives distinct servers distinct server_ids', async () => {
    await start();
    const a = await register({ name: 'A', port: 1 });
    const b = await register({ name: 'B', port: 2 });
    const c = await register({ name: 'A', port: 2 });
    expect(new Set([a.id, b.id, c.id]).size).toBe(3);
  });

  it('refuses an invalid token with error type 1 "Invalid registration token" and leaves the server unlisted', async () => {
    await start();
    const peer = await open();
    peer.send(regFrame(baseInfo(), { id: '5', token: 'not-a-token' }));
    const r = await peer.next<RegResponse>();
    expect(r).toEqual({
      metadata: { type: -1, id: 5 },
      success: false,
      error: { type: 1, msg: 'Invalid registration token' },
    });
    expect(peer.isClosed).toBe(false);
    expect((await freshList()).total).toBe(0);
    // The same socket may then register with a good token.
    await alive(peer);
    expect((await freshList()).total).toBe(1);
  });

  it('accepts any of several configured regTokens', async () => {
    await start({ regTokens: ['first', 'second'] });
    const peer = await open();
    expect((await sendReg(peer, baseInfo(), { token: 'second' })).success).toBe(true);
    expect((await sendReg(peer, baseInfo(), { token: 'first' })).success).toBe(true);
    expect((await sendReg(peer, baseInfo(), { token: TOKEN })).success).toBe(false);
  });

  it('closes with 1008 after maxFailedRegistrations (default 5) failures, not before', async () => {
    await start();
    const peer = await open();
    for (let i = 0; i < 4; i++) {
      const r = await sendReg(peer, baseInfo(), { token: 'bad' });
      expect(r.error).toEqual({ type: 1, msg: 'Invalid registration token' });
    }
    expect(peer.isClosed).toBe(false);
    peer.send(regFrame(baseInfo(), { token: 'bad' }));
    const c = await peer.waitClose();
    expect(c.code).toBe(1008);
    expect(c.reason.length).toBeGreaterThan(0);
    // At most the fifth refusal arrives before the close; never a success.
    for (const f of peer.frames) expect((JSON.parse(f) as RegResponse).success).toBe(false);
    expect((await freshList()).total).toBe(0);
  });

  it('honours a configured maxFailedRegistrations', async () => {
    await start({ maxFailedRegistrations: 2 });
    const peer = await open();
    expect((await sendReg(peer, baseInfo(), { token: 'bad' })).success).toBe(false);
    peer.send(regFrame(baseInfo(), { token: 'bad' }));
    expect((await peer.waitClose()).code).toBe(1008);
  });

  it('refuses past maxServers with error type 2 "Server limit reached"', async () => {
    await start({ maxServers: 2 });
    const a = await register({ name: 'A' });
    await register({ name: 'B' });
    const peer = await open();
    peer.send(regFrame(baseInfo({ name: 'C' }), { id: '9' }));
    expect(await peer.next()).toEqual({
      metadata: { type: -1, id: 9 },
      success: false,
      error: { type: 2, msg: 'Server limit reached' },
    });
    expect(peer.isClosed).toBe(false);
    // A listed server may still refresh at the limit.
    await alive(a.peer, baseInfo({ name: 'A2' }));
    const list = await freshList();
    expect(list.total).toBe(2);
    expect(list.servers.map((x) => x.name).sort()).toEqual(['A2', 'B']);
    // Once a slot frees, the refused socket gets in.
    a.peer.close();
    await a.peer.waitClose();
    await until(() => s().muster.transport.size === 2);
    expect((await sendReg(peer, baseInfo({ name: 'C' }))).success).toBe(true);
  });

  it('refuses past maxServersPerIp from one address with error type 2', async () => {
    await start({ maxServersPerIp: 1 });
    await register({ name: 'A' });
    const peer = await open();
    const r = await sendReg(peer, baseInfo({ name: 'B' }));
    expect(r.success).toBe(false);
    expect(r.error).toEqual({ type: 2, msg: 'Server limit reached' });
    expect((await freshList()).servers.map((x) => x.name)).toEqual(['A']);
  });

  it('re-registration on the same socket refreshes the entry and updates its info, keeping the server_id', async () => {
    await start({ pingInterval: 3_600_000, pongTimeout: 3_600_000 });
    const { peer, id } = await register({ name: 'Old', curPlayers: 1 });
    const before = (await freshList()).servers[0];
    s().clock.advance(20_000);
    const r = await sendReg(peer, baseInfo({ name: 'New', curPlayers: 5, map: 'mp_rise' }));
    expect(r.success).toBe(true);
    if (r.server_id !== undefined) expect(String(r.server_id)).toBe(id);
    s().clock.advance(20_000); // 40 s since the first registration, 20 s since the refresh
    const list = await freshList();
    expect(list.total).toBe(1);
    const e = list.servers[0];
    expect(e).toMatchObject({ server_id: id, name: 'New', curPlayers: 5, map: 'mp_rise' });
    expect(String(e?.lastSeen)).not.toBe(String(before?.lastSeen));
  });

  it('removes an entry not refreshed for registrationTtl (default 30 s)', async () => {
    await start({ pingInterval: 3_600_000, pongTimeout: 3_600_000 });
    const { id } = await register();
    s().clock.advance(28_000);
    expect((await freshList()).servers.map((x) => x.server_id)).toEqual([id]); // 29 s
    s().clock.advance(1_500);
    expect((await freshList()).total).toBe(0); // 31.5 s
    expect((await join(id, player)).status).toBe(404);
  });

  it('honours a configured registrationTtl', async () => {
    await start({ registrationTtl: 5000, pingInterval: 3_600_000, pongTimeout: 3_600_000 });
    await register();
    s().clock.advance(3000);
    expect((await freshList()).total).toBe(1);
    s().clock.advance(2000);
    expect((await freshList()).total).toBe(0);
  });

  it('a GS that reconnects with the same regToken, name and port within the TTL keeps its server_id', async () => {
    await start();
    const first = await register({ name: 'Stable', port: 4242 });
    first.peer.close();
    await first.peer.waitClose();
    await until(() => s().muster.transport.size === 0);
    s().clock.advance(10_000);
    const again = await register({ name: 'Stable', port: 4242, curPlayers: 3 });
    expect(again.id).toBe(first.id);
    const other = await register({ name: 'Stable', port: 4243 });
    expect(other.id).not.toBe(first.id);
    const list = await freshList();
    expect(list.servers.map((x) => x.server_id).sort()).toEqual([first.id, other.id].sort());
  });
});

describe('gamelist: removal and liveness', () => {
  it('removes the entry at once when the socket closes, without waiting for the TTL', async () => {
    await start();
    const { peer, id } = await register();
    expect((await freshList()).total).toBe(1);
    peer.close();
    await peer.waitClose();
    await until(() => s().muster.transport.size === 0);
    expect((await join(id, player)).status).toBe(404);
    const list = await freshList();
    expect(list.total).toBe(0);
    expect(list.servers).toEqual([]);
  });

  it('sends pings every pingInterval (10 s)', async () => {
    await start();
    const { peer } = await register();
    const pings = pingCounter(peer);
    s().clock.advance(9_000);
    await peer.quiet();
    expect(pings.count).toBe(0);
    s().clock.advance(1_000);
    await until(() => pings.count === 1);
    s().clock.advance(10_000);
    await until(() => pings.count === 2);
    expect(peer.isClosed).toBe(false);
  });

  it('with no pong within pongTimeout (20 s) it sends Close 1001 and removes the server', async () => {
    await start();
    const peer = await open({ autoPong: false });
    expect((await sendReg(peer, baseInfo())).success).toBe(true);
    expect((await freshList()).total).toBe(1); // t = 1 s
    const pings = pingCounter(peer);
    s().clock.advance(9_000); // t = 10 s: the first ping
    await until(() => pings.count === 1);
    s().clock.advance(19_000); // t = 29 s: within pongTimeout of the ping
    await peer.quiet();
    expect(peer.isClosed).toBe(false);
    s().clock.advance(1_001); // t = 30 s: 20 s after the unanswered ping
    const c = await peer.waitClose();
    expect(c.code).toBe(1001);
    expect(c.reason.length).toBeGreaterThan(0);
    expect((await freshList()).total).toBe(0);
  });

  it('a GS that answers pings and re-registers stays connected and listed', async () => {
    await start();
    const { peer, id } = await register();
    const pings = pingCounter(peer);
    for (let t = 1; t <= 12; t++) {
      s().clock.advance(5_000);
      if (t % 2 === 0) await until(() => pings.count === t / 2);
      await settle([peer]);
      if (t % 4 === 0) await alive(peer); // refresh every 20 s
    }
    expect(peer.isClosed).toBe(false);
    expect((await freshList()).servers.map((x) => x.server_id)).toEqual([id]);
  });
});

describe('gamelist: player join', () => {
  it('forwards a type 2 request with exactly the contract fields and a UINT32 conv; the HTTP answer is {success, conv}', async () => {
    await start();
    const { peer, id } = await register();
    const pending = join(id, player);
    const raw = await peer.nextRaw();
    const req = JSON.parse(raw) as Record<string, unknown> & { metadata: { type: number }; conv: number };
    expect(Object.keys(req).sort()).toEqual(['clantag', 'conv', 'metadata', 'sessionToken', 'username']);
    expect(req.metadata.type).toBe(2);
    expect(Object.keys(req.metadata).sort()).toEqual(['id', 'type']);
    expect(req).toMatchObject(player);
    expect(Number.isInteger(req.conv)).toBe(true);
    expect(req.conv).toBeGreaterThanOrEqual(0);
    expect(req.conv).toBeLessThanOrEqual(0xffffffff);
    peer.send(`{"metadata":{"type":-2,"id":${rawId(raw)}},"success":true}`);
    const r = await pending;
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ success: true, conv: req.conv });
  });

  it('relays a GS refusal as {success: false, conv, error}', async () => {
    await start();
    const { peer, id } = await register();
    const pending = join(id, player);
    const raw = await peer.nextRaw();
    const conv = (JSON.parse(raw) as { conv: number }).conv;
    peer.send(`{"metadata":{"type":-2,"id":${rawId(raw)}},"success":false,"error":{"type":3,"msg":"Server full"}}`);
    const r = await pending;
    const body = (await r.json()) as Record<string, unknown>;
    expect(body).toEqual({ success: false, conv, error: { type: 3, msg: 'Server full' } });
    expect(peer.isClosed).toBe(false);
  });

  it('gives each live join a distinct conv and settles each by its own id', async () => {
    await start();
    const a = await register({ name: 'A', port: 1 });
    const b = await register({ name: 'B', port: 2 });
    const onA = [0, 1, 2, 3].map((i) => join(a.id, { ...player, username: `a${i}` }));
    const onB = [0, 1].map((i) => join(b.id, { ...player, username: `b${i}` }));
    const rawA = await Promise.all(onA.map(() => a.peer.nextRaw()));
    const rawB = await Promise.all(onB.map(() => b.peer.nextRaw()));
    const reqs = [...rawA, ...rawB].map((raw) => ({ raw, ...(JSON.parse(raw) as { conv: number; username: string }) }));
    expect(new Set(reqs.map((x) => x.conv)).size).toBe(6);
    expect(new Set(rawA.map(rawId)).size).toBe(4);
    // Answer in reverse order: odd usernames refused.
    for (const [peer, list] of [
      [a.peer, reqs.slice(0, 4)],
      [b.peer, reqs.slice(4)],
    ] as const) {
      for (const q of [...list].reverse()) {
        const ok = !q.username.endsWith('1') && !q.username.endsWith('3');
        peer.send(
          `{"metadata":{"type":-2,"id":${rawId(q.raw)}},"success":${ok}${ok ? '' : ',"error":{"type":9,"msg":"no"}'}}`,
        );
      }
    }
    const bodies = (await Promise.all([...onA, ...onB].map(async (p) => (await p).json()))) as Array<{
      success: boolean;
      conv: number;
    }>;
    const byName = new Map(reqs.map((q) => [q.username, q.conv]));
    ['a0', 'a1', 'a2', 'a3', 'b0', 'b1'].forEach((n, i) => {
      expect(bodies[i]?.conv).toBe(byName.get(n));
      expect(bodies[i]?.success).toBe(!n.endsWith('1') && !n.endsWith('3'));
    });
  });

  it('answers 504 when the GS does not answer within joinTimeout (5 s), then ignores the late answer', async () => {
    await start();
    const { peer, id } = await register();
    let settled = false;
    const pending = join(id, player).then((r) => {
      settled = true;
      return r;
    });
    const raw = await peer.nextRaw();
    s().clock.advance(4_900);
    // A join is answered in the same turn as its deadline fires: still pending on the server means not answered.
    expect(s().muster.dialect<GamelistDialect>('gamelist')?.summary().pendingJoins).toBe(1);
    expect(settled).toBe(false);
    s().clock.advance(100);
    const r = await pending;
    expect(r.status).toBe(504);
    peer.send(`{"metadata":{"type":-2,"id":${rawId(raw)}},"success":true}`);
    await alive(peer);
    expect(peer.isClosed).toBe(false);
  });

  it('honours a configured joinTimeout', async () => {
    await start({ joinTimeout: 1000 });
    const { peer, id } = await register();
    const pending = join(id, player);
    await peer.nextRaw();
    s().clock.advance(1000);
    expect((await pending).status).toBe(504);
  });

  it('answers 403 to a wrong or missing password, and the GS never hears of it', async () => {
    await start();
    const { peer, id } = await register({ password: PASSWORD });
    for (const body of [{ ...player, password: 'wrong' }, player, { ...player, password: '' }]) {
      const r = await join(id, body);
      expect(r.status).toBe(403);
    }
    expect(await peer.quiet()).toBe(true);
  });

  it('forwards a join with the right password, without the password', async () => {
    await start();
    const { peer, id } = await register({ password: PASSWORD });
    const pending = join(id, { ...player, password: PASSWORD });
    const raw = await peer.nextRaw();
    expect(raw).not.toContain(PASSWORD);
    expect(raw).not.toContain('password');
    peer.send(`{"metadata":{"type":-2,"id":${rawId(raw)}},"success":true}`);
    expect((await pending).status).toBe(200);
  });

  it('ignores a join response from a socket other than the one asked', async () => {
    await start();
    const a = await register({ name: 'A', port: 1 });
    const b = await register({ name: 'B', port: 2 });
    let settled = false;
    const pending = join(a.id, player).then((r) => {
      settled = true;
      return r;
    });
    const raw = await a.peer.nextRaw();
    b.peer.send(`{"metadata":{"type":-2,"id":${rawId(raw)}},"success":true}`);
    await alive(b.peer, baseInfo({ name: 'B', port: 2 }));
    expect(b.peer.isClosed).toBe(false);
    expect(settled).toBe(false);
    a.peer.send(`{"metadata":{"type":-2,"id":${rawId(raw)}},"success":false,"error":{"type":4,"msg":"banned"}}`);
    const r = await pending;
    expect(((await r.json()) as { success: boolean }).success).toBe(false);
  });

  it('answers 404 for an unknown server', async () => {
    await start();
    await register();
    const r = await join('no-such-server', player);
    expect(r.status).toBe(404);
    const r2 = await join('123456', player);
    expect(r2.status).toBe(404);
  });

  it('answers a 4xx to a join body missing sessionToken, and forwards nothing', async () => {
    await start();
    const { peer, id } = await register();
    const r = await join(id, { username: 'x', clantag: 'y' });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(await peer.quiet()).toBe(true);
  });
});

describe('gamelist: public list', () => {
  it('lists each entry with the contract fields and never the password, regToken or address', async () => {
    await start();
    await register({ name: 'Locked', password: PASSWORD, port: 31337, curPlayers: 2, gameState: 3 });
    await register({ name: 'Open', desc: 'come in', port: 31338 });
    const r = await fetch(`${s().httpBase}/v2/servers`);
    const text = await r.text();
    s().clock.advance(1000);
    const list = await getList();
    const allowed = [
      'server_id',
      'name',
      'desc',
      'map',
      'playlist',
      'curPlayers',
      'maxPlayers',
      'hasPassword',
      'gameState',
      'region',
      'lastSeen',
    ];
    const required = allowed.filter((k) => k !== 'region');
    expect(Object.keys(list).sort()).toEqual(['nextCursor', 'servers', 'total']);
    expect(list.total).toBe(2);
    expect(list.nextCursor).toBeNull();
    for (const e of list.servers) {
      for (const k of required) expect(e).toHaveProperty(k);
      for (const k of Object.keys(e)) expect(allowed).toContain(k);
      expect(['number', 'string']).toContain(typeof e.lastSeen);
    }
    const locked = list.servers.find((e) => e.name === 'Locked');
    expect(locked).toMatchObject({
      desc: 'A description',
      map: 'mp_glitch',
      playlist: 'tdm',
      curPlayers: 2,
      maxPlayers: 16,
      hasPassword: true,
      gameState: 3,
    });
    expect(list.servers.find((e) => e.name === 'Open')).toMatchObject({ hasPassword: false, desc: 'come in' });
    const again = JSON.stringify(await getList());
    for (const t of [text, again]) {
      expect(t).not.toContain(PASSWORD);
      expect(t).not.toContain(TOKEN);
      expect(t).not.toContain('127.0.0.1');
      expect(t).not.toContain('31337');
    }
  });

  it('sorts by players by default (most first), with full servers last', async () => {
    await start();
    await register({ name: 'p3', curPlayers: 3 });
    await register({ name: 'full16', curPlayers: 16, maxPlayers: 16 });
    await register({ name: 'p0', curPlayers: 0 });
    await register({ name: 'p10', curPlayers: 10 });
    await register({ name: 'full8', curPlayers: 8, maxPlayers: 8 });
    for (const q of ['', 'sort=players']) {
      const names = (await freshList(q)).servers.map((e) => e.name);
      expect(names.slice(0, 3)).toEqual(['p10', 'p3', 'p0']);
      expect(names.slice(3).sort()).toEqual(['full16', 'full8']);
    }
  });

  it('filters by map, playlist, gameState, hasPassword, notFull, notEmpty and q', async () => {
    await start();
    await register({ name: 'Alpha one', map: 'mp_rise', playlist: 'ctf', gameState: 1, curPlayers: 0 });
    await register({ name: 'Bravo', desc: 'alpha-ish desc', map: 'mp_glitch', playlist: 'tdm', gameState: 2, curPlayers: 4 });
    await register({ name: 'Charlie', map: 'mp_rise', playlist: 'tdm', gameState: 2, curPlayers: 16, password: 'x' });
    await register({ name: 'Delta', map: 'mp_box', playlist: 'ps', gameState: 3, curPlayers: 1, password: 'y' });
    s().clock.advance(1000);
    const names = async (q: string): Promise<string[]> => {
      const l = await getList(q);
      expect(l.total).toBe(l.servers.length);
      return l.servers.map((e) => e.name).sort();
    };
    expect(await names('map=mp_rise')).toEqual(['Alpha one', 'Charlie']);
    expect(await names('playlist=tdm')).toEqual(['Bravo', 'Charlie']);
    expect(await names('gameState=2')).toEqual(['Bravo', 'Charlie']);
    expect(await names('hasPassword=true')).toEqual(['Charlie', 'Delta']);
    expect(await names('hasPassword=false')).toEqual(['Alpha one', 'Bravo']);
    expect(await names('notFull=true')).toEqual(['Alpha one', 'Bravo', 'Delta']);
    expect(await names('notEmpty=true')).toEqual(['Bravo', 'Charlie', 'Delta']);
    expect(await names('q=Charl')).toEqual(['Charlie']);
    expect(await names('q=ish%20desc')).toEqual(['Bravo']); // a description substring
    expect(await names('q=alpha')).toContain('Bravo');
    expect(await names('q=Alpha')).toContain('Alpha one');
    expect(await names('map=mp_rise&playlist=tdm')).toEqual(['Charlie']);
    expect(await names('notFull=true&notEmpty=true&hasPassword=false')).toEqual(['Bravo']);
    expect(await names('map=nothing')).toEqual([]);
  });

  it('pages with limit and cursor: no overlap, no gap, nextCursor null on the last page', async () => {
    await start({ maxServersPerIp: 10_000 });
    const n = 230;
    for (let i = 0; i < n; i += 46) {
      await Promise.all(
        Array.from({ length: 46 }, (_, j) =>
          register({
            name: `srv-${i + j}`,
            port: 1000 + i + j,
            curPlayers: (i + j) % 17,
            maxPlayers: 16,
            map: (i + j) % 2 ? 'mp_rise' : 'mp_glitch',
          }),
        ),
      );
    }
    const whole = await freshList('limit=1000');
    expect(whole.total).toBe(n);
    expect(whole.servers).toHaveLength(n);
    expect(whole.nextCursor).toBeNull();
    for (const q of ['', 'map=mp_rise']) {
      const all = q ? await getList(`${q}&limit=1000`) : whole;
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page: ListBody = await getList(
          [q, 'limit=37', cursor !== null ? `cursor=${encodeURIComponent(cursor)}` : ''].filter(Boolean).join('&'),
        );
        expect(page.total).toBe(all.total);
        if (page.nextCursor !== null) expect(page.servers).toHaveLength(37);
        else expect(page.servers.length).toBeLessThanOrEqual(37);
        seen.push(...page.servers.map((e) => e.server_id));
        cursor = page.nextCursor;
        pages++;
        expect(pages).toBeLessThan(20);
      } while (cursor !== null);
      expect(seen).toEqual(all.servers.map((e) => e.server_id));
      expect(new Set(seen).size).toBe(all.total);
    }
    // The whole list is sorted: non-full by players, most first, then full servers.
    const full = (e: Entry): boolean => e.curPlayers >= e.maxPlayers;
    const firstFull = whole.servers.findIndex(full);
    expect(whole.servers.slice(firstFull).every(full)).toBe(true);
    const open = whole.servers.slice(0, firstFull).map((e) => e.curPlayers);
    expect(open).toEqual([...open].sort((a, b) => b - a));
  });

  it('limit defaults to 100 and is at most 1000', async () => {
    await start({ maxServersPerIp: 10_000 }, { limits: { handshakesPerIpPerMinute: 100_000 } });
    const n = 1050;
    for (let i = 0; i < n; i += 150) {
      await Promise.all(Array.from({ length: Math.min(150, n - i) }, (_, j) => register({ name: `s${i + j}`, port: i + j })));
    }
    const def = await freshList();
    expect(def.total).toBe(n);
    expect(def.servers).toHaveLength(100);
    expect(def.nextCursor).not.toBeNull();
    const r = await fetch(`${s().httpBase}/v2/servers?limit=5000`);
    if (r.status === 200) {
      const big = (await r.json()) as ListBody;
      expect(big.servers).toHaveLength(1000);
      expect(big.nextCursor).not.toBeNull();
    } else {
      expect(r.status).toBe(400);
    }
    const max = await getList('limit=1000');
    expect(max.servers).toHaveLength(1000);
    const rest = await getList(`limit=1000&cursor=${encodeURIComponent(max.nextCursor ?? '')}`);
    expect(rest.servers).toHaveLength(50);
    expect(rest.nextCursor).toBeNull();
    // /client/servers carries the same data.
    const client = (await (await fetch(`${s().httpBase}/client/servers`)).json()) as unknown[];
    expect(client).toHaveLength(n);
  });

  it('GET /client/servers returns the Northstar shape', async () => {
    await start();
    const a = await register({ name: 'NS', desc: 'northstar', map: 'mp_angel_city', playlist: 'aitdm', curPlayers: 7, maxPlayers: 12, password: PASSWORD });
    await register({ name: 'NS2', port: 2 });
    s().clock.advance(1000);
    const r = await fetch(`${s().httpBase}/client/servers`);
    expect(r.status).toBe(200);
    const text = await r.text();
    const arr = JSON.parse(text) as Array<Record<string, unknown>>;
    expect(Array.isArray(arr)).toBe(true);
    expect(arr).toHaveLength(2);
    const e = arr.find((x) => x.name === 'NS');
    expect(e).toMatchObject({
      id: a.id,
      name: 'NS',
      description: 'northstar',
      map: 'mp_angel_city',
      playlist: 'aitdm',
      playerCount: 7,
      maxPlayers: 12,
      hasPassword: true,
    });
    for (const x of arr) {
      for (const k of ['id', 'name', 'description', 'map', 'playlist', 'playerCount', 'maxPlayers', 'hasPassword']) {
        expect(x).toHaveProperty(k);
      }
    }
    expect(text).not.toContain(PASSWORD);
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain('127.0.0.1');
  });

  it('serves the list from a snapshot rebuilt at most once a second', async () => {
    await start();
    await register({ name: 'A' });
    expect((await freshList()).servers.map((e) => e.name)).toEqual(['A']);
    await register({ name: 'B', port: 2 });
    // Same instant: still the old snapshot, for both routes.
    expect((await getList()).servers.map((e) => e.name)).toEqual(['A']);
    expect(((await (await fetch(`${s().httpBase}/client/servers`)).json()) as unknown[]).length).toBe(1);
    s().clock.advance(500);
    expect((await getList()).servers.map((e) => e.name)).toEqual(['A']);
    s().clock.advance(500);
    expect((await getList()).servers.map((e) => e.name).sort()).toEqual(['A', 'B']);
  });

  it('answers 429 past publicRatePerIpPerMinute on each public route', async () => {
    await start({ publicRatePerIpPerMinute: 5 });
    const { id } = await register();
    const check = async (call: () => Promise<Response>, okStatus: number): Promise<void> => {
      s().clock.advance(60_001); // a fresh window
      for (let i = 0; i < 5; i++) expect((await call()).status).toBe(okStatus);
      expect((await call()).status).toBe(429);
    };
    await check(() => fetch(`${s().httpBase}/v2/servers`), 200);
    await check(() => fetch(`${s().httpBase}/client/servers`), 200);
    await check(() => join('nope', player), 404);
    // The admin API is not behind it.
    const admin = await fetch(`${s().httpBase}/api/v1/gamelist/servers`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(admin.status).toBe(200);
    void id;
  });

  it('the default publicRatePerIpPerMinute is 1200', async () => {
    await start();
    const statuses: number[] = [];
    for (let i = 0; i < 1201; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(100, 1201 - i) }, () => fetch(`${s().httpBase}/v2/servers?limit=1`).then((r) => r.status)),
      );
      statuses.push(...batch);
    }
    expect(statuses.filter((x) => x === 200)).toHaveLength(1200);
    expect(statuses.filter((x) => x === 429)).toHaveLength(1);
  });
});

describe('gamelist: operations', () => {
  it('on shutdown sends each GS Close 1001 and answers a pending join', async () => {
    const server = await start();
    const { peer, id } = await register();
    const pending = join(id, player);
    await peer.nextRaw();
    const stopping = server.stop();
    const c = await peer.waitClose();
    expect(c.code).toBe(1001);
    const r = await pending.catch(() => undefined);
    if (r) expect(r.status).toBeGreaterThanOrEqual(500);
    await stopping;
    h.release();
  });

  it('reloads regTokens (SIGHUP) without dropping connections', async () => {
    const server = await start();
    const { peer } = await register();
    server.muster.reloadSecrets(
      loadConfig({
        env: {},
        overrides: { admin: { token: ADMIN_TOKEN }, dialects: { gamelist: { enabled: true, regTokens: ['rotated'] } } } as never,
      }),
    );
    expect((await sendReg(peer, baseInfo(), { token: 'rotated' })).success).toBe(true);
    expect((await sendReg(peer, baseInfo())).error).toEqual({ type: 1, msg: 'Invalid registration token' });
    expect(peer.isClosed).toBe(false);
  });
});

describe('gamelist: admin and metrics', () => {
  it('GET /api/v1/gamelist/servers needs the admin token and shows each address', async () => {
    await start();
    await register({ password: PASSWORD });
    const denied = await fetch(`${s().httpBase}/api/v1/gamelist/servers`);
    expect(denied.status).toBe(401);
    const r = await fetch(`${s().httpBase}/api/v1/gamelist/servers`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(text).toContain('127.0.0.1');
    expect(text).not.toContain(PASSWORD);
  });

  it('exposes muster_gamelist_* metrics', async () => {
    await start();
    await register();
    const text = await (await fetch(`${s().httpBase}/metrics`)).text();
    expect(text).toMatch(/muster_gamelist_\w+/);
  });
});
