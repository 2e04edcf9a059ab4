import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isToParent, type NoteMsg, type ReqMsg } from './ipc.js';

/** bench/ (this file is bench/lib/child.ts). */
export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Scratch space: logs, profiles, nats configs. Ignored by git. */
export const TMP_DIR = path.join(BENCH_DIR, '.tmp');
/** The clone's own tsx loader, by absolute URL: nothing is resolved from the cwd or a global install. */
const TSX_LOADER = import.meta.resolve('tsx');

export interface StartOptions {
  /** A short label for logs and errors, e.g. "muster" or "p2-recv-1". */
  name: string;
  /** Path relative to bench/, e.g. "servers/muster.ts". */
  script: string;
  args?: string[];
  /** Extra flags for node itself (--expose-gc, --cpu-prof, …). */
  nodeArgs?: string[];
  /** How long to wait for the child's "ready" event. */
  readyTimeoutMs?: number;
  /**
   * Run the plain-JS transpile of `script` (see `useServerBuild`) with no tsx loader, as
   * a server ships. Every server under test is started this way, whichever implementation.
   */
  plain?: boolean;
}

let serverBuild: string | undefined;
/** Where `plain` children load from: the transpile of bench/ (lib/build.ts buildServers). */
export function useServerBuild(dir: string | undefined): void {
  serverBuild = dir;
}

interface Waiter {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * A TypeScript child process (run through tsx) that talks to the runner over IPC.
 * Its stdout and stderr go to bench/.tmp/logs/<name>.log.
 */
export class Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly logFile: string;
  #seq = 0;
  readonly #calls = new Map<number, Waiter>();
  readonly #listeners = new Map<string, Set<(data: unknown) => void>>();
  #exited = false;
  readonly #exit: Promise<number | null>;

  private constructor(opts: StartOptions) {
    this.name = opts.name;
    mkdirSync(path.join(TMP_DIR, 'logs'), { recursive: true });
    this.logFile = path.join(TMP_DIR, 'logs', `${opts.name}.log`);
    const log = createWriteStream(this.logFile);
    const entry =
      opts.plain && serverBuild
        ? [path.join(serverBuild, opts.script.replace(/\.ts$/, '.js'))]
        : ['--import', TSX_LOADER, path.join(BENCH_DIR, opts.script)];
    this.proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), ...entry, ...(opts.args ?? [])], {
      cwd: path.resolve(BENCH_DIR, '..'),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, NODE_ENV: 'production' },
    });
    this.proc.stdout?.pipe(log);
    this.proc.stderr?.pipe(log);
    this.proc.on('message', (m: unknown) => this.#onMessage(m));
    this.#exit = new Promise((resolve) => {
      this.proc.on('exit', (code) => {
        this.#exited = true;
        for (const w of this.#calls.values()) {
          clearTimeout(w.timer);
          w.reject(new Error(`${this.name} exited (code ${code}) during a call; see ${this.logFile}`));
        }
        this.#calls.clear();
        resolve(code);
      });
    });
  }

  /** Starts the child and waits for its "ready" event (whose data is returned). */
  static async start<R = unknown>(opts: StartOptions): Promise<{ child: Child; ready: R }> {
    const child = new Child(opts);
    try {
      const ready = await child.waitEvent<R>('ready', opts.readyTimeoutMs ?? 20_000);
      return { child, ready };
    } catch (err) {
      await child.kill();
      throw err;
    }
  }

  get pid(): number {
    const pid = this.proc.pid;
    if (pid === undefined) throw new Error(`${this.name} has no pid`);
    return pid;
  }

  get exited(): boolean {
    return this.#exited;
  }

  #onMessage(m: unknown): void {
    if (!isToParent(m)) return;
    if (m.t === 'res') {
      const w = this.#calls.get(m.id);
      if (!w) return;
      this.#calls.delete(m.id);
      clearTimeout(w.timer);
      if (m.ok) w.resolve(m.value);
      else w.reject(new Error(`${this.name}: ${m.error ?? 'failed'}`));
      return;
    }
    const set = this.#listeners.get(m.name);
    if (set) for (const fn of [...set]) fn(m.data);
  }

  /** Calls a method in the child and waits (bounded) for its answer. */
  call<T = unknown>(method: string, params: unknown = null, timeoutMs = 30_000): Promise<T> {
    if (this.#exited) return Promise.reject(new Error(`${this.name} has exited; see ${this.logFile}`));
    const id = ++this.#seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#calls.delete(id);
        reject(new Error(`${this.name}.${method} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.#calls.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      const msg: ReqMsg = { t: 'req', id, method, params };
      this.proc.send(msg);
    });
  }

  /** Sends a one-way message. */
  notify(method: string, params: unknown = null): void {
    if (this.#exited || !this.proc.connected) return;
    const msg: NoteMsg = { t: 'note', method, params };
    this.proc.send(msg);
  }

  on(name: string, fn: (data: unknown) => void): () => void {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  waitEvent<T = unknown>(name: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`${this.name}: no "${name}" within ${timeoutMs} ms; see ${this.logFile}`));
      }, timeoutMs);
      const off = this.on(name, (d) => {
        clearTimeout(timer);
        off();
        offExit();
        resolve(d as T);
      });
      const onExit = (code: number | null): void => {
        clearTimeout(timer);
        off();
        reject(new Error(`${this.name} exited (code ${code}) before "${name}"; see ${this.logFile}`));
      };
      this.proc.once('exit', onExit);
      const offExit = (): void => {
        this.proc.off('exit', onExit);
      };
    });
  }

  /** Asks the child to exit (method "exit"), then kills it if it has not within `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.#exited) return;
    try {
      await this.call('exit', null, graceMs);
    } catch {
      // It may exit before answering; the wait below settles it.
    }
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.#exit;
    clearTimeout(timer);
  }

  /** Kills the child at once. */
  async kill(): Promise<void> {
    if (this.#exited) return;
    this.proc.kill('SIGKILL');
    await this.#exit;
  }
}

/**
 * The processes a scenario started, so that every one of them is stopped when the
 * scenario ends, fails or runs out of time.
 */
export class ProcessGroup {
  readonly #children = new Set<Child>();
  readonly #others = new Set<ChildProcess>();
  #closed = false;

  async start<R = unknown>(opts: StartOptions): Promise<{ child: Child; ready: R }> {
    if (this.#closed) throw new Error(`not starting ${opts.name}: the scenario has ended`);
    const res = await Child.start<R>(opts);
    if (this.#closed) {
      await res.child.kill();
      throw new Error(`${opts.name} started after the scenario ended`);
    }
    this.#children.add(res.child);
    return res;
  }

  /** Tracks a non-TS process (nats-server). */
  adopt(proc: ChildProcess): void {
    if (this.#closed) proc.kill('SIGKILL');
    else this.#others.add(proc);
  }

  async stop(child: Child, graceMs?: number): Promise<void> {
    await child.stop(graceMs);
    this.#children.delete(child);
  }

  /** Stops everything: children get a polite exit, the rest SIGKILL. */
  async closeAll(graceMs = 3000): Promise<void> {
    this.#closed = true;
    const all = [...this.#children];
    this.#children.clear();
    await Promise.all(all.map((c) => c.stop(graceMs)));
    for (const p of this.#others) {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    this.#others.clear();
  }

  /** Last resort (SIGINT): kill without waiting. */
  killAllNow(): void {
    for (const c of this.#children) c.proc.kill('SIGKILL');
    for (const p of this.#others) p.kill('SIGKILL');
  }
}
