/**
 * Conformance tests for the clusterio dialect, written from the contract alone
 * (specs/clusterio.md, specs/README.md, specs/operations.md, seeds/001-clusterio-link.md,
 * traces/clusterio-2020.md, issue 5), over real sockets and real HTTP, with the ManualClock
 * for every timeout.
 *
 * Every seed-mode peer here is a `Link2020`: it validates every frame it receives the way
 * Clusterio's 2020 slave and control CLI do (additionalProperties false, only the types they
 * know, seq numbered from 1), so any frame those clients would close the link on fails the test.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, jwtVerify } from 'jose';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CLI, ensureBuilt } from '../support/cli.js';
import { ClusterioHarness } from '../support/harness/clusterio.js';
import { ADMIN_TOKEN, RawPeer, terminate, until, type TestServer } from '../support/server.js';

const SECRET = 'secret';
const HB = 15_000;
const SESSION_TIMEOUT = 60_000;
const BIG = '870000000000000123';

type Json = Record<string, unknown>;
interface Frame {
  seq: number;
  type: string;
  data: Json;
  raw: string;
}

const h = new ClusterioHarness(SECRET);
const peers = h.peers;
const links: Link2020[] = [];
const tmpDirs: string[] = [];

const boot = (extra: Json = {}, top: Json = {}): Promise<TestServer> => h.start(extra, top);
const s = (): TestServer => h.srv;

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'muster-clusterio-conf-'));
  tmpDirs.push(d);
  return d;
}

afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

afterEach(async () => {
  const violations = links.flatMap((l) => l.violations);
  links.length = 0;
  await h.teardown((server) => {
    // Past every window, nothing live is left behind.
    server.clock.advance(SESSION_TIMEOUT * 3);
    const summary = server.muster.dialect('clusterio')?.summary?.() ?? {};
    for (const [k, v] of Object.entries(summary)) {
      if (typeof v === 'number' && LIVE_COUNT.test(k)) expect({ [k]: v }).toEqual({ [k]: 0 });
    }
    h.expectNoWakesLeft();
  }, 5000);
  // A 2020 client would have closed the link on any of these.
  expect(violations).toEqual([]);
});

/** Summary keys that count live things (connections, sessions, pending requests, buffers), not the persisted registry. */
const LIVE_COUNT = /^(?!knownSlaves$|instances$)/;

/**
 * Advances the manual clock in steps, letting pongs (and session heartbeats) flow between
 * steps: round-trip barriers, not real-time waits. After a step, a first barrier on each
 * peer proves the server's pings have reached it (and its automatic pongs are on their
 * way); a second proves the server has handled those pongs.
 */
async function tick(total: number, opts: { step?: number; beat?: SLink[] } = {}): Promise<void> {
  const step = opts.step ?? 5000;
  let done = 0;
  while (done < total) {
    const beat = (opts.beat ?? []).filter((b) => !b.peer.isClosed);
    for (const b of beat) b.heartbeat();
    await Promise.all(beat.map((b) => b.peer.barrier()));
    const d = Math.min(step, total - done);
    s().clock.advance(d);
    done += d;
    const open = peers.filter((p) => !p.isClosed);
    await Promise.all(open.map((p) => p.barrier()));
    await Promise.all(open.map((p) => p.barrier()));
  }
}

// ---------------------------------------------------------------------------------
// Tokens

const key = (secret: string): Uint8Array => new TextEncoder().encode(secret);
async function jwt(claims: Json, secret = SECRET): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(key(secret));
}
const slaveToken = (id: number, secret = SECRET): Promise<string> => jwt({ aud: 'slave', id }, secret);
const controlToken = (secret = SECRET): Promise<string> => jwt({ aud: 'control' }, secret);

// ---------------------------------------------------------------------------------
// What the 2020 clients accept, as strict validators (additionalProperties: false).

type Check = (d: Json) => string | undefined;
type Pred = (v: unknown) => boolean;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt: Pred = (v) => typeof v === 'number' && Number.isInteger(v);
const isStr: Pred = (v) => typeof v === 'string';
const isBool: Pred = (v) => typeof v === 'boolean';

function exact(d: Json, req: Record<string, Pred>, opt: Record<string, Pred> = {}): string | undefined {
  for (const k of Object.keys(d)) if (!(k in req) && !(k in opt)) return `unexpected property "${k}"`;
  for (const [k, f] of Object.entries(req)) if (!(k in d) || !f(d[k])) return `bad or missing "${k}"`;
  for (const [k, f] of Object.entries(opt)) if (k in d && !f(d[k])) return `bad "${k}"`;
  return undefined;
}
const isConfig: Pred = (v) =>
  isObj(v) &&
  exact(v, { groups: (g) => Array.isArray(g) && g.every((x) => isObj(x) && exact(x, { name: isStr, fields: isObj }) === undefined) }) ===
    undefined;
const resp =
  (props: Record<string, Pred> = {}): Check =>
  (d) =>
    'error' in d ? exact(d, { seq: isInt, error: isStr }) : exact(d, { seq: isInt, ...props });
const looseResp: Check = (d) => ('error' in d ? exact(d, { seq: isInt, error: isStr }) : isInt(d.seq) ? undefined : 'no seq');
const instanceOnly: Check = (d) => exact(d, { instance_id: isInt });

const SLAVE_ACCEPTS: Record<string, Check> = {
  close: (d) => exact(d, { reason: isStr }),
  assign_instance_request: (d) => exact(d, { instance_id: isInt, serialized_config: isConfig }),
  start_instance_request: instanceOnly,
  create_save_request: instanceOnly,
  stop_instance_request: instanceOnly,
  delete_instance_request: instanceOnly,
  send_rcon_request: (d) => exact(d, { instance_id: isInt, command: isStr }),
  'statistics_exporter:get_metrics_request': (d) => exact(d, {}),
  'global_chat:chat_event': (d) => exact(d, { instance_name: isStr, content: isStr }),
  'research_sync:progress_event': () => undefined,
  'research_sync:finished_event': (d) => exact(d, { name: isStr, level: isInt }),
  'research_sync:sync_technologies_response': looseResp,
  'subspace_storage:remove_response': looseResp,
  'subspace_storage:get_storage_response': looseResp,
  'subspace_storage:update_storage_event': () => undefined,
};

const slaveEntry: Pred = (v) =>
  isObj(v) && exact(v, { agent: isStr, version: isStr, name: isStr, id: isInt, connected: isBool }) === undefined;
const instanceEntry: Pred = (v) =>
  isObj(v) && exact(v, { name: isStr, id: isInt, assigned_slave: (x) => x === null || isInt(x) }) === undefined;

const CONTROL_ACCEPTS: Record<string, Check> = {
  close: (d) => exact(d, { reason: isStr }),
  instance_output_event: (d) => exact(d, { instance_id: isInt, output: isObj }),
  list_slaves_response: resp({ list: (v) => Array.isArray(v) && v.every(slaveEntry) }),
  list_instances_response: resp({ list: (v) => Array.isArray(v) && v.every(instanceEntry) }),
  create_instance_response: resp(),
  get_instance_config_response: resp({ serialized_config: isConfig }),
  set_instance_config_field_response: resp(),
  assign_instance_command_response: resp(),
  set_instance_output_subscriptions_response: resp(),
  start_instance_response: resp(),
  stop_instance_response: resp(),
  create_save_response: resp(),
  delete_instance_response: resp(),
  send_rcon_response: resp({ result: isStr }),
};

/** A peer that behaves like Clusterio's 2020 slave or control CLI. */
class Link2020 {
  readonly violations: string[] = [];
  out = 0;
  lastIn = 0;
  closedByServer = false;
  readonly pending = new Map<number, string>();

  constructor(
    readonly peer: RawPeer,
    readonly role: 'slave' | 'control',
  ) {
    peer.ws.on('message', (buf: Buffer, isBinary: boolean) => this.#check(buf.toString('utf8'), isBinary));
  }

  #check(raw: string, isBinary: boolean): void {
    const bad = (m: string): void => {
      this.violations.push(`${this.role}: ${m}: ${raw}`);
    };
    if (isBinary) return bad('binary frame');
    let f: unknown;
    try {
      f = JSON.parse(raw);
    } catch {
      return bad('not JSON');
    }
    if (!isObj(f)) return bad('not an object');
    const env = exact(f, { seq: isInt, type: isStr, data: isObj });
    if (env) return bad(`envelope: ${env}`);
    if (this.closedByServer) return bad('frame after close');
    const seq = f.seq as number;
    const type = f.type as string;
    const data = f.data as Json;
    if (seq !== this.lastIn + 1) bad(`seq ${seq} after ${this.lastIn}`);
    this.lastIn = seq;
    if (seq === 1) {
      if (type !== 'hello') return bad('first frame is not hello');
      const e = exact(data, { version: isStr });
      if (e) bad(`hello: ${e}`);
      return;
    }
    if (type === 'hello') return bad('a second hello');
    if (type === 'ready') {
      if (seq !== 2) bad('ready is not the second frame');
      const e = exact(data, {});
      if (e) bad(`ready: ${e}`);
      return;
    }
    if (type === 'close') this.closedByServer = true;
    const check = (this.role === 'slave' ? SLAVE_ACCEPTS : CONTROL_ACCEPTS)[type];
    if (!check) return bad(`type "${type}" is not accepted by a 2020 ${this.role}`);
    const e = check(data);
    if (e) return bad(`${type}: ${e}`);
    if (type.endsWith('_response')) {
      const req = this.pending.get(data.seq as number);
      if (req === undefined || req.replace(/_request$/, '_response') !== type) bad('a response to no request of ours');
      else this.pending.delete(data.seq as number);
    }
  }

