import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync, createWriteStream } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import type { Child, ProcessGroup } from './child.js';
import { TMP_DIR } from './child.js';
import type { Impl } from './constants.js';
import { freePort, HOST } from './net.js';
import { sleep } from './ipc.js';

/** A server under test: where to connect and which process to measure. */
export interface ServerHandle {
  impl: Impl;
  pid: number;
  port: number;
  /** ws:// URL clients connect to (the bus path for Muster). */
  url: string;
  /** The Node child, for gc / lag / exit; undefined for nats-server. */
  child: Child | undefined;
}

export interface ServerOptions {
  /** Muster: extra dialects.bus settings. */
  bus?: Record<string, unknown>;
  /** Muster: other dialects to enable and configure, e.g. `{ sharding: { enabled: true, … } }`. */
  dialects?: Record<string, Record<string, unknown>>;
  /** Muster: extra `limits` settings. */
  limits?: Record<string, unknown>;
  /** Muster: the store (default memory), e.g. `{ kind: 'redis', url }`. */
  store?: Record<string, unknown>;
  /** Muster: cluster settings, e.g. `{ redisUrl, leaseTtl }`. */
  cluster?: Record<string, unknown>;
  /** Muster: instanceId. */
  instanceId?: string;
  /** Socket.IO: a Redis to share through `@socket.io/redis-adapter` (P8). */
  redisUrl?: string;
  /** ws relay and Socket.IO: heartbeat period in ms (0 = none for the relay). */
  pingMs?: number;
  /** Run Muster under --cpu-prof, writing to this directory. */
  cpuProfDir?: string | undefined;
  /** Log label. */
  label?: string;
}

let musterBuild: string | undefined;
/** Where the Muster child loads Muster from (see lib/build.ts); set once by the runner. */
export function useMusterBuild(dir: string | undefined): void {
  musterBuild = dir;
}

/** Starts one implementation's server in its own process. */
export async function startServer(group: ProcessGroup, impl: Impl, opts: ServerOptions = {}): Promise<ServerHandle> {
  const label = opts.label ?? impl;
  switch (impl) {
    case 'muster': {
      const nodeArgs = ['--expose-gc'];
      if (opts.cpuProfDir) {
        mkdirSync(opts.cpuProfDir, { recursive: true });
        nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`);
      }
      const { child, ready } = await group.start<{ port: number }>({
        name: `${label}-server`,
        script: 'servers/muster.ts',
        args: [
          '--bus',
          JSON.stringify(opts.bus ?? {}),
          '--dialects',
          JSON.stringify(opts.dialects ?? {}),
          '--limits',
          JSON.stringify(opts.limits ?? {}),
          ...(opts.store ? ['--store', JSON.stringify(opts.store)] : []),
          ...(opts.cluster ? ['--cluster', JSON.stringify(opts.cluster)] : []),
          ...(opts.instanceId ? ['--instance', opts.instanceId] : []),
          ...(musterBuild ? ['--from', musterBuild] : []),
        ],
        nodeArgs,
        plain: true,
      });
      return { impl, pid: child.pid, port: ready.port, url: `ws://${HOST}:${ready.port}/bus`, child };
    }
    case 'ws': {
      const { child, ready } = await group.start<{ port: number }>({
        name: `${label}-server`,
        script: 'servers/ws-relay.ts',
        args: ['--ping-ms', String(opts.pingMs ?? 0)],
        nodeArgs: ['--expose-gc'],
        plain: true,
      });
      return { impl, pid: child.pid, port: ready.port, url: `ws://${HOST}:${ready.port}/`, child };
    }
    case 'sio': {
      const { child, ready } = await group.start<{ port: number }>({
        name: `${label}-server`,
        script: 'servers/socketio.ts',
        args: ['--ping-ms', String(opts.pingMs ?? 25_000), ...(opts.redisUrl ? ['--redis', opts.redisUrl] : [])],
        nodeArgs: ['--expose-gc'],
        plain: true,
      });
      return { impl, pid: child.pid, port: ready.port, url: `ws://${HOST}:${ready.port}`, child };
    }
    case 'nats':
      return startNats(group, label);
    case 'static': {
      const { child, ready } = await group.start<{ port: number }>({
        name: `${label}-server`,
        script: 'servers/static-json.ts',
        nodeArgs: ['--expose-gc'],
        plain: true,
      });
      return { impl, pid: child.pid, port: ready.port, url: `http://${HOST}:${ready.port}/`, child };
    }
  }
}

export function natsServerPath(): string | undefined {
  for (const p of ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server']) if (existsSync(p)) return p;
  try {
    const p = execFileSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).trim();
    return p || undefined;
  } catch {
    return undefined;
  }
}

export function natsVersion(): string {
  const bin = natsServerPath();
  if (!bin) return 'not installed';
  try {
    return execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** nats-server on free loopback ports, with a plain (no TLS) WebSocket listener. */
async function startNats(group: ProcessGroup, label: string): Promise<ServerHandle> {
  const bin = natsServerPath();
  if (!bin) throw new Error('nats-server not found (Debian package "nats-server")');
  const [port, wsPort] = [await freePort(), await freePort()];
  const dir = path.join(TMP_DIR, 'nats');
  mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, `${label}-${wsPort}.conf`);
  writeFileSync(
    conf,
    [
      `listen: "${HOST}:${port}"`,
      'max_payload: 1048576',
      `websocket {`,
      `  listen: "${HOST}:${wsPort}"`,
      '  no_tls: true',
      '  compression: false',
      '}',
      '',
    ].join('\n'),
  );
  mkdirSync(path.join(TMP_DIR, 'logs'), { recursive: true });
  const log = createWriteStream(path.join(TMP_DIR, 'logs', `${label}-nats.log`));
  const proc = spawn(bin, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.pipe(log);
  proc.stderr.pipe(log);
  group.adopt(proc);
  const pid = proc.pid;
  if (pid === undefined) throw new Error('nats-server did not start');
  // Ready when the WebSocket port accepts connections (bounded: 10 s).
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nats-server exited (code ${proc.exitCode}); see ${conf}`);
    if (await canConnect(wsPort)) break;
    if (Date.now() > deadline) throw new Error('nats-server did not open its WebSocket port within 10 s');
    await sleep(50);
  }
  return { impl: 'nats', pid, port: wsPort, url: `ws://${HOST}:${wsPort}`, child: undefined };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, HOST);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Stops a server started with startServer. */
export async function stopServer(group: ProcessGroup, s: ServerHandle): Promise<void> {
  if (s.child) await group.stop(s.child);
  else {
    try {
      process.kill(s.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
