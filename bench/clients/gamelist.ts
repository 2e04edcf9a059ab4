/**
 * P6 load generator: game servers, each a real `GameServerClient`
 * (src/client/gamelist.ts) on its own socket, registering with the gamelist dialect.
 *
 * register {url, token, n, offset, concurrency}  connects and registers n more servers
 *                                                (at most `concurrency` in flight);
 *                                                answers with how many are listed
 * close                                          closes them all (unlisted at once)
 */
import { GameServerClient } from '../../src/client/gamelist.js';
import { emit, serve } from '../lib/ipc.js';

const MAPS = ['mp_glitch', 'mp_rise', 'mp_forwardbase_kodai', 'mp_angel_city', 'mp_colony02', 'mp_eden', 'mp_black_water_canal', 'mp_thaw'];
const PLAYLISTS = ['tdm', 'ctf', 'ps', 'aitdm', 'lts', 'ffa'];

const clients: GameServerClient[] = [];

/** A deterministic, varied server: names, maps, player counts and passwords differ. */
function info(i: number): ConstructorParameters<typeof GameServerClient>[0]['info'] {
  const maxPlayers = [8, 12, 16, 24][i % 4] as number;
  return {
    name: `Bench server ${i} [${['EU', 'NA', 'ASIA', 'SA'][i % 4]}]`,
    desc: `Load-test server number ${i}; friendly, no cheats, custom playlist rotation`,
    port: 20_000 + (i % 40_000),
    map: MAPS[i % MAPS.length] as string,
    playlist: PLAYLISTS[(i >> 3) % PLAYLISTS.length] as string,
    curPlayers: (i * 7919) % (maxPlayers + 1),
    maxPlayers,
    ...(i % 10 === 0 ? { password: 'secret' } : {}),
    gameState: i % 3,
  };
}

serve({
  register: async (p: { url: string; token: string; n: number; offset: number; concurrency: number }) => {
    let next = 0;
    let failed = 0;
    const worker = async (): Promise<void> => {
      while (next < p.n) {
        const i = p.offset + next++;
        const gs = new GameServerClient({
          url: p.url,
          regToken: p.token,
          info: info(i),
          // No refresh, ping or reconnect traffic during the measurement: the list must not change.
          refreshInterval: 600_000,
          reconnect: false,
          responseTimeout: 20_000,
        });
        gs.on('error', () => undefined);
        try {
          await gs.connect();
          clients.push(gs);
        } catch (err) {
          if (failed++ < 5) console.error(`server ${i}: ${err instanceof Error ? err.message : String(err)}`);
          await gs.close().catch(() => undefined);
        }
      }
    };
    await Promise.all(Array.from({ length: p.concurrency }, worker));
    return { listed: clients.filter((c) => c.listed).length, failed };
  },
  close: async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    return true;
  },
});
emit('ready', {});
