/**
 * One cluster per job, and the cluster YAML as the plan renders it for Ray's AWS provider:
 *  - the job's run id (src/action/identity.ts) and the names built from it (src/cluster.ts):
 *    distinct for the jobs of one run, deterministic, hashed when too long, within Ray's and
 *    EC2's limits, and always under the janitor's `mcs-` prefix;
 *  - through the AWS target's plan (engine preparePlan → awsTarget place/stage →
 *    renderClusterYaml): `cache_stopped_nodes: false` forced whatever the module says, the
 *    cluster's Ray pinned equal to the client's, and the head's watchdog started after Ray with
 *    the action's settings.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { JOB_TAG_MAX, jobRunId, jobTag } from "../src/action/identity.js";
import {
  CLUSTER_NAME_MAX,
  clusterNameFor,
  clusterYamlPath,
  NAME_SAFE,
  rayInstallCommands,
  remotePlanDir,
  watchdogCommand,
  watchdogLogPath,
} from "../src/cluster.js";
import { preparePlan, type Environment } from "../src/engine.js";
import { checkPrefix, PIPELINE_PREFIX } from "../src/janitor/find.js";
import { pinnedRayVersion } from "../src/ray/install.js";
import { parseRequest, type Metadata } from "../src/request.js";
import { awsTarget, type AwsSettings } from "../src/targets/aws.js";
import {
  copyWorkspace,
  expectInputError,
  makeTemp,
  REPO,
  removeTemps,
} from "./support/workspace.js";

afterAll(removeTemps);

const RUN = { GITHUB_RUN_ID: "18170960955", GITHUB_RUN_ATTEMPT: "1", GITHUB_JOB: "eval" };
const PIN = pinnedRayVersion(REPO);

/** The cluster name and head-node folder of a job with this environment and job key. */
function namesOf(env: NodeJS.ProcessEnv, key: string, module = "demo", level = "level2") {
  const runId = jobRunId(env, key);
  const cluster = clusterNameFor(module, level, runId);
  return { runId, cluster, folder: remotePlanDir(cluster) };
}

/** Every limit a cluster name meets, with what Ray and we name after it. */
function expectWithinLimits(name: string) {
  expect(name.length, name).toBeLessThanOrEqual(CLUSTER_NAME_MAX);
  expect(name, "lowercase letters, digits, single dashes").toMatch(NAME_SAFE);
  // The janitor's filter: `ray-cluster-name` starting with `mcs-` (and its prefix rules).
  expect(name.startsWith(PIPELINE_PREFIX)).toBe(true);
  expect(() => checkPrefix(name)).not.toThrow();
  // EC2: security group names (Ray's `ray-autoscaler-<name>`) and key pair names (the run's
  // own, named after the cluster) ≤ 255; tag values (`ray-cluster-name`, Ray's `Name` tag
  // `ray-<name>-worker`) ≤ 256. SSH ControlPath and Ray's state files use a hash of the name.
  expect(`ray-autoscaler-${name}`.length).toBeLessThanOrEqual(255);
  expect(`ray-${name}-worker`.length).toBeLessThanOrEqual(256);
  // IAM role session names ([\w+=,.@-]{2,64}) are cut at 64 from `mcs-teardown-<name>`.
  expect(name).toMatch(/^[\w+=,.@-]+$/);
}

