/** The server's public API, for embedding Muster in a program. */
export { startMuster, type Muster, type MusterOptions } from './server.js';
export { loadConfig, ConfigError } from './config/load.js';
export { resolveSecrets } from './config/secrets.js';
export type { MusterConfig } from './config/schema.js';
export { ManualClock, SystemClock, type Clock } from './core/clock.js';
export { Scheduler } from './core/scheduler.js';
export { MusterError, Errors, CloseCode } from './common/errors.js';
export type { Store } from './store/types.js';
export type { Dialect, DialectContext } from './core/dialect.js';
