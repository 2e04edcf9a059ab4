// Bodies of the admin API routes the dashboard reads (see /api/v1/openapi.json).

export interface StatusBody {
  version: string;
  uptimeSeconds: number;
  store: string;
  connections: Record<string, number>;
  dialects: Record<string, Record<string, unknown> & { path: string }>;
  /** Cluster mode (not in this version): the leader. */
  cluster?: { leader: string | null };
}

export interface Peer {
  id: string;
  dialect: string;
  identity: string | null;
  remoteAddress: string;
  connectedAt: string;
  lastSeen: string;
  latencyMs: number | null;
  /** Cluster mode (not in this version): the instance the peer is on. */
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