  send(type: string, data: Json): number {
    const seq = ++this.out;
    if (type.endsWith('_request')) this.pending.set(seq, type);
    this.peer.send({ seq, type, data });
    return seq;
  }

  /** Sends a frame whose data is given as raw JSON text (to keep big numbers exact). */
  sendRaw(type: string, dataText: string): number {
    const seq = ++this.out;
    if (type.endsWith('_request')) this.pending.set(seq, type);
    this.peer.send(`{"seq":${seq},"type":${JSON.stringify(type)},"data":${dataText}}`);
    return seq;
  }

  respond(req: Frame, extra: Json = {}): void {
    this.send(req.type.replace(/_request$/, '_response'), { seq: req.seq, ...extra });
  }

  async next(type?: string): Promise<Frame> {
    const raw = await this.peer.nextRaw();
    const f = JSON.parse(raw) as Frame;
    if (type !== undefined) expect(f.type, raw).toBe(type);
    return { ...f, raw };
  }

  /** Sends a request and returns the response's data (whatever it is). */
  async call(type: string, data: Json = {}): Promise<Json & { raw: string }> {
    const seq = this.send(type, data);
    return this.#answer(type, seq);
  }

  async callRaw(type: string, dataText: string): Promise<Json & { raw: string }> {
    const seq = this.sendRaw(type, dataText);
    return this.#answer(type, seq);
  }

  async #answer(type: string, seq: number): Promise<Json & { raw: string }> {
    const f = await this.next(type.replace(/_request$/, '_response'));
    expect(f.data.seq).toBe(seq);
    return { ...f.data, raw: f.raw };
  }

  /** A request that must succeed. */
  async ok(type: string, data: Json = {}): Promise<Json & { raw: string }> {
    const r = await this.call(type, data);
    expect(r.error, `${type} failed`).toBeUndefined();
    return r;
  }

  /** A request that must fail with an error response. */
  async fails(type: string, data: Json = {}): Promise<string> {
    const r = await this.call(type, data);
    expect(Object.keys(r).filter((k) => k !== 'raw').sort()).toEqual(['error', 'seq']);
    expect(typeof r.error).toBe('string');
    return r.error as string;
  }
}

async function connect(opts: { autoPong?: boolean; onCreate?: (p: RawPeer) => void } = {}): Promise<RawPeer> {
  const p = h.track(new RawPeer(h.url, opts.autoPong === false ? { autoPong: false } : {}));
  opts.onCreate?.(p);
  await new Promise<void>((res, rej) => {
    p.ws.once('open', () => res());
    p.ws.once('unexpected-response', (_q, r) => rej(new Error(`upgrade refused: ${r.statusCode}`)));
    p.ws.once('error', rej);
  });
  return p;
}

async function link(role: 'slave' | 'control', opts: { autoPong?: boolean } = {}): Promise<Link2020> {
  let l: Link2020 | undefined;
  await connect({ ...opts, onCreate: (p) => (l = new Link2020(p, role)) });
  if (!l) throw new Error('no link');
  links.push(l);
  const hello = await l.next('hello');
  expect(hello.seq).toBe(1);
  return l;
}

async function slave(
  id = 4242,
  opts: { name?: string; instances?: Json[]; autoPong?: boolean } = {},
): Promise<Link2020> {
  const l = await link('slave', opts);
  l.send('register_slave', { token: await slaveToken(id), agent: 'Clusterio Slave', version: '2.0.0-alpha', id, name: opts.name ?? `slave-${id}` });
  const ready = await l.next('ready');
  expect(ready.seq).toBe(2);
  if (opts.instances) l.send('update_instances_event', { instances: opts.instances });
  return l;
}

async function control(): Promise<Link2020> {
  const l = await link('control');
  l.send('register_control', { token: await controlToken(), agent: 'clusterctl', version: '2.0.0-alpha' });
  const ready = await l.next('ready');
  expect(ready.seq).toBe(2);
  return l;
}

/** Proves a slave's earlier frames were processed: a plugin request nobody handles. */
async function syncSlave(l: Link2020): Promise<void> {
  const r = await l.call('subspace_storage:get_storage_request', {});
  expect(r.error).toMatch(/^No handler for /);
}

function instanceConfig(id: number, name: string, assigned: number | null = null, extraGroups: Json[] = []): Json {
  return {
    groups: [
      { name: 'instance', fields: { name, id, assigned_slave: assigned } },
      {
        name: 'factorio',
        fields: { game_port: null, rcon_port: null, rcon_password: null, settings: { tags: ['clusterio'], auto_pause: false } },
      },
      ...extraGroups,
    ],
  };
}

function field(config: unknown, group: string, name: string): unknown {
  const groups = (config as { groups: Array<{ name: string; fields: Json }> }).groups;
  return groups.find((g) => g.name === group)?.fields[name];
}

async function createInstance(ctl: Link2020, id: number, name = `inst-${id}`, extra: Json[] = []): Promise<void> {
  await ctl.ok('create_instance_request', { serialized_config: instanceConfig(id, name, null, extra) });
}

/** Creates an instance and assigns it to a connected slave, answering the slave's assign request. */
async function createAssigned(ctl: Link2020, sl: Link2020, id: number, slaveId: number): Promise<void> {
  await createInstance(ctl, id);
  const seq = ctl.send('assign_instance_command_request', { instance_id: id, slave_id: slaveId });
  const req = await sl.next('assign_instance_request');
  sl.respond(req);
  const r = await ctl.next('assign_instance_command_response');
  expect(r.data).toEqual({ seq });
}

async function expectClose(p: RawPeer, reason: string | RegExp, code?: number): Promise<{ code: number; frame: Frame }> {
  const closed = await p.waitClose();
  const raw = p.frames.find((f) => (JSON.parse(f) as Frame).type === 'close');
  expect(raw, `no close frame before the close (${closed.code})`).toBeDefined();
  const frame = JSON.parse(raw as string) as Frame;
  expect(Object.keys(frame.data)).toEqual(['reason']);
  if (typeof reason === 'string') expect(frame.data.reason).toBe(reason);
  else expect(frame.data.reason).toMatch(reason);
  if (code !== undefined) expect(closed.code).toBe(code);
  return { code: closed.code, frame: { ...frame, raw: raw as string } };
}

// ---------------------------------------------------------------------------------

