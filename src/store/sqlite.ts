/**
 * A Store in one SQLite file (better-sqlite3), in WAL mode. Every key lives in one table:
 *
 *   kv(ns TEXT, key TEXT, value TEXT NOT NULL, expires_at INTEGER, PRIMARY KEY(ns, key)) WITHOUT ROWID
 *
 * `value` is JSON text; `expires_at` is an absolute time on the injected clock (ms), or
 * NULL for keys that never expire. Expired rows are invisible to every operation and
 * are deleted lazily when an operation comes across them, or in bulk by sweep().
 *
 * better-sqlite3 is synchronous, so each method runs to completion before another can
 * start; read-modify-write operations (incr, compareAndSet) still run in an IMMEDIATE
 * transaction so they stay atomic if another process opens the same file.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import { MusterError } from '../common/errors.js';
import { addDelta, assertJsonValue, canonicalJson, expiryFor, isExpired } from './memory.js';
import type { FencedStore, JsonValue, SetOptions, Store } from './types.js';

export interface SqliteStoreOptions {
  /** Path of the database file; its directory must exist (see SqliteStore.open). */
  file: string;
  /** Milliseconds since the epoch; TTLs are measured against it. Defaults to Date.now. */
  now?: (() => number) | undefined;
}

/** The file that SqliteStore.open keeps in its data directory. */
export const SQLITE_FILE_NAME = 'muster.db';

interface Row {
  value: string;
  expires_at: number | null;
}

interface KeyedRow extends Row {
  key: string;
}

/**
 * better-sqlite3 (a native addon, about 1.3 MiB of a server's resident memory) is loaded
 * when the first SQLite store opens, not by every server: one on the memory store never
 * needs it.
 */
let sqliteModule: typeof Database | undefined;
function openDatabase(file: string): Database.Database {
  sqliteModule ??= createRequire(import.meta.url)('better-sqlite3') as typeof Database;
  return new sqliteModule(file);
}

type Statement<P extends unknown[], R = unknown> = Database.Statement<P, R>;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS kv (
    ns         TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (ns, key)
  ) WITHOUT ROWID;
  -- Lets sweep() find expired rows without scanning the keys that never expire.
  CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;
