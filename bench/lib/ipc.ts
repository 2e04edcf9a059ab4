/**
 * A tiny request/response protocol over Node's IPC channel, shared by the runner
 * (parent) and every server and load-generator child. Messages are JSON.
 *
 *   parent → child  { t: 'req', id, method, params }     answered by { t: 'res', id, ok, value | error }
 *   parent → child  { t: 'note', method, params }        no answer (fire and forget)
 *   child  → parent { t: 'evt', name, data }             events (ready, progress, …)
 */

export interface ReqMsg {
  t: 'req';
  id: number;
  method: string;
  params: unknown;
}
export interface NoteMsg {
  t: 'note';
  method: string;
  params: unknown;
}
export interface ResMsg {
  t: 'res';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}
export interface EvtMsg {
  t: 'evt';
  name: string;
  data: unknown;
}
export type ToChild = ReqMsg | NoteMsg;
export type ToParent = ResMsg | EvtMsg;

export type Handler = (params: never) => unknown;
export type Handlers = Record<string, Handler>;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

export function isToChild(v: unknown): v is ToChild {
  return isObj(v) && (v.t === 'req' || v.t === 'note') && typeof v.method === 'string';
}

export function isToParent(v: unknown): v is ToParent {
  return isObj(v) && ((v.t === 'res' && typeof v.id === 'number') || (v.t === 'evt' && typeof v.name === 'string'));
}

/** Child side: sends an event to the runner. */
export function emit(name: string, data: unknown = null): void {
  const msg: EvtMsg = { t: 'evt', name, data };
  process.send?.(msg);
}

/**
 * Child side: answers the runner's requests with `handlers`, and exits when the IPC
 * channel closes (the runner went away) so no child outlives the bench.
 * Every handler may be async; a thrown error is reported back as a failed call.
 */
export function serve(handlers: Handlers): void {
  if (!process.send) throw new Error('this script must be started by bench/run.ts (no IPC channel)');
  process.on('message', (raw: unknown) => {
    if (!isToChild(raw)) return;
    const h = handlers[raw.method];
    if (raw.t === 'note') {
      if (h) void Promise.resolve().then(() => h(raw.params as never)).catch((err: unknown) => console.error(err));
      return;
    }
    const reply = (res: Omit<ResMsg, 't' | 'id'>): void => {
      const msg: ResMsg = { t: 'res', id: raw.id, ...res };
      process.send?.(msg);
    };
    if (!h) {
      reply({ ok: false, error: `unknown method ${raw.method}` });
      return;
    }
    Promise.resolve()
      .then(() => h(raw.params as never))
      .then(
        (value) => reply({ ok: true, value: value ?? null }),
        (err: unknown) => reply({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
      );
  });
  process.on('disconnect', () => process.exit(0));
}

/** Parses `--key value` pairs given to a child script. */
export function childArgs(): Record<string, string> {
  const out: Record<string, string> = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a.startsWith('--')) {
      const v = argv[i + 1];
      if (v !== undefined && !v.startsWith('--')) {
        out[a.slice(2)] = v;
        i++;
      } else out[a.slice(2)] = 'true';
    }
  }
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
