/**
 * The whole local evaluation, as users run it from the repo root:
 * `node dist/cli/index.js run --module demo --scenes scenes/subset --out <tmp>` on a real local Ray.
 */
import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadScenes } from "../src/scenes.js";
import { parseSummary, type RunSummary, type SceneResult } from "../src/summary.js";
import { runCli, type CliResult } from "./support/cli.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

afterAll(removeTemps);

/** Each run starts a local Ray (~10 s here); leave room for a slow machine. */
const RUN_TIMEOUT_MS = 240_000;

const SUBSET = loadScenes(path.join(REPO, "scenes/subset"), "scenes/subset");
const NAMES = SUBSET.map((s) => s.name).sort();
const PREFIX = "demo-eval_level2_demo";
const FOLDER = "demo-eval";
/** One summary per run; one pointer per module and level naming the latest run. */
const summaryKey = (runId: string) => `${FOLDER}/${PREFIX}_${runId}_run-summary.json`;
const LATEST_KEY = `${FOLDER}/${PREFIX}_latest-run.json`;

interface Pointer {
  schema_version: number;
  run_id: string;
  module: string;
  metadata: string;
  summary_key: string;
  started_at: string;
  previous: { run_id: string; summary_key: string } | null;
}

const readPointer = (store: string) =>
  JSON.parse(readFileSync(path.join(store, LATEST_KEY), "utf8")) as Pointer;

interface Run {
  result: CliResult;
  runId: string;
  runDir: string;
  report: string;
  summary: RunSummary;
}

