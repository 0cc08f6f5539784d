/**
 * A dry run's job summary: the plan as a reader checks it before paying for a cluster — the
 * scenes in the order the driver starts them, the cluster and its node types, where the results
 * go, retries and timeouts. Built from plan.json and the rendered cluster YAML only: no cloud API.
 */
import { existsSync, readFileSync } from "node:fs";
import { parse } from "yaml";
import { s3FolderUrl } from "../aws/s3.js";
import { clusterYamlPath } from "../cluster.js";
import { renderForecast, type Forecast } from "../forecast.js";
import { formatBytes, type Plan } from "../plan.js";

/** Scene rows shown; a step summary over 1 MiB is dropped whole, so longer lists are cut. */
export const MAX_SCENE_ROWS = 1000;

interface NodeType {
  node_config?: {
    InstanceType?: unknown;
    InstanceMarketOptions?: { MarketType?: unknown };
  };
  min_workers?: unknown;
  max_workers?: unknown;
  resources?: Record<string, unknown>;
}

interface ClusterYaml {
  max_workers?: unknown;
  provider?: { type?: unknown; region?: unknown; availability_zone?: unknown };
  head_node_type?: unknown;
  available_node_types?: Record<string, NodeType>;
}

/** `|` and line breaks would break a table cell; backticks a code span. */
const cell = (value: unknown) =>
  String(value ?? "")
    .replace(/\|/g, "\\|")
    .replace(/\r?\n/g, " ") || "–";
const code = (value: unknown) => `\`${String(value).replace(/`/g, "'")}\``;

/** The scenes in the order the driver starts them with no earlier run: longest expected first. */
export function scenesLongestFirst(plan: Plan): Plan["scenes"] {
  return [...plan.scenes].sort(
    (a, b) => (b.expected_cost ?? 0) - (a.expected_cost ?? 0) || a.name.localeCompare(b.name),
  );
}

export function renderPlanSummary(plan: Plan, region: string, outlook?: Forecast): string {
  const yamlFile = clusterYamlPath(plan.dir);
  const cluster: ClusterYaml = existsSync(yamlFile)
    ? ((parse(readFileSync(yamlFile, "utf8")) as ClusterYaml | null) ?? {})
    : {};
  const timeoutMinutes = plan.scene_timeout_s / 60;
  const resources = Object.entries(plan.resources)
    .map(([name, amount]) => `${amount} ${name.replace(/^num_|s$/g, "").toUpperCase()}`)
    .join(", ");
  const lines: string[] = [
    `## Dry run: ${plan.module} ${plan.metadata} — the plan is valid, nothing was started`,
    "",
    `Run \`${plan.run_id}\`: **${plan.scenes.length} scene${plan.scenes.length === 1 ? "" : "s"}** ` +
      `on Ray ${plan.ray_version}. The cluster YAML passed Ray's own schema check; no cloud API ` +
      "was called.",
    "",
    "| | |",
    "| --- | --- |",
    `| cluster | ${code(plan.cluster_name ?? "none")}${regionText(cluster, region)} |`,
    `| results | ${resultsCell(plan, region)} |`,
    `| run summary | ${code(plan.summary_key)} |`,
    `| retries | ${plan.retries} per scene (timeouts, X-server start failures, lost nodes) |`,
    `| timeout | ${timeoutMinutes} min per scene |`,
    `| per scene | ${cell(resources)} |`,
    `| resume | ${plan.resume ? "yes: scenes that succeeded in the latest run are skipped" : "no"} |`,
    "",
    ...(outlook ? [renderForecast(outlook)] : []),
    ...nodeTypes(cluster, plan.node_types ?? {}),
    `### Scenes, longest first`,
    "",
    plan.sceneSet
      ? `In ${code(plan.sceneSet.uri)} (${formatBytes(plan.sceneSet.bytes)}): the head node fetches them itself and orders them by \`goal.last_step\`, or by the previous run's durations when it has them.`
      : "Ordered by `goal.last_step`; a real run orders by the previous run's durations when it has them.",
    "",
    "| # | scene | last step |",
    "| ---: | --- | ---: |",
  ];
  const ordered = scenesLongestFirst(plan);
  ordered.slice(0, MAX_SCENE_ROWS).forEach((scene, i) => {
    lines.push(`| ${i + 1} | ${cell(scene.name)} | ${scene.expected_cost} |`);
  });
  if (ordered.length > MAX_SCENE_ROWS) {
    lines.push("", `…and ${ordered.length - MAX_SCENE_ROWS} more scenes (the log has the plan).`);
  }
  return `${lines.join("\n")}\n`;
}

function regionText(cluster: ClusterYaml, region: string): string {
  const provider = cluster.provider;
  if (!provider) return "";
  const zone = provider.availability_zone ? `, zones ${cell(provider.availability_zone)}` : "";
  return ` (${cell(provider.type)} provider, ${cell(provider.region ?? region)}${zone})`;
}

function resultsCell(plan: Plan, region: string): string {
  const folder = `${plan.store.replace(/\/$/, "")}/${plan.names.folder}/`;
  if (!plan.store.startsWith("s3://")) return code(folder);
  return `${code(folder)} ([console](${s3FolderUrl(plan.store, region, plan.names.folder)}))`;
}

function nodeTypes(cluster: ClusterYaml, prices: NonNullable<Plan["node_types"]>): string[] {
  const types = Object.entries(cluster.available_node_types ?? {});
  if (types.length === 0) return [];
  const lines = [
    "### Node types",
    "",
    `Up to ${cell(cluster.max_workers)} workers besides the head.`,
    "",
    "| node type | instance | workers (min–max) | resources | price/hour |",
    "| --- | --- | --- | --- | ---: |",
  ];
  for (const [name, type] of types) {
    const head = name === cluster.head_node_type;
    const spot = type.node_config?.InstanceMarketOptions?.MarketType === "spot";
    const price = prices[name]?.usd_per_hour;
    const resources = Object.entries(type.resources ?? {})
      .map(([k, v]) => `${cell(v)} ${cell(k)}`)
      .join(", ");
    lines.push(
      `| ${cell(name)}${head ? " (head)" : ""} | ${cell(type.node_config?.InstanceType)}${spot ? " (spot)" : ""} | ` +
        `${head ? "–" : `${cell(type.min_workers ?? 0)}–${cell(type.max_workers)}`} | ${resources || "–"} | ` +
        `${price === null || price === undefined ? "–" : `$${price}`} |`,
    );
  }
  lines.push("");
  return lines;
}
