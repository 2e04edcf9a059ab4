import { SORT_ORDERS, type NorthstarServer, type PublicServer, type ServerListPage, type SortOrder } from '../../protocols/gamelist/api.js';
import type { ServerInfo } from '../../protocols/gamelist/messages.js';

/**
 * The public list as an immutable snapshot, and the pure functions that page through
 * it. The runtime rebuilds the snapshot at most once a second; a list request only
 * filters and slices arrays that are already sorted, so 10,000 servers cost one
 * linear scan per request and one sort per order per rebuild.
 *
 * Filter results are cached per snapshot, so a page costs O(log n + limit).
 *
 * Order: every sort puts full servers (curPlayers >= maxPlayers) last, then orders by
 * its key, then by server_id, so the order is total and a cursor is a position in it.
 * Cursors are keyset cursors: "everything after this (full, key, server_id)". On a list
 * that does not change between requests, pages never overlap and never skip.
 */

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
export const DEFAULT_SORT: SortOrder = 'players';

/** A listed server, as the registry holds it. */
export interface ListedServer {
  readonly serverId: string;
  readonly info: ServerInfo;
  readonly registeredAt: number;
  readonly lastRefresh: number;
}

export interface SnapshotEntry {
  readonly pub: PublicServer;
  readonly full: boolean;
  readonly registeredAt: number;
  /** Lower-cased name, for sorting by name. */
  readonly nameKey: string;
  /** Lower-cased name and description, for `q`. */
  readonly search: string;
}

/** A position in one sort order: full flag, the sort key (ascending), server_id. */
export interface Position {
  readonly full: 0 | 1;
  readonly key: number | string;
  readonly id: string;
}

interface Sorted {
  readonly entries: readonly SnapshotEntry[];
  readonly positions: readonly Position[];
}

export function isFull(info: Pick<ServerInfo, 'curPlayers' | 'maxPlayers'>): boolean {
  return info.curPlayers >= info.maxPlayers;
}

export function hasPassword(info: Pick<ServerInfo, 'password'>): boolean {
  return info.password !== undefined && info.password !== '';
}

export function toPublic(s: ListedServer): PublicServer {
  const i = s.info;
  return {
    server_id: s.serverId,
    name: i.name,
    desc: i.desc,
    map: i.map,
    playlist: i.playlist,
    curPlayers: i.curPlayers,
    maxPlayers: i.maxPlayers,
    hasPassword: hasPassword(i),
    gameState: i.gameState,
    lastSeen: new Date(s.lastRefresh).toISOString(),
  };
}

export function toNorthstar(p: PublicServer): NorthstarServer {
  return {
    id: p.server_id,
    name: p.name,
    description: p.desc,
    map: p.map,
    playlist: p.playlist,
    playerCount: p.curPlayers,
    maxPlayers: p.maxPlayers,
    hasPassword: p.hasPassword,
  };
}

function positionOf(e: SnapshotEntry, sort: SortOrder): Position {
  const full = e.full ? 1 : 0;
  switch (sort) {
    case 'players':
      return { full, key: -e.pub.curPlayers, id: e.pub.server_id };
    case 'name':
      return { full, key: e.nameKey, id: e.pub.server_id };
    case 'newest':
      return { full, key: -e.registeredAt, id: e.pub.server_id };
  }
}

