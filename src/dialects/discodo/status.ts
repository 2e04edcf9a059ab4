import os from 'node:os';

/**
 * The node's load and memory for STATUS. The keys Discodo 3 sends (UsedMemory and
 * TotalMemory in MB, ProcessLoad and TotalLoad in percent, Cores) come first, so
 * tools written for it keep working; Muster's own keys follow in snake_case.
 */
export type NodeStatus = Record<string, unknown>;

/** Where the figures come from (the host by default; a test passes its own). */
export interface StatusSource {
  loadavg(): number[];
  cores(): number;
}

const hostSource: StatusSource = { loadavg: () => os.loadavg(), cores: () => os.cpus().length };

/**
 * `TotalLoad` is a percentage of the machine, 0 to 100, as Discodo 3's own (a CPU percent)
 * is, so tools that read it as one keep working: the 1-minute load average per core is
 * capped at 100 there. An overloaded host shows its real figure, uncapped, in
 * `load.total_percent` (and the raw averages in `load.avg1/5/15`).
 */
export function nodeStatusProvider(source: StatusSource = hostSource): () => NodeStatus {
  let lastCpu = process.cpuUsage();
  let lastAt = process.hrtime.bigint();
  return () => {
    const cpu = process.cpuUsage(lastCpu);
    const at = process.hrtime.bigint();
    const elapsedUs = Number(at - lastAt) / 1000;
    lastCpu = process.cpuUsage();
    lastAt = at;
    const processLoad = elapsedUs > 0 ? ((cpu.user + cpu.system) / elapsedUs) * 100 : 0;
    const cores = source.cores() || 1;
    const [l1, l5, l15] = source.loadavg();
    const totalLoad = ((l1 ?? 0) / cores) * 100;
    const mem = process.memoryUsage();
    const round1 = (n: number): number => Math.round(n * 10) / 10;
    return {
      UsedMemory: Math.round(mem.rss / 1e6),
      TotalMemory: Math.round(os.totalmem() / 1e6),
      ProcessLoad: round1(processLoad),
      TotalLoad: round1(Math.min(100, totalLoad)),
      Cores: cores,
      load: { avg1: l1 ?? 0, avg5: l5 ?? 0, avg15: l15 ?? 0, process_percent: round1(processLoad), total_percent: round1(totalLoad) },
      memory: {
        rss: mem.rss,
        heap_used: mem.heapUsed,
        heap_total: mem.heapTotal,
        system_total: os.totalmem(),
        system_free: os.freemem(),
      },
      uptime: Math.round(process.uptime()),
    };
  };
}
