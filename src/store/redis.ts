/**
 * A Store on Redis (ioredis), for cluster mode: every instance of a cluster opens the
 * same Redis with the same prefix. The key layout and the Lua scripts are in
 * redis-scripts.ts; each operation is one command (GET) or one script, so it is atomic.
 *
 * Order: every call goes out on one connection, in call order, and Redis runs the
 * commands of a connection in the order they arrive, so writes take effect in call
 * order even when nobody awaited the earlier ones. Scripts are always sent with EVAL
 * (never EVALSHA with a fallback, which would resend a command after later ones). A
 * command that was sent but not answered when the connection dropped is failed, not
 * resent (a resent incr could count twice); commands made while the connection is down
 * wait in ioredis' queue and go out in order once it is back. On Redis Cluster the
 * order holds per namespace (a namespace lives on one node).
 *
 * Durability: a write's promise resolves once Redis has applied it, so it survives the
 * Muster process being killed. Whether it survives Redis being killed or losing power is
 * Redis' persistence setting: with `appendonly yes` and `appendfsync always` every write
 * is on disk before Redis answers; with `everysec` (Redis' default for AOF) up to a
 * second of writes can be lost on power loss; without AOF or RDB, everything. The
 * `durability` option makes each write also wait for WAITAOF (the AOF fsynced, Redis
 * 7.2+) and/or WAIT (that many replicas have it) before it resolves; the write is
 * rejected when that does not happen within its timeout (it may still have been applied).
 *
 * TTLs: an entry's expiry is measured on the injected clock (the instance's), like the
 * other stores; Redis deletes the key EXPIRY_GRACE_MS after that, to reclaim memory.
 */
import { createRequire } from 'node:module';
import type { Cluster, Redis } from 'ioredis';
import { MusterError } from '../common/errors.js';
import { addDelta, assertJsonValue, canonicalJson, expiryFor } from './memory.js';
import * as scripts from './redis-scripts.js';
import { redisKeys, type RedisKeys } from './redis-scripts.js';
import type { FencedStore, JsonValue, SetOptions, Store } from './types.js';

export interface RedisNode {
  host: string;
  port: number;
}

/** Where Redis is: one URL, or Sentinel (`sentinels` + `name`), or a Redis Cluster. */
export interface RedisConnectionOptions {
  /** redis://[user:password@]host:port[/db] or rediss:// (TLS). */
  url?: string | undefined;
  /** Sentinels to ask for the primary called `name`. */
  sentinels?: readonly RedisNode[] | undefined;
  name?: string | undefined;
  /** Seed nodes of a Redis Cluster. */
  cluster?: readonly RedisNode[] | undefined;
  username?: string | undefined;
  /** Redis' password (also possible in the URL). */
  password?: string | undefined;
  /** The Sentinels' own password, when they have one. */
  sentinelPassword?: string | undefined;
}

export interface RedisDurability {
  /** Each write waits until this many replicas acknowledge it (WAIT). */
  replicas?: number | undefined;
  /** Each write waits until Redis has fsynced its AOF (WAITAOF, Redis 7.2+). */
  aof?: boolean | undefined;
  /** How long a write waits for that before it is rejected. */
  timeoutMs?: number | undefined;
}

export interface RedisStoreOptions extends RedisConnectionOptions {
  /** Put in front of every key; several deployments can share one Redis. Default "muster:". */
  prefix?: string | undefined;
  /** Milliseconds since the epoch; TTLs are measured against it. Defaults to Date.now. */
  now?: (() => number) | undefined;
  /** How long ping() waits for Redis' answer. Default 2000. */
  pingTimeoutMs?: number | undefined;
  /** How long a command made while Redis is unreachable waits for it before it fails. Default 5000. */
  offlineTimeoutMs?: number | undefined;
  durability?: RedisDurability | undefined;
  /** Told when the connection comes up or goes down (once per change, not per retry). */
  onStatus?: ((status: 'up' | 'down', err?: Error) => void) | undefined;
}

export type RedisClient = Redis | Cluster;

