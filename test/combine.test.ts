import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { affectedModules } from "../src/affected.js";
import { COMBINED_MAX_CHARS, findSummaries, regressions, renderCombined } from "../src/combine.js";
import type { RunSummary, SceneStatus } from "../src/summary.js";

function summary(
  module: string,
  metadata: string,
  scenes: Record<string, SceneStatus>,
): RunSummary {
  const list = Object.entries(scenes).map(([name, status]) => ({
    name,
    status,
    attempts: 1,
    exit_code: status === "SUCCESS" ? 0 : 3,
    failure_class: status === "FAILED" ? ("script_error" as const) : null,
    duration_s: 1,
    node: "n",
    expected_cost: 1,
    resumed: false,
    outputs: { history: null, log: null, videos: [] },
    log_excerpt: null,
    history: [],
  }));
  const count = (s: SceneStatus) => list.filter((x) => x.status === s).length;
  return {
    schema_version: 1,
    run_id: "r",
    module,
    metadata: metadata as RunSummary["metadata"],
    cluster_name: null,
    store: "s3://b",
    summary_key: "k/run-summary.json",
    state: "finished",
    started_at: "2026-11-25T00:00:00.000Z",
    updated_at: "2026-11-25T00:01:00.000Z",
    finished_at: "2026-11-25T00:01:00.000Z",
    totals: {
      total: list.length,
      succeeded: count("SUCCESS"),
      failed: count("FAILED"),
      pending: count("PENDING"),
      retried: 0,
    },
    scenes: list,
  };
}

describe("combined report", () => {
  const before = summary("demo", "level2", { a: "SUCCESS", b: "SUCCESS", c: "FAILED" });
  const now = summary("demo", "level2", { a: "SUCCESS", b: "FAILED", c: "FAILED", d: "FAILED" });

  it("finds scenes that passed before and fail now, only those", () => {
    expect(regressions(now, before)).toEqual(["b"]);
    expect(regressions(now, undefined)).toEqual([]);
  });

  it("renders a row per module and level and lists the regressions", () => {
    const other = summary("demo", "oracle", { a: "SUCCESS" });
    const md = renderCombined([other, now], [before]);
    expect(md).toContain("| demo | level2 | 4 | 1 | 3 | 0 | ❌ failed | 1 |");
    expect(md).toContain("| demo | oracle | 1 | 1 | 0 | 0 | ✅ passed | 0 |");
    expect(md).toContain(
      "### demo level2\n\n**Passed in the previous run, failing now:**\n\n- `b`",
    );
    expect(md.indexOf("| demo | level2")).toBeLessThan(md.indexOf("| demo | oracle"));
  });

  it("gives each run's aggregates: categories, failure classes, flaky scenes, cost", () => {
    const run = summary("demo", "level2", { a: "SUCCESS", b: "SUCCESS", c: "FAILED" });
    run.cluster_name = "mcs-demo-level2-r";
    run.scenes[0]!.category = "retrieval";
    run.scenes[1]!.category = "retrieval";
    run.scenes[1]!.attempts = 2;
    run.scenes[1]!.history = [
      {
        attempt: 1,
        exit_code: null,
        failure_class: "timeout",
        duration_s: 9,
        node: "n",
        started_at: null,
      },
      { attempt: 2, exit_code: 0, failure_class: null, duration_s: 1, node: "n", started_at: null },
    ];
    run.nodes = [
      {
        node_id: "h",
        address: "10.0.0.1",
        node_type: "ray.head.default",
        instance_type: "m5.large",
        head: true,
        spot: false,
        started_at: "2026-11-24T22:01:00.000Z", // 2 h before updated_at
        ended_at: null,
        usd_per_hour: 0.096,
        price_source: "list",
      },
    ];
    const md = renderCombined([run]);
    expect(md).toContain("### demo level2\n\n#### Cost (estimate): $0.19");
    expect(md).toContain("| m5.large | 1 | 2.00 | $0.096 | $0.19 |");
    expect(md).toContain("| retrieval | 2 | 2 | 0 | 0 | 1 | 100.0% |");
    expect(md).toContain("| uncategorized | 1 | 0 | 1 | 0 | 0 | 0.0% |");
    expect(md).toContain("| script_error | 1 |");
    expect(md).toContain("**Flaky** (passed only on a retry): `b`");
  });

  it("stays under a PR comment's limit however many runs there are", () => {
    const scenes = Object.fromEntries(
      Array.from({ length: 300 }, (_, i) => [`scene_${i}_with_a_long_name`, "FAILED" as const]),
    );
    const passed = Object.fromEntries(
      Object.keys(scenes).map((name) => [name, "SUCCESS" as const]),
    );
    const runs = Array.from({ length: 40 }, (_, i) => summary(`module${i}`, "level2", scenes));
    const md = renderCombined(
      runs,
      runs.map((run) => summary(run.module, "level2", passed)),
    );
    expect(md.length).toBeLessThanOrEqual(COMBINED_MAX_CHARS);
    expect(md).toMatch(/_The details of \d+ more runs are in their job summaries\._\n$/);
    expect(md).toContain("| module39 | level2 | 300 | 0 | 300 | 0 | ❌ failed | 300 |");
    expect(md).toContain("- … and 100 more"); // the first runs' lists, capped at 200
  });

  it("says when there is nothing to compare with", () => {
    expect(renderCombined([now])).toContain("_No previous run to compare with._");
  });

  it("reads every run summary below a directory (artifacts unpack into folders)", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "combine-"));
    for (const [i, s] of [before, summary("demo", "oracle", { z: "SUCCESS" })].entries()) {
      mkdirSync(path.join(dir, `artifact-${i}`));
      writeFileSync(path.join(dir, `artifact-${i}`, "run-summary.json"), JSON.stringify(s));
    }
    writeFileSync(path.join(dir, "notes.txt"), "not a summary");
    expect(findSummaries(dir).map((s) => `${s.module} ${s.metadata}`)).toEqual([
      "demo level2",
      "demo oracle",
    ]);
  });
});

describe("affected modules", () => {
  const known = ["baseline", "demo", "opics"];
  it.each([
    [["pipeline/mcs_pipeline/driver.py"], known],
    [["dist/main/index.js"], known],
    [["action.yml"], known],
    [["configs/demo_aws.ini"], ["demo"]],
    [
      ["configs/mcs_config_opics_oracle.ini", "deploy_files/baseline/ray_script.sh"],
      ["baseline", "opics"],
    ],
    [["autoscaler/ray_demo_aws.yaml"], ["demo"]],
    [["README.md", "scenes/subset/x.json"], []],
    [["configs/mcs_config_unknown_level2.ini"], []],
  ])("%j → %j", (changed, expected) => {
    expect(affectedModules(changed, known)).toEqual(expected);
  });
});
