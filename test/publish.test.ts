/**
 * What a finished run leaves on the workflow run (src/action/publish.ts), through the runner's
 * files (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) and workflow commands on stdout: above all the
 * annotation cap. GitHub shows at most 10 error annotations per step, so failed scenes get 9
 * annotations and the rest are counted in a tenth; the step's own failure line comes on top.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { publish } from "../src/action/publish.js";
import { findSummaries, PREVIOUS_SUMMARY_FILE, renderCombined } from "../src/combine.js";
import type { Outcome } from "../src/engine.js";
import type { Plan } from "../src/plan.js";
import type { RunSummary, SceneResult } from "../src/summary.js";
import { makeTemp, removeTemps } from "./support/workspace.js";

afterAll(removeTemps);

const BUCKET = "mcs-results";
const FOLDER = "demo-eval";

function scene(name: string, failed: boolean): SceneResult {
  return {
    name,
    status: failed ? "FAILED" : "SUCCESS",
    attempts: failed ? 3 : 1,
    exit_code: failed ? 3 : 0,
    failure_class: failed ? "script_error" : null,
    duration_s: 10,
    node: "10.0.0.5",
    expected_cost: 100,
    resumed: false,
    outputs: { history: null, log: null, videos: [] },
    log_excerpt: failed ? `error in ${name}` : null,
    history: [],
  };
}

/** `failed` failed scenes (`demo_f_01`...) among `total`, failed ones first. */
function outcome(dir: string, total: number, failed: number): Outcome {
  const scenes = Array.from({ length: total }, (_, i) =>
    scene(`demo_${i < failed ? "f" : "s"}_${String(i + 1).padStart(2, "0")}`, i < failed),
  );
  const summary: RunSummary = {
    schema_version: 1,
    run_id: "123-1-eval-456",
    module: "demo",
    metadata: "level2",
    cluster_name: "mcs-demo-level2-123-1-eval-456",
    store: `s3://${BUCKET}`,
    summary_key: `${FOLDER}/x_run-summary.json`,
    state: "finished",
    started_at: "2026-11-25T15:15:00Z",
    updated_at: "2026-11-25T15:45:00Z",
    finished_at: "2026-11-25T15:45:00Z",
    totals: { total, succeeded: total - failed, failed, pending: 0, retried: failed },
    scenes,
  };
  const plan = {
    dir: path.join(dir, "run", "plan"),
    store: `s3://${BUCKET}`,
    names: { folder: FOLDER, movies_folder: FOLDER, prefix: "demo-eval_level2_demo" },
  } as unknown as Plan;
  return {
    plan,
    summary,
    summaryText: JSON.stringify(summary),
    markdown: `## MCS run\n\n${failed} of ${total} failed\n`,
    phases: [],
    exitCode: failed > 0 ? 1 : 0,
  };
}

let stdout: string[] = [];
/**
 * One set of runner files for the whole file: `core.summary` keeps the first
 * GITHUB_STEP_SUMMARY path it sees, so each test empties the files instead.
 */
let files: { output: string; summary: string; dir: string };
const saved: Record<string, string | undefined> = {};

beforeAll(() => {
  const dir = makeTemp("mcs-publish-");
  mkdirSync(path.join(dir, "files"));
  files = {
    dir,
    output: path.join(dir, "files", "output"),
    summary: path.join(dir, "files", "summary"),
  };
  for (const name of ["GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"]) saved[name] = process.env[name];
  process.env.GITHUB_OUTPUT = files.output;
  process.env.GITHUB_STEP_SUMMARY = files.summary;
});

afterAll(() => {
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) Reflect.deleteProperty(process.env, name);
    else process.env[name] = value;
  }
});

beforeEach(() => {
  writeFileSync(files.output, "");
  writeFileSync(files.summary, "");
  stdout = [];
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout.push(String(chunk));
    return true;
  });
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** A workflow command's escaped property or message, as GitHub shows it. */
const unescape = (text: string) =>
  text
    .replace(/%3A/g, ":")
    .replace(/%2C/g, ",")
    .replace(/%0D/g, "\r")
    .replace(/%0A/g, "\n")
    .replace(/%25/g, "%");

