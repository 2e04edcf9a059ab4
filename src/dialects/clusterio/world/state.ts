/**
 * The Clusterio world's state, events, effects and timer keys. The step lives beside it
 * (world/step.ts) and its jobs in one module each: links.ts (a socket's link machine,
 * link-level frames, frames before the registry loads), peers.ts (registration, seq
 * numbering, the resumable session's replay buffer, resume, retiring a peer),
 * registry.ts (the registry's writes and what waits on them), messages.ts (lists and
 * the instance requests), forwarding.ts (the master's requests to peers, relayed
 * answers, timeouts, plugin events, instance output).
 *
 * The state is owned by the runtime and updated in place; a step does no I/O and reads
 * no clock (time comes with each event, session tokens from the config).
 */
import type { CoreEffect } from '../../../core/runtime.js';
import type { Envelope } from '../../../protocols/clusterio/codec.js';
import type { InstanceConfig } from '../../../protocols/clusterio/config.js';
import type { Role } from '../../../protocols/clusterio/messages.js';
import type { GoneWhy } from '../../../core/peer-log.js';
import type { LinkState, MachineConfig, Mode, RegisterMessage } from '../machine.js';

export interface WorldConfig {
  readonly machine: MachineConfig;
  readonly heartbeatInterval: number;
  readonly handshakeTimeout: number;
  readonly sessionTimeout: number;
  readonly requestTimeout: number;
  readonly metricsTimeout: number;
  readonly preAuthMaxBytes: number;
  /** Unacknowledged bytes a session keeps for replay. */
  readonly sessionBufferBytes: number;
  /** A new session token (unguessable). */
  readonly newSessionId: () => string;
  /** Cluster mode: this Muster instance's id (absent: one process, no `cluster` effects). */
  readonly cluster?: { readonly instance: string };
}

/** One socket. */
export interface LinkRec {
  readonly conn: string;
  state: LinkState;
  /** Next seq in the seed numbering (hello is 1). */
  seedSeq: number;
  /** The peer this socket carries, once registered or resumed. */
  peer: PeerRec | undefined;
  /** Frames that wait: for the registry to load, or for a token check. */
  deferred: Array<string | undefined>;
  /** Bytes of the frames that waited for the registry to load. */
  deferredBytes: number;
  /** Set when the server's own close should end the session rather than detach it. */
  endSession: boolean;
  /** The world has closed the socket (or the client hung up): nothing more is sent. */
  closing: boolean;
  /** The registration whose token is being checked (or whose slave record is being written). */
  registering: { readonly msg: RegisterMessage; readonly session: boolean } | undefined;
  /** Bumped with each registration the link starts: a late answer to an older one is ignored. */
  attempt: number;
}

/** The master's numbering and replay buffer of one opt-in session. */
export interface SessionRec {
  /** The session token. */
  readonly id: string;
  /** Seq of the last frame queued for the peer. */
  seq: number;
  /** Highest seq the peer has acknowledged. */
  acked: number;
  /** Frames after `acked`, kept for a resume, oldest first. */
  readonly buffer: Array<{ readonly seq: number; readonly frame: string }>;
  bytes: number;
  /** When the socket went (null while attached). */
  detachedAt: number | null;
}

/** A registered slave or control. In session mode it outlives its sockets. */
export interface PeerRec {
  readonly key: string;
  readonly role: Role;
  /** Slaves: canonical decimal id. */
  readonly slaveId: string;
  readonly name: string;
  readonly agent: string;
  readonly version: string;
  readonly mode: Mode;
  /** The socket it is on; undefined while a session waits for a resume. */
  link: LinkRec | undefined;
  readonly session: SessionRec | undefined;
  lastReceived: number;
  /** Controls: instance ids whose output they want. */
  subscriptions: Set<string>;
  /** Seqs of the master's requests that timed out: a late answer is ignored, not an error. */
  readonly expired: Set<number>;
  alive: boolean;
  readonly registeredAt: number;
}

export interface SlaveRecord {
  /** Canonical decimal id. */
  readonly id: string;
  readonly name: string;
  readonly agent: string;
  readonly version: string;
}

export interface InstanceRecord {
  config: InstanceConfig;
  /** Last status the slave reported, if any. */
  status: string | null;
}

