/**
 * How the Redis store lays out its keys, and the Lua scripts that make each operation
 * atomic. Kept apart from redis.ts so that the leader lease (cluster/lease.ts) uses the
 * very same layout.
 *
 * Keys of a namespace `ns`, under the configured prefix P (default "muster:"):
 *
 *   P{ns}:k:<key>   one string per entry: "<expiresAt>\n<canonical JSON>[\n<JSON>]"
 *   P{ns}:i         a sorted set of the namespace's keys, all with score 0
 *   P{ns}:lease     the namespace's leader lease (cluster/lease.ts)
 *   P{ns}:fence     the namespace's fencing-token counter (INCR)
 *
 * `ns` is escaped (%, { and } as %25, %7B, %7D) so that `{ns}` is a Redis Cluster hash
 * tag: every key of a namespace lives in one slot, which lets one script touch the
 * entry, the index and the fence together, also on Redis Cluster.
 *
 * An entry holds its logical expiry (ms on the writing instance's clock, empty for
 * none), the value's canonical JSON (object keys sorted; what compareAndSet compares)
 * and, only when it differs, the JSON as written (key order kept). JSON text never
 * contains a raw newline, so "\n" separates the parts unambiguously. Redis' own expiry
 * (PX) is the TTL plus EXPIRY_GRACE_MS: it only reclaims memory; callers see the
 * logical expiry, checked against the `now` each call sends.
 *
 * The sorted set's members all have score 0, so ZRANGE returns them in byte order,
 * which for UTF-8 is Unicode code point order: the order `list` promises.
 */

/** How long after its logical expiry Redis keeps an entry before deleting it itself. */
export const EXPIRY_GRACE_MS = 60_000;

export interface RedisKeys {
  /** The string holding `key` of `ns`. */
  entry(ns: string, key: string): string;
  /** The sorted set of `ns`'s keys. */
  index(ns: string): string;
  /** What an entry's name starts with, for scripts that walk the index. */
  entryBase(ns: string): string;
  lease(ns: string): string;
  fence(ns: string): string;
}

export function escapeTag(ns: string): string {
  return ns.replace(/[%{}]/g, (c) => (c === '%' ? '%25' : c === '{' ? '%7B' : '%7D'));
}

/** The key layout under `prefix`. A prefix must not hold { or }: it would change the hash tag. */
export function redisKeys(prefix: string): RedisKeys {
  if (/[{}]/.test(prefix)) throw new RangeError(`the Redis key prefix ${JSON.stringify(prefix)} must not contain "{" or "}"`);
  const tag = (ns: string): string => `${prefix}{${escapeTag(ns)}}`;
  return {
    entry: (ns, key) => `${tag(ns)}:k:${key}`,
    index: (ns) => `${tag(ns)}:i`,
    entryBase: (ns) => `${tag(ns)}:k:`,
    lease: (ns) => `${tag(ns)}:lease`,
    fence: (ns) => `${tag(ns)}:fence`,
  };
}

/** Errors the scripts raise, which redis.ts turns into the contract's TypeError and RangeError. */
export const NOT_A_NUMBER = 'MUSTER_NOT_A_NUMBER';
export const OVERFLOW = 'MUSTER_OVERFLOW';

/** Parse an entry, and tell whether it is live at `now` (for the scripts that read one). */
const PARSE = `
local function parse(raw)
  local a = string.find(raw, '\\n', 1, true)
  local expText = string.sub(raw, 1, a - 1)
  local b = string.find(raw, '\\n', a + 1, true)
  local canon, json
  if b then
    canon = string.sub(raw, a + 1, b - 1)
    json = string.sub(raw, b + 1)
  else
    canon = string.sub(raw, a + 1)
    json = canon
  end
  return expText, canon, json
end
local function live(raw, now)
  if not raw then return nil end
  local expText = parse(raw)
  if expText ~= '' and tonumber(expText) <= now then return nil end
  return raw
end
`;

/** Write an entry with Redis' own expiry (or none, or the one it had). */
const PUT = `
local function put(key, raw, px, keepttl)
  if px ~= '' then
    redis.call('SET', key, raw, 'PX', px)
  elseif keepttl then
    redis.call('SET', key, raw, 'KEEPTTL')
  else
    redis.call('SET', key, raw)
  end
end
`;