describe('clusterio: handshake (seed mode)', () => {
  it('sends hello {version} as seq 1 with nothing else, and nothing more before register', async () => {
    await boot();
    const p = await connect();
    const raw = await p.nextRaw();
    const f = JSON.parse(raw) as Json;
    expect(Object.keys(f).sort()).toEqual(['data', 'seq', 'type']);
    expect(f.seq).toBe(1);
    expect(f.type).toBe('hello');
    expect(Object.keys(f.data as Json)).toEqual(['version']);
    expect(typeof (f.data as Json).version).toBe('string');
    expect(await p.quiet()).toBe(true);
  });

  it('answers register_slave with exactly ready {} as seq 2, then stays silent', async () => {
    await boot();
    const l = await link('slave');
    l.send('register_slave', { token: await slaveToken(4242), agent: 'Clusterio Slave', version: '2.0.0-alpha', id: 4242, name: 'muster-slave-1' });
    const raw = await l.peer.nextRaw();
    expect(JSON.parse(raw)).toStrictEqual({ seq: 2, type: 'ready', data: {} });
    l.send('update_instances_event', { instances: [] });
    expect(await l.peer.quiet()).toBe(true);
  });

  it('answers register_control with exactly ready {} as seq 2', async () => {
    await boot();
    const l = await link('control');
    l.send('register_control', { token: await controlToken(), agent: 'clusterctl', version: '2.0.0-alpha' });
    expect(JSON.parse(await l.peer.nextRaw())).toStrictEqual({ seq: 2, type: 'ready', data: {} });
    const r = await l.ok('list_slaves_request');
    expect(r.list).toEqual([]);
  });

  it('numbers its own frames from 1 on each connection, independently of the client', async () => {
    await boot();
    const a = await control();
    const b = await control();
    a.send('list_slaves_request', {});
    a.send('list_instances_request', {});
    a.send('list_slaves_request', {});
    const got = [await a.next(), await a.next(), await a.next()];
    expect(got.map((f) => f.seq)).toEqual([3, 4, 5]);
    expect(got.map((f) => f.data.seq)).toEqual([2, 3, 4]);
    const fb = await b.call('list_instances_request');
    expect(fb.seq).toBe(2);
    expect(JSON.parse(fb.raw).seq).toBe(3);
  });

  const registerSlave = (over: Json = {}, drop: string[] = []): ((token: string) => Json) => {
    return (token) => {
      const data: Json = { token, agent: 'Clusterio Slave', version: '2.0.0-alpha', id: 4242, name: 'x', ...over };
      for (const k of drop) delete data[k];
      return { seq: 1, type: 'register_slave', data };
    };
  };
  const badHandshakes: Array<[string, (token: string) => Json | string]> = [
    ['malformed JSON', () => '{"seq":1,"type":"register_slave",'],
    ['a JSON array', () => '[1,2]'],
    ['a request before registering', () => ({ seq: 1, type: 'list_slaves_request', data: {} })],
    ['an unknown type', () => ({ seq: 1, type: 'register_bogus', data: {} })],
    ['register_slave without token', registerSlave({}, ['token'])],
    ['register_slave without name', registerSlave({}, ['name'])],
    ['register_slave with a string id', registerSlave({ id: '4242' })],
    ['register_slave with an extra property', registerSlave({ colour: 'red' })],
    ['register_slave with an extra envelope key', (t) => ({ ...(registerSlave()(t) as object), ts: 1 })],
    ['register_slave with a string seq', (t) => ({ ...(registerSlave()(t) as object), seq: '1' })],
    ['register_slave without data', () => ({ seq: 1, type: 'register_slave' })],
    ['register_control with an extra property', (t) => ({ seq: 1, type: 'register_control', data: { token: t, agent: 'a', version: '1', id: 3 } })],
  ];
  it.each(badHandshakes)('closes a bad handshake (%s) with close {reason:"Invalid handshake"} and 1008', async (_name, make) => {
    await boot();
    const l = await link('slave');
    const frame = make(await slaveToken(4242));
    l.peer.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
    const { frame: close } = await expectClose(l.peer, 'Invalid handshake', 1008);
    expect(close.seq).toBe(2);
    expect(close.type).toBe('close');
  });

  const badTokens: Array<[string, 'slave' | 'control', () => Promise<string>]> = [
    ['a slave token signed with another secret', 'slave', () => slaveToken(4242, 'not-the-secret')],
    ['a control token used to register a slave', 'slave', () => controlToken()],
    ['a slave token for another slave id', 'slave', () => slaveToken(4243)],
    ['a slave token without id', 'slave', () => jwt({ aud: 'slave' })],
    ['an expired slave token', 'slave', () => jwt({ aud: 'slave', id: 4242, exp: 1000 })],
    ['a token that is not a JWT', 'slave', () => Promise.resolve('not.a.jwt')],
    ['a slave token used to register a control', 'control', () => slaveToken(4242)],
    ['a control token signed with another secret', 'control', () => controlToken('nope')],
    ['a control token with another aud', 'control', () => jwt({ aud: 'admin' })],
    ['an HS384 control token', 'control', () => new SignJWT({ aud: 'control' }).setProtectedHeader({ alg: 'HS384' }).sign(key(SECRET))],
  ];
  it.each(badTokens)('closes %s with close {reason:"Authentication failed"} and 4003', async (_name, role, make) => {
    await boot();
    const l = await link(role);
    const token = await make();
    if (role === 'slave') l.send('register_slave', { token, agent: 'Clusterio Slave', version: '2.0.0-alpha', id: 4242, name: 'x' });
    else l.send('register_control', { token, agent: 'clusterctl', version: '2.0.0-alpha' });
    const { frame } = await expectClose(l.peer, 'Authentication failed', 4003);
    expect(frame.seq).toBe(2);
  });

  it('closes the first connection of a slave id that registers again', async () => {
    await boot();
    const first = await slave(4242, { instances: [] });
    const second = await slave(4242, { instances: [] });
    const { frame } = await expectClose(first.peer, 'Registered from another connection');
    expect(frame.seq).toBe(3);
    const ctl = await control();
    const r = await ctl.ok('list_slaves_request');
    expect(r.list).toEqual([{ agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'slave-4242', id: 4242, connected: true }]);
    expect(second.peer.isClosed).toBe(false);
  });

  it('closes a peer that never registers, after a handshake deadline, with a close frame first', async () => {
    await boot();
    const p = await connect();
    await p.nextRaw(); // hello
    for (let i = 0; i < 60 && !p.isClosed; i++) await tick(5000);
    expect(p.isClosed).toBe(true);
    await expectClose(p, /./);
  });

  it('closes non-UTF-8 text with 1007 and no dialect frame first', async () => {
    await boot();
    const ctl = await control();
    ctl.peer.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    const c = await ctl.peer.waitClose();
    expect(c.code).toBe(1007);
    expect(ctl.peer.frames).toEqual([]);
  });

  it('mints working tokens with `muster token clusterio --slave ID | --control`', async () => {
    ensureBuilt();
    const dir = tmp();
    const cfg = join(dir, 'muster.json');
    writeFileSync(cfg, JSON.stringify({ dataDir: join(dir, 'data'), dialects: { clusterio: { authSecret: SECRET } } }));
    const run = (args: string[]): Promise<string> =>
      new Promise((resolveRun, reject) => {
        const child = spawn(process.execPath, [CLI, 'token', 'clusterio', ...args, '--config', cfg], { cwd: dir });
        let out = '';
        let err = '';
        child.stdout.on('data', (b: Buffer) => (out += b.toString()));
        child.stderr.on('data', (b: Buffer) => (err += b.toString()));
        child.on('error', reject);
        child.on('exit', (code) => (code === 0 ? resolveRun(out.trim()) : reject(new Error(`exit ${String(code)}: ${err}`))));
      });
    const [st, ct] = await Promise.all([run(['--slave', '4242']), run(['--control'])]);
    const vs = await jwtVerify(st, key(SECRET), { algorithms: ['HS256'] });
    expect(vs.payload.aud).toBe('slave');
    expect(Number(vs.payload.id)).toBe(4242);
    const vc = await jwtVerify(ct, key(SECRET), { algorithms: ['HS256'] });
    expect(vc.payload.aud).toBe('control');

    await boot();
    const sl = await link('slave');
    sl.send('register_slave', { token: st, agent: 'Clusterio Slave', version: '2.0.0-alpha', id: 4242, name: 'cli' });
    await sl.next('ready');
    const ctl = await link('control');
    ctl.send('register_control', { token: ct, agent: 'clusterctl', version: '2.0.0-alpha' });
    await ctl.next('ready');
    const mismatch = await link('slave');
    mismatch.send('register_slave', { token: st, agent: 'Clusterio Slave', version: '2.0.0-alpha', id: 4243, name: 'cli' });
    await expectClose(mismatch.peer, 'Authentication failed', 4003);
  });
});

// ---------------------------------------------------------------------------------

describe('clusterio: invalid messages after ready', () => {
  const cases: Array<[string, 'slave' | 'control', (l: Link2020) => void]> = [
    ['an unknown type', 'control', (l) => l.send('bogus_event', {})],
    ['an unknown request type', 'control', (l) => l.send('frobnicate_request', {})],
    ['data that fails the schema (extra property)', 'control', (l) => l.send('list_slaves_request', { foo: 1 })],
    ['data that fails the schema (wrong type)', 'control', (l) => l.send('get_instance_config_request', { instance_id: '777' })],
    ['data that fails the schema (missing property)', 'control', (l) => l.send('send_rcon_request', { instance_id: 777 })],
    ['an extra envelope property', 'control', (l) => l.peer.send({ seq: 2, type: 'list_slaves_request', data: {}, ts: 1 })],
    ['a string seq', 'control', (l) => l.peer.send({ seq: '2', type: 'list_slaves_request', data: {} })],
    ['a fractional seq', 'control', (l) => l.peer.send({ seq: 2.5, type: 'list_slaves_request', data: {} })],
    ['no data', 'control', (l) => l.peer.send({ seq: 2, type: 'list_slaves_request' })],
    ['array data', 'control', (l) => l.peer.send({ seq: 2, type: 'list_slaves_request', data: [] })],
    ['malformed JSON', 'control', (l) => l.peer.send('{"seq":2,"type":')],
    ['a type nobody handles from a control (update_instances_event)', 'control', (l) => l.send('update_instances_event', { instances: [] })],
    ['a type nobody handles from a control (assign_instance_request)', 'control', (l) => l.send('assign_instance_request', { instance_id: 1, serialized_config: { groups: [] } })],
    ['a second register', 'control', (l) => l.send('register_control', { token: 'x', agent: 'a', version: 'v' })],
    ['an unknown type from a slave', 'slave', (l) => l.send('bogus_event', {})],
    ['a control-only request from a slave', 'slave', (l) => l.send('list_slaves_request', {})],
    ['bad update_instances_event data', 'slave', (l) => l.send('update_instances_event', { instances: [{ serialized_config: { groups: [] }, extra: 1 }] })],
    ['update_instances_event without instances', 'slave', (l) => l.send('update_instances_event', {})],
    ['instance_output_event without output', 'slave', (l) => l.send('instance_output_event', { instance_id: 1 })],
  ];
  it.each(cases)('closes on %s (from a %s) with close {reason:"Invalid message: …"} and 4000', async (_n, role, act) => {
    await boot();
    const other = await control();
    const l = role === 'slave' ? await slave(4242, { instances: [] }) : await control();
    act(l);
    const { frame } = await expectClose(l.peer, /^Invalid message: ./, 4000);
    expect(frame.seq).toBe(3);
    // The server and other peers carry on.
    await other.ok('list_slaves_request');
  });

  it('does not crash on a response to a seq it never sent (closes 4000 or ignores it)', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    sl.send('assign_instance_response', { seq: 99 });
    await sl.peer.barrier();
    if (sl.peer.isClosed || sl.peer.frames.length > 0) {
      await expectClose(sl.peer, /^Invalid message: /, 4000);
    } else {
      await syncSlave(sl);
    }
    const ctl = await control();
    await ctl.ok('list_slaves_request');
  });

  it('accepts a client close {reason} and releases the connection', async () => {
    await boot();
    const ctl = await control();
    await ctl.ok('list_slaves_request');
    ctl.send('close', { reason: 'quit' });
    ctl.peer.ws.close();
    await ctl.peer.waitClose();
    await until(() => s().muster.transport.size === 0);
  });
});