/** What the master knows of its cluster and keeps across restarts. */
export interface Registry {
  readonly slaves: Map<string, SlaveRecord>;
  readonly instances: Map<string, InstanceRecord>;
}

/** One scrape: the slaves asked for their metrics, the answers so far. */
export interface Gather {
  readonly call: string;
  left: number;
  /** By the slave's place in the scrape (undefined: no answer, or not a list). */
  readonly results: Array<SlaveMetrics | undefined>;
}

/** One slave's answer to a metrics scrape. */
export interface SlaveMetrics {
  readonly slaveId: string;
  readonly results: unknown[];
}

/** What happens with the answer (or failure) of a request the master sent a peer. */
export type Origin =
  /** A control's request forwarded to a slave: relay the answer under the control's seq. */
  | { readonly kind: 'relay'; readonly control: PeerRec; readonly req: Envelope; readonly instance?: { readonly id: string; readonly rec: InstanceRecord } }
  /** A config pushed to a slave after update_instances: only failures are logged. */
  | { readonly kind: 'log'; readonly slave: PeerRec }
  /** A /metrics scrape. */
  | { readonly kind: 'gather'; readonly gather: Gather; readonly index: number; readonly slave: string }
  /** Cluster mode: another instance's request (`id`) for a slave here; the answer goes back to it. */
  | { readonly kind: 'remote'; readonly instance: string; readonly id: string };

/** Cluster mode: a request for a slave on another instance, asked of that instance. */
export interface RemoteAsk {
  readonly key: string;
  readonly instance: string;
  readonly slaveId: string;
  readonly requestType: string;
  readonly origin: Origin;
}

/** Cluster mode: a slave connected to another instance, as that instance announces it. */
export interface SlaveInfo {
  readonly id: string;
  readonly mode: Mode;
  readonly attached: boolean;
  /** When it registered there (that instance's clock): of one id on two instances, the later wins. */
  readonly at: number;
}

export interface SlaveReplica extends SlaveInfo {
  readonly instance: string;
}

/** What the Clusterio world on one instance tells the one on another (cluster mode). */
export type ClusterMsg =
  /** A slave is connected here (registered, resumed or detached in its session window). */
  | { readonly t: 'up'; readonly slave: SlaveInfo }
  | { readonly t: 'down'; readonly id: string }
  /** Every slave here (replaces what the receiver held of this instance); `ask`: send yours back. */
  | { readonly t: 'sync'; readonly slaves: readonly SlaveInfo[]; readonly ask: boolean }
  /** A registry record was written (durably): read it again from the shared store. */
  | { readonly t: 'changed'; readonly ns: string; readonly key: string }
  /** Forward request `type` (data as JSON text) to slave `slave`, connected to the receiver. */
  | { readonly t: 'ask'; readonly id: string; readonly slave: string; readonly type: string; readonly data: string }
  /** The slave's response to ask `id` (its whole data, as JSON text). */
  | { readonly t: 'answer'; readonly id: string; readonly type: string; readonly data: string }
  | { readonly t: 'fail'; readonly id: string; readonly reason: string }
  /** A broadcast plugin event from slave `from`, for every slave on the receiver. */
  | { readonly t: 'plugin'; readonly from: string; readonly type: string; readonly data: string }
  /** instance_output_event (data as JSON text) for the controls subscribed to `instance` on the receiver. */
  | { readonly t: 'output'; readonly instance: string; readonly data: string };

/** A request the master sent a peer and still waits on (the forwarding table). */
export interface Outstanding {
  readonly key: string;
  readonly peer: PeerRec;
  readonly seq: number;
  readonly requestType: string;
  readonly origin: Origin;
}

