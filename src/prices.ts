/**
 * What each node type of a module's cluster costs an hour, for the report's cost estimate: the
 * price the module declares in configs/M_aws.ini `[prices]` (by node type, else by instance type),
 * else the checked-in on-demand list for the cluster's region (src/data/ec2-on-demand-prices.json,
 * dated), else none. The plan carries the result to the driver, which records each node's
 * start and end from Ray's own node table; the report multiplies (src/report-cost.ts).
 */
import table from "./data/ec2-on-demand-prices.json" with { type: "json" };
import type { Module } from "./module.js";

export interface NodeTypePrice {
  instance_type: string | null;
  head: boolean;
  spot: boolean;
  usd_per_hour: number | null;
  /** Where the price comes from, for the report: the module's file or the dated list. */
  price_source: string | null;
}

interface ClusterNodeTypes {
  provider?: { type?: unknown; region?: unknown };
  head_node_type?: unknown;
  available_node_types?: Record<
    string,
    { node_config?: { InstanceType?: unknown; InstanceMarketOptions?: { MarketType?: unknown } } }
  >;
}

/** How a price from the checked-in list names its source (then the region and date). */
export const LIST_SOURCE = "on-demand list";

/** Ray's name for it (ray/autoscaler/_private/local/config.py). */
const LOCAL_NODE_TYPE = "local.cluster.node";
const LIST: Record<string, Record<string, number>> = table.regions;

export function nodeTypePrices(mod: Pick<Module, "cluster" | "prices" | "execConfigPath">) {
  const cluster = mod.cluster as ClusterNodeTypes;
  const region = String(cluster.provider?.region ?? "");
  const declared = declaredSource(mod);
  const prices: Record<string, NodeTypePrice> = {};
  // Ray's local (on-premise) provider gives every machine one node type of its own.
  const local = cluster.provider?.type === "local" && !cluster.available_node_types;
  const types = local ? { [LOCAL_NODE_TYPE]: {} } : (cluster.available_node_types ?? {});
  const headType = local ? LOCAL_NODE_TYPE : cluster.head_node_type;
  for (const [name, type] of Object.entries(types)) {
    const instance = type.node_config?.InstanceType;
    const instanceType = typeof instance === "string" ? instance : null;
    const own = mod.prices.get(name) ?? (instanceType ? mod.prices.get(instanceType) : undefined);
    const listed = instanceType ? LIST[region]?.[instanceType] : undefined;
    prices[name] = {
      instance_type: instanceType,
      head: name === headType,
      spot: type.node_config?.InstanceMarketOptions?.MarketType === "spot",
      usd_per_hour: own ?? listed ?? null,
      price_source:
        own !== undefined
          ? declared
          : listed !== undefined
            ? `${LIST_SOURCE}, ${region}, ${table.as_of}`
            : null,
    };
  }
  return prices;
}

/** A local run's one node type: this machine, priced only when the module declares `local`. */
export const LOCAL_RUN_NODE_TYPE = "local";

/**
 * This machine for a local run, when configs/M_aws.ini `[prices]` has `local = USD per hour`
 * (what an hour of it is worth to you): the estimate and a budget then price it; else nothing.
 */
export function localNodePrice(
  mod: Pick<Module, "prices" | "execConfigPath">,
): Record<string, NodeTypePrice> {
  const usd = mod.prices.get(LOCAL_RUN_NODE_TYPE);
  if (usd === undefined) return {};
  const price: NodeTypePrice = {
    instance_type: null,
    head: true,
    spot: false,
    usd_per_hour: usd,
    price_source: declaredSource(mod),
  };
  return { [LOCAL_RUN_NODE_TYPE]: price };
}

/** How a price the module declares names its source: `configs/M_aws.ini [prices]`. */
function declaredSource(mod: Pick<Module, "execConfigPath">): string {
  return `${mod.execConfigPath.split("/").slice(-2).join("/")} [prices]`;
}
