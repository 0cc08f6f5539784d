/**
 * The run's cost, estimated: node-hours by instance type from the nodes the driver recorded
 * (Ray's own node table: when each node started and ended), times each node type's hourly price
 * from the plan (src/prices.ts). An estimate, not a bill: disks, data transfer, and the minutes
 * before Ray started and after the driver's last save are not in it.
 */
import { LIST_SOURCE } from "./prices.js";
import type { RunSummary } from "./summary.js";

export interface CostLine {
  /** The instance type (else the node type, else "unknown"). */
  label: string;
  spot: boolean;
  nodes: number;
  hours: number;
  usdPerHour: number | null;
  /** null: no price known for these nodes. */
  usd: number | null;
}

export interface CostEstimate {
  lines: CostLine[];
  nodes: number;
  hours: number;
  /** Of the priced nodes only. */
  usd: number;
  unpricedHours: number;
  /** Where the prices come from (the module's file, the dated list). */
  sources: string[];
  /** Some spot node is priced at the on-demand list price, not its own: an upper bound. */
  spotAtListPrice: boolean;
}

const HOUR_MS = 3_600_000;

/** undefined when the summary names no nodes (a local run, an older summary). */
export function estimateCost(summary: RunSummary): CostEstimate | undefined {
  const nodes = summary.nodes ?? [];
  if (nodes.length === 0) return undefined;
  const until = Date.parse(summary.updated_at);
  const lines = new Map<string, CostLine>();
  for (const node of nodes) {
    const end = node.ended_at ? Date.parse(node.ended_at) : until;
    const hours = Math.max(0, (end - Date.parse(node.started_at)) / HOUR_MS);
    const label = node.instance_type ?? node.node_type ?? "unknown";
    const key = JSON.stringify([label, node.spot, node.usd_per_hour]);
    const line = lines.get(key) ?? {
      label,
      spot: node.spot,
      nodes: 0,
      hours: 0,
      usdPerHour: node.usd_per_hour,
      usd: null,
    };
    line.nodes += 1;
    line.hours += hours;
    line.usd = line.usdPerHour === null ? null : line.hours * line.usdPerHour;
    lines.set(key, line);
  }
  const all = [...lines.values()].sort(
    (a, b) => (b.usd ?? -1) - (a.usd ?? -1) || b.hours - a.hours,
  );
  const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
  return {
    lines: all,
    nodes: nodes.length,
    hours: sum(all.map((l) => l.hours)),
    usd: sum(all.map((l) => l.usd ?? 0)),
    unpricedHours: sum(all.filter((l) => l.usd === null).map((l) => l.hours)),
    spotAtListPrice: nodes.some((n) => n.spot && n.price_source?.startsWith(LIST_SOURCE)),
    sources: [...new Set(nodes.map((n) => n.price_source).filter((s): s is string => !!s))].sort(),
  };
}
