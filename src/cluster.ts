/**
 * The cluster YAML as the plan renders it: the module's file with a cluster name unique to the
 * job, terminate-on-down, the deploy files mounted on every node, the head's watchdog, and a Ray
 * version that must equal the client's (a mismatch fails `ray up` late and obscurely, so we fail
 * early and clearly).
 */
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { getExecOutput } from "@actions/exec";
import { stringify } from "yaml";
import { InputError } from "./errors.js";
import { LIFETIME_TAG, lifetimeTagValue } from "./janitor/lifetime.js";
import type { Module } from "./module.js";

const COMMAND_LISTS = [
  "initialization_commands",
  "setup_commands",
  "head_setup_commands",
  "worker_setup_commands",
];
const RAY_PIN = /\bray(?:\[[^\]]*\])?==([0-9][\w.]*)/g;

/**
 * The longest cluster name we make. Ray sets no limit; EC2's are far above it: the security group
 * Ray creates (`ray-autoscaler-<name>`) and key pair names allow 255 characters, tag values 256
 * (Ray's `ray-cluster-name` tag, its `Name` tag `ray-<name>-head`). 63 also keeps a name a valid
 * DNS label and leaves room for whatever is named after the cluster.
 */
export const CLUSTER_NAME_MAX = 63;

/** What names are made of: lowercase letters and digits, single dashes between them. */
export const NAME_SAFE = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;

/** `text` in name-safe characters: lowercase, every other run of characters one dash. */
export function nameSafe(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
}

/** 8 hex digits of SHA-256: distinct texts get distinct hashes, the same text the same one. */
export function shortHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 8);
}

/**
 * `mcs-<module>-<metadata>-<run id>`, the run id being unique to the job (action/identity.ts):
 * Ray tags every instance with it, so the janitor finds leftovers by the `mcs-` prefix. A name
 * longer than CLUSTER_NAME_MAX, or not already name-safe, keeps a readable head (the module cut
 * to 16 characters, the level, the run id as far as it fits) and ends in a hash of the whole
 * name, so distinct jobs keep distinct names.
 */
export function clusterNameFor(module: string, metadata: string, runId: string): string {
  const name = `mcs-${module}-${metadata}-${runId}`;
  if (NAME_SAFE.test(name) && name.length <= CLUSTER_NAME_MAX) return name;
  const hash = shortHash(name);
  const shortModule = nameSafe(module).slice(0, 16).replace(/-+$/, "");
  const head = ["mcs", shortModule, nameSafe(metadata), nameSafe(runId)]
    .filter(Boolean)
    .join("-")
    .slice(0, CLUSTER_NAME_MAX - hash.length - 1)
    .replace(/-+$/, "");
  return `${head}-${hash}`;
}

/**
 * Where the plan lives on the head node (relative to the SSH user's home): a folder named after
 * the cluster, so unique to the job like the cluster name (module, level, job, run, attempt).
 */
export function remotePlanDir(clusterName: string): string {
  return clusterName;
}

export function clusterYamlPath(planDir: string): string {
  return path.join(planDir, "cluster.yaml");
}

/**
 * What the head's watchdog (pipeline/watchdog.py) is told. It tears the cluster down when the
 * driver has finished and nobody has followed the run for `idleMinutes`, when the runner's
 * heartbeat has been missing that long while no driver runs, and at `maxMinutes` of life;
 * keep-cluster leaves only the last.
 */
export interface WatchdogSettings {
  idleMinutes: number;
  maxMinutes: number;
  keepCluster: boolean;
}

/** The defaults: 15 idle minutes; GitHub's default job timeout (360 minutes) plus 30. */
export const WATCHDOG_DEFAULTS: WatchdogSettings = {
  idleMinutes: 15,
  maxMinutes: 390,
  keepCluster: false,
};

/** The watchdog's log on the head node, relative to the SSH user's home: beside driver.log. */
export function watchdogLogPath(clusterName: string): string {
  return `${remotePlanDir(clusterName)}/watchdog.log`;
}

/** The run's own SSH key (aws/keypair.ts): the private key file and its EC2 key pair's name. */
export interface RunSshKey {
  privateKeyFile: string;
  keyPairName: string;
}

/** Where the plan installs Ray on a node: a venv in the SSH user's home. */
export const NODE_VENV = "ray-venv";

/**
 * The commands that install the pinned Ray on a node booted from a stock Ubuntu or Debian image,
 * which has python3 but neither pip nor venv's ensurepip: python3-venv first (when missing), then
 * a venv with `ray[default]` and boto3, put first on PATH through ~/.bashrc, which Ray sources in
 * the `bash --login -i` of every later command (`ray start`, the watchdog's and the driver's
 * `python3`). A venv, not pip into the system Python (Ubuntu 24.04 refuses that: PEP 668).
 * A fresh instance's own apt runs (cloud-init, apt-daily) may hold apt's locks for a while:
 * `apt-get update` is tried again (it fails at once on its lock), `install` waits for dpkg's.
 * Each command is harmless to repeat (`ray up` reruns them when the config changes).
 */
