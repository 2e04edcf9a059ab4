/**
 * kill -9 under write load: a Clusterio control pipelines `create_instance` and
 * `set_instance_config_field` requests at the built server (SQLite in a fresh data
 * dir), the server is killed with SIGKILL at a seeded moment (after a seeded number of
 * acknowledgements, with requests still in flight), restarted on the same data dir,
 * and every acknowledged write must be there.
 *
 * Used by test/integration/crash.test.ts (a few seeds, bounded) and by `npm run chaos`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { mintToken } from '../../src/dialects/clusterio/token.js';
import { rng, SECRETS, startServer } from './server.js';

export interface CrashResult {
  seed: number;
  /** 1 for the first kill of a run, 2 for the next... */
  kill: number;
  /** Acknowledgements the client had when the server was killed. */
  killAfter: number;
  ackedCreates: number;
  /** Acknowledged set_instance_config_field answers. */
  ackedSets: number;
  /** Acknowledged creates missing after the restart. */
  lostCreates: number;
  /** Instances whose stored name is older than the last acknowledged set. */
  lostSets: number;
  /** What was lost, for the report (at most 10 lines). */
  details: string[];
}

interface Frame {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}

export function config(id: number, name: string): Record<string, unknown> {
  return {
    groups: [
      { name: 'instance', fields: { name, id, assigned_slave: null } },
      { name: 'factorio', fields: { game_port: null, rcon_port: null, rcon_password: null, settings: {} } },
    ],
  };
}

/** A registered 2020-style control: seed numbering, no session. */
export class Control {
  readonly #ws: WebSocket;
  #seq = 1;
  onFrame: (f: Frame) => void = () => undefined;
  readonly closed: Promise<void>;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    this.closed = new Promise((r) => ws.once('close', () => r()));
    ws.on('error', () => undefined);
  }

  static async open(wsBase: string): Promise<Control> {
    const ws = new WebSocket(`${wsBase}/api/socket`);
    const c = new Control(ws);
    // Handshake frames are queued here; after `ready`, frames go to onFrame.
    const frames: Frame[] = [];
    let handshaking = true;
    const wake: Array<() => void> = [];
    ws.on('message', (d: Buffer) => {
      const f = JSON.parse(d.toString('utf8')) as Frame;
      if (!handshaking) return c.onFrame(f);
      frames.push(f);
      for (const w of wake.splice(0)) w();
    });
    const failed = c.closed.then(() => Promise.reject(new Error('closed during the handshake')));
    failed.catch(() => undefined);
    const nextFrame = async (): Promise<Frame> => {
      while (frames.length === 0) await Promise.race([new Promise<void>((r) => wake.push(r)), failed]);
      return frames.shift() as Frame;
    };
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    if ((await nextFrame()).type !== 'hello') throw new Error('no hello');
    const token = await mintToken(SECRETS.clusterio, { aud: 'control' });
    c.send('register_control', { token, agent: 'chaos', version: '2.0.0-alpha' });
    const ready = await nextFrame();
    if (ready.type !== 'ready') throw new Error(`not ready: ${JSON.stringify(ready)}`);
    handshaking = false;
    return c;
  }

  send(type: string, data: Record<string, unknown>): number {
    const seq = this.#seq++;
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify({ seq, type, data }));
    return seq;
  }

  /** One request, answered (for the check after the restart). */
  request(type: string, data: Record<string, unknown> = {}): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const seq = this.send(type, data);
      const t = setTimeout(() => reject(new Error(`no answer to ${type}`)), 10_000);
      this.onFrame = (f) => {
        if (f.data.seq === seq) {
          clearTimeout(t);
          resolve(f);
        }
      };
    });
  }

  close(): void {
    this.#ws.terminate();
  }
}

export interface CrashOptions {
  seed: number;
  /** How many kills, one after another on the same data dir (default 1). */
  kills?: number;
  /** Requests in flight at once (default 64). */
  window?: number;
  /** Each kill comes after at most this many acknowledgements (default 600). */
  maxAcks?: number;
}

/**
 * Seeded kills on one data dir: write, kill -9, restart and check every write
 * acknowledged so far (in every earlier run too), write again, kill again... One
 * result per kill. N kills cost N + 1 server starts.
 */
