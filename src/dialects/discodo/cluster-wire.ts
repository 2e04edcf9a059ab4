import type { LinkCodec } from '../../cluster/link.js';
import { isObj, LosslessNumber, readSnowflake, sessionKey, type Snowflake } from '../../protocols/discodo/messages.js';
import type { BotState, PendingVoice, VoiceClientState, VoiceServer } from './voice.js';

/**
 * The discodo dialect's messages between instances (cluster mode), as JSON on Broker
 * topics. A bot session moves with its voice clients and half voice clients, ids in the
 * form they arrived in (a JSON number stays a number: `{"n": "<digits>"}`; a string stays a
 * string). Only Muster instances publish on these topics; a message of the wrong shape is
 * still dropped rather than trusted.
 */

/** Claims go to every instance. */
export const CLUSTER_TOPIC = 'discodo:cluster';

export type ClusterMsg =
  /**
   * A socket here identified as session `key`, which this instance does not hold: whoever
   * holds it hands it over. `id` is the claim's random id, chosen by the claiming instance
   * (answers name it); `at` orders concurrent claims for one key (the later one wins).
   */
  | { readonly t: 'claim'; readonly id: string; readonly key: string; readonly at: number }
  /** The answer to claim `id` from an instance that holds nothing of the session. */
  | { readonly t: 'none'; readonly id: string }
  /** The answer to claim `id`: the session, handed over (`attached`: a socket held it there). */
  | { readonly t: 'handoff'; readonly id: string; readonly key: string; readonly attached: boolean; readonly bot: BotState };

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const idOut = (s: Snowflake): Json => (typeof s === 'string' ? s : { n: s.value });

function idIn(v: unknown): Snowflake | undefined {
  if (typeof v === 'string') return readSnowflake(v);
  if (!obj(v) || typeof v.n !== 'string') return undefined;
  try {
    return readSnowflake(new LosslessNumber(v.n));
  } catch {
    return undefined;
  }
}

const obj = isObj;

const strOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';

function serverOut(s: VoiceServer): Json {
  return { token: s.token, endpoint: s.endpoint };
}

function serverIn(v: unknown): VoiceServer | undefined {
  if (!obj(v) || !strOrNull(v.token) || !strOrNull(v.endpoint)) return undefined;
  return { token: v.token, endpoint: v.endpoint };
}

export function botOut(b: BotState): Json {
  return {
    userId: idOut(b.userId),
    shardId: b.shardId === null ? null : idOut(b.shardId),
    vcs: [...b.voiceClients.values()].map((vc) => ({
      id: vc.id,
      guildId: idOut(vc.guildId),
      channelId: idOut(vc.channelId),
      sessionId: vc.sessionId,
      server: serverOut(vc.server),
      createdAt: vc.createdAt,
    })),
    pending: [...b.pending.values()].map((p) => ({
      guildId: idOut(p.guildId),
      channelId: p.channelId === undefined ? null : idOut(p.channelId),
      sessionId: p.sessionId,
      server: p.server === undefined ? null : serverOut(p.server),
    })),
  };
}

/** A handed-over session, checked: every id readable, and the ids make `key`. */
export function botIn(v: unknown, key: string): BotState | undefined {
  if (!obj(v) || !Array.isArray(v.vcs) || !Array.isArray(v.pending)) return undefined;
  const userId = idIn(v.userId);
  const shardId = v.shardId === null ? null : idIn(v.shardId);
  if (userId === undefined || shardId === undefined || sessionKey(userId, shardId) !== key) return undefined;
  const voiceClients = new Map<string, VoiceClientState>();
  for (const x of v.vcs) {
    if (!obj(x) || typeof x.id !== 'string' || !strOrNull(x.sessionId) || typeof x.createdAt !== 'number') return undefined;
    const guildId = idIn(x.guildId);
    const channelId = idIn(x.channelId);
    const server = serverIn(x.server);
    if (guildId === undefined || channelId === undefined || server === undefined) return undefined;
    voiceClients.set(keyOf(guildId), { id: x.id, guildId, channelId, sessionId: x.sessionId, server, createdAt: x.createdAt });
  }
  const pending = new Map<string, PendingVoice>();
  for (const x of v.pending) {
    if (!obj(x) || !strOrNull(x.sessionId)) return undefined;
    const guildId = idIn(x.guildId);
    const channelId = x.channelId === null ? undefined : idIn(x.channelId);
    const server = x.server === null ? undefined : serverIn(x.server);
    if (guildId === undefined || (x.channelId !== null && channelId === undefined) || (x.server !== null && server === undefined)) return undefined;
    pending.set(keyOf(guildId), { guildId, channelId, sessionId: x.sessionId, server });
  }
  return { userId, shardId, voiceClients, pending };
}

const keyOf = (s: Snowflake): string => (typeof s === 'string' ? s : s.value);

export function encodeClusterMsg(from: string, msg: ClusterMsg): Buffer {
  const body = msg.t === 'handoff' ? { f: from, ...msg, bot: botOut(msg.bot) } : { f: from, ...msg };
  return Buffer.from(JSON.stringify(body));
}

export function decodeClusterMsg(buf: Buffer): { from: string; msg: ClusterMsg } | undefined {
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!obj(v) || typeof v.f !== 'string' || typeof v.id !== 'string') return undefined;
  const from = v.f;
  switch (v.t) {
    case 'claim':
      if (typeof v.key !== 'string' || typeof v.at !== 'number') return undefined;
      return { from, msg: { t: 'claim', id: v.id, key: v.key, at: v.at } };
    case 'none':
      return { from, msg: { t: 'none', id: v.id } };
    case 'handoff': {
      if (typeof v.key !== 'string' || typeof v.attached !== 'boolean') return undefined;
      const bot = botIn(v.bot, v.key);
      return bot ? { from, msg: { t: 'handoff', id: v.id, key: v.key, attached: v.attached, bot } } : undefined;
    }
    default:
      return undefined;
  }
}

/** The link to this dialect on the other instances (`ClusterLink`: the topic for all of them, `<topic>:<id>` for one). */
export const LINK: LinkCodec<ClusterMsg> = { topic: CLUSTER_TOPIC, encode: encodeClusterMsg, decode: decodeClusterMsg };
