/**
 * Questions to every instance, and closes of a connection wherever it is: the admin
 * API's view of the whole cluster, over the Broker's topics.
 *
 * - `gather(kind, question)`: this instance answers first (directly, no round trip), then
 *   every live peer is asked on the topic `ASK_TOPIC`; each answers on the asker's topic
 *   `answerTopic(id)`. It resolves once every instance believed alive has answered, once
 *   `until` says enough, or after `timeoutMs` (default `GATHER_TIMEOUT_MS`), naming the
 *   instances that did not answer. While the cluster cannot be reached (Redis down), the
 *   peers are not asked: they are `missing` at once and `reachable` is false.
 * - `close(connId, order)`: the instance holding the connection closes it with its
 *   closer (the transport's kick, which sends the dialect's goodbye); this instance is
 *   tried first, then the others are asked and the first that closes it answers.
 *
 * Questions and answers are small JSON messages; an answerer that throws answers with
 * its error message, which counts as an answer (not a missing instance).
 */

/** Everything gather needs from a broker. */
export interface GatherLink {
  readonly instanceId: string;
  /** Whether the other instances can be asked now. */
  ready(): boolean;
  /** Other instances believed alive now. */
  peers(): readonly string[];
  publish(topic: string, message: Buffer): void;
  subscribe(topic: string, handler: (message: Buffer) => void): () => void;
}

export const ASK_TOPIC = 'muster.admin.ask';
export const answerTopic = (instance: string): string => `muster.admin.answer.${instance}`;
/** How long a gather waits for instances that have not answered, ms, unless told otherwise (`cluster.gatherTimeout`). */
export const GATHER_TIMEOUT_MS = 1_000;
/** The kind of question a close is. */
export const CLOSE_KIND = 'close';

/** Answers a question of one kind on this instance; `from` is the asking instance. */
export type Answerer = (question: unknown, from: string) => unknown;

export interface GatherOptions {
  readonly timeoutMs?: number;
  /** Resolve early once the answers so far are enough. */
  readonly until?: (answers: ReadonlyMap<string, Answer>) => boolean;
}

export type Answer = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: string };

export interface Gathered {
  /** Answers by instance, this instance first, then in the order they came. */
  readonly answers: ReadonlyMap<string, Answer>;
  /** Instances believed alive that did not answer in time (or could not be asked). */
  readonly missing: readonly string[];
  /** False when the other instances could not be asked at all (cluster unreachable). */
  readonly reachable: boolean;
}

/** A request to close a connection, and who asked for it (for the log where it closes). */
export interface CloseOrder {
  /** The close code and reason when the connection's dialect has no goodbye of its own. */
  readonly code: number;
  readonly reason: string;
  /** Only a connection of this scope (dialect); any when absent. */
  readonly scope?: string;
  /** Who asked, e.g. `admin 10.0.0.5 via inst-a`. */
  readonly by?: string;
  /** Why, as the operator said. */
  readonly note?: string;
}

/** Closes a connection on this instance if it is here; returns whether it was. */
export type Closer = (connId: string, order: CloseOrder, from: string) => boolean;

export type CloseResult =
  | { readonly closed: true; readonly instance: string }
  | { readonly closed: false; readonly missing: readonly string[]; readonly reachable: boolean };

interface Question {
  readonly id: string;
  readonly from: string;
  readonly kind: string;
  readonly q: unknown;
}

interface Reply {
  readonly id: string;
  readonly from: string;
  readonly a?: unknown;
  readonly err?: string;
}

interface Waiting {
  readonly expected: Set<string>;
  readonly answers: Map<string, Answer>;
  readonly until: GatherOptions['until'];
  readonly done: () => void;
}

export type After = (ms: number, fn: () => void) => () => void;

const realAfter: After = (ms, fn) => {
  const t = setTimeout(fn, ms);
  t.unref();
  return () => clearTimeout(t);
};

export class Gatherer {
  readonly #link: GatherLink;
  readonly #after: After;
  readonly #timeoutMs: number;
  readonly #answerers = new Map<string, Answerer>();
  readonly #waiting = new Map<string, Waiting>();
  readonly #unsubscribe: Array<() => void>;
  #closer: Closer;
  #seq = 0;