/**
 * ioredis (about 1 MiB of heap and more of code) is loaded when the first Redis client is
 * made, not by every server: one on the memory or SQLite store outside cluster mode
 * never needs it.
 */
let ioredisModule: typeof import('ioredis') | undefined;
export function ioredis(): typeof import('ioredis') {
  return (ioredisModule ??= createRequire(import.meta.url)('ioredis') as typeof import('ioredis'));
}

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
export const DEFAULT_REDIS_PREFIX = 'muster:';

/** Reconnect backoff: 100 ms doubling to 2 s, for ever (the store recovers by itself). */
function retryDelay(attempt: number): number {
  return Math.min(100 * 2 ** Math.min(attempt - 1, 5), 2000);
}

/** An ioredis client for `opts`: it connects at once and reconnects for ever. */
export function createRedisClient(opts: RedisConnectionOptions): RedisClient {
  const common = {
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    autoResendUnfulfilledCommands: false,
    retryStrategy: retryDelay,
    connectionName: 'muster',
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: opts.password } : {}),
  };
  if (opts.cluster && opts.cluster.length > 0) {
    const { retryStrategy: _r, enableOfflineQueue: _q, ...redisOptions } = common;
    return new (ioredis().Cluster)(opts.cluster.map((n) => ({ host: n.host, port: n.port })), {
      redisOptions,
      enableOfflineQueue: true,
      clusterRetryStrategy: retryDelay,
    });
  }
  if (opts.sentinels && opts.sentinels.length > 0) {
    if (opts.name === undefined) throw new RangeError('Redis Sentinel needs the name of the primary (store.name)');
    return new (ioredis().Redis)({
      ...common,
      sentinels: opts.sentinels.map((n) => ({ host: n.host, port: n.port })),
      name: opts.name,
      ...(opts.sentinelPassword !== undefined ? { sentinelPassword: opts.sentinelPassword } : {}),
      sentinelRetryStrategy: retryDelay,
    });
  }
  return new (ioredis().Redis)(opts.url ?? DEFAULT_REDIS_URL, common);
}

/** The URL without its password, for banners and logs. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/** The text Redis keeps for a value: expiry, canonical JSON, and the JSON as written when it differs. */
function entryText(value: JsonValue, expiresAt: number | null): string {
  const json = JSON.stringify(value);
  const canon = canonicalJson(value);
  return `${expiresAt ?? ''}\n${canon}${canon === json ? '' : `\n${json}`}`;
}

/** The JSON part of an entry, or undefined when it has expired at `now`. */
function liveJson(raw: string | null, now: number): string | undefined {
  if (raw === null) return undefined;
  const a = raw.indexOf('\n');
  if (a > 0 && Number(raw.slice(0, a)) <= now) return undefined;
  const b = raw.indexOf('\n', a + 1);
  return b < 0 ? raw.slice(a + 1) : raw.slice(b + 1);
}

/** The PX Redis gets for a TTL: the TTL plus the grace, or '' for none. */
function pxFor(opts: SetOptions | undefined): string {
  return opts?.ttlMs === undefined ? '' : String(Math.ceil(opts.ttlMs) + scripts.EXPIRY_GRACE_MS);
}

export class RedisStore implements Store, FencedStore {
  readonly kind = 'redis';
  readonly prefix: string;
  readonly keys: RedisKeys;
  /** The connection; the leader lease (cluster/lease.ts) runs its commands on it too. */
  readonly client: RedisClient;
  readonly #now: () => number;
  readonly #pingTimeoutMs: number;
  readonly #offlineTimeoutMs: number;
  readonly #durability: { replicas: number; aof: boolean; timeoutMs: number } | undefined;
  #closed = false;
  #status: 'up' | 'down' | undefined;