describe("jobRunId: the run id is unique to the job", () => {
  it("on a runner: <run id>-<attempt>-<job>-<job key>", () => {
    expect(jobRunId(RUN, "51725241954")).toBe("18170960955-1-eval-51725241954");
    expect(jobRunId(RUN, "")).toBe("18170960955-1-eval");
    expect(jobRunId({ ...RUN, GITHUB_RUN_ATTEMPT: undefined }, "")).toBe("18170960955-1-eval");
    expect(jobRunId({ ...RUN, GITHUB_JOB: undefined }, "7")).toBe("18170960955-1-7");
  });

  it("a job-key default nothing evaluated (`${{ ... }}` as written) counts as no key", () => {
    expect(jobRunId(RUN, "${{ job.check_run_id || strategy.job-index }}")).toBe(
      "18170960955-1-eval",
    );
  });

  it("outside a runner: a fresh time-stamped id", () => {
    expect(jobRunId({}, "")).toMatch(/^\d{8}-\d{6}-[0-9a-f]{4}$/);
  });

  it("a three-job matrix of one run: three run ids, three clusters, three head-node folders", () => {
    // As GitHub gives the default job-key: each job's check-run id ...
    const byCheckRun = ["51725241954", "51725241955", "51725241956"].map((k) => namesOf(RUN, k));
    // ... or, on a runner without one, the job's position in its matrix ...
    const byIndex = ["0", "1", "2"].map((k) => namesOf(RUN, k));
    // ... or nothing at all (act): the jobs of scheduled-eval.yml call eval.yml per level.
    const byLevel = (["level1", "level2", "oracle"] as Metadata[]).map((l) =>
      namesOf(RUN, "", "demo", l),
    );
    for (const jobs of [byCheckRun, byIndex, byLevel]) {
      for (const part of ["cluster", "folder"] as const) {
        expect(new Set(jobs.map((j) => j[part])).size, part).toBe(3);
      }
      for (const j of jobs) expectWithinLimits(j.cluster);
    }
    expect(byCheckRun.map((j) => j.cluster)).toEqual([
      "mcs-demo-level2-18170960955-1-eval-51725241954",
      "mcs-demo-level2-18170960955-1-eval-51725241955",
      "mcs-demo-level2-18170960955-1-eval-51725241956",
    ]);
    // The run id (and so the summary key) is the job's own wherever the runner gives a key;
    // without one, the level in the summary key's prefix keeps the summaries apart.
    expect(new Set(byCheckRun.map((j) => j.runId)).size).toBe(3);
    expect(new Set(byIndex.map((j) => j.runId)).size).toBe(3);
    expect(byLevel.map((j) => j.cluster)).toEqual([
      "mcs-demo-level1-18170960955-1-eval",
      "mcs-demo-level2-18170960955-1-eval",
      "mcs-demo-oracle-18170960955-1-eval",
    ]);
  });

  it("a re-run (attempt 2) of the same job gets a cluster of its own", () => {
    const first = namesOf(RUN, "0");
    const again = namesOf({ ...RUN, GITHUB_RUN_ATTEMPT: "2" }, "0");
    expect(again.cluster).not.toBe(first.cluster);
    expect(again.cluster).toBe("mcs-demo-level2-18170960955-2-eval-0");
  });

  it("two jobs of one workflow with different ids stay apart", () => {
    expect(namesOf({ ...RUN, GITHUB_JOB: "eval" }, "").cluster).not.toBe(
      namesOf({ ...RUN, GITHUB_JOB: "smoke" }, "").cluster,
    );
  });
});

describe("jobTag: long or unsafe job identities are hashed, deterministically", () => {
  const matrix = (shard: number) =>
    JSON.stringify({ module: "opics", metadata: "oracle", scenes: "scenes/full", shard }, null, 2);

  it("a matrix as JSON: cut to JOB_TAG_MAX, ending in a hash; the same job, the same tag", () => {
    const tag = jobTag("evaluate_all_modules", matrix(1));
    expect(tag.length).toBeLessThanOrEqual(JOB_TAG_MAX);
    expect(tag).toMatch(/^evaluate-all-modules-[a-z0-9-]*-?[0-9a-f]{8}$/);
    expect(jobTag("evaluate_all_modules", matrix(1))).toBe(tag);
    expect(jobRunId(RUN, matrix(1))).toBe(jobRunId(RUN, matrix(1)));
  });

  it("keys alike up to the cut, or alike once made name-safe, still differ", () => {
    const tags = [1, 2, 3].map((shard) => jobTag("evaluate_all_modules", matrix(shard)));
    expect(new Set(tags).size).toBe(3);
    expect(jobTag("Eval", "")).not.toBe(jobTag("eval", ""));
    expect(jobTag("eval_1", "")).not.toBe(jobTag("eval-1", ""));
    expect(jobTag("eval", "a.b")).not.toBe(jobTag("eval", "a-b"));
    expect(jobTag("eval", "a.b")).toMatch(/^eval-a-b-[0-9a-f]{8}$/);
  });

  it("name-safe and short: as given", () => {
    expect(jobTag("eval", "51725241954")).toBe("eval-51725241954");
    expect(jobTag("", "")).toBe("");
    expect(jobTag("x".repeat(JOB_TAG_MAX), "")).toBe("x".repeat(JOB_TAG_MAX));
    expect(jobTag("x".repeat(JOB_TAG_MAX + 1), "")).toMatch(/^x{23}-[0-9a-f]{8}$/);
  });

  it("nothing name-safe at all: the hash alone", () => {
    expect(jobTag("", "{}")).toMatch(/^[0-9a-f]{8}$/);
  });
});

