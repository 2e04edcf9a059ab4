/** The CONTROLs' key in the sharding benches (P4, P5, P9). */
export const SHARDING_KEY = 'bench-sharding-key-0123456789abcdef';

/** The timing the failover benches scale down from Discord's and the seed's (30 s heartbeat, 15 s grace). */
export interface FailoverTiming {
  heartbeatInterval: number;
  heartbeatGrace: number;
  reconnectWindow: number;
  fenceMargin: number;
}

/**
 * The sharding dialect of the failover benches (P5, P9): `shards` shards, `controls`
 * expected CONTROLs, parallel start-up, 16 identifies at once, `startupDelay` 5 s only as
 * the fallback.
 */
export function failoverSharding(shards: number, controls: number, t: FailoverTiming) {
  return {
    enabled: true,
    authorization: SHARDING_KEY,
    botToken: 'bench-bot-token',
    shardCount: shards,
    maxConcurrency: 16,
    heartbeatInterval: t.heartbeatInterval,
    heartbeatGrace: t.heartbeatGrace,
    reconnectWindow: t.reconnectWindow,
    fenceMargin: t.fenceMargin,
    startupDelay: 5000,
    expectedControls: controls,
    startup: 'parallel' as const,
  };
}
