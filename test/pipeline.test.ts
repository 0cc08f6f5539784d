/**
 * The Python driver's pytest suite (pipeline/tests, real local Ray), reported through vitest so
 * one test command covers both languages: pytest runs once, each of its cases becomes a test here.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { venvPython } from "../src/ray/install.js";

const root = path.resolve(import.meta.dirname, "..");
const python = venvPython(process.env.MCS_VENV ?? path.join(root, ".venv"));
const cases = execFileSync(python, ["-m", "pytest", "pipeline/tests", "--collect-only", "-q"], {
  cwd: root,
  encoding: "utf8",
})
  .split("\n")
  .filter((line) => line.includes("::"));

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

describe("pipeline (pytest, real local Ray)", () => {
  let outcomes = new Map<string, Outcome>();
  let output = "";
  beforeAll(() => {
    const junit = path.join(mkdtempSync(path.join(tmpdir(), "pytest-")), "junit.xml");
    const run = spawnSync(
      python,
      ["-m", "pytest", "pipeline/tests", "-q", "-p", "no:cacheprovider", `--junitxml=${junit}`],
      {
        cwd: root,
        encoding: "utf8",
      },
    );
    output = `${run.stdout}\n${run.stderr}`;
    try {
      outcomes = parseJunit(readFileSync(junit, "utf8"));
    } catch {
      throw new Error(`pytest produced no report (exit ${run.status}):\n${output.slice(-4000)}`);
    }
  }, 900_000);

  it("collects the driver's tests", () => expect(cases.length).toBeGreaterThan(10));

  for (const id of cases) {
    it(id, () => {
      const outcome = outcomes.get(id);
      expect(outcome, `pytest did not report ${id}:\n${output.slice(-3000)}`).toBeDefined();
      expect(outcome!.passed, outcome!.message).toBe(true);
    });
  }
});
