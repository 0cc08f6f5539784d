/**
 * The workflows under a real runner: nektos/act (built from the Go module proxy by
 * scripts/tools.mjs) in host mode (`-P ubuntu-latest=-self-hosted`), every step a process on this
 * machine, node24 actions on Node 24 (.tools/node24 first on PATH, the node act runs them with).
 *
 * No network: act's own checkout copies the working tree (`actions/checkout` of this repository
 * is never fetched), the third-party actions the jobs use are the stand-ins in test/act/actions
 * (`--local-repository`), AWS and OIDC are loopback fixtures, and every run is checked to have
 * resolved no action remotely and pulled no image.
 *
 * act logs JSON (`--json`): each step output is a `set-output` entry carrying its job's name, so
 * the outputs each job reports are read from the log. (act logs no job-level outputs; the
 * workflows map their jobs' outputs straight from these steps, as workflows.test.ts checks.)
 */
import { execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  DescribeInstancesCommand,
  EC2Client,
  RunInstancesCommand,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLoopbackAws, type LoopbackAws } from "./support/loopback.js";
import { TEST_KEYS, TEST_REGION } from "./support/moto.js";
import { pinnedRef } from "./support/pins.js";
import { NODE24, testNode } from "./support/runner.js";
import { VENV } from "./support/sshd.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

const ACT = path.join(REPO, ".tools/bin/act");
const ACT_VERSION = "0.2.89";
const NODE24_VERSION = "v24.21.0";
const REPOSITORY = "mcs-org/mcs-pipeline";
/** Third-party actions the jobs run here use, as the workflows pin them, and their stand-ins. */
const SETUP_PYTHON = pinnedRef("actions/setup-python");
const UPLOAD_ARTIFACT = pinnedRef("actions/upload-artifact");
const STAND_INS: Record<string, string> = {
  [SETUP_PYTHON]: "test/act/actions/setup-python",
  [UPLOAD_ARTIFACT]: "test/act/actions/upload-artifact",
};
const ACT_TIMEOUT_MS = 180_000;
const SCENES = readdirSync(path.join(REPO, "scenes/subset")).filter((f) => f.endsWith(".json"));

/** One entry of act's JSON log. */
interface ActEntry {
  msg: string;
  level?: string;
  /** The job's display name, padded by act: `<caller job>/<workflow>/<job>` in a called workflow. */
  job?: string;
  jobID?: string;
  step?: string;
  stepID?: string[];
  stage?: string;
  /** A line the step printed. */
  raw_output?: boolean;
  command?: string;
  name?: string;
  arg?: string;
  jobResult?: string;
  stepResult?: string;
  /** A step's job summary (`command: summary`). */
  content?: string;
}

interface ActRun {
  code: number | null;
  stdout: string;
  stderr: string;
  entries: ActEntry[];
  ms: number;
  artifacts: string;
  /** Each job's result (`success`, `failure`), by job name (act pads it: trimmed here). */
  jobs: Record<string, string>;
  /** Outputs each step set, by job name, then `<step id>.<output>`. */
  outputs: Record<string, Record<string, string>>;
  /** act's log of each job: the lines its steps printed, and act's own (commands, results). */
  lines: Record<string, string[]>;
  /** The job summary (GITHUB_STEP_SUMMARY) each job's steps wrote, by job name. */
  summaries: Record<string, string>;
}

interface ActOptions {
  /** The workflow file, relative to the working directory (or absolute). */
  workflow: string;
  event: string;
  payload: Record<string, unknown>;
  job?: string;
  /** act's working directory: the repository it checks out (default this checkout). */
  workdir?: string;
  env?: Record<string, string>;
  vars?: Record<string, string>;
  runId?: string;
}

let runCount = 0;

