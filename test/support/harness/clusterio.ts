/**
 * The clusterio dialect's harness (`/api/socket`): a server with clusterio on and an
 * auth secret, raw peers with hello read, and the close check. For the integration tests
 * it also has raw peers that speak the seed's frames, and a validator that behaves like
 * Clusterio's 2020 slave and control CLI: it knows only the seed's types and checks every
 * frame with additionalProperties: false (schemas written out here from the 2020 link,
 * independently of the server's). The conformance tests keep their own 2020 client,
 * written from the contract, and use only the wire-level part.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { afterEach, beforeEach, expect } from 'vitest';
import type { ClusterioDialect } from '../../../src/dialects/clusterio/dialect.js';
import { mintToken } from '../../../src/dialects/clusterio/token.js';
import { RawPeer, startTestServer, type TestServer } from '../server.js';
import { Harness, withDialect, type Overrides, type PeerOptions } from './harness.js';

export const SECRET = 'clusterio-secret-for-tests';

export class ClusterioHarness extends Harness<TestServer, [extra?: Overrides, top?: Overrides]> {
  constructor(readonly secret = SECRET) {
    super('/api/socket', (extra = {}, top = {}) => startTestServer(withDialect('clusterio', { enabled: true, authSecret: secret, ...extra }, top)));
  }

  /** Opens a socket (remembered for teardown) without reading anything. */
  connect(opts: PeerOptions = {}): Promise<RawPeer> {
    return this.open(opts);
  }

  /** Opens a socket and reads hello. */
  async hello(opts: PeerOptions = {}): Promise<RawPeer> {
    return readHello(await this.open(opts));
  }
}

/**
 * Starts `h`'s server before each test of the file; after each, closes the seeds the
 * test pushed to the list returned, tears the server down, then runs `after`.
 */
export function serverPerTest(h: ClusterioHarness, after?: () => void): Seed2020[] {
  const seeds: Seed2020[] = [];
  beforeEach(async () => {
    await h.start();
  });
  afterEach(async () => {
    for (const s of seeds.splice(0)) s.close();
    await h.teardown();
    after?.();
  });
  return seeds;
}

export interface Frame {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}

/** A server with clusterio on (`extra` is top-level config; its `dialects.clusterio` goes over the defaults). */
export function startClusterio(extra: Overrides = {}): Promise<TestServer> {
  return startTestServer(withDialect('clusterio', { enabled: true, authSecret: SECRET, ...((extra.dialects as Overrides | undefined)?.clusterio as Overrides | undefined) }, extra));
}

export function dialectOf(srv: TestServer): ClusterioDialect {
  return srv.muster.dialect<ClusterioDialect>('clusterio') as ClusterioDialect;
}

export const slaveToken = (id: number | string): Promise<string> => mintToken(SECRET, { aud: 'slave', id: String(id) });
export const controlToken = (): Promise<string> => mintToken(SECRET, { aud: 'control' });

// ---- what the 2020 clients accept (lib/link/messages.js and lib/schema.js, 2020-03) ----

const S = <P extends Record<string, TSchema>>(p: P) => Type.Object(p, { additionalProperties: false });
const Obj = Type.Object({});
const ok = (props: Record<string, TSchema> = {}) => Type.Union([S({ seq: Type.Integer(), ...props }), S({ seq: Type.Integer(), error: Type.String() })]);
const output = S({
  source: Type.String(),
  received: Type.Number(),
  format: Type.String(),
  time: Type.Optional(Type.String()),
  level: Type.Optional(Type.String()),
  file: Type.Optional(Type.String()),
  type: Type.String(),
  action: Type.Optional(Type.String()),
  message: Type.String(),
});
const common: Record<string, TSchema> = {
  close: S({ reason: Type.String() }),
};
const slaveAccepts: Record<string, TSchema> = {
  ...common,
  assign_instance_request: S({ instance_id: Type.Integer(), serialized_config: Obj }),
  start_instance_request: S({ instance_id: Type.Integer() }),
  create_save_request: S({ instance_id: Type.Integer() }),
  stop_instance_request: S({ instance_id: Type.Integer() }),
  delete_instance_request: S({ instance_id: Type.Integer() }),
  send_rcon_request: S({ instance_id: Type.Integer(), command: Type.String() }),
  'statistics_exporter:get_metrics_request': S({}),
  'global_chat:chat_event': S({ instance_name: Type.String(), content: Type.String() }),
  'research_sync:finished_event': S({ name: Type.String(), level: Type.Integer() }),
  'research_sync:sync_technologies_response': ok({ technologies: Type.Array(Type.Unknown()) }),
};
const controlAccepts: Record<string, TSchema> = {
  ...common,
  instance_output_event: S({ instance_id: Type.Integer(), output }),
  list_slaves_response: ok({
    list: Type.Array(S({ agent: Type.String(), version: Type.String(), name: Type.String(), id: Type.Integer(), connected: Type.Boolean() })),
  }),
  list_instances_response: ok({
    list: Type.Array(S({ name: Type.String(), id: Type.Integer(), assigned_slave: Type.Union([Type.Null(), Type.Integer()]) })),
  }),
  set_instance_output_subscriptions_response: ok(),
  create_instance_response: ok(),
  get_instance_config_response: ok({ serialized_config: Obj }),
  set_instance_config_field_response: ok(),
  assign_instance_command_response: ok(),
  start_instance_response: ok(),
  stop_instance_response: ok(),
  create_save_response: ok(),
  delete_instance_response: ok(),
  send_rcon_response: ok({ result: Type.String() }),
};
const envelope = TypeCompiler.Compile(S({ seq: Type.Integer(), type: Type.String(), data: Obj }));
const handshake = {
  hello: TypeCompiler.Compile(S({ version: Type.String() })),
  ready: TypeCompiler.Compile(S({})),
  close: TypeCompiler.Compile(S({ reason: Type.String() })),
};
const compiled = {
  slave: Object.fromEntries(Object.entries(slaveAccepts).map(([k, v]) => [k, TypeCompiler.Compile(v)])),
  control: Object.fromEntries(Object.entries(controlAccepts).map(([k, v]) => [k, TypeCompiler.Compile(v)])),
};