// ---------------------------------------------------------------------------------

describe('clusterio: the master registry (control requests)', () => {
  it('list_slaves returns every slave with connected, which turns false when it leaves', async () => {
    await boot();
    const a = await slave(1, { name: 'alpha', instances: [] });
    await slave(2, { name: 'beta', instances: [] });
    const ctl = await control();
    let r = await ctl.ok('list_slaves_request');
    const sortById = (l: unknown): Json[] => [...(l as Json[])].sort((x, y) => (x.id as number) - (y.id as number));
    expect(sortById(r.list)).toEqual([
      { agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'alpha', id: 1, connected: true },
      { agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'beta', id: 2, connected: true },
    ]);
    await terminate(s().muster, a.peer);
    r = await ctl.ok('list_slaves_request');
    expect(sortById(r.list)[0]).toEqual({ agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'alpha', id: 1, connected: false });
  });

  it('create_instance, list_instances and get_instance_config keep the config, unknown groups included', async () => {
    await boot();
    const ctl = await control();
    const extra = [
      { name: 'global_chat', fields: { enabled: true } },
      { name: 'my_plugin', fields: { nested: { a: [1, 2, { b: null }] }, flag: false } },
    ];
    const config = instanceConfig(777, 'test-inst', null, extra);
    // Unknown fields of known groups are kept too.
    const groups = (config as { groups: Array<{ fields: Json }> }).groups;
    (groups[0] as { fields: Json }).fields.custom = { x: 1 };
    (groups[1] as { fields: Json }).fields.version = '0.17.79';
    const created = await ctl.call('create_instance_request', { serialized_config: config });
    expect(Object.keys(created).filter((k) => k !== 'raw')).toEqual(['seq']);
    const list = await ctl.ok('list_instances_request');
    expect(list.list).toEqual([{ name: 'test-inst', id: 777, assigned_slave: null }]);
    const got = await ctl.ok('get_instance_config_request', { instance_id: 777 });
    expect(got.serialized_config).toEqual(config);
  });

  it('get_instance_config of an unknown instance gets an error response', async () => {
    await boot();
    const ctl = await control();
    await ctl.fails('get_instance_config_request', { instance_id: 9 });
    await ctl.ok('list_instances_request');
  });

  it('set_instance_config_field converts the string value by the field type', async () => {
    await boot();
    const ctl = await control();
    await createInstance(ctl, 777, 'test-inst', [{ name: 'global_chat', fields: { enabled: true } }]);
    const set = async (f: string, value: string): Promise<void> => {
      const r = await ctl.call('set_instance_config_field_request', { instance_id: 777, field: f, value });
      expect(Object.keys(r).filter((k) => k !== 'raw'), `${f}=${value}: ${String(r.error)}`).toEqual(['seq']);
    };
    await set('factorio.game_port', '34197');
    await set('factorio.rcon_port', '27015.5');
    await set('factorio.rcon_password', 'hunter2');
    await set('factorio.settings', '{"tags":["a","b"],"auto_pause":true,"max_players":0}');
    await set('instance.name', 'renamed');
    await set('global_chat.enabled', 'false');
    await set('my_plugin.threshold', '42');
    const cfg = (await ctl.ok('get_instance_config_request', { instance_id: 777 })).serialized_config;
    expect(field(cfg, 'factorio', 'game_port')).toBe(34197);
    expect(field(cfg, 'factorio', 'rcon_port')).toBe(27015.5);
    expect(field(cfg, 'factorio', 'rcon_password')).toBe('hunter2');
    expect(field(cfg, 'factorio', 'settings')).toEqual({ tags: ['a', 'b'], auto_pause: true, max_players: 0 });
    expect(field(cfg, 'instance', 'name')).toBe('renamed');
    expect(field(cfg, 'global_chat', 'enabled')).toBe('false');
    expect(field(cfg, 'my_plugin', 'threshold')).toBe('42');
    const list = await ctl.ok('list_instances_request');
    expect(list.list).toEqual([{ name: 'renamed', id: 777, assigned_slave: null }]);

    // "" becomes null.
    await set('factorio.game_port', '');
    await set('factorio.rcon_password', '');
    const cfg2 = (await ctl.ok('get_instance_config_request', { instance_id: 777 })).serialized_config;
    expect(field(cfg2, 'factorio', 'game_port')).toBeNull();
    expect(field(cfg2, 'factorio', 'rcon_password')).toBeNull();
    expect(field(cfg2, 'instance', 'name')).toBe('renamed');
  });

  it('set_instance_config_field answers a value that does not convert with an error, changing nothing', async () => {
    await boot();
    const ctl = await control();
    await createInstance(ctl, 777, 'test-inst');
    const before = (await ctl.ok('get_instance_config_request', { instance_id: 777 })).serialized_config;
    await ctl.fails('set_instance_config_field_request', { instance_id: 777, field: 'factorio.game_port', value: 'abc' });
    await ctl.fails('set_instance_config_field_request', { instance_id: 777, field: 'factorio.settings', value: '{bad json' });
    await ctl.fails('set_instance_config_field_request', { instance_id: 9, field: 'factorio.game_port', value: '1' });
    const after = (await ctl.ok('get_instance_config_request', { instance_id: 777 })).serialized_config;
    expect(after).toEqual(before);
  });

  it('set_instance_config_field on an assigned instance sends the slave assign_instance_request with the new config', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, sl, 777, 4242);
    const seq = ctl.send('set_instance_config_field_request', { instance_id: 777, field: 'factorio.game_port', value: '34197' });
    const req = await sl.next('assign_instance_request');
    expect(req.data.instance_id).toBe(777);
    expect(field(req.data.serialized_config, 'factorio', 'game_port')).toBe(34197);
    expect(field(req.data.serialized_config, 'instance', 'assigned_slave')).toBe(4242);
    sl.respond(req);
    const r = await ctl.next('set_instance_config_field_response');
    expect(r.data).toEqual({ seq });
  });

  it('assign_instance_command sends the slave assign_instance_request and answers after the slave does', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    const extra = [{ name: 'research_sync', fields: { enabled: true } }];
    await createInstance(ctl, 777, 'test-inst', extra);
    const seq = ctl.send('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
    const req = await sl.next('assign_instance_request');
    expect(req.data.instance_id).toBe(777);
    expect(req.data.serialized_config).toEqual(instanceConfig(777, 'test-inst', 4242, extra));
    expect(await ctl.peer.quiet()).toBe(true);
    sl.respond(req);
    expect((await ctl.next('assign_instance_command_response')).data).toEqual({ seq });
    const list = await ctl.ok('list_instances_request');
    expect(list.list).toEqual([{ name: 'test-inst', id: 777, assigned_slave: 4242 }]);
  });

  it('assign_instance_command to an unknown or offline slave, or of an unknown instance, gets an error', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createInstance(ctl, 777);
    await ctl.fails('assign_instance_command_request', { instance_id: 777, slave_id: 9999 });
    await ctl.fails('assign_instance_command_request', { instance_id: 778, slave_id: 4242 });
    await terminate(s().muster, sl.peer);
    await ctl.fails('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
  });

  const forwarded: Array<[string, Json, Json]> = [
    ['start_instance_request', {}, {}],
    ['stop_instance_request', {}, {}],
    ['create_save_request', {}, {}],
    ['delete_instance_request', {}, {}],
    ['send_rcon_request', { command: '/c game.print("hi")' }, { result: 'hi\n' }],
  ];
  it.each(forwarded)('forwards %s to the assigned slave with its own seq and relays the response', async (type, extra, answer) => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, sl, 777, 4242);
    ctl.send('list_slaves_request', {}); // moves the control's seq on, so it differs from the slave's
    await ctl.next('list_slaves_response');
    const cseq = ctl.send(type, { instance_id: 777, ...extra });
    const req = await sl.next(type);
    expect(req.data).toStrictEqual({ instance_id: 777, ...extra });
    expect(req.seq).toBe(sl.lastIn);
    sl.respond(req, answer);
    const r = await ctl.next(type.replace(/_request$/, '_response'));
    expect(r.data).toStrictEqual({ seq: cseq, ...answer });
  });

  it.each(forwarded)('relays the slave error for %s under the control seq', async (type, extra) => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, sl, 777, 4242);
    const cseq = ctl.send(type, { instance_id: 777, ...extra });
    const req = await sl.next(type);
    sl.respond(req, { error: 'Instance ID 777 is not running' });
    const r = await ctl.next(type.replace(/_request$/, '_response'));
    expect(r.data).toStrictEqual({ seq: cseq, error: 'Instance ID 777 is not running' });
  });

  it('delete_instance removes the instance from the master once the slave confirms', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, sl, 777, 4242);
    const seq = ctl.send('delete_instance_request', { instance_id: 777 });
    sl.respond(await sl.next('delete_instance_request'));
    expect((await ctl.next('delete_instance_response')).data).toEqual({ seq });
    expect((await ctl.ok('list_instances_request')).list).toEqual([]);
  });

  it.each(forwarded)('answers %s for an unassigned instance with an error that says so', async (type, extra) => {
    await boot();
    const ctl = await control();
    await createInstance(ctl, 777);
    expect(await ctl.fails(type, { instance_id: 777, ...extra })).toMatch(/assign/i);
  });

  it.each(forwarded)('answers %s for an unknown instance with an error', async (type, extra) => {
    await boot();
    const ctl = await control();
    await ctl.fails(type, { instance_id: 12345, ...extra });
  });

  it.each(forwarded)('answers %s for an instance whose slave is offline with an error that says so', async (type, extra) => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, sl, 777, 4242);
    await terminate(s().muster, sl.peer);
    expect(await ctl.fails(type, { instance_id: 777, ...extra })).toMatch(/offline|not connected|disconnected/i);
  });

  it('answers a forwarded request with an error when its slave disconnects mid-flight', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, sl, 777, 4242);
    const seq = ctl.send('start_instance_request', { instance_id: 777 });
    await sl.next('start_instance_request');
    sl.peer.ws.terminate();
    const r = await ctl.next('start_instance_response');
    expect(r.data.seq).toBe(seq);
    expect(typeof r.data.error).toBe('string');
  });

  it('answers a forwarded request with an error when the slave never answers (a deadline)', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, sl, 777, 4242);
    const seq = ctl.send('send_rcon_request', { instance_id: 777, command: 'x' });
    await sl.next('send_rcon_request');
    for (let i = 0; i < 120 && ctl.peer.frames.length === 0; i++) await tick(5000);
    const r = await ctl.next('send_rcon_response');
    expect(r.data.seq).toBe(seq);
    expect(typeof r.data.error).toBe('string');
    expect(sl.peer.isClosed).toBe(false);
  });

  it('trace 1.6.2: create-save with output subscription, the slave error relayed', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, sl, 777, 4242);
    await ctl.ok('set_instance_output_subscriptions_request', { instance_ids: [777] });
    const cseq = ctl.send('create_save_request', { instance_id: 777 });
    const req = await sl.next('create_save_request');
    const err = "ENOENT: no such file or directory, open 'factorio/data/changelog.txt'";
    sl.respond(req, { error: err });
    expect((await ctl.next('create_save_response')).data).toStrictEqual({ seq: cseq, error: err });
    ctl.send('close', { reason: 'quit' });
    ctl.peer.ws.close();
    await ctl.peer.waitClose();
  });
});

