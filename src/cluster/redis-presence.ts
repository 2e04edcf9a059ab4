import type { Redis } from 'ioredis';

/**
 * Cluster mode's presence and connection directory in Redis (keys under `prefix`):
 *
 * - `alive:<id>`: set with a TTL, refreshed by the owning instance's heartbeat.
 * - `instances`: every instance that registered and has not been removed.
 * - `dir` (hash: connection id -> instance) and `conns:<id>` (that instance's
 *   connections), for deliveries to a connection whose instance the sender does not know.
 * - `claims` (hash: `<scope>:<name>` -> `<instance>/<connection>`) and `claims:<id>` (the
 *   fields that instance claimed): names unique cluster-wide. A claim is taken atomically
 *   (`CLAIM`) when the name is free, held by an instance whose `alive` key is gone, or held
 *   by this instance (its caller knows no connection here uses it: a claim left over from
 *   an outage); released only by the connection holding it (`RELEASE`).
 *
 * An instance in `instances` whose `alive` key has expired is gone: whoever notices first
 * removes its directory entries, its claims and its membership, in one script (`REAP`),
 * which does nothing if the instance has come back meanwhile.
 */

const REAP = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local conns = redis.call('SMEMBERS', KEYS[2])
for i = 1, #conns do
  if redis.call('HGET', KEYS[3], conns[i]) == ARGV[1] then redis.call('HDEL', KEYS[3], conns[i]) end