`;

export class SqliteStore implements Store, FencedStore {
  readonly kind = 'sqlite';
  /** Path of the database file. */
  readonly file: string;
  readonly #db: Database.Database;
  readonly #now: () => number;
  #closed = false;

  // Prepared once, in the constructor.
  readonly #get: Statement<[string, string], Row>;
  readonly #put: Statement<[string, string, string, number | null]>;
  readonly #delete: Statement<[string, string], Pick<Row, 'expires_at'>>;
  readonly #deleteIfExpired: Statement<[string, string, number]>;
  readonly #list: Statement<[string], KeyedRow>;
  readonly #deleteExpiredInNs: Statement<[string, number]>;
  readonly #sweep: Statement<[number]>;
  readonly #ping: Statement<[]>;
  readonly #checkpoint: Statement<[]>;
  readonly #incr: (ns: string, key: string, delta: number, now: number, opts: SetOptions | undefined) => number;
  readonly #cas: (ns: string, key: string, expected: JsonValue | undefined, value: string, now: number, expiresAt: number | null) => boolean;

  /**
   * Opens (creating if needed) `<dir>/muster.db`, creating `dir` and its parents first.
   * Both are created owner-only (0700, 0600); SQLite gives the -wal and -shm files the
   * database file's mode.
   */
  static open(dir: string, opts: { now?: (() => number) | undefined } = {}): SqliteStore {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, SQLITE_FILE_NAME);
    closeSync(openSync(file, 'a', 0o600));
    return new SqliteStore({ file, now: opts.now });
  }

  constructor(opts: SqliteStoreOptions) {
    this.file = opts.file;
    this.#now = opts.now ?? Date.now;
    const db = openDatabase(opts.file);
    try {
      // WAL lets readers run alongside the writer. Every write is its own transaction and
      // is committed (written to the WAL with write(2)) before the call returns, so it
      // survives the process being killed: the kernel holds the pages. synchronous=NORMAL
      // skips the fsync per commit: the database stays consistent on power loss or an OS
      // crash, which may lose only the last commits since a checkpoint (flush() syncs).
      // FULL would fsync every commit, a disk flush per acknowledged write; Muster promises
      // survival of a process crash, not of power loss (docs/architecture.md, Store).
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.exec(SCHEMA);

      this.#get = db.prepare('SELECT value, expires_at FROM kv WHERE ns = ? AND key = ?');
      this.#put = db.prepare(
        `INSERT INTO kv (ns, key, value, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
      );
      this.#delete = db.prepare('DELETE FROM kv WHERE ns = ? AND key = ? RETURNING expires_at');
      // The expiry condition is repeated so a lazy delete never removes a row that was
      // rewritten (by another connection) since we read it.
      this.#deleteIfExpired = db.prepare(
        'DELETE FROM kv WHERE ns = ? AND key = ? AND expires_at IS NOT NULL AND expires_at <= ?',
      );
      // BINARY collation on UTF-8 text sorts by code point, the same order as compareKeys.
      this.#list = db.prepare('SELECT key, value, expires_at FROM kv WHERE ns = ? ORDER BY key');
      this.#deleteExpiredInNs = db.prepare(
        'DELETE FROM kv WHERE ns = ? AND expires_at IS NOT NULL AND expires_at <= ?',
      );
      this.#sweep = db.prepare('DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?');
      this.#ping = db.prepare('SELECT 1');
      this.#checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
    } catch (err) {
      db.close();
      throw err;
    }
    this.#db = db;

    const incr = db.transaction((ns: string, key: string, delta: number, now: number, opts: SetOptions | undefined) => {
      const current = this.#readLive(ns, key, now);
      const next = addDelta(current?.value, delta, ns, key);
      // A TTL resets the expiry; without one an existing expiry is kept (as Redis INCR does).
      const expiresAt = opts?.ttlMs !== undefined ? expiryFor(now, opts) : (current?.expiresAt ?? null);
      this.#put.run(ns, key, JSON.stringify(next), expiresAt);
      return next;
    });
    // IMMEDIATE takes the write lock up front, so two connections cannot both read the
    // old value and then fail to upgrade (SQLITE_BUSY) or lose an update.
    this.#incr = (...args) => incr.immediate(...args);

    const cas = db.transaction(
      (ns: string, key: string, expected: JsonValue | undefined, value: string, now: number, expiresAt: number | null) => {
        const current = this.#readLive(ns, key, now);
        const matches =
          current === undefined
            ? expected === undefined
            : expected !== undefined && canonicalJson(current.value) === canonicalJson(expected);
        if (matches) this.#put.run(ns, key, value, expiresAt);
        return matches;
      },
    );
    this.#cas = (...args) => cas.immediate(...args);
  }

  async get<T extends JsonValue = JsonValue>(ns: string, key: string): Promise<T | undefined> {
    this.#assertOpen();
    return this.#readLive(ns, key, this.#now())?.value as T | undefined;
  }

  async set(ns: string, key: string, value: JsonValue, opts?: SetOptions): Promise<void> {
    this.#assertOpen();
    assertJsonValue(value);
    this.#put.run(ns, key, JSON.stringify(value), expiryFor(this.#now(), opts));
  }

  async delete(ns: string, key: string): Promise<boolean> {
    this.#assertOpen();
    const now = this.#now();
    // An expired row is deleted too, but it did not "exist" as far as callers can tell.
    const row = this.#delete.get(ns, key);
    return row !== undefined && !isExpired(row.expires_at, now);
  }

  async list<T extends JsonValue = JsonValue>(ns: string): Promise<Array<[string, T]>> {
    this.#assertOpen();
    const now = this.#now();
    const out: Array<[string, T]> = [];
    let sawExpired = false;
    for (const row of this.#list.all(ns)) {
      if (isExpired(row.expires_at, now)) sawExpired = true;
      else out.push([row.key, JSON.parse(row.value) as T]);
    }
    if (sawExpired) this.#deleteExpiredInNs.run(ns, now);
    return out;
  }

  async incr(ns: string, key: string, delta = 1, opts?: SetOptions): Promise<number> {
    this.#assertOpen();
    return this.#incr(ns, key, delta, this.#now(), opts);
  }

  async compareAndSet(
    ns: string,
    key: string,
    expected: JsonValue | undefined,
    value: JsonValue,
    opts?: SetOptions,
  ): Promise<boolean> {
    this.#assertOpen();
    if (expected !== undefined) assertJsonValue(expected);
    assertJsonValue(value);
    const now = this.#now();
    return this.#cas(ns, key, expected, JSON.stringify(value), now, expiryFor(now, opts));
  }

  /** One process, one leader: the write always happens (types.ts, FencedStore). */
  async fencedSet(ns: string, key: string, value: JsonValue, _token: number, opts?: SetOptions): Promise<boolean> {
    await this.set(ns, key, value, opts);
    return true;
  }

  /** Deletes every expired row, in all namespaces; returns how many went. */
  async sweep(): Promise<number> {
    this.#assertOpen();
    return this.#sweep.run(this.#now()).changes;
  }

  async ping(): Promise<void> {
    this.#assertOpen();
    this.#ping.get();
  }

  async flush(): Promise<void> {
    this.#assertOpen();
    // With synchronous=NORMAL, commits are not fsynced one by one. A checkpoint syncs the
    // WAL and copies it into the main file, so everything committed so far is on disk.
    this.#checkpoint.get();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Closing the last connection checkpoints the WAL and removes the -wal/-shm files.
    this.#db.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new MusterError('STORE_UNAVAILABLE', `the SQLite store (${this.file}) is closed`);
  }

  /** The parsed row if it exists and has not expired; an expired row is deleted on the way. */
  #readLive(ns: string, key: string, now: number): { value: JsonValue; expiresAt: number | null } | undefined {
    const row = this.#get.get(ns, key);
    if (row === undefined) return undefined;
    if (isExpired(row.expires_at, now)) {
      this.#deleteIfExpired.run(ns, key, now);
      return undefined;
    }
    return { value: JSON.parse(row.value) as JsonValue, expiresAt: row.expires_at };
  }
}
