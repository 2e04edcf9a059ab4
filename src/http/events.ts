import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { HttpRoute } from '../core/dialect.js';
import type { Scheduler, Timer } from '../core/scheduler.js';
import { Errors, httpError } from '../common/errors.js';

/**
 * The admin API's live feed, `GET /api/v1/events` (Server-Sent Events). A topic is one
 * parameterless admin GET route (`sharding.shards` is `GET /api/v1/sharding/shards`); its
 * event carries exactly the body that route answers, so the feed shows nothing the API
 * does not. The feed polls the routes' own handlers, at most once per `interval` per
 * subscriber, and sends a topic only when its body changed (or once, at subscription).
 * One computation of a topic serves every subscriber of the same tick.
 */

export const EVENTS_URL = '/api/v1/events';
/** ms between checks, unless the subscriber asks for another (`?interval=`). */
export const EVENTS_DEFAULT_INTERVAL = 500;
export const EVENTS_MIN_INTERVAL = 250;
export const EVENTS_MAX_INTERVAL = 10_000;
/** A comment line after this much silence, so idle proxies and timeouts keep the stream. */
export const EVENTS_KEEPALIVE = 15_000;
/** Open event streams at once, across every client. */
export const EVENTS_MAX_SUBSCRIBERS = 32;
/** Unsent bytes on a stream past which a tick is skipped (the next one sends the newest bodies). */
const MAX_BACKLOG = 8 * 1024 * 1024;

export interface EventsOptions {
  routes: readonly HttpRoute[];
  scheduler: Scheduler;
  adminToken: () => string;
  secretEquals: (a: string, b: string) => boolean;
  adminAuth: preHandlerAsyncHookHandler;
}

/** Topic name for an admin route URL, or undefined if the route cannot be a topic. */
export function topicOf(r: HttpRoute): string | undefined {
  if (r.method !== 'GET' || r.access !== 'admin' || r.url.includes(':')) return undefined;
  if (!r.url.startsWith('/api/v1/') || r.url === EVENTS_URL || r.url === '/api/v1/openapi.json') return undefined;
  return r.url.slice('/api/v1/'.length).replaceAll('/', '.');
}

interface Subscriber {
  readonly reply: FastifyReply;
  readonly token: string;
  readonly topics: readonly string[];
  readonly interval: number;
  readonly last: Map<string, string>;
  nextAt: number;
  lastWrite: number;
  seq: number;
}

export class EventHub {
  readonly #opts: EventsOptions;
  readonly #topics = new Map<string, HttpRoute>();
  readonly #subs = new Set<Subscriber>();
  #timer: Timer | undefined;
  #ticking = false;

  constructor(opts: EventsOptions) {
    this.#opts = opts;
    for (const r of opts.routes) {
      const t = topicOf(r);
      if (t !== undefined) this.#topics.set(t, r);
    }
  }

