/**
 * The messages between the sharding edges (one per instance: the CONTROL sockets) and
 * the leader (one in the cluster: the orchestrator), over Broker topics. In one process
 * they go through the LocalBroker, synchronously; in cluster mode through Redis.
 *
 * - `sharding:leader`: edges → the leader (socket events, the re-announce of the sockets
 *   an edge holds when a new leader says hello, admin questions). Only the leader subscribes.
 * - `sharding:edge:<instance>`: the leader → the edge holding a socket (frames, closes,
 *   the CONTROL's name for the admin list, debug phase lines, answers to admin questions
 *   asked there). Every order carries the
 *   leader's fencing token; an edge drops orders older than the newest token it has seen.
 * - `sharding:edges`: the leader → every edge: hello, sent once a new term has loaded.
 */
import type { AdminAction } from './machine.js';
import type { AdoptedControl } from './world/types.js';

/** An admin view a follower asks the leader for. */
export type ViewQuery = { readonly view: 'fleet' } | { readonly view: 'shards' } | { readonly view: 'control'; readonly name: string };
/** An admin route's question to the leader: a view, or an action (its body already checked at the HTTP edge). */
export type AdminQuery = ViewQuery | { readonly action: AdminAction };

export const LEADER_TOPIC = 'sharding:leader';
export const EDGES_TOPIC = 'sharding:edges';
export const edgeTopic = (instance: string): string => `sharding:edge:${instance}`;

/** What an edge knows of one of its sockets when a new leader asks. */
export interface AnnouncedSocket {
  readonly conn: string;
  readonly sessionId: string;
  /** The INITIALISE went out (a leader has seen the socket open). */
  readonly initialised: boolean;
  /** Set once a leader accepted its IDENTIFY (the edge saw the CONTROL's name come back). */
  readonly control?: AnnouncedControl;
  /**
   * Frames the CONTROL sent that no leader may have acted on, replayed in order after the
   * socket is taken over: an IDENTIFY not yet answered, the last HEARTBEAT if no ACK
   * followed it (so the CONTROL's fence clock restarts), the IDENTIFY_REQUESTs not yet
   * granted (the new leader's queue starts empty), a FATAL whose halt has not closed the
   * socket yet.
   */
  readonly replay?: readonly string[];
}

/** What a re-announced CONTROL is and what it was told to serve: the world's `AdoptedControl`. */
export type AnnouncedControl = AdoptedControl;

export type ToLeader =
  | { readonly k: 'open'; readonly i: string; readonly c: string; readonly s: string }
  | { readonly k: 'frame'; readonly i: string; readonly c: string; readonly f: string }
  | { readonly k: 'bad'; readonly i: string; readonly c: string; readonly d: string }
  | { readonly k: 'closed'; readonly i: string; readonly c: string }
  | { readonly k: 'announce'; readonly i: string; readonly t: number; readonly sockets: readonly AnnouncedSocket[] }
  /** An admin route served by another instance (ask.ts); answered on that instance's edge topic. */
  | { readonly k: 'ask'; readonly i: string; readonly id: string; readonly q: AdminQuery };

export type ToEdge =
  | { readonly k: 'send'; readonly t: number; readonly c: string; readonly f: string }
  | { readonly k: 'close'; readonly t: number; readonly c: string; readonly code: number; readonly reason: string }
  | { readonly k: 'identity'; readonly t: number; readonly c: string; readonly name: string }
  | { readonly k: 'phase'; readonly t: number; readonly c: string; readonly from: string; readonly to: string }
  | { readonly k: 'hello'; readonly t: number }
  | { readonly k: 'answer'; readonly t: number; readonly id: string; readonly status?: number; readonly body?: unknown; readonly headers?: Readonly<Record<string, string>> };

export const encodeLink = (m: ToLeader | ToEdge): Buffer => Buffer.from(JSON.stringify(m), 'utf8');

/** Parses a link message; `undefined` for anything that is not one (never thrown). */
export function decodeLink<T extends ToLeader | ToEdge>(buf: Buffer): T | undefined {
  try {
    const v: unknown = JSON.parse(buf.toString('utf8'));
    return typeof v === 'object' && v !== null && typeof (v as { k?: unknown }).k === 'string' ? (v as T) : undefined;
  } catch {
    return undefined;
  }
}
