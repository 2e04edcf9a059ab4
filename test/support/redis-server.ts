/**
 * A private `redis-server` for tests: started on a free port of 127.0.0.1 (never the
 * machine's 6379), without persistence unless asked, and stopped in teardown. Start-up
 * waits for the server's own "Ready to accept connections" line, not for a timer.
 *
 *   const redis = await startRedisServer();           // --save "" --appendonly no
 *   const durable = await startRedisServer({ appendonly: true, dir }); // AOF in `dir`
 *   ...
 *   await redis.restart();  // the same port (and dir): what a Redis restart looks like
 *   await redis.close();    // teardown: stopped, and its temporary directory removed
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';

/** Whether a redis-server binary is there to run (CI installs Debian's). */
export const haveRedisServer = existsSync(REDIS_SERVER);

export interface RedisServerOptions {
  /** AOF persistence (`--appendonly yes`) in `dir`; off by default. */
  appendonly?: boolean;
  /** `always` or `everysec` (the default when appendonly is on). */
  appendfsync?: 'always' | 'everysec';
  /** The working directory, where the AOF goes; a fresh temporary one by default. */
  dir?: string;
}

export interface RedisServer {
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  readonly dir: string;
  /** Stops the server (SIGTERM, or SIGKILL for a crash) and waits for it to exit; the directory stays. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Teardown: stops the server and removes the directory it made itself. */
  close(): Promise<void>;
  /** Stops it and starts it again on the same port and directory. */
  restart(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Starts it again after stop(). */
  start(): Promise<void>;
  /** Sends a signal to the running server (SIGSTOP and SIGCONT: a Redis that hangs, then wakes). */
  signal(sig: NodeJS.Signals): void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function launch(port: number, dir: string, opts: RedisServerOptions): Promise<ChildProcess> {
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--save', '',
    '--appendonly', opts.appendonly ? 'yes' : 'no',
    '--appendfsync', opts.appendfsync ?? 'everysec',
    '--daemonize', 'no',
    '--logfile', '',
    '--loglevel', 'notice',
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(REDIS_SERVER, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (chunk: Buffer): void => {
      out += chunk.toString('utf8');
      if (out.includes('Ready to accept connections')) {
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve(child);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.resume();
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`redis-server exited at start (${code ?? signal}): ${out.slice(-2000)}`)));
  });
}

export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'muster-redis-'));
  // A port can be taken between freePort() and the server's bind: try a few.
  let port = 0;
  let child: ChildProcess | undefined;
  for (let attempt = 0; child === undefined; attempt++) {
    port = await freePort();
    try {
      child = await launch(port, dir, opts);
    } catch (err) {
      if (attempt >= 4) throw err;
    }
  }
  let current: ChildProcess | undefined = child;

  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> => {
    const c = current;
    current = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(signal);
    await exited;
  };
  const start = async (): Promise<void> => {
    if (current) return;
    current = await launch(port, dir, opts);
  };
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    stop,
    async close() {
      await stop('SIGKILL');
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
    async restart(signal) {
      await stop(signal);
      await start();
    },
    start,
    signal(sig) {
      current?.kill(sig);
    },
  };
}

export interface RedisSentinel {
  readonly port: number;
  /** The name of the primary it monitors. */
  readonly name: string;
  close(): Promise<void>;
}

/**
 * A Redis Sentinel (redis-server --sentinel) on a free port, monitoring `primary` as
 * `name` with a quorum of 1; resolves once it reports the primary monitored.
 */
export async function startRedisSentinel(primary: RedisServer, name = 'mymaster'): Promise<RedisSentinel> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'muster-sentinel-'));
  const port = await freePort();
  const conf = path.join(dir, 'sentinel.conf');
  writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor ${name} 127.0.0.1 ${primary.port} 1\n`);
  const child = await new Promise<ChildProcess>((resolve, reject) => {
    const c = spawn(REDIS_SERVER, [conf, '--sentinel'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (chunk: Buffer): void => {
      out += chunk.toString('utf8');
      if (out.includes('+monitor master')) {
        c.stdout?.off('data', onData);
        c.stdout?.resume();
        resolve(c);
      }
    };
    c.stdout?.on('data', onData);
    c.stderr?.resume();
    c.once('error', reject);
    c.once('exit', (code, signal) => reject(new Error(`redis sentinel exited at start (${code ?? signal}): ${out.slice(-2000)}`)));
  });
  return {
    port,
    name,
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