  constructor(opts: RedisStoreOptions & { client?: RedisClient | undefined } = {}) {
    this.prefix = opts.prefix ?? DEFAULT_REDIS_PREFIX;
    this.keys = redisKeys(this.prefix);
    this.#now = opts.now ?? Date.now;
    this.#pingTimeoutMs = opts.pingTimeoutMs ?? 2000;
    this.#offlineTimeoutMs = opts.offlineTimeoutMs ?? 5000;
    const d = opts.durability;
    if (d && ((d.replicas ?? 0) > 0 || d.aof === true)) {
      if (opts.cluster && opts.cluster.length > 0) throw new RangeError('store durability (WAIT/WAITAOF) is not available with Redis Cluster');
      this.#durability = { replicas: d.replicas ?? 0, aof: d.aof ?? false, timeoutMs: d.timeoutMs ?? 1000 };
    }
    this.client = opts.client ?? createRedisClient(opts);
    // Without an 'error' listener ioredis prints every failed reconnect; report each change once.
    const report = (status: 'up' | 'down', err?: Error): void => {
      if (this.#closed || this.#status === status) return;
      this.#status = status;
      opts.onStatus?.(status, err);
    };
    this.client.on('ready', () => report('up'));
    this.client.on('error', (err: Error) => report('down', err));
    this.client.on('close', () => report('down'));
  }

  async get<T extends JsonValue = JsonValue>(ns: string, key: string): Promise<T | undefined> {
    this.#assertOpen();
    const now = this.#now();
    const json = liveJson(await this.#offline(this.client.get(this.keys.entry(ns, key))), now);
    return json === undefined ? undefined : (JSON.parse(json) as T);
  }

  async set(ns: string, key: string, value: JsonValue, opts?: SetOptions): Promise<void> {
    this.#assertOpen();
    assertJsonValue(value);
    const raw = entryText(value, expiryFor(this.#now(), opts));
    await this.#write(this.client.eval(scripts.SET, 2, this.keys.entry(ns, key), this.keys.index(ns), key, raw, pxFor(opts)));
  }

  async delete(ns: string, key: string): Promise<boolean> {
    this.#assertOpen();
    const r = await this.#write(this.client.eval(scripts.DELETE, 2, this.keys.entry(ns, key), this.keys.index(ns), key, this.#now()));
    return r === 1;
  }

  async list<T extends JsonValue = JsonValue>(ns: string): Promise<Array<[string, T]>> {
    this.#assertOpen();
    const flat = (await this.#offline(this.client.eval(scripts.LIST, 1, this.keys.index(ns), this.keys.entryBase(ns), this.#now()))) as string[];
    const out: Array<[string, T]> = [];
    for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i] as string, JSON.parse(flat[i + 1] as string) as T]);
    return out;
  }

  async incr(ns: string, key: string, delta = 1, opts?: SetOptions): Promise<number> {
    this.#assertOpen();
    addDelta(0, delta, ns, key); // the delta's own checks (a finite number)
    const now = this.#now();
    const expiresAt = expiryFor(now, opts);
    try {
      const text = await this.#write(
        this.client.eval(scripts.INCR, 2, this.keys.entry(ns, key), this.keys.index(ns), key, String(delta), now, pxFor(opts), expiresAt ?? ''),
      );
      return Number(text);
    } catch (err) {
      const msg = (err as Error).message;
      if (msg.includes(scripts.NOT_A_NUMBER)) throw new TypeError(`cannot incr ${ns}/${key}: the stored value is not a number`, { cause: err });
      if (msg.includes(scripts.OVERFLOW)) throw new RangeError(`incr of ${ns}/${key} overflowed`, { cause: err });
      throw err;
    }
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
    const raw = entryText(value, expiryFor(now, opts));
    // Numbers compare by value: incr writes them in a form of its own ("%.17g"-style).
    const mode = expected === undefined ? 'absent' : typeof expected === 'number' ? 'number' : 'json';
    const want = expected === undefined ? '' : canonicalJson(expected);
    const r = await this.#write(
      this.client.eval(scripts.COMPARE_AND_SET, 2, this.keys.entry(ns, key), this.keys.index(ns), key, now, mode, want, raw, pxFor(opts)),
    );
    return r === 1;
  }

