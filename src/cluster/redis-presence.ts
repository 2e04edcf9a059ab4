import type { Redis } from 'ioredis';

/**
 * Cluster mode's presence and connection directory in Redis (keys under `prefix`):
 *
 * - `alive:<id>`: set with a TTL, refreshed by the owning instance's heartbeat.
 * - `instances`: every instance that registered and has not been removed.
 * - `dir` (hash: connection id -> instance) and `conns:<id>` (that instance's
 *   connections), for deliveries to a connection whose instance the sender does not know.
 *
 * An instance in `instances` whose `alive` key has expired is gone: whoever notices first
 * removes its directory entries and its membership, in one script (`REAP`), which does
 * nothing if the instance has come back meanwhile.
 */

const REAP = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local conns = redis.call('SMEMBERS', KEYS[2])
for i = 1, #conns do
  if redis.call('HGET', KEYS[3], conns[i]) == ARGV[1] then redis.call('HDEL', KEYS[3], conns[i]) end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[4], ARGV[1])
return 1
`;

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
    await this.#cmd.eval(REAP, 4, this.key('alive', id), this.key('conns', id), this.key('dir'), this.key('instances'), id);
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

  lookup(conn: string): Promise<string | null> {
    return this.#cmd.hget(this.key('dir'), conn);
  }
}