// ---------------------------------------------------------------------------------

describe('clusterio: instance output', () => {
  it('fans instance_output_event out to the subscribed controls only, until they unsubscribe', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const a = await control();
    const b = await control();
    await createAssigned(a, sl, 777, 4242);
    await createInstance(a, 778);
    await a.ok('set_instance_output_subscriptions_request', { instance_ids: [777] });
    await b.ok('set_instance_output_subscriptions_request', { instance_ids: [778] });
    const output = { format: 'seconds', time: '12.345', type: 'log', level: 'Info', message: 'Hello' };
    sl.send('instance_output_event', { instance_id: 777, output });
    const ev = await a.next('instance_output_event');
    expect(ev.data).toStrictEqual({ instance_id: 777, output });
    await syncSlave(sl);
    expect(await b.peer.quiet()).toBe(true);

    await a.ok('set_instance_output_subscriptions_request', { instance_ids: [] });
    sl.send('instance_output_event', { instance_id: 777, output });
    await syncSlave(sl);
    expect(await a.peer.quiet()).toBe(true);
  });
});

// ---------------------------------------------------------------------------------

describe('clusterio: update_instances_event', () => {
  it('answers with assign_instance_request for assigned instances and unknown reported ones, and records the latter', async () => {
    await boot();
    const first = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, first, 101, 4242);
    await createAssigned(ctl, first, 303, 4242);
    await terminate(s().muster, first.peer);

    const plugins = [
      { name: 'global_chat', fields: { enabled: true } },
      { name: 'subspace_storage', fields: { enabled: true, log_item_transfers: false } },
    ];
    const sl = await slave(4242, {
      instances: [
        { serialized_config: instanceConfig(101, 'inst-a', 4242) },
        { serialized_config: instanceConfig(202, 'inst-b', null, plugins), status: 'stopped' },
      ],
    });
    const got = new Map<number, Frame>();
    for (let i = 0; i < 3; i++) {
      const req = await sl.next('assign_instance_request');
      got.set(req.data.instance_id as number, req);
      sl.respond(req);
    }
    expect([...got.keys()].sort((x, y) => x - y)).toEqual([101, 202, 303]);
    await syncSlave(sl);
    expect(sl.peer.frames).toEqual([]);
    expect(field(got.get(202)?.data.serialized_config, 'subspace_storage', 'log_item_transfers')).toBe(false);

    const list = (await ctl.ok('list_instances_request')).list as Json[];
    expect([...list].sort((x, y) => (x.id as number) - (y.id as number))).toEqual([
      { name: 'inst-101', id: 101, assigned_slave: 4242 },
      { name: 'inst-b', id: 202, assigned_slave: 4242 },
      { name: 'inst-303', id: 303, assigned_slave: 4242 },
    ]);
    const cfg = (await ctl.ok('get_instance_config_request', { instance_id: 202 })).serialized_config;
    expect(field(cfg, 'global_chat', 'enabled')).toBe(true);
    expect(field(cfg, 'subspace_storage', 'log_item_transfers')).toBe(false);
  });

  it('trace 1.6.3: a restarted slave reporting its one instance gets one assign_instance_request', async () => {
    await boot();
    const config = instanceConfig(101, 'inst-a', 4242, [
      { name: 'global_chat', fields: { enabled: true } },
      { name: 'research_sync', fields: { enabled: true } },
      { name: 'statistics_exporter', fields: { enabled: true } },
      { name: 'subspace_storage', fields: { enabled: true, log_item_transfers: false } },
    ]);
    const sl = await slave(4242, { instances: [{ serialized_config: config }] });
    const req = await sl.next('assign_instance_request');
    expect(req.seq).toBe(3);
    expect(req.data).toStrictEqual({ instance_id: 101, serialized_config: config });
    sl.respond(req);
    await syncSlave(sl);
    expect(sl.peer.frames).toEqual([]);
  });

  it('the trace 1.6.1 empty update gets nothing back', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    await syncSlave(sl);
    expect(sl.peer.frames).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------

describe('clusterio: plugin messages', () => {
  it('broadcasts global_chat:chat_event and research_sync:finished_event unchanged to every other slave', async () => {
    await boot();
    const a = await slave(1, { instances: [] });
    const b = await slave(2, { instances: [] });
    const c = await slave(3, { instances: [] });
    const ctl = await control();
    const chat = { instance_name: 'inst-a', content: '[gps=1,2] héllo "world"' };
    a.send('global_chat:chat_event', chat);
    for (const x of [b, c]) expect((await x.next('global_chat:chat_event')).data).toStrictEqual(chat);
    a.sendRaw('research_sync:finished_event', `{"name":"automation","level":${BIG}}`);
    for (const x of [b, c]) {
      const f = await x.next('research_sync:finished_event');
      expect(f.raw).toContain(`"level":${BIG}`);
      expect(f.data.name).toBe('automation');
    }
    await syncSlave(a);
    expect(a.peer.frames).toEqual([]);
    expect(await ctl.peer.quiet()).toBe(true);
  });

  it('accepts and drops any other plugin event, keeping the link', async () => {
    await boot();
    const a = await slave(1, { instances: [] });
    const b = await slave(2, { instances: [] });
    const ctl = await control();
    a.send('research_sync:contribution_event', { name: 'automation', level: 1, contribution: 0.5 });
    a.send('subspace_storage:place_event', { instance_id: 1, items: [['iron-plate', 10]] });
    a.send('research_sync:progress_event', { technologies: [] });
    a.send('my_plugin:something_event', { anything: [1, { x: null }] });
    await syncSlave(a);
    expect(await b.peer.quiet()).toBe(true);
    expect(ctl.peer.frames).toEqual([]);
    expect(a.peer.isClosed).toBe(false);
  });

  it('answers a plugin request with no handler with "No handler for <type>", keeping the link', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const r = await sl.call('research_sync:sync_technologies_request', { technologies: [] });
    expect(Object.keys(r).filter((k) => k !== 'raw').sort()).toEqual(['error', 'seq']);
    expect(r.error).toBe('No handler for research_sync:sync_technologies_request');
    const r2 = await sl.call('subspace_storage:remove_request', { instance_id: 1, items: [] });
    expect(r2.error).toBe('No handler for subspace_storage:remove_request');
    expect(sl.peer.isClosed).toBe(false);
  });
});

// ---------------------------------------------------------------------------------

describe('clusterio: numbers beyond 2^53', () => {
  it('keeps a big instance id exact through create, list, config, assign, forwarding and output', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    const cfgText = `{"groups":[{"name":"instance","fields":{"name":"big","id":${BIG},"assigned_slave":null}},{"name":"factorio","fields":{"game_port":null}}]}`;
    const created = await ctl.callRaw('create_instance_request', `{"serialized_config":${cfgText}}`);
    expect(created.error).toBeUndefined();
    expect((await ctl.ok('list_instances_request')).raw).toContain(`"id":${BIG}`);
    expect((await ctl.callRaw('get_instance_config_request', `{"instance_id":${BIG}}`)).raw).toContain(`"id":${BIG}`);

    const aseq = ctl.sendRaw('assign_instance_command_request', `{"instance_id":${BIG},"slave_id":4242}`);
    const assign = await sl.next('assign_instance_request');
    expect(assign.raw).toContain(`"instance_id":${BIG}`);
    expect(assign.raw).toContain(`"id":${BIG}`);
    sl.respond(assign);
    expect((await ctl.next('assign_instance_command_response')).data).toEqual({ seq: aseq });

    await ctl.callRaw('set_instance_output_subscriptions_request', `{"instance_ids":[${BIG}]}`);
    const sseq = ctl.sendRaw('start_instance_request', `{"instance_id":${BIG}}`);
    const start = await sl.next('start_instance_request');
    expect(start.raw).toContain(`"instance_id":${BIG}`);
    sl.sendRaw('instance_output_event', `{"instance_id":${BIG},"output":{"type":"log","message":"up"}}`);
    const out = await ctl.next('instance_output_event');
    expect(out.raw).toContain(`"instance_id":${BIG}`);
    sl.respond(start);
    expect((await ctl.next('start_instance_response')).data).toEqual({ seq: sseq });
  });
});

