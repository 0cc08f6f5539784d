import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GetObjectCommand, PutBucketVersioningCommand } from "@aws-sdk/client-s3";
import { s3Link, s3TextReader } from "../src/aws/s3.js";
import { evaluate, type Environment, type Target } from "../src/engine.js";
import type { Plan } from "../src/plan.js";
import { parseRequest } from "../src/request.js";
import { DEFAULT_BUDGET_BYTES, renderMarkdown, renderTerminal } from "../src/report.js";
import type { LinkTarget } from "../src/report.js";
import { chunkKey, parseSummary, readSummary } from "../src/summary.js";
import type { RunSummary, SceneResult } from "../src/summary.js";
import { localTarget } from "../src/targets/local.js";
import {
  createBucket,
  putObject,
  s3Client,
  startMoto,
  TEST_KEYS,
  TEST_REGION,
} from "./support/moto.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

afterAll(removeTemps);

const PYTHON = path.join(process.env.MCS_VENV ?? path.join(REPO, ".venv"), "bin", "python");

const BUCKET = "mcs-results";
const link = (key: string): LinkTarget => ({
  href: `https://s3.console.aws.amazon.com/s3/object/${BUCKET}?prefix=${encodeURIComponent(key)}`,
  uri: `s3://${BUCKET}/${key}`,
});
const bytes = (text: string) => Buffer.byteLength(text);

function scene(name: string, overrides: Partial<SceneResult> = {}): SceneResult {
  const status = overrides.status ?? "SUCCESS";
  const failed = status === "FAILED";
  return {
    name,
    status,
    attempts: 1,
    exit_code: status === "PENDING" ? null : failed ? 1 : 0,
    failure_class: failed ? "script_error" : null,
    duration_s: status === "PENDING" ? null : 10,
    node: status === "PENDING" ? null : "10.0.0.5",
    expected_cost: 200,
    resumed: false,
    outputs:
      status === "PENDING"
        ? { history: null, log: null, videos: [] }
        : {
            history: `eval/${name}.json`,
            log: `eval/${name}_log.txt`,
            videos: [`movies/${name}_visual.mp4`],
          },
    log_excerpt: failed ? `error in ${name}` : null,
    history: [],
    ...overrides,
  };
}

function summaryOf(scenes: SceneResult[], overrides: Partial<RunSummary> = {}): RunSummary {
  const count = (status: string) => scenes.filter((s) => s.status === status).length;
  return {
    schema_version: 1,
    run_id: "20261125-151500-ab12",
    module: "demo",
    metadata: "level2",
    cluster_name: "mcs-demo-ab12-1",
    store: `s3://${BUCKET}`,
    summary_key: "eval/eval_level2_demo_run-summary.json",
    state: "finished",
    started_at: "2026-11-25T15:15:00Z",
    updated_at: "2026-11-25T15:45:00Z",
    finished_at: "2026-11-25T15:45:00Z",
    totals: {
      total: scenes.length,
      succeeded: count("SUCCESS"),
      failed: count("FAILED"),
      pending: count("PENDING"),
      retried: scenes.filter((s) => s.attempts > 1).length,
    },
    scenes,
    ...overrides,
  };
}

/** Eight scenes: two failed (one retried, excerpts with ``` and |), one resumed. */
function smallSummary(): RunSummary {
  return summaryOf([
    scene("demo_collision_0001_02", { duration_s: 3 }),
    scene("demo_collision_0001_01", { duration_s: 1 }),
    scene("demo_zz_timeout", {
      status: "FAILED",
      attempts: 2,
      exit_code: null,
      failure_class: "timeout",
      duration_s: 3600,
      log_excerpt: "starting\n```\nfenced | not really\n```\nTimeoutError: scene took too long",
      history: [
        {
          attempt: 1,
          exit_code: 1,
          failure_class: "xserver",
          duration_s: 0.4,
          node: "10.0.0.6",
          started_at: "2026-11-25T15:15:01Z",
        },
        {
          attempt: 2,
          exit_code: null,
          failure_class: "timeout",
          duration_s: 3600,
          node: "10.0.0.5",
          started_at: "2026-11-25T15:16:00Z",
        },
      ],
    }),
    scene("demo_aa|pipe", {
      status: "FAILED",
      exit_code: 2,
      log_excerpt: "Traceback\nValueError: a|b\n``````",
    }),
    scene("demo_gravity_0003_01", { duration_s: 5 }),
    scene("demo_gravity_0004_01", { duration_s: 7 }),
    scene("demo_gravity_0005_01", { duration_s: 9 }),
    scene("demo_resumed_0001_01", { resumed: true, duration_s: 99_999 }),
  ]);
}

