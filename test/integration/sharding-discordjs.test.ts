/**
 * Real `@discordjs/ws` shards in two CONTROL processes (`MusterShardManager`), a MASTER in a
 * third, and a fake Discord in this one that enforces one IDENTIFY per bucket per window and
 * flags double sessions. The fleet goes through start-up, restart_shard, a stop while
 * shards wait for their grant, kill -9 failover, halt and resume, a MASTER stall
 * (SIGSTOP/SIGCONT) while shards wait, and close. After each step: no identify-rule
 * violation at the gateway, no double session, no reconnect loop, and every `destroy()`
 * settled.
 *
 * The windows are small (150 ms identify window, 500 + 1500 ms heartbeat deadline) so the
 * whole file runs in well under a minute. Real time is unavoidable here (real processes,
 * real discord.js timers); waits are on events, except the "quiet" checks, which watch for
 * reconnects that must not come (discord.js reconnects 500 ms after a failure).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeDiscord } from '../support/fake-discord.js';

const root = new URL('../../', import.meta.url);
const tsx = fileURLToPath(new URL('node_modules/tsx/dist/loader.mjs', root));
const masterScript = fileURLToPath(new URL('test/support/children/sharding-master.ts', root));
const controlScript = fileURLToPath(new URL('test/support/children/discordjs-control.ts', root));

const KEY = 'discordjs-it-key';
const ADMIN = 'discordjs-it-admin';
const TOKEN = 'discordjs-it-bot-token';
const SHARDS = 8;
const MC = 2;
const WINDOW = 150;
const SHARDING = {
  authorization: KEY,
  botToken: TOKEN,
  shardCount: SHARDS,
  maxConcurrency: MC,
  identifyWindow: WINDOW,
  // Covers the grant-to-IDENTIFY jitter of a loaded test machine (up to ~170 ms seen on a
  // shared 2-core box); without a margin, gaps of 100–140 ms reach the gateway here.
  identifyMargin: 400,
  // Fence after 1.5 s without ACK or 1.5 s disconnected: short, yet longer than a busy
  // machine's pauses, so that only the MASTER stall below makes the CONTROLs fence.
  heartbeatInterval: 1000,
  heartbeatGrace: 1000,
  reconnectWindow: 2000,
  fenceMargin: 500,
  // Start-up (and restart after resume) waits for both CONTROLs.
  startupDelay: 30_000,
  expectedControls: 2,
  startup: 'parallel',
  connectTimeout: 15_000,
};

interface Msg {
  type: string;
  [k: string]: unknown;
}

interface ControlState {
  shards: number[];
  ready: number[];
  destroying: number;
  waiting: number[];
  stats: { started: number; stopped: number; stoppedWhileWaiting: number; destroyed: number; redestroyed: number };
  identified: boolean;
}

class Child {
  readonly msgs: Msg[] = [];
  readonly exited: Promise<number | null>;
  stderr = '';
  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    proc.on('message', (m: Msg) => this.msgs.push(m));
    proc.stderr?.on('data', (b: Buffer) => (this.stderr += b.toString()));
    this.exited = new Promise((r) => proc.on('exit', (code) => r(code)));
  }
  async next(type: string, pred: (m: Msg) => boolean = () => true, from = 0, timeoutMs = 10_000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.msgs.slice(from).find((x) => x.type === type && pred(x));
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`${this.name}: no ${type} in ${timeoutMs} ms; stderr: ${this.stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  async state(): Promise<ControlState> {
    const from = this.msgs.length;
    this.proc.send({ cmd: 'state' });
    return (await this.next('state', () => true, from)) as unknown as ControlState;
  }
  count(type: string, pred: (m: Msg) => boolean = () => true): number {
    return this.msgs.filter((m) => m.type === type && pred(m)).length;
  }
}

function child(name: string, script: string, env: Record<string, string>): Child {
  const proc = spawn(process.execPath, ['--import', tsx, script], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, ...env },
  });
  return new Child(name, proc);
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let gateway: FakeDiscord;
let master: Child;
let masterPort = 0;
const controls = new Map<string, Child>();

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${masterPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : null };
}

async function shardTable(): Promise<Array<{ id: number; owner: string | null; state: string }>> {
  return (await admin('GET', '/api/v1/sharding/shards')).body as Array<{ id: number; owner: string | null; state: string }>;
}

function startControl(name: string): Child {
  const c = child(name, controlScript, {
    MUSTER_URL: `ws://127.0.0.1:${masterPort}/sharding`,
    MUSTER_KEY: KEY,
    CONTROL_NAME: name,
    FAKE_DISCORD_REST: gateway.restBase,
  });
  controls.set(name, c);
  return c;
}

/** Every shard has exactly one live session at the gateway, and the MASTER lists every shard connected. */
async function fleetUp(timeoutMs = 15_000): Promise<void> {
  await waitFor('every shard live once at the gateway and connected at the MASTER', async () => {
    const live = gateway.live();
    if (live.size !== SHARDS || [...live.values()].some((n) => n !== 1)) return false;
    const table = await shardTable();
    return table.every((s) => s.state === 'connected');
  }, timeoutMs);
}