/** What a write (or writes) the world waits on does once durable. */
export type Then =
  /** A slave's registration: `ready` once it is on record. */
  | { readonly kind: 'register'; readonly conn: string; readonly attempt: number; readonly msg: RegisterMessage; readonly session: boolean }
  /** create_instance: answer. */
  | { readonly kind: 'created'; readonly peer: PeerRec; readonly req: Envelope }
  /** set_instance_config_field: answer, or push the config to the hosting slave and relay its answer. */
  | { readonly kind: 'configured'; readonly peer: PeerRec; readonly req: Envelope; readonly instance: InstanceRecord }
  /** assign_instance_command: push the config to the slave, relay its answer. */
  | {
      readonly kind: 'assigned';
      readonly peer: PeerRec;
      readonly req: Envelope;
      readonly instance: InstanceRecord;
      /** The slave here, or (undefined) the one on another instance (cluster mode). */
      readonly slave: PeerRec | undefined;
      readonly slaveId: string;
    }
  /** A relayed delete_instance: relay the slave's answer. */
  | { readonly kind: 'deleted'; readonly peer: PeerRec; readonly req: Envelope; readonly answer: Envelope };

export interface PendingWrite {
  /** Writes not yet settled. */
  left: number;
  failed: boolean;
  readonly then: Then;
}

export interface ClusterioWorld {
  /** The registry has been read from the store; until then frames wait. */
  loaded: boolean;
  readonly links: Map<string, LinkRec>;
  /** Online slaves by id (attached, or a session within its resume window). */
  readonly slaves: Map<string, PeerRec>;
  readonly controls: Set<PeerRec>;
  /** Live sessions by token. */
  readonly sessions: Map<string, PeerRec>;
  /** The forwarding table: requests the master waits on, by `${peer.key}#${seq}`. */
  readonly pending: Map<string, Outstanding>;
  /** Writes whose outcome an answer waits on, by write id. */
  readonly writes: Map<string, PendingWrite>;
  nextWrite: number;
  readonly registry: Registry;
  /** Plugin types seen, as metric labels (capped). */
  readonly pluginTypes: Set<string>;
  /** Cluster mode: slaves connected to other instances, by id. */
  readonly replicas: Map<string, SlaveReplica>;
  /** Cluster mode: requests asked of other instances for their slaves, by key. */
  readonly asks: Map<string, RemoteAsk>;
  nextAsk: number;
  /** Cluster mode: registry writes made here, numbered, and the last one of each record (kept while a read is out). */
  writeGen: number;
  readonly written: Map<string, number>;
  /** Cluster mode: registry reads asked for (`reread`) and not yet back. */
  rereads: number;
}

export function initialWorld(): ClusterioWorld {
  return {
    loaded: false,
    links: new Map(),
    slaves: new Map(),
    controls: new Set(),
    sessions: new Map(),
    pending: new Map(),
    writes: new Map(),
    nextWrite: 1,
    registry: { slaves: new Map(), instances: new Map() },
    pluginTypes: new Set(),
    replicas: new Map(),
    asks: new Map(),
    nextAsk: 1,
    writeGen: 0,
    written: new Map(),
    rereads: 0,
  };
}

export type TimerKey =
  /** Register or resume by then. */
  | { readonly kind: 'handshake'; readonly conn: string }
  /** The next ping / heartbeat of a ready link. */
  | { readonly kind: 'beat'; readonly conn: string }
  /** A detached session's resume window. */
  | { readonly kind: 'session'; readonly token: string }
  /** A request's deadline. */
  | { readonly kind: 'request'; readonly key: string };

export function timerId(key: TimerKey): string {
  switch (key.kind) {
    case 'handshake':
    case 'beat':
      return `${key.kind}:${key.conn}`;
    case 'session':
      return `session:${key.token}`;
    case 'request':
      return `request:${key.key}`;
  }
}

