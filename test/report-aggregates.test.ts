/**
 * "How did we do" on a 10,000-scene run: categories, failure classes, flaky scenes, what changed
 * since the previous run and durations by category, checked against numbers worked out by hand
 * from the generator below (not by the code under test), and the job summary's 1 MiB limit.
 */
import { describe, expect, it } from "vitest";
import { readHistory } from "../src/forecast.js";
import { aggregate, UNCATEGORIZED } from "../src/report-aggregates.js";
import {
  DEFAULT_BUDGET_BYTES,
  renderFullMarkdown,
  renderMarkdown,
  type LinkTarget,
} from "../src/report.js";
import {
  countTotals,
  parseSummary,
  type AttemptRecord,
  type FailureClass,
  type NodeRecord,
  type RunSummary,
  type SceneResult,
} from "../src/summary.js";

const SCENES = 10_000;
/** Scene i has category CATEGORIES[i % 5] and j = floor(i / 5): 2,000 scenes a category. */
const CATEGORIES = ["agents", "container", "intuitive physics", "retrieval", null] as const;
const link = (key: string): LinkTarget => ({
  href: `https://console/${key}`,
  uri: `s3://b/${key}`,
});
const bytes = (text: string) => Buffer.byteLength(text);

function attempts(classes: (FailureClass | null)[]): AttemptRecord[] {
  return classes.map((failure_class, i) => ({
    attempt: i + 1,
    exit_code: failure_class ? 1 : 0,
    failure_class,
    duration_s: 5,
    node: "10.0.0.5",
    started_at: "2026-11-25T15:20:00Z",
  }));
}

/**
 * By j % 10 (each a tenth of every category): 0 FAILED (timeout when j % 20 == 0, else
 * script_error, after an xserver retry); 1 flaky (xserver, then ok); 2 passed after a lost node
 * only (node_lost, ok: not flaky); 3 flaky after a lost node and an xserver failure. j % 50 == 49
 * is PENDING, j % 50 == 39 resumed. The previous run: FAILED where j % 20 is 1 or 10, PENDING where
 * j % 100 == 0 (it never ran them: not "newly" anything now), else SUCCESS.
 */
function scene(i: number, previous = false): SceneResult {
  const c = i % 5;
  const j = Math.floor(i / 5);
  const name = `eval_${String(CATEGORIES[c] ?? "x").replace(" ", "_")}_${String(i).padStart(5, "0")}_01`;
  let status: SceneResult["status"] = "SUCCESS";
  let history: AttemptRecord[] = attempts([null]);
  let failure: FailureClass | null = null;
  if (previous) {
    if (j % 20 === 1 || j % 20 === 10) [status, failure] = ["FAILED", "oom"];
    else if (j % 100 === 0) [status, history] = ["PENDING", []];
  } else if (j % 50 === 49) {
    [status, history] = ["PENDING", []];
  } else if (j % 10 === 0) {
    [status, failure] = ["FAILED", j % 20 === 0 ? "timeout" : "script_error"];
    history = attempts(["xserver", failure]);
  } else if (j % 10 === 1) history = attempts(["xserver", null]);
  else if (j % 10 === 2) history = attempts(["node_lost", null]);
  else if (j % 10 === 3) history = attempts(["node_lost", "xserver", null]);
  const resumed = !previous && j % 50 === 39;
  const result: SceneResult = {
    name,
    status,
    attempts: history.length,
    exit_code: status === "PENDING" ? null : failure ? 1 : 0,
    failure_class: failure,
    duration_s: status === "PENDING" ? null : resumed ? 999_999 : (c + 1) * (j + 1),
    node: "10.0.0.5",
    expected_cost: 100,
    resumed,
    outputs: { history: `e/${name}.json`, log: `e/${name}_log.txt`, videos: [] },
    log_excerpt: failure
      ? Array.from({ length: 40 }, (_, k) => `line ${k} ${"x".repeat(90)}`).join("\n")
      : null,
    history,
  };
  // Category null and absent (a summary from before categories) are both uncategorized.
  if (CATEGORIES[c] !== null || i % 2 === 0) result.category = CATEGORIES[c];
  return result;
}

