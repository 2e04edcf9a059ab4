import { describe, expect, it } from 'vitest';
import type { PublicServer, SortOrder } from '../../src/protocols/gamelist/api.js';
import {
  buildSnapshot,
  decodeCursor,
  encodeCursor,
  MATCH_CACHE_SIZE,
  MAX_LIMIT,
  parseFilters,
  parseListQuery,
  queryAll,
  queryPage,
  type ListedServer,
  type Snapshot,
} from '../../src/dialects/gamelist/snapshot.js';
import { mulberry32 as prng } from '../support/random.js';

const MAPS = ['mp_glitch', 'mp_rise', 'mp_box', 'mp_forwardbase_kodai'];
const PLAYLISTS = ['tdm', 'ctf', 'ps', 'lts'];
const T0 = 1_700_000_000_000;

function generate(n: number, seed = 42): ListedServer[] {
  // Seeded, so every run sees the same 10,000 servers.
  const r = prng(seed);
  const out: ListedServer[] = [];
  for (let i = 0; i < n; i++) {
    const maxPlayers = 4 + Math.floor(r() * 13);
    // Plenty of ties on players and names, and a share of full servers.
    const curPlayers = r() < 0.15 ? maxPlayers : Math.floor(r() * maxPlayers);
    const info = {
      name: `${r() < 0.5 ? 'Server' : 'server'} ${Math.floor(r() * 500)}`,
      desc: r() < 0.1 ? 'Hardcore PILOTS only' : 'casual',
      port: 1000 + i,
      map: MAPS[Math.floor(r() * MAPS.length)] as string,
      playlist: PLAYLISTS[Math.floor(r() * PLAYLISTS.length)] as string,
      curPlayers,
      maxPlayers,
      gameState: Math.floor(r() * 3),
      ...(r() < 0.2 ? { password: 'pw' } : {}),
    };
    const registeredAt = T0 + Math.floor(r() * 100_000);
    out.push({ serverId: `id-${i.toString().padStart(5, '0')}-${Math.floor(r() * 1e6)}`, info, registeredAt, lastRefresh: registeredAt + 5 });
  }
  return out;
}

/** An independent reference: filter, then sort with full servers last and server_id breaking ties. */
function reference(servers: ListedServer[], sort: SortOrder, keep: (s: ListedServer) => boolean = () => true): string[] {
  const full = (s: ListedServer): number => (s.info.curPlayers >= s.info.maxPlayers ? 1 : 0);
  return servers
    .filter(keep)
    .sort((a, b) => {
      if (full(a) !== full(b)) return full(a) - full(b);
      let d: number;
      if (sort === 'players') d = b.info.curPlayers - a.info.curPlayers;
      else if (sort === 'newest') d = b.registeredAt - a.registeredAt;
      else {
        const an = a.info.name.toLowerCase();
        const bn = b.info.name.toLowerCase();
        d = an < bn ? -1 : an > bn ? 1 : 0;
      }
      if (d !== 0) return d;
      return a.serverId < b.serverId ? -1 : a.serverId > b.serverId ? 1 : 0;
    })
    .map((s) => s.serverId);
}

function q(params: Record<string, string>) {
  const r = parseListQuery(params);
  if (!r.ok) throw new Error(r.detail);
  return r.value;
}

/** Walks every page; checks each page's size, the total, and that the last page has no cursor. */
function walk(snap: Snapshot, params: Record<string, string>, limit: number): string[] {
  const ids: string[] = [];
  let cursor: string | null = null;
  let total: number | undefined;
  for (let pages = 0; ; pages++) {
    const page = queryPage(snap, q({ ...params, limit: String(limit), ...(cursor ? { cursor } : {}) }));
    total ??= page.total;
    expect(page.total).toBe(total);
    expect(page.servers.length).toBeLessThanOrEqual(limit);
    ids.push(...page.servers.map((s: PublicServer) => s.server_id));
    if (page.nextCursor === null) {
      expect(ids.length).toBe(total);
      return ids;
    }
    expect(page.servers.length).toBe(limit);
    cursor = page.nextCursor;
    if (pages > 20_000) throw new Error('paging does not end');
  }
}

