import type { ManualClock } from '../../src/core/clock.js';

/**
 * Plays the runtime's part for a pure world in a unit test: feeds events into its step,
 * keeps the timers its effects set or cancel, and moves a manual clock, feeding every
 * timer that falls due, in order. No socket, scheduler or runtime.
 */
export interface WorldDriver<S, Ev, Fx, K> {
  /** Feeds one event; returns its effects (and records them in `out`). */
  feed(ev: Ev): Fx[];
  /** Moves the clock by `ms`, feeding the due timers in order; returns what they did. */
  advance(ms: number): Fx[];
  /** The timers set and not yet fired or cancelled, by timer id. */
  readonly timers: Map<string, { key: K; at: number }>;
  /** Every effect fed so far. */
  readonly out: Fx[];
  state(): S;
}

type TimerEffect<K> = { readonly type: 'timer'; readonly key: K; readonly at: number | null };

export function driveWorld<S, Ev, Fx extends { readonly type: string }, K>(opts: {
  clock: ManualClock;
  initial: S;
  step: (state: S, ev: Ev) => { state: S; effects: readonly Fx[] };
  timerId: (key: K) => string;
  timerEvent: (key: K, now: number) => Ev;
}): WorldDriver<S, Ev, Fx, K> {
  const { clock } = opts;
  let state = opts.initial;
  const timers = new Map<string, { key: K; at: number }>();
  const out: Fx[] = [];
  const feed = (ev: Ev): Fx[] => {
    const r = opts.step(state, ev);
    state = r.state;
    for (const e of r.effects) {
      if (e.type !== 'timer') continue;
      const t = e as unknown as TimerEffect<K>;
      if (t.at === null) timers.delete(opts.timerId(t.key));
      else timers.set(opts.timerId(t.key), { key: t.key, at: t.at });
    }
    out.push(...r.effects);
    return [...r.effects];
  };
  const advance = (ms: number): Fx[] => {
    const target = clock.now() + ms;
    const fx: Fx[] = [];
    for (;;) {
      let due: [string, { key: K; at: number }] | undefined;
      for (const t of timers) if (t[1].at <= target && (!due || t[1].at < due[1].at)) due = t;
      if (!due) break;
      timers.delete(due[0]);
      clock.advance(Math.max(0, due[1].at - clock.now()));
      fx.push(...feed(opts.timerEvent(due[1].key, clock.now())));
    }
    clock.advance(target - clock.now());
    return fx;
  };
  return { feed, advance, timers, out, state: () => state };
}

/** What a driver needs of a pure world module (src/dialects/<name>/world.ts). */
export interface WorldModule<S, Ev, Fx, K, C> {
  initialWorld(): S;
  step(state: S, ev: Ev, cfg: C): { state: S; effects: readonly Fx[] };
  timerId(key: K): string;
}

/** Drives a world module with `cfg`, from its initial state; its timers fire as `{ type: 'timer', now, key }`. */
export function driveWorldModule<S, Ev, Fx extends { readonly type: string }, K, C>(clock: ManualClock, mod: WorldModule<S, Ev, Fx, K, C>, cfg: C): WorldDriver<S, Ev, Fx, K> {
  return driveWorld<S, Ev, Fx, K>({
    clock,
    initial: mod.initialWorld(),
    step: (state, ev) => mod.step(state, ev, cfg),
    timerId: (key) => mod.timerId(key),
    timerEvent: (key, now) => ({ type: 'timer', now, key }) as Ev,
  });
}
