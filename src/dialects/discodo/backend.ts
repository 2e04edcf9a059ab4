import type { DestroyReason, VoiceClientState } from './voice.js';

/**
 * Where a media plane would attach. Muster tracks voice clients (who is in which
 * voice channel, on which voice server) but plays no audio; the default backend does
 * nothing. A backend that plays audio would open a Discord voice connection on
 * `connect`, move it on `update`, and close it on `disconnect`.
 *
 * Calls are made synchronously as the session changes; a backend that does I/O
 * should queue it and must not throw (errors are logged and otherwise ignored).
 */
export interface VoiceBackend {
  /** Both voice events arrived for a guild: a voice client exists (VC_CREATED was sent). */
  connect(vc: VoiceClientState, session: VoiceSessionRef): void;
  /** The channel, the Discord voice session or the voice server changed. */
  update(vc: VoiceClientState, session: VoiceSessionRef): void;
  /** The voice client is gone: the bot left, asked for it, or its session expired or the server stopped. */
  disconnect(vc: VoiceClientState, session: VoiceSessionRef, reason: DestroyReason): void;
}

/** Which bot session a voice client belongs to. */
export interface VoiceSessionRef {
  /** The session key: `user_id` or `user_id-shard_id`. */
  readonly key: string;
}

/** The default: no media plane. */
export const noopVoiceBackend: VoiceBackend = {
  connect: () => undefined,
  update: () => undefined,
  disconnect: () => undefined,
};