  async fencedSet(ns: string, key: string, value: JsonValue, token: number, opts?: SetOptions): Promise<boolean> {
    this.#assertOpen();
    assertJsonValue(value);
    if (!Number.isSafeInteger(token)) throw new TypeError(`a fencing token is an integer, got ${String(token)}`);
    const raw = entryText(value, expiryFor(this.#now(), opts));
    const r = await this.#write(
      this.client.eval(scripts.FENCED_SET, 3, this.keys.entry(ns, key), this.keys.index(ns), this.keys.fence(ns), key, String(token), raw, pxFor(opts)),
    );
    return r === 1;
  }

  /**
   * Resolves once Redis answers PING (within pingTimeoutMs, also while the connection
   * is still being made); rejects at once while it is down and waiting to reconnect.
   */
  async ping(): Promise<void> {
    this.#assertOpen();
    this.#assertConnected();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new MusterError('STORE_UNAVAILABLE', `Redis did not answer PING within ${this.#pingTimeoutMs} ms`)), this.#pingTimeoutMs);
      timer.unref();
    });
    try {
      await Promise.race([this.client.ping(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Resolves once Redis has applied every write made so far (a PING behind them on the
   * connection, and with the durability option, WAITAOF/WAIT once more). What reaches
   * Redis' disk and when is its persistence setting (see the top of this file). Rejects
   * at once while the connection is down: the queued writes may never land.
   */
  async flush(): Promise<void> {
    this.#assertOpen();
    this.#assertConnected();
    await this.#write(this.client.ping());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.client.status === 'ready') {
      try {
        await this.client.quit();
        return;
      } catch {
        // fall through: drop the connection
      }
    }
    this.client.disconnect();
  }

  #assertOpen(): void {
    if (this.#closed) throw new MusterError('STORE_UNAVAILABLE', 'the Redis store is closed');
  }

  /** Down and waiting to reconnect: a command would only wait in ioredis' queue. */
  #assertConnected(): void {
    const status = this.client.status;
    if (status === 'reconnecting' || status === 'close' || status === 'end') {
      throw new MusterError('STORE_UNAVAILABLE', `Redis is not connected (${status})`);
    }
  }

  /**
   * A command issued while Redis is unreachable waits in ioredis' queue (so that it
   * keeps its place in the order) for at most offlineTimeoutMs, then fails with
   * STORE_UNAVAILABLE; it may still run when Redis comes back. Without this bound a
   * caller (a dialect waiting for its writes at shutdown, say) could wait for ever.
   */
  #offline<R>(command: Promise<R>): Promise<R> {
    if (this.client.status === 'ready') return command;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new MusterError('STORE_UNAVAILABLE', `Redis was unreachable for ${this.#offlineTimeoutMs} ms; the command may still run when it is back`)),
        this.#offlineTimeoutMs,
      );
      timer.unref();
    });
    command.catch(() => undefined); // a late rejection after the timeout is no one's concern
    return Promise.race([command, timeout]).finally(() => clearTimeout(timer));
  }

  /**
   * A write, and (with the durability option) WAITAOF/WAIT sent right behind it on the
   * same connection, so it covers this write and every earlier one.
   */
  async #write<R>(sent: Promise<R>): Promise<R> {
    const command = this.#offline(sent);
    const d = this.#durability;
    if (!d) return command;
    const waits: Array<Promise<void>> = [];
    if (d.aof) {
      waits.push(
        (this.client.call('WAITAOF', 1, d.replicas, d.timeoutMs) as Promise<[number, number]>).then(([local, replicas]) => {
          if (local < 1 || replicas < d.replicas) throw new MusterError('STORE_UNAVAILABLE', `Redis did not fsync its AOF (and reach ${d.replicas} replicas) within ${d.timeoutMs} ms`);
        }),
      );
    } else {
      waits.push(
        (this.client.call('WAIT', d.replicas, d.timeoutMs) as Promise<number>).then((n) => {
          if (n < d.replicas) throw new MusterError('STORE_UNAVAILABLE', `only ${n} of ${d.replicas} Redis replicas acknowledged the write within ${d.timeoutMs} ms`);
        }),
      );
    }
    const [result] = await Promise.all([command, ...waits]);
    return result;
  }
}