  constructor(link: GatherLink, fallbackCloser: Closer, after: After = realAfter, timeoutMs = GATHER_TIMEOUT_MS) {
    this.#link = link;
    this.#timeoutMs = timeoutMs;
    this.#after = after;
    this.#closer = fallbackCloser;
    this.#unsubscribe = [
      link.subscribe(ASK_TOPIC, (m) => this.#onQuestion(m)),
      link.subscribe(answerTopic(link.instanceId), (m) => this.#onReply(m)),
    ];
  }

  answer(kind: string, handler: Answerer): () => void {
    if (kind === CLOSE_KIND) throw new Error(`"${CLOSE_KIND}" questions are answered by the closer`);
    this.#answerers.set(kind, handler);
    return () => {
      if (this.#answerers.get(kind) === handler) this.#answerers.delete(kind);
    };
  }

  setCloser(closer: Closer): void {
    this.#closer = closer;
  }

  async gather(kind: string, question: unknown, opts: GatherOptions = {}): Promise<Gathered> {
    const self = this.#link.instanceId;
    const answers = new Map<string, Answer>();
    answers.set(self, await this.#answerHere(kind, question, self));
    const peers = this.#link.peers().filter((p) => p !== self);
    const ready = this.#link.ready();
    if (opts.until?.(answers) === true) return { answers, missing: [], reachable: ready };
    if (!ready) return { answers, missing: peers, reachable: false };
    if (peers.length === 0) return { answers, missing: [], reachable: true };
    const id = `${self}/${++this.#seq}`;
    const expected = new Set(peers);
    await new Promise<void>((resolve) => {
      let cancel = (): void => {};
      const done = (): void => {
        if (!this.#waiting.delete(id)) return;
        cancel();
        resolve();
      };
      this.#waiting.set(id, { expected, answers, until: opts.until, done });
      cancel = this.#after(opts.timeoutMs ?? this.#timeoutMs, done);
      const msg: Question = { id, from: self, kind, q: question };
      this.#link.publish(ASK_TOPIC, Buffer.from(JSON.stringify(msg)));
    });
    return { answers, missing: [...expected].filter((p) => !answers.has(p)), reachable: true };
  }

  async close(connId: string, order: CloseOrder, opts: { timeoutMs?: number } = {}): Promise<CloseResult> {
    const closedBy = (answers: ReadonlyMap<string, Answer>): string | undefined => {
      for (const [instance, a] of answers) if (a.ok && a.value === true) return instance;
      return undefined;
    };
    const g = await this.gather(CLOSE_KIND, { conn: connId, order }, { ...opts, until: (a) => closedBy(a) !== undefined });
    const instance = closedBy(g.answers);
    return instance !== undefined ? { closed: true, instance } : { closed: false, missing: g.missing, reachable: g.reachable };
  }

  /** Pending gathers resolve now with what they have. */
  stop(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
    for (const w of [...this.#waiting.values()]) w.done();
  }

  get pending(): number {
    return this.#waiting.size;
  }

  async #answerHere(kind: string, q: unknown, from: string): Promise<Answer> {
    try {
      if (kind === CLOSE_KIND) {
        const { conn, order } = q as { conn: string; order: CloseOrder };
        return { ok: true, value: this.#closer(conn, order, from) };
      }
      const h = this.#answerers.get(kind);
      if (!h) return { ok: false, error: `no answer to "${kind}" here` };
      return { ok: true, value: await h(q, from) };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  }

  #onQuestion(m: Buffer): void {
    const q = parse<Question>(m);
    if (!q || typeof q.id !== 'string' || typeof q.from !== 'string' || q.from === this.#link.instanceId) return;
    void this.#answerHere(q.kind, q.q, q.from).then((a) => {
      const reply: Reply = a.ok ? { id: q.id, from: this.#link.instanceId, a: a.value } : { id: q.id, from: this.#link.instanceId, err: a.error };
      this.#link.publish(answerTopic(q.from), Buffer.from(JSON.stringify(reply)));
    });
  }

  #onReply(m: Buffer): void {
    const r = parse<Reply>(m);
    if (!r || typeof r.id !== 'string' || typeof r.from !== 'string') return;
    const w = this.#waiting.get(r.id);
    if (!w || w.answers.has(r.from)) return;
    w.answers.set(r.from, r.err !== undefined ? { ok: false, error: r.err } : { ok: true, value: r.a });
    w.expected.add(r.from);
    if ([...w.expected].every((p) => w.answers.has(p)) || w.until?.(w.answers) === true) w.done();
  }
}

function parse<T>(m: Buffer): T | undefined {
  try {
    const v = JSON.parse(m.toString()) as unknown;
    return v !== null && typeof v === 'object' ? (v as T) : undefined;
  } catch {
    return undefined;
  }
}
