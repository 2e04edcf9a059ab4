// The dashboard's only way to the server: the admin API and its live feed, with the
// admin token from session storage in an Authorization header (never a URL, never a cookie).

const TOKEN_KEY = 'muster.adminToken';

export function savedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T = unknown>(token: string, method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, cache: 'no-store' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { ...init.headers, 'content-type': 'application/json' };
  }
  const res = await fetch(`/api/v1${path}`, init);
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    parsed = text;
  }
  if (!res.ok) {
    const msg = typeof parsed === 'object' && parsed !== null && 'message' in parsed ? String((parsed as { message: unknown }).message) : res.statusText;
    throw new ApiError(res.status, msg);
  }
  return parsed as T;
}

export interface Snapshot {
  topic: string;
  at: string;
  status: number;
  body: unknown;
}

/**
 * Subscribes to GET /api/v1/events by streaming fetch (EventSource cannot send an
 * Authorization header). Reconnects with a short backoff until `stop()` is called;
 * a 401 (`unauthorized`) or a 400 (`refused`: a topic the server does not have) ends it.
 */
export function subscribe(
  token: string,
  topics: readonly string[],
  on: { snapshot: (s: Snapshot) => void; status: (live: boolean) => void; unauthorized: () => void; refused: () => void },
): () => void {
  let stopped = false;
  let ctrl: AbortController | undefined;
  let delay = 500;
  const run = async (): Promise<void> => {
    while (!stopped) {
      ctrl = new AbortController();
      try {
        const res = await fetch(`/api/v1/events?topics=${encodeURIComponent(topics.join(','))}`, {
          headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
          signal: ctrl.signal,
          cache: 'no-store',
        });
        if (res.status === 401) {
          on.unauthorized();
          return;
        }
        if (res.status === 400) {
          // A topic this server does not have (its dialect is off): retrying would not help.
          on.refused();
          return;
        }
        if (!res.ok || !res.body) throw new Error(`events: ${res.status}`);
        on.status(true);
        delay = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (event === 'snapshot' && data !== '') on.snapshot(JSON.parse(data) as Snapshot);
          }
        }
      } catch {
        // Aborted, or the server went away: retry below unless stopped.
      }
      if (stopped) return;
      on.status(false);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  };
  void run();
  return () => {
    stopped = true;
    ctrl?.abort();
  };
}