describe("clusterNameFor: within the limits, hashed when too long", () => {
  it("short and safe: mcs-<module>-<level>-<run id>, as is", () => {
    expect(clusterNameFor("demo", "oracle", "18170960955-1-eval-0")).toBe(
      "mcs-demo-oracle-18170960955-1-eval-0",
    );
  });

  it("a long module and job: a readable start, the run id as far as it fits, a hash", () => {
    const runId = jobRunId({ ...RUN, GITHUB_JOB: "evaluation" }, "51725241954");
    const name = clusterNameFor("opics-interactive-agents", "level2", runId);
    expectWithinLimits(name);
    expect(name).toMatch(/^mcs-opics-interactiv-level2-18170960955-1-[a-z0-9-]*[0-9a-f]{8}$/);
    expect(clusterNameFor("opics-interactive-agents", "level2", runId)).toBe(name);
    // The same long module, another job: another name.
    const other = jobRunId({ ...RUN, GITHUB_JOB: "evaluation" }, "51725241955");
    expect(clusterNameFor("opics-interactive-agents", "level2", other)).not.toBe(name);
  });

  it("module names the request allows but names do not (uppercase, _) are made safe", () => {
    const name = clusterNameFor("Team_X", "level1", "18170960955-1-eval");
    expectWithinLimits(name);
    expect(name).toMatch(/^mcs-team-x-level1-18170960955-1-eval-[0-9a-f]{8}$/);
    expect(clusterNameFor("team-x", "level1", "18170960955-1-eval")).not.toBe(name);
  });

  it("whatever the inputs, every limit holds", () => {
    const modules = ["demo", "a", "A".repeat(200), "opics_v2-interactive", "x-".repeat(60) + "y"];
    const ids = [
      jobRunId(RUN, ""),
      jobRunId({ ...RUN, GITHUB_RUN_ID: "9".repeat(40), GITHUB_RUN_ATTEMPT: "99" }, "1"),
      jobRunId({ ...RUN, GITHUB_JOB: "j".repeat(100) }, matrix(7)),
      jobRunId({}, ""),
    ];
    const seen = new Set<string>();
    for (const module of modules) {
      for (const level of ["level1", "level2", "oracle"]) {
        for (const runId of ids) {
          const name = clusterNameFor(module, level, runId);
          expectWithinLimits(name);
          expect(remotePlanDir(name)).toBe(name);
          seen.add(name);
        }
      }
    }
    expect(seen.size).toBe(modules.length * 3 * ids.length);
  });

  function matrix(shard: number) {
    return JSON.stringify({ scenes: "scenes/full", shard });
  }
});

// ── the rendered cluster YAML, through the AWS target ─────────────────────────────────────────

const YAML = "autoscaler/ray_demo_aws.yaml";

/** A workspace whose demo cluster YAML is `edit`ed, planned for AWS as the action plans it. */
function planFor(
  edit: (yaml: string) => string,
  options: Partial<Pick<AwsSettings, "keepCluster" | "watchdog">> & {
    rayVersion?: string;
    runId?: string;
  } = {},
) {
  const ws = copyWorkspace();
  const file = path.join(ws, YAML);
  writeFileSync(file, edit(readFileSync(file, "utf8")));
  const env: Environment = {
    toolRoot: REPO,
    workspace: ws,
    venvDir: path.join(makeTemp("mcs-venv-"), "venv"),
    rayVersion: options.rayVersion,
    log: () => undefined,
  };
  const target = awsTarget({
    roleArn: "arn:aws:iam::123456789012:role/mcs-eval",
    region: "us-east-1",
    durationSeconds: 3600,
    keepCluster: options.keepCluster ?? false,
    watchdog: options.watchdog,
    workDir: makeTemp("mcs-work-"),
  });
  const request = parseRequest({ module: "demo", metadata: "level1", dryRun: "true" }, "aws");
  return () => {
    const plan = preparePlan(request, env, target, options.runId ?? "18170960955-1-eval-0");
    const text = readFileSync(clusterYamlPath(plan.dir), "utf8");
    return { plan, text, cluster: parseYaml(text) as Record<string, unknown> };
  };
}

const provider = (cluster: Record<string, unknown>) => cluster.provider as Record<string, unknown>;
const setup = (cluster: Record<string, unknown>) => cluster.setup_commands as string[];

