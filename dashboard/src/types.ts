// Bodies of the admin API routes the dashboard reads (see /api/v1/openapi.json).

export interface StatusBody {
  version: string;
  uptimeSeconds: number;
  store: string;
  connections: Record<string, number>;
  dialects: Record<string, Record<string, unknown> & { path: string }>;
  /** This instance's id (when it has one). */
  instanceId?: string;
  /** Every instance asked, this one first; `answered: false` is missing from the lists and totals. */
  instances?: InstanceState[];
}

export interface InstanceState {
  id: string;
  answered: boolean;
  error?: string;
  version?: string;
  uptimeSeconds?: number;
  connections?: Record<string, number>;
}

export interface Peer {
  id: string;
  dialect: string;
  identity: string | null;
  remoteAddress: string;
  connectedAt: string;
  lastSeen: string;
  latencyMs: number | null;
  /** The instance holding the connection. */
  instance?: string;
}

export interface PeersBody {
  counts: Record<string, number>;
  peers: Peer[];
}

export type ShardState = 'unassigned' | 'pending' | 'assigned' | 'connecting' | 'connected' | 'disconnected' | 'halted';

export interface Shard {
  id: number;
  owner: string | null;
  state: ShardState;
}

export interface Control {
  name: string;
  sessionId: string;
  state: string;
  shards: Array<[number, number]>;
  redundant: boolean;
  capacity: number;
  lastHeartbeatMs: number | null;
}

export interface Fleet {
  halted: boolean;
  shardCount: number;
  maxConcurrency: number;
  budgetRemaining: number;
  budgetExhausted: boolean;
  identifyQueueDepth: number;
  phase: string;
  haltReason: string | null;
  controls: Control[];
}
