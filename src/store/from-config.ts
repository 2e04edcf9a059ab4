/**
 * The Redis store's options from the config's `store` section (its shape, so that
 * store/ imports nothing from config/), and the section's secrets for log redaction.
 */
import { redactRedisUrl, type RedisNode, type RedisStoreOptions } from './redis.js';

/** `config.store` as far as Redis is concerned (see config/schema.ts, StoreSchema). */
export interface RedisStoreSection {
  url?: string | undefined;
  prefix: string;
  sentinels?: RedisNode[] | undefined;
  name?: string | undefined;
  cluster?: RedisNode[] | undefined;
  username?: string | undefined;
  password?: string | undefined;
  sentinelPassword?: string | undefined;
  durability?: { replicas: number; aof: boolean; timeout: number } | undefined;
}

/** Where the log lines about the connection go. */
export interface StatusLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Options for RedisStore; Redis coming and going is logged once per change, never with a password. */
export function redisStoreOptions(st: RedisStoreSection, log: StatusLog): Omit<RedisStoreOptions, 'now'> {
  const where =
    st.url !== undefined ? redactRedisUrl(st.url) : st.sentinels !== undefined ? `sentinel primary ${st.name ?? '?'}` : st.cluster !== undefined ? 'cluster' : undefined;
  return {
    url: st.url,
    prefix: st.prefix,
    sentinels: st.sentinels,
    name: st.name,
    cluster: st.cluster,
    username: st.username,
    password: st.password,
    sentinelPassword: st.sentinelPassword,
    durability: st.durability && { replicas: st.durability.replicas, aof: st.durability.aof, timeoutMs: st.durability.timeout },
    onStatus: (status, err) => {
      if (status === 'up') log.info({ redis: where }, 'store: Redis connected');
      else log.warn({ redis: where, err: err?.message }, 'store: Redis unreachable; not ready until it answers (retrying)');
    },
  };
}

/** The section's secrets (passwords, also the one in the URL), for redaction. */
export function redisSecrets(st: Pick<RedisStoreSection, 'url' | 'password' | 'sentinelPassword'>): string[] {
  let inUrl: string | undefined;
  try {
    inUrl = st.url === undefined ? undefined : decodeURIComponent(new URL(st.url).password);
  } catch {
    inUrl = undefined;
  }
  return [st.password, st.sentinelPassword, inUrl].filter((p): p is string => p !== undefined && p !== '');
}