// ---------------------------------------------------------------------------------

describe('clusterio: /metrics, admin API', () => {
  it('scrapes statistics_exporter:get_metrics from each slave into /metrics with a slave_id label', async () => {
    await boot();
    const a = await slave(4242, { instances: [] });
    const b = await slave(7, { instances: [] });
    const ctl = await control();
    await syncSlave(a);
    await syncSlave(b);
    const scrape = fetch(`${s().httpBase}/metrics`);
    const results = (id: number, v: number): Json[] => [
      {
        metric: { type: 'gauge', name: 'clusterio_slave_cpu_seconds', help: 'CPU time used by the slave', labels: ['slave_id'] },
        samples: [[`slave_id="${id}"`, v]],
      },
      {
        metric: { type: 'gauge', name: 'clusterio_instance_player_count', help: 'Players online', labels: ['instance_id', 'slave_id'] },
        samples: [[`instance_id="101",slave_id="${id}"`, 3]],
      },
      {
        metric: { type: 'counter', name: 'clusterio_test_unlabelled_total', help: 'No labels from the slave', labels: [] },
        samples: [['', 5]],
      },
    ];
    for (const [x, id, v] of [[a, 4242, 0.248], [b, 7, 1.5]] as const) {
      const req = await x.next('statistics_exporter:get_metrics_request');
      expect(req.data).toStrictEqual({});
      x.respond(req, { results: results(id, v) });
    }
    const res = await scrape;
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/^clusterio_slave_cpu_seconds\{[^}\n]*slave_id="4242"[^}\n]*\} 0\.248$/m);
    expect(text).toMatch(/^clusterio_slave_cpu_seconds\{[^}\n]*slave_id="7"[^}\n]*\} 1\.5$/m);
    expect(text).toMatch(/^clusterio_instance_player_count\{(?=[^}\n]*instance_id="101")(?=[^}\n]*slave_id="4242")[^}\n]*\} 3$/m);
    expect(text).toMatch(/^clusterio_test_unlabelled_total\{slave_id="7"\} 5$/m);
    expect(text).toMatch(/^muster_clusterio_/m);
    expect(await ctl.peer.quiet()).toBe(true);
  });

  it('serves /api/v1/clusterio/slaves and /instances behind the admin token', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, sl, 777, 4242);
    for (const path of ['slaves', 'instances']) {
      const url = `${s().httpBase}/api/v1/clusterio/${path}`;
      expect((await fetch(url)).status).toBe(401);
      const r = await fetch(url, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(r.status).toBe(200);
      const body = await r.text();
      expect(body).toContain(path === 'slaves' ? '4242' : '777');
    }
  });
});

// ---------------------------------------------------------------------------------

describe('clusterio: persistence', () => {
  it('slaves and instances survive a master restart (sqlite store)', async () => {
    const dataDir = tmp();
    await boot({}, { store: { kind: 'sqlite' }, dataDir });
    const extra = [{ name: 'my_plugin', fields: { keep: [1, 'two'] } }];
    {
      const sl = await slave(4242, { name: 'muster-slave-1', instances: [] });
      const ctl = await control();
      await createInstance(ctl, 777, 'test-inst', extra);
      const seq = ctl.send('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
      sl.respond(await sl.next('assign_instance_request'));
      expect((await ctl.next('assign_instance_command_response')).data).toEqual({ seq });
      await createInstance(ctl, 778, 'other');
    }
    for (const p of peers.splice(0)) p.close();
    await until(() => s().muster.transport.size === 0);
    await h.release().stop();

    await boot({}, { store: { kind: 'sqlite' }, dataDir });
    const ctl = await control();
    const slaves = await ctl.ok('list_slaves_request');
    expect(slaves.list).toEqual([{ agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'muster-slave-1', id: 4242, connected: false }]);
    const list = (await ctl.ok('list_instances_request')).list as Json[];
    expect([...list].sort((x, y) => (x.id as number) - (y.id as number))).toEqual([
      { name: 'test-inst', id: 777, assigned_slave: 4242 },
      { name: 'other', id: 778, assigned_slave: null },
    ]);
    const cfg = (await ctl.ok('get_instance_config_request', { instance_id: 777 })).serialized_config;
    expect(cfg).toEqual(instanceConfig(777, 'test-inst', 4242, extra));
    // The slave comes back and is brought in sync.
    const sl = await slave(4242, { name: 'muster-slave-1', instances: [] });
    const req = await sl.next('assign_instance_request');
    expect(req.data.instance_id).toBe(777);
    sl.respond(req);
  });
});

// ---------------------------------------------------------------------------------

describe('clusterio: liveness and shutdown (seed mode)', () => {
  it('closes a peer that answers no ping for 2 × heartbeatInterval, with a close frame first', async () => {
    await boot();
    const dead = await slave(1, { instances: [], autoPong: false });
    const alive = await slave(2, { instances: [] });
    await syncSlave(dead);
    let pings = 0;
    dead.peer.ws.on('ping', () => pings++);
    await tick(2 * HB - 5000);
    expect(dead.peer.isClosed).toBe(false);
    expect(pings).toBeGreaterThan(0);
    await tick(HB + 5000);
    expect(dead.peer.isClosed).toBe(true);
    await expectClose(dead.peer, /./);
    expect(alive.peer.isClosed).toBe(false);
  });

  it('keeps a silent 2020 slave that answers pings for as long as it likes, sending it nothing', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await tick(10 * HB);
    expect(sl.peer.isClosed).toBe(false);
    expect(ctl.peer.isClosed).toBe(false);
    expect(sl.peer.frames).toEqual([]);
    expect(ctl.peer.frames).toEqual([]);
  });

  it('sends close {reason} and closes with 1001 on shutdown', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await syncSlave(sl);
    const stopping = h.release().stop();
    await expectClose(ctl.peer, /./, 1001);
    await expectClose(sl.peer, /./, 1001);
    await stopping;
  });
});

// ---------------------------------------------------------------------------------
// Sessions (opt-in)

