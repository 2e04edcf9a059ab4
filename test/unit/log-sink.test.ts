import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { LogSink } from '../../src/cli/log-sink.js';
import { until } from '../support/server.js';

/** A stream that holds every write until release() (a reader that does not read). */
class Stalled extends Writable {
  readonly held: Array<() => void> = [];
  readonly text: string[] = [];
  constructor() {
    super({ highWaterMark: 16 });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error) => void): void {
    this.text.push(chunk.toString());
    this.held.push(() => cb());
  }
  release(): void {
    for (const f of this.held.splice(0)) f();
  }
}

/** A stream whose every write fails with EPIPE. */
class Broken extends Writable {
  override _write(_chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error) => void): void {
    cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
  }
}

const line = (i: number): string => `{"level":30,"msg":"line ${i}"}\n`;
let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('LogSink', () => {
  it('queues for a slow reader up to maxBufferedBytes, then drops and counts, without blocking', () => {
    const out = new Stalled();
    const sink = new LogSink({ maxBufferedBytes: 1000, stdout: out, stderr: new Stalled() });
    for (let i = 0; i < 200; i++) sink.write(line(i));
    expect(out.writableLength).toBeLessThanOrEqual(1000);
    expect(sink.dropped).toBeGreaterThan(150);
    const dropped = sink.dropped;
    out.release();
    sink.write(line(999));
    expect(sink.dropped).toBe(dropped);
  });

  it('gives up a failed output (EPIPE): later lines are dropped and counted, stderr hears it once', async () => {
    const out = new Broken();
    const err = new Stalled();
    const sink = new LogSink({ maxBufferedBytes: 1 << 20, stdout: out, stderr: err });
    sink.write(line(1));
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 10; i++) sink.write(line(i));
    expect(sink.dropped).toBeGreaterThanOrEqual(11);
    expect(err.text.join('')).toMatch(/^muster: the log output \(stdout\) failed \(EPIPE\); .*muster_log_lines_dropped_total\n$/);
  });

  it('flush() waits for queued lines, but not longer than its bound', async () => {
    const out = new Stalled();
    const sink = new LogSink({ maxBufferedBytes: 1 << 20, stdout: out, stderr: new Stalled() });
    sink.write(line(1));
    sink.write(line(2));
    let flushed = false;
    const f = sink.flush(60_000).then(() => (flushed = true));
    await new Promise((r) => setImmediate(r));
    expect(flushed).toBe(false);
    out.release();
    await new Promise((r) => setImmediate(r));
    out.release();
    await f;
    expect(flushed).toBe(true);
    sink.write(line(3));
    await sink.flush(1); // a reader that never reads: the bound ends the wait
  });

  it('says nothing more when stderr is broken too', async () => {
    const sink = new LogSink({ maxBufferedBytes: 1 << 20, stdout: new Broken(), stderr: new Broken() });
    sink.write(line(1));
    await new Promise((r) => setImmediate(r));
    sink.write(line(2));
    expect(sink.dropped).toBeGreaterThanOrEqual(2);
  });

  it('writes log.file owner-only and opens it again on reopen()', async () => {
    dir = mkdtempSync(join(tmpdir(), 'muster-sink-'));
    const file = join(dir, 'muster.log');
    const sink = new LogSink({ file, maxBufferedBytes: 1 << 20, stdout: new Broken(), stderr: new Stalled() });
    sink.write(line(1));
    const content = (f: string): string => (existsSync(f) ? readFileSync(f, 'utf8') : '');
    await until(() => content(file) === line(1));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    renameSync(file, `${file}.1`);
    expect(sink.reopen()).toBeUndefined();
    sink.write(line(2));
    await until(() => content(file) === line(2));
    expect(content(`${file}.1`)).toBe(line(1));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(sink.dropped).toBe(0);
  });
});
