import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, ApiError, forgetToken, saveToken, savedToken, subscribe, type Snapshot } from './api.js';
import { ClusterContext, ClusterStrip, clusterOf, instanceColumn, useCluster } from './cluster.js';
import { GameList } from './gamelist.js';
import { ShardsView } from './shards.js';
import { VirtualTable, type Column } from './table.js';
import type { Fleet, Peer, PeersBody, Shard, StatusBody } from './types.js';
import { BusView, ClusterioView, DiscodoView, Time, type BusGroup, type BusService, type Row } from './views.js';

/** Renders at most this often, whatever the feed sends (a few updates per second per view). */
const RENDER_EVERY_MS = 250;
/** Heartbeat-latency samples kept per CONTROL for its sparkline. */
const SPARK_SAMPLES = 60;

type ViewId = 'overview' | 'peers' | 'shards' | 'bus' | 'clusterio' | 'discodo' | 'gamelist';

interface ViewDef {
  readonly id: ViewId;
  readonly title: string;
  /** The dialect the view needs (hidden when it is not mounted). */
  readonly dialect?: string;
  readonly topics: readonly string[];
}

const VIEWS: readonly ViewDef[] = [
  { id: 'overview', title: 'Overview', topics: ['status'] },
  { id: 'peers', title: 'Peers', topics: ['status', 'peers'] },
  { id: 'shards', title: 'Shards', dialect: 'sharding', topics: ['status', 'sharding', 'sharding.shards', 'peers'] },
  { id: 'bus', title: 'Bus', dialect: 'bus', topics: ['status', 'bus.services', 'bus.groups', 'peers'] },
  { id: 'clusterio', title: 'Clusterio', dialect: 'clusterio', topics: ['status', 'clusterio.slaves', 'clusterio.instances'] },
  { id: 'discodo', title: 'Discodo', dialect: 'discodo', topics: ['status', 'discodo.sessions'] },
  { id: 'gamelist', title: 'Game list', dialect: 'gamelist', topics: ['status', 'gamelist.servers'] },
];

