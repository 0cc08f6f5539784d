/**
 * Bad input, the way users meet it: `node dist/cli/index.js run ...` in a workspace whose module
 * files or scenes are broken. Every case must exit 2 with one stderr line that names the input and
 * the fix, before anything starts (no driver, no results store), and fast.
 */
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CLI, runCli, runDirs, type CliResult } from "./support/cli.js";
import { copyWorkspace, removeTemps } from "./support/workspace.js";

afterAll(removeTemps);

/** Ray alone needs ~10 s to start here; bad input must be rejected long before. */
const FAST_MS = 5_000;

interface Case {
  name: string;
  /** argv after `node dist/cli/index.js`; `--out out` is appended. */
  argv: string[];
  setup?: (ws: string) => void;
  /** How the input is named on the line, e.g. `--module`. */
  input: string;
  /** The whole line after `mcs-pipeline: `: what is wrong and how to fix it. */
  line: RegExp | ((ws: string) => RegExp);
  after?: (ws: string) => void;
}

const run = (...args: string[]) => ["run", ...args];

let iniLine = 0;

const CASES: Case[] = [
  {
    name: "unknown module: lists the known modules",
    argv: run("--module", "cora"),
    setup: (ws) =>
      cpSync(path.join(ws, "configs/demo_aws.ini"), path.join(ws, "configs/opics_aws.ini")),
    input: "--module",
    line: /^--module: unknown module "cora": known modules are demo, opics \(a module needs configs\/cora_aws\.ini\)$/,
  },
  {
    name: "module name with a path",
    argv: run("--module", "../demo"),
    input: "--module",
    line: /^--module: "\.\.\/demo" is not a module name: use letters, digits, "-" and "_" only \(e\.g\. demo\)$/,
  },
  {
    name: "module name with shell characters",
    argv: run("--module", "demo;rm -rf x"),
    setup: (ws) => writeFileSync(path.join(ws, "x"), "still here"),
    input: "--module",
    line: /^--module: "demo;rm -rf x" is not a module name: use letters, digits, "-" and "_" only \(e\.g\. demo\)$/,
    after: (ws) => expect(readFileSync(path.join(ws, "x"), "utf8")).toBe("still here"),
  },
  {
    name: "no --module at all",
    argv: run("--scenes", "scenes/subset"),
    input: "--module",
    line: /^--module: is required \(e\.g\. demo\)$/,
  },
  {
    name: "missing MCS config for the metadata level",
    argv: run("--module", "demo", "--metadata", "level1"),
    setup: (ws) => rmSync(path.join(ws, "configs/mcs_config_demo_level1.ini")),
    input: "--metadata",
    line: /^--metadata: module "demo" has no MCS config for level1: add configs\/mcs_config_demo_level1\.ini or choose one of: level2, oracle$/,
  },
  {
    name: "invalid metadata level",
    argv: run("--module", "demo", "--metadata", "level9"),
    input: "--metadata",
    line: /^--metadata: "level9" is not a level: use level1, level2, oracle$/,
  },
  {
    name: "scenes path missing",
    argv: run("--module", "demo", "--scenes", "scenes/nowhere"),
    input: "--scenes",
    line: /^--scenes: scenes\/nowhere does not exist: give a directory of scene \.json files$/,
  },
  {
    name: "scenes dir empty",
    argv: run("--module", "demo", "--scenes", "scenes/empty"),
    setup: (ws) => mkdirSync(path.join(ws, "scenes/empty")),
    input: "--scenes",
    line: /^--scenes: scenes\/empty holds no \.json scene files$/,
  },
  {
    name: "a scene with invalid JSON: the message names the file",
    argv: run("--module", "demo", "--scenes", "scenes/broken"),
    setup: (ws) => {
      cpSync(path.join(ws, "scenes/subset"), path.join(ws, "scenes/broken"), { recursive: true });
      writeFileSync(
        path.join(ws, "scenes/broken/demo_broken_0001_01.json"),
        '{"name": "demo_broken_0001_01", "goal": {',
      );
    },
    input: "--scenes",
    line: /^--scenes: scenes\/broken\/demo_broken_0001_01\.json is not valid JSON: \S.*$/,
  },
  {
    name: "retries -1",
    argv: run("--module", "demo", "--retries", "-1"),
    input: "--retries",
    line: /^--retries: "-1" is not a non-negative integer \(e\.g\. 2\)$/,
  },
  {
    name: "retries=-1",
    argv: run("--module", "demo", "--retries=-1"),
    input: "--retries",
    line: /^--retries: "-1" is not a non-negative integer \(e\.g\. 2\)$/,
  },
  {
    name: "retries abc",
    argv: run("--module", "demo", "--retries", "abc"),
    input: "--retries",
    line: /^--retries: "abc" is not a non-negative integer \(e\.g\. 2\)$/,
  },
  {
    name: "scene timeout 0",
    argv: run("--module", "demo", "--scene-timeout-minutes", "0"),
    input: "--scene-timeout-minutes",
    line: /^--scene-timeout-minutes: "0" is not a positive number of minutes \(e\.g\. 60\)$/,
  },
  {
    name: "an override that is not key=value",
    argv: run("--module", "demo", "--set", "s3_folder=ok", "--set", "novalue"),
    input: "--set",
    line: /^--set: "novalue" is not a key=value line \(e\.g\. s3_folder=eval-test\)$/,
  },
  {
    name: "an override that makes the MCS config unsafe",
    argv: run("--module", "demo", "--set", "s3_folder=../x"),
    input: "--set",
    line: /^--set: MCS config with overrides: s3_folder="\.\.\/x" is not a safe S3 name$/,
  },
  {
    name: "an override with a % (configparser on the node would interpolate it)",
    argv: run(
      "--module",
      "demo",
      "--set",
      "s3_folder=ok",
      "--set",
      "history_enabled=%(s3_bucket)s",
    ),
    input: "--set",
    line: /^--set: "history_enabled" has a %, which configparser on the node interpolates; remove it$/,
  },
  {
    name: "malformed INI (a line without =): names file:line",
    argv: run("--module", "demo"),
    setup: (ws) => {
      const file = path.join(ws, "configs/demo_aws.ini");
      appendFileSync(file, "num_workers 4\n");
      iniLine = readFileSync(file, "utf8").split("\n").length - 1;
    },
    input: "--module",
    line: () =>
      new RegExp(
        `^--module: malformed INI: configs/demo_aws\\.ini:${iniLine}: expected "key = value", "\\[section\\]" or a comment$`,
      ),
  },
  {
    name: "malformed YAML (bad indentation): names the file",
    argv: run("--module", "demo"),
    setup: (ws) => {
      const file = path.join(ws, "autoscaler/ray_demo_aws.yaml");
      const text = readFileSync(file, "utf8");
      expect(text).toContain("\n  type: aws\n");
      writeFileSync(file, text.replace("\n  type: aws\n", "\ntype: aws\n"));
    },
    input: "--module",
    line: /^--module: malformed YAML in autoscaler\/ray_demo_aws\.yaml: \S.*$/,
  },
  {
    name: "unknown flag",
    argv: run("--module", "demo", "--bogus"),
    input: "--bogus",
    line: /^Unknown option '--bogus' \(see --help\)$/,
  },
  {
    name: "unknown command",
    argv: ["frob", "--module", "demo"],
    input: "command",
    line: /^command: unknown command "frob": use run, plan, preflight, setup, affected, combine or pr-comment$/,
  },
  {
    name: "a stray argument",
    argv: run("demo", "--module", "demo"),
    input: "arguments",
    line: /^arguments: unexpected "demo"; see --help$/,
  },
  ...["-30", "0", "soon", "1e3", "0x10", "0.5", "20000"].map((value) => ({
    name: `deadline-minutes ${value}`,
    argv: run("--module", "demo", "--deadline-minutes", value),
    input: "--deadline-minutes",
    line: new RegExp(
      `^--deadline-minutes: "${value}" is not a number of minutes from 1 to 10080 \\(a week\\) \\(e\\.g\\. 120\\)$`,
    ),
  })),
  ...["-5", "0", "lots", "Infinity", "0.001", "2000000"].map((value) => ({
    name: `budget-usd ${value}`,
    argv: ["plan", "--module", "demo", "--budget-usd", value],
    input: "--budget-usd",
    line: new RegExp(
      `^--budget-usd: "${value}" is not a number of US dollars from 0\\.01 to 1000000 \\(e\\.g\\. 250\\)$`,
    ),
  })),
  {
    name: "a budget for a local run this machine has no price for",
    argv: run("--module", "demo", "--budget-usd", "5"),
    input: "--budget-usd",
    line: /^--budget-usd: node type local has no price, so the run's cost cannot be tracked: declare it in configs\/demo_aws\.ini \[prices\] \(e\.g\. local = 0\.5\)$/,
  },
  {
    name: "plan with an unknown module",
    argv: ["plan", "--module", "cora"],
    input: "--module",
    line: /^--module: unknown module "cora": known modules are demo \(/,
  },
];

/** Nothing ran: no driver log, no report, no results store under --out. */
function expectNothingStarted(out: string) {
  expect(existsSync(path.join(out, "store")), "store/ was created").toBe(false);
  for (const dir of runDirs(out)) {
    expect(existsSync(path.join(dir, "driver.log")), `${dir}/driver.log`).toBe(false);
    expect(existsSync(path.join(dir, "report.md")), `${dir}/report.md`).toBe(false);
  }
}

describe("CLI: bad input exits 2 with one line naming the input and the fix", () => {
  it("has the CLI built", () => {
    expect(existsSync(CLI), `${CLI}: run npm run build`).toBe(true);
  });

  it.each(CASES)("$name", async (c) => {
    const ws = copyWorkspace();
    c.setup?.(ws);
    const result: CliResult = await runCli([...c.argv, "--out", "out"], ws);
    const context = `stderr: ${result.stderr}\nstdout: ${result.stdout}`;

    expect(result.code, context).toBe(2);
    expect(result.stderr, "exactly one line on stderr").toMatch(/^[^\n]+\n$/);
    const line = result.stderr.trimEnd();
    expect(line.startsWith("mcs-pipeline: "), line).toBe(true);
    expect(line).toContain(c.input);
    const pattern = typeof c.line === "function" ? c.line(ws) : c.line;
    expect(line.slice("mcs-pipeline: ".length)).toMatch(pattern);
    expect(result.stdout, "nothing on stdout (no install, no progress)").toBe("");
    expectNothingStarted(path.join(ws, "out"));
    expect(result.ms).toBeLessThan(FAST_MS);
    c.after?.(ws);
  });
});

describe("CLI: plan", () => {
  it("plan --module demo prints the plan and starts nothing", async () => {
    const ws = realpathSync(copyWorkspace());
    const result = await runCli(["plan", "--module", "demo", "--out", "out"], ws);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe("");
    const lines = result.stdout.trimEnd().split("\n");
    const head =
      /^plan (\d{8}-\d{6}-[0-9a-f]{4}): module demo, metadata level2, target local$/.exec(
        lines[0] ?? "",
      );
    expect(head, result.stdout).not.toBeNull();
    const runId = head![1]!;
    const out = path.join(ws, "out");
    const planDir = path.join(out, "runs", runId, "plan");
    expect(lines).toContain("  scenes:        9 (longest first by goal.last_step)");
    expect(lines).toContain(`  staging:       ${planDir}`);
    expect(lines).toContain(
      `  results:       ${path.join(out, "store")} (summary demo-eval/demo-eval_level2_demo_${runId}_run-summary.json)`,
    );
    expect(lines).toContain(
      "  latest run:    demo-eval/demo-eval_level2_demo_latest-run.json (resume and scheduling find the previous run there)",
    );
    expect(lines).toContain("  retries:       2; timeout 10 min per scene");
    expect(result.stdout).not.toMatch(/Ray \S+ is already installed|Installing ray/);

    // The plan is built for inspection...
    const plan = JSON.parse(readFileSync(path.join(planDir, "plan.json"), "utf8")) as {
      run_id: string;
      scenes: unknown[];
      store: string;
    };
    expect(plan.run_id).toBe(runId);
    expect(plan.scenes).toHaveLength(9);
    expect(plan.store).toBe(path.join(out, "store"));
    // ...and nothing ran.
    expect(runDirs(out)).toEqual([path.join(out, "runs", runId)]);
    expectNothingStarted(out);
    expect(result.ms).toBeLessThan(FAST_MS);
  });

  it("plan takes the same options as run", async () => {
    const ws = copyWorkspace();
    const result = await runCli(
      [
        "plan",
        "--module",
        "demo",
        "--metadata",
        "oracle",
        "--retries",
        "0",
        "--scene-timeout-minutes",
        "2",
        "--set",
        "s3_folder=demo-eval-test",
        "--resume",
        "--out",
        "out",
      ],
      ws,
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^plan \S+: module demo, metadata oracle, target local$/m);
    expect(result.stdout).toMatch(
      /\(summary demo-eval-test\/demo-eval_oracle_demo_\d{8}-\d{6}-[0-9a-f]{4}_run-summary\.json\)$/m,
    );
    expect(result.stdout).toContain(
      "  latest run:    demo-eval-test/demo-eval_oracle_demo_latest-run.json (",
    );
    expect(result.stdout).toContain("  retries:       0; timeout 2 min per scene");
    expect(result.stdout).toContain(
      "  resume:        scenes already SUCCESS in the latest run's summary are skipped",
    );
    expectNothingStarted(path.join(ws, "out"));
  });
});
