import { useRef, useState } from 'preact/hooks';
import { instanceColumn, useCluster } from './cluster.js';
import { Sparkline, VirtualTable, type Column } from './table.js';
import type { Control, Fleet, Peer, Shard, ShardState } from './types.js';

/** The five states an operator reads off the grid; the API's finer state is in each cell's label. */
type Display = 'unassigned' | 'connecting' | 'connected' | 'offloading' | 'halted';

const DISPLAY: Record<ShardState, Display> = {
  unassigned: 'unassigned',
  pending: 'unassigned',
  assigned: 'connecting',
  connecting: 'connecting',
  connected: 'connected',
  disconnected: 'offloading',
  halted: 'halted',
};

const LEGEND: ReadonlyArray<[Display, string, string]> = [
  ['unassigned', '·', 'no owner yet (unassigned, or planned for a CONTROL)'],
  ['connecting', '◐', 'CONNECT sent or the CONTROL is connecting it'],
  ['connected', '●', 'connected to Discord on its owner'],
  ['offloading', '✕', 'owner lost: waiting for it to come back, then moved to another CONTROL'],
  ['halted', '■', 'the fleet is halted'],
];
const GLYPH = Object.fromEntries(LEGEND.map(([d, g]) => [d, g])) as Record<Display, string>;
const COLUMNS = 32;

