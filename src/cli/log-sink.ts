import fs from 'node:fs';
import type { Writable } from 'node:stream';
import { prettyFactory } from 'pino-pretty';

/**
 * Where the log lines go, without ever blocking the event loop.
 *
 * pino hands every line to `write()`. The line is queued on a non-blocking stream (stdout,
 * which on a pipe is an asynchronous libuv stream, or an append-only file). A reader that
 * stops reading makes the queue grow; past `maxBufferedBytes` lines are dropped and counted
 * instead of queued. A stream that fails (EPIPE: the reader went away) is given up: every
 * later line is dropped and counted, and a single notice goes to stderr if stderr still
 * works. Nothing here throws into the caller: a master server keeps serving whatever
 * happens to its logs.
 */
export interface LogSinkOptions {
  /** Write the log to this file (created 0600, reopened by `reopen()`) instead of stdout. */
  file?: string | undefined;
  /** Pretty lines (for a terminal) instead of JSON lines. */
  pretty?: boolean;
  /** Bytes that may wait unwritten before further lines are dropped. */
  maxBufferedBytes: number;
  /** For tests; default process.stdout / process.stderr. */
  stdout?: Writable;
  stderr?: Writable;
}

interface Target {
  readonly name: string;
  readonly stream: Writable;
  dead: boolean;
}

export class LogSink {
  readonly #opts: LogSinkOptions;
  readonly #stderr: Target;
  readonly #stdout: Target;
  #out: Target;
  #dropped = 0;
  #noticed = false;
  /** Lines handed to a stream and not yet written (or failed). */
  #pending = 0;
  #flushed: Array<() => void> = [];
  readonly #pretty: ((line: string) => string) | undefined;

  constructor(opts: LogSinkOptions) {
    this.#opts = opts;
    this.#stdout = watch('stdout', opts.stdout ?? process.stdout, this);
    this.#stderr = watch('stderr', opts.stderr ?? process.stderr, this);
    this.#out = opts.file !== undefined ? this.#openFile(opts.file) : this.#stdout;
    this.#pretty = opts.pretty ? prettyFactory({ colorize: true }) : undefined;
  }

  /** Lines dropped so far (muster_log_lines_dropped_total). */
  get dropped(): number {
    return this.#dropped;
  }

  /** The pino destination's write. */
  write(line: string): void {
    const out = this.#out;
    if (out.dead) {
      this.#dropped++;
      return;
    }
    let text = line;
    if (this.#pretty) {
      try {
        text = this.#pretty(line);
      } catch {
        // Keep the JSON line rather than lose it.
      }
    }
    if (out.stream.writableLength + Buffer.byteLength(text) > this.#opts.maxBufferedBytes) {
      this.#dropped++;
      return;
    }
    this.#pending++;
    out.stream.write(text, (err) => {
      if (err) this.#dropped++;
      if (--this.#pending === 0) for (const f of this.#flushed.splice(0)) f();
    });
  }

  /**
   * Resolves once every queued line was written (or failed), or after `timeoutMs`:
   * at exit, so the last lines ("stopped") reach a file or a pipe that is read.
   */
  flush(timeoutMs: number): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.#flushed.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /**
   * Opens the log file again (SIGHUP, after logrotate moved it). Lines already queued
   * for the old file still land there. Returns an error message if it could not be
   * reopened (the old file stays in use).
   */
  reopen(): string | undefined {
    const file = this.#opts.file;
    if (file === undefined) return undefined;
    let next: Target;
    try {
      next = this.#openFile(file);
    } catch (err) {
      return (err as Error).message;
    }
    const old = this.#out;
    this.#out = next;
    old.stream.end();
    return undefined;
  }

  #openFile(file: string): Target {
    const fd = fs.openSync(file, 'a', 0o600);
    // The mode only applies to a new file; an existing one is made owner-only too.
    try {
      fs.fchmodSync(fd, 0o600);
    } catch {
      // Not the owner: leave it as it is.
    }
    return watch(`log file ${file}`, fs.createWriteStream(file, { fd, flags: 'a' }), this);
  }

  /** @internal A stream failed: give it up and say so once, on stderr if it still works. */
  _failed(t: Target, err: Error): void {
    if (t.dead) return;
    t.dead = true;
    if (t !== this.#out || this.#noticed) return;
    this.#noticed = true;
    if (this.#stderr.dead || this.#stderr === t) return;
    const code = (err as NodeJS.ErrnoException).code ?? err.message;
    this.#stderr.stream.write(
      `muster: the log output (${t.name}) failed (${code}); log lines are dropped from now on and counted in muster_log_lines_dropped_total\n`,
      () => undefined,
    );
  }
}

function watch(name: string, stream: Writable, sink: LogSink): Target {
  const t: Target = { name, stream, dead: false };
  // Without a listener an EPIPE on stdout or stderr would be an uncaught 'error' event.
  stream.on('error', (err: Error) => sink._failed(t, err));
  return t;
}

/** The bound on queued log bytes when none is configured. */
export const DEFAULT_LOG_BUFFER_BYTES = 4 * 1024 * 1024;
