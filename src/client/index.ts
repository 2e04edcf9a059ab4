/** `muster/client`: typed clients for Muster's dialects. No server code is imported here. */
export { BusClient, BusRequestError, type BusClientOptions, type BusDelivery, type CollectResult } from './bus.js';
export { GameServerClient, RegistrationFailedError, JOIN_CALLBACK_FAILED, type GameServerClientOptions, type GameServerInfo, type JoinRequest, type JoinDecision } from './gamelist.js';
export { DiscodoClient, DiscodoTracebackError, type DiscodoClientOptions, type VoiceClientInfo } from './discodo.js';
export { ShardingControl, IdentifySlotError, MusterIdentifyThrottler, shardIdsOf, type ShardingControlOptions, type ControlClock, type StartContext, type StopContext, type IdentifySlotSource } from './sharding.js';
export { MusterShardManager, SHARD_EVENTS, type MusterShardManagerOptions, type DiscordManagerOptions, type DiscordWsModule, type DiscordShardLike } from './discordjs-manager.js';
export { fenceTiming, type FenceTiming } from './sharding.js';
export { backoffDelay, type BackoffOptions } from './backoff.js';
export * as busProtocol from '../protocols/bus/messages.js';
export { ClusterioLink, ClusterioLinkError, type ClusterioLinkOptions, type ClusterioLinkErrorCode, type LinkTimers } from './clusterio.js';
