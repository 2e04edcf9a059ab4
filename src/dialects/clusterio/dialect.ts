import type { IncomingMessage } from 'node:http';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpRoute } from '../../core/dialect.js';
import { PendingRequests, type PendingEntry } from '../../core/pending.js';
import { LogLimiter } from '../../core/ratelimit.js';
import type { Timer } from '../../core/scheduler.js';
import { SessionManager, type Session } from '../../core/session.js';
import {
  encodeFrame,
  idForHttp,
  idOf,
  isLosslessNumber,
  numberNode,
  stringifyTree,
  type Envelope,
  type LJson,
  type LObject,
} from '../../protocols/clusterio/codec.js';
import {
  assignedSlave,
  convertFieldValue,
  getField,
  instanceId,
  instanceName,
  loadConfig,
  setField,
} from '../../protocols/clusterio/config.js';
import {
  BROADCAST_PLUGIN_EVENTS,
  clusterioCloseCodes,
  CloseReason,
  FORWARDED_REQUESTS,
  kindOf,
  PROTOCOL_VERSION,
  responseTypeOf,
  SEED_CONTROL_ACCEPTS,
  SEED_SLAVE_ACCEPTS,
  SESSION_CONTROL_TYPES,
  type MessageKind,
  type Role,
} from '../../protocols/clusterio/messages.js';
import { initialState, step, type LinkEffect, type LinkEvent, type LinkState, type Mode, type RegisterMessage } from './machine.js';
import { ClusterioRegistry, type InstanceRecord } from './registry.js';
import { verifyToken } from './token.js';

export interface ClusterioDialectConfig {
  path: string;
  authSecret: string;
  /** ms: ping / heartbeat period; a peer silent for twice this is closed (3008). */
  heartbeatInterval: number;
  /** ms: how long a session outlives its socket. */
  sessionTimeout: number;
  /** ms: deadline of a request the master sends a slave (default 120 s). */
  requestTimeout?: number;
  /** ms: how long a /metrics scrape waits for each slave (default 1.5 s: scrapes and their callers time out too). */
  metricsTimeout?: number;
  /** ms: time to register or resume after connecting (default 2 × heartbeatInterval). */
  handshakeTimeout?: number;
  /** Unsent bytes per socket before it is a slow consumer (default 4 MiB). */
  maxBufferedBytes?: number;
  /** Largest frame before the handshake is accepted (default DEFAULT_PRE_AUTH_MAX_BYTES). */
  preAuthMaxBytes?: number;
  /** Unacknowledged bytes a session keeps for replay (default 4 MiB). */
  sessionBufferBytes?: number;
}

export const DEFAULT_REQUEST_TIMEOUT = 120_000;
export const DEFAULT_METRICS_TIMEOUT = 1_500;
const MAX_EXPIRED_SEQS = 1024;
/** Closes after which a session cannot be resumed. */
const ENDING_CODES = new Set([1000, 1001, 1008, 4000, 4003]);

/** One socket. */
interface Link {
  readonly conn: Connection;
  state: LinkState;
  /** Next seq in the seed numbering (hello is 1). */
  seedSeq: number;
  peer: Peer | undefined;
  deferred: Array<string | undefined>;
  handshakeTimer: Timer | undefined;
  heartbeat: Timer | undefined;
  /** Set when the server's own close should end the session rather than detach it. */
  endSession: boolean;
}

/** A registered slave or control. In session mode it outlives its sockets. */
interface Peer {
  readonly key: string;
  readonly role: Role;
  /** Slaves: canonical decimal id. */
  readonly slaveId: string;
  readonly name: string;
  readonly agent: string;
  readonly version: string;
  readonly mode: Mode;
  link: Link | undefined;
  session: Session<Peer, Link> | undefined;
  lastReceived: number;
  /** Controls: instance ids whose output they want. */
  subscriptions: Set<string>;
  /** Seqs of the master's requests that timed out: a late answer is ignored, not an error. */
  readonly expired: Set<number>;
  alive: boolean;
  readonly registeredAt: number;
}

/** A request the master sent a peer and still waits on. */
interface Outstanding {
  readonly peer: Peer;
  readonly seq: number;
  readonly requestType: string;
  readonly answer: (env: Envelope) => void;
  readonly fail: (reason: string) => void;
}

interface DialectMetrics {
  resumes: Counter;
  invalidations: Counter;
  pluginEvents: Counter<'type' | 'action'>;
  forwarded: Counter<'type'>;
  pluginTypes: Set<string>;
}

interface SlaveFamily {
  name: string;
  help: string;
  type: string;
  aggregator: 'sum';
  values: Array<{ labels: Record<string, string>; value: number }>;
  get(): Promise<{ name: string; help: string; type: string; aggregator: 'sum'; values: SlaveFamily['values'] }>;
}

export class ClusterioDialect implements Dialect {
  readonly name = 'clusterio';
  readonly path: string;
  readonly closeCodes = clusterioCloseCodes;
  readonly maxBufferedBytes: number;
  readonly preAuthMaxBytes: number;

