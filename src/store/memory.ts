/**
 * An in-process Store: nothing survives a restart. Used in tests and for single-node
 * setups that do not need persistence.
 *
 * The small JSON helpers at the bottom of this file (validation, equality, canonical
 * text, key order, TTL) are shared with the SQLite store so that both backends agree
 * on every edge of the contract.
 */
import { MusterError } from '../common/errors.js';
import type { FencedStore, JsonValue, SetOptions, Store } from './types.js';

export interface MemoryStoreOptions {
  /** Milliseconds since the epoch; TTLs are measured against it. Defaults to Date.now. */
  now?: (() => number) | undefined;
}

interface Entry {
  /** A private deep copy; never handed out as is. */
  value: JsonValue;
  /** Absolute expiry time in `now()` milliseconds, or null for no expiry. */
  expiresAt: number | null;
}

export class MemoryStore implements Store, FencedStore {
  readonly kind = 'memory';
  readonly #now: () => number;
  readonly #data = new Map<string, Map<string, Entry>>();
  #closed = false;

  constructor(opts: MemoryStoreOptions = {}) {
    this.#now = opts.now ?? Date.now;
  }

  async get<T extends JsonValue = JsonValue>(ns: string, key: string): Promise<T | undefined> {
    this.#assertOpen();
    const entry = this.#live(ns, key, this.#now());
    return entry ? (structuredClone(entry.value) as T) : undefined;
  }

  async set(ns: string, key: string, value: JsonValue, opts?: SetOptions): Promise<void> {
    this.#assertOpen();
    assertJsonValue(value);
    const expiresAt = expiryFor(this.#now(), opts);
    this.#put(ns, key, { value: structuredClone(value), expiresAt });
  }

  async delete(ns: string, key: string): Promise<boolean> {
    this.#assertOpen();
    const existed = this.#live(ns, key, this.#now()) !== undefined;
    this.#remove(ns, key);
    return existed;
  }

  async list<T extends JsonValue = JsonValue>(ns: string): Promise<Array<[string, T]>> {
    this.#assertOpen();
    const bucket = this.#data.get(ns);
    if (!bucket) return [];
    const now = this.#now();
    const out: Array<[string, T]> = [];
    for (const [key, entry] of bucket) {
      if (isExpired(entry.expiresAt, now)) bucket.delete(key);
      else out.push([key, structuredClone(entry.value) as T]);
    }
    if (bucket.size === 0) this.#data.delete(ns);
    return out.sort((a, b) => compareKeys(a[0], b[0]));
  }

  async incr(ns: string, key: string, delta = 1, opts?: SetOptions): Promise<number> {
    this.#assertOpen();
    // Everything below is synchronous, so it cannot interleave with another call.
    const now = this.#now();
    const current = this.#live(ns, key, now);
    const next = addDelta(current?.value, delta, ns, key);
    // A TTL resets the expiry; without one an existing expiry is kept (as Redis INCR does).
    const expiresAt = opts?.ttlMs !== undefined ? expiryFor(now, opts) : (current?.expiresAt ?? null);
    this.#put(ns, key, { value: next, expiresAt });
    return next;
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
    const expiresAt = expiryFor(now, opts);
    const current = this.#live(ns, key, now);
    const matches = current === undefined ? expected === undefined : expected !== undefined && jsonEqual(current.value, expected);
    if (!matches) return false;
    this.#put(ns, key, { value: structuredClone(value), expiresAt });
    return true;
  }

  /** One process, one leader: the write always happens (types.ts, FencedStore). */
  async fencedSet(ns: string, key: string, value: JsonValue, _token: number, opts?: SetOptions): Promise<boolean> {
    await this.set(ns, key, value, opts);
    return true;
  }

  async ping(): Promise<void> {
    this.#assertOpen();
  }

  async flush(): Promise<void> {
    // Nothing to make durable: memory is all there is.
    this.#assertOpen();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#data.clear();
  }

  #assertOpen(): void {
    if (this.#closed) throw new MusterError('STORE_UNAVAILABLE', 'the memory store is closed');
  }

  /** The entry if it exists and has not expired; an expired one is dropped on the way. */
  #live(ns: string, key: string, now: number): Entry | undefined {
    const entry = this.#data.get(ns)?.get(key);
    if (entry && isExpired(entry.expiresAt, now)) {
      this.#remove(ns, key);
      return undefined;
    }
    return entry;
  }

