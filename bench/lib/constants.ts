/** Values shared by the runner, the servers and the load generators. */

/** The bus token every Muster server in the bench is configured with. */
export const BUS_TOKEN = 'bench-bus-token-0123456789abcdef';

/** Messages in P1 and P2 are padded to about this many bytes on the wire. */
export const MESSAGE_BYTES = 150;

/** The implementations a scenario can compare. */
export type Impl = 'muster' | 'ws' | 'sio' | 'nats' | 'static';

export const IMPL_LABEL: Record<Impl, string> = {
  muster: 'Muster',
  ws: 'raw ws relay',
  sio: 'Socket.IO 4',
  nats: 'nats-server (WebSocket)',
  static: 'static JSON (fastify)',
};

/** Pads `make(pad)` so that it serializes to about `bytes` bytes. */
export function padTo(bytes: number, make: (pad: string) => string): string {
  const base = Buffer.byteLength(make(''));
  return 'x'.repeat(Math.max(0, bytes - base));
}