export function rayInstallCommands(rayVersion: string): string[] {
  const apt = "sudo DEBIAN_FRONTEND=noninteractive apt-get";
  return [
    `python3 -c 'import ensurepip, venv' 2>/dev/null || {` +
      ` for try in 1 2 3 4 5 6; do ${apt} update -q && break; sleep 20; done;` +
      ` ${apt} -o DPkg::Lock::Timeout=600 install -y -q python3-venv; }`,
    `test -x ~/${NODE_VENV}/bin/python || python3 -m venv ~/${NODE_VENV}`,
    `grep -qsF '${NODE_VENV}/bin' ~/.bashrc || echo 'export PATH="$HOME/${NODE_VENV}/bin:$PATH"' >> ~/.bashrc`,
    `~/${NODE_VENV}/bin/python -m pip install -q --disable-pip-version-check "ray[default]==${rayVersion}" boto3`,
  ];
}

export function renderClusterYaml(
  mod: Module,
  clusterName: string,
  rayVersion: string,
  planDir: string,
  runId: string,
  sshKey?: RunSshKey,
  watchdog: WatchdogSettings = WATCHDOG_DEFAULTS,
): string {
  const source = path.basename(mod.clusterYamlPath);
  const cluster = structuredClone(mod.cluster);
  cluster.cluster_name = clusterName;
  const provider = cluster.provider as Record<string, unknown>;
  // `ray down` on AWS only stops instances unless told otherwise; stopped GPU nodes still cost.
  if (provider.type === "aws") provider.cache_stopped_nodes = false;
  if (provider.type === "aws" && sshKey) useRunSshKey(cluster, sshKey);
  if (provider.type === "aws") tagMaxLifetime(cluster, watchdog.maxMinutes, source);
  if (provider.type === "aws") requireImdsV2(cluster, source);

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
  // No Ray of the module's own: the pinned one first, so the module's setup commands find the
  // venv's python and pip first on PATH.
  if (pins.length === 0) {
    cluster.setup_commands = [
      ...rayInstallCommands(rayVersion),
      ...commands(cluster, "setup_commands", source),
    ];
  }
  const mounts = (cluster.file_mounts ?? {}) as Record<string, string>;
  const remote = `~/${remotePlanDir(clusterName)}`;
  cluster.file_mounts = {
    ...mounts,
    [`${remote}/deploy`]: path.join(planDir, "deploy"),
    // The watchdog (with attach.py, whose driver files it reads) is needed while `ray up` runs:
    // the plan itself is synced after it.
    [`${remote}/pipeline`]: path.join(planDir, "pipeline"),
  };
  const start = commands(cluster, "head_start_ray_commands", source);
  if (start.length === 0) {
    throw new InputError(
      "module",
      `${source}: head_start_ray_commands must list the commands that start Ray on the head (the pipeline starts its watchdog after them)`,
    );
  }
  cluster.head_start_ray_commands = [...start, watchdogCommand(clusterName, watchdog)];

  const file = clusterYamlPath(planDir);
  writeFileSync(
    file,
    `# Rendered by mcs-pipeline from ${source} for run ${runId}\n${stringify(cluster)}`,
  );
  return file;
}

/**
 * Starts the watchdog on the head with its settings, after Ray, detached from `ray up`'s SSH
 * session: a session of its own (setsid), hang-ups ignored (nohup), no descriptor of the session
 * kept open. The cluster name is name-safe, so nothing needs quoting.
 */
export function watchdogCommand(clusterName: string, watchdog: WatchdogSettings): string {
  const remote = `~/${remotePlanDir(clusterName)}`;
  return [
    `setsid nohup python3 ${remote}/pipeline/watchdog.py --cluster ${clusterName}`,
    `--plan ${remote} --idle-minutes ${watchdog.idleMinutes} --max-minutes ${watchdog.maxMinutes}`,
    ...(watchdog.keepCluster ? ["--keep-cluster"] : []),
    `>> ~/${watchdogLogPath(clusterName)} 2>&1 < /dev/null &`,
  ].join(" ");
}

/**
 * The run's key for every node: with `auth.ssh_private_key` set and `KeyName` in every node
 * type's node_config, Ray's AWS bootstrap (config.py `_configure_key_pair`) neither looks up nor
 * creates a key pair of its own (`ray-autoscaler_*`); the head's autoscaler launches workers with
 * the same KeyName.
 */
function useRunSshKey(cluster: Record<string, unknown>, key: RunSshKey): void {
  cluster.auth = {
    ...((cluster.auth ?? {}) as Record<string, unknown>),
    ssh_private_key: key.privateKeyFile,
  };
  const types = (cluster.available_node_types ?? {}) as Record<string, Record<string, unknown>>;
  for (const type of Object.values(types)) {
    type.node_config = {
      ...((type.node_config ?? {}) as Record<string, unknown>),
      KeyName: key.keyPairName,
    };
  }
}

