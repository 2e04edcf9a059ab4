import { instanceColumn, useCluster } from './cluster.js';
import { VirtualTable, type Column } from './table.js';
import type { Peer } from './types.js';

// The Bus, Clusterio and Discodo views, and the relative time they share with the others.

function since(iso: string | null | undefined): string {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
}

export function Time(props: { iso: string | null | undefined }): preact.JSX.Element {
  return props.iso ? <time dateTime={props.iso} title={props.iso}>{since(props.iso)}</time> : <span>—</span>;
}

export type Row = Record<string, unknown>;
export interface BusService {
  id: string;
  name: string | null;
  groups: string[];
  remoteAddress: string;
  connectedAt: string;
  lastSeen: string;
  /** Cluster mode: the instance the service is connected to. */
  instance?: string;
}
export interface BusGroup {
  name: string;
  members: string[];
  /** Cluster mode: one row per group and instance. */
  instance?: string;
}

export function BusView(props: { services: BusService[] | undefined; groups: BusGroup[] | undefined; peers: readonly Peer[]; onKick: (p: Peer) => void }): preact.JSX.Element {
  const cluster = useCluster();
  const services = props.services ?? [];
  const groups = props.groups ?? [];
  const byConn = new Map(props.peers.filter((p) => p.dialect === 'bus').map((p) => [p.identity, p]));
  const cols: Array<Column<BusService>> = [
    { key: 'name', title: 'Service', cell: (s) => s.name ?? s.id },
    { key: 'id', title: 'Id', cell: (s) => <code>{s.id}</code> },
    { key: 'groups', title: 'Groups', cell: (s) => s.groups.join(', ') || '—' },
    { key: 'addr', title: 'Remote address', cell: (s) => s.remoteAddress },
    { key: 'since', title: 'Connected since', cell: (s) => <Time iso={s.connectedAt} /> },
    ...instanceColumn(cluster, services),
    {
      key: 'kick',
      title: 'Action',
      cell: (s) => {
        const p = byConn.get(s.name ?? s.id);
        return (
          <button
            type="button"
            class="danger small"
            disabled={!p}
            onClick={() => p && props.onKick(p)}
            aria-label={`Kick ${s.name ?? s.id}`}
          >
            Kick
          </button>
        );
      },
    },
  ];
  return (
    <section aria-labelledby="bus-h">
      <h2 id="bus-h">Bus: {services.length} services</h2>
      <VirtualTable label="Bus services" rows={services} columns={cols} rowKey={(s) => s.id} empty="No services." />
      <h3>Groups</h3>
      <VirtualTable
        label="Bus groups"
        rows={groups}
        columns={[
          { key: 'name', title: 'Group', cell: (g: BusGroup) => g.name },
          { key: 'n', title: 'Members', cell: (g: BusGroup) => g.members.length },
          { key: 'm', title: 'Member services', cell: (g: BusGroup) => g.members.map((id) => services.find((s) => s.id === id)?.name ?? id).join(', ') },
          ...instanceColumn(cluster, groups),
        ]}
        rowKey={(g) => `${g.name}/${g.instance ?? ''}`}
        height={240}
        empty="No groups."
      />
    </section>
  );
}

const str = (v: unknown): string => (v === null || v === undefined ? '—' : String(v));

export function ClusterioView(props: { slaves: Row[] | undefined; instances: Row[] | undefined }): preact.JSX.Element {
  const cluster = useCluster();
  const slaves = props.slaves ?? [];
  // A slave row names its instance when it is connected to another one; connected without one, it is on this one.
  const slaveAt = (s: Row): unknown => s.instance ?? (s.connected ? cluster?.here : undefined);
  const names = new Map(slaves.map((s) => [str(s.id), str(s.name)]));
  return (
    <section aria-labelledby="cl-h">
      <h2 id="cl-h">Clusterio: {slaves.length} slaves</h2>
      <VirtualTable
        label="Clusterio slaves"
        rows={slaves}
        rowKey={(s) => str(s.id)}
        height={260}
        columns={[
          { key: 'id', title: 'Id', cell: (s) => str(s.id) },
          { key: 'name', title: 'Name', cell: (s) => str(s.name) },
          { key: 'c', title: 'Connected', cell: (s) => (s.connected ? '✔ connected' : '✖ offline') },
          { key: 'addr', title: 'Remote address', cell: (s) => str(s.remoteAddress) },
          { key: 'v', title: 'Version', cell: (s) => str(s.version) },
          { key: 'n', title: 'Instances', cell: (s) => str(s.instances) },
          ...instanceColumn(cluster, slaves, slaveAt),
        ]}
      />
      <h3>Instances ({(props.instances ?? []).length})</h3>
      <VirtualTable
        label="Clusterio instances"
        rows={props.instances ?? []}
        rowKey={(i) => str(i.id)}
        columns={[
          { key: 'id', title: 'Id', cell: (i) => str(i.id) },
          { key: 'name', title: 'Name', cell: (i) => str(i.name) },
          { key: 'st', title: 'Status', cell: (i) => str(i.status) },
          {
            key: 's',
            title: 'Assigned slave',
            cell: (i) => (i.assigned_slave === null ? '— (unassigned)' : `${names.get(str(i.assigned_slave)) ?? str(i.assigned_slave)} ${i.slave_connected ? '(connected)' : '(offline)'}`),
          },
        ]}
      />
    </section>
  );
}

export function DiscodoView(props: { sessions: Row[] | undefined }): preact.JSX.Element {
  const cluster = useCluster();
  const sessions = props.sessions ?? [];
  const clients: Row[] = sessions.flatMap((s) => ((s.voiceClients as Row[] | undefined) ?? []).map((v): Row => ({ ...v, session: s.key, instance: s.instance })));
  return (
    <section aria-labelledby="dd-h">
      <h2 id="dd-h">Discodo: {sessions.length} sessions</h2>
      <VirtualTable
        label="Discodo sessions"
        rows={sessions}
        rowKey={(s) => str(s.key)}
        height={280}
        columns={[
          { key: 'k', title: 'Session', cell: (s) => str(s.key) },
          { key: 'st', title: 'State', cell: (s) => (s.state === 'connected' ? '● connected' : '◌ detached') },
          { key: 'a', title: 'Remote address', cell: (s) => str(s.remoteAddress) },
          { key: 'e', title: 'Resumable until', cell: (s) => str(s.expiresAt) },
          { key: 'v', title: 'Voice clients', cell: (s) => ((s.voiceClients as unknown[] | undefined) ?? []).length },
          ...instanceColumn(cluster, sessions),
        ]}
      />
      <h3>Voice clients ({clients.length})</h3>
      <VirtualTable
        label="Discodo voice clients"
        rows={clients}
        rowKey={(v) => `${str(v.session)}/${str(v.guildId)}`}
        columns={[
          { key: 's', title: 'Session', cell: (v) => str(v.session) },
          { key: 'g', title: 'Guild', cell: (v) => str(v.guildId) },
          { key: 'c', title: 'Channel', cell: (v) => str(v.channelId) },
          { key: 'e', title: 'Endpoint', cell: (v) => str(v.endpoint) },
          ...instanceColumn(cluster, clients),
        ]}
      />
    </section>
  );
}