  get topics(): string[] {
    return [...this.#topics.keys()].sort();
  }

  get subscribers(): number {
    return this.#subs.size;
  }

  /** The OpenAPI path item of the feed, with its event schema. */
  openApiPath(): Record<string, unknown> {
    const topics = this.topics;
    return {
      get: {
        summary:
          'Live feed (Server-Sent Events). Each `snapshot` event carries the body of one admin GET route (its topic), sent at subscription and then whenever it changes, checked at most once per interval.',
        security: [{ bearer: [] }],
        parameters: [
          {
            name: 'topics',
            in: 'query',
            required: false,
            description: 'Comma-separated topics (default: all). A topic is an admin GET route under /api/v1 with "/" as ".".',
            schema: { type: 'string' },
            example: 'status,sharding,sharding.shards',
          },
          {
            name: 'interval',
            in: 'query',
            required: false,
            description: `ms between checks for changes, ${EVENTS_MIN_INTERVAL} to ${EVENTS_MAX_INTERVAL} (default ${EVENTS_DEFAULT_INTERVAL})`,
            schema: { type: 'integer', minimum: EVENTS_MIN_INTERVAL, maximum: EVENTS_MAX_INTERVAL },
          },
        ],
        responses: {
          '200': {
            description:
              'text/event-stream. First a `hello` event, then `snapshot` events; a comment line (`: keepalive`) after 15 s of silence. The stream ends if the admin token changes.',
            content: {
              'text/event-stream': {
                schema: {
                  oneOf: [
                    {
                      title: 'hello',
                      type: 'object',
                      description: 'event: hello',
                      required: ['topics', 'interval'],
                      properties: {
                        topics: { type: 'array', items: { type: 'string', enum: topics } },
                        interval: { type: 'integer' },
                      },
                    },
                    {
                      title: 'snapshot',
                      type: 'object',
                      description: 'event: snapshot (id: a per-stream sequence number)',
                      required: ['topic', 'at', 'status', 'body'],
                      properties: {
                        topic: { type: 'string', enum: topics },
                        at: { type: 'string', format: 'date-time' },
                        status: { type: 'integer', description: "the route's HTTP status" },
                        body: { description: "the route's response body, as GET would return it" },
                      },
                    },
                  ],
                },
              },
            },
          },
          '400': { description: 'Unknown topic or bad interval' },
          '401': { description: 'Missing or wrong admin token' },
          '429': { description: 'Too many failed admin tokens from this address (Retry-After)' },
          '503': { description: `Too many open event streams (${EVENTS_MAX_SUBSCRIBERS})` },
        },
      },
    };
  }

  mount(app: FastifyInstance): void {
    app.get(EVENTS_URL, { preHandler: this.#opts.adminAuth }, (req, reply) => this.#subscribe(req, reply));
  }

  #subscribe(req: FastifyRequest, reply: FastifyReply): FastifyReply | undefined {
    const q = (req.query ?? {}) as Record<string, unknown>;
    const bad = (message: string): FastifyReply => reply.code(Errors.BAD_REQUEST.status).send(httpError('BAD_REQUEST', message).body);
    let topics = this.topics;
    if (q.topics !== undefined) {
      if (typeof q.topics !== 'string') return bad('"topics" must be given once');
      const asked = [...new Set(q.topics.split(',').filter((t) => t !== ''))];
      const unknown = asked.filter((t) => !this.#topics.has(t));
      if (unknown.length > 0) return bad(`unknown topic ${JSON.stringify(unknown[0])}; topics are: ${this.topics.join(', ')}`);
      if (asked.length > 0) topics = asked;
    }
    let interval = EVENTS_DEFAULT_INTERVAL;
    if (q.interval !== undefined) {
      if (typeof q.interval !== 'string' || !/^\d{1,6}$/.test(q.interval)) return bad('"interval" must be an integer number of ms');
      interval = Number(q.interval);
      if (interval < EVENTS_MIN_INTERVAL || interval > EVENTS_MAX_INTERVAL) {
        return bad(`"interval" must be between ${EVENTS_MIN_INTERVAL} and ${EVENTS_MAX_INTERVAL}`);
      }
    }
    if (this.#subs.size >= EVENTS_MAX_SUBSCRIBERS) {
      return reply.code(Errors.UNAVAILABLE.status).send(httpError('UNAVAILABLE', 'too many open event streams').body);
    }
    const h = req.headers.authorization ?? '';
    const now = this.#opts.scheduler.now();
    const sub: Subscriber = { reply, token: h.slice(7), topics, interval, last: new Map(), nextAt: now, lastWrite: now, seq: 0 };
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    reply.raw.write(`retry: 2000\nevent: hello\ndata: ${JSON.stringify({ topics, interval })}\n\n`);
    this.#subs.add(sub);
    const drop = (): void => {
      this.#subs.delete(sub);
      if (this.#subs.size === 0) this.#stopTimer();
    };
    req.raw.socket.once('close', drop);
    reply.raw.once('close', drop);
    this.#startTimer();
    void this.#tick();
    return undefined;
  }

  /** Ends every stream (shutdown). */
  close(): void {
    for (const s of this.#subs) s.reply.raw.end();
    this.#subs.clear();
    this.#stopTimer();
  }

  #startTimer(): void {
    this.#timer ??= this.#opts.scheduler.every(EVENTS_MIN_INTERVAL, () => void this.#tick());
  }

  #stopTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  async #tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      const now = this.#opts.scheduler.now();
      const due: Subscriber[] = [];
      for (const s of this.#subs) {
        if (!this.#opts.secretEquals(s.token, this.#opts.adminToken())) {
          // The admin token changed (SIGHUP): this stream's token no longer opens the API.
          this.#subs.delete(s);
          s.reply.raw.end();
          continue;
        }
        if (now < s.nextAt || s.reply.raw.writableLength > MAX_BACKLOG) continue;
        s.nextAt = now + s.interval;
        due.push(s);
      }
      if (due.length === 0) return;
      const wanted = new Set(due.flatMap((s) => s.topics));
      const bodies = new Map<string, { status: number; json: string }>();
      for (const t of wanted) {
        const route = this.#topics.get(t);
        if (!route) continue;
        try {
          const out = await route.handler({ params: {}, query: {}, body: undefined, ip: '', headers: {} });
          const b = out.body;
          const raw = typeof b === 'string' ? b : Buffer.isBuffer(b) ? b.toString('utf8') : JSON.stringify(b ?? null);
          // A raw line break can only be whitespace between JSON tokens; an event's data must be one line.
          const json = /[\r\n]/.test(raw) ? raw.replace(/[\r\n]+/g, ' ') : raw;
          bodies.set(t, { status: out.status ?? 200, json });
        } catch (err) {
          const e = httpError('INTERNAL', (err as Error).message);
          bodies.set(t, { status: e.status, json: JSON.stringify(e.body) });
        }
      }
      const at = new Date(this.#opts.scheduler.now()).toISOString();
      for (const s of due) {
        if (!this.#subs.has(s)) continue;
        let out = '';
        for (const t of s.topics) {
          const b = bodies.get(t);
          if (!b || s.last.get(t) === b.json) continue;
          s.last.set(t, b.json);
          out += `event: snapshot\nid: ${++s.seq}\ndata: {"topic":${JSON.stringify(t)},"at":"${at}","status":${b.status},"body":${b.json}}\n\n`;
        }
        if (out === '' && now - s.lastWrite >= EVENTS_KEEPALIVE) out = ': keepalive\n\n';
        if (out !== '') {
          s.lastWrite = now;
          s.reply.raw.write(out);
        }
      }
    } finally {
      this.#ticking = false;
    }
  }
}