/** The `::error ...` workflow commands written, as [title or "", message]. */
const errorCommands = () =>
  stdout
    .join("")
    .split("\n")
    .filter((line) => line.startsWith("::error"))
    .map((line) => {
      const m = /^::error(?: title=([^:]*))?::(.*)$/.exec(line)!;
      return [unescape(m[1] ?? ""), unescape(m[2]!)] as const;
    });

describe("publish: error annotations stay within GitHub's 10 per step", () => {
  it("12 failed scenes: the first 9 by name and one line counting the other 3", async () => {
    await publish(outcome(files.dir, 15, 12), "us-east-1");
    const errors = errorCommands();
    expect(errors).toHaveLength(10);
    expect(errors.slice(0, 9)).toEqual(
      Array.from({ length: 9 }, (_, i) => [
        `Scene failed: demo_f_${String(i + 1).padStart(2, "0")}`,
        "script_error after 3 attempt(s), exit code 3",
      ]),
    );
    expect(errors[9]).toEqual(["", "3 more scenes failed; see the job summary"]);
  });

  it("exactly 9 failed scenes: 9 annotations, no count line", async () => {
    await publish(outcome(files.dir, 9, 9), "us-east-1");
    const errors = errorCommands();
    expect(errors).toHaveLength(9);
    expect(errors.every(([title]) => title.startsWith("Scene failed: "))).toBe(true);
  });

  it("10 failed scenes: 9 annotations and `1 more`", async () => {
    await publish(outcome(files.dir, 10, 10), "us-east-1");
    const errors = errorCommands();
    expect(errors).toHaveLength(10);
    expect(errors.filter(([title]) => title.startsWith("Scene failed: "))).toHaveLength(9);
    expect(errors[9]).toEqual(["", "1 more scenes failed; see the job summary"]);
  });

  it("1000 failed scenes: still 10 lines", async () => {
    await publish(outcome(files.dir, 1000, 1000), "us-east-1");
    const errors = errorCommands();
    expect(errors).toHaveLength(10);
    expect(errors[9]![1]).toBe("991 more scenes failed; see the job summary");
  });

  it("no failed scene: no annotation", async () => {
    await publish(outcome(files.dir, 5, 0), "us-east-1");
    expect(errorCommands()).toEqual([]);
  });
});

describe("publish: outputs, summary file and job summary", () => {
  it("sets every output, writes run-summary.json beside the plan and the job summary", async () => {
    const done = outcome(files.dir, 4, 1);
    await publish(done, "eu-west-1");
    const output = readFileSync(files.output, "utf8");
    const values: Record<string, string> = {};
    for (const m of output.matchAll(/^([\w-]+)<<(\S+)\n([\s\S]*?)\n\2$/gm)) values[m[1]!] = m[3]!;
    const summaryPath = path.join(files.dir, "run", "run-summary.json");
    expect(values).toEqual({
      total: "4",
      succeeded: "3",
      failed: "1",
      status: "failure",
      "results-url": `https://s3.console.aws.amazon.com/s3/buckets/${BUCKET}?region=eu-west-1&prefix=${FOLDER}%2F`,
      "run-id": "123-1-eval-456",
      "summary-path": summaryPath,
    });
    expect(readFileSync(summaryPath, "utf8")).toBe(done.summaryText);
    expect(readFileSync(files.summary, "utf8")).toBe(done.markdown);
    // No previous run: nothing beside the summary for the PR comment to compare with.
    expect(existsSync(path.join(files.dir, "run", PREVIOUS_SUMMARY_FILE))).toBe(false);
  });

  it("writes the previous run's summary beside it, which `combine` compares with", async () => {
    const done = outcome(files.dir, 4, 1);
    const passed = (s: SceneResult) => scene(s.name, false);
    const before = {
      ...done.summary!,
      run_id: "earlier",
      scenes: done.summary!.scenes.map(passed),
    };
    await publish({ ...done, previous: before }, "eu-west-1");
    const dir = path.join(files.dir, "run");
    expect(findSummaries(dir).map((s) => s.run_id)).toEqual([done.summary!.run_id]);
    expect(findSummaries(dir, true)).toEqual([before]);
    const failing = done.summary!.scenes.find((s) => s.status === "FAILED")!.name;
    expect(renderCombined(findSummaries(dir), findSummaries(dir, true))).toContain(
      `**Passed in the previous run, failing now:**\n\n- \`${failing}\``,
    );
  });
});
