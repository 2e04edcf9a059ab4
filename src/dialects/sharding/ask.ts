/**
 * The sharding admin API on any instance (cluster mode): a route served by an instance
 * that does not lead is asked of the leader over the Broker (`ask` on the leader's topic,
 * the `answer` back on this instance's edge topic), and answered as the leader answered.
 * No answer within `ASK_TIMEOUT_MS` (no leader, e.g. during a takeover): 503 NOT_LEADER.
 * The views themselves are pure functions of the fleet state, the same on either path.
 */
import { randomUUID } from 'node:crypto';
import type { Broker } from '../../cluster/broker.js';
import type { HttpReply } from '../../core/dialect.js';
import { httpError } from '../../common/errors.js';
import type { Scheduler, Timer } from '../../core/scheduler.js';
import { LEADER_TOPIC, encodeLink, type AdminQuery, type ViewQuery } from './link.js';
import { controlView, fleetView, shardsView, type FleetState, type MachineConfig } from './machine.js';

/** How long a follower waits for the leader's answer. */
export const ASK_TIMEOUT_MS = 5_000;

export const NOT_LEADER_BODY = {
  error: 'NOT_LEADER',
  message: 'no sharding leader answered; the orchestrator is changing hands, retry shortly',
} as const;

const SHUTTING_DOWN: HttpReply = { status: 503, body: { error: 'SHUTTING_DOWN', message: 'the server is shutting down' } };

/** A read-only admin view of the fleet. */
export function viewReply(state: FleetState, cfg: MachineConfig, now: number, q: ViewQuery): HttpReply {
  switch (q.view) {
    case 'fleet':
      return { body: fleetView(state, cfg, now) };
    case 'shards':
      return { body: shardsView(state) };
    case 'control': {
      const rec = state.controls.get(q.name);
      if (!rec) return httpError('NOT_FOUND', `no CONTROL named "${q.name}"`);
      const view = JSON.stringify({ ...controlView(state, rec), infoAt: rec.infoAt, connected: rec.conn !== null });
      // INFO is spliced in as it came, so numbers beyond 2^53 keep their digits.
      const body = `${view.slice(0, -1)},"info":${rec.info ?? 'null'}}`;
      return { body, headers: { 'content-type': 'application/json; charset=utf-8' } };
    }
  }
}

/** The asking side: questions out on the leader's topic, answers matched back by id. */
export class Asker {
  readonly #waiting = new Map<string, { resolve: (r: HttpReply) => void; timer: Timer }>();

  constructor(
    readonly broker: Broker,
    readonly instanceId: string,
    readonly scheduler: Scheduler,
  ) {}

  ask(q: AdminQuery): Promise<HttpReply> {
    const id = randomUUID();
    return new Promise<HttpReply>((resolve) => {
      const timer = this.scheduler.after(ASK_TIMEOUT_MS, () => {
        if (this.#waiting.delete(id)) resolve({ status: 503, body: NOT_LEADER_BODY });
      });
      this.#waiting.set(id, { resolve, timer });
      this.broker.publish(LEADER_TOPIC, encodeLink({ k: 'ask', i: this.instanceId, id, q }));
    });
  }

  /** The leader's answer (from the edge topic). */
  answer(id: string, reply: HttpReply): void {
    const w = this.#waiting.get(id);
    if (!w) return;
    this.#waiting.delete(id);
    w.timer.cancel();
    w.resolve(reply);
  }

  get pending(): number {
    return this.#waiting.size;
  }

  stop(): void {
    for (const w of this.#waiting.values()) {
      w.timer.cancel();
      w.resolve(SHUTTING_DOWN);
    }
    this.#waiting.clear();
  }
}
