/**
 * The launcher tests' cluster: a Ray cluster-launcher YAML for Ray's `local` provider whose only
 * node is the sshd fixture (DESIGN §6), a workspace for the action that holds it in place of the
 * module's AWS YAML, and the client-side `ray` CLI with a clean environment.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Document } from "yaml";
import { pinnedRayVersion } from "../../src/ray/install.js";
import { createBucket, listKeys, readObject } from "./moto.js";
import {
  execCommand,
  freePorts,
  type ExecOptions,
  type ExecResult,
  type SshdFixture,
} from "./sshd.js";
import { copyWorkspace, REPO } from "./workspace.js";

export interface LocalClusterOptions {
  /** Default `mcs-test-<random>`: the local provider keeps per-name state on the client. */
  clusterName?: string;
  /** CPUs the head offers Ray (default 2). */
  numCpus?: number;
  /** The Ray the setup command pins; default the repo's pin (pipeline/requirements.txt). */
  rayVersion?: string;
  /** Default: `pip install -q "ray[default]==<pin>"`, already satisfied in the venv (no network). */
  setupCommands?: string[];
  /** Worker nodes (multinode.ts), listed in `worker_ips`; the head's autoscaler starts them. */
  workers?: SshdFixture[];
}

export interface LocalClusterConfig {
  cluster_name: string;
  max_workers: number;
  provider: { type: "local"; head_ip: string; worker_ips: string[] };
  auth: { ssh_user: string; ssh_private_key: string; ssh_proxy_command: string };
  file_mounts: Record<string, string>;
  cluster_synced_files: string[];
  initialization_commands: string[];
  setup_commands: string[];
  head_setup_commands: string[];
  worker_setup_commands: string[];
  head_start_ray_commands: string[];
  worker_start_ray_commands: string[];
}

/** A local-provider cluster config for the node, with free ports for this head's Ray. */
export async function localClusterConfig(
  node: SshdFixture,
  options: LocalClusterOptions = {},
): Promise<LocalClusterConfig> {
  const version = options.rayVersion ?? pinnedRayVersion(REPO);
  const [gcs, dashboard, client, agent] = await freePorts(4);
  const workers = options.workers ?? [];
  const cpus = `--num-cpus=${options.numCpus ?? 2}`;
  return {
    cluster_name: options.clusterName ?? `mcs-test-${randomBytes(4).toString("hex")}`,
    max_workers: workers.length,
    provider: { type: "local", head_ip: node.host, worker_ips: workers.map((w) => w.host) },
    auth: {
      ssh_user: node.user,
      ssh_private_key: node.privateKey,
      ssh_proxy_command: node.proxyCommand,
    },
    file_mounts: {},
    cluster_synced_files: [],
    initialization_commands: [],
    setup_commands: options.setupCommands ?? [`pip install -q "ray[default]==${version}"`],
    head_setup_commands: [],
    worker_setup_commands: [],
    head_start_ray_commands: [
      [
        // Ray 2.60's autoscaler v2 counts an on-premise head as one of `worker_ips`' node type
        // and so starts one worker too few; v1 starts them all.
        ...(workers.length ? ["RAY_enable_autoscaler_v2=0"] : []),
        `${node.venv}/bin/ray start --head`,
        `--port=${gcs}`,
        `--dashboard-port=${dashboard}`,
        `--ray-client-server-port=${client}`,
        `--dashboard-agent-listen-port=${agent}`,
        // With workers, the head's autoscaler starts them (`ray up` brings up the head only).
        ...(workers.length
          ? [`--node-ip-address=${node.host}`, "--autoscaling-config=~/ray_bootstrap_config.yaml"]
          : []),
        cpus,
        "--disable-usage-stats",
        "--include-dashboard=false",
      ].join(" "),
    ],
    // Each worker's address and agent port come from its sshd (multinode.ts).
    worker_start_ray_commands: workers.length ? [workerStart(node, gcs!, cpus)] : [],
  };
}

/**
 * A worker's `ray start`, and its end as a machine: `ray down` on Ray's local provider stops Ray
 * on the head only, where EC2 terminates the workers. So the worker's raylet ends itself once the
 * head's GCS has been gone 5 s (Ray's default: 60 s), `ray start --block` (detached from the SSH
 * session) returns, and the node "powers off": SIGKILL to every process of its PID namespace but
 * its init, the node's sshd. A worker whose Ray is killed (a lost node) skips that: nothing of
 * its Ray is left to end, and the head's autoscaler starts it again.
 */