/** Runs act on one workflow; the event payload is written to a file (`-e`). */
async function act(options: ActOptions): Promise<ActRun> {
  const dir = makeTemp("mcs-act-");
  const eventFile = path.join(dir, "event.json");
  writeFileSync(eventFile, JSON.stringify(options.payload));
  const artifacts = path.join(dir, "artifacts");
  const runId = options.runId ?? String(7_000_000_000 + ++runCount);
  const args = [
    options.event,
    "--workflows",
    options.workflow,
    ...(options.job ? ["--job", options.job] : []),
    "--platform",
    "ubuntu-latest=-self-hosted",
    "--eventpath",
    eventFile,
    "--json",
    "--no-cache-server",
    "--action-cache-path",
    path.join(dir, "cache"),
    ...Object.entries(STAND_INS).flatMap(([uses, local]) => [
      "--local-repository",
      `${uses}=${path.join(REPO, local)}`,
    ]),
    // Without a GITHUB_TOKEN secret act asks `gh auth token`.
    "--secret",
    "GITHUB_TOKEN=act-test-token",
    "--env",
    `GITHUB_RUN_ID=${runId}`,
    "--env",
    "GITHUB_RUN_ATTEMPT=1",
    "--env",
    `GITHUB_REPOSITORY=${REPOSITORY}`,
    ...Object.entries(options.vars ?? {}).flatMap(([k, v]) => ["--var", `${k}=${v}`]),
  ];
  // act hands its own environment to every step: a clean one, not the test process's.
  const env: NodeJS.ProcessEnv = {
    PATH: [path.dirname(NODE24), process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin"].join(":"),
    HOME: process.env.HOME,
    LANG: process.env.LANG ?? "C.UTF-8",
    TMPDIR: dir,
    ACT_DISABLE_VERSION_CHECK: "1",
    MCS_VENV: VENV,
    // A folder that does not exist: a `cache: pip` with nothing installed fails, as on GitHub.
    PIP_CACHE_DIR: path.join(dir, "pip-cache"),
    ACT_STAND_IN_ARTIFACTS: artifacts,
    AWS_EC2_METADATA_DISABLED: "true",
    ...options.env,
  };
  const start = performance.now();
  const child = spawn(ACT, args, {
    cwd: options.workdir ?? REPO,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), ACT_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (c) => resolve(c));
  }).finally(() => clearTimeout(timer));
  const ms = performance.now() - start;

  const entries: ActEntry[] = [];
  for (const line of `${stdout}\n${stderr}`.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      entries.push(JSON.parse(line) as ActEntry);
    } catch {
      // a step's own line that happens to start with "{"
    }
  }
  const run: ActRun = {
    code,
    stdout,
    stderr,
    entries,
    ms,
    artifacts,
    jobs: {},
    outputs: {},
    lines: {},
    summaries: {},
  };
  for (const e of entries) {
    const job = e.job?.trim();
    if (!job) continue;
    if (e.jobResult) run.jobs[job] = e.jobResult;
    if (e.command === "set-output" && e.name !== undefined) {
      (run.outputs[job] ??= {})[`${e.stepID?.[0]}.${e.name}`] = e.arg ?? "";
    }
    (run.lines[job] ??= []).push(e.msg);
    if (e.command === "summary")
      run.summaries[job] = (run.summaries[job] ?? "") + (e.content ?? "");
  }
  return run;
}

/** What to show when an assertion on a run fails: act's log and the end of its stderr. */
function context(run: ActRun): string {
  const shown = run.entries.map((e) => `${e.job?.trim() ?? ""} | ${e.msg}`).join("\n");
  return `act exit ${run.code} in ${Math.round(run.ms)} ms\n${shown}\n${run.stderr.slice(-4000)}`;
}

/** Nothing fetched: every action was local or a stand-in; no image pulled, no clone. */
function expectOffline(run: ActRun) {
  const fetched = run.entries
    .map((e) => e.msg)
    .filter((m) => /not matched|git clone|Cloning|pull(ing)? image|docker pull/i.test(m));
  expect(fetched, context(run)).toEqual([]);
}

