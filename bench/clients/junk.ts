/**
 * P10's attacker: one IP sending junk to every dialect before authenticating, from
 * `workers` concurrent loops, each opening a socket, sending its junk and waiting for
 * the server to close it (or refuse the upgrade), then the next kind:
 *
 *   large       a 1 MiB frame of valid JSON, the dialect's first message with a long string
 *               (bus, clusterio, gamelist, and discodo without the password)
 *   deep        JSON nested 7,000 levels (14 KB: under every size cap)
 *   at-cap      a frame just under the pre-auth cap (16,000 bytes) with a wrong token or
 *               secret: gamelist five wrong-token REGISTERs on one socket, bus IDENTIFY,
 *               clusterio register_control with a junk JWT
 *   wrong-key   sharding and discodo with a wrong Authorization
 *
 * start {base, workers}  starts the loops (base: ws://host:port)
 * stop                   stops them; answers {attempts, outcomes: {"kind dialect → result": n}}
 */
import WebSocket from 'ws';
import { emit, serve } from '../lib/ipc.js';

const MIB = 1024 * 1024;
const DEEP = '['.repeat(7000) + ']'.repeat(7000);
const AT_CAP = 16_000;

function pad(make: (p: string) => string, bytes: number): string {
  const base = Buffer.byteLength(make(''));
  return make('x'.repeat(Math.max(0, bytes - base)));
}

const register = (p: string): string =>
  `{"metadata":{"type":1,"id":9223372036854775807},"info":{"name":"junk","desc":"${p}","port":1,"map":"m","playlist":"p","curPlayers":0,"maxPlayers":8,"gameState":0},"regToken":"wrong"}`;

interface Attack {
  name: string;
  path: string;
  headers?: Record<string, string>;
  frames: string[];
}

const ATTACKS: Attack[] = [
  { name: 'at-cap gamelist (5 wrong tokens)', path: '/v2/server/ws', frames: Array.from({ length: 5 }, () => pad(register, AT_CAP)) },
  { name: 'large bus', path: '/bus', frames: [pad((p) => `{"op":1,"data":{"token":"wrong","name":"${p}"}}`, MIB)] },
  { name: 'deep clusterio', path: '/api/socket', frames: [`{"seq":1,"type":"register_control","data":{"x":${DEEP}}}`] },
  { name: 'wrong-key sharding', path: '/sharding', headers: { authorization: 'wrong' }, frames: [] },
  { name: 'at-cap bus (wrong token)', path: '/bus', frames: [pad((p) => `{"op":1,"data":{"token":"wrong","name":"${p}"}}`, AT_CAP)] },
  { name: 'large gamelist', path: '/v2/server/ws', frames: [pad(register, MIB)] },
  { name: 'deep bus', path: '/bus', frames: [`{"op":1,"data":{"token":"x","d":${DEEP}}}`] },
  {
    name: 'at-cap clusterio (junk JWT)',
    path: '/api/socket',
    frames: [pad((p) => `{"seq":1,"type":"register_control","data":{"token":"eyJhbGciOiJIUzI1NiJ9.e30.${p}","agent":"a","version":"v"}}`, AT_CAP)],
  },
  { name: 'wrong-key discodo + large', path: '/ws', headers: { authorization: 'wrong' }, frames: [pad((p) => `{"op":"IDENTIFY","d":{"user_id":870000000000000123,"x":"${p}"}}`, MIB)] },
  { name: 'deep gamelist', path: '/v2/server/ws', frames: [register(DEEP).replace(`"desc":"${DEEP}"`, `"desc":"d","x":${DEEP}`)] },
  { name: 'large clusterio', path: '/api/socket', frames: [pad((p) => `{"seq":1,"type":"register_control","data":{"token":"t","agent":"${p}","version":"v"}}`, MIB)] },
];

let running = false;
let attempts = 0;
const outcomes = new Map<string, number>();
let loops: Promise<void>[] = [];

function count(key: string): void {
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}

function attack(base: string, a: Attack): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${base}${a.path}`, { headers: a.headers ?? {}, perMessageDeflate: false });
    const guard = setTimeout(() => {
      ws.terminate();
      resolve('no close within 5 s');
    }, 5000);
    const done = (r: string): void => {
      clearTimeout(guard);
      resolve(r);
    };
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      ws.terminate();
      done(`HTTP ${res.statusCode}`);
    });
    ws.on('error', () => undefined);
    ws.on('open', () => {
      for (const f of a.frames) ws.send(f);
    });
    ws.on('close', (code) => done(`close ${code}`));
  });
}

async function loop(base: string, offset: number): Promise<void> {
  for (let i = offset; running; i++) {
    const a = ATTACKS[i % ATTACKS.length] as Attack;
    attempts++;
    count(`${a.name} → ${await attack(base, a)}`);
  }
}

serve({
  start: (p: { base: string; workers: number }) => {
    running = true;
    attempts = 0;
    outcomes.clear();
    loops = Array.from({ length: p.workers }, (_, i) => loop(p.base, i));
    return true;
  },
  stop: async () => {
    running = false;
    await Promise.all(loops);
    return { attempts, outcomes: Object.fromEntries([...outcomes].sort(([a], [b]) => a.localeCompare(b))) };
  },
});
emit('ready', {});