function workerStart(head: SshdFixture, gcs: number, cpus: string): string {
  const start = [
    `RAY_gcs_rpc_server_reconnect_timeout_s=5 ${head.venv}/bin/ray start --block`,
    `--address=$RAY_HEAD_IP:${gcs} --node-ip-address=$MCS_NODE_IP`,
    `--dashboard-agent-listen-port=$MCS_AGENT_PORT ${cpus} --disable-usage-stats`,
  ].join(" ");
  return `setsid nohup sh -c '${start}; kill -9 -1' > /tmp/ray/ray-start.log 2>&1 < /dev/null &`;
}

/** Writes `config` as YAML to `file` (directories created); returns `file`. */
export function writeClusterYaml(file: string, config: LocalClusterConfig): string {
  const doc = new Document(config);
  doc.commentBefore =
    " Test cluster: Ray's local node provider; the only node is the fixture's sshd on\n" +
    " 127.0.0.1 (reached through ssh_proxy_command), with Ray already installed.";
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, doc.toString({ lineWidth: 0 }));
  return file;
}

/** The environment for the client-side `ray` CLI: the venv first, no AWS settings, own TMPDIR. */
export function rayClientEnv(node: SshdFixture): NodeJS.ProcessEnv {
  return {
    PATH: `${node.venv}/bin:${process.env.PATH ?? "/usr/bin:/bin"}`,
    HOME: process.env.HOME,
    LANG: process.env.LANG ?? "C.UTF-8",
    // Ray's local-provider cluster state and config cache go under TMPDIR.
    TMPDIR: node.clientTmp,
    RAY_USAGE_STATS_ENABLED: "0",
  };
}

/** Runs the venv's `ray` CLI on this machine against the node (e.g. up, exec, down). */
export function runRay(
  node: SshdFixture,
  args: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  return execCommand(path.join(node.venv, "bin", "ray"), args, {
    env: rayClientEnv(node),
    ...options,
  });
}

export interface ActionWorkspace {
  /** GITHUB_WORKSPACE: configs/, deploy_files/, scenes/, autoscaler/ray_<module>_aws.yaml. */
  dir: string;
  module: string;
  /** The bucket (created in moto) every MCS config of the workspace names. */
  bucket: string;
  s3Endpoint: string;
  /** The module's cluster YAML (local provider) in the workspace. */
  clusterYaml: string;
  cluster: LocalClusterConfig;
  /** The MCS configs whose s3_bucket was set. */
  mcsConfigs: string[];
  /** Keys under `prefix` in the workspace's bucket. */
  listKeys(prefix?: string): Promise<string[]>;
  readObject(key: string): Promise<string>;
}

export interface ActionWorkspaceOptions {
  node: SshdFixture;
  /** moto's URL (the bucket is created there). */
  s3Endpoint: string;
  /** Default `mcs-test-<random>`. */
  bucket?: string;
  /** Default demo. */
  module?: string;
  cluster?: LocalClusterOptions;
  /** A workspace already made (e.g. mcsteam.ts's), used in place of fresh copies. */
  dir?: string;
}

/**
 * A temp workspace for the action: copies of the repo's configs/, deploy_files/ and scenes/,
 * `autoscaler/ray_<module>_aws.yaml` replaced by the local-provider YAML, and every MCS config's
 * `s3_bucket` set to a new bucket in moto. Removed by workspace.ts's removeTemps().
 */
export async function makeActionWorkspace(
  options: ActionWorkspaceOptions,
): Promise<ActionWorkspace> {
  const module = options.module ?? "demo";
  const bucket = options.bucket ?? `mcs-test-${randomBytes(4).toString("hex")}`;
  const dir = options.dir ?? copyWorkspace(["configs", "deploy_files", "scenes"]);
  const cluster = await localClusterConfig(options.node, options.cluster);
  const clusterYaml = writeClusterYaml(
    path.join(dir, "autoscaler", `ray_${module}_aws.yaml`),
    cluster,
  );

  const configs = path.join(dir, "configs");
  const mcsConfigs = readdirSync(configs)
    .filter((f) => /^mcs_config_.+\.ini$/.test(f))
    .map((f) => path.join(configs, f));
  for (const file of mcsConfigs) {
    const text = readFileSync(file, "utf8");
    if (!/^s3_bucket\s*=/m.test(text)) throw new Error(`${file} has no s3_bucket`);
    writeFileSync(file, text.replace(/^s3_bucket\s*=.*$/gm, `s3_bucket = ${bucket}`));
  }
  await createBucket(options.s3Endpoint, bucket);

  return {
    dir,
    module,
    bucket,
    s3Endpoint: options.s3Endpoint,
    clusterYaml,
    cluster,
    mcsConfigs,
    listKeys: (prefix = "") => listKeys(options.s3Endpoint, bucket, prefix),
    readObject: (key) => readObject(options.s3Endpoint, bucket, key),
  };
}