/** The jobs whose name matches (a called workflow's job: `<caller job>/<workflow>/<job>`). */
function jobsNamed(run: ActRun, pattern: RegExp): string[] {
  return Object.keys(run.jobs)
    .filter((j) => pattern.test(j))
    .sort();
}

beforeAll(() => {
  expect(existsSync(ACT), "run `npm run setup` to build act into .tools/bin").toBe(true);
  expect(existsSync(NODE24), "run `npm run setup` to install Node 24 into .tools").toBe(true);
});

afterAll(() => removeTemps());

describe("the tools", () => {
  it(`act is ${ACT_VERSION} and the node act runs actions with is Node 24`, () => {
    expect(execFileSync(ACT, ["--version"], { encoding: "utf8" }).trim()).toBe(
      `act version ${ACT_VERSION}`,
    );
    expect(execFileSync(NODE24, ["--version"], { encoding: "utf8" }).trim()).toBe(NODE24_VERSION);
  });

  it(
    "the stand-ins behave like the actions they replace",
    async () => {
      // setup-python's post step fails a `cache: pip` job that installed nothing
      // (actions/setup-python#815); upload-artifact lays a folder's contents at the artifact root.
      const dir = makeTemp("mcs-act-wf-");
      const workflow = path.join(dir, "stand-ins.yml");
      writeFileSync(
        workflow,
        [
          "name: stand-ins",
          "on: workflow_dispatch",
          "jobs:",
          "  pip-cache:",
          "    runs-on: ubuntu-latest",
          "    steps:",
          "      - id: python",
          `        uses: ${SETUP_PYTHON}`,
          "        with: { python-version: '3.11', cache: pip }",
          "  upload:",
          "    runs-on: ubuntu-latest",
          "    steps:",
          "      - run: mkdir -p out/sub && echo hello > out/sub/a.txt",
          `      - uses: ${UPLOAD_ARTIFACT}`,
          "        with: { name: things, path: out/ }",
          "",
        ].join("\n"),
      );
      const run = await act({ workflow, event: "workflow_dispatch", payload: { inputs: {} } });
      expectOffline(run);
      expect(run.jobs, context(run)).toEqual({
        "stand-ins/pip-cache": "failure",
        "stand-ins/upload": "success",
      });
      expect(run.outputs["stand-ins/pip-cache"]?.["python.python-path"]).toMatch(/python3/);
      const failure = run.entries.find((e) => /doesn't exist on disk/.test(e.msg));
      expect(failure?.stage, context(run)).toBe("Post");
      expect(readFileSync(path.join(run.artifacts, "things/sub/a.txt"), "utf8")).toBe("hello\n");
      expect(run.lines["stand-ins/upload"]?.join("\n")).toContain(`on Node ${NODE24_VERSION}`);
    },
    ACT_TIMEOUT_MS,
  );
});

describe("dispatch-eval.yml, dry run", () => {
  let run: ActRun;
  beforeAll(async () => {
    run = await act({
      workflow: ".github/workflows/dispatch-eval.yml",
      event: "workflow_dispatch",
      payload: {
        inputs: { module: "demo", metadata: "level2", scenes: "scenes/subset", "dry-run": "true" },
      },
      runId: "7100000001",
    });
  }, ACT_TIMEOUT_MS);

  it("runs eval.yml's job to success, offline", () => {
    expectOffline(run);
    expect(run.code, context(run)).toBe(0);
    const jobs = jobsNamed(run, /./);
    expect(jobs, context(run)).toHaveLength(1);
    expect(run.jobs[jobs[0]!]).toBe("success");
  });

  it("reports the plan's outputs: planned, the scenes, the cluster, the results folder", () => {
    const [job] = jobsNamed(run, /./);
    const out = run.outputs[job!] ?? {};
    expect(out["eval.status"], context(run)).toBe("planned");
    expect(out["eval.total"]).toBe(String(SCENES.length));
    expect(out["eval.cluster-name"]).toMatch(/^mcs-demo-level2-7100000001-1(-[a-z0-9-]+)?$/);
    expect(out["eval.results-url"]).toMatch(
      /^https:\/\/s3\.console\.aws\.amazon\.com\/s3\/buckets\//,
    );
    expect(out["python.python-path"]).toBeTruthy();
  });

  it("validates with Ray's schema, starts nothing, and setup-python's post step passes", () => {
    const [job] = jobsNamed(run, /./);
    const lines = run.lines[job!]!.join("\n");
    expect(lines).toMatch(/^dry-run: the plan is valid; nothing was started$/m);
    expect(lines).toMatch(/Ray [\d.]+ is already installed/);
    expect(lines).not.toMatch(/::group::ray |ray up|AWS credentials/);
    expect(lines).not.toMatch(/doesn't exist on disk/);
    // No upload: a dry run has no summary.
    expect(existsSync(run.artifacts)).toBe(false);
  });

  it("shows the plan as the job summary", () => {
    const [job] = jobsNamed(run, /./);
    const summary = run.summaries[job!] ?? "";
    const name = run.outputs[job!]?.["eval.cluster-name"];
    expect(summary, context(run)).toContain(
      "## Dry run: demo level2 — the plan is valid, nothing was started",
    );
    expect(summary).toContain(`| cluster | \`${name}\` (aws provider, us-east-1`);
    expect(summary).toContain("| ray.worker.default | m5.large | 0–2 | 2 CPU |");
    expect(summary).toMatch(/^\| 1 \| demo_multi_retrieval_0001_01 \| 450 \|$/m);
  });
});

describe("eval.yml's outputs, as a calling workflow sees them", () => {
  it(
    "needs.<job>.outputs carries the action's outputs of a dry run",
    async () => {
      const dir = makeTemp("mcs-act-wf-");
      const workflow = path.join(dir, "caller.yml");
      writeFileSync(
        workflow,
        [
          "name: caller",
          "on: workflow_dispatch",
          "jobs:",
          "  eval:",
          "    uses: ./.github/workflows/eval.yml",
          "    with: { module: demo, metadata: oracle, dry-run: true }",
          "  report:",
          "    needs: eval",
          "    runs-on: ubuntu-latest",
          "    steps:",
          "      - id: seen",
          "        env:",
          "          OUTPUTS: ${{ toJSON(needs.eval.outputs) }}",
          `        run: node -e 'console.log("outputs=" + JSON.stringify(JSON.parse(process.env.OUTPUTS)))' >> "$GITHUB_OUTPUT"`,
          "",
        ].join("\n"),
      );
      const run = await act({
        workflow,
        event: "workflow_dispatch",
        payload: { inputs: {} },
        runId: "7100000003",
      });
      expectOffline(run);
      expect(run.code, context(run)).toBe(0);
      const seen = JSON.parse(run.outputs["caller/report"]?.["seen.outputs"] ?? "{}");
      expect(seen, context(run)).toMatchObject({
        status: "planned",
        total: String(SCENES.length),
        "results-url": expect.stringMatching(/^https:\/\/s3\.console\.aws\.amazon\.com\//),
        "cluster-name": expect.stringMatching(/^mcs-demo-oracle-7100000003-1/),
      });
      expect(seen.succeeded ?? "").toBe("");
      expect(seen.failed ?? "").toBe("");
    },
    ACT_TIMEOUT_MS,
  );
});

describe("scheduled-eval.yml, dry run by hand: the matrix", () => {
  let run: ActRun;
  beforeAll(async () => {
    run = await act({
      workflow: ".github/workflows/scheduled-eval.yml",
      event: "workflow_dispatch",
      payload: { inputs: { "dry-run": "true" } },
      runId: "7100000002",
    });
  }, ACT_TIMEOUT_MS);

  it("runs the three matrix jobs to success and skips the combined summary", () => {
    expectOffline(run);
    expect(run.code, context(run)).toBe(0);
    const evals = jobsNamed(run, /^eval-\d\//);
    expect(evals, context(run)).toHaveLength(3);
    for (const job of evals) expect(run.jobs[job], job).toBe("success");
    expect(jobsNamed(run, /summary/), "the summary job of a dry run").toEqual([]);
  });

  it("each job reports status planned and a cluster of its own", () => {
    const evals = jobsNamed(run, /^eval-\d\//);
    const outputs = evals.map((job) => run.outputs[job] ?? {});
    for (const out of outputs) {
      expect(out["eval.status"], context(run)).toBe("planned");
      expect(out["eval.total"]).toBe(String(SCENES.length));
    }
    const names = outputs.map((out) => out["eval.cluster-name"]);
    for (const name of names) expect(name).toMatch(/^mcs-demo-(level1|level2|oracle)-7100000002-1/);
    expect(new Set(names).size, `cluster names: ${names.join(", ")}`).toBe(3);
    // Each job's summary shows its own plan.
    evals.forEach((job, i) => {
      expect(run.summaries[job]).toContain(`| cluster | \`${names[i]}\``);
    });
  });
});

describe("pr-eval.yml's modules job", () => {
  let repo = "";
  let base = "";
  const git = (...args: string[]) =>
    execFileSync(
      "git",
      ["-c", "user.name=mcs-test", "-c", "user.email=mcs-test@example.invalid", ...args],
      { cwd: repo, encoding: "utf8" },
    ).trim();
  const pullRequest = (head: string, fork = false) => ({
    number: 8,
    pull_request: {
      number: 8,
      base: { sha: base, ref: "main", repo: { full_name: REPOSITORY, fork: false } },
      head: { sha: head, ref: "change", repo: { full_name: REPOSITORY, fork } },
    },
    repository: { full_name: REPOSITORY },
  });
  const modulesJob = (payload: Record<string, unknown>) =>
    act({
      workflow: ".github/workflows/pr-eval.yml",
      event: "pull_request",
      payload,
      job: "modules",
      workdir: repo,
    });

  beforeAll(() => {
    // A repository of this working tree (tracked and new files), one commit as the base.
    repo = makeTemp("mcs-act-repo-");
    const files = execFileSync("git", ["ls-files", "-co", "--exclude-standard", "-z"], {
      cwd: REPO,
      encoding: "utf8",
    })
      .split("\0")
      .filter((f) => f && existsSync(path.join(REPO, f)));
    for (const file of files) {
      mkdirSync(path.dirname(path.join(repo, file)), { recursive: true });
      cpSync(path.join(REPO, file), path.join(repo, file));
    }
    git("init", "-q", "-b", "main");
    git("add", "-A");
    git("commit", "-q", "-m", "base");
    base = git("rev-parse", "HEAD");
  }, ACT_TIMEOUT_MS);

  it(
    "a change to a module's files: that module",
    async () => {
      git("checkout", "-q", "-B", "module-change", base);
      writeFileSync(path.join(repo, "deploy_files/demo/NOTE.md"), "a change to the demo module\n");
      git("add", "-A");
      git("commit", "-q", "-m", "demo change");
      const run = await modulesJob(pullRequest(git("rev-parse", "HEAD")));
      expectOffline(run);
      expect(run.code, context(run)).toBe(0);
      expect(run.jobs, context(run)).toEqual({ "PR test evaluation/modules": "success" });
      expect(run.outputs["PR test evaluation/modules"]).toEqual({ "affected.modules": '["demo"]' });
    },
    ACT_TIMEOUT_MS,
  );

  it(
    "a change to the docs only: none, so no evaluation",
    async () => {
      git("checkout", "-q", "-B", "docs-change", base);
      writeFileSync(path.join(repo, "README.md"), "# a docs change\n", { flag: "a" });
      git("commit", "-q", "-am", "docs change");
      const run = await modulesJob(pullRequest(git("rev-parse", "HEAD")));
      expectOffline(run);
      expect(run.code, context(run)).toBe(0);
      expect(run.outputs["PR test evaluation/modules"], context(run)).toEqual({
        "affected.modules": "[]",
      });
    },
    ACT_TIMEOUT_MS,
  );

  it(
    "a pull request from a fork: the modules job does not run",
    async () => {
      const run = await modulesJob(pullRequest(base, true));
      expectOffline(run);
      expect(run.code, context(run)).toBe(0);
      expect(run.jobs, context(run)).toEqual({});
      expect(run.outputs).toEqual({});
    },
    ACT_TIMEOUT_MS,
  );
});

describe("janitor.yml, dry run by hand, against loopback EC2 and OIDC", () => {
  const ROLE = "arn:aws:iam::123456789012:role/mcs-janitor";
  let aws: LoopbackAws | undefined;
  let ours = "";

  const ec2 = () =>
    new EC2Client({
      region: TEST_REGION,
      endpoint: aws!.moto.url,
      credentials: TEST_KEYS,
      maxAttempts: 1,
    });

  beforeAll(async () => {
    aws = await startLoopbackAws({ oidc: { repository: REPOSITORY } });
    const launched = await ec2().send(
      new RunInstancesCommand({
        ImageId: "ami-03cf127a",
        InstanceType: "t3.micro",
        MinCount: 1,
        MaxCount: 1,
        TagSpecifications: [
          {
            ResourceType: "instance",
            Tags: [{ Key: "ray-cluster-name", Value: "mcs-demo-level2-42-1-eval" }],
          },
        ],
      }),
    );
    ours = launched.Instances![0]!.InstanceId!;
  }, ACT_TIMEOUT_MS);

  afterAll(async () => {
    if (aws && ours) {
      await ec2()
        .send(new TerminateInstancesCommand({ InstanceIds: [ours] }))
        .catch(() => undefined);
    }
    await aws?.stop();
  });

  it(
    "lists the leftover, terminates nothing, reports found/terminated/instances",
    async () => {
      const run = await act({
        workflow: ".github/workflows/janitor.yml",
        event: "workflow_dispatch",
        payload: { inputs: { "dry-run": "true", "max-age-minutes": "0" } },
        vars: { MCS_AWS_ROLE_ARN: ROLE },
        env: { ...aws!.oidc.env(), AWS_ENDPOINT_URL: aws!.proxy.url },
      });
      expectOffline(run);
      expect(run.code, context(run)).toBe(0);
      expect(run.jobs, context(run)).toEqual({ "MCS janitor/sweep": "success" });
      const out = run.outputs["MCS janitor/sweep"] ?? {};
      expect(out, context(run)).toMatchObject({
        "sweep.found": "1",
        "sweep.terminated": "0",
        "sweep.instances": JSON.stringify([ours]),
      });
      // Through OIDC and STS, as on GitHub; nothing terminated.
      expect(aws!.oidc.issued.length).toBeGreaterThan(0);
      expect(aws!.proxy.requests.map((r) => r.action)).toContain("AssumeRoleWithWebIdentity");
      expect(aws!.proxy.requests.map((r) => r.action)).not.toContain("TerminateInstances");
      const state = await ec2().send(new DescribeInstancesCommand({ InstanceIds: [ours] }));
      expect(state.Reservations?.[0]?.Instances?.[0]?.State?.Name).toBe("running");
    },
    ACT_TIMEOUT_MS,
  );
});

// Node 24 for the action tests: runner.ts runs every bundle with NODE24 unless told otherwise.
describe("the action harness", () => {
  it("runs the bundles on Node 24 by default", () => {
    const saved = process.env.MCS_TEST_NODE;
    delete process.env.MCS_TEST_NODE;
    try {
      expect(testNode()).toBe(NODE24);
    } finally {
      if (saved !== undefined) process.env.MCS_TEST_NODE = saved;
    }
  });
});