export function comparePositions(a: Position, b: Position): number {
  if (a.full !== b.full) return a.full - b.full;
  if (a.key !== b.key) {
    if (typeof a.key === 'number' && typeof b.key === 'number') return a.key - b.key;
    return String(a.key) < String(b.key) ? -1 : 1;
  }
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** How many filter results a snapshot keeps (the most recently used). */
export const MATCH_CACHE_SIZE = 64;

export class Snapshot {
  readonly builtAt: number;
  readonly size: number;
  readonly #entries: readonly SnapshotEntry[];
  readonly #byId = new Map<string, SnapshotEntry>();
  readonly #sorted = new Map<SortOrder, Sorted>();
  readonly #matches = new Map<string, readonly number[]>();

  constructor(entries: readonly SnapshotEntry[], builtAt: number) {
    this.#entries = entries;
    this.builtAt = builtAt;
    this.size = entries.length;
    for (const e of entries) this.#byId.set(e.pub.server_id, e);
  }

  entry(serverId: string): SnapshotEntry | undefined {
    return this.#byId.get(serverId);
  }

  /** The entries in one order, sorted once per snapshot and order. */
  sorted(sort: SortOrder): Sorted {
    let s = this.#sorted.get(sort);
    if (!s) {
      const pairs = this.#entries.map((e) => ({ e, p: positionOf(e, sort) }));
      pairs.sort((a, b) => comparePositions(a.p, b.p));
      s = { entries: pairs.map((x) => x.e), positions: pairs.map((x) => x.p) };
      this.#sorted.set(sort, s);
    }
    return s;
  }

  /**
   * The indexes (into `sorted(sort)`) of the entries that pass `filters`, ascending.
   * Computed once per snapshot, order and filter set, so paging costs
   * O(log n + limit) per page after the first.
   */
  matching(sort: SortOrder, filters: ListFilters): readonly number[] {
    const key = `${sort}\u0000${filterKey(filters)}`;
    let m = this.#matches.get(key);
    if (m) {
      // Most recently used goes last.
      this.#matches.delete(key);
      this.#matches.set(key, m);
      return m;
    }
    const { entries } = this.sorted(sort);
    const out: number[] = [];
    const all = Object.keys(filters).length === 0;
    for (let i = 0; i < entries.length; i++) if (all || matches(entries[i] as SnapshotEntry, filters)) out.push(i);
    m = out;
    this.#matches.set(key, m);
    if (this.#matches.size > MATCH_CACHE_SIZE) {
      const oldest = this.#matches.keys().next().value;
      if (oldest !== undefined) this.#matches.delete(oldest);
    }
    return m;
  }
}

function filterKey(f: ListFilters): string {
  return JSON.stringify([f.map, f.playlist, f.gameState, f.hasPassword, f.notFull, f.notEmpty, f.q]);
}

export function buildSnapshot(servers: Iterable<ListedServer>, builtAt: number): Snapshot {
  const entries: SnapshotEntry[] = [];
  for (const s of servers) {
    const pub = toPublic(s);
    entries.push({
      pub,
      full: isFull(s.info),
      registeredAt: s.registeredAt,
      nameKey: s.info.name.toLowerCase(),
      search: `${s.info.name.toLowerCase()}\n${s.info.desc.toLowerCase()}`,
    });
  }
  const snap = new Snapshot(entries, builtAt);
  snap.sorted(DEFAULT_SORT);
  return snap;
}

// ---------------------------------------------------------------------------------
// Queries

export interface ListFilters {
  readonly map?: string;
  readonly playlist?: string;
  readonly gameState?: number;
  readonly hasPassword?: boolean;
  readonly notFull?: boolean;
  readonly notEmpty?: boolean;
  /** Lower-cased substring of the name or the description. */
  readonly q?: string;
}

export interface ListQuery {
  readonly filters: ListFilters;
  readonly sort: SortOrder;
  readonly limit: number;
  /** Start after this position (from a cursor). */
  readonly after?: Position;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; detail: string };

type Query = Readonly<Record<string, unknown>>;

function single(q: Query, key: string): string | undefined | { error: string } {
  const v = q[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') return { error: `"${key}" must be given once` };
  return v;
}

function bool(v: string, key: string): boolean | { error: string } {
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  return { error: `"${key}" must be true or false` };
}

/** Parses the filters and the sort (the part `/client/servers` also takes). Unknown parameters are ignored. */
export function parseFilters(q: Query): ParseResult<{ filters: ListFilters; sort: SortOrder }> {
  const f: { -readonly [K in keyof ListFilters]: ListFilters[K] } = {};
  for (const key of ['map', 'playlist'] as const) {
    const v = single(q, key);
    if (typeof v === 'object') return { ok: false, detail: v.error };
    if (v !== undefined) f[key] = v;
  }
  const gs = single(q, 'gameState');
  if (typeof gs === 'object') return { ok: false, detail: gs.error };
  if (gs !== undefined) {
    if (!/^-?\d{1,10}$/.test(gs)) return { ok: false, detail: '"gameState" must be an integer' };
    f.gameState = Number(gs);
  }
  for (const key of ['hasPassword', 'notFull', 'notEmpty'] as const) {
    const v = single(q, key);
    if (typeof v === 'object') return { ok: false, detail: v.error };
    if (v === undefined) continue;
    const b = bool(v, key);
    if (typeof b === 'object') return { ok: false, detail: b.error };
    f[key] = b;
  }
  const text = single(q, 'q');
  if (typeof text === 'object') return { ok: false, detail: text.error };
  if (text !== undefined && text !== '') f.q = text.toLowerCase();
  const sort = single(q, 'sort');
  if (typeof sort === 'object') return { ok: false, detail: sort.error };
  if (sort !== undefined && !(SORT_ORDERS as readonly string[]).includes(sort)) {
    return { ok: false, detail: `"sort" must be one of ${SORT_ORDERS.join(', ')}` };
  }
  return { ok: true, value: { filters: f, sort: (sort ?? DEFAULT_SORT) as SortOrder } };
}

/** Parses every parameter of `GET /v2/servers`. */
export function parseListQuery(q: Query): ParseResult<ListQuery> {
  const base = parseFilters(q);
  if (!base.ok) return base;
  const { filters, sort } = base.value;
  let limit = DEFAULT_LIMIT;
  const l = single(q, 'limit');
  if (typeof l === 'object') return { ok: false, detail: l.error };
  if (l !== undefined) {
    if (!/^\d{1,9}$/.test(l) || Number(l) < 1) return { ok: false, detail: `"limit" must be an integer from 1 to ${MAX_LIMIT}` };
    limit = Math.min(Number(l), MAX_LIMIT);
  }
  const c = single(q, 'cursor');
  if (typeof c === 'object') return { ok: false, detail: c.error };
  if (c === undefined || c === '') return { ok: true, value: { filters, sort, limit } };
  const after = decodeCursor(c, sort);
  if (typeof after === 'string') return { ok: false, detail: after };
  return { ok: true, value: { filters, sort, limit, after } };
}

export function encodeCursor(sort: SortOrder, p: Position): string {
  return Buffer.from(JSON.stringify([sort, p.full, p.key, p.id])).toString('base64url');
}

export function decodeCursor(cursor: string, sort: SortOrder): Position | string {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return '"cursor" is not a cursor this server gave out';
  }
  if (!Array.isArray(v) || v.length !== 4) return '"cursor" is not a cursor this server gave out';
  const [s, full, key, id] = v as unknown[];
  if (s !== sort) return `"cursor" belongs to sort=${String(s)}; keep the sort while paging`;
  const keyOk = sort === 'name' ? typeof key === 'string' : typeof key === 'number' && Number.isFinite(key);
  if ((full !== 0 && full !== 1) || !keyOk || typeof id !== 'string') return '"cursor" is not a cursor this server gave out';
  return { full, key: key as number | string, id };
}

export function matches(e: SnapshotEntry, f: ListFilters): boolean {
  const p = e.pub;
  if (f.map !== undefined && p.map !== f.map) return false;
  if (f.playlist !== undefined && p.playlist !== f.playlist) return false;
  if (f.gameState !== undefined && p.gameState !== f.gameState) return false;
  if (f.hasPassword !== undefined && p.hasPassword !== f.hasPassword) return false;
  if (f.notFull === true && e.full) return false;
  if (f.notEmpty === true && p.curPlayers <= 0) return false;
  if (f.q !== undefined && !e.search.includes(f.q)) return false;
  return true;
}

/** First k whose position `positions[idx[k]]` is after `p`. */
function indexAfter(positions: readonly Position[], idx: readonly number[], p: Position): number {
  let lo = 0;
  let hi = idx.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (comparePositions(positions[idx[mid] as number] as Position, p) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Server ids that were in the snapshot but have left since it was built: skipped at once. */
export type Gone = ReadonlySet<string>;
const none: Gone = new Set();

/** One page of `GET /v2/servers`. */
export function queryPage(snap: Snapshot, q: ListQuery, gone: Gone = none): ServerListPage {
  const { entries, positions } = snap.sorted(q.sort);
  const idx = snap.matching(q.sort, q.filters);
  let total = idx.length;
  for (const id of gone) {
    const e = snap.entry(id);
    if (e && matches(e, q.filters)) total--;
  }
  const servers: PublicServer[] = [];
  let lastIndex = -1;
  let more = false;
  for (let k = q.after ? indexAfter(positions, idx, q.after) : 0; k < idx.length; k++) {
    const i = idx[k] as number;
    const e = entries[i] as SnapshotEntry;
    if (gone.size > 0 && gone.has(e.pub.server_id)) continue;
    if (servers.length === q.limit) {
      more = true;
      break;
    }
    servers.push(e.pub);
    lastIndex = i;
  }
  const nextCursor = more && lastIndex >= 0 ? encodeCursor(q.sort, positions[lastIndex] as Position) : null;
  return { servers, total, nextCursor };
}

/** Every matching server in one order (for `/client/servers`). */
export function queryAll(snap: Snapshot, filters: ListFilters, sort: SortOrder, gone: Gone = none): PublicServer[] {
  const { entries } = snap.sorted(sort);
  const out: PublicServer[] = [];
  for (const i of snap.matching(sort, filters)) {
    const e = entries[i] as SnapshotEntry;
    if (gone.size === 0 || !gone.has(e.pub.server_id)) out.push(e.pub);
  }
  return out;
}
