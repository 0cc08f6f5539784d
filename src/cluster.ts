/**
 * The cluster YAML as the plan renders it: the module's file with a cluster name unique to the
 * run, terminate-on-down, the deploy files mounted on every node, and a Ray version that must
 * equal the client's (a mismatch fails `ray up` late and obscurely, so we fail early and clearly).
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { stringify } from "yaml";
import { InputError } from "./errors.js";
import type { Module } from "./module.js";
import { capture } from "./proc.js";

const COMMAND_LISTS = [
  "initialization_commands",
  "setup_commands",
  "head_setup_commands",
  "worker_setup_commands",
];
const RAY_PIN = /\bray(?:\[[^\]]*\])?==([0-9][\w.]*)/g;

/** mcs-<module>-<run id>: Ray tags every instance with it, so a janitor can find leftovers. */
export function clusterNameFor(module: string, runId: string): string {
  return `mcs-${module}-${runId}`
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .slice(0, 60);
}

/** Where the plan lives on the head node (relative to the SSH user's home). */
export function remotePlanDir(runId: string): string {
  return `mcs-${runId}`;
}

export function clusterYamlPath(planDir: string): string {
  return path.join(planDir, "cluster.yaml");
}

export function renderClusterYaml(
  mod: Module,
  clusterName: string,
  rayVersion: string,
  planDir: string,
  runId: string,
): string {
  const source = path.basename(mod.clusterYamlPath);
  const cluster = structuredClone(mod.cluster);
  cluster.cluster_name = clusterName;
  const provider = cluster.provider as Record<string, unknown>;
  // `ray down` on AWS only stops instances unless told otherwise; stopped GPU nodes still cost.
  if (provider.type === "aws") provider.cache_stopped_nodes = false;

  const pins = COMMAND_LISTS.flatMap((key) => commands(cluster, key, source)).flatMap((c) =>
    [...c.matchAll(RAY_PIN)].map((m) => m[1]!),
  );
  const other = pins.find((v) => v !== rayVersion);
  if (other) {
    throw new InputError(
      "ray-version",
      `${source} installs Ray ${other} on the cluster but the client is Ray ${rayVersion}: make them equal`,
    );
  }
  if (pins.length === 0) {
    cluster.setup_commands = [
      ...commands(cluster, "setup_commands", source),
      `pip install -q "ray[default]==${rayVersion}" boto3`,
    ];
  }
  const mounts = (cluster.file_mounts ?? {}) as Record<string, string>;
  cluster.file_mounts = {
    ...mounts,
    [`~/${remotePlanDir(runId)}/deploy`]: path.join(planDir, "deploy"),
  };

  const file = clusterYamlPath(planDir);
  writeFileSync(
    file,
    `# Rendered by mcs-pipeline from ${source} for run ${runId}\n${stringify(cluster)}`,
  );
  return file;
}

function commands(cluster: Record<string, unknown>, key: string, source: string): string[] {
  const value = cluster[key] ?? [];
  if (!Array.isArray(value) || value.some((c) => typeof c !== "string")) {
    throw new InputError("module", `${source}: ${key} must be a list of commands`);
  }
  return value as string[];
}

/** Ray's own schema, from the installed Ray: the same check `ray up` makes, before any start. */
export async function validateWithRaySchema(python: string, yamlFile: string, shown: string) {
  const check = [
    "import sys, yaml",
    "from ray.autoscaler._private.util import validate_config",
    "validate_config(yaml.safe_load(open(sys.argv[1])))",
  ].join("\n");
  await capture(python, ["-c", check, yamlFile]).catch((error: Error) => {
    const reason = error.message.split(" / ").pop() ?? error.message;
    throw new InputError("module", `${shown} does not match Ray's cluster schema: ${reason}`);
  });
}
