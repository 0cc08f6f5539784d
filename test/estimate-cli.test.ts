/**
 * The estimate, a deadline and a budget through the CLI, the way users meet them: `plan` and
 * `run` in a workspace whose results store holds earlier runs of the demo module (written as the
 * driver writes them). Refusals exit 2 with one line, before Ray starts.
 */
import { appendFileSync, existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, runDirs } from "./support/cli.js";
import { writePastRun, type PastScene } from "./support/history.js";
import { copyWorkspace, removeTemps } from "./support/workspace.js";

afterAll(removeTemps);

/** The subset's scenes (goal.category, goal.last_step), each taking `minutes` last time. */
function subset(ws: string, minutes: (i: number) => number): PastScene[] {
  return readdirSync(path.join(ws, "scenes/subset"))
    .sort()
    .map((file, i) => ({
      name: file.replace(/\.json$/, ""),
      category: null,
      steps: 100,
      seconds: [minutes(i) * 60],
    }));
}

function workspaceWithHistory(minutes: (i: number) => number, price?: number) {
  const ws = copyWorkspace();
  const store = path.join(ws, "out", "store");
  writePastRun(store, {
    runId: "20261201-100000-aaaa",
    scenes: subset(ws, minutes),
    launchPhases: [{ name: "install Ray", seconds: 60 }],
  });
  if (price !== undefined)
    appendFileSync(path.join(ws, "configs/demo_aws.ini"), `\n[prices]\nlocal = ${price}\n`);
  return ws;
}

const oneLine = (stderr: string) => {
  expect(stderr, "exactly one line on stderr").toMatch(/^mcs-pipeline: [^\n]+\n$/);
  return stderr.trimEnd().slice("mcs-pipeline: ".length);
};

describe("CLI: the estimate before a run", () => {
  it("plan prints the estimate from the previous run: the scenes longest first over the CPU slots", async () => {
    // Nine scenes of 1..9 minutes on 3 slots, longest first (9, 8, 7, then 6 on the 7, ...) end at
    // 16, 15, 14 minutes; the previous run's start-up (60 s install) comes first; $1.20/h.
    const ws = workspaceWithHistory((i) => i + 1, 1.2);
    const result = await runCli(
      ["plan", "--module", "demo", "--out", "out", "--num-cpus", "3"],
      ws,
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(
      "  estimate:      17m 00s (17m 00s–17m 00s), $0.32 ($0.32–$0.32) with 3 slots on this machine",
    );
    expect(result.stdout).toContain(
      "9 scenes: 9 by their own time, from 1 previous run (20261201-100000-aaaa); start-up and wind-down 1m 00s–1m 00s as measured",
    );
  });

  it("plan without a previous run says there is nothing to estimate from", async () => {
    const ws = copyWorkspace();
    const result = await runCli(["plan", "--module", "demo", "--out", "out"], ws);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(
      /estimate: {6}none: no previous run of demo level2 in .*: nothing to estimate from\n/,
    );
  });

  it("a deadline the machine cannot meet: exit 2, one line, nothing started", async () => {
    const ws = workspaceWithHistory(() => 10);
    const result = await runCli(
      ["run", "--module", "demo", "--out", "out", "--num-cpus", "2", "--deadline-minutes", "30"],
      ws,
    );
    expect(result.code, result.stdout).toBe(2);
    expect(oneLine(result.stderr)).toBe(
      "--deadline-minutes: 30 min cannot be met: the estimate is 51m 00s with 2 slots on this machine; allow more time, or run on a cluster",
    );
    expect(result.stdout).toBe("");
    for (const dir of runDirs(path.join(ws, "out")))
      expect(existsSync(path.join(dir, "driver.log"))).toBe(false);
  });

  it("a budget below the estimate: exit 2, one line, nothing started", async () => {
    // 9 × 10 min on 3 slots: 30 min + 1 min start-up; this machine at $10/h: $5.00.
    const ws = workspaceWithHistory(() => 10, 10);
    const result = await runCli(
      ["run", "--module", "demo", "--out", "out", "--num-cpus", "3", "--budget-usd", "4.99"],
      ws,
    );
    expect(result.code, result.stdout).toBe(2);
    expect(oneLine(result.stderr)).toMatch(
      /^--budget-usd: the run is estimated at \$5\.00 \(\$5\.00–\$5\.00\) with 3 slots on this machine, over the budget of \$4\.99: raise it/,
    );
    for (const dir of runDirs(path.join(ws, "out")))
      expect(existsSync(path.join(dir, "driver.log"))).toBe(false);
  });
});

describe("CLI: a real run with a budget, then the estimate it leaves", () => {
  it("stops starting scenes at the budget (exit 130, the reason in the report); a resume finishes; the next plan's start-up is measured", async () => {
    // This machine at $360 an hour: a dime a second, so $1 lasts a few seconds of scenes.
    const ws = copyWorkspace();
    appendFileSync(path.join(ws, "configs/demo_aws.ini"), "\n[prices]\nlocal = 360\n");
    const pace = ["--set", "demo_step_seconds=0.02", "--num-cpus", "2"];
    const first = await runCli(
      ["run", "--module", "demo", "--out", "out", ...pace, "--budget-usd", "1"],
      ws,
      300_000,
    );
    expect(first.code, `${first.stdout}\n${first.stderr}`).toBe(130);
    expect(first.stdout).toContain("  estimate:      none: no previous run of demo level2");
    const [dir] = runDirs(path.join(ws, "out"));
    const report = readFileSync(path.join(dir!, "report.md"), "utf8");
    expect(report).toMatch(
      /Interrupted: \d+ of 9 scenes finished \(\d+ succeeded, 0 failed, [1-9] not run\)\. Stopped by the budget: \S+ spent, .* would pass the budget of \$1\.00; [1-9] scenes? not started \(run again with resume to continue\)/,
    );

    const resumed = await runCli(
      ["run", "--module", "demo", "--out", "out", ...pace, "--resume"],
      ws,
      300_000,
    );
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/total 9 · succeeded 9 · failed 0/);

    const plan = await runCli(["plan", "--module", "demo", "--out", "out", "--num-cpus", "2"], ws);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(
      /9 scenes: 9 by their own time, from 2 previous runs .*; start-up and wind-down \S+ \S+–\S+ \S+ as measured/,
    );
  }, 600_000);
});
