/**
 * Renders the admin API's /status answer as a one-screen summary: connections summed over
 * every instance, then (in cluster mode, or when one did not answer) one line per instance.
 */
export function renderStatus(s: Record<string, unknown>): string {
  const lines: string[] = [];
  const instance = typeof s.instanceId === 'string' ? `  instance: ${s.instanceId}` : '';
  lines.push(`Muster ${String(s.version ?? '?')}  up ${formatUptime(Number(s.uptimeSeconds ?? 0))}  store: ${String(s.store ?? '?')}${instance}`);
  const conns = (s.connections ?? {}) as Record<string, number>;
  const total = Object.values(conns).reduce((a, b) => a + b, 0);
  lines.push(`Connections: ${total}`);
  for (const [name, n] of Object.entries(conns)) lines.push(`  ${name.padEnd(10)} ${String(n).padStart(6)}`);
  lines.push(...renderInstances(s.instances, s.instanceId));
  const dialects = (s.dialects ?? {}) as Record<string, Record<string, unknown>>;
  for (const [name, d] of Object.entries(dialects)) {
    const parts = Object.entries(d)
      .filter(([k, v]) => k !== 'path' && (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean'))
      .map(([k, v]) => `${k}=${String(v)}`);
    lines.push(`${name} (${String(d.path)}): ${parts.join('  ') || '-'}`);
  }
  return `${lines.join('\n')}\n`;
}

interface InstanceLine {
  id?: unknown;
  answered?: unknown;
  error?: unknown;
  version?: unknown;
  uptimeSeconds?: unknown;
  connections?: unknown;
}

/** One line per instance, this one marked `*`; nothing for a lone instance that answered. */
function renderInstances(raw: unknown, self: unknown): string[] {
  if (!Array.isArray(raw)) return [];
  const list = raw as InstanceLine[];
  if (list.length === 1 && list[0]?.answered === true) return [];
  const answered = list.filter((i) => i.answered === true).length;
  const lines = [`Instances: ${answered} of ${list.length} answered${answered < list.length ? ' (totals are partial)' : ''}`];
  for (const i of list) {
    const mark = i.id === self ? '*' : ' ';
    const id = String(i.id ?? '?').padEnd(20);
    if (i.answered !== true) {
      lines.push(` ${mark}${id} no answer${typeof i.error === 'string' ? `: ${i.error}` : ''}`);
      continue;
    }
    const conns = (i.connections ?? {}) as Record<string, number>;
    const total = Object.values(conns).reduce((a, b) => a + b, 0);
    const per = Object.entries(conns)
      .filter(([, n]) => n > 0)
      .map(([d, n]) => `${d}=${n}`)
      .join(' ');
    lines.push(` ${mark}${id} ${String(total).padStart(6)} connections  up ${formatUptime(Number(i.uptimeSeconds ?? 0))}  ${String(i.version ?? '?')}${per ? `  ${per}` : ''}`);
  }
  return lines;
}

function formatUptime(sec: number): string {
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return h > 0 ? `${h}h${m}m` : m > 0 ? `${m}m${s}s` : `${s}s`;
}
