/**
 * A cluster's shape for the estimate (src/estimate.ts): how many scenes each node type holds at
 * once (its resources over a scene's), its price (the plan's node_types), and how many workers
 * the YAML allows; and a deadline's worker count written back into the rendered YAML.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseDocument } from "yaml";
import type { ClusterShape, NodeGroup } from "./estimate.js";
import type { Plan } from "./plan.js";
import { LOCAL_RUN_NODE_TYPE } from "./prices.js";

interface NodeTypeYaml {
  resources?: Record<string, unknown>;
  max_workers?: unknown;
}

interface ClusterYaml {
  max_workers?: unknown;
  provider?: { type?: unknown; worker_ips?: unknown };
  head_node_type?: unknown;
  available_node_types?: Record<string, NodeTypeYaml>;
  head_start_ray_commands?: unknown;
  worker_start_ray_commands?: unknown;
}

/** Ray's name for an on-premise cluster's one node type (ray/autoscaler/_private/local/config.py). */
const ON_PREMISE_TYPE = "local.cluster.node";
/** Ray's default max_workers (ray/autoscaler/ray-schema.json). */
const RAY_MAX_WORKERS = 2;

/**
 * Scenes a node holds at once: the fewest its resources give for any resource a scene asks for
 * (CPU for num_cpus, GPU for num_gpus). undefined: the node's resources are not known.
 */
function slotsOf(resources: Record<string, number> | undefined, plan: Pick<Plan, "resources">) {
  if (!resources) return undefined;
  const asks: [string, number][] = [
    ["CPU", plan.resources.num_cpus],
    ["GPU", plan.resources.num_gpus],
  ];
  const counts = asks.filter(([, n]) => n > 0).map(([r, n]) => Math.floor((resources[r] ?? 0) / n));
  return counts.length ? Math.min(...counts) : (resources.CPU ?? 1);
}

/** `--num-cpus=N` / `--num-gpus=N` of a node's `ray start` (an on-premise node declares no type). */
function startResources(commands: unknown): Record<string, number> | undefined {
  const text = Array.isArray(commands) ? commands.join(" ") : "";
  const cpus = /--num-cpus[= ](\d+)/.exec(text)?.[1];
  if (cpus === undefined) return undefined;
  const gpus = /--num-gpus[= ](\d+)/.exec(text)?.[1];
  return { CPU: Number(cpus), GPU: Number(gpus ?? 0) };
}

const price = (plan: Plan, type: string) => plan.node_types?.[type]?.usd_per_hour ?? null;

/** The shape of a cluster YAML as the plan rendered it. */
export function yamlShape(cluster: ClusterYaml, plan: Plan): ClusterShape {
  const notes: string[] = [];
  const group = (name: string, resources: Record<string, number> | undefined, max: number) => {
    const slots = slotsOf(resources, plan);
    if (slots === undefined)
      notes.push(`node type ${name} declares no resources: one scene at a time assumed`);
    return { name, slots: slots ?? 1, usdPerHour: price(plan, name), max } satisfies NodeGroup;
  };
  const top = typeof cluster.max_workers === "number" ? cluster.max_workers : undefined;
  if (cluster.provider?.type === "local" && !cluster.available_node_types) {
    const ips = Array.isArray(cluster.provider.worker_ips) ? cluster.provider.worker_ips.length : 0;
    const max = Math.min(top ?? ips, ips);
    return {
      head: group(ON_PREMISE_TYPE, startResources(cluster.head_start_ray_commands), 1),
      workers: ips
        ? [group(ON_PREMISE_TYPE, startResources(cluster.worker_start_ray_commands), max)]
        : [],
      maxWorkers: max,
      notes,
    };
  }
  const types = Object.entries(cluster.available_node_types ?? {});
  const numbers = (r: Record<string, unknown> | undefined) =>
    r && Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v)]));
  const [, headType] = types.find(([name]) => name === cluster.head_node_type) ?? [];
  const workers = types
    .filter(([name]) => name !== cluster.head_node_type)
    .map(([name, type]) => {
      const own =
        typeof type.max_workers === "number" ? type.max_workers : (top ?? RAY_MAX_WORKERS);
      return group(name, numbers(type.resources), own);
    })
    .filter((g) => g.max > 0);
  const typesMax = workers.reduce((n, g) => n + g.max, 0);
  return {
    head: group(String(cluster.head_node_type), numbers(headType?.resources), 1),
    workers,
    maxWorkers: Math.min(top ?? RAY_MAX_WORKERS, typesMax),
    notes,
  };
}

/** This machine for a local run: its CPU slots (--num-cpus, else every core), no workers. */
export function machineShape(plan: Plan, cpus: number): ClusterShape {
  const slots = slotsOf({ CPU: cpus, GPU: 0 }, plan) ?? 1;
  const notes =
    plan.resources.num_gpus > 0 ? ["a scene asks for a GPU: a local run has none to give"] : [];
  return {
    head: {
      name: LOCAL_RUN_NODE_TYPE,
      slots,
      usdPerHour: price(plan, LOCAL_RUN_NODE_TYPE),
      max: 1,
    },
    workers: [],
    maxWorkers: 0,
    notes,
  };
}

/**
 * The deadline's workers in the rendered YAML: the cluster's max_workers their sum, each worker
 * type's min_workers and max_workers its count (the autoscaler starts them without waiting for
 * demand). An on-premise cluster takes both from the top level (Ray's prepare_manual).
 */
export function resizeYaml(file: string, workers: { group: NodeGroup; count: number }[]): void {
  const doc = parseDocument(readFileSync(file, "utf8"));
  const total = workers.reduce((n, w) => n + w.count, 0);
  doc.set("max_workers", total);
  const cluster = doc.toJS() as ClusterYaml;
  if (cluster.provider?.type === "local" && !cluster.available_node_types) {
    doc.set("min_workers", total);
  } else {
    for (const { group, count } of workers) {
      doc.setIn(["available_node_types", group.name, "min_workers"], count);
      doc.setIn(["available_node_types", group.name, "max_workers"], count);
    }
  }
  writeFileSync(file, doc.toString());
}
