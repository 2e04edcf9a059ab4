import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import path from 'node:path';
import { TMP_DIR, type ProcessGroup } from './child.js';
import { freePort, HOST } from './net.js';

/** Debian's redis-server (the Redis tests use the same one). */
export const REDIS_SERVER_BIN = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';

export interface BenchRedis {
  port: number;
  /** redis://127.0.0.1:<port> */
  url: string;
  pid: number;
}

/**
 * A private redis-server for one scenario (P7–P9): a free loopback port (never 6379), no
 * persistence, adopted by the scenario's process group so it is killed when the
 * scenario ends whatever happens. Ready on its own "Ready to accept connections" line
 * (bounded: 10 s).
 */
export async function startRedis(group: ProcessGroup, label: string): Promise<BenchRedis> {
  if (!existsSync(REDIS_SERVER_BIN)) throw new Error('redis-server not found (Debian package "redis-server")');
  const port = await freePort();
  mkdirSync(path.join(TMP_DIR, 'logs'), { recursive: true });
  const dir = mkdtempSync(path.join(TMP_DIR, 'redis-'));
  const log = createWriteStream(path.join(TMP_DIR, 'logs', `${label}-redis.log`));
  const proc = spawn(
    REDIS_SERVER_BIN,
    ['--port', String(port), '--bind', HOST, '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', '', '--maxclients', '1000'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  group.adopt(proc);
  proc.stderr.pipe(log);
  const pid = proc.pid;
  if (pid === undefined) throw new Error('redis-server did not start');
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('redis-server not ready within 10 s')), 10_000);
    proc.stdout.on('data', (chunk: Buffer) => {
      log.write(chunk);
      if (out.length < 100_000) out += chunk.toString('utf8');
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited at start (${code ?? signal})`));
    });
  });
  return { port, url: `redis://${HOST}:${port}`, pid };
}