describe("the rendered YAML: ray down terminates AWS instances", () => {
  it.each([
    [
      "says True",
      (y: string) => y.replace(/cache_stopped_nodes: False/, "cache_stopped_nodes: True"),
    ],
    [
      "says nothing (Ray's default is True)",
      (y: string) => y.replace(/^.*cache_stopped_nodes.*$/m, ""),
    ],
    ["says False", (y: string) => y],
  ])("cache_stopped_nodes: false when the module's YAML %s", (_, edit) => {
    const { plan, cluster, text } = planFor(edit)();
    expect(provider(cluster).type).toBe("aws");
    expect(provider(cluster).cache_stopped_nodes).toBe(false);
    expect(text).toMatch(/^ {2}cache_stopped_nodes: false$/m);
    // And the name the plan reports is the one Ray gets.
    expect(cluster.cluster_name).toBe(plan.cluster_name);
    expect(plan.cluster_name).toBe("mcs-demo-level1-18170960955-1-eval-0");
  });

  it("the deploy files and the driver are mounted in the job's own head-node folder, named after the cluster", () => {
    const { cluster, plan } = planFor((y) => y)();
    expect(cluster.file_mounts).toEqual({
      "~/mcs-demo-level1-18170960955-1-eval-0/deploy": path.join(plan.dir, "deploy"),
      // pipeline/ before the plan's own sync: the watchdog starts during `ray up`.
      "~/mcs-demo-level1-18170960955-1-eval-0/pipeline": path.join(plan.dir, "pipeline"),
    });
    expect(existsSync(path.join(plan.dir, "pipeline", "watchdog.py"))).toBe(true);
    expect(existsSync(path.join(plan.dir, "pipeline", "attach.py"))).toBe(true);
  });
});

describe("the rendered YAML: IMDSv2 on every node", () => {
  const options = (cluster: Record<string, unknown>) =>
    Object.values(cluster.available_node_types as Record<string, { node_config: object }>).map(
      (t) => (t.node_config as { MetadataOptions?: unknown }).MetadataOptions,
    );
  const workerOptions = (line: string) => (y: string) =>
    y.replace(
      "      IamInstanceProfile: { Name: ray-autoscaler-v1 }",
      `      IamInstanceProfile: { Name: ray-autoscaler-v1 }\n      MetadataOptions: ${line}`,
    );

  it("requires session tokens on every node type (the stack's roles launch nothing else)", () => {
    const { cluster } = planFor((y) => y)();
    expect(options(cluster)).toEqual([
      { HttpEndpoint: "enabled", HttpTokens: "required" },
      { HttpEndpoint: "enabled", HttpTokens: "required" },
    ]);
  });

  it("keeps a module's hop limit (containers need 2)", () => {
    const { cluster } = planFor(workerOptions("{ HttpPutResponseHopLimit: 2 }"))();
    expect(options(cluster)[1]).toEqual({
      HttpEndpoint: "enabled",
      HttpPutResponseHopLimit: 2,
      HttpTokens: "required",
    });
  });

  it("refuses a module that turns IMDSv2 off, in one line naming the node type", () => {
    expectInputError(
      planFor(workerOptions("{ HttpTokens: optional }")),
      "module",
      /^ray_demo_aws\.yaml: ray\.worker\.default sets MetadataOptions\.HttpTokens: optional; the nodes need IMDSv2: remove it or set it to required$/,
    );
  });
});