/** Runs the CLI from the repo root and reads what it left under --out. */
async function runEvaluation(out: string, scenes = "scenes/subset", ...flags: string[]) {
  const result = await runCli(
    ["run", "--module", "demo", "--scenes", scenes, "--out", out, ...flags],
    REPO,
    RUN_TIMEOUT_MS - 10_000,
  );
  const context = `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
  const reportLine = /^report: (.+)$/m.exec(result.stdout);
  expect(reportLine, context).not.toBeNull();
  const reportPath = reportLine![1]!;
  const runDir = path.dirname(reportPath);
  expect(path.dirname(runDir), context).toBe(path.join(out, "runs"));
  const runId = path.basename(runDir);
  const summaryPath = path.join(out, "store", summaryKey(runId));
  return {
    result,
    runId,
    runDir,
    report: readFileSync(reportPath, "utf8"),
    summary: parseSummary(readFileSync(summaryPath, "utf8"), summaryPath),
  } satisfies Run;
}

/** `[k/N] STATUS name in ...` progress lines, in order. */
function progressLines(stdout: string) {
  return [...stdout.matchAll(/^\[(\d+)\/(\d+)\] (\S+) (\S+) in \S+ \(attempt (\d+),.*$/gm)].map(
    (m) => ({
      done: Number(m[1]),
      total: Number(m[2]),
      status: m[3],
      name: m[4],
      attempt: Number(m[5]),
    }),
  );
}

/** Every file under `dir` (relative) with its mtime. */
function snapshot(dir: string): Map<string, number> {
  const files = (readdirSync(dir, { recursive: true }) as string[]).filter((f) =>
    statSync(path.join(dir, f)).isFile(),
  );
  return new Map(files.map((f) => [f, statSync(path.join(dir, f)).mtimeMs]));
}

const byName = (summary: RunSummary) => new Map(summary.scenes.map((s) => [s.name, s]));

/** The scene's outputs are in the store under the DESIGN §4 names, with the right content. */
function expectOutputs(store: string, scene: SceneResult) {
  const spec = SUBSET.find((s) => s.name === scene.name)!;
  expect(scene.outputs.history).toBe(`${FOLDER}/${PREFIX}_${scene.name}.json`);
  const history = JSON.parse(readFileSync(path.join(store, scene.outputs.history!), "utf8")) as {
    info: Record<string, string>;
    steps: { step: number }[];
  };
  expect(history.info).toMatchObject({
    name: scene.name,
    metadata: "level2",
    team: "demo",
    evaluation_name: "demo-eval",
  });
  const doc = JSON.parse(readFileSync(spec.file, "utf8")) as {
    goal: { action_list?: unknown[]; last_step: number };
  };
  expect(history.steps).toHaveLength(doc.goal.action_list?.length || doc.goal.last_step);

  // One attempt's files carry one timestamp: the log's is its history's (MCS's, local time).
  expect(history.info.timestamp).toMatch(/^\d{8}-\d{6}$/);
  expect(scene.outputs.log).toBe(
    `${FOLDER}/${PREFIX}_${scene.name}_${history.info.timestamp}_log.txt`,
  );
  const log = readFileSync(path.join(store, scene.outputs.log!), "utf8");
  expect(log).toContain(`[demo] scene ${scene.name} (`);
  expect(log).toMatch(new RegExp(`\\[demo\\] scene ${scene.name} done: \\d+ steps`));
  expect(scene.outputs.videos).toEqual([]);
}

describe("e2e: the demo subset on a local Ray", () => {
  const out = makeTemp("mcs-e2e-");
  const store = path.join(out, "store");
  let first: Run;

  it(
    "runs every scene, prints progress and the table, writes the report, summary and outputs",
    async () => {
      first = await runEvaluation(out);
      const { result, runId, runDir, report, summary } = first;
      const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
      expect(result.code, context).toBe(0);
      expect(result.stderr, "stderr").toBe("");
      expect(runId).toMatch(/^\d{8}-\d{6}-[0-9a-f]{4}$/);

      // One progress line per scene, counting up to 9.
      const progress = progressLines(result.stdout);
      expect(progress.map((p) => p.name).sort()).toEqual(NAMES);
      expect(progress.map((p) => p.done)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      for (const p of progress)
        expect(p).toMatchObject({ total: 9, status: "SUCCESS", attempt: 1 });

      // The final table: outcome, a row per scene, the totals, the report path.
      const table = result.stdout.slice(result.stdout.indexOf("\n\ndemo level2 run "));
      expect(progressLines(table)).toEqual([]);
      expect(table).toContain(`demo level2 run ${runId}: All 9 scenes succeeded.`);
      expect(table).toMatch(/^SCENE\s+STATUS\s+ATTEMPTS\s+DURATION\s+FAILURE$/m);
      for (const name of NAMES) {
        expect(table).toMatch(new RegExp(`^${name}\\s+SUCCESS\\s+1\\s+\\d+\\.\\d s\\s*$`, "m"));
      }
      expect(table).toContain(
        "total 9 · succeeded 9 · failed 0 · pending 0 · retried 0 · resumed 0",
      );
      expect(table.trimEnd().endsWith(`report: ${path.join(runDir, "report.md")}`)).toBe(true);

      // The report lists every scene as succeeded, no failures.
      expect(report).toContain(`## MCS run: demo · level2 · ${runId}`);
      expect(report).toContain("All 9 scenes succeeded.");
      expect(report).not.toContain("Failed scenes");
      for (const name of NAMES) {
        expect(report).toMatch(
          new RegExp(`^\\| \`${name}\` \\| [^|]+ \\| ✅ SUCCESS \\| 1 \\|`, "m"),
        );
      }
      expect(existsSync(path.join(runDir, "driver.log"))).toBe(true);

      // The summary: finished, 9/9, every scene's outputs in the store.
      expect(summary).toMatchObject({
        run_id: runId,
        module: "demo",
        metadata: "level2",
        cluster_name: null,
        store,
        summary_key: summaryKey(runId),
        state: "finished",
        totals: { total: 9, succeeded: 9, failed: 0, pending: 0, retried: 0 },
      });
      expect(summary.finished_at).not.toBeNull();
      expect(summary.scenes.map((s) => s.name).sort()).toEqual(NAMES);
      for (const scene of summary.scenes) {
        expect(scene, scene.name).toMatchObject({
          status: "SUCCESS",
          attempts: 1,
          exit_code: 0,
          failure_class: null,
          resumed: false,
          log_excerpt: null,
        });
        expect(scene.expected_cost).toBe(SUBSET.find((s) => s.name === scene.name)!.lastStep);
        expect(scene.history).toHaveLength(1);
        expect(scene.duration_s).toBeGreaterThan(0);
        expectOutputs(store, scene);
      }
      // Nothing in the store but the summary, the pointer and each scene's history and log.
      expect([...snapshot(store).keys()].sort()).toEqual(
        [
          summaryKey(runId),
          LATEST_KEY,
          ...summary.scenes.flatMap((s) => [s.outputs.history!, s.outputs.log!]),
        ].sort(),
      );
      // The pointer names this run, the first of this module and level in the store.
      expect(readPointer(store)).toEqual({
        schema_version: 1,
        run_id: runId,
        module: "demo",
        metadata: "level2",
        summary_key: summaryKey(runId),
        started_at: summary.started_at,
        previous: null,
      });
    },
    RUN_TIMEOUT_MS,
  );

  it(
    "--resume into the same --out runs nothing again",
    async () => {
      expect(first, "the first run must have passed").toBeDefined();
      const before = snapshot(store);
      const second = await runEvaluation(out, "scenes/subset", "--resume");
      const { result, runId, report, summary } = second;
      const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
      expect(result.code, context).toBe(0);
      expect(runId).not.toBe(first.runId);

      // Found through the pointer: the first run, named in the driver's start line.
      const firstSummary = path.join(store, summaryKey(first.runId));
      expect(result.stdout).toContain(
        `0 scenes to run, 9 already succeeded (resume); resuming from run ${first.runId} (${firstSummary});`,
      );
      expect(progressLines(result.stdout)).toEqual([]);
      expect(result.stdout).toContain(
        "total 9 · succeeded 9 · failed 0 · pending 0 · retried 0 · resumed 9",
      );

      expect(summary).toMatchObject({
        run_id: runId,
        state: "finished",
        totals: { total: 9, succeeded: 9, failed: 0, pending: 0, retried: 0 },
      });
      const earlier = byName(first.summary);
      for (const scene of summary.scenes) {
        expect(scene.status, scene.name).toBe("SUCCESS");
        expect(scene.resumed, scene.name).toBe(true);
        // Carried over from the first run, outputs and all.
        expect(scene.outputs).toEqual(earlier.get(scene.name)!.outputs);
        expect(scene.history).toEqual(earlier.get(scene.name)!.history);
      }
      for (const name of NAMES) {
        expect(report).toMatch(
          new RegExp(`^\\| \`${name}\` \\| [^|]+ \\| ✅ SUCCESS \\(resumed\\) \\|`, "m"),
        );
      }

      // No scene ran: the same files, untouched (the first run's summary too), plus this run's
      // summary; the pointer now names this run, and the one it followed.
      const after = snapshot(store);
      expect([...after.keys()].sort()).toEqual([...before.keys(), summaryKey(runId)].sort());
      for (const [file, mtime] of before) {
        if (file !== LATEST_KEY) expect(after.get(file), file).toBe(mtime);
      }
      expect(readPointer(store)).toMatchObject({
        run_id: runId,
        summary_key: summaryKey(runId),
        previous: { run_id: first.runId, summary_key: summaryKey(first.runId) },
      });
    },
    RUN_TIMEOUT_MS,
  );
});