describe('gamelist snapshot: 10,000 generated servers', () => {
  const servers = generate(10_000);
  const snap = buildSnapshot(servers, T0);

  for (const sort of ['players', 'name', 'newest'] as const) {
    for (const limit of [37, 100, 1000]) {
      it(`pages sort=${sort} limit=${limit} without overlap or gap, in order`, () => {
        const ids = walk(snap, { sort }, limit);
        expect(new Set(ids).size).toBe(ids.length);
        expect(ids).toEqual(reference(servers, sort));
      });
    }
  }

  const filters: Array<[Record<string, string>, (s: ListedServer) => boolean]> = [
    [{ map: 'mp_box' }, (s) => s.info.map === 'mp_box'],
    [{ playlist: 'ctf', gameState: '2' }, (s) => s.info.playlist === 'ctf' && s.info.gameState === 2],
    [{ hasPassword: 'true' }, (s) => s.info.password !== undefined],
    [{ hasPassword: 'false', notFull: 'true' }, (s) => s.info.password === undefined && s.info.curPlayers < s.info.maxPlayers],
    [{ notEmpty: 'true' }, (s) => s.info.curPlayers > 0],
    [{ q: 'pilots' }, (s) => s.info.desc.toLowerCase().includes('pilots')],
    [{ q: 'SERVER 12' }, (s) => s.info.name.toLowerCase().includes('server 12')],
    [
      { map: 'mp_rise', notFull: 'true', notEmpty: 'true', q: 'hardcore' },
      (s) => s.info.map === 'mp_rise' && s.info.curPlayers > 0 && s.info.curPlayers < s.info.maxPlayers && s.info.desc.startsWith('Hardcore'),
    ],
  ];
  for (const [params, keep] of filters) {
    it(`filters ${JSON.stringify(params)} and pages through the matches`, () => {
      const expected = reference(servers, 'players', keep);
      expect(expected.length).toBeGreaterThan(0);
      const first = queryPage(snap, q(params));
      expect(first.total).toBe(expected.length);
      expect(first.servers.map((s) => s.server_id)).toEqual(expected.slice(0, 100));
      const limit = expected.length < 200 ? 1 : 250;
      expect(walk(snap, params, limit)).toEqual(expected);
    });
  }

  it('puts every full server after every other one, in each order', () => {
    for (const sort of ['players', 'name', 'newest'] as const) {
      const all = queryAll(snap, {}, sort);
      const firstFull = all.findIndex((s) => s.curPlayers >= s.maxPlayers);
      expect(firstFull).toBeGreaterThan(0);
      expect(all.slice(firstFull).every((s) => s.curPlayers >= s.maxPlayers)).toBe(true);
    }
  });

  it('keeps limit at most 1000', () => {
    const page = queryPage(snap, q({ limit: '5000' }));
    expect(page.servers).toHaveLength(MAX_LIMIT);
    expect(page.total).toBe(10_000);
  });

  it('serves a page without rebuilding anything, fast', () => {
    const t = performance.now();
    for (let i = 0; i < 20; i++) queryPage(snap, q({ sort: 'name', q: 'server 4', notFull: 'true' }));
    // 20 filtered pages over 10,000 servers; generous, only to catch an accidental per-request sort.
    expect(performance.now() - t).toBeLessThan(1000);
  });

  it('skips servers that left after the build, in pages and totals', () => {
    const ref = reference(servers, 'players');
    const goneIds = new Set(ref.slice(0, 10));
    const page = queryPage(snap, q({ limit: '5' }), goneIds);
    expect(page.total).toBe(10_000 - 10);
    expect(page.servers.map((s) => s.server_id)).toEqual(ref.slice(10, 15));
  });

  it('continues correctly from a cursor whose server has left', () => {
    const ref = reference(servers, 'name');
    const p1 = queryPage(snap, q({ sort: 'name', limit: '10' }));
    const gone = new Set([ref[9] as string, ref[10] as string]);
    const p2 = queryPage(snap, q({ sort: 'name', limit: '10', cursor: p1.nextCursor as string }), gone);
    expect(p2.servers.map((s) => s.server_id)).toEqual(ref.slice(11, 21));
  });
});

describe('gamelist snapshot: query parameters', () => {
  it('defaults to sort=players and limit=100', () => {
    expect(parseListQuery({})).toEqual({ ok: true, value: { filters: {}, sort: 'players', limit: 100 } });
  });

  it('parses booleans as true/false/1/0 and lower-cases q', () => {
    expect(parseFilters({ hasPassword: '1', notFull: 'false', notEmpty: 'true', q: 'AbC', gameState: '-2' })).toEqual({
      ok: true,
      value: { filters: { hasPassword: true, notFull: false, notEmpty: true, q: 'abc', gameState: -2 }, sort: 'players' },
    });
  });

  it('refuses bad values', () => {
    for (const params of [{ limit: '0' }, { limit: '-1' }, { limit: '1.5' }, { sort: 'ping' }, { notFull: 'yes' }, { gameState: '1.5' }, { map: ['a', 'b'] }]) {
      expect(parseListQuery(params).ok, JSON.stringify(params)).toBe(false);
    }
  });

  it('refuses a cursor from another sort, or one it did not give out', () => {
    const c = encodeCursor('players', { full: 0, key: -3, id: 'x' });
    expect(decodeCursor(c, 'players')).toEqual({ full: 0, key: -3, id: 'x' });
    expect(typeof decodeCursor(c, 'name')).toBe('string');
    expect(parseListQuery({ sort: 'name', cursor: c }).ok).toBe(false);
    for (const bad of ['!!!', Buffer.from('[1,2]').toString('base64url'), Buffer.from('["players",2,1,"x"]').toString('base64url'), encodeCursor('name', { full: 0, key: 5, id: 'x' })]) {
      expect(parseListQuery({ cursor: bad, sort: 'name' }).ok, bad).toBe(false);
    }
  });

  it('caches filter results per snapshot, keeping the most recently used', () => {
    const snap = buildSnapshot(generate(200, 7), T0);
    const first = snap.matching('players', { map: 'mp_box' });
    expect(snap.matching('players', { map: 'mp_box' })).toBe(first);
    for (let i = 0; i < MATCH_CACHE_SIZE - 1; i++) snap.matching('players', { q: `x${i}` });
    // 64 entries: still cached, and now the most recently used.
    expect(snap.matching('players', { map: 'mp_box' })).toBe(first);
    for (let i = 0; i < MATCH_CACHE_SIZE; i++) snap.matching('players', { q: `y${i}` });
    const recomputed = snap.matching('players', { map: 'mp_box' });
    expect(recomputed).not.toBe(first);
    expect(recomputed).toEqual(first);
  });

  it('an empty snapshot has one empty last page', () => {
    expect(queryPage(buildSnapshot([], T0), q({}))).toEqual({ servers: [], total: 0, nextCursor: null });
  });
});