export function ShardsView(props: {
  fleet: Fleet | undefined;
  shards: Shard[] | undefined;
  peers: readonly Peer[];
  spark: ReadonlyMap<string, number[]>;
  act: (confirm: string | null, method: string, path: string, body?: unknown, done?: string) => Promise<void>;
  onKick: (p: Peer) => void;
}): preact.JSX.Element {
  const { fleet, act } = props;
  const cluster = useCluster();
  const shards = props.shards ?? [];
  const [selected, setSelected] = useState<number | null>(null);
  const [focus, setFocus] = useState(0);
  const grid = useRef<HTMLDivElement>(null);
  const counts = new Map<Display, number>();
  for (const s of shards) counts.set(DISPLAY[s.state], (counts.get(DISPLAY[s.state]) ?? 0) + 1);

  const move = (e: KeyboardEvent): void => {
    const d = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: COLUMNS, ArrowUp: -COLUMNS, Home: -focus, End: shards.length - 1 - focus }[e.key];
    if (d === undefined) return;
    e.preventDefault();
    const next = Math.min(shards.length - 1, Math.max(0, focus + d));
    setFocus(next);
    (grid.current?.querySelector(`[data-shard="${next}"]`) as HTMLElement | null)?.focus();
  };

  const sel = selected === null ? undefined : shards[selected];
  const peerOf = new Map(props.peers.map((p) => [p.identity, p]));
  const controlCols: Array<Column<Control>> = [
    { key: 'name', title: 'CONTROL', cell: (c) => c.name },
    { key: 'state', title: 'State', cell: (c) => c.state },
    { key: 'shards', title: 'Shards', cell: (c) => c.shards.map(([a, b]) => (a === b ? `${a}` : `${a}–${b}`)).join(', ') || '—' },
    { key: 'cap', title: 'Capacity', cell: (c) => `${c.capacity}${c.redundant ? ' (redundant)' : ''}` },
    { key: 'addr', title: 'Remote address', cell: (c) => peerOf.get(c.name)?.remoteAddress ?? '—' },
    { key: 'lat', title: 'Heartbeat latency', cell: (c) => <Sparkline values={props.spark.get(c.name) ?? []} label={`${c.name} heartbeat latency`} /> },
    // The instance holding the CONTROL's socket (from the peer list).
    ...instanceColumn(cluster, fleet?.controls ?? [], (c) => peerOf.get(c.name)?.instance),
    {
      key: 'act',
      title: 'Actions',
      cell: (c) => {
        const p = peerOf.get(c.name);
        return (
          <span class="row-actions">
            <button
              type="button"
              class="small"
              onClick={() => {
                const shard = window.prompt(`Restart which shard on ${c.name}? (a shard id it owns)`);
                if (shard === null || !/^\d+$/.test(shard.trim())) return;
                void act(null, 'POST', `/sharding/controls/${encodeURIComponent(c.name)}/command`, { command: 'restart_shard', args: { shard_id: Number(shard) } }, `restart_shard ${shard} sent to ${c.name}.`);
              }}
              aria-label={`Restart a shard on ${c.name}`}
            >
              Restart shard…
            </button>
            <button
              type="button"
              class="small"
              disabled={c.shards.length === 0}
              onClick={() =>
                void act(`Restart every shard on ${c.name}?`, 'POST', `/sharding/controls/${encodeURIComponent(c.name)}/command`, { command: 'restart_cluster', args: { shards: c.shards } }, `restart_cluster sent to ${c.name}.`)
              }
              aria-label={`Restart every shard on ${c.name}`}
            >
              Restart all
            </button>
            <button type="button" class="danger small" disabled={!p} onClick={() => p && props.onKick(p)} aria-label={`Kick ${c.name}`}>
              Kick
            </button>
          </span>
        );
      },
    },
  ];

  return (
    <section aria-labelledby="sh-h">
      <h2 id="sh-h">Shards</h2>
      {fleet && (
        <div class="fleet-bar">
          <p>
            <strong class={fleet.halted ? 'halted-text' : ''} data-testid="phase">
              {fleet.halted ? `HALTED${fleet.haltReason ? `: ${fleet.haltReason}` : ''}` : `phase: ${fleet.phase}`}
            </strong>
            {' · '}
            <span data-testid="queue">identify queue: {fleet.identifyQueueDepth}</span>
            {' · '}
            <span data-testid="budget">
              daily sessions left: {fleet.budgetRemaining}
              {fleet.budgetExhausted ? ' (exhausted)' : ''}
            </span>
            {' · '}max concurrency {fleet.maxConcurrency}
          </p>
          <div class="buttons">
            <button type="button" class="danger" disabled={fleet.halted} onClick={() => void act('Halt the whole fleet? Every CONTROL gets SHUTDOWN and nothing starts until resume.', 'POST', '/sharding/halt', undefined, 'Fleet halted.')}>
              Halt fleet
            </button>
            <button type="button" disabled={!fleet.halted} onClick={() => void act('Resume the fleet?', 'POST', '/sharding/resume', undefined, 'Fleet resumed.')}>
              Resume
            </button>
            <button type="button" disabled={fleet.halted} onClick={() => void act('Rebalance the shards across the live CONTROLs (make-before-break)?', 'POST', '/sharding/rebalance', {}, 'Rebalance started.')}>
              Rebalance
            </button>
          </div>
        </div>
      )}
      <ul class="legend" aria-label="Legend">
        {LEGEND.map(([d, g, text]) => (
          <li key={d}>
            <span class={`cell s-${d}`} aria-hidden="true">
              {g}
            </span>{' '}
            <strong>{d}</strong> ({counts.get(d) ?? 0}) <span class="muted">{text}</span>
          </li>
        ))}
      </ul>
      <div class="grid" ref={grid} role="group" aria-label={`${shards.length} shards; arrow keys move, Enter shows the owner`} onKeyDown={move} style={{ gridTemplateColumns: `repeat(${COLUMNS}, minmax(14px, 1fr))` }}>
        {shards.map((s) => {
          const d = DISPLAY[s.state];
          const label = `Shard ${s.id}: ${s.state}${s.owner ? `, owner ${s.owner}` : ', no owner'}`;
          return (
            <button
              type="button"
              key={s.id}
              data-shard={s.id}
              data-state={s.state}
              data-owner={s.owner ?? ''}
              class={`cell s-${d}${selected === s.id ? ' sel' : ''}`}
              title={label}
              aria-label={label}
              tabIndex={s.id === focus ? 0 : -1}
              onFocus={() => setFocus(s.id)}
              onClick={() => setSelected(s.id)}
            >
              {GLYPH[d]}
            </button>
          );
        })}
      </div>
      <p class="detail" aria-live="polite" data-testid="shard-detail">
        {sel ? `Shard ${sel.id}: ${sel.state} (${DISPLAY[sel.state]}), owner ${sel.owner ?? 'none'}` : 'Select a shard to see its owner.'}
      </p>
      <h3>CONTROLs ({fleet?.controls.length ?? 0})</h3>
      <VirtualTable label="CONTROLs" rows={fleet?.controls ?? []} columns={controlCols} rowKey={(c) => c.name} height={300} empty="No CONTROL has identified." />
    </section>
  );
}
