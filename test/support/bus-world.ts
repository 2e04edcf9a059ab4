import type { ManualClock } from '../../src/core/clock.js';
import { initialWorld, step, timerId, type BusWorld, type BusWorldConfig, type Eff, type TimerKey, type WorldEvent } from '../../src/dialects/bus/world.js';
import { driveWorldModule, type WorldDriver } from './world-driver.js';

/** The bus world's settings the unit tests start from (token `tok`, no rate limits, nobody seen), with the given changes. */
export function busWorldConfig(over: Partial<BusWorldConfig> = {}): BusWorldConfig {
  return {
    machine: { token: 'tok', maxMessageBytes: 65_536, preAuthMaxBytes: 4096, heartbeatInterval: 10_000, secretEquals: (a, b) => a === b },
    heartbeatInterval: 10_000,
    requestTimeout: 5_000,
    identifyTimeout: 3_000,
    maxBufferedBytes: 1 << 20,
    limited: false,
    eventRate: { perSecond: 0, burst: 0 },
    byteRate: { perSecond: 0, burst: 0 },
    lastSeen: () => 0,
    ...over,
  };
}

/** One bus world on `clock`, fed events by the test (see world-driver.ts). */
export function driveBusWorld(clock: ManualClock, cfg: BusWorldConfig): WorldDriver<BusWorld, WorldEvent, Eff, TimerKey> {
  return driveWorldModule(clock, { initialWorld, step, timerId }, cfg);
}
