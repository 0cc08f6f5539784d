/**
 * The action on a multi-node cluster, run the way the runner runs it (`node dist/main`, then
 * `node dist/post`): a head and two workers, each its own "machine" (test/support/multinode.ts),
 * brought up by `ray up` with Ray's local provider; the head's autoscaler starts the workers over
 * SSH. STS, S3 and OIDC on loopback as in action.test.ts.
 *
 * What only many nodes show: deploy files reaching workers through `file_mounts`, scenes landing
 * on workers, and a worker lost mid-run (its Ray processes SIGKILLed by PID inside that node, as a
 * spot interruption ends them): its scenes run again elsewhere as `node_lost`, without using the
 * scenes' own retries.
 */
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { makeActionWorkspace, type ActionWorkspace } from "./support/cluster.js";
import { startNodes, type TestNodes } from "./support/multinode.js";
import { demoJob, nodeAwsEnv, startLoopbackAws, type LoopbackAws } from "./support/loopback.js";
import { ActionJob, cleanupActions, type ActionRun } from "./support/runner.js";
import { rayProcessesOf, waitForNoRayProcesses } from "./support/sshd.js";
import { REPO, removeTemps } from "./support/workspace.js";
import { makeTeamWorkspace } from "./support/mcsteam.js";
import { pastRunObjects } from "./support/history.js";
import { putObject } from "./support/moto.js";

const FOLDER = "demo-eval";
/** ray up, workers joining (~20 s), the scenes, ray down. */
const RUN_TIMEOUT_MS = 300_000;
/**
 * 0.04 s a step: the subset's scenes take 3.6 to 18 s. With one CPU a node the head alone has
 * run two or three of them by the time the workers have joined, so every node gets scenes.
 */
const PACE = "demo_step_seconds=0.04";

const SUBSET_NAMES = readdirSync(path.join(REPO, "scenes/subset"))
  .filter((f) => f.endsWith(".json"))
  .map((f) => path.basename(f, ".json"))
  .sort();

let aws: LoopbackAws | undefined;
let nodes: TestNodes | undefined;
const jobs: ActionJob[] = [];

interface Attempt {
  attempt: number;
  failure_class: string | null;
  node: string | null;
}
interface SummaryFile {
  state: string;
  updated_at: string;
  nodes?: {
    address: string;
    head: boolean;
    node_type: string | null;
    usd_per_hour: number | null;
    started_at: string;
    ended_at: string | null;
  }[];
  totals: { total: number; succeeded: number; failed: number };
  scenes: {
    name: string;
    status: string;
    attempts: number;
    node: string | null;
    history: Attempt[];
  }[];
}

function newJob(ws: ActionWorkspace, retries = "1"): ActionJob {
  // One or no retries (the lost-node case): either way a lost node must not use them.
  const job = demoJob(aws!, ws.dir, { retries, "mcs-config-overrides": PACE });
  jobs.push(job);
  return job;
}

/** The mcsteam node services' directories (its common.sh node_dir), one per node's PID namespace. */
function serviceDirs(): string[] {
  return readdirSync("/tmp")
    .filter((d) => d.startsWith(`mcsteam-services-${process.getuid!()}-`))
    .map((d) => path.join("/tmp", d));
}

