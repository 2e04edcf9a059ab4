import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Column } from './table.js';
import type { InstanceState, StatusBody } from './types.js';

/**
 * Cluster mode, as the admin API reports it and nothing more: `/api/v1/status` lists every
 * instance it asked (`instances`, the one answering first, `answered: false` for those
 * that did not answer in time). With more than one instance the page shows the cluster
 * strip and an Instance column in every table whose rows carry an `instance`; with one
 * (a single process) it shows neither.
 */
export interface ClusterView {
  readonly instances: readonly InstanceState[];
  /** The instance this page talks to. */
  readonly here: string;
  /** Instances that did not answer: the lists gathered from every instance lack their rows. */
  readonly missing: readonly InstanceState[];
}

export function clusterOf(status: StatusBody | undefined): ClusterView | undefined {
  const instances = status?.instances ?? [];
  const first = instances[0];
  if (!first || instances.length < 2) return undefined;
  return { instances, here: status?.instanceId ?? first.id, missing: instances.filter((i) => !i.answered) };
}

export const ClusterContext = createContext<ClusterView | undefined>(undefined);

export function useCluster(): ClusterView | undefined {
  return useContext(ClusterContext);
}

const instanceOf = (row: unknown): unknown => (row as { instance?: unknown }).instance;

/**
 * The "Instance" column: in cluster mode, for rows of which at least one has an instance
 * (`get`, by default the row's own `instance`); otherwise no column at all.
 */
export function instanceColumn<T>(cluster: ClusterView | undefined, rows: readonly T[], get: (row: T) => unknown = instanceOf): Array<Column<T>> {
  if (!cluster || !rows.some((r) => typeof get(r) === 'string')) return [];
  return [
    {
      key: 'instance',
      title: 'Instance',
      width: '9em',
      cell: (r) => {
        const v = get(r);
        return typeof v === 'string' ? v : <span class="muted">—</span>;
      },
    },
  ];
}

const total = (c: Record<string, number> | undefined): number => Object.values(c ?? {}).reduce((a, b) => a + b, 0);

/** The instances with their state, and a warning while the lists are partial. */
export function ClusterStrip(props: { cluster: ClusterView | undefined }): preact.JSX.Element | null {
  const c = props.cluster;
  if (!c) return null;
  const answered = c.instances.length - c.missing.length;
  const one = c.missing.length === 1;
  return (
    <section class="cluster-strip" aria-label="Cluster instances">
      <span class="muted">
        Cluster: {answered} of {c.instances.length} instances answered
      </span>
      <ul>
        {c.instances.map((i) => (
          <li key={i.id} class={i.answered ? 'answered' : 'missing'} data-instance={i.id} data-answered={String(i.answered)} title={i.error}>
            <span aria-hidden="true">{i.answered ? '● ' : '✖ '}</span>
            <strong>{i.id}</strong> {i.answered ? `answered, ${total(i.connections)} connections` : 'missing'}
            {i.id === c.here ? ' (this one)' : ''}
          </li>
        ))}
      </ul>
      {c.missing.length > 0 && (
        <p role="alert" class="error" data-testid="cluster-partial">
          Partial lists: {c.missing.map((i) => `${i.id} (${i.error ?? 'no answer'})`).join(', ')} {one ? 'is' : 'are'} missing. {one ? 'Its' : 'Their'} connections are
          not in the peer, bus service and discodo session lists nor in the counts until {one ? 'it answers' : 'they answer'} again or{' '}
          {one ? 'leaves' : 'leave'} the cluster.
        </p>
      )}
    </section>
  );
}