  #put(ns: string, key: string, entry: Entry): void {
    let bucket = this.#data.get(ns);
    if (!bucket) {
      bucket = new Map();
      this.#data.set(ns, bucket);
    }
    bucket.set(key, entry);
  }

  #remove(ns: string, key: string): void {
    const bucket = this.#data.get(ns);
    if (!bucket) return;
    bucket.delete(key);
    if (bucket.size === 0) this.#data.delete(ns);
  }
}

// ---------------------------------------------------------------------------
// Helpers shared by every Store implementation.
// ---------------------------------------------------------------------------

/** A key is live while `now < expiresAt`; the TTL boundary itself is already expired. */
export function isExpired(expiresAt: number | null, now: number): boolean {
  return expiresAt !== null && expiresAt <= now;
}

/** The absolute expiry for a write made at `now`, or null when no TTL was asked for. */
export function expiryFor(now: number, opts: SetOptions | undefined): number | null {
  const ttl = opts?.ttlMs;
  if (ttl === undefined) return null;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) {
    throw new RangeError(`ttlMs must be a positive finite number, got ${String(ttl)}`);
  }
  return now + ttl;
}

/** The result of incr: `current` (absent counts as 0) plus `delta`, checked to be a finite number. */
export function addDelta(current: JsonValue | undefined, delta: number, ns: string, key: string): number {
  if (typeof delta !== 'number' || !Number.isFinite(delta)) {
    throw new TypeError(`incr delta must be a finite number, got ${String(delta)}`);
  }
  // Only an absent key counts as 0; a stored null is a value, and not a number.
  const base = current === undefined ? 0 : current;
  if (typeof base !== 'number') {
    throw new TypeError(`cannot incr ${ns}/${key}: the stored value is not a number`);
  }
  const next = base + delta;
  if (!Number.isFinite(next)) throw new RangeError(`incr of ${ns}/${key} overflowed`);
  return next;
}

/**
 * Orders keys by Unicode code point. That is the order SQLite's BINARY collation gives
 * UTF-8 text (and Redis gives bytes), unlike `<` on JS strings, which compares UTF-16
 * code units and so sorts astral characters (emoji) before U+E000..U+FFFF.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.codePointAt(i) as number;
    const cb = b.codePointAt(i) as number;
    if (ca !== cb) return ca - cb;
    if (ca > 0xffff) i++; // skip the low surrogate of a pair we just compared whole
  }
  return a.length - b.length;
}

/**
 * Throws a TypeError unless `value` is exactly representable as JSON: no NaN or
 * Infinity, no undefined (also not in arrays or as a property value), no functions,
 * bigints, symbols, class instances (Date, Map, ...) or cycles. Without this check the
 * backends would disagree: JSON.stringify turns NaN into null and drops undefined,
 * while structuredClone keeps both.
 */
export function assertJsonValue(value: unknown): asserts value is JsonValue {
  const visiting = new Set<object>();
  const check = (v: unknown, path: string): void => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new TypeError(`${path} is ${v}, which JSON cannot represent`);
      return;
    }
    if (typeof v !== 'object') throw new TypeError(`${path} is a ${typeof v}, which JSON cannot represent`);
    if (visiting.has(v)) throw new TypeError(`${path} is a circular reference`);
    visiting.add(v);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) check(v[i], `${path}[${i}]`);
    } else {
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        throw new TypeError(`${path} is not a plain object or array`);
      }
      for (const k of Object.keys(v)) check((v as Record<string, unknown>)[k], `${path}.${k}`);
    }
    visiting.delete(v);
  };
  check(value, 'value');
}

/** Deep equality of JSON values; object key order does not matter, array order does. */
export function jsonEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => jsonEqual(item, b[i] as JsonValue));
  }
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k] as JsonValue, b[k] as JsonValue));
}

/**
 * JSON text with object keys sorted, so that equal values have equal text whatever the
 * key order they were built with. Built as a string rather than through an object so
 * that a "__proto__" key stays an ordinary key.
 */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k] as JsonValue)}`).join(',')}}`;
}