/** The subset plus a scene whose run script exits 3 (a script error, not retried). */
const FAILING = "demo_failing_0001_01";
function scenesWithFailure(): string {
  const scenes = makeTemp("mcs-e2e-scenes-");
  cpSync(path.join(REPO, "scenes/subset"), scenes, { recursive: true });
  const base = JSON.parse(
    readFileSync(path.join(REPO, "scenes/subset/demo_collision_0001_01.json"), "utf8"),
  ) as Record<string, unknown>;
  writeFileSync(
    path.join(scenes, `${FAILING}.json`),
    JSON.stringify({ ...base, name: FAILING, demo: { exit_code: 3 } }),
  );
  return scenes;
}

/** A report without the sections that name earlier runs ("Since the previous run", the trend). */
const withoutComparison = (report: string) =>
  report.replace(/^### (?:Since the previous run|Trend over the last .*)\n[\s\S]*?(?=^### )/gm, "");

/** The scenes in a report's per-scene table, by name. */
const reportedScenes = (report: string) =>
  [...report.matchAll(/^\| `([^`]+)` \| /gm)].map((m) => m[1]!).sort();

describe("e2e: a failing scene", () => {
  it(
    "exits 1 and the report lists the failure with its log excerpt",
    async () => {
      const scenes = scenesWithFailure();
      const failing = FAILING;
      const out = makeTemp("mcs-e2e-fail-");
      const { result, runId, report, summary } = await runEvaluation(out, scenes);
      const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
      expect(result.code, context).toBe(1);

      const progress = progressLines(result.stdout);
      expect(progress).toHaveLength(10);
      expect(progress.filter((p) => p.status !== "SUCCESS")).toEqual([
        expect.objectContaining({ name: failing, status: "script_error", attempt: 1 }),
      ]);
      expect(result.stdout).toContain(`demo level2 run ${runId}: 1 of 10 scenes failed.`);
      expect(result.stdout).toMatch(
        new RegExp(`^${failing}\\s+FAILED\\s+1\\s+.*script_error\\s*$`, "m"),
      );

      // The summary: one script error, not retried (script errors repeat), the rest fine.
      expect(summary.state).toBe("finished");
      expect(summary.totals).toEqual({
        total: 10,
        succeeded: 9,
        failed: 1,
        pending: 0,
        retried: 0,
      });
      const bad = byName(summary).get(failing)!;
      expect(bad).toMatchObject({
        status: "FAILED",
        attempts: 1,
        exit_code: 3,
        failure_class: "script_error",
        outputs: { history: null, videos: [] },
      });
      expect(bad.log_excerpt).toContain("[demo] ERROR: injected failure: exiting with code 3");
      const log = readFileSync(path.join(out, "store", bad.outputs.log!), "utf8");
      expect(log).toContain("[demo] ERROR: injected failure: exiting with code 3");
      for (const scene of summary.scenes.filter((s) => s.name !== failing)) {
        expect(scene.status, scene.name).toBe("SUCCESS");
      }

      // The report: the failure under "Failed scenes" with its log excerpt; the row in the table.
      expect(report).toContain("1 of 10 scenes failed.");
      const start = report.indexOf("### Failed scenes (1)");
      const end = report.indexOf("### Scenes");
      expect(start, report).toBeGreaterThan(0);
      expect(end).toBeGreaterThan(start);
      const failures = report.slice(start, end);
      expect(failures).toContain(
        `\`${failing}\` — intuitive physics · script_error · 1 attempt · exit code 3`,
      );
      expect(failures).toContain("[demo] ERROR: injected failure: exiting with code 3");
      expect(failures).toContain(`[demo] scene ${failing} (`);
      for (const name of NAMES) expect(failures).not.toContain(`\`${name}\``);
      expect(report.slice(end)).toMatch(
        new RegExp(
          `^\\| \`${failing}\` \\| intuitive physics \\| ❌ FAILED \\| 1 \\| .* \\| script_error \\|`,
          "m",
        ),
      );
    },
    RUN_TIMEOUT_MS,
  );
});