function mkdirp(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** What the test module declares a node of Ray's local provider costs an hour. */
const USD_PER_HOUR = 0.5;

async function workspace(usdPerHour = USD_PER_HOUR): Promise<ActionWorkspace> {
  const ws = await makeActionWorkspace({
    node: nodes!.head,
    s3Endpoint: aws!.moto.url,
    cluster: { workers: nodes!.workers, numCpus: 1 },
  });
  appendFileSync(
    path.join(ws.dir, "configs/demo_aws.ini"),
    `\n[prices]\nlocal.cluster.node = ${usdPerHour}\n`,
  );
  return ws;
}

/** A previous run in the workspace's bucket: each subset scene took `seconds`, start-up 60 s. */
async function previousRun(ws: ActionWorkspace, seconds: number): Promise<void> {
  const scenes = SUBSET_NAMES.map((name) => ({
    name,
    category: null,
    steps: 100,
    seconds: [seconds],
  }));
  const run = {
    runId: "20261201-100000-aaaa",
    scenes,
    launchPhases: [{ name: "ray up", seconds: 60 }],
  };
  for (const [key, text] of pastRunObjects(run, `s3://${ws.bucket}`))
    await putObject(aws!.moto.url, ws.bucket, key, text);
}

/**
 * The cost estimate from the cluster's own node table: the three nodes, each from its start
 * (within this test) until the driver's last save, at the module's price; the job summary's
 * total is that by hand.
 */
function expectCost(run: ActionRun, summary: SummaryFile, testStart: number) {
  const nodeList = summary.nodes ?? [];
  expect(nodeList.map((n) => n.address).sort(), context(run)).toEqual(
    nodes!.all.map((n) => n.host).sort(),
  );
  expect(nodeList.filter((n) => n.head).map((n) => n.address)).toEqual([nodes!.head.host]);
  const end = Date.parse(summary.updated_at);
  let hours = 0;
  for (const node of nodeList) {
    expect(node).toMatchObject({ node_type: "local.cluster.node", usd_per_hour: USD_PER_HOUR });
    expect(node.ended_at).toBeNull(); // all three alive when the driver saved
    const started = Date.parse(node.started_at);
    expect(started).toBeGreaterThan(testStart);
    expect(started).toBeLessThan(end);
    hours += (end - started) / 3_600_000;
  }
  expect(run.summary).toContain(`### Cost (estimate): $${(hours * USD_PER_HOUR).toFixed(2)}`);
  expect(run.summary).toContain(`| local.cluster.node | 3 | ${hours.toFixed(2)} | $0.50 |`);
  expect(run.summary).toContain("configs/demo_aws.ini [prices]");
}

const context = (run: ActionRun) =>
  `${run.entry} exit ${run.code ?? run.signal}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

async function storedSummary(ws: ActionWorkspace, run: ActionRun): Promise<SummaryFile> {
  const key = (await ws.listKeys(`${FOLDER}/`)).find((k) => k.endsWith("_run-summary.json"));
  expect(key, context(run)).toBeDefined();
  return JSON.parse(await ws.readObject(key!)) as SummaryFile;
}

/** The `[k/9] STATUS scene ...` progress lines. */
const progressLines = (stdout: string) =>
  stdout.split("\n").filter((l) => /^\[\d+\/\d+\] /.test(l));

/** Every scene succeeded once: one SUCCESS progress line and one successful attempt each. */
function expectEachSucceededOnce(run: ActionRun, summary: SummaryFile) {
  const succeeded = progressLines(run.stdout).map((l) => /^\[\d+\/9\] SUCCESS (\S+) /.exec(l)?.[1]);
  expect(succeeded.sort(), context(run)).toEqual(SUBSET_NAMES);
  expect(summary.scenes.map((s) => s.name).sort()).toEqual(SUBSET_NAMES);
  for (const scene of summary.scenes) {
    expect(scene.status).toBe("SUCCESS");
    expect(scene.history.filter((h) => h.failure_class === null)).toHaveLength(1);
  }
}

/** After post: no Ray (nor anything else started over SSH) left on any node. */
async function expectNothingLeft(job: ActionJob) {
  const post = await job.run("post");
  expect(post.code, context(post)).toBe(0);
  for (const node of nodes!.all) expect(await waitForNoRayProcesses(node, 20_000)).toEqual([]);
  expect(job.leftovers()).toEqual([]);
}

describe("the action on a head and two workers", () => {
  beforeAll(async () => {
    aws = await startLoopbackAws();
    nodes = await startNodes({ env: nodeAwsEnv(aws.moto.url) });
  }, 120_000);

  afterEach(async () => {
    for (const job of jobs.splice(0)) {
      // A test that failed before its post step: run it now, as the runner always does.
      const postRan = job.runs.some((r) => r.entry === "post");
      if (!postRan && job.state["cluster-up"] === "true") await job.run("post").catch(() => {});
      await job.cleanup();
    }
    // Anything still on a node (only after a failure): stop it by PID, inside its namespace.
    for (const node of nodes?.all ?? []) {
      for (const p of rayProcessesOf(node)) {
        try {
          process.kill(p.pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
    }
  }, 120_000);

  afterAll(async () => {
    await cleanupActions().catch(() => undefined);
    await Promise.allSettled([nodes?.stop(), aws?.stop()]);
    removeTemps();
  }, 60_000);

  it(
    "scenes run on all three nodes, the workers get the deploy files, nothing is left",
    async () => {
      const testStart = Date.now();
      const ws = await workspace();
      const job = newJob(ws);
      const main = await job.run("main", { timeoutMs: RUN_TIMEOUT_MS });
      expect(main.code, context(main)).toBe(0);
      expect(main.outputs).toMatchObject({ total: "9", succeeded: "9", failed: "0" });

      const summary = await storedSummary(ws, main);
      expectEachSucceededOnce(main, summary);
      expect(summary.scenes.every((s) => s.attempts === 1)).toBe(true);
      const used = new Set(summary.scenes.map((s) => s.node));
      expect([...used].sort()).toEqual(nodes!.all.map((n) => n.host).sort());
      expectCost(main, summary, testStart);

      // file_mounts: the head's autoscaler synced the deploy files to each worker's home.
      const cluster = main.outputs["cluster-name"]!;
      for (const worker of nodes!.workers) {
        expect(existsSync(path.join(worker.home, cluster, "deploy", "ray_script.sh"))).toBe(true);
      }
      await expectNothingLeft(job);
    },
    RUN_TIMEOUT_MS + 60_000,
  );

  it(
    "a worker lost mid-run: its scenes run again elsewhere as node_lost, each succeeds once",
    async () => {
      const ws = await workspace();
      // No retries at all: a scene lost with its node still runs again, for that is the
      // machine's failure, not the scene's.
      const job = newJob(ws, "0");
      const main = job.start("main", { timeoutMs: RUN_TIMEOUT_MS });
      // The moment a worker plays a scene, its machine "dies": every process Ray started there.
      const [victim, killed] = await new Promise<[TestNodes["workers"][number], number[]]>(
        (resolve, reject) => {
          const timer = setInterval(() => {
            for (const worker of nodes!.workers) {
              const procs = rayProcessesOf(worker);
              if (!procs.some((p) => p.command.includes("play_scene.py"))) continue;
              clearInterval(timer);
              const pids = procs.map((p) => p.pid);
              for (const pid of pids) {
                try {
                  process.kill(pid, "SIGKILL");
                } catch {
                  // exited meanwhile
                }
              }
              resolve([worker, pids]);
              return;
            }
          }, 100);
          void main.done.then(() => {
            clearInterval(timer);
            reject(new Error(`main ended before a worker ran a scene:\n${main.stdout()}`));
          });
        },
      );
      expect(killed.length).toBeGreaterThan(2);
      const run = await main.done;
      expect(run.code, context(run)).toBe(0);
      expect(run.outputs).toMatchObject({ total: "9", succeeded: "9", failed: "0" });

      const summary = await storedSummary(ws, run);
      expect(summary.state).toBe("finished");
      expectEachSucceededOnce(run, summary);
      const lost = summary.scenes.filter((s) =>
        s.history.some((h) => h.failure_class === "node_lost"),
      );
      expect(lost.length, context(run)).toBeGreaterThan(0);
      for (const scene of lost) {
        // Lost, then run again on a node still up; the scene's own retry was never needed.
        expect(scene.history.map((h) => h.failure_class)).toEqual(["node_lost", null]);
        expect(scene.node).not.toBe(victim.host);
        expect(run.stdout).toContain(
          `retrying ${scene.name} after node_lost (attempt 2; a lost node uses none of the scene's retries)`,
        );
      }
      await expectNothingLeft(job);
    },
    RUN_TIMEOUT_MS + 60_000,
  );
  it(
    "a team module with the real MCS package: outputs, failures and node services on every node",
    async () => {
      const team = makeTeamWorkspace({
        runScript: "ray_script_service.sh",
        awsConfig: { scene_end_grace_seconds: 3 },
      });
      const scenes = path.join(team.dir, "scenes", "run");
      const names = [
        "mcsteam/mcsteam_gravity_0001_01",
        "mcsteam/mcsteam_gravity_0001_02",
        "mcsteam/mcsteam_retrieval_0001_01",
        "mcsteam/collision-variant-a",
        "mcsteam-faults/mcsteam_fault_xserver_0001_01",
        "mcsteam-faults/mcsteam_fault_crash_0001_01",
        "mcsteam-faults/mcsteam_fault_hang_0001_01",
      ];
      for (const name of names) {
        const file = path.join(team.dir, "scenes", `${name}.json`);
        writeFileSync(path.join(mkdirp(scenes), path.basename(file)), readFileSync(file));
      }
      const ws = await makeActionWorkspace({
        node: nodes!.head,
        s3Endpoint: aws!.moto.url,
        module: "mcsteam",
        cluster: { workers: nodes!.workers, numCpus: 1 },
        dir: team.dir,
      });
      // Each node as a team image with Ray set up on it: the image's python on PATH, and the
      // plan's Ray venv put first by ~/.bashrc (src/cluster.ts does so on AWS).
      const rcs = nodes!.all.map((n) => path.join(n.home, ".bashrc"));
      const saved = rcs.map((rc) => readFileSync(rc, "utf8"));
      rcs.forEach((rc) =>
        appendFileSync(
          rc,
          `export PATH="${team.imageBin}:$PATH"\nexport PATH="${nodes!.head.venv}/bin:$PATH"\n`,
        ),
      );
      for (const dir of serviceDirs()) rmSync(dir, { recursive: true, force: true });
      try {
        const job = demoJob(aws!, ws.dir, {
          module: "mcsteam",
          metadata: "level1",
          scenes: "scenes/run",
          retries: "1",
        });
        jobs.push(job);
        const main = await job.run("main", { timeoutMs: RUN_TIMEOUT_MS });
        expect(main.code, context(main)).toBe(1); // the crash and the hang fail
        expect(main.outputs).toMatchObject({ total: "7", succeeded: "5", failed: "2" });

        const key = (await ws.listKeys("mcsteam-eval/")).find((k) =>
          k.endsWith("_run-summary.json"),
        );
        const summary = JSON.parse(await ws.readObject(key!)) as SummaryFile & {
          scenes: { outputs: { history: string | null; log: string | null; videos: string[] } }[];
        };
        const byName = new Map(summary.scenes.map((s) => [s.name, s]));
        const crash = byName.get("mcsteam_fault_crash_0001_01")!;
        expect(crash.history.map((h) => h.failure_class)).toEqual(["performer_crash"]);
        // Hung after MCS's inactivity end: MCS's history kept, not run again.
        const hang = byName.get("mcsteam_fault_hang_0001_01")!;
        expect(hang.history.map((h) => h.failure_class)).toEqual(["inactivity"]);
        const xserver = byName.get("mcsteam_fault_xserver_0001_01")!;
        expect(xserver.history.map((h) => h.failure_class)).toEqual(["xserver", null]);

        // One set per scene, at the original names, the final attempt's.
        const prefix = "eval7_level1_mcsteam";
        const keys = await ws.listKeys("");
        for (const scene of summary.scenes) {
          const base = `${prefix}_${scene.name.replace(/\.json$/, "")}`;
          expect(keys.filter((k) => k.startsWith(`mcsteam-eval/${base}.`))).toEqual([
            `mcsteam-eval/${base}.json`,
          ]);
          expect(keys.filter((k) => k.startsWith(`mcsteam-eval-movies/${base}_`)).sort()).toEqual(
            ["depth", "segmentation", "visual"].map((t) => `mcsteam-eval-movies/${base}_${t}.mp4`),
          );
          const history = JSON.parse(await ws.readObject(scene.outputs.history!)) as {
            info: { timestamp: string };
          };
          expect(scene.outputs.log).toBe(`mcsteam-eval/${base}_${history.info.timestamp}_log.txt`);
        }

        // Node services: started once on each node that ran scenes, used by all its scenes.
        const logs = serviceDirs().map((d) => readFileSync(path.join(d, "services.log"), "utf8"));
        const used = new Set(summary.scenes.flatMap((s) => s.history.map((h) => h.node)));
        expect(logs.length, context(main)).toBe(used.size);
        for (const log of logs) {
          const started = [...log.matchAll(/started pid (\d+) by (\S+)/g)];
          expect(started.map((m) => m[2])).toEqual(["node_services.sh"]);
          const pids = [...log.matchAll(/used service pid (\d+)/g)].map((m) => m[1]);
          expect(pids.length).toBeGreaterThan(0);
          expect(new Set(pids)).toEqual(new Set([started[0]![1]]));
          expect(log).toContain(`stopped pid ${started[0]![1]}`);
        }
        // ... and gone with the run: nothing of it (nor of Ray) is left on any node.
        await expectNothingLeft(job);
      } finally {
        rcs.forEach((rc, i) => writeFileSync(rc, saved[i]!));
      }
    },
    RUN_TIMEOUT_MS + 60_000,
  );

  it(
    "a deadline sizes the cluster from the previous run: too short is refused, 60 min starts one worker",
    async () => {
      const ws = await workspace();
      // Nine 10-minute scenes last time. One slot a node, workers booting like the head (60 s):
      // head alone 91 min, one worker 51 min, two 32 min.
      await previousRun(ws, 600);
      const dryJob = newJob(ws);
      const dry = await dryJob.run("main", {
        inputs: { "dry-run": "true", "deadline-minutes": "60", "budget-usd": "5" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(dry.code, context(dry)).toBe(0);
      expect(dry.summary).toContain("### Estimate");
      expect(dry.summary).toContain(
        "**51m 00s** (51m 00s–51m 00s) for **$0.82** ($0.82–$0.82) with 1 worker.",
      );
      expect(dry.summary).toContain("| 1 | 51m 00s | 51m 00s–51m 00s | $0.82 ($0.82–$0.82) |");
      expect(dry.summary).toContain("| 2 | 32m 00s |");
      expect(dry.summary).toMatch(/\| 4 \(over max_workers 2\) \| 22m 00s \|/);
      expect(dry.summary).toContain("Deadline: 60 min: the cluster starts 1 worker at once");
      // The rendered YAML: an on-premise cluster takes both counts from the top level.
      const rendered = parse(
        readFileSync(
          path.join(
            dryJob.runnerTemp,
            "mcs-pipeline",
            dry.outputs["run-id"]!,
            "plan",
            "cluster.yaml",
          ),
          "utf8",
        ),
      ) as { max_workers: number; min_workers: number };
      expect([rendered.min_workers, rendered.max_workers]).toEqual([1, 1]);

      const tooShort = await newJob(ws).run("main", {
        inputs: { "dry-run": "true", "deadline-minutes": "20" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(tooShort.code, context(tooShort)).toBe(1);
      expect(tooShort.annotations.map((a) => `${a.command}: ${a.message}`)).toEqual([
        "error: input deadline-minutes: 20 min cannot be met with the 2 workers the cluster YAML allows: the estimate needs 8 (12m 00s); raise max_workers (and the vCPU quota) or allow more time",
      ]);
      const overBudget = await newJob(ws).run("main", {
        inputs: { "deadline-minutes": "60", "budget-usd": "0.5" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(overBudget.code, context(overBudget)).toBe(1);
      expect(overBudget.annotations.map((a) => a.message)).toEqual([
        expect.stringMatching(
          /^input budget-usd: the run is estimated at \$0\.82 \(\$0\.82–\$0\.82\) with 1 worker, over the budget of \$0\.50: raise it/,
        ),
      ]);
      expect(overBudget.state["cluster-up"], "nothing started").toBeUndefined();

      // The real run: one worker, started with the head (min_workers), and no more.
      const job = newJob(ws);
      const main = await job.run("main", {
        inputs: { "deadline-minutes": "60" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(main.code, context(main)).toBe(0);
      expect(main.summary.indexOf("### Estimate"), "the estimate before the report").toBe(0);
      const summary = JSON.parse(
        await ws.readObject(
          `${FOLDER}/demo-eval_level2_demo_${main.outputs["run-id"]}_run-summary.json`,
        ),
      ) as SummaryFile;
      expect(
        summary.nodes!.filter((n) => !n.head),
        context(main),
      ).toHaveLength(1);
      expect(new Set(summary.scenes.map((s) => s.node)).size).toBeLessThanOrEqual(2);
      await expectNothingLeft(job);
    },
    2 * RUN_TIMEOUT_MS,
  );

  it(
    "a budget: the driver starts no scene past it, ends interrupted with the reason; resume finishes",
    async () => {
      // $36 an hour a node: a cent a second, so the run passes $0.30 within seconds.
      const ws = await workspace(36);
      const job = newJob(ws);
      const main = await job.run("main", {
        inputs: { "budget-usd": "0.3" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(main.code, context(main)).toBe(1);
      expect(main.outputs.status).toBe("interrupted");
      const summary = (await storedSummary(ws, main)) as SummaryFile & {
        stop_reason?: string;
        budget_usd?: number;
      };
      expect(summary.state).toBe("interrupted");
      expect(summary.budget_usd).toBe(0.3);
      expect(summary.stop_reason, context(main)).toMatch(
        /^budget: \S+ spent, .* would pass the budget of \$0\.30; \d+ scenes? not started \(run again with resume to continue\)$/,
      );
      expect(main.summary).toContain(`Stopped by the ${summary.stop_reason}`);
      // Running scenes finished; the rest never started.
      const pending = summary.scenes.filter((s) => s.status === "PENDING");
      expect(pending.length).toBeGreaterThan(0);
      for (const scene of summary.scenes) {
        if (scene.status === "PENDING") expect(scene.attempts).toBe(0);
        else expect(scene.status).toBe("SUCCESS");
      }
      await expectNothingLeft(job);

      const resumed = newJob(ws);
      const again = await resumed.run("main", {
        inputs: { resume: "true" },
        timeoutMs: RUN_TIMEOUT_MS,
      });
      expect(again.code, context(again)).toBe(0);
      expect(again.outputs).toMatchObject({ total: "9", succeeded: "9", failed: "0" });
      await expectNothingLeft(resumed);
    },
    2 * RUN_TIMEOUT_MS,
  );
});