/** KEYS: entry, index. ARGV: member, raw entry, px ('' for none). */
export const SET = `${PUT}
put(KEYS[1], ARGV[2], ARGV[3], false)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
`;

/** KEYS: entry, index. ARGV: member, now. Returns 1 when the key was live. */
export const DELETE = `${PARSE}
local existed = live(redis.call('GET', KEYS[1]), tonumber(ARGV[2]))
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if existed then return 1 end
return 0
`;

/**
 * KEYS: index. ARGV: entry base, now. Returns [key, json, key, json, ...] in key
 * order; members whose entry Redis has already deleted leave the index on the way.
 */
export const LIST = `${PARSE}
local now = tonumber(ARGV[2])
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local raw = redis.call('GET', ARGV[1] .. m)
  if not raw then
    redis.call('ZREM', KEYS[1], m)
  elseif live(raw, now) then
    local _, _, json = parse(raw)
    out[#out + 1] = m
    out[#out + 1] = json
  end
end
return out
`;

/**
 * KEYS: entry, index. ARGV: member, delta, now, px ('' for none), expiresAt ('' for none).
 * Returns the new value as text that parses back to the exact double. Without a TTL,
 * an existing expiry is kept (as Redis INCR does).
 */
export const INCR = `${PARSE}${PUT}
local now = tonumber(ARGV[3])
local raw = live(redis.call('GET', KEYS[1]), now)
local base = 0
local expText = ''
if raw then
  local e, canon = parse(raw)
  if not string.match(canon, '^%-?%d') then return redis.error_reply('${NOT_A_NUMBER}') end
  base = tonumber(canon)
  expText = e
end
local n = base + tonumber(ARGV[2])
if n ~= n or n == math.huge or n == -math.huge then return redis.error_reply('${OVERFLOW}') end
local text
for p = 15, 17 do
  text = string.format('%.' .. p .. 'g', n)
  if tonumber(text) == n then break end
end
if ARGV[4] ~= '' then
  put(KEYS[1], ARGV[5] .. '\\n' .. text, ARGV[4], false)
else
  put(KEYS[1], expText .. '\\n' .. text, '', raw ~= nil and expText ~= '')
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return text
`;

/**
 * KEYS: entry, index. ARGV: member, now, mode, expected, raw entry, px.
 * mode "absent": write when there is no live entry; "number": when the live value is
 * a number equal to `expected`; "json": when its canonical JSON is `expected`.
 */
export const COMPARE_AND_SET = `${PARSE}${PUT}
local raw = live(redis.call('GET', KEYS[1]), tonumber(ARGV[2]))
local mode = ARGV[3]
local match
if mode == 'absent' then
  match = raw == nil
elseif raw == nil then
  match = false
else
  local _, canon = parse(raw)
  if mode == 'number' then
    match = string.match(canon, '^%-?%d') ~= nil and tonumber(canon) == tonumber(ARGV[4])
  else
    match = canon == ARGV[4]
  end
end
if not match then return 0 end
put(KEYS[1], ARGV[5], ARGV[6], false)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
`;

/**
 * KEYS: entry, index, fence. ARGV: member, token, raw entry, px. Writes only while the
 * namespace's current fencing token is the caller's: a leader deposed by a newer one
 * (which took a new token) is refused. Returns 1 when it wrote.
 */
export const FENCED_SET = `${PUT}
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end
put(KEYS[1], ARGV[3], ARGV[4], false)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
`;

/**
 * The leader lease of a namespace (cluster/lease.ts). KEYS: lease, fence. ARGV:
 * instance id, lease ms. Like SET lease value NX PX ms, where the value is
 * "<token>:<instance id>" and the token comes from INCR on the fence, which happens only
 * when the lease is free: a failed attempt never moves the current leader's token. A
 * missing fence (a new Redis, or one that lost its data) starts from Redis' clock in
 * microseconds, so tokens keep growing across a Redis that forgot them. Returns the
 * value, or the lease's PTTL (ms left) when someone holds it.
 */
export const LEASE_ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('PTTL', KEYS[1]) end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2])))
end
local value = string.format('%.0f', redis.call('INCR', KEYS[2])) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2])
return value
`;

/** KEYS: lease. ARGV: value, lease ms. Extends the lease only while it is still ours. */
export const LEASE_RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`;

/** KEYS: lease. ARGV: value. Gives the lease up only if it is still ours. */
export const LEASE_RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`;