/** The gateway's rules held, and nobody reconnected during `ms` of quiet. */
async function clean(quietMs = 0): Promise<void> {
  if (quietMs > 0) {
    const before = gateway.connections.length;
    const identifies = gateway.identifies.length;
    await new Promise((r) => setTimeout(r, quietMs));
    expect(gateway.connections.length, 'gateway connections during a quiet period (a reconnect loop)').toBe(before);
    expect(gateway.identifies.length).toBe(identifies);
  }
  expect(gateway.violations).toEqual([]);
  expect(gateway.doubleSessions).toEqual([]);
  for (const c of controls.values()) {
    expect(c.msgs.filter((m) => m.type === 'error')).toEqual([]);
  }
}

beforeAll(async () => {
  gateway = new FakeDiscord({ token: TOKEN, shardCount: SHARDS, maxConcurrency: MC, identifyWindow: WINDOW, heartbeatInterval: 1000 });
  await gateway.start();
  master = child('master', masterScript, { MUSTER_TEST_SHARDING: JSON.stringify(SHARDING), MUSTER_TEST_ADMIN: ADMIN });
  masterPort = (await master.next('listening', () => true, 0, 20_000)).port as number;
}, 30_000);

afterAll(async () => {
  for (const c of controls.values()) c.proc.kill('SIGKILL');
  master?.proc.kill('SIGCONT');
  master?.proc.kill('SIGKILL');
  await gateway?.stop();
});