/**
 * A p3 fleet, in whole hours to 03:02:11 (the summary's updated_at): the head, 12 h, alive; 20
 * on-demand workers of 10 h; 10 spot workers at a module-declared price, 5 lost after 2 h and
 * 5 alive for 11 h; one node of no known type, 1 h. By hand: 212 h × $3.06 = $648.72, 65 h ×
 * $0.918 = $59.67, together $708.39 for 278 node-hours, 1 of them unpriced.
 */
function fleet(): NodeRecord[] {
  const node = (
    i: number,
    started: string,
    ended: string | null,
    type: Partial<NodeRecord>,
  ): NodeRecord => ({
    node_id: `n${i}`,
    address: `10.0.${Math.floor(i / 250)}.${i % 250}`,
    node_type: "ray.worker.default",
    instance_type: "p3.2xlarge",
    head: false,
    spot: false,
    started_at: `2026-11-${started}Z`,
    ended_at: ended && `2026-11-${ended}Z`,
    usd_per_hour: 3.06,
    price_source: "on-demand list, us-east-1, 2026-06",
    ...type,
  });
  const spot = {
    node_type: "ray.worker.spot",
    spot: true,
    usd_per_hour: 0.918,
    price_source: "configs/baseline_aws.ini [prices]",
  };
  return [
    node(0, "25T15:02:11", null, { node_type: "ray.head.default", head: true }),
    ...Array.from({ length: 20 }, (_, i) => node(1 + i, "25T15:32:11", "26T01:32:11", {})),
    ...Array.from({ length: 5 }, (_, i) => node(21 + i, "25T16:02:11", "25T18:02:11", spot)),
    ...Array.from({ length: 5 }, (_, i) => node(26 + i, "25T16:02:11", null, spot)),
    node(31, "26T02:02:11", null, {
      node_type: null,
      instance_type: null,
      usd_per_hour: null,
      price_source: null,
    }),
  ];
}

function summaryOf(
  runId: string,
  scenes: SceneResult[],
  previous: RunSummary | null,
  extra: Partial<RunSummary> = {},
): RunSummary {
  const doc: RunSummary = {
    schema_version: 1,
    run_id: runId,
    module: "baseline",
    metadata: "level2",
    cluster_name: null,
    store: "s3://b",
    summary_key: `eval/eval_level2_team_${runId}_run-summary.json`,
    state: "finished",
    started_at: "2026-11-25T15:15:00Z",
    updated_at: "2026-11-26T03:02:11Z",
    finished_at: "2026-11-26T03:02:11Z",
    totals: countTotals(scenes),
    scenes,
    previous: previous && { run_id: previous.run_id, summary_key: previous.summary_key },
    ...extra,
  };
  return parseSummary(JSON.stringify(doc), runId); // the generator makes valid summaries
}

const before = summaryOf(
  "r1",
  Array.from({ length: SCENES }, (_, i) => scene(i, true)),
  null,
);
const now = summaryOf(
  "r2",
  Array.from({ length: SCENES }, (_, i) => scene(i)),
  before,
  { cluster_name: "mcs-baseline-level2-r2", nodes: fleet() },
);

