/** Renders the admin API's /status answer as a one-screen summary. */
export function renderStatus(s: Record<string, unknown>): string {
  const lines: string[] = [];
  const instance = typeof s.instanceId === 'string' ? `  instance: ${s.instanceId}` : '';
  lines.push(`Muster ${String(s.version ?? '?')}  up ${formatUptime(Number(s.uptimeSeconds ?? 0))}  store: ${String(s.store ?? '?')}${instance}`);
  const conns = (s.connections ?? {}) as Record<string, number>;
  const total = Object.values(conns).reduce((a, b) => a + b, 0);
  lines.push(`Connections: ${total}`);
  for (const [name, n] of Object.entries(conns)) lines.push(`  ${name.padEnd(10)} ${String(n).padStart(6)}`);
  const dialects = (s.dialects ?? {}) as Record<string, Record<string, unknown>>;
  for (const [name, d] of Object.entries(dialects)) {
    const parts = Object.entries(d)
      .filter(([k, v]) => k !== 'path' && (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean'))
      .map(([k, v]) => `${k}=${String(v)}`);
    lines.push(`${name} (${String(d.path)}): ${parts.join('  ') || '-'}`);
  }
  return `${lines.join('\n')}\n`;
}

function formatUptime(sec: number): string {
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return h > 0 ? `${h}h${m}m` : m > 0 ? `${m}m${s}s` : `${s}s`;
}
