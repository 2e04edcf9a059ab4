/**
 * The cluster chaos runner's gamelist invariant: no acknowledged gamelist registration
 * lost. Before each step a game server registers on a random live instance (and keeps
 * refreshing its entry, as game servers do); after each step every one whose socket is
 * still open must be on every live instance's public list. A game server whose instance
 * was killed lost its socket, and its entry with it: that is the contract, not a loss.
 */
import WebSocket from 'ws';
import type { MusterCluster, Instance } from '../support/muster-cluster.js';
import { pollUntil } from '../support/muster-cluster.js';
import { SECRETS } from './server.js';

interface GameServer {
  readonly name: string;
  readonly id: string;
  readonly inst: string;
  readonly ws: WebSocket;
  open: boolean;
}

/** How often a game server refreshes its entry (well inside the default registrationTtl). */
const REFRESH_MS = 5000;

export class GamelistChaos {
  readonly servers: GameServer[] = [];
  #seq = 0;

  constructor(
    readonly c: MusterCluster,
    readonly violation: (what: string) => void,
  ) {}

  /** Acknowledged registrations whose socket is still open. */
  get held(): number {
    return this.servers.filter((g) => g.open).length;
  }

  async register(rand: () => number): Promise<void> {
    const live = this.c.live;
    const inst = live[Math.floor(rand() * live.length)] as Instance;
    const name = `chaos-gs-${++this.#seq}`;
    const ws = new WebSocket(`${inst.server?.ws}/v2/server/ws`);
    ws.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const info = { name, desc: 'chaos', port: 30000 + this.#seq, map: 'mp_chaos', playlist: 'ps', curPlayers: 0, maxPlayers: 8, gameState: 0 };
    let msgId = 0;
    const reg = (): void => ws.send(JSON.stringify({ metadata: { type: 1, id: ++msgId }, info, regToken: SECRETS.gamelist }));
    const answer = new Promise<{ success: boolean; server_id?: string }>((resolve) => ws.once('message', (raw) => resolve(JSON.parse(String(raw)) as never)));
    reg();
    const r = await answer;
    if (!r.success || r.server_id === undefined) {
      ws.terminate();
      return;
    }
    const g: GameServer = { name, id: r.server_id, inst: inst.id, ws, open: true };
    this.servers.push(g);
    const refresh = setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) reg();
    }, REFRESH_MS);
    refresh.unref();
    ws.on('close', () => {
      g.open = false;
      clearInterval(refresh);
    });
  }

  /** Every open acknowledged registration is on every live instance's list (give or take the snapshot and a resync). */
  async check(step: string): Promise<void> {
    const t = this.c.timing;
    const missing = new Map<string, string[]>();
    const ok = await pollUntil(async () => {
      missing.clear();
      const want = this.servers.filter((g) => g.open);
      for (const inst of this.c.live) {
        const listed = await this.#ids(inst);
        const lack = want.filter((g) => !listed?.has(g.id)).map((g) => `${g.name}@${g.inst}`);
        if (lack.length > 0) missing.set(inst.id, lack);
      }
      return missing.size === 0;
    }, 2 * t.presenceTtl + 3000);
    if (!ok) this.violation(`${step}: acknowledged gamelist registrations missing: ${[...missing].map(([i, l]) => `${i} lacks ${l.join(',')}`).join('; ')}`);
  }

  async #ids(inst: Instance): Promise<Set<string> | undefined> {
    try {
      const r = await fetch(`${inst.server?.base}/v2/servers?limit=1000`, { signal: AbortSignal.timeout(2000) });
      if (r.status !== 200) return undefined;
      const body = (await r.json()) as { servers: Array<{ server_id: string }> };
      return new Set(body.servers.map((s) => s.server_id));
    } catch {
      return undefined;
    }
  }

  close(): void {
    for (const g of this.servers) g.ws.terminate();
  }
}