export type WorldEvent =
  | { readonly type: 'open'; readonly now: number; readonly conn: string }
  /** A frame; `text` is undefined for a binary frame. */
  | { readonly type: 'frame'; readonly now: number; readonly conn: string; readonly text: string | undefined; readonly bytes: number }
  /** The socket has gone, whoever closed it. */
  | { readonly type: 'closed'; readonly now: number; readonly conn: string }
  | { readonly type: 'slow'; readonly now: number; readonly conn: string }
  | { readonly type: 'kick'; readonly now: number; readonly conn: string }
  | { readonly type: 'goodbye'; readonly now: number; readonly conn: string }
  /** The token of the link's registration `attempt` was checked. */
  | { readonly type: 'authenticated'; readonly now: number; readonly conn: string; readonly attempt: number; readonly ok: boolean }
  /** What the store held at start-up. */
  | { readonly type: 'registryLoaded'; readonly now: number; readonly slaves: readonly SlaveRecord[]; readonly instances: readonly InstanceRecord[] }
  /** A write with `settled: id` is durable (`ok`) or failed. */
  | { readonly type: 'settled'; readonly now: number; readonly id: string; readonly ok: boolean }
  /** Cluster mode: a message from the Clusterio world on another instance. */
  | { readonly type: 'remote'; readonly now: number; readonly from: string; readonly msg: ClusterMsg }
  /** Cluster mode: another instance came up (or was seen again) or went away. */
  | { readonly type: 'peer'; readonly now: number; readonly instance: string; readonly up: boolean }
  /**
   * Cluster mode: registry records read again from the store (a `reread`): every record
   * (`key` absent), or the one record `ns`/`key` (absent from the lists: deleted).
   */
  | {
      readonly type: 'registryRead';
      readonly now: number;
      readonly gen: number;
      readonly ns?: string | undefined;
      readonly key?: string | undefined;
      readonly slaves: readonly SlaveRecord[];
      readonly instances: readonly InstanceRecord[];
      /** The read failed: nothing to apply. */
      readonly failed?: boolean;
    }
  /** A /metrics scrape: ask every attached slave, answer the call with what came back. */
  | { readonly type: 'scrape'; readonly now: number; readonly call: string }
  | { readonly type: 'shutdown'; readonly now: number }
  /** A due timer; `lastSeen` is when the beat's socket last showed life (frames or pongs). */
  | { readonly type: 'timer'; readonly now: number; readonly key: TimerKey; readonly lastSeen: number };

export type Counted = 'resumes' | 'invalidations';

/** The dialect's own effects, carried out by dialect.ts. */
export type ClusterioEffect =
  /** Send `frame` (a `close {reason}`) behind any backlog, then close the socket. */
  | { readonly type: 'shut'; readonly conn: string; readonly frame: string; readonly code: number; readonly reason: string }
  | { readonly type: 'ping'; readonly conn: string }
  /** Check a registration's token; feed `authenticated` with the outcome. */
  | { readonly type: 'verify'; readonly conn: string; readonly attempt: number; readonly role: Role; readonly token: string; readonly id: string }
  /** The socket's peer is in: the socket layer may take bigger frames. */
  | { readonly type: 'authenticated'; readonly conn: string }
  | { readonly type: 'refused'; readonly conn: string; readonly detail: string }
  | { readonly type: 'identity'; readonly conn: string; readonly identity: string }
  | { readonly type: 'why'; readonly conn: string; readonly why: GoneWhy }
  | { readonly type: 'phase'; readonly conn: string; readonly from: string; readonly to: string }
  | { readonly type: 'count'; readonly metric: Counted }
  | { readonly type: 'forwarded'; readonly requestType: string }
  | { readonly type: 'plugin'; readonly label: string; readonly action: 'broadcast' | 'dropped' }
  /** Cluster mode: a message for instance `to`, or (`to: null`) every other; `afterWrites`: once the writes so far are durable. */
  | { readonly type: 'cluster'; readonly to: string | null; readonly msg: ClusterMsg; readonly afterWrites?: boolean }
  /** Cluster mode: read the registry (or record `ns`/`key`) again; feed `registryRead` with `gen`. */
  | { readonly type: 'reread'; readonly gen: number; readonly ns?: string; readonly key?: string };

export type Eff = CoreEffect<TimerKey> | ClusterioEffect;

/** One step's context: the world, its config, the effects so far, the time and the socket being served. */
export interface Tx {
  readonly w: ClusterioWorld;
  readonly cfg: WorldConfig;
  readonly out: Eff[];
  readonly now: number;
  /** The socket whose event this is: frames to it are `send`s, to any other `deliver`s. */
  readonly here: string | undefined;
}

export function worldSummary(w: ClusterioWorld): Record<string, number> {
  return {
    connections: w.links.size,
    slaves: w.slaves.size,
    controls: w.controls.size,
    sessions: w.sessions.size,
    pendingRequests: w.pending.size,
    knownSlaves: w.registry.slaves.size,
    instances: w.registry.instances.size,
  };
}
