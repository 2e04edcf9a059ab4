/** `muster/client`: typed clients for Muster's dialects. No server code is imported here. */
export { BusClient, BusRequestError, type BusClientOptions, type BusDelivery, type CollectResult } from './bus.js';
export { backoffDelay, type BackoffOptions } from './backoff.js';
export * as busProtocol from '../protocols/bus/messages.js';