describe("aggregates of a 10,000-scene run", () => {
  const facts = aggregate(now, before);

  it("counts results and failure classes by category (null and absent: uncategorized)", () => {
    // Per category: 2,000 scenes; 200 failed (j % 10 == 0); 40 pending (j % 50 == 49).
    expect(facts.categories.map((c) => c.category)).toEqual([
      "agents",
      "container",
      "intuitive physics",
      "retrieval",
      UNCATEGORIZED,
    ]);
    for (const c of facts.categories) {
      expect([c.total, c.succeeded, c.failed, c.pending]).toEqual([2000, 1760, 200, 40]);
      expect(c.failures).toEqual([
        ["script_error", 100],
        ["timeout", 100],
      ]);
    }
    expect(facts.failureClasses).toEqual([
      ["script_error", 500],
      ["timeout", 500],
    ]);
  });

  it("counts a scene flaky only when an earlier attempt failed for a reason other than node_lost", () => {
    // j % 10 in {1, 3} and not resumed/pending (j % 50 is never 39 or 49 there): 400 a category.
    for (const c of facts.categories) expect(c.flaky).toBe(400);
    expect(facts.flaky).toHaveLength(2000);
    expect(facts.flaky.every((s) => s.status === "SUCCESS" && s.attempts > 1)).toBe(true);
    // j % 10 == 2: node_lost then ok, 200 a category.
    expect(facts.passedAfterLostNode).toBe(1000);
  });

  it("finds the newly failing and newly passing scenes against the previous run", () => {
    // Failed now (j % 10 == 0): passed before when j % 20 == 0 but j % 100 != 0 (pending then):
    // 80 a category; failed before when j % 20 == 10: 100 a category.
    const changes = facts.changes!;
    expect(changes.previous.run_id).toBe("r1");
    expect(changes.newlyFailing).toHaveLength(400);
    expect(
      changes.newlyFailing.every((s) => {
        const j = Math.floor(Number(s.name.slice(-8, -3)) / 5);
        return j % 20 === 0 && j % 100 !== 0;
      }),
    ).toBe(true);
    expect(changes.stillFailing).toBe(500);
    // Failed before when j % 20 == 1, flaky successes now: 100 a category.
    expect(changes.newlyPassing).toHaveLength(500);
    const names = changes.newlyPassing.map((s) => s.name);
    expect(names).toEqual([...names].sort());
  });

  it("takes duration percentiles by category over the scenes run now (nearest rank)", () => {
    // Category c: (c+1)(j+1) for the 1,920 j with j % 50 not 39 (resumed) or 49 (pending), 48 of
    // every 50. p50 is the 960th: the last kept j of block 19, 998; p90 the 1,728th: the last of
    // block 35, 1798; max the last, 1998.
    facts.categories.forEach((c, k) => {
      expect(c.durations).toEqual({
        timed: 1920,
        p50: (k + 1) * 999,
        p90: (k + 1) * 1799,
        max: (k + 1) * 1999,
      });
    });
  });
});

describe("the job summary of a 10,000-scene run", () => {
  const md = renderMarkdown(now, { link, previous: before, fullReport: "`report-full.md`" });

  it("stays under the 1 MiB job-summary limit, with the aggregates and the failures", () => {
    expect(bytes(md)).toBeLessThanOrEqual(DEFAULT_BUDGET_BYTES);
    expect(bytes(md)).toBeLessThan(1024 * 1024);
    expect(md).toContain(
      "| agents | 2,000 | 1,760 | 200 | 40 | 400 | 89.8% | 16m 39s | 29m 59s | 33m 19s | script_error 100, timeout 100 |",
    );
    expect(md).toContain("| uncategorized | 2,000 | 1,760 | 200 | 40 | 400 | 89.8% |");
    expect(md).toContain("| 8,900 → 8,800 | 1,000 → 1,000 | 400 | 500 | 500 |");
    expect(md).toContain(
      '  x-axis ["agents", "container", "intuitive physics", "retrieval", "uncategorized"]',
    );
    // The share failed by category, side by side, from 0 to just above the largest (10.2 %).
    expect(md).toContain(
      'xychart-beta horizontal\n  title "Scenes failed by category, %"\n  x-axis ["agents", "container", "intuitive physics", "retrieval", "uncategorized"]\n  y-axis "failed %" 0 --> 20\n  bar [10.2, 10.2, 10.2, 10.2, 10.2]',
    );
    expect(md).toContain('  "script_error" : 500');
    expect(md).toContain("### Newly failing (400)");
    expect(md).toContain("### Failed scenes (1,000)");
    expect(md).toContain("### Flaky: passed only on a retry (2,000)");
    expect(md).toContain("_1,000 more passed on a retry after only lost nodes (node_lost)");
    expect(md).toContain("### Cost (estimate): $708.39");
    expect(md).toContain("| p3.2xlarge | 21 | 212.00 | $3.06 | $648.72 |");
    expect(md).toContain("| p3.2xlarge (spot) | 10 | 65.00 | $0.918 | $59.67 |");
    expect(md).toContain("| unknown | 1 | 1.00 | — | no price |");
    expect(md).toContain("| **total** | **32** | **278.00** |  | **$708.39** |");
    expect(md).toContain("1.00 node-hours have no price and are not in the total");
    expect(md).toContain(
      "times prices from configs/baseline_aws.ini [prices]; on-demand list, us-east-1, 2026-06.",
    );
    // At most DEFAULT_SCENE_ROWS rows, failed first; the note names the full table.
    const rows = md.match(/^\| `eval_/gm) ?? [];
    expect(rows.length).toBeLessThanOrEqual(1000);
    expect(md).toMatch(
      /more scenes not shown \(the report is capped at 900 KiB and 1,000 rows\)\. The full table: `report-full\.md`\./,
    );
  });

  it("the full report has every scene's row", () => {
    const full = renderFullMarkdown(now, { link, previous: before });
    expect(full.match(/^\| `eval_/gm)).toHaveLength(SCENES);
    expect(full).toContain("### Newly passing (500)");
    expect(full).not.toContain("not shown");
  });
});