const CONTROL_FRAMES = new Set(['ready', 'resume', 'continue', 'invalidate', 'heartbeat', 'close']);

class SLink {
  out = 0;
  lastIn = 0;
  token = '';
  readonly sent: Array<{ seq: number; text: string }> = [];

  constructor(
    public peer: RawPeer,
    readonly role: 'slave' | 'control',
  ) {}

  send(type: string, data: Json): number {
    const seq = ++this.out;
    const text = JSON.stringify({ seq, type, data });
    this.sent.push({ seq, text });
    this.peer.send(text);
    return seq;
  }

  ctrl(type: string, data: Json): void {
    this.peer.send({ seq: 0, type, data });
  }

  heartbeat(): void {
    this.ctrl('heartbeat', { last_seq: this.lastIn });
  }

  /** The next frame; heartbeats are skipped unless asked for. Counted frames must follow on. */
  async next(type?: string, keepHeartbeats = false): Promise<Frame> {
    for (;;) {
      const raw = await this.peer.nextRaw();
      const f = JSON.parse(raw) as Frame;
      expect(Object.keys(f).sort()).toEqual(['data', 'seq', 'type']);
      if (f.type === 'hello') expect(f.seq).toBe(1);
      else if (CONTROL_FRAMES.has(f.type)) expect(f.seq, raw).toBe(0);
      else {
        expect(f.seq, raw).toBe(this.lastIn + 1);
        this.lastIn = f.seq;
      }
      if (f.type === 'heartbeat' && !keepHeartbeats && type !== 'heartbeat') {
        expect(Object.keys(f.data)).toEqual(['last_seq']);
        continue;
      }
      if (type !== undefined) expect(f.type, raw).toBe(type);
      return { ...f, raw };
    }
  }

  respond(req: Frame, extra: Json = {}): void {
    this.send(req.type.replace(/_request$/, '_response'), { seq: req.seq, ...extra });
  }

  async call(type: string, data: Json = {}): Promise<Json> {
    const seq = this.send(type, data);
    const f = await this.next(type.replace(/_request$/, '_response'));
    expect(f.data.seq).toBe(seq);
    return f.data;
  }

  /** Reconnects and resumes; returns the continue frame's data. */
  async resume(lastSeq = this.lastIn): Promise<Frame> {
    this.peer = await connect();
    await this.next('hello');
    this.ctrl('resume', { session_token: this.token, last_seq: lastSeq });
    return this.next();
  }
}

async function sessionLink(role: 'slave' | 'control', id = 4242): Promise<SLink> {
  const l = new SLink(await connect(), role);
  const hello = await l.next('hello');
  expect(hello.data).toEqual({ version: expect.any(String) });
  if (role === 'slave') {
    l.ctrl('register_slave', {
      token: await slaveToken(id),
      agent: 'Muster test',
      version: '2.0.0',
      name: `s-${id}`,
      id,
      features: ['session'],
    });
  } else {
    l.ctrl('register_control', { token: await controlToken(), agent: 'Muster test', version: '2.0.0', features: ['session'] });
  }
  const ready = await l.next('ready');
  expect(ready.seq).toBe(0);
  expect(Object.keys(ready.data).sort()).toEqual(['heartbeat_interval', 'session_token']);
  expect(typeof ready.data.session_token).toBe('string');
  expect((ready.data.session_token as string).length).toBeGreaterThan(0);
  expect(ready.data.heartbeat_interval).toBe(HB / 1000);
  l.token = ready.data.session_token as string;
  return l;
}

/** Drops the socket without a close handshake, as a lost connection would. */
async function drop(l: SLink): Promise<void> {
  await terminate(s().muster, l.peer);
}