function hugeSummary(n: number, failedEvery = 10): RunSummary {
  const logLine = "x".repeat(120) + " | `quoted` ```";
  const scenes = Array.from({ length: n }, (_, i) => {
    const name = `eval_scene_${String(i).padStart(6, "0")}_01`;
    return i % failedEvery === 0
      ? scene(name, {
          status: "FAILED",
          log_excerpt: Array.from({ length: 200 }, (_, l) => `${l} ${logLine}`).join("\n"),
        })
      : scene(name, { duration_s: (i % 97) * 3.7 });
  });
  return summaryOf(scenes);
}

describe("renderMarkdown", () => {
  const markdown = renderMarkdown(smallSummary(), {
    link,
    phases: [
      { name: "ray up", seconds: 300 },
      { name: "scenes", seconds: 1500 },
    ],
  });

  it("has a title, the outcome, the cluster and the totals", () => {
    expect(markdown).toMatch(/^## MCS run: demo · level2 · 20261125-151500-ab12\n/);
    expect(markdown).toContain("**❌ 2 of 8 scenes failed.**");
    expect(markdown).toContain("cluster `mcs-demo-ab12-1`");
    expect(markdown).toContain(
      "| total | succeeded | failed | pending | retried | flaky | resumed |\n" +
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" +
        "| 8 | 6 | 2 | 0 | 1 | 0 | 1 |",
    );
  });

  it("shows durations (wall time, median/p90/max of scenes run now), phases and failure classes", () => {
    // Timed scenes, resumed excluded: 1, 3, 5, 7, 9, 10, 3600 → median 7, p90 3600.
    expect(markdown).toContain("| 30m 00s | 7 | 7.0 s | 1h 00m | 1h 00m |");
    expect(markdown).toContain("| ray up | 5m 00s |");
    expect(markdown).toContain("| **total** | **30m 00s** |");
    expect(markdown).toContain("| script_error | 1 |");
    expect(markdown).toContain("| timeout | 1 |");
  });

  it("details failed scenes first, with their log excerpt in a <details> block", () => {
    const failures = markdown.indexOf("### Failed scenes (2)");
    const table = markdown.indexOf("### Scenes");
    expect(failures).toBeGreaterThan(0);
    expect(table).toBeGreaterThan(failures);
    expect(markdown).toContain(
      "#### ❌ `demo_zz_timeout` — uncategorized · timeout · 2 attempts · no exit code · node `10.0.0.5` · " +
        `[log](${link("eval/demo_zz_timeout_log.txt").href})`,
    );
    expect(markdown).toContain("Attempts: 1. xserver, exit 1, 0.4 s → 2. timeout, 1h 00m");
    expect(markdown).toContain(
      "#### ❌ `demo_aa|pipe` — uncategorized · script_error · 1 attempt · exit code 2",
    );
    expect(markdown.match(/<details><summary>log<\/summary>/g)).toHaveLength(2);
  });

  it("fences excerpts so ``` inside cannot end the code block", () => {
    // The excerpt with ``` gets a 4-backtick fence; the one with `````` a 7-backtick fence.
    expect(markdown).toContain(
      "````text\nstarting\n```\nfenced | not really\n```\nTimeoutError: scene took too long\n````\n",
    );
    expect(markdown).toContain("```````text\nTraceback\nValueError: a|b\n``````\n```````\n");
  });

  it("lists failed rows first, then the rest by name, with links and escaped cells", () => {
    const rows = markdown.split("\n").filter((line) => line.startsWith("| `"));
    expect(rows.map((row) => row.split(" | ")[0])).toEqual([
      "| `demo_aa\\|pipe`",
      "| `demo_zz_timeout`",
      "| `demo_collision_0001_01`",
      "| `demo_collision_0001_02`",
      "| `demo_gravity_0003_01`",
      "| `demo_gravity_0004_01`",
      "| `demo_gravity_0005_01`",
      "| `demo_resumed_0001_01`",
    ]);
    const ok = rows.find((row) => row.includes("demo_collision_0001_01"));
    const target = link("eval/demo_collision_0001_01.json");
    expect(ok).toContain(`✅ SUCCESS | 1 | 1.0 s |  | [history](${target.href}) \`${target.uri}\``);
    expect(ok).toContain(`[video](${link("movies/demo_collision_0001_01_visual.mp4").href})`);
    expect(rows.find((row) => row.includes("demo_resumed"))).toContain("✅ SUCCESS (resumed)");
    // Every row has exactly 9 cells: no raw | leaks from names or keys.
    for (const row of rows) expect(row.split(/(?<!\\)\|/).length).toBe(11);
    expect(rows[0]).toContain("`s3://mcs-results/eval/demo_aa\\|pipe.json`");
    expect(rows[0]).toContain(
      "(https://s3.console.aws.amazon.com/s3/object/mcs-results?prefix=eval%2Fdemo_aa%7Cpipe.json)",
    );
  });

  it("keeps newlines out of table cells", () => {
    const md = renderMarkdown(summaryOf([scene("two\nlines")]), { link });
    expect(md).toContain("| `two lines` | uncategorized | ✅ SUCCESS |");
  });

  it("says how an unfinished run stands and uses a custom title", () => {
    const running = summaryOf([scene("a"), scene("b", { status: "PENDING" })], {
      state: "running",
      finished_at: null,
      cluster_name: null,
    });
    const md = renderMarkdown(running, { link, title: "PR test run" });
    expect(md).toMatch(/^## PR test run\n/);
    expect(md).toContain("⏳ Still running: 1 of 2 scenes finished (1 succeeded, 0 failed)");
    expect(md).toContain("| `b` | uncategorized | ⏳ PENDING | 1 | — |  | — | — |  |");
    expect(md).not.toContain("cluster `");
    const stopped = renderMarkdown({ ...running, state: "interrupted" }, { link });
    expect(stopped).toContain("⚠️ Interrupted: 1 of 2 scenes finished");
    const allOk = renderMarkdown(summaryOf([scene("a"), scene("b")]), { link });
    expect(allOk).toContain("**✅ All 2 scenes succeeded.**");
    expect(allOk).not.toContain("### Failed scenes");
  });

  it("cuts a long excerpt to its last ~2 KiB of lines", () => {
    const excerpt = Array.from({ length: 500 }, (_, i) => `line ${i} ${"y".repeat(40)}`).join("\n");
    const md = renderMarkdown(summaryOf([scene("f", { status: "FAILED", log_excerpt: excerpt })]), {
      link,
    });
    const block = md.slice(md.indexOf("```text\n"), md.indexOf("\n```\n\n</details>"));
    expect(bytes(block)).toBeLessThan(2.2 * 1024);
    expect(block).toContain("line 499 ");
    expect(block).not.toContain("line 400 ");
    expect(block).toContain("earlier lines cut");
  });

  it("keeps a 10,000-scene run with long logs under the default budget, with a note", () => {
    const summary = hugeSummary(10_000);
    const md = renderMarkdown(summary, { link });
    expect(bytes(md)).toBeLessThanOrEqual(DEFAULT_BUDGET_BYTES);
    expect(bytes(md)).toBeLessThan(1024 * 1024);
    expect(bytes(md)).toBeGreaterThan(DEFAULT_BUDGET_BYTES - 8 * 1024); // the budget is used
    const full = link(summary.summary_key);
    const notes = md.match(/^_… [\d,]+ more .*$/gm) ?? [];
    expect(notes).toHaveLength(2);
    expect(notes[0]).toMatch(
      /^_… [\d,]+ more failed scenes not detailed here \(the report is capped at 900 KiB\)/,
    );
    expect(notes[1]).toMatch(
      /^_… \d{1,2},\d{3} more scenes not shown \(the report is capped at 900 KiB and 1,000 rows\)/,
    );
    expect(notes[1]).toContain(`Full results: [run-summary.json](${full.href}) \`${full.uri}\`_`);
    expect(md.endsWith(`\`${full.uri}\`_\n`)).toBe(true);
    // The counts in the notes add up with what is shown.
    const shownDetails = md.match(/^#### ❌/gm)?.length ?? 0;
    const shownRows = md.match(/^\| `eval_scene_/gm)?.length ?? 0;
    const number = (note: string | undefined) =>
      Number(/… ([\d,]+)/.exec(note ?? "")?.[1]?.replace(/,/g, ""));
    expect(shownDetails + number(notes[0])).toBe(1_000);
    expect(shownRows + number(notes[1])).toBe(10_000);
    expect(shownDetails).toBeGreaterThan(0);
    expect(shownRows).toBeGreaterThan(shownDetails);
  });

  it("respects a custom small budget and always keeps room for the note", () => {
    const summary = hugeSummary(300, 3);
    const full = link(summary.summary_key);
    // Many budgets, so the last row leaves every possible amount of slack before the note.
    for (let budgetBytes = 4000; budgetBytes < 12_000; budgetBytes += 37) {
      const md = renderMarkdown(summary, { link, budgetBytes });
      expect(bytes(md)).toBeLessThanOrEqual(budgetBytes);
      expect(md).toMatch(/^## MCS run: /);
      expect(md).toMatch(
        /\n_… [\d,]+ more scenes not shown \(the report is capped at [\d.]+ KiB\)/,
      );
      expect(md.endsWith(`\`${full.uri}\`_\n`)).toBe(true);
    }
    const md = renderMarkdown(summary, { link, budgetBytes: 16 * 1024 });
    expect(md).toContain("more scenes not shown (the report is capped at 16 KiB)");
    // Budgets too small for anything useful still hold.
    for (const budgetBytes of [600, 100, 0]) {
      expect(bytes(renderMarkdown(summary, { link, budgetBytes }))).toBeLessThanOrEqual(
        budgetBytes,
      );
    }
  });
});

describe("renderTerminal", () => {
  it("aligns columns, puts failures first and shows totals", () => {
    const text = renderTerminal(smallSummary());
    const lines = text.split("\n");
    expect(lines[0]).toBe("demo level2 run 20261125-151500-ab12: 2 of 8 scenes failed.");
    const header = lines[2] ?? "";
    expect(header).toMatch(/^SCENE +STATUS +ATTEMPTS +DURATION +FAILURE$/);
    const rows = lines.slice(3, 11);
    expect(rows[0]).toMatch(/^demo_aa\|pipe +FAILED +1 +10\.0 s +script_error$/);
    expect(rows[1]).toMatch(/^demo_zz_timeout +FAILED +2 +1h 00m +timeout$/);
    // Columns line up: each status starts where the header's STATUS starts; durations end together.
    for (const row of rows) {
      expect(row.indexOf(row.includes("FAILED") ? "FAILED" : "SUCCESS")).toBe(
        header.indexOf("STATUS"),
      );
      expect(row.slice(0, header.indexOf("DURATION") + "DURATION".length)).toMatch(
        /\d(\.\d s|m|s)$/,
      );
    }
    expect(text).toContain("total 8 · succeeded 6 · failed 2 · pending 0 · retried 1 · resumed 1");
    expect(text).not.toContain("more");
  });

  it("truncates after maxRows with a count of the rest", () => {
    const text = renderTerminal(hugeSummary(1_234), 5);
    const rows = text.split("\n").filter((line) => line.startsWith("eval_scene_"));
    expect(rows).toHaveLength(5);
    expect(rows.every((row) => row.includes("FAILED"))).toBe(true);
    expect(text).toContain("… 1,229 more");
  });
});

describe("parseSummary", () => {
  /** The small summary as JSON with the value at `path` replaced (undefined: removed). */
  function validWith(path: (string | number)[], value: unknown): string {
    const doc: unknown = JSON.parse(JSON.stringify(smallSummary()));
    let node = doc as Record<string, unknown>;
    for (const key of path.slice(0, -1)) node = node[key] as Record<string, unknown>;
    node[String(path.at(-1))] = value;
    return JSON.stringify(doc);
  }

  it("accepts a valid summary and keeps its content", () => {
    expect(parseSummary(JSON.stringify(smallSummary()), "x")).toEqual(smallSummary());
  });

  it("rejects bad input with a one-line message naming the source, the field and the schema path", () => {
    const schema = "run-summary.schema.json#";
    const cases: [string, string][] = [
      [validWith(["schema_version"], 2), "schema_version 2 is not supported (expected 1)"],
      [validWith(["schema_version"], undefined), `schema_version is missing (${schema}/required)`],
      [validWith(["scenes"], undefined), `scenes is missing (${schema}/required)`],
      [
        validWith(["scenes"], {}),
        `scenes must be an array, got an object (${schema}/properties/scenes/type)`,
      ],
      [
        validWith(["state"], "done"),
        `state must be one of running, finished, interrupted, got "done" (${schema}/properties/state/enum)`,
      ],
      [
        validWith(["scenes", 3, "status"], "DONE"),
        `scenes[3].status must be one of SUCCESS, FAILED, PENDING, got "DONE" (${schema}/$defs/sceneStatus/enum)`,
      ],
      [
        validWith(["scenes", 1, "name"], 7),
        `scenes[1].name must be a string, got 7 (${schema}/$defs/scene/properties/name/type)`,
      ],
      [
        validWith(["scenes", 1, "attempts"], "1"),
        `scenes[1].attempts must be an integer, got "1" (${schema}/$defs/count/type)`,
      ],
      [
        validWith(["scenes", 0, "outputs", "videos"], [3]),
        `scenes[0].outputs.videos[0] must be a string, got 3 (${schema}/$defs/outputs/properties/videos/items/type)`,
      ],
      [
        validWith(["scenes", 2, "history", 1, "failure_class"], "meltdown"),
        `scenes[2].history[1].failure_class must be one of timeout, xserver, oom, script_error, missing_outputs, performer_crash, inactivity, node_services, node_lost, task_error, null, got "meltdown" (${schema}/$defs/failureClass/enum)`,
      ],
      [
        validWith(["scenes", 2, "failure_class"], null),
        `scenes[2].failure_class must be a string, got null (${schema}/$defs/scene/allOf/0/then/properties/failure_class/type)`,
      ],
      [
        validWith(["totals", "failed"], -1),
        `totals.failed must be >= 0, got -1 (${schema}/$defs/count/minimum)`,
      ],
      [
        validWith(["scenes", 0, "outcome"], "ok"),
        `scenes[0].outcome is not allowed (${schema}/$defs/scene/additionalProperties)`,
      ],
      ["[1, 2]", `the document must be an object, got an array (${schema}/type)`],
    ];
    for (const [text, problem] of cases) {
      const parse = () => parseSummary(text, "s3://b/run-summary.json");
      expect(parse).toThrowError(`s3://b/run-summary.json: invalid run summary: ${problem}`);
      expect(parse).toThrowError(/^[^\n]+$/);
    }
  });

  it("rejects text that is not JSON", () => {
    expect(() => parseSummary("{ nope", "/tmp/run-summary.json")).toThrowError(
      /^\/tmp\/run-summary\.json: not valid JSON \([^\n]+\)$/,
    );
  });
});

describe("readSummary: the summary with its journal, as the driver left them", () => {
  /**
   * A store written by the real SummaryWriter (pipeline/mcs_pipeline/summary.py) of a driver
   * killed mid-run: the file saved at the start and after the first scene, the later scenes only
   * in journal chunks (`budget` 0), no final write. Returns the store and the summary key.
   */
  function killedDriverStore(): { store: string; key: string } {
    const store = makeTemp("mcs-journal-");
    const script = `
import json, sys
sys.path.insert(0, ${JSON.stringify(path.join(REPO, "pipeline"))})
from mcs_pipeline.store import LocalStore
from mcs_pipeline.summary import RunSummary, SummaryWriter
names = ["s_ok", "s_retried", "s_failed", "s_pending"]
plan = {"run_id": "r1", "module": "demo", "metadata": "level2", "cluster_name": None,
        "store": sys.argv[1], "summary_key": "eval/eval_level2_demo_r1_run-summary.json",
        "scenes": [{"name": n, "expected_cost": 5} for n in names]}
def result(attempt, failure=None):
    return {"attempt": attempt, "exit_code": 1 if failure else 0, "failure_class": failure,
            "duration_s": 2.5, "node": "10.0.0.9", "started_at": "2026-11-26T03:32:13.123Z",
            "outputs": {"history": None, "log": f"eval/log_{attempt}.txt", "videos": []},
            "log_excerpt": "it broke" if failure else None}
writer = SummaryWriter(LocalStore(sys.argv[1]), RunSummary(plan), interval_s=0, budget=0)
writer.save()
writer.record("s_ok", result(1), final=True)
writer.save()
writer.record("s_retried", result(1, "timeout"), final=False)
writer.flush()
writer.record("s_retried", result(2), final=True)
writer.record("s_failed", result(1, "script_error"), final=True)
writer.flush()
print(json.dumps(plan["summary_key"]))
`;
    const out = execFileSync(PYTHON, ["-c", script, store], { encoding: "utf8" });
    return { store, key: JSON.parse(out) as string };
  }

  const localStore = (store: string) => {
    const out = makeTemp("mcs-out-");
    const target = localTarget(out, undefined);
    const plan = { store, dir: path.join(out, "runs", "r1", "plan") } as Plan;
    return {
      read: (key: string) => target.readText(plan, key),
      uri: (key: string) => target.link(plan, key).uri,
    };
  };

  it("applies the journal chunks newer than the file: the report shows every scene that finished", async () => {
    const { store, key } = killedDriverStore();
    const file = parseSummary(readFileSync(path.join(store, key), "utf8"), key);
    expect(file.scenes.map((s) => s.status)).toEqual(["SUCCESS", "PENDING", "PENDING", "PENDING"]);
    expect(file.journal!.next).toBe(1);

    const warnings: string[] = [];
    const { summary, text } = await readSummary(localStore(store), key, (w) => warnings.push(w));
    expect(warnings).toEqual([]);
    expect(summary.scenes.map((s) => [s.name, s.status, s.attempts])).toEqual([
      ["s_ok", "SUCCESS", 1],
      ["s_retried", "SUCCESS", 2],
      ["s_failed", "FAILED", 1],
      ["s_pending", "PENDING", 0],
    ]);
    expect(summary.totals).toEqual({ total: 4, succeeded: 2, failed: 1, pending: 1, retried: 1 });
    expect(summary.journal!.next).toBe(3);
    expect(JSON.parse(text)).toEqual(summary);
    const markdown = renderMarkdown(summary, { link });
    expect(markdown).toContain("s_failed");
    expect(markdown).toContain("script_error");
    expect(renderTerminal(summary)).toContain(
      "total 4 · succeeded 2 · failed 1 · pending 1 · retried 1",
    );
  });

  it("stops at a chunk that is not this summary's journal, and says so", async () => {
    const { store, key } = killedDriverStore();
    const file = parseSummary(readFileSync(path.join(store, key), "utf8"), key);
    const second = path.join(store, `${file.journal!.prefix}000002.json`);
    const chunk = JSON.parse(readFileSync(second, "utf8")) as Record<string, unknown>;
    writeFileSync(second, JSON.stringify({ ...chunk, run_id: "other" }));
    const warnings: string[] = [];
    const { summary } = await readSummary(localStore(store), key, (w) => warnings.push(w));
    expect(summary.scenes.map((s) => s.status)).toEqual([
      "SUCCESS",
      "PENDING",
      "PENDING",
      "PENDING",
    ]);
    expect(summary.totals.pending).toBe(3);
    expect(warnings).toEqual([
      `ignoring ${second} and later chunks: not this summary's journal (it is run other's)`,
    ]);
    writeFileSync(second, JSON.stringify({ ...chunk, seq: "2" }));
    await readSummary(localStore(store), key, (w) => warnings.push(w));
    expect(warnings[1]).toBe(
      `ignoring ${second} and later chunks: not this summary's journal (seq must be an integer, got "2" (run-summary.schema.json#/$defs/journalChunk/properties/seq/type))`,
    );
  });

  it("reads an s3:// store the same way (the AWS target's reader): a missing key ends the journal", async () => {
    const { store, key } = killedDriverStore();
    const moto = await startMoto();
    const saved = process.env.AWS_ENDPOINT_URL;
    try {
      process.env.AWS_ENDPOINT_URL = moto.url;
      await createBucket(moto.url, "results");
      const files = readdirSync(store, { recursive: true }) as string[];
      for (const file of files.filter((f) => statSync(path.join(store, f)).isFile()))
        await putObject(
          moto.url,
          "results",
          `runs/${file}`,
          readFileSync(path.join(store, file), "utf8"),
        );
      const read = s3TextReader("s3://results/runs", TEST_REGION, async () => TEST_KEYS);
      const { summary } = await readSummary(
        { read, uri: (k) => `s3://results/runs/${k}` },
        key,
        () => {},
      );
      expect(summary.totals).toEqual({ total: 4, succeeded: 2, failed: 1, pending: 1, retried: 1 });
      expect(await read(chunkKey(summary.journal!.prefix, summary.journal!.next))).toBeUndefined();
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL;
      else process.env.AWS_ENDPOINT_URL = saved;
      await moto.stop();
    }
  }, 60_000);

  it("says which key is missing", async () => {
    await expect(
      readSummary(localStore(makeTemp("mcs-empty-")), "k.json", () => {}),
    ).rejects.toThrow(/\/k\.json: no such file or object$/);
  });
});

describe("links to the object version the run wrote (a versioned bucket)", () => {
  const versioned = (): RunSummary => {
    const failed = scene("demo_failed", { status: "FAILED" });
    const ok = scene("demo_ok");
    const versions = (s: SceneResult) =>
      Object.fromEntries(
        [s.outputs.history!, s.outputs.log!, ...s.outputs.videos].map((k, i) => [
          k,
          `v${i}.${s.name}`,
        ]),
      );
    return summaryOf([
      { ...failed, outputs: { ...failed.outputs, versions: versions(failed) } },
      { ...ok, outputs: { ...ok.outputs, versions: versions(ok) } },
      scene("demo_older_summary"),
    ]);
  };
  const s3 = (key: string, version?: string) =>
    s3Link("s3://mcs-results/runs", "eu-west-1", key, version);

  it("s3Link adds the version to the console link only when there is one", () => {
    expect(s3("eval/a b.json", "3HL4kqtJ+lcpXroDTDmJ").href).toBe(
      "https://s3.console.aws.amazon.com/s3/object/mcs-results?region=eu-west-1&prefix=runs%2Feval%2Fa%20b.json&versionId=3HL4kqtJ%2BlcpXroDTDmJ",
    );
    expect(s3("eval/a.json")).toEqual({
      href: "https://s3.console.aws.amazon.com/s3/object/mcs-results?region=eu-west-1&prefix=runs%2Feval%2Fa.json",
      uri: "s3://mcs-results/runs/eval/a.json",
    });
    expect(s3("eval/a.json", "v1").uri).toBe("s3://mcs-results/runs/eval/a.json");
  });

  it("every history, log and video link of a scene carries its recorded version; a scene without versions links the key", () => {
    const markdown = renderMarkdown(versioned(), { link: s3 });
    const hrefs = [...markdown.matchAll(/\]\((https:[^)]+)\)/g)].map((m) => new URL(m[1]!));
    const of = (name: string) =>
      hrefs
        .filter((url) => url.searchParams.get("prefix")!.includes(`/${name}`))
        .map((url) => [url.searchParams.get("prefix"), url.searchParams.get("versionId")]);
    // The failed scene: its log in the failure details, then its row (history, log, video).
    expect(of("demo_failed")).toEqual([
      ["runs/eval/demo_failed_log.txt", "v1.demo_failed"],
      ["runs/eval/demo_failed.json", "v0.demo_failed"],
      ["runs/eval/demo_failed_log.txt", "v1.demo_failed"],
      ["runs/movies/demo_failed_visual.mp4", "v2.demo_failed"],
    ]);
    expect(of("demo_ok")).toEqual([
      ["runs/eval/demo_ok.json", "v0.demo_ok"],
      ["runs/eval/demo_ok_log.txt", "v1.demo_ok"],
      ["runs/movies/demo_ok_visual.mp4", "v2.demo_ok"],
    ]);
    expect(of("demo_older_summary").map(([, version]) => version)).toEqual([null, null, null]);
  });

  it("a local store links its files as they are (a directory keeps no versions)", () => {
    const out = makeTemp("mcs-out-");
    const plan = { store: path.join(out, "store"), dir: path.join(out, "runs", "r1", "plan") };
    const markdown = renderMarkdown(versioned(), {
      link: (key, version) => localTarget(out, undefined).link(plan as Plan, key, version),
    });
    expect(markdown).toContain("](../../store/eval/demo_ok.json)");
    expect(markdown).not.toContain("versionId");
  });
});