describe("e2e: two runs at once into one --out", () => {
  it(
    "each run gets its own summary and report; the pointer names one of them",
    async () => {
      const out = makeTemp("mcs-e2e-two-");
      const store = path.join(out, "store");
      // Run A has a failing scene, run B does not; both start now, each with its own local Ray.
      const [a, b] = await Promise.all([
        runEvaluation(out, scenesWithFailure(), "--num-cpus", "1"),
        runEvaluation(out, "scenes/subset", "--num-cpus", "1"),
      ]);
      const context = (run: Run) =>
        `run ${run.runId}\nstdout:\n${run.result.stdout}\nstderr:\n${run.result.stderr}`;
      expect(a.result.code, context(a)).toBe(1);
      expect(b.result.code, context(b)).toBe(0);
      expect(a.result.stderr, context(a)).toBe("");
      expect(b.result.stderr, context(b)).toBe("");
      expect(a.runId).not.toBe(b.runId);
      // They did overlap: each started before the other finished.
      expect(a.summary.started_at < b.summary.finished_at!, context(b)).toBe(true);
      expect(b.summary.started_at < a.summary.finished_at!, context(a)).toBe(true);

      // Each summary in the store is its own run's, under its own key.
      expect(a.summary).toMatchObject({
        run_id: a.runId,
        summary_key: summaryKey(a.runId),
        state: "finished",
        totals: { total: 10, succeeded: 9, failed: 1, pending: 0 },
      });
      expect(b.summary).toMatchObject({
        run_id: b.runId,
        summary_key: summaryKey(b.runId),
        state: "finished",
        totals: { total: 9, succeeded: 9, failed: 0, pending: 0 },
      });
      expect(a.summary.scenes.map((s) => s.name).sort()).toEqual([...NAMES, FAILING].sort());
      expect(b.summary.scenes.map((s) => s.name).sort()).toEqual(NAMES);
      expect(byName(a.summary).get(FAILING)).toMatchObject({ status: "FAILED", exit_code: 3 });

      // Each report (and terminal table) is titled with its own run id and lists only its scenes.
      expect(a.report).toContain(`## MCS run: demo · level2 · ${a.runId}`);
      expect(a.report).toContain("1 of 10 scenes failed.");
      // The other run's id shows only where a report names the run it compares with.
      expect(withoutComparison(a.report)).not.toContain(b.runId);
      expect(reportedScenes(a.report)).toEqual([...NAMES, FAILING].sort());
      expect(b.report).toContain(`## MCS run: demo · level2 · ${b.runId}`);
      expect(b.report).toContain("All 9 scenes succeeded.");
      expect(withoutComparison(b.report)).not.toContain(a.runId);
      expect(b.report).not.toContain(FAILING);
      expect(reportedScenes(b.report)).toEqual(NAMES);
      expect(a.result.stdout).toContain(`demo level2 run ${a.runId}: 1 of 10 scenes failed.`);
      expect(b.result.stdout).toContain(`demo level2 run ${b.runId}: All 9 scenes succeeded.`);
      expect(readdirSync(path.join(out, "runs")).sort()).toEqual([a.runId, b.runId].sort());
      for (const run of [a, b])
        expect(existsSync(path.join(run.runDir, "driver.log")), run.runId).toBe(true);

      // The pointer: valid JSON naming one of the two runs and that run's summary.
      const pointer = readPointer(store);
      const named = [a, b].find((run) => run.runId === pointer.run_id);
      expect(named, JSON.stringify(pointer)).toBeDefined();
      expect(pointer).toMatchObject({
        schema_version: 1,
        module: "demo",
        metadata: "level2",
        summary_key: summaryKey(named!.runId),
        started_at: named!.summary.started_at,
      });
      const other = named === a ? b : a;
      if (pointer.previous) {
        expect(pointer.previous).toEqual({
          run_id: other.runId,
          summary_key: summaryKey(other.runId),
        });
      }
      // Both summaries are there; no temporary file was left behind.
      const files = [...snapshot(store).keys()];
      expect(files).toEqual(expect.arrayContaining([summaryKey(a.runId), summaryKey(b.runId)]));
      expect(files.filter((f) => path.basename(f).startsWith("."))).toEqual([]);
    },
    RUN_TIMEOUT_MS,
  );
});