describe("the trend over the last runs", () => {
  // r0: one scene (agents), never run; r1 = `before`; r2 = `now`. Of the finished scenes, r1
  // passed 1,780 of 1,980 in each category (89.9%), r2 1,760 of 1,960 (89.8%); overall 8,900 of
  // 9,900 and 8,800 of 9,800.
  const oldest = summaryOf("r0", [scene(0, true)], null);

  it("a table of the share passed by category, oldest run first, and a chart overall", () => {
    const md = renderMarkdown(now, { link, previous: before, history: [before, oldest] });
    expect(md).toContain("### Trend over the last 3 runs");
    expect(md).toContain("| category | `r0` | `r1` | this run |");
    expect(md).toContain("| **all scenes** | **—** | **89.9%** | **89.8%** |");
    expect(md).toContain("| agents | — | 89.9% | 89.8% |");
    expect(md).toContain("| container | — | 89.9% | 89.8% |");
    expect(md).toContain("| uncategorized | — | 89.9% | 89.8% |");
    expect(md).toContain('  x-axis ["r0", "r1", "this run"]');
    expect(md).toContain("  line [0.0, 89.9, 89.8]");
    // The axis from just below the lowest run that finished scenes (r0 finished none).
    expect(md).toContain('  y-axis "passed %" 80 --> 100');
    // Run ids that sort by time show as their start.
    const dated = { ...before, run_id: "20261120-101500-ab12" };
    expect(renderMarkdown(now, { link, previous: dated, history: [dated] })).toContain(
      '  x-axis ["11-20 10:15", "this run"]',
    );
    expect(renderMarkdown(now, { link, previous: before })).not.toContain("### Trend");
  });

  it("readHistory follows each summary's previous run, newest first, and stops at a loop", async () => {
    const summaries = new Map<string, RunSummary>();
    const r0 = oldest;
    const r1 = { ...before, previous: { run_id: "r0", summary_key: r0.summary_key } };
    for (const s of [r0, r1, now]) summaries.set(s.summary_key, s);
    const store = {
      read: async (key: string) => {
        const doc = summaries.get(key);
        return doc && JSON.stringify(doc);
      },
      uri: (key: string) => `s3://b/${key}`,
    };
    const warnings: string[] = [];
    const history = await readHistory(store, now, (line) => warnings.push(line));
    expect(history.map((s) => s.run_id)).toEqual(["r1", "r0"]);
    expect(warnings).toEqual([]);
    // r0 names r2 as its previous: a loop is never followed round.
    summaries.set(r0.summary_key, {
      ...r0,
      previous: { run_id: "r2", summary_key: now.summary_key },
    });
    expect((await readHistory(store, now, () => {})).map((s) => s.run_id)).toEqual(["r1", "r0"]);
    // A previous summary that is gone: the chain ends there, and says so.
    summaries.delete(r0.summary_key);
    expect(
      (await readHistory(store, now, (line) => warnings.push(line))).map((s) => s.run_id),
    ).toEqual(["r1"]);
    expect(warnings).toEqual([expect.stringMatching(/^a shorter trend: /)]);
  });
});