describe("e2e: two runs replace the same history key in a versioned bucket; each report keeps its own", () => {
  it("the real driver runs twice on local Ray into moto; each report's history link opens the bytes its run wrote", async () => {
    const moto = await startMoto();
    const names = [
      "AWS_ENDPOINT_URL",
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
      "AWS_REGION",
      "AWS_DEFAULT_REGION",
    ] as const;
    const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
    try {
      // The driver (and the local Ray its tasks run in) inherits these, as nodes have theirs.
      Object.assign(process.env, {
        AWS_ENDPOINT_URL: moto.url,
        AWS_ACCESS_KEY_ID: TEST_KEYS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: TEST_KEYS.secretAccessKey,
        AWS_REGION: TEST_REGION,
        AWS_DEFAULT_REGION: TEST_REGION,
      });
      const bucket = "mcs-versioned-results";
      await createBucket(moto.url, bucket);
      const client = s3Client(moto.url);
      await client.send(
        new PutBucketVersioningCommand({
          Bucket: bucket,
          VersioningConfiguration: { Status: "Enabled" },
        }),
      );
      const store = `s3://${bucket}/results`;
      const read = s3TextReader(store, TEST_REGION, async () => TEST_KEYS);
      const out = makeTemp("mcs-versions-");
      const env: Environment = {
        toolRoot: REPO,
        workspace: REPO,
        venvDir: path.dirname(path.dirname(PYTHON)),
        log: () => undefined,
      };
      const request = parseRequest(
        { module: "demo", scenes: "scenes/subset/demo_gravity_support_0001_01.json", retries: "0" },
        "local",
      );
      const run = async () => {
        const local = localTarget(out, 1);
        const target: Target = {
          ...local,
          place: (mod, runId) => ({ ...local.place(mod, runId), store }),
          readText: (_plan, key) => read(key),
          link: (plan, key, version) => s3Link(plan.store, TEST_REGION, key, version),
        };
        const outcome = await evaluate(request, env, target, { progress: () => undefined });
        expect(outcome.exitCode, outcome.markdown).toBe(0);
        const scene = outcome.summary!.scenes[0]!;
        const key = scene.outputs.history!;
        const url = new URL(/\[history\]\((https:[^)]+)\)/.exec(outcome.markdown!)![1]!);
        // What the key holds right after this run: this run's history.
        return { outcome, key, url, written: await read(key) };
      };
      const first = await run();
      const second = await run();
      expect(second.key).toBe(first.key); // MCS's name: the same key, replaced
      expect(second.written).not.toBe(first.written);

      for (const { key, url, written, outcome } of [first, second]) {
        expect(url.pathname).toBe(`/s3/object/${bucket}`);
        expect(url.searchParams.get("prefix")).toBe(`results/${key}`);
        const version = url.searchParams.get("versionId");
        expect(version, outcome.markdown).toBeTruthy();
        const object = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key: `results/${key}`, VersionId: version! }),
        );
        const bytes = await object.Body!.transformToString();
        expect(bytes).toBe(written);
        // The history's own stamp is the one in this run's log key.
        const stamp = (JSON.parse(bytes) as { info: { timestamp: string } }).info.timestamp;
        expect(outcome.summary!.scenes[0]!.outputs.log).toContain(`_${stamp}_log.txt`);
      }
      // The key alone (what a report linked before) now shows the second run's file.
      expect(await read(first.key)).toBe(second.written);
    } finally {
      for (const n of names) {
        if (saved[n] === undefined) Reflect.deleteProperty(process.env, n);
        else process.env[n] = saved[n];
      }
      await moto.stop();
    }
  }, 240_000);
});
