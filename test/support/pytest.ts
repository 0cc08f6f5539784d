/**
 * The Python driver's pytest suite (pipeline/tests, real local Ray), reported through vitest so
 * one test command covers both languages. The suite is cut into shards (test/pipeline-*.test.ts),
 * each running its pytest files once in a pytest of its own (its own session Ray), side by side
 * with the other vitest files; each pytest case becomes a vitest test.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { venvPython } from "../../src/ray/install.js";
import { REPO } from "./workspace.js";

const python = venvPython(process.env.MCS_VENV ?? path.join(REPO, ".venv"));
export const PYTEST_DIR = "pipeline/tests";

/** The shards, each a vitest file (test/pipeline-<shard>.test.ts); every pytest file in one. */
export const SHARDS = {
  driver: ["test_driver.py"],
  runs: ["test_attach.py", "test_budget.py", "test_hygiene.py", "test_summary_writes.py"],
  units: [
    "test_report_fields.py",
    "test_s3_store.py",
    "test_scene_set.py",
    "test_schemas.py",
    "test_units.py",
    "test_watchdog.py",
  ],
} as const;

/** Every pytest file of the suite (test_*.py). */
export function pytestFiles(): string[] {
  return readdirSync(path.join(REPO, PYTEST_DIR))
    .filter((f) => /^test_.*\.py$/.test(f))
    .sort();
}

interface Outcome {
  passed: boolean;
  message: string;
}

/** junit XML → outcome per "file::name" (classname is the dotted module path). */
function parseJunit(xml: string): Map<string, Outcome> {
  const outcomes = new Map<string, Outcome>();
  for (const m of xml.matchAll(
    /<testcase classname="([^"]*)" name="([^"]*)"[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g,
  )) {
    const file = `${m[1]!.replace(/\./g, "/").replace(/\/(Test\w+)$/, ".py::$1")}`;
    const id = `${file.includes(".py::") ? file : `${file}.py`}::${unescape(m[2]!)}`;
    const body = m[4] ?? "";
    const failed = /<(failure|error)\b/.test(body);
    outcomes.set(id, { passed: !failed, message: unescape(body).slice(0, 4000) });
  }
  return outcomes;
}

function unescape(text: string): string {
  return text
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, "&");
}

/** Registers one vitest test per pytest case of the shard's files, run once. */
export function pytestShard(shard: keyof typeof SHARDS): void {
  const files = SHARDS[shard];
  const paths = files.map((f) => `${PYTEST_DIR}/${f}`);
  const cases = execFileSync(python, ["-m", "pytest", ...paths, "--collect-only", "-q"], {
    cwd: REPO,
    encoding: "utf8",
  })
    .split("\n")
    .filter((line) => line.includes("::"));

  describe(`pipeline (pytest, real local Ray): ${files.join(", ")}`, () => {
    let outcomes = new Map<string, Outcome>();
    let output = "";
    beforeAll(() => {
      const junit = path.join(mkdtempSync(path.join(tmpdir(), "pytest-")), "junit.xml");
      const run = spawnSync(
        python,
        ["-m", "pytest", ...paths, "-q", "-p", "no:cacheprovider", `--junitxml=${junit}`],
        { cwd: REPO, encoding: "utf8" },
      );
      output = `${run.stdout}\n${run.stderr}`;
      try {
        outcomes = parseJunit(readFileSync(junit, "utf8"));
      } catch {
        throw new Error(`pytest produced no report (exit ${run.status}):\n${output.slice(-4000)}`);
      }
    }, 900_000);

    it("collects every file's tests", () => {
      for (const file of paths) expect(cases.some((c) => c.startsWith(`${file}::`))).toBe(true);
    });

    for (const id of cases) {
      it(id, () => {
        const outcome = outcomes.get(id);
        expect(outcome, `pytest did not report ${id}:\n${output.slice(-3000)}`).toBeDefined();
        expect(outcome!.passed, outcome!.message).toBe(true);
      });
    }
  });
}
