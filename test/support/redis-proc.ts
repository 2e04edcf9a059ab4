import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';

/**
 * A throwaway redis-server for tests: its own free port (never the machine's 6379), no
 * persistence. `stop()` kills it; `start()` brings it back on the same port (a Redis
 * restart, for recovery tests).
 */
export interface RedisProc {
  readonly port: number;
  readonly url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

const BIN = '/usr/bin/redis-server';

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once the port takes a PING and answers PONG. */
async function answers(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let buf = '';
    sock.once('error', () => resolve(false));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('PONG')) {
        sock.destroy();
        resolve(true);
      }
    });
    sock.once('connect', () => sock.write('PING\r\n'));
  });
}

export async function startRedis(): Promise<RedisProc> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const c = spawn(BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    child = c;
    const exited = new Promise<never>((_, reject) => c.once('exit', (code) => reject(new Error(`redis-server exited (${code})`))));
    // Polls the port until it answers; each probe is a round trip, not a timed wait.
    for (let i = 0; i < 500; i++) {
      const ok = await Promise.race([answers(port), exited]);
      if (ok) return;
      await new Promise((r) => setImmediate(r));
    }
    throw new Error('redis-server did not come up');
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  };
  await start();
  return { port, url: `redis://127.0.0.1:${port}`, start, stop };
}
