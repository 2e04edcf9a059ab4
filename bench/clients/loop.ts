import { sleep } from '../lib/ipc.js';

/** What a closed-loop client (P1, P8) keeps that its `count`, `stop` and `exit` calls read. */
export interface LoopState {
  /** Round trips answered so far, and how many of them were errors. */
  totals(): { count: number; errors: number };
  /** Requests sent and not answered yet. */
  inFlight(): number;
  /** Sends no next request from now on. */
  halt(): void;
  /** Closes every socket. */
  readonly closers: ReadonlyArray<() => void>;
}

/** The runner's `count`, `stop` (lets what is in flight finish, 5 s at most) and `exit` calls of a closed-loop client. */
export function loopCalls(s: LoopState) {
  return {
    count: () => s.totals(),
    stop: async () => {
      s.halt();
      const until = performance.now() + 5000;
      while (s.inFlight() > 0 && performance.now() < until) await sleep(5);
      return { ...s.totals(), inFlight: s.inFlight() };
    },
    exit: () => {
      s.halt();
      for (const c of s.closers) c();
      setTimeout(() => process.exit(0), 50);
      return true;
    },
  };
}