function Login(props: { onToken: (t: string) => void; error: string | null }): preact.JSX.Element {
  const [value, setValue] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(props.error);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api(value, 'GET', '/status');
      saveToken(value);
      props.onToken(value);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'That token was refused.' : `Could not reach the server: ${(err as Error).message}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <h1>Muster</h1>
      <form onSubmit={submit} aria-describedby="login-help">
        <label for="token">Admin token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <p id="login-help" class="muted">
          The token is kept in this tab's session storage only and sent as an Authorization header.
        </p>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}

function PeersTable(props: { peers: readonly Peer[]; label: string; onKick: (p: Peer) => void }): preact.JSX.Element {
  const cluster = useCluster();
  const columns: Array<Column<Peer>> = [
    { key: 'identity', title: 'Identity', cell: (p) => p.identity ?? <span class="muted">(not identified)</span> },
    { key: 'dialect', title: 'Dialect', cell: (p) => p.dialect, width: '7em' },
    { key: 'addr', title: 'Remote address', cell: (p) => p.remoteAddress },
    { key: 'since', title: 'Connected since', cell: (p) => <Time iso={p.connectedAt} /> },
    { key: 'lat', title: 'Last heartbeat latency', cell: (p) => (p.latencyMs === null ? <span class="muted">—</span> : `${p.latencyMs} ms`) },
    ...instanceColumn(cluster, props.peers),
    {
      key: 'kick',
      title: 'Action',
      width: '6em',
      cell: (p) => (
        <button type="button" class="danger small" onClick={() => props.onKick(p)} aria-label={`Kick ${p.identity ?? p.id}`}>
          Kick
        </button>
      ),
    },
  ];
  return <VirtualTable label={props.label} rows={props.peers} columns={columns} rowKey={(p) => p.id} empty="No peers connected." />;
}

function Overview(props: { status: StatusBody | undefined }): preact.JSX.Element {
  const s = props.status;
  if (!s) return <p>Loading…</p>;
  return (
    <section aria-labelledby="ov-h">
      <h2 id="ov-h">Overview</h2>
      <p>
        Muster {s.version}, up {Math.floor(s.uptimeSeconds / 60)} min, store: {s.store}.
      </p>
      <div class="cards">
        {Object.entries(s.dialects).map(([name, d]) => (
          <div class="card" key={name}>
            <h3>{name}</h3>
            <p class="big" aria-label={`${s.connections[name] ?? 0} connections`}>
              {s.connections[name] ?? 0}
            </p>
            <p class="muted">
              connections at <code>{String(d.path)}</code>
            </p>
            <dl>
              {Object.entries(d)
                .filter(([k, v]) => k !== 'path' && (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean'))
                .map(([k, v]) => (
                  <div key={k}>
                    <dt>{k}</dt>
                    <dd>{String(v)}</dd>
                  </div>
                ))}
            </dl>
          </div>
        ))}
      </div>
    </section>
  );
}

function App(): preact.JSX.Element {
  const [token, setToken] = useState<string | null>(savedToken());
  const [loginError, setLoginError] = useState<string | null>(null);
  const [view, setView] = useState<ViewId>(() => VIEWS.find((v) => v.id === location.hash.slice(1))?.id ?? 'overview');
  const [data, setData] = useState<Record<string, unknown>>({});
  const [live, setLive] = useState(false);
  const [notice, setNotice] = useState<{ text: string; error: boolean } | null>(null);
  const [peerDialect, setPeerDialect] = useState<string>('all');
  const spark = useRef(new Map<string, number[]>());
  const lastLatency = useRef(new Map<string, string>());

  const signOut = (why: string | null): void => {
    forgetToken();
    setToken(null);
    setData({});
    setLoginError(why);
  };

  const def = VIEWS.find((v) => v.id === view) ?? VIEWS[0]!;
  useEffect(() => {
    if (!token) return;
    location.hash = view;
    const pending = new Map<string, Snapshot>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = (): void => {
      timer = undefined;
      const batch = [...pending.values()];
      pending.clear();
      setData((d) => {
        const next = { ...d };
        for (const s of batch) next[s.topic] = s.body;
        return next;
      });
    };
    const stop = subscribe(token, def.topics, {
      snapshot: (s) => {
        if (s.topic === 'peers') recordLatency(s.body as PeersBody);
        pending.set(s.topic, s);
        timer ??= setTimeout(flush, RENDER_EVERY_MS);
      },
      status: setLive,
      unauthorized: () => signOut('The admin token is no longer accepted; sign in again.'),
      refused: () => setView('overview'),
    });
    return () => {
      stop();
      if (timer) clearTimeout(timer);
    };
  }, [token, view]);

  const recordLatency = (body: PeersBody): void => {
    for (const p of body.peers) {
      if (p.dialect !== 'sharding' || p.identity === null || p.latencyMs === null) continue;
      // One sample per answered heartbeat ping: a new lastSeen or a new value.
      const mark = `${p.id}/${p.lastSeen}`;
      if (lastLatency.current.get(p.identity) === mark) continue;
      lastLatency.current.set(p.identity, mark);
      const arr = spark.current.get(p.identity) ?? [];
      arr.push(p.latencyMs);
      if (arr.length > SPARK_SAMPLES) arr.shift();
      spark.current.set(p.identity, arr);
    }
  };

  const status = data.status as StatusBody | undefined;
  const cluster = useMemo(() => clusterOf(status), [status]);
  const mounted = (d?: string): boolean => d === undefined || !status || d in status.dialects;
  const peers = (data.peers as PeersBody | undefined)?.peers ?? [];
  const shownPeers = useMemo(() => (peerDialect === 'all' ? peers : peers.filter((p) => p.dialect === peerDialect)), [peers, peerDialect]);

  if (!token) return <Login onToken={setToken} error={loginError} />;

  const act = async (confirmText: string | null, method: string, path: string, body?: unknown, done?: string): Promise<void> => {
    if (confirmText !== null && !window.confirm(confirmText)) return;
    try {
      const out = await api(token, method, path, body);
      setNotice({ text: done ?? `Done: ${JSON.stringify(out)}`, error: false });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return signOut('The admin token is no longer accepted; sign in again.');
      setNotice({ text: `Failed: ${(err as Error).message}`, error: true });
    }
  };
  const kick = (p: Peer): void => void act(`Kick ${p.dialect} peer ${p.identity ?? p.id} (${p.remoteAddress})?`, 'DELETE', `/connections/${encodeURIComponent(p.id)}`, undefined, `Kicked ${p.identity ?? p.id}.`);

  return (
    <ClusterContext.Provider value={cluster}>
      <div class="shell">
        <header>
          <h1>Muster</h1>
          <span class={`live ${live ? 'on' : 'off'}`} role="status">
            {live ? '● live' : '○ reconnecting…'}
          </span>
          <button type="button" class="small" onClick={() => signOut(null)}>
            Sign out
          </button>
        </header>
        <nav aria-label="Views">
          <ul>
            {VIEWS.filter((v) => mounted(v.dialect)).map((v) => (
              <li key={v.id}>
                <a href={`#${v.id}`} aria-current={v.id === view ? 'page' : undefined} onClick={(e) => (e.preventDefault(), setView(v.id))}>
                  {v.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <ClusterStrip cluster={cluster} />
        <div aria-live="polite" class="notice-area">
          {notice && (
            <p class={notice.error ? 'error' : 'ok'}>
              {notice.text}{' '}
              <button type="button" class="small" onClick={() => setNotice(null)} aria-label="Dismiss">
                ×
              </button>
            </p>
          )}
        </div>
        <main>
          {view === 'overview' && <Overview status={status} />}
          {view === 'peers' && (
            <section aria-labelledby="peers-h">
              <h2 id="peers-h">Peers</h2>
              <div class="tabs" role="group" aria-label="Dialect">
                {['all', ...Object.keys(status?.connections ?? {})].map((d) => (
                  <button type="button" key={d} aria-pressed={peerDialect === d} onClick={() => setPeerDialect(d)}>
                    {d} ({d === 'all' ? peers.length : (status?.connections[d] ?? 0)})
                  </button>
                ))}
              </div>
              <PeersTable peers={shownPeers} label={`Peers (${peerDialect})`} onKick={kick} />
            </section>
          )}
          {view === 'shards' && (
            <ShardsView
              fleet={data.sharding as Fleet | undefined}
              shards={data['sharding.shards'] as Shard[] | undefined}
              peers={peers.filter((p) => p.dialect === 'sharding')}
              spark={spark.current}
              act={act}
              onKick={kick}
            />
          )}
          {view === 'bus' && <BusView services={data['bus.services'] as BusService[] | undefined} groups={data['bus.groups'] as BusGroup[] | undefined} peers={peers} onKick={kick} />}
          {view === 'clusterio' && <ClusterioView slaves={data['clusterio.slaves'] as Row[] | undefined} instances={data['clusterio.instances'] as Row[] | undefined} />}
          {view === 'discodo' && <DiscodoView sessions={data['discodo.sessions'] as Row[] | undefined} />}
          {view === 'gamelist' && <GameList servers={data['gamelist.servers'] as Row[] | undefined} />}
        </main>
      </div>
    </ClusterContext.Provider>
  );
}

render(<App />, document.getElementById('app')!);