describe('MusterShardManager with real @discordjs/ws in two processes, against a strict fake gateway', () => {
  it('starts the fleet: every shard identifies once, paced at the gateway', async () => {
    const a = startControl('a');
    const b = startControl('b');
    await a.next('identified', () => true, 0, 20_000);
    await b.next('identified', () => true, 0, 20_000);
    await fleetUp();
    expect(new Set((await shardTable()).map((s) => s.owner))).toEqual(new Set(['a', 'b']));
    expect(gateway.sessionStarts).toBe(SHARDS);
    expect(Math.min(...gateway.gaps)).toBeGreaterThanOrEqual(WINDOW);
    const sa = await a.state();
    const sb = await b.state();
    expect([...sa.ready, ...sb.ready].sort((x, y) => x - y)).toEqual([...Array(SHARDS).keys()]);
    await clean();
  }, 40_000);

  it('restart_shard: the shard is destroyed and identifies once more, alone', async () => {
    const owner = (await shardTable()).find((s) => s.id === 1)?.owner as string;
    const c = controls.get(owner) as Child;
    const from = c.msgs.length;
    const starts = gateway.sessionStarts;
    expect((await admin('POST', `/api/v1/sharding/controls/${owner}/command`, { command: 'restart_shard', args: { shard_id: 1 } })).status).toBe(202);
    await c.next('shardDestroyed', (m) => m.id === 1, from);
    await c.next('shardReady', (m) => m.id === 1, from);
    await fleetUp();
    expect(gateway.sessionStarts).toBe(starts + 1);
    await clean();
  }, 20_000);

  it('a stop while shards wait for their grant leaves no reconnect loop and no orphan', async () => {
    const table = await shardTable();
    const ids = table.filter((s) => s.owner === 'a').map((s) => s.id);
    const a = controls.get('a') as Child;
    const from = a.msgs.length;
    expect((await admin('POST', '/api/v1/sharding/controls/a/command', { command: 'restart_cluster', args: { shards: ids } })).status).toBe(202);
    // Some of the restarted shards wait for a grant (two buckets, one grant each per window)…
    await waitFor('a shard of a waiting for its grant', async () => (await a.state()).waiting.length > 0, 10_000);
    // …and are stopped again while they wait.
    expect((await admin('POST', '/api/v1/sharding/controls/a/command', { command: 'restart_cluster', args: { shards: ids } })).status).toBe(202);
    await waitFor('a shard stopped while waiting', () => a.count('shardStopped', (m) => m.waiting === true) > 0);
    await fleetUp();
    const s = await a.state();
    expect(s.destroying).toBe(0);
    expect(a.msgs.slice(from).filter((m) => m.type === 'shardStopped').length).toBeGreaterThanOrEqual(2 * ids.length - 1);
    await clean(1_200);
  }, 30_000);

  it('kill -9 of a CONTROL: its shards fail over to the other, each identifies once', async () => {
    const b = controls.get('b') as Child;
    const a = controls.get('a') as Child;
    const bShards = (await shardTable()).filter((s) => s.owner === 'b').map((s) => s.id);
    expect(bShards.length).toBeGreaterThan(0);
    const starts = gateway.sessionStarts;
    b.proc.kill('SIGKILL');
    await b.exited;
    await waitFor('every shard on a', async () => (await shardTable()).every((s) => s.owner === 'a' && s.state === 'connected'), 15_000);
    await fleetUp();
    expect((await a.state()).ready).toHaveLength(SHARDS);
    expect(gateway.sessionStarts).toBe(starts + bShards.length);
    // b comes back: a standby.
    const b2 = startControl('b');
    await b2.next('identified', () => true, 0, 20_000);
    await clean(600);
  }, 40_000);

  it('halt stops every shard (no reconnects); resume brings the fleet back', async () => {
    expect((await admin('POST', '/api/v1/sharding/halt')).status).toBe(200);
    await waitFor('no live session at the gateway', () => gateway.live().size === 0 && gateway.sockets.size === 0, 10_000);
    for (const c of controls.values()) await waitFor(`${c.name} idle`, async () => {
      const s = await c.state();
      return s.shards.length === 0 && s.destroying === 0;
    });
    await clean(1_200);
    expect((await admin('POST', '/api/v1/sharding/resume')).status).toBe(200);
    await fleetUp(20_000);
    await clean();
  }, 40_000);

  it('a MASTER stall (SIGSTOP) while shards wait for grants: the CONTROLs fence, nothing doubles, the fleet comes back', async () => {
    // Restart every shard of a, so that some wait for grants, then freeze the MASTER.
    const a = controls.get('a') as Child;
    const ids = (await shardTable()).filter((s) => s.owner === 'a').map((s) => s.id);
    const from = a.msgs.length;
    await admin('POST', '/api/v1/sharding/controls/a/command', { command: 'restart_cluster', args: { shards: ids } });
    await waitFor('a shard waiting for its grant', async () => (await a.state()).waiting.length > 0, 10_000);
    master.proc.kill('SIGSTOP');
    try {
      // No ACK: a fences after heartbeatInterval + heartbeatGrace − fenceMargin.
      await a.next('fenced', () => true, from, 10_000);
      await waitFor('no live session of a at the gateway', async () => (await a.state()).destroying === 0 && (await a.state()).shards.length === 0);
      await new Promise((r) => setTimeout(r, 1_000)); // the MASTER stays frozen past its own deadline (2 s)
      expect(gateway.doubleSessions).toEqual([]);
    } finally {
      master.proc.kill('SIGCONT');
    }
    await fleetUp(25_000);
    await clean(1_200);
  }, 60_000);

  it('close(): every shard destroyed and settled, no socket left at the gateway', async () => {
    for (const c of controls.values()) {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) continue;
      const from = c.msgs.length;
      c.proc.send({ cmd: 'close' });
      const done = (await c.next('closed', () => true, from)) as unknown as ControlState;
      expect(done.destroying).toBe(0);
      expect(done.shards).toEqual([]);
      expect(done.stats.destroyed).toBeGreaterThanOrEqual(done.stats.stopped);
      await c.exited;
    }
    await waitFor('no socket at the gateway', () => gateway.sockets.size === 0 && gateway.live().size === 0, 5_000);
    await clean(600);
  }, 20_000);
});
