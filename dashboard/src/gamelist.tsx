import { useMemo, useState } from 'preact/hooks';
import { instanceColumn, useCluster } from './cluster.js';
import { VirtualTable } from './table.js';

type Row = Record<string, unknown>;

/** The public list's filters (map, playlist, gameState, hasPassword, notFull, notEmpty, q), applied to the admin list. */
interface Filters {
  q: string;
  map: string;
  playlist: string;
  gameState: string;
  hasPassword: '' | 'true' | 'false';
  notFull: boolean;
  notEmpty: boolean;
}

const NONE: Filters = { q: '', map: '', playlist: '', gameState: '', hasPassword: '', notFull: false, notEmpty: false };

export function GameList(props: { servers: Row[] | undefined }): preact.JSX.Element {
  const cluster = useCluster();
  const servers = props.servers ?? [];
  const [f, setF] = useState<Filters>(NONE);
  const set = <K extends keyof Filters>(k: K, v: Filters[K]): void => setF((old) => ({ ...old, [k]: v }));
  const maps = useMemo(() => [...new Set(servers.map((s) => String(s.map)))].sort(), [servers]);
  const playlists = useMemo(() => [...new Set(servers.map((s) => String(s.playlist)))].sort(), [servers]);
  const rows = useMemo(() => {
    const q = f.q.toLowerCase();
    return servers
      .filter(
        (s) =>
          (f.map === '' || s.map === f.map) &&
          (f.playlist === '' || s.playlist === f.playlist) &&
          (f.gameState === '' || String(s.gameState) === f.gameState) &&
          (f.hasPassword === '' || String(s.hasPassword) === f.hasPassword) &&
          (!f.notFull || Number(s.curPlayers) < Number(s.maxPlayers)) &&
          (!f.notEmpty || Number(s.curPlayers) > 0) &&
          (q === '' || `${String(s.name)}\n${String(s.desc)}`.toLowerCase().includes(q)),
      )
      .sort((a, b) => Number(b.curPlayers) - Number(a.curPlayers) || String(a.name).localeCompare(String(b.name)));
  }, [servers, f]);
  return (
    <section aria-labelledby="gl-h">
      <h2 id="gl-h">
        Game list: {rows.length} of {servers.length} servers
      </h2>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filters">
        <label>
          Name or description <input type="search" value={f.q} onInput={(e) => set('q', (e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Map{' '}
          <select value={f.map} onChange={(e) => set('map', (e.target as HTMLSelectElement).value)}>
            <option value="">any</option>
            {maps.map((m) => (
              <option key={m}>{m}</option>
            ))}
          </select>
        </label>
        <label>
          Playlist{' '}
          <select value={f.playlist} onChange={(e) => set('playlist', (e.target as HTMLSelectElement).value)}>
            <option value="">any</option>
            {playlists.map((m) => (
              <option key={m}>{m}</option>
            ))}
          </select>
        </label>
        <label>
          Game state <input type="number" inputMode="numeric" value={f.gameState} onInput={(e) => set('gameState', (e.target as HTMLInputElement).value)} style={{ width: '5em' }} />
        </label>
        <label>
          Password{' '}
          <select value={f.hasPassword} onChange={(e) => set('hasPassword', (e.target as HTMLSelectElement).value as Filters['hasPassword'])}>
            <option value="">any</option>
            <option value="true">with</option>
            <option value="false">without</option>
          </select>
        </label>
        <label>
          <input type="checkbox" checked={f.notFull} onChange={(e) => set('notFull', (e.target as HTMLInputElement).checked)} /> not full
        </label>
        <label>
          <input type="checkbox" checked={f.notEmpty} onChange={(e) => set('notEmpty', (e.target as HTMLInputElement).checked)} /> not empty
        </label>
        <button type="button" class="small" onClick={() => setF(NONE)}>
          Clear
        </button>
      </form>
      <VirtualTable
        label="Game servers"
        rows={rows}
        rowKey={(s) => String(s.server_id)}
        height={520}
        empty="No server matches."
        columns={[
          { key: 'name', title: 'Name', cell: (s) => String(s.name) },
          { key: 'map', title: 'Map', cell: (s) => String(s.map) },
          { key: 'pl', title: 'Playlist', cell: (s) => String(s.playlist) },
          { key: 'p', title: 'Players', cell: (s) => `${String(s.curPlayers)} / ${String(s.maxPlayers)}` },
          { key: 'pw', title: 'Password', cell: (s) => (s.hasPassword ? '🔒 yes' : 'no') },
          { key: 'addr', title: 'Address', cell: (s) => `${String(s.address)}:${String(s.port)}` },
          { key: 'id', title: 'Id', cell: (s) => <code>{String(s.server_id)}</code> },
          ...instanceColumn(cluster, servers),
        ]}
      />
    </section>
  );
}
