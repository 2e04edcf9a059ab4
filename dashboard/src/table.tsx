import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';

export interface Column<T> {
  readonly key: string;
  readonly title: string;
  readonly cell: (row: T) => ComponentChildren;
  readonly width?: string;
}

const ROW_HEIGHT = 32;
const OVERSCAN = 8;

/**
 * A table that renders only the rows in view (plus a few), so 10,000 rows cost a few
 * dozen DOM rows. Fixed row height; the scroll area is focusable for keyboard scrolling.
 */
export function VirtualTable<T>(props: {
  label: string;
  rows: readonly T[];
  columns: ReadonlyArray<Column<T>>;
  rowKey: (row: T) => string;
  height?: number;
  empty?: string;
}): preact.JSX.Element {
  const { rows, columns } = props;
  const height = props.height ?? 420;
  const [top, setTop] = useState(0);
  const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
  const count = Math.ceil(height / ROW_HEIGHT) + 2 * OVERSCAN;
  const last = Math.min(rows.length, first + count);
  const slice = rows.slice(first, last);
  return (
    <div
      class="vt"
      style={{ maxHeight: `${height}px` }}
      tabIndex={0}
      role="region"
      aria-label={`${props.label} (${rows.length} rows; scroll with the arrow keys)`}
      onScroll={(e) => setTop((e.currentTarget as HTMLElement).scrollTop)}
    >
      <table aria-rowcount={rows.length + 1}>
        <caption class="sr-only">{props.label}</caption>
        <thead>
          <tr aria-rowindex={1}>
            {columns.map((c) => (
              <th scope="col" key={c.key} style={c.width ? { width: c.width } : undefined}>
                {c.title}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {first > 0 && (
            <tr class="spacer" aria-hidden="true">
              <td colSpan={columns.length} style={{ height: `${first * ROW_HEIGHT}px` }} />
            </tr>
          )}
          {slice.map((r, i) => (
            <tr key={props.rowKey(r)} aria-rowindex={first + i + 2} style={{ height: `${ROW_HEIGHT}px` }}>
              {columns.map((c) => (
                <td key={c.key}>{c.cell(r)}</td>
              ))}
            </tr>
          ))}
          {last < rows.length && (
            <tr class="spacer" aria-hidden="true">
              <td colSpan={columns.length} style={{ height: `${(rows.length - last) * ROW_HEIGHT}px` }} />
            </tr>
          )}
          {rows.length === 0 && (
            <tr>
              <td colSpan={columns.length} class="muted">
                {props.empty ?? 'Nothing here.'}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

/** A latency history as an inline SVG line, with its last value in text beside it. */
export function Sparkline(props: { values: readonly number[]; label: string }): preact.JSX.Element {
  const v = props.values;
  const w = 120;
  const h = 24;
  if (v.length === 0) return <span class="muted">no samples</span>;
  const max = Math.max(1, ...v);
  const pts = v.map((x, i) => `${v.length === 1 ? w : (i / (v.length - 1)) * w},${h - 2 - (x / max) * (h - 4)}`).join(' ');
  return (
    <span class="spark">
      <svg width={w} height={h} role="img" aria-label={`${props.label}: last ${v.length} samples, max ${max} ms`}>
        <polyline points={pts} fill="none" stroke="currentColor" stroke-width="1.5" />
      </svg>
      <span>{v[v.length - 1]} ms</span>
    </span>
  );
}