/**
 * The cluster's lifetime (the watchdog's `--max-minutes`) as a tag on every node, which the janitor
 * honours (janitor/lifetime.ts). It is in every node type's node_config, so the head's autoscaler
 * tags the workers it launches too: Ray's AWS provider (node_provider.py `_merge_tag_specs`) adds
 * the tags of each TagSpecifications entry of ResourceType `instance` to its own instance tags
 * (`ray-cluster-name`, ...) and sends entries of other types as they are. A module's own tags stay;
 * a tag of the same key is replaced.
 */
function tagMaxLifetime(cluster: Record<string, unknown>, maxMinutes: number, source: string) {
  type TagSpecification = { ResourceType?: unknown; Tags?: { Key?: unknown }[] };
  const tag = { Key: LIFETIME_TAG, Value: lifetimeTagValue(maxMinutes) };
  const types = (cluster.available_node_types ?? {}) as Record<string, Record<string, unknown>>;
  for (const [name, type] of Object.entries(types)) {
    const config = (type.node_config ?? {}) as Record<string, unknown>;
    const specs = (config.TagSpecifications ?? []) as TagSpecification[];
    if (!Array.isArray(specs) || specs.some((s) => !Array.isArray(s?.Tags ?? []))) {
      throw new InputError(
        "module",
        `${source}: ${name}'s node_config.TagSpecifications must be a list of {ResourceType, Tags: [...]}`,
      );
    }
    const mine = (s: TagSpecification) => s?.ResourceType === "instance";
    const ours = (tags: TagSpecification["Tags"] = []) => [
      ...tags.filter((t) => t.Key !== LIFETIME_TAG),
      tag,
    ];
    type.node_config = {
      ...config,
      TagSpecifications: specs.some(mine)
        ? specs.map((s) => (mine(s) ? { ...s, Tags: ours(s.Tags) } : s))
        : [...specs, { ResourceType: "instance", Tags: ours() }],
    };
  }
}

/**
 * IMDSv2 on every node: instance metadata (and the nodes' role's credentials) only with a session
 * token, so a request forged through a performer's HTTP client gets none. The stack's roles launch
 * nothing else (`ec2:MetadataHttpTokens`). A module may raise the hop limit (2 for containers).
 */
function requireImdsV2(cluster: Record<string, unknown>, source: string): void {
  const types = (cluster.available_node_types ?? {}) as Record<string, Record<string, unknown>>;
  for (const [name, type] of Object.entries(types)) {
    const config = (type.node_config ?? {}) as Record<string, unknown>;
    const own = (config.MetadataOptions ?? {}) as Record<string, unknown>;
    if (own.HttpTokens !== undefined && own.HttpTokens !== "required") {
      throw new InputError(
        "module",
        `${source}: ${name} sets MetadataOptions.HttpTokens: ${String(own.HttpTokens)}; the nodes need IMDSv2: remove it or set it to required`,
      );
    }
    type.node_config = {
      ...config,
      MetadataOptions: { HttpEndpoint: "enabled", ...own, HttpTokens: "required" },
    };
  }
}

function commands(cluster: Record<string, unknown>, key: string, source: string): string[] {
  const value = cluster[key] ?? [];
  if (!Array.isArray(value) || value.some((c) => typeof c !== "string")) {
    throw new InputError("module", `${source}: ${key} must be a list of commands`);
  }
  return value as string[];
}

/**
 * Ray's own schema, from the installed Ray: the check `ray up` makes before any start (its
 * `_bootstrap_config`: `prepare_config` fills in the provider's defaults, then `validate_config`;
 * validating the file as written fails on the defaults it lacks). No cloud API is called. A
 * failure is one line: the offending key's path and the reason.
 */
export async function validateWithRaySchema(python: string, yamlFile: string, shown: string) {
  const check = [
    "import sys, yaml",
    "from ray.autoscaler._private.util import prepare_config, validate_config",
    "try:",
    "    validate_config(prepare_config(yaml.safe_load(open(sys.argv[1]))))",
    "except Exception as e:",
    "    where = '/'.join(str(p) for p in (getattr(e, 'absolute_path', None) or ()))",
    "    text = ' '.join(str(getattr(e, 'message', None) or e).split())",
    "    sys.exit((where + ': ' if where else '') + text)",
  ].join("\n");
  const result = await getExecOutput(python, ["-c", check, yamlFile], {
    silent: true,
    ignoreReturnCode: true,
  });
  if (result.exitCode !== 0) {
    const reason =
      result.stderr
        .split("\n")
        .filter((l) => l.trim())
        .pop() ?? `exit ${result.exitCode}`;
    throw new InputError("module", `${shown} does not match Ray's cluster schema: ${reason}`);
  }
}