describe("the rendered YAML: the head's watchdog", () => {
  const NAME = "mcs-demo-level1-18170960955-1-eval-0";
  const start = (cluster: Record<string, unknown>) => cluster.head_start_ray_commands as string[];

  it("starts last on the head, after Ray, detached, with the defaults and its log in the plan folder", () => {
    const { cluster } = planFor((y) => y)();
    expect(start(cluster)).toEqual([
      "ray stop",
      "ray start --head --port=6379 --autoscaling-config=~/ray_bootstrap_config.yaml",
      `setsid nohup python3 ~/${NAME}/pipeline/watchdog.py --cluster ${NAME} --plan ~/${NAME}` +
        ` --idle-minutes 15 --max-minutes 390 >> ~/${NAME}/watchdog.log 2>&1 < /dev/null &`,
    ]);
    expect(watchdogLogPath(NAME)).toBe(`${NAME}/watchdog.log`);
    // Only the head: workers run no watchdog.
    expect(cluster.worker_start_ray_commands).toEqual([
      "ray stop",
      "ray start --address=$RAY_HEAD_IP:6379",
    ]);
  });

  it("carries the inputs: fractions of a minute, the maximum lifetime, keep-cluster", () => {
    const { cluster } = planFor((y) => y, {
      keepCluster: true,
      watchdog: { idleMinutes: 0.25, maxMinutes: 720 },
    })();
    expect(start(cluster).at(-1)).toBe(
      watchdogCommand(NAME, { idleMinutes: 0.25, maxMinutes: 720, keepCluster: true }),
    );
    expect(start(cluster).at(-1)).toContain(
      " --idle-minutes 0.25 --max-minutes 720 --keep-cluster >> ",
    );
  });

  it("a module YAML that starts no Ray on the head is refused, naming head_start_ray_commands", () => {
    for (const edit of [
      (y: string) => y.replace(/^head_start_ray_commands:\n( {2}- .*\n)+/m, ""),
      (y: string) =>
        y.replace(/^head_start_ray_commands:\n( {2}- .*\n)+/m, "head_start_ray_commands: []\n"),
    ]) {
      expectInputError(
        planFor(edit),
        "module",
        /^ray_demo_aws\.yaml: head_start_ray_commands must list the commands that start Ray on the head/,
      );
    }
  });
});

describe("the rendered YAML: the cluster's Ray equals the client's", () => {
  const pinned =
    (version: string, list = "setup_commands") =>
    (y: string) =>
      y.replace(
        /^setup_commands: \[\]$/m,
        list === "setup_commands"
          ? `setup_commands:\n  - pip install -q "ray[default]==${version}" boto3`
          : `setup_commands: []\n${list}:\n  - pip install -q ray==${version}`,
      );

  it("no pin in the module: the client's version is installed, in a venv first on PATH, on a stock image too", () => {
    const { cluster } = planFor((y) => y)();
    expect(setup(cluster)).toEqual(rayInstallCommands(PIN));
    expect(setup(cluster)).toEqual([
      // What a stock Ubuntu/Debian image lacks (test/bare-node.test.ts runs these on one).
      "python3 -c 'import ensurepip, venv' 2>/dev/null ||" +
        " { for try in 1 2 3 4 5 6; do sudo DEBIAN_FRONTEND=noninteractive apt-get update -q && break; sleep 20; done;" +
        " sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q python3-venv; }",
      "test -x ~/ray-venv/bin/python || python3 -m venv ~/ray-venv",
      `grep -qsF 'ray-venv/bin' ~/.bashrc || echo 'export PATH="$HOME/ray-venv/bin:$PATH"' >> ~/.bashrc`,
      `~/ray-venv/bin/python -m pip install -q --disable-pip-version-check "ray[default]==${PIN}" boto3`,
    ]);
  });

  it("no pin, setup commands of the module's own: they run after Ray's, with the venv first on PATH", () => {
    const { cluster } = planFor((y) =>
      y.replace(
        /^setup_commands: \[\]$/m,
        "setup_commands:\n  - pip install -q machine-common-sense",
      ),
    )();
    expect(setup(cluster)).toEqual([
      ...rayInstallCommands(PIN),
      "pip install -q machine-common-sense",
    ]);
  });

  it("a pin equal to the client's: kept, nothing added", () => {
    const { cluster } = planFor(pinned(PIN))();
    expect(setup(cluster)).toEqual([`pip install -q "ray[default]==${PIN}" boto3`]);
  });

  it.each([
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "initialization_commands",
  ])(
    "another pin in %s: refused before anything starts, naming ray-version and both versions",
    (list) => {
      expectInputError(
        planFor(pinned("2.9.3", list)),
        "ray-version",
        new RegExp(
          `^ray_demo_aws\\.yaml installs Ray 2\\.9\\.3 on the cluster but the client is Ray ${PIN.replace(/\./g, "\\.")}: make them equal$`,
        ),
      );
    },
  );

  it("the ray-version input must equal the module's pin too", () => {
    expectInputError(
      planFor(pinned(PIN), { rayVersion: "2.59.0" }),
      "ray-version",
      new RegExp(
        `installs Ray ${PIN.replace(/\./g, "\\.")} on the cluster but the client is Ray 2\\.59\\.0`,
      ),
    );
    const { cluster } = planFor(pinned("2.59.0"), { rayVersion: "2.59.0" })();
    expect(setup(cluster)).toEqual([`pip install -q "ray[default]==2.59.0" boto3`]);
  });
});
