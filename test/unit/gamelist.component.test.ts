import type { IncomingMessage } from 'node:http';
import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LocalBroker } from '../../src/cluster/broker.js';
import { ManualClock } from '../../src/core/clock.js';
import { Connection } from '../../src/core/connection.js';
import type { DialectContext, HttpReply, HttpRequest } from '../../src/core/dialect.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { GAMELIST_MAX_BUFFERED_BYTES, GamelistDialect } from '../../src/dialects/gamelist/dialect.js';
import { MemoryStore } from '../../src/store/memory.js';
import { FakeSocket } from '../support/fake-socket.js';

/**
 * The gamelist dialect on the core runtime over fake sockets: joins are calls the world
 * answers in a later step, over real Connections and a manual clock.
 */

const info = { name: 'n', desc: 'd', port: 37015, map: 'm', playlist: 'p', curPlayers: 0, maxPlayers: 8, gameState: 0 };

function setup() {
  const clock = new ManualClock(1_000_000);
  const scheduler = new Scheduler(clock, (e) => {
    throw e;
  });
  const ctx: DialectContext = { scheduler, store: new MemoryStore(), broker: new LocalBroker(), logger: pino({ level: 'silent' }), registry: new Registry() };
  const dialect = new GamelistDialect(
    {
      path: '/v2/server/ws',
      regTokens: ['tok'],
      registrationTtl: 30_000,
      pingInterval: 10_000,
      pongTimeout: 5_000,
      joinTimeout: 3_000,
      maxServers: 10,
      maxServersPerIp: 10,
      maxFailedRegistrations: 3,
      publicRatePerIpPerMinute: 1000,
    },
    ctx,
    { secretEquals: (a, b) => a === b },
  );
  /** Opens a socket and lists it; returns the socket and its server id. */
  const listed = (id: string): { sock: FakeSocket; conn: Connection; serverId: string; frame: (o: unknown) => void } => {
    const sock = new FakeSocket();
    const conn = new Connection(sock, { id, dialect: 'gamelist', remoteAddress: '10.0.0.1', scheduler, maxBufferedBytes: GAMELIST_MAX_BUFFERED_BYTES });
    const h = dialect.accept(conn, {} as IncomingMessage);
    const frame = (o: unknown): void => h.onMessage(Buffer.from(JSON.stringify(o)), false);
    frame({ metadata: { type: 1, id: 1 }, info: { ...info, port: info.port + Number(id.slice(1)) }, regToken: 'tok' });
    const serverId = (sock.json()[0] as { server_id: string }).server_id;
    return { sock, conn, serverId, frame };
  };
  const join = (serverId: string): Promise<HttpReply> => {
    const r = dialect.routes().find((x) => x.url === '/v2/servers/:server_id/join');
    if (!r) throw new Error('no join route');
    const req: HttpRequest = { params: { server_id: serverId }, query: {}, body: { sessionToken: 's', username: 'u' }, ip: '127.0.0.1', headers: {} };
    return Promise.resolve(r.handler(req));
  };
  return { clock, scheduler, dialect, listed, join };
}

describe('gamelist dialect on the runtime, over fake sockets', () => {
  it("answers a join with the game server's answer, and 504 when none comes within joinTimeout", async () => {
    const { clock, dialect, listed, join } = setup();
    const gs = listed('c1');
    const p = join(gs.serverId);
    const sent = gs.sock.json()[1] as { metadata: { type: number; id: number }; conv: number };
    expect(sent.metadata.type).toBe(2);
    gs.frame({ metadata: { type: -2, id: sent.metadata.id }, success: true });
    expect(await p).toEqual({ status: 200, body: { success: true, conv: sent.conv } });
    const late = join(gs.serverId);
    clock.advance(3_000);
    expect(await late).toMatchObject({ status: 504, body: { success: false, error: { type: 'TIMEOUT' } } });
    expect(dialect.summary().pendingJoins).toBe(0);
  });

  it('answers 502 when the join frame cuts a slow game server, leaving no join deadline behind', async () => {
    const { scheduler, dialect, listed, join } = setup();
    const gs = listed('c1');
    gs.sock.bufferedAmount = GAMELIST_MAX_BUFFERED_BYTES + 1;
    const reply = await join(gs.serverId);
    expect(reply).toMatchObject({ status: 502, body: { success: false, error: { type: 'SERVER_GONE' } } });
    expect(typeof (reply.body as { conv?: unknown }).conv).toBe('number');
    expect(gs.sock.closed).toEqual({ code: 1008, reason: 'slow consumer' });
    expect(dialect.summary()).toMatchObject({ servers: 0, pendingJoins: 0 });
    // Its ping and TTL timers went with it and no join deadline is left armed: what is
    // left is the kept server id's end and the close's drain deadline.
    expect(scheduler.size).toBe(2);
    await dialect.stop();
  });

  it('answers a waiting join with 503 at stop', async () => {
    const { dialect, listed, join } = setup();
    const gs = listed('c1');
    const p = join(gs.serverId);
    await dialect.stop();
    expect(await p).toMatchObject({ status: 503, body: { success: false, error: { type: 'SHUTTING_DOWN' } } });
  });
});