describe('clusterio: sessions (opt-in)', () => {
  it('ready carries {session_token, heartbeat_interval} in seconds, with seq 0; counted frames start at 1', async () => {
    await boot();
    const sl = await sessionLink('slave');
    expect(sl.send('update_instances_event', { instances: [{ serialized_config: instanceConfig(5, 'five') }] })).toBe(1);
    const req = await sl.next('assign_instance_request');
    expect(req.seq).toBe(1);
    sl.respond(req);
    const ctl = await sessionLink('control');
    const r = await ctl.call('list_instances_request');
    expect(r).toEqual({ seq: 1, list: [{ name: 'five', id: 5, assigned_slave: 4242 }] });
    expect(ctl.lastIn).toBe(1);
  });

  it('uses heartbeat_interval from the config, in seconds', async () => {
    await boot({ heartbeatInterval: 4000 });
    const l = new SLink(await connect(), 'control');
    await l.next('hello');
    l.ctrl('register_control', { token: await controlToken(), agent: 'a', version: 'v', features: ['session'] });
    const ready = await l.next('ready');
    expect(ready.data.heartbeat_interval).toBe(4);
  });

  it('sends heartbeat {last_seq} with seq 0 every heartbeat_interval, acking the client frames', async () => {
    await boot();
    const ctl = await sessionLink('control');
    await ctl.call('list_slaves_request');
    await ctl.call('list_instances_request');
    await tick(HB, { beat: [ctl] });
    const hb = await ctl.next('heartbeat');
    expect(hb).toMatchObject({ seq: 0, type: 'heartbeat', data: { last_seq: 2 } });
    expect(Object.keys(hb.data)).toEqual(['last_seq']);
  });

  it('closes a session peer that sends no heartbeat for 2 × heartbeat_interval with close {reason} and 3008 (pongs do not count)', async () => {
    await boot();
    const silent = await sessionLink('slave', 1);
    const beating = await sessionLink('slave', 2);
    await tick(2 * HB - 5000, { beat: [beating] });
    expect(silent.peer.isClosed).toBe(false);
    await tick(HB + 5000, { beat: [beating] });
    const { frame } = await expectClose(silent.peer, /./, 3008);
    expect(frame.seq).toBe(0);
    expect(beating.peer.isClosed).toBe(false);
    await tick(6 * HB, { beat: [beating] });
    expect(beating.peer.isClosed).toBe(false);
  });

  it('sends close with seq 0 before closing a session peer on an invalid message', async () => {
    await boot();
    const ctl = await sessionLink('control');
    ctl.send('bogus_event', {});
    const { frame } = await expectClose(ctl.peer, /^Invalid message: /, 4000);
    expect(frame.seq).toBe(0);
  });

  it('resumes within sessionTimeout: continue {last_seq}, the unacked frames resent, numbering carried on', async () => {
    await boot();
    const sl = await sessionLink('slave');
    sl.send('update_instances_event', {
      instances: [1, 2, 3].map((i) => ({ serialized_config: instanceConfig(i, `i${i}`) })),
    });
    const reqs = [await sl.next('assign_instance_request'), await sl.next('assign_instance_request'), await sl.next('assign_instance_request')];
    expect(reqs.map((r) => r.seq)).toEqual([1, 2, 3]);
    sl.respond(reqs[0] as Frame); // seq 2
    // The client acks only the first two, then loses the socket; it only "received" 2.
    sl.ctrl('heartbeat', { last_seq: 2 });
    await sl.peer.barrier();
    await drop(sl);
    sl.lastIn = 2;
    const cont = await sl.resume();
    expect(cont).toMatchObject({ seq: 0, type: 'continue' });
    expect(cont.data).toStrictEqual({ last_seq: 2 });
    const replay = await sl.next('assign_instance_request');
    expect(replay.seq).toBe(3);
    expect(replay.data.instance_id).toBe(reqs[2]?.data.instance_id);
    sl.respond(reqs[1] as Frame); // seq 3
    sl.respond(reqs[2] as Frame); // seq 4
    // A new request carries the numbering on.
    const ctl = await sessionLink('control');
    const cseq = ctl.send('start_instance_request', { instance_id: 1 });
    const start = await sl.next('start_instance_request');
    expect(start.seq).toBe(4);
    sl.respond(start);
    expect((await ctl.next('start_instance_response')).data).toEqual({ seq: cseq });
    expect(await sl.peer.quiet()).toBe(true);
  });

  it('delivers the client frames exactly once across a resume (a replayed duplicate is dropped)', async () => {
    await boot();
    const sl = await sessionLink('slave');
    sl.send('update_instances_event', { instances: [{ serialized_config: instanceConfig(9, 'nine') }] }); // 1
    sl.respond(await sl.next('assign_instance_request')); // 2
    const ctl = await sessionLink('control');
    await ctl.call('set_instance_output_subscriptions_request', { instance_ids: [9] });
    sl.send('instance_output_event', { instance_id: 9, output: { n: 1 } }); // 3
    expect((await ctl.next('instance_output_event')).data).toEqual({ instance_id: 9, output: { n: 1 } });
    await drop(sl);
    const cont = await sl.resume();
    expect(cont.type).toBe('continue');
    expect(cont.data).toStrictEqual({ last_seq: 3 });
    // The client resends what it thinks may be lost: the last frame again, then a new one.
    const dup = sl.sent.find((f) => f.seq === 3);
    sl.peer.send(dup?.text ?? '');
    sl.send('instance_output_event', { instance_id: 9, output: { n: 2 } }); // 4
    expect((await ctl.next('instance_output_event')).data).toEqual({ instance_id: 9, output: { n: 2 } });
    expect(await ctl.peer.quiet()).toBe(true);
    expect(sl.peer.isClosed).toBe(false);
  });

  it('buffers requests to a dropped session slave and replays them on resume', async () => {
    await boot();
    const sl = await sessionLink('slave');
    const ctl = await control();
    await createInstance(ctl, 777);
    const aseq = ctl.send('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
    const assign = await sl.next('assign_instance_request');
    sl.respond(assign);
    expect((await ctl.next('assign_instance_command_response')).data).toEqual({ seq: aseq });
    sl.heartbeat();
    await sl.peer.barrier();
    await drop(sl);

    const cseq = ctl.send('start_instance_request', { instance_id: 777 });
    const rseq = ctl.send('send_rcon_request', { instance_id: 777, command: '/version' });
    expect(await ctl.peer.quiet()).toBe(true);
    await tick(SESSION_TIMEOUT / 2);
    expect(ctl.peer.frames).toEqual([]);

    const cont = await sl.resume();
    expect(cont.type).toBe('continue');
    expect(cont.data).toStrictEqual({ last_seq: 1 });
    const start = await sl.next('start_instance_request');
    expect(start.data).toStrictEqual({ instance_id: 777 });
    const rcon = await sl.next('send_rcon_request');
    sl.respond(start);
    sl.respond(rcon, { result: '1.0.0' });
    expect((await ctl.next('start_instance_response')).data).toStrictEqual({ seq: cseq });
    expect((await ctl.next('send_rcon_response')).data).toStrictEqual({ seq: rseq, result: '1.0.0' });
  });

  it('after sessionTimeout: buffered requests fail, resume gets invalidate, and the client registers anew', async () => {
    await boot();
    const sl = await sessionLink('slave');
    const ctl = await control();
    await createInstance(ctl, 777);
    ctl.send('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
    sl.respond(await sl.next('assign_instance_request'));
    await ctl.next('assign_instance_command_response');
    await drop(sl);
    const cseq = ctl.send('start_instance_request', { instance_id: 777 });
    await tick(SESSION_TIMEOUT + 5000);
    const r = await ctl.next('start_instance_response');
    expect(r.data.seq).toBe(cseq);
    expect(typeof r.data.error).toBe('string');
    expect(await ctl.fails('start_instance_request', { instance_id: 777 })).toMatch(/offline|not connected|disconnected/i);

    const inv = await sl.resume();
    expect(inv).toMatchObject({ seq: 0, type: 'invalidate' });
    sl.ctrl('register_slave', { token: await slaveToken(4242), agent: 'Muster test', version: '2.0.0', name: 's-4242', id: 4242, features: ['session'] });
    const ready = await sl.next('ready');
    expect(ready.data.session_token).not.toBe(sl.token);
    sl.token = ready.data.session_token as string;
    sl.out = 0;
    sl.lastIn = 0;
    sl.send('update_instances_event', { instances: [] });
    const again = await sl.next('assign_instance_request');
    expect(again.seq).toBe(1);
    expect(again.data.instance_id).toBe(777);
    sl.respond(again);
  });

  it('answers resume with an unknown session token with invalidate', async () => {
    await boot();
    const l = new SLink(await connect(), 'slave');
    await l.next('hello');
    l.ctrl('resume', { session_token: 'no-such-session', last_seq: 0 });
    const inv = await l.next();
    expect(inv).toMatchObject({ seq: 0, type: 'invalidate' });
  });

  it('a session slave stays connected in list_slaves while it heartbeats', async () => {
    await boot();
    const sl = await sessionLink('slave');
    const ctl = await sessionLink('control');
    await tick(4 * HB, { beat: [sl, ctl] });
    const r = await ctl.call('list_slaves_request');
    expect(r.list).toEqual([{ agent: 'Muster test', version: '2.0.0', name: 's-4242', id: 4242, connected: true }]);
  });

  it('never sends a session frame to a 2020 client next to session peers', async () => {
    await boot();
    const old = await slave(1, { instances: [] });
    const oldCtl = await control();
    const sess = await sessionLink('slave', 2);
    await tick(4 * HB, { beat: [sess] });
    expect(old.peer.frames).toEqual([]);
    expect(oldCtl.peer.frames).toEqual([]);
    expect(sess.peer.isClosed).toBe(false);
  });
});

describe('clusterio: operator actions and edge cases', () => {
  it('a kick through the admin API sends a 2020 client close {reason} before closing', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    await syncSlave(sl);
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const conns = (await (await fetch(`${s().httpBase}/api/v1/connections`, { headers: auth })).json()) as Array<{ id: string; dialect: string }>;
    const mine = conns.filter((c) => c.dialect === 'clusterio');
    expect(mine).toHaveLength(1);
    const r = await fetch(`${s().httpBase}/api/v1/connections/${mine[0]?.id ?? ''}`, { method: 'DELETE', headers: auth });
    expect(r.status).toBe(200);
    await expectClose(sl.peer, /./);
  });

  it('reloads authSecret without dropping connections (SIGHUP)', async () => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const c = s().muster.config;
    s().muster.reloadSecrets({ ...c, dialects: { ...c.dialects, clusterio: { ...c.dialects.clusterio, authSecret: 'rotated' } } });
    const old = await link('control');
    old.send('register_control', { token: await controlToken(), agent: 'clusterctl', version: '2.0.0-alpha' });
    await expectClose(old.peer, 'Authentication failed', 4003);
    const fresh = await link('control');
    fresh.send('register_control', { token: await controlToken('rotated'), agent: 'clusterctl', version: '2.0.0-alpha' });
    await fresh.next('ready');
    expect((await fresh.ok('list_slaves_request')).list).toEqual([
      { agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'slave-4242', id: 4242, connected: true },
    ]);
    expect(sl.peer.isClosed).toBe(false);
  });

  it.each([
    ['a response missing a property of its schema', { seq: 0 }],
    ['a response with an extra property', { seq: 0, result: 'x', extra: 1 }],
    ['an error response with an extra property', { seq: 0, error: 'x', result: 'y' }],
  ])('closes a slave that sends %s with 4000, and the control gets an error', async (_n, bad) => {
    await boot();
    const sl = await slave(4242, { instances: [] });
    const ctl = await control();
    await createAssigned(ctl, sl, 777, 4242);
    const cseq = ctl.send('send_rcon_request', { instance_id: 777, command: 'x' });
    const req = await sl.next('send_rcon_request');
    sl.send('send_rcon_response', { ...bad, seq: req.seq });
    await expectClose(sl.peer, /^Invalid message: /, 4000);
    const r = await ctl.next('send_rcon_response');
    expect(r.data.seq).toBe(cseq);
    expect(typeof r.data.error).toBe('string');
  });

  it('a slave that registers again under a new name is listed under the new name', async () => {
    await boot();
    const a = await slave(4242, { name: 'old-name', instances: [] });
    a.peer.ws.terminate();
    await a.peer.waitClose();
    await slave(4242, { name: 'new-name', instances: [] });
    const ctl = await control();
    expect((await ctl.ok('list_slaves_request')).list).toEqual([
      { agent: 'Clusterio Slave', version: '2.0.0-alpha', name: 'new-name', id: 4242, connected: true },
    ]);
  });

  it('register with features the server does not know (and no "session") is seed mode', async () => {
    await boot();
    const l = await link('control');
    l.send('register_control', { token: await controlToken(), agent: 'x', version: 'v', features: ['something-else'] });
    await l.next('ready');
    await l.ok('list_slaves_request');
  });

  it('a resume on a new socket while the old one is still open takes the session over', async () => {
    await boot();
    const ctl = await sessionLink('control');
    await ctl.call('list_slaves_request');
    const oldPeer = ctl.peer;
    const cont = await ctl.resume();
    expect(cont).toMatchObject({ seq: 0, type: 'continue', data: { last_seq: 1 } });
    await expectClose(oldPeer, /./);
    const r = await ctl.call('list_instances_request');
    expect(r.seq).toBe(2);
  });

  it('a fresh register of a session slave id ends its detached session', async () => {
    await boot();
    const old = await sessionLink('slave');
    await drop(old);
    const fresh = await sessionLink('slave');
    expect(fresh.token).not.toBe(old.token);
    const inv = await old.resume();
    expect(inv).toMatchObject({ seq: 0, type: 'invalidate' });
    const ctl = await control();
    expect((await ctl.ok('list_slaves_request')).list).toEqual([
      { agent: 'Muster test', version: '2.0.0', name: 's-4242', id: 4242, connected: true },
    ]);
  });

  it('a bad resume frame before registering is a bad handshake (1008)', async () => {
    await boot();
    const l = new SLink(await connect(), 'slave');
    await l.next('hello');
    l.ctrl('resume', { session_token: 'x', last_seq: 'zero' });
    await expectClose(l.peer, 'Invalid handshake', 1008);
  });
});