  #cfg: Required<ClusterioDialectConfig>;
  readonly #ctx: DialectContext;
  readonly #registry: ClusterioRegistry;
  readonly #links = new Map<Connection, Link>();
  /** Online slaves by id (attached, or a session within its resume window). */
  readonly #slaves = new Map<string, Peer>();
  readonly #controls = new Set<Peer>();
  readonly #sessions: SessionManager<Peer, Link>;
  readonly #pending: PendingRequests<Outstanding>;
  readonly #loading: Promise<void>;
  #loaded = false;
  readonly #families = new Map<string, SlaveFamily>();
  /** Warn lines a slave can cause at will (one per reported instance): 5 at once, then 1/s per slave. */
  readonly #peerLog = new LogLimiter<string>(() => this.#ctx.scheduler.now(), { perSecond: 1, burst: 5 });
  readonly #m: DialectMetrics;

  constructor(cfg: ClusterioDialectConfig, ctx: DialectContext) {
    this.#cfg = {
      requestTimeout: DEFAULT_REQUEST_TIMEOUT,
      metricsTimeout: DEFAULT_METRICS_TIMEOUT,
      handshakeTimeout: 2 * cfg.heartbeatInterval,
      maxBufferedBytes: 4 * 1024 * 1024,
      sessionBufferBytes: 4 * 1024 * 1024,
      preAuthMaxBytes: DEFAULT_PRE_AUTH_MAX_BYTES,
      ...cfg,
    };
    this.#ctx = ctx;
    this.path = cfg.path;
    this.maxBufferedBytes = this.#cfg.maxBufferedBytes;
    this.preAuthMaxBytes = this.#cfg.preAuthMaxBytes;
    this.#registry = new ClusterioRegistry(ctx.store, ctx.logger);
    this.#sessions = new SessionManager<Peer, Link>({
      scheduler: ctx.scheduler,
      resumeWindowMs: cfg.sessionTimeout,
      maxBufferedBytes: this.#cfg.sessionBufferBytes,
      onExpire: (s) => this.#retire(s.state, 'session expired'),
    });
    this.#pending = new PendingRequests<Outstanding>(ctx.scheduler, (e) => this.#timedOut(e));
    this.#m = this.#metrics(ctx.registry);
    this.#loading = this.#registry.load().then(
      () => this.#onLoaded(),
      (err: unknown) => {
        ctx.logger.error({ err }, 'clusterio: could not read slaves and instances from the store; starting empty');
        this.#onLoaded();
      },
    );
  }

  #metrics(registry: Registry): DialectMetrics {
    const registers = [registry];
    const slaves = this.#slaves;
    const controls = this.#controls;
    const reg = this.#registry;
    new Gauge({
      name: 'muster_clusterio_slaves_connected',
      help: 'Clusterio slaves online (connected, or a session within its resume window)',
      registers,
      collect() {
        this.set(slaves.size);
      },
    });
    new Gauge({
      name: 'muster_clusterio_controls_connected',
      help: 'Clusterio controls online',
      registers,
      collect() {
        this.set(controls.size);
      },
    });
    new Gauge({
      name: 'muster_clusterio_instances',
      help: 'Clusterio instances by last reported status ("unknown" until a slave reports one)',
      labelNames: ['status'],
      registers,
      collect() {
        this.reset();
        const by = new Map<string, number>();
        for (const rec of reg.instances.values()) by.set(rec.status ?? 'unknown', (by.get(rec.status ?? 'unknown') ?? 0) + 1);
        for (const [status, n] of by) this.set({ status }, n);
      },
    });
    return {
      resumes: new Counter({ name: 'muster_clusterio_resumes_total', help: 'Sessions resumed', registers }),
      invalidations: new Counter({ name: 'muster_clusterio_invalidations_total', help: 'Resumes answered with invalidate', registers }),
      pluginEvents: new Counter({
        name: 'muster_clusterio_plugin_events_total',
        help: 'Plugin events received, by type and what was done (broadcast or dropped)',
        labelNames: ['type', 'action'],
        registers,
      }),
      forwarded: new Counter({
        name: 'muster_clusterio_forwarded_requests_total',
        help: 'Control requests forwarded to slaves, by type',
        labelNames: ['type'],
        registers,
      }),
      pluginTypes: new Set(),
    };
  }

  /** Live counts, for leak checks and `muster status`. */
  summary(): Record<string, number> {
    return {
      connections: this.#links.size,
      slaves: this.#slaves.size,
      controls: this.#controls.size,
      sessions: this.#sessions.size,
      pendingRequests: this.#pending.size,
      knownSlaves: this.#registry.slaves.size,
      instances: this.#registry.instances.size,
    };
  }

  /** Resolves once the registry is loaded and every write so far is in the store. */
  async flushed(): Promise<void> {
    await this.#loading;
    await this.#registry.flush();
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    if (typeof secrets.authSecret === 'string') this.#cfg = { ...this.#cfg, authSecret: secrets.authSecret };
  }

  accept(conn: Connection, _req: IncomingMessage): ConnectionHandler {
    const link: Link = {
      conn,
      state: initialState,
      seedSeq: 1,
      peer: undefined,
      deferred: [],
      handshakeTimer: undefined,
      heartbeat: undefined,
      endSession: false,
    };
    this.#links.set(conn, link);
    conn.onSlowConsumer = () => {
      this.#ctx.logger.warn({ conn: conn.id, buffered: conn.bufferedAmount }, 'clusterio: slow consumer cut');
      this.#run(link, { type: 'close', code: 4008, reason: CloseReason.SLOW_CONSUMER });
    };
    this.#sendLink(link, 'hello', JSON.stringify({ version: PROTOCOL_VERSION }));
    this.#armHandshake(link);
    return {
      onMessage: (data, isBinary) => {
        const text = isBinary ? undefined : data.toString('utf8');
        if (!this.#loaded || link.deferred.length > 0) {
          link.deferred.push(text);
          return;
        }
        this.#feedFrame(link, text);
      },
      onClose: (code) => this.#onClose(link, code),
    };
  }

  kick(conn: Connection): void {
    const link = this.#links.get(conn);
    if (link) this.#run(link, { type: 'close', code: 1008, reason: CloseReason.KICKED });
    else conn.close(1008, CloseReason.KICKED);
  }

  goodbye(conn: Connection): void {
    const link = this.#links.get(conn);
    if (link) this.#run(link, { type: 'close', code: 1001, reason: CloseReason.SHUTDOWN });
    else conn.close(1001, CloseReason.SHUTDOWN);
  }

  async stop(): Promise<void> {
    for (const e of this.#pending.clear()) e.data.fail('the server is shutting down');
    for (const s of [...this.#sessions.values()]) this.#retire(s.state, 'server shutting down');
    this.#sessions.clear();
    for (const name of this.#families.keys()) this.#ctx.registry.removeSingleMetric(name);
    this.#families.clear();
    await this.flushed();
  }

  // ---- the link state machine and its effects ----

  #feed(link: Link, event: LinkEvent): void {
    const { state, effects } = step(link.state, event, { heartbeatInterval: this.#cfg.heartbeatInterval, preAuthMaxBytes: this.#cfg.preAuthMaxBytes });
    link.conn.stateChanged(link.state.phase, state.phase);
    link.state = state;
    if (state.phase === 'ready') link.conn.markAuthenticated();
    const peer = link.peer;
    if (peer && peer.link === link && state.mode === 'session') peer.lastReceived = state.lastReceived;
    for (const e of effects) this.#run(link, e);
  }

  #run(link: Link, e: LinkEffect): void {
    switch (e.type) {
      case 'send':
        this.#sendLink(link, e.frameType, e.data);
        return;
      case 'close':
        this.#closeLink(link, e.code, e.reason);
        return;
      case 'hangup': {
        link.endSession = true;
        const peer = link.peer;
        if (peer && peer.link === link) this.#retire(peer, `closed the link (${e.reason})`);
        link.conn.close(1000, 'closed by the client');
        return;
      }
      case 'ping':
        link.conn.ping();
        return;
      case 'register':
        this.#register(link, e.msg, e.session).catch((err: unknown) => {
          this.#ctx.logger.error({ err, conn: link.conn.id }, 'clusterio: registration failed');
          this.#run(link, { type: 'close', code: 1011, reason: CloseReason.INTERNAL });
        });
        return;
      case 'resume':
        this.#resume(link, e.token, e.lastSeq);
        return;
      case 'defer':
        link.deferred.push(e.text);
        return;
      case 'ack':
        link.peer?.session?.ack(e.lastSeq);
        return;
      case 'replay': {
        const s = link.peer?.session;
        if (s) for (const f of s.since(e.after)) link.conn.send(f.frame);
        return;
      }
      case 'deliver': {
        const peer = link.peer;
        if (peer?.alive) this.#deliver(link, peer, e.env, e.kind, e.plugin);
        return;
      }
    }
  }

  /** Sends a link-level frame: session-control frames are seq 0 in a session; the rest use the seed numbering. */
  #sendLink(link: Link, type: string, data: string): void {
    const seq = link.state.mode === 'session' && SESSION_CONTROL_TYPES.has(type) ? 0 : link.seedSeq++;
    link.conn.send(encodeFrame(seq, type, data));
  }

  #closeLink(link: Link, code: number, reason: string): void {
    link.state = { ...link.state, phase: 'closed' };
    if (link.conn.closing) return;
    if (ENDING_CODES.has(code)) link.endSession = true;
    const seq = link.state.mode === 'session' ? 0 : link.seedSeq++;
    link.conn.sendFinal(encodeFrame(seq, 'close', JSON.stringify({ reason })));
    link.conn.close(code, reason);
  }

  #armHandshake(link: Link): void {
    link.handshakeTimer?.cancel();
    link.handshakeTimer = this.#ctx.scheduler.after(this.#cfg.handshakeTimeout, () => this.#feed(link, { type: 'handshake-deadline' }));
  }

  #startHeartbeat(link: Link): void {
    link.handshakeTimer?.cancel();
    link.handshakeTimer = undefined;
    link.heartbeat?.cancel();
    link.heartbeat = this.#ctx.scheduler.every(this.#cfg.heartbeatInterval, () =>
      this.#feed(link, { type: 'tick', now: this.#ctx.scheduler.now(), lastSeen: link.conn.lastSeen }),
    );
  }

  #flushDeferred(link: Link): void {
    while (link.deferred.length > 0 && link.state.phase !== 'closed' && link.state.phase !== 'authorizing') {
      this.#feedFrame(link, link.deferred.shift());
    }
  }

  /** Feeds a frame; a bug while handling it still closes with a `close {reason}` first (1011). */
  #feedFrame(link: Link, text: string | undefined): void {
    try {
      this.#feed(link, { type: 'frame', text, now: this.#ctx.scheduler.now() });
    } catch (err) {
      this.#ctx.logger.error({ err, conn: link.conn.id }, 'clusterio: failed on a frame');
      this.#run(link, { type: 'close', code: 1011, reason: CloseReason.INTERNAL });
    }
  }

  #onLoaded(): void {
    this.#loaded = true;
    for (const link of this.#links.values()) this.#flushDeferred(link);
  }

  #onClose(link: Link, _code: number): void {
    link.handshakeTimer?.cancel();
    link.heartbeat?.cancel();
    link.handshakeTimer = undefined;
    link.heartbeat = undefined;
    link.state = { ...link.state, phase: 'closed' };
    link.deferred = [];
    this.#links.delete(link.conn);
    const peer = link.peer;
    link.peer = undefined;
    if (!peer || peer.link !== link) return;
    peer.link = undefined;
    if (peer.alive && peer.session && !link.endSession) {
      // The session waits sessionTimeout for a resume; requests to it are buffered.
      this.#sessions.detach(peer.session);
      return;
    }
    this.#retire(peer, 'disconnected');
  }

  // ---- registration, resume, retirement ----

  async #register(link: Link, msg: RegisterMessage, session: boolean): Promise<void> {
    const expect = msg.role === 'slave' ? ({ aud: 'slave', id: msg.id } as const) : ({ aud: 'control' } as const);
    const ok = msg.role === 'control' || msg.id !== '' ? await verifyToken(this.#cfg.authSecret, msg.token, expect, this.#ctx.scheduler.now()) : false;
    if (link.conn.closing || link.state.phase !== 'authorizing') return;
    if (!ok) {
      link.conn.authFailed(`${msg.role} token refused`);
      this.#feed(link, { type: 'refused' });
      return;
    }
    if (msg.role === 'slave') {
      // `ready` acknowledges the registration: the slave is on record before it goes out.
      await this.#registry.putSlave({ id: msg.id, name: msg.name, agent: msg.agent, version: msg.version });
      if (link.conn.closing || link.state.phase !== 'authorizing') return;
      const old = this.#slaves.get(msg.id);
      if (old) this.#replace(old);
    }
    const peer: Peer = {
      key: `${msg.role}:${link.conn.id}`,
      role: msg.role,
      slaveId: msg.id,
      name: msg.name,
      agent: msg.agent,
      version: msg.version,
      mode: session ? 'session' : 'seed',
      link,
      session: undefined,
      lastReceived: 0,
      subscriptions: new Set(),
      expired: new Set(),
      alive: true,
      registeredAt: this.#ctx.scheduler.now(),
    };
    link.peer = peer;
    if (session) peer.session = this.#sessions.create(peer.key, peer, link);
    if (msg.role === 'slave') {
      this.#slaves.set(msg.id, peer);
      link.conn.identity = `slave ${msg.id} (${msg.name})`;
    } else {
      this.#controls.add(peer);
      link.conn.identity = `control (${msg.agent})`;
    }
    const ready = peer.session
      ? JSON.stringify({ session_token: peer.session.id, heartbeat_interval: this.#cfg.heartbeatInterval / 1000 })
      : '{}';
    this.#startHeartbeat(link);
    this.#feed(link, { type: 'authorized', role: msg.role, ready, now: this.#ctx.scheduler.now() });
    this.#flushDeferred(link);
  }

  /** A slave id registered again: its older connection goes, and so does its session. */
  #replace(old: Peer): void {
    const oldLink = old.link;
    if (oldLink) {
      oldLink.peer = undefined;
      old.link = undefined;
      oldLink.conn.markWhy('superseded');
      this.#closeLink(oldLink, 1008, CloseReason.REPLACED);
    }
    this.#retire(old, 'registered from another connection');
  }

  #resume(link: Link, token: string, lastSeq: number): void {
    const s = this.#sessions.byId(token);
    const peer = s?.state;
    const resumable =
      s !== undefined &&
      peer !== undefined &&
      peer.alive &&
      lastSeq <= s.seq &&
      lastSeq >= s.acked &&
      s.since(lastSeq).length === s.seq - lastSeq;
    if (!resumable || !s || !peer) {
      if (peer?.alive) {
        // A resume that cannot be honoured losslessly ends the session.
        const other = peer.link;
        if (other && other !== link) {
          other.peer = undefined;
          peer.link = undefined;
          this.#closeLink(other, 1008, 'Session invalidated');
        }
        this.#retire(peer, 'session invalidated');
      }
      this.#m.invalidations.inc();
      this.#feed(link, { type: 'invalidated' });
      this.#armHandshake(link);
      this.#flushDeferred(link);
      return;
    }
    const other = peer.link;
    if (other && other !== link) {
      other.peer = undefined;
      other.conn.markWhy('superseded');
      this.#closeLink(other, 1008, CloseReason.RESUMED_ELSEWHERE);
    }
    this.#sessions.resume(s, link);
    peer.link = link;
    link.peer = peer;
    s.ack(lastSeq);
    this.#m.resumes.inc();
    link.conn.identity = peer.role === 'slave' ? `slave ${peer.slaveId} (${peer.name})` : `control (${peer.agent})`;
    this.#startHeartbeat(link);
    this.#feed(link, { type: 'resumed', role: peer.role, lastReceived: peer.lastReceived, replayAfter: lastSeq, now: this.#ctx.scheduler.now() });
    this.#flushDeferred(link);
  }

  /** A peer is gone for good: offline, session ended, its outstanding requests failed. */
  #retire(peer: Peer, why: string): void {
    if (!peer.alive) return;
    peer.alive = false;
    if (peer.session) this.#sessions.end(peer.session);
    if (peer.role === 'slave' && this.#slaves.get(peer.slaveId) === peer) this.#slaves.delete(peer.slaveId);
    this.#controls.delete(peer);
    for (const e of this.#pending.takeWhere((x) => x.data.peer === peer)) {
      e.data.fail(`Slave ${peer.slaveId} went offline (${why}) before answering ${e.data.requestType}`);
    }
    this.#ctx.logger.debug({ peer: peer.key, why }, 'clusterio: peer retired');
  }

  // ---- sending to peers, and the master's own requests ----

  /** Sends a numbered frame to a peer. Returns its seq, or undefined when it was not sent. */
  #sendPeer(peer: Peer, type: string, data: string): number | undefined {
    if (!peer.alive) return undefined;
    if (peer.mode === 'seed') {
      // Never send a seed (2020) client an unsolicited type it does not know: it would close the link.
      const accepts = peer.role === 'slave' ? SEED_SLAVE_ACCEPTS : SEED_CONTROL_ACCEPTS;
      if (kindOf(type) !== 'response' && !accepts.has(type)) {
        this.#ctx.logger.debug({ peer: peer.key, type }, 'clusterio: not sent to a seed client that does not accept it');
        return undefined;
      }
      const link = peer.link;
      if (!link) return undefined;
      const seq = link.seedSeq++;
      link.conn.send(encodeFrame(seq, type, data));
      return seq;
    }
    const s = peer.session as Session<Peer, Link>;
    const seq = s.seq + 1;
    const frame = encodeFrame(seq, type, data);
    s.push(frame, this.#sessions.maxBufferedBytes);
    // Detached: kept in the session's buffer and replayed on resume.
    peer.link?.conn.send(frame);
    return seq;
  }

  #request(peer: Peer, type: string, data: string, timeoutMs: number, answer: Outstanding['answer'], fail: Outstanding['fail']): void {
    const seq = this.#sendPeer(peer, type, data);
    if (seq === undefined) {
      fail(`Slave ${peer.slaveId} is not connected`);
      return;
    }
    this.#pending.add(`${peer.key}#${seq}`, timeoutMs, { peer, seq, requestType: type, answer, fail });
  }

  #timedOut(e: PendingEntry<Outstanding>): void {
    const { peer, seq, requestType } = e.data;
    peer.expired.add(seq);
    if (peer.expired.size > MAX_EXPIRED_SEQS) peer.expired.delete(peer.expired.values().next().value as number);
    e.data.fail(`Slave ${peer.slaveId} did not answer ${requestType} in time`);
  }

  /** Answers a peer's request: `{seq, ...body}`. */
  #respond(peer: Peer, req: Envelope, body: LObject = {}): void {
    if (!peer.alive) return;
    this.#sendPeer(peer, responseTypeOf(req.type), stringifyTree({ seq: numberNode(String(req.seq)), ...body }));
  }

  #respondError(peer: Peer, req: Envelope, error: string): void {
    if (!peer.alive) return;
    this.#sendPeer(peer, responseTypeOf(req.type), stringifyTree({ seq: numberNode(String(req.seq)), error }));
  }

  /** Relays a slave's answer to a control under the control's seq, the data otherwise unchanged. */
  #relay(control: Peer, req: Envelope, answer: Envelope): void {
    if (!control.alive) return;
    const out: LObject = {};
    for (const [k, v] of Object.entries(answer.tree)) if (k !== 'seq') out[k] = v;
    out.seq = numberNode(String(req.seq));
    this.#sendPeer(control, responseTypeOf(req.type), stringifyTree(out));
  }

  // ---- the master's messages ----

  #deliver(link: Link, peer: Peer, env: Envelope, kind: MessageKind, plugin: boolean): void {
    if (kind === 'response') return this.#onResponse(link, peer, env);
    if (plugin) {
      if (kind === 'request') return this.#respondError(peer, env, `No handler for ${env.type}`);
      return this.#pluginEvent(peer, env);
    }
    switch (env.type) {
      case 'list_slaves_request':
        return this.#respond(peer, env, {
          list: this.#registry.sortedSlaves().map((s) => ({
            agent: s.agent,
            version: s.version,
            name: s.name,
            id: numberNode(s.id),
            connected: this.#slaves.has(s.id),
          })),
        });
      case 'list_instances_request':
        return this.#respond(peer, env, {
          list: this.#registry.sortedInstances().map(([id, rec]) => {
            const slave = assignedSlave(rec.config);
            return { name: instanceName(rec.config), id: numberNode(id), assigned_slave: slave === null ? null : numberNode(slave) };
          }),
        });
      case 'create_instance_request':
        return this.#createInstance(peer, env);
      case 'get_instance_config_request': {
        const rec = this.#instance(peer, env);
        if (rec) this.#respond(peer, env, { serialized_config: rec.config as unknown as LJson });
        return;
      }
      case 'set_instance_config_field_request':
        return this.#setConfigField(peer, env);
      case 'assign_instance_command_request':
        return this.#assignCommand(peer, env);
      case 'set_instance_output_subscriptions_request': {
        const ids = (env.tree.instance_ids as LJson[]).map((v) => idOf(v) as string);
        peer.subscriptions = new Set(ids);
        return this.#respond(peer, env);
      }
      case 'update_instances_event':
        return this.#updateInstances(peer, env);
      case 'instance_output_event':
        return this.#instanceOutput(peer, env);
      default:
        if ((FORWARDED_REQUESTS as readonly string[]).includes(env.type.slice(0, -'_request'.length))) return this.#forward(peer, env);
        // The machine only delivers types it has a schema for; anything else is a bug here.
        this.#feed(link, { type: 'violation', detail: `Unhandled message ${env.type}` });
    }
  }

  #instance(peer: Peer, env: Envelope): InstanceRecord | undefined {
    const id = idOf(env.tree.instance_id) as string;
    const rec = this.#registry.instances.get(id);
    if (!rec) this.#respondError(peer, env, `Instance with ID ${id} does not exist`);
    return rec;
  }

  #assignData(rec: InstanceRecord): string {
    return stringifyTree({ instance_id: numberNode(instanceId(rec.config)), serialized_config: rec.config as unknown as LJson });
  }

  #createInstance(peer: Peer, env: Envelope): void {
    const loaded = loadConfig(env.tree.serialized_config);
    if (!loaded.ok) return this.#respondError(peer, env, loaded.error);
    const id = instanceId(loaded.value);
    if (this.#registry.instances.has(id)) return this.#respondError(peer, env, `Instance with ID ${id} already exists`);
    this.#whenSaved(peer, env, this.#registry.putInstance({ config: loaded.value, status: null }), () => this.#respond(peer, env));
  }

  /**
   * Runs `then` (which answers `env`) once `write` is durable: nothing that says a change
   * happened goes out before the store has it. A failed write is answered with an error.
   */
  #whenSaved(peer: Peer, env: Envelope, write: Promise<unknown>, then: () => void): void {
    write
      .then(then, () => this.#respondError(peer, env, 'The master could not save the change'))
      .catch((err: unknown) => this.#ctx.logger.error({ err, type: env.type }, 'clusterio: failed to answer after a write'));
  }

  #setConfigField(peer: Peer, env: Envelope): void {
    const rec = this.#instance(peer, env);
    if (!rec) return;
    const { field, value } = env.data as { field: string; value: string };
    const conv = convertFieldValue(field, value);
    if (!conv.ok) return this.#respondError(peer, env, conv.error);
    const oldId = instanceId(rec.config);
    let removed: Promise<void> = Promise.resolve();
    if (field === 'instance.id') {
      const newId = idOf(conv.value) as string;
      if (newId !== oldId && this.#registry.instances.has(newId)) {
        return this.#respondError(peer, env, `Instance with ID ${newId} already exists`);
      }
      setField(rec.config, field, conv.value);
      removed = this.#registry.deleteInstance(oldId);
    } else {
      setField(rec.config, field, conv.value);
    }
    this.#whenSaved(peer, env, Promise.all([removed, this.#registry.putInstance(rec)]), () => {
      const slaveId = assignedSlave(rec.config);
      const slave = slaveId === null ? undefined : this.#slaves.get(slaveId);
      if (!slave) return this.#respond(peer, env);
      // Push the new config to the slave hosting the instance, and answer with its answer.
      this.#pushAssignment(slave, rec, peer, env);
    });
  }

  #assignCommand(peer: Peer, env: Envelope): void {
    const rec = this.#instance(peer, env);
    if (!rec) return;
    const slaveId = idOf(env.tree.slave_id) as string;
    const slave = this.#slaves.get(slaveId);
    if (!slave) return this.#respondError(peer, env, `Slave ${slaveId} is not connected`);
    this.#whenSaved(peer, env, this.#registry.assign(rec, slaveId), () => this.#pushAssignment(slave, rec, peer, env));
  }

  /** Sends the slave `assign_instance_request` for `rec` and relays its answer to `peer`. */
  #pushAssignment(slave: Peer, rec: InstanceRecord, peer: Peer, env: Envelope): void {
    this.#request(
      slave,
      'assign_instance_request',
      this.#assignData(rec),
      this.#cfg.requestTimeout,
      (answer) => this.#relay(peer, env, answer),
      (reason) => this.#respondError(peer, env, reason),
    );
  }

  #forward(peer: Peer, env: Envelope): void {
    const rec = this.#instance(peer, env);
    if (!rec) return;
    const id = instanceId(rec.config);
    const slaveId = assignedSlave(rec.config);
    if (slaveId === null) return this.#respondError(peer, env, `Instance ${id} is not assigned to a slave`);
    const slave = this.#slaves.get(slaveId);
    if (!slave) return this.#respondError(peer, env, `Slave ${slaveId} hosting instance ${id} is not connected`);
    this.#m.forwarded.inc({ type: env.type });
    this.#request(
      slave,
      env.type,
      stringifyTree(env.tree),
      this.#cfg.requestTimeout,
      (answer) => {
        if (env.type === 'delete_instance_request' && answer.data.error === undefined) {
          const cur = this.#registry.instances.get(id);
          if (cur === rec) return this.#whenSaved(peer, env, this.#registry.deleteInstance(id), () => this.#relay(peer, env, answer));
        }
        this.#relay(peer, env, answer);
      },
      (reason) => this.#respondError(peer, env, reason),
    );
  }

  #updateInstances(slave: Peer, env: Envelope): void {
    const warn = (data: Record<string, unknown>, msg: string): void => {
      const held = this.#peerLog.allow(slave.slaveId);
      if (held !== undefined) this.#ctx.logger.warn(held > 0 ? { ...data, suppressed: held } : data, msg);
    };
    const logFail = (reason: string): void => warn({ slave: slave.slaveId, reason }, 'clusterio: assign_instance_request failed');
    const logAnswer = (answer: Envelope): void => {
      if (typeof answer.data.error === 'string') logFail(answer.data.error);
    };
    const reported = env.tree.instances as Array<{ serialized_config: LJson; status?: LJson }>;
    // Push the configs of the instances the master has assigned to this slave...
    for (const [, rec] of this.#registry.sortedInstances()) {
      if (assignedSlave(rec.config) === slave.slaveId) {
        this.#request(slave, 'assign_instance_request', this.#assignData(rec), this.#cfg.requestTimeout, logAnswer, logFail);
      }
    }
    // ...then record and assign the instances the slave has and the master did not know.
    for (const item of reported) {
      const loaded = loadConfig(item.serialized_config);
      if (!loaded.ok) {
        warn({ slave: slave.slaveId, error: loaded.error }, 'clusterio: ignored a reported instance');
        continue;
      }
      const id = instanceId(loaded.value);
      const status = typeof item.status === 'string' ? item.status : null;
      const known = this.#registry.instances.get(id);
      if (known) {
        if (status !== null && assignedSlave(known.config) === slave.slaveId && known.status !== status) {
          known.status = status;
          this.#registry.putInstance(known);
        }
        continue;
      }
      const rec: InstanceRecord = { config: loaded.value, status };
      this.#registry.assign(rec, slave.slaveId);
      this.#request(slave, 'assign_instance_request', this.#assignData(rec), this.#cfg.requestTimeout, logAnswer, logFail);
    }
  }

  #instanceOutput(_slave: Peer, env: Envelope): void {
    const id = idOf(env.tree.instance_id) as string;
    const data = stringifyTree(env.tree);
    for (const c of this.#controls) if (c.subscriptions.has(id)) this.#sendPeer(c, 'instance_output_event', data);
  }

  #pluginEvent(from: Peer, env: Envelope): void {
    const label = this.#pluginLabel(env.type);
    if (!BROADCAST_PLUGIN_EVENTS.has(env.type)) {
      this.#m.pluginEvents.inc({ type: label, action: 'dropped' });
      return;
    }
    this.#m.pluginEvents.inc({ type: label, action: 'broadcast' });
    const data = stringifyTree(env.tree);
    for (const s of this.#slaves.values()) if (s !== from) this.#sendPeer(s, env.type, data);
  }

  /** Plugin types as a metric label, capped so a client cannot grow the label set without bound. */
  #pluginLabel(type: string): string {
    const seen = this.#m.pluginTypes;
    if (seen.has(type)) return type;
    if (seen.size >= 100) return 'other';
    seen.add(type);
    return type;
  }

  #onResponse(link: Link, peer: Peer, env: Envelope): void {
    const seq = env.data.seq as number;
    const key = `${peer.key}#${seq}`;
    const entry = this.#pending.get(key);
    if (!entry) {
      if (peer.expired.delete(seq)) {
        this.#ctx.logger.debug({ peer: peer.key, seq, type: env.type }, 'clusterio: late answer to a timed-out request ignored');
        return;
      }
      this.#feed(link, { type: 'violation', detail: `Received ${env.type} to unknown request seq ${seq}` });
      return;
    }
    const expected = responseTypeOf(entry.data.requestType);
    if (expected !== env.type) {
      this.#feed(link, { type: 'violation', detail: `Received ${env.type} to request seq ${seq}, which expects ${expected}` });
      return;
    }
    this.#pending.take(key);
    entry.data.answer(env);
  }

  // ---- /metrics: the slaves' statistics ----

  /** Asks every connected slave for its metrics and publishes them with a slave_id label. */
  async beforeScrape(): Promise<void> {
    const slaves = [...this.#slaves.values()].filter((p) => p.link !== undefined && !p.link.conn.closing);
    const answers = await Promise.all(
      slaves.map(
        (slave) =>
          new Promise<{ slave: Peer; results: unknown[] } | undefined>((resolve) => {
            this.#request(
              slave,
              'statistics_exporter:get_metrics_request',
              '{}',
              this.#cfg.metricsTimeout,
              (answer) => resolve(Array.isArray(answer.data.results) ? { slave, results: answer.data.results } : undefined),
              () => resolve(undefined),
            );
          }),
      ),
    );
    const merged = new Map<string, { help: string; type: string; values: SlaveFamily['values'] }>();
    for (const a of answers) {
      if (!a) continue;
      for (const r of a.results) mergeResult(merged, r, a.slave.slaveId);
    }
    const registry = this.#ctx.registry;
    for (const name of [...this.#families.keys()]) {
      if (!merged.has(name)) {
        registry.removeSingleMetric(name);
        this.#families.delete(name);
      }
    }
    for (const [name, m] of merged) {
      let fam = this.#families.get(name);
      if (!fam) {
        if (registry.getSingleMetric(name)) continue; // never shadow Muster's own metrics
        const f: SlaveFamily = {
          name,
          help: m.help,
          type: m.type,
          aggregator: 'sum',
          values: [],
          get: async () => ({ name: f.name, help: f.help, type: f.type, aggregator: 'sum', values: f.values }),
        };
        fam = f;
        this.#families.set(name, f);
        registry.registerMetric(f as unknown as Parameters<Registry['registerMetric']>[0]);
      }
      fam.help = m.help;
      fam.type = m.type;
      fam.values = m.values;
    }
  }

  // ---- admin API ----

  routes(): HttpRoute[] {
    return [
      {
        method: 'GET',
        url: '/api/v1/clusterio/slaves',
        access: 'admin',
        summary: 'Every Clusterio slave the master knows, and whether it is connected',
        response: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              id: { type: ['integer', 'string'] },
              name: { type: 'string' },
              agent: { type: 'string' },
              version: { type: 'string' },
              connected: { type: 'boolean' },
              mode: { type: ['string', 'null'], enum: ['seed', 'session', null] },
              attached: { type: 'boolean' },
              remoteAddress: { type: ['string', 'null'] },
              instances: { type: 'integer' },
            },
          },
        },
        handler: () => {
          const hosted = new Map<string, number>();
          for (const rec of this.#registry.instances.values()) {
            const s = assignedSlave(rec.config);
            if (s !== null) hosted.set(s, (hosted.get(s) ?? 0) + 1);
          }
          return {
            body: this.#registry.sortedSlaves().map((s) => {
              const p = this.#slaves.get(s.id);
              return {
                id: idForHttp(s.id),
                name: s.name,
                agent: s.agent,
                version: s.version,
                connected: p !== undefined,
                mode: p?.mode ?? null,
                attached: p?.link !== undefined,
                remoteAddress: p?.link?.conn.remoteAddress ?? null,
                instances: hosted.get(s.id) ?? 0,
              };
            }),
          };
        },
      },
      {
        method: 'GET',
        url: '/api/v1/clusterio/instances',
        access: 'admin',
        summary: 'Every Clusterio instance, its slave, its last reported status and its config',
        response: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              id: { type: ['integer', 'string'] },
              name: { type: 'string' },
              assigned_slave: { type: ['integer', 'string', 'null'] },
              slave_connected: { type: 'boolean' },
              status: { type: 'string' },
              serialized_config: { type: 'object' },
            },
          },
        },
        handler: () => ({
          body: this.#registry.sortedInstances().map(([id, rec]) => {
            const slave = assignedSlave(rec.config);
            return {
              id: idForHttp(id),
              name: instanceName(rec.config),
              assigned_slave: slave === null ? null : idForHttp(slave),
              slave_connected: slave !== null && this.#slaves.has(slave),
              status: rec.status ?? 'unknown',
              serialized_config: toHttpJson(rec.config as unknown as LJson),
            };
          }),
        }),
      },
    ];
  }

  /** For tests: a field of an instance's stored config. */
  instanceField(id: string, path: string): LJson | undefined {
    const rec = this.#registry.instances.get(id);
    return rec ? getField(rec.config, path) : undefined;
  }
}