end
redis.call('DEL', KEYS[2])
local mine = ARGV[1] .. '/'
local names = redis.call('SMEMBERS', KEYS[6])
for i = 1, #names do
  local v = redis.call('HGET', KEYS[5], names[i])
  if v and string.sub(v, 1, #mine) == mine then redis.call('HDEL', KEYS[5], names[i]) end
end
redis.call('DEL', KEYS[6])
redis.call('SREM', KEYS[4], ARGV[1])
return 1
`;

/** KEYS: claims, claims:<me>. ARGV: field, <me>/<conn>, <me>, the alive key prefix. */
const CLAIM = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and cur ~= ARGV[2] then
  local inst = string.match(cur, '^(.-)/')
  if inst ~= ARGV[3] and redis.call('EXISTS', ARGV[4] .. (inst or '')) == 1 then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
`;

/** KEYS: claims, claims:<me>. ARGV: field, <me>/<conn>, <me>/. */
const RELEASE = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  cur = false
end
if not cur or string.sub(cur, 1, #ARGV[3]) ~= ARGV[3] then redis.call('SREM', KEYS[2], ARGV[1]) end
return 1
`;

/** KEYS: claims, claims:<me>. ARGV: <me>/, then this instance's connections: drops the others' claims. */
const PRUNE = `
local live = {}
for i = 2, #ARGV do live[ARGV[i]] = true end
local names = redis.call('SMEMBERS', KEYS[2])
for i = 1, #names do
  local v = redis.call('HGET', KEYS[1], names[i])
  local mine = v and string.sub(v, 1, #ARGV[1]) == ARGV[1]
  if mine and not live[string.sub(v, #ARGV[1] + 1)] then redis.call('HDEL', KEYS[1], names[i]) end
  if not mine or not live[string.sub(v, #ARGV[1] + 1)] then redis.call('SREM', KEYS[2], names[i]) end
end
return 1
`;

/** How long a claim may wait for Redis before it is refused (and undone if it lands later). */
const CLAIM_TIMEOUT_MS = 2000;

export class Presence {
  readonly #cmd: Redis;
  readonly #id: string;
  readonly #p: string;
  readonly #ttl: number;
  /** This instance's connections now (for re-registration). */
  readonly #here: () => string[];

  constructor(cmd: Redis, id: string, prefix: string, ttl: number, here: () => string[]) {
    this.#cmd = cmd;
    this.#id = id;
    this.#p = prefix;
    this.#ttl = ttl;
    this.#here = here;
  }

  key(...parts: string[]): string {
    return this.#p + parts.join(':');
  }

  /** Presence, and this instance's connections in the directory (stale ones removed). */
  async register(): Promise<void> {
    const id = this.#id;
    const conns = this.key('conns', id);
    const dir = this.key('dir');
    await this.#cmd.multi().set(this.key('alive', id), '1', 'PX', this.#ttl).sadd(this.key('instances'), id).exec();
    const listed = await this.#cmd.smembers(conns);
    const here = new Set(this.#here());
    // Claims of connections gone during an outage (the list and the script in one tick:
    // a claim made later is for a connection in the list, and Redis runs it after).
    await this.#cmd.eval(PRUNE, 2, this.key('claims'), this.key('claims', id), `${id}/`, ...here);
    const stale = listed.filter((c) => !here.has(c));
    const m = this.#cmd.multi();
    if (stale.length > 0) m.hdel(dir, ...stale).srem(conns, ...stale);
    if (here.size > 0) {
      const pairs: string[] = [];
      for (const c of here) pairs.push(c, id);
      m.hset(dir, ...pairs).sadd(conns, ...here);
    }
    await m.exec();
  }

  /** Refreshes presence; registers again if another instance had removed this one (a long stall). */
  async beat(): Promise<void> {
    const res = await this.#cmd.multi().set(this.key('alive', this.#id), '1', 'PX', this.#ttl).sadd(this.key('instances'), this.#id).exec();
    if (res?.[1]?.[1] === 1) await this.register();
  }

  /** The other instances alive now; gone ones found on the way are removed. */
  async live(): Promise<Set<string>> {
    const others = (await this.#cmd.smembers(this.key('instances'))).filter((i) => i !== this.#id);
    const alive = others.length > 0 ? await this.#cmd.mget(...others.map((i) => this.key('alive', i))) : [];
    const live = new Set<string>();
    for (let i = 0; i < others.length; i++) {
      const id = others[i] as string;
      if (alive[i] !== null) live.add(id);
      else await this.reap(id);
    }
    return live;
  }

  async reap(id: string): Promise<void> {
    await this.#cmd.eval(REAP, 6, this.key('alive', id), this.key('conns', id), this.key('dir'), this.key('instances'), this.key('claims'), this.key('claims', id), id);
  }

  /** Leaves: presence and directory entries removed now rather than at expiry. */
  async leave(): Promise<void> {
    await this.#cmd.del(this.key('alive', this.#id));
    await this.reap(this.#id);
  }

  /** Fire and forget: a failed write is repaired at the next registration. */
  add(conn: string): void {
    this.#cmd.multi().hset(this.key('dir'), conn, this.#id).sadd(this.key('conns', this.#id), conn).exec().catch(() => {});
  }

  remove(conn: string): void {
    this.#cmd.multi().hdel(this.key('dir'), conn).srem(this.key('conns', this.#id), conn).exec().catch(() => {});
  }

  /** See `CLAIM`; rejects if Redis has not answered within CLAIM_TIMEOUT_MS. */
  async claim(field: string, conn: string): Promise<boolean> {
    const id = this.#id;
    const value = `${id}/${conn}`;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // If it lands after all, it must not hold the name for a connection that was refused.
        this.release(field, conn);
        reject(new Error(`Redis did not answer a name claim within ${CLAIM_TIMEOUT_MS} ms`));
      }, CLAIM_TIMEOUT_MS);
      timer.unref();
    });
    try {
      const res = this.#cmd.eval(CLAIM, 2, this.key('claims'), this.key('claims', id), field, value, id, this.key('alive', ''));
      return (await Promise.race([res, late])) === 1;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Fire and forget: a release that fails is repaired at the next registration, or with presence. */
  release(field: string, conn: string): void {
    const id = this.#id;
    this.#cmd.eval(RELEASE, 2, this.key('claims'), this.key('claims', id), field, `${id}/${conn}`, `${id}/`).catch(() => {});
  }

  lookup(conn: string): Promise<string | null> {
    return this.#cmd.hget(this.key('dir'), conn);
  }
}
