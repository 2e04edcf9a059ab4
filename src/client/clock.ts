/**
 * The clients' time source. Every timer a client sets (reconnect backoff, request
 * deadlines, heartbeats) goes through one, so tests drive time with a manual clock
 * (the server's `ManualClock` fits this shape) instead of sleeping.
 */
export interface ClientClock {
  now(): number;
  /** Calls `cb` once, `ms` from now; returns a cancel function. */
  wake(ms: number, cb: () => void): () => void;
}

/** Real time: `Date.now()` and `setTimeout`. */
export const systemClock: ClientClock = {
  now: () => Date.now(),
  wake: (ms, cb) => {
    const t = setTimeout(cb, Math.max(0, ms));
    return () => clearTimeout(t);
  },
};
