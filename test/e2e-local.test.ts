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
const SUMMARY_KEY = `${FOLDER}/${PREFIX}_run-summary.json`;

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
  const summaryPath = path.join(out, "store", SUMMARY_KEY);
  return {
    result,
    runId: path.basename(runDir),
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

  expect(scene.outputs.log).toMatch(
    new RegExp(`^${FOLDER}/${PREFIX}_${scene.name}_\\d{8}-\\d{6}-\\d{3}_log\\.txt$`),
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
        expect(report).toMatch(new RegExp(`^\\| \`${name}\` \\| ✅ SUCCESS \\| 1 \\|`, "m"));
      }
      expect(existsSync(path.join(runDir, "driver.log"))).toBe(true);

      // The summary: finished, 9/9, every scene's outputs in the store.
      expect(summary).toMatchObject({
        run_id: runId,
        module: "demo",
        metadata: "level2",
        cluster_name: null,
        store,
        summary_key: SUMMARY_KEY,
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
      // Nothing in the store but the summary and each scene's history and log.
      expect([...snapshot(store).keys()].sort()).toEqual(
        [
          SUMMARY_KEY,
          ...summary.scenes.flatMap((s) => [s.outputs.history!, s.outputs.log!]),
        ].sort(),
      );
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

      expect(result.stdout).toContain("0 scenes to run, 9 already succeeded (resume)");
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
          new RegExp(`^\\| \`${name}\` \\| ✅ SUCCESS \\(resumed\\) \\|`, "m"),
        );
      }

      // No scene ran: the same files, untouched, apart from the rewritten summary.
      const after = snapshot(store);
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
      for (const [file, mtime] of before) {
        if (file !== SUMMARY_KEY) expect(after.get(file), file).toBe(mtime);
      }
    },
    RUN_TIMEOUT_MS,
  );
});

describe("e2e: a failing scene", () => {
  it(
    "exits 1 and the report lists the failure with its log excerpt",
    async () => {
      const scenes = makeTemp("mcs-e2e-scenes-");
      cpSync(path.join(REPO, "scenes/subset"), scenes, { recursive: true });
      const base = JSON.parse(
        readFileSync(path.join(REPO, "scenes/subset/demo_collision_0001_01.json"), "utf8"),
      ) as Record<string, unknown>;
      const failing = "demo_failing_0001_01";
      writeFileSync(
        path.join(scenes, `${failing}.json`),
        JSON.stringify({ ...base, name: failing, demo: { exit_code: 3 } }),
      );
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
      expect(failures).toContain(`\`${failing}\` — script_error · 1 attempt · exit code 3`);
      expect(failures).toContain("[demo] ERROR: injected failure: exiting with code 3");
      expect(failures).toContain(`[demo] scene ${failing} (`);
      for (const name of NAMES) expect(failures).not.toContain(`\`${name}\``);
      expect(report.slice(end)).toMatch(
        new RegExp(`^\\| \`${failing}\` \\| ❌ FAILED \\| 1 \\| .* \\| script_error \\|`, "m"),
      );
    },
    RUN_TIMEOUT_MS,
  );
});