/** A tree for a JSON body: numbers that JS cannot hold exactly are sent as their digits (a string). */
function toHttpJson(v: LJson): unknown {
  if (Array.isArray(v)) return v.map(toHttpJson);
  if (isLosslessNumber(v)) return isSafeDecimal(v.value) ? Number(v.value) : v.value;
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toHttpJson(x)]));
  return v;
}

function isSafeDecimal(text: string): boolean {
  const n = Number(text);
  if (!Number.isFinite(n)) return false;
  // Integers must be exact; other numbers are as exact as a double can be anyway.
  return /^-?\d+$/.test(text) ? Number.isSafeInteger(n) : true;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** Merges one serialized prometheus result from a slave (the 2020 lib/prometheus format). */
function mergeResult(
  into: Map<string, { help: string; type: string; values: SlaveFamily['values'] }>,
  r: unknown,
  slaveId: string,
): void {
  if (typeof r !== 'object' || r === null) return;
  const { metric, samples } = r as { metric?: { name?: unknown; help?: unknown; type?: unknown }; samples?: unknown };
  if (!metric || typeof metric.name !== 'string' || !METRIC_NAME.test(metric.name) || !Array.isArray(samples)) return;
  let fam = into.get(metric.name);
  if (!fam) {
    fam = {
      help: typeof metric.help === 'string' ? metric.help : metric.name,
      type: typeof metric.type === 'string' && TYPES.has(metric.type) ? metric.type : 'untyped',
      values: [],
    };
    into.set(metric.name, fam);
  }
  for (const s of samples) {
    if (!Array.isArray(s) || typeof s[0] !== 'string' || typeof s[1] !== 'number') continue;
    const labels: Record<string, string> = {};
    for (const m of s[0].matchAll(LABEL_PAIR)) {
      labels[m[1] as string] = (m[2] as string).replace(/\\(["\\n])/g, (_x, c: string) => (c === 'n' ? '\n' : c));
    }
    labels.slave_id ??= slaveId;
    fam.values.push({ labels, value: s[1] });
  }
}