/**
 * A peer that behaves like a 2020 client: every frame it receives must pass the 2020
 * validators, or it records why the real client would have closed the link.
 */
export class Seed2020 {
  readonly violations: string[] = [];
  #ready = false;
  #seq = 1;

  private constructor(
    readonly peer: RawPeer,
    readonly role: 'slave' | 'control',
  ) {}

  static async connect(srv: TestServer, role: 'slave' | 'control', opts: { id?: number; name?: string } = {}): Promise<Seed2020> {
    const c = new Seed2020(await RawPeer.open(`${srv.wsBase}/api/socket`), role);
    const hello = await c.next();
    expect(hello.type).toBe('hello');
    if (role === 'slave') {
      const id = opts.id ?? 4242;
      c.send('register_slave', { token: await slaveToken(id), agent: 'Clusterio Slave', version: '2.0.0-alpha', id, name: opts.name ?? 'muster-slave-1' });
    } else {
      c.send('register_control', { token: await controlToken(), agent: 'clusterctl', version: '2.0.0-alpha' });
    }
    const ready = await c.next();
    expect(ready.type).toBe('ready');
    c.#ready = true;
    return c;
  }

  /** Sends a frame numbered as the 2020 clients number them; returns its seq. */
  send(type: string, data: Record<string, unknown>): number {
    const seq = this.#seq++;
    this.peer.send({ seq, type, data });
    return seq;
  }

  sendRaw(text: string): void {
    this.#seq++;
    this.peer.send(text);
  }

  /** The next frame, validated as the 2020 client would. */
  async next(timeoutMs?: number): Promise<Frame> {
    const raw = await this.peer.nextRaw(timeoutMs);
    this.check(raw);
    return JSON.parse(raw) as Frame;
  }

  check(raw: string): void {
    let f: unknown;
    try {
      f = JSON.parse(raw);
    } catch {
      this.violations.push(`not JSON: ${raw}`);
      return;
    }
    if (!envelope.Check(f)) {
      this.violations.push(`Malformed: ${raw}`);
      return;
    }
    const { type, data } = f as Frame;
    if (!this.#ready) {
      const v = handshake[type as keyof typeof handshake];
      if (!v || !v.Check(data)) this.violations.push(`invalid handshake: ${raw}`);
      return;
    }
    const v = compiled[this.role][type];
    if (!v) this.violations.push(`No validator for ${type}: ${raw}`);
    else if (!v.Check(data)) this.violations.push(`Validation failed for ${type}: ${raw}`);
  }

  /** Sends a request and waits for its response (validated). */
  async request(type: string, data: Record<string, unknown> = {}): Promise<Frame> {
    const seq = this.send(type, data);
    const f = await this.next();
    expect(f.type).toBe(type.replace(/_request$/, '_response'));
    expect(f.data.seq).toBe(seq);
    return f;
  }

  close(): void {
    this.peer.close();
  }
}

/** The create-instance payload clusterctl sends (traces/clusterio-2020.md §1.6.2). */
export function instanceConfig(id: number | string, name = 'test-inst', assigned: number | null = null): Record<string, unknown> {
  return {
    groups: [
      { name: 'instance', fields: { name, id, assigned_slave: assigned } },
      {
        name: 'factorio',
        fields: { game_port: null, rcon_port: null, rcon_password: null, settings: { tags: ['clusterio'], auto_pause: false } },
      },
    ],
  };
}

/** Opens a raw socket and reads hello. */
export async function rawOpen(srv: TestServer, opts: PeerOptions = {}): Promise<RawPeer> {
  return readHello(await RawPeer.open(`${srv.wsBase}/api/socket`, opts));
}

/** Reads the server's first frame: hello, seq 1, with a version. */
async function readHello(p: RawPeer): Promise<RawPeer> {
  const hello = JSON.parse(await p.nextRaw()) as Frame;
  expect(hello).toEqual({ seq: 1, type: 'hello', data: { version: expect.any(String) } });
  return p;
}

/** Reads frames until the close frame, then the socket close; returns both. */
export async function expectClose(peer: RawPeer, reason: string | RegExp, code: number): Promise<Frame> {
  const f = JSON.parse(await peer.nextRaw()) as Frame;
  expect(f.type).toBe('close');
  if (typeof reason === 'string') expect(f.data).toEqual({ reason });
  else expect(f.data.reason).toMatch(reason);
  const c = await peer.waitClose();
  expect(c.code).toBe(code);
  return f;
}