export async function crashRun(opts: CrashOptions): Promise<CrashResult[]> {
  const rand = rng(opts.seed);
  const window = opts.window ?? 64;
  const maxAcks = opts.maxAcks ?? 600;
  const root = mkdtempSync(join(tmpdir(), 'muster-crash-'));
  const dataDir = join(root, 'data');
  /** Last acknowledged name version per instance (0: the create). */
  const ackedVersion = new Map<number, number>();
  /** Highest version sent per instance, acknowledged or not. */
  const sentVersion = new Map<number, number>();
  const ids: number[] = [];
  let nextId = 1000;
  const results: CrashResult[] = [];
  let server = await startServer({ dataDir, dialects: ['clusterio'] });
  try {
    for (let k = 0; k < (opts.kills ?? 1); k++) {
      const killAfter = 20 + Math.floor(rand() * (maxAcks - 20));
      const c = await Control.open(server.ws);
      const inFlight = new Map<number, { op: 'create' | 'set'; id: number; version: number }>();
      let acks = 0;
      let createAcks = 0;
      let setAcks = 0;
      let killed = false;
      const sendOne = (): void => {
        // Mostly creates; sets go to instances already acknowledged.
        if (ids.length > 0 && rand() < 0.4) {
          const id = ids[Math.floor(rand() * ids.length)] as number;
          const version = (sentVersion.get(id) ?? 0) + 1;
          sentVersion.set(id, version);
          const seq = c.send('set_instance_config_field_request', { instance_id: id, field: 'instance.name', value: `v${version}` });
          inFlight.set(seq, { op: 'set', id, version });
        } else {
          const id = nextId++;
          sentVersion.set(id, 0);
          const seq = c.send('create_instance_request', { serialized_config: config(id, 'v0') });
          inFlight.set(seq, { op: 'create', id, version: 0 });
        }
      };
      await new Promise<void>((resolve) => {
        c.onFrame = (f) => {
          const req = inFlight.get(f.data.seq as number);
          if (!req || killed) return;
          inFlight.delete(f.data.seq as number);
          if (f.data.error === undefined) {
            acks++;
            if (req.op === 'create') {
              createAcks++;
              ids.push(req.id);
              ackedVersion.set(req.id, 0);
            } else {
              setAcks++;
              if ((ackedVersion.get(req.id) ?? -1) < req.version) ackedVersion.set(req.id, req.version);
            }
          }
          if (acks >= killAfter) {
            // The seeded moment: requests are still in flight, the server is mid-batch.
            killed = true;
            server.kill9();
            resolve();
            return;
          }
          sendOne();
        };
        void c.closed.then(() => resolve());
        for (let i = 0; i < window; i++) sendOne();
      });
      await server.exited;
      c.close();

      server = await startServer({ dataDir, dialects: ['clusterio'] });
      const check = await Control.open(server.ws);
      const list = (await check.request('list_instances_request')).data.list as Array<{ id: number; name: string }>;
      check.close();
      const stored = new Map(list.map((i) => [i.id, Number(i.name.slice(1))]));
      const details: string[] = [];
      let lostCreates = 0;
      let lostSets = 0;
      for (const [id, version] of ackedVersion) {
        const have = stored.get(id);
        if (have === undefined) {
          lostCreates++;
          if (details.length < 10) details.push(`instance ${id}: acknowledged create missing`);
        } else if (have < version) {
          lostSets++;
          if (details.length < 10) details.push(`instance ${id}: name v${have} stored, v${version} acknowledged`);
        }
      }
      results.push({ seed: opts.seed, kill: k + 1, killAfter, ackedCreates: createAcks, ackedSets: setAcks, lostCreates, lostSets, details });
      // What was lost is reported once; the next round checks the rest again.
      for (const [id, version] of ackedVersion) {
        const have = stored.get(id);
        if (have === undefined) ackedVersion.delete(id);
        else if (have < version) ackedVersion.set(id, have);
      }
      ids.splice(0, ids.length, ...ids.filter((id) => ackedVersion.has(id)));
    }
    return results;
  } finally {
    server.kill9();
    await server.exited;
    rmSync(root, { recursive: true, force: true });
  }
}
