/**
 * The workflows and action.yml: actionlint over every workflow, a structural check of the
 * action metadata, and the contracts between them — what a caller passes must be declared by
 * what it calls (a typo in an input name is silently ignored by GitHub otherwise).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { knownModules } from "../src/module.js";

const root = path.resolve(import.meta.dirname, "..");
const workflowsDir = path.join(root, ".github/workflows");
const load = (file: string) => parse(readFileSync(path.join(root, file), "utf8"));

type Io = Record<string, { description?: string; required?: boolean; default?: unknown }>;
interface Step {
  uses?: string;
  with?: Record<string, unknown>;
  run?: string;
  env?: Record<string, string>;
}
interface Job {
  uses?: string;
  with?: Record<string, unknown>;
  steps?: Step[];
  permissions?: Record<string, string>;
}
const workflows = readdirSync(workflowsDir)
  .filter((f) => f.endsWith(".yml"))
  .map((f) => ({ file: f, doc: load(`.github/workflows/${f}`) }));
const actions = ["action.yml", "janitor/action.yml"].filter((f) => existsSync(path.join(root, f)));

describe("workflows", () => {
  it("pass actionlint", () => {
    const actionlint = path.join(root, ".tools/bin/actionlint");
    expect(existsSync(actionlint), "run `npm run setup` to install actionlint").toBe(true);
    const out = execFileSync(actionlint, ["-no-color"], { cwd: root, encoding: "utf8" });
    expect(out).toBe("");
  });

  it("are the ones the project needs", () => {
    expect(workflows.map((w) => w.file).sort()).toEqual(
      expect.arrayContaining([
        "check-dist.yml",
        "ci.yml",
        "dispatch-eval.yml",
        "eval.yml",
        "pr-eval.yml",
        "scheduled-eval.yml",
      ]),
    );
  });

  const evalWf = load(".github/workflows/eval.yml");
  const evalInputs: Io = evalWf.on.workflow_call.inputs;
  const callers = workflows.flatMap(({ file, doc }) =>
    Object.entries(doc.jobs as Record<string, Job>)
      .filter(([, job]) => job.uses === "./.github/workflows/eval.yml")
      .map(([name, job]) => ({ where: `${file} ${name}`, job })),
  );

  it("call eval.yml with inputs it declares, and every required one", () => {
    expect(callers.length).toBeGreaterThanOrEqual(3);
    for (const { where, job } of callers) {
      for (const key of Object.keys(job.with ?? {})) {
        expect(Object.keys(evalInputs), `${where} passes ${key}`).toContain(key);
      }
      for (const [key, spec] of Object.entries(evalInputs)) {
        if (spec.required)
          expect(Object.keys(job.with ?? {}), `${where} must pass ${key}`).toContain(key);
      }
    }
  });

  it("eval.yml's inputs are the action's (but for its own artifact setting)", () => {
    const actionInputs = Object.keys(load("action.yml").inputs);
    for (const key of Object.keys(evalInputs).filter((k) => k !== "artifact-retention-days")) {
      expect(actionInputs, `eval.yml input ${key}`).toContain(key);
    }
  });

  it("eval.yml asks for id-token: write and contents: read, nothing more", () => {
    expect(evalWf.permissions).toEqual({ "id-token": "write", contents: "read" });
    const job: Job & { "timeout-minutes"?: number; concurrency?: { group: string } } =
      evalWf.jobs.eval;
    expect(job["timeout-minutes"]).toBeGreaterThan(0);
    for (const part of ["inputs.module", "inputs.metadata", "github.ref"]) {
      expect(job.concurrency?.group).toContain(part);
    }
  });

  it("scenes reach the action unchanged; the scheduled run's full set is a variable (s3:// too)", () => {
    const step = (evalWf.jobs.eval.steps as Step[]).find((s) => s.uses === "./")!;
    expect(step.with!.scenes).toBe("${{ inputs.scenes }}");
    expect(evalInputs.scenes!.description).toMatch(/s3:\/\/bucket\/prefix\//);
    // The run (a collect starts nothing and lists no scenes).
    const run = callers.find(({ where }) => where === "scheduled-eval.yml eval")!;
    expect(run.job.with!.scenes).toBe("${{ vars.MCS_FULL_SCENES || 'scenes/subset' }}");
  });

  it("pr-eval.yml comments through our CLI (pr-comment), with the token it may write with", () => {
    const job: Job = load(".github/workflows/pr-eval.yml").jobs.comment;
    expect(job.permissions).toEqual({ contents: "read", "pull-requests": "write" });
    expect(job.steps!.filter((s) => s.uses?.startsWith("actions/github-script"))).toEqual([]);
    const step = job.steps!.find((s) => s.run?.includes("dist/cli/index.js pr-comment"));
    expect(step?.run).toContain("--body comment.md");
    expect(step?.env).toEqual({ GITHUB_TOKEN: "${{ github.token }}" });
  });

  it("the hand-started form offers exactly the repository's modules", () => {
    const form = load(".github/workflows/dispatch-eval.yml").on.workflow_dispatch.inputs;
    expect(form.module.options).toEqual(knownModules(root));
    expect(form.metadata.options).toEqual(["level1", "level2", "oracle"]);
  });
});

describe("action metadata", () => {
  for (const file of actions) {
    const action = load(file);
    it(`${file}: runs on node24 with bundles that exist; everything documented`, () => {
      expect(typeof action.name).toBe("string");
      expect(typeof action.description).toBe("string");
      expect(action.runs.using).toBe("node24");
      for (const entry of ["main", "post"].filter((k) => action.runs[k])) {
        expect(existsSync(path.join(root, path.dirname(file), action.runs[entry]))).toBe(true);
      }
      for (const [name, spec] of Object.entries({ ...action.inputs, ...action.outputs } as Io)) {
        expect(spec.description, `${file}: ${name} is documented`).toMatch(/\w/);
      }
      for (const name of Object.keys(action.inputs ?? {}))
        expect(name).toMatch(/^[a-z][a-z0-9-]*$/);
    });
  }

  it("action.yml tears down in an always-run post step", () => {
    const action = load("action.yml");
    expect(action.runs.post).toBe("dist/post/index.js");
    expect(action.runs["post-if"]).toBe("always()");
  });

  it("every step using an action of this repository passes inputs the action declares", () => {
    const uses = workflows.flatMap(({ file, doc }) =>
      Object.values(doc.jobs as Record<string, Job>).flatMap((job) =>
        (job.steps ?? []).filter((s) => s.uses?.startsWith("./")).map((s) => ({ file, step: s })),
      ),
    );
    expect(uses.length).toBeGreaterThanOrEqual(1);
    for (const { file, step } of uses) {
      const action = load(path.join(step.uses!, "action.yml"));
      const inputs: Io = action.inputs ?? {};
      for (const key of Object.keys(step.with ?? {})) {
        expect(Object.keys(inputs), `${file} passes ${key} to ${step.uses}`).toContain(key);
      }
      for (const [key, spec] of Object.entries(inputs)) {
        if (spec.required) expect(Object.keys(step.with ?? {}), `${file}: ${key}`).toContain(key);
      }
    }
  });

  it("scheduled-eval.yml hands long runs over and collects them on later crons", () => {
    const wf = load(".github/workflows/scheduled-eval.yml");
    const crons: string[] = wf.on.schedule.map((s: { cron: string }) => s.cron);
    const [launch, ...later] = crons;
    expect(later.length).toBeGreaterThanOrEqual(1);
    const { eval: run, collect } = wf.jobs as Record<
      string,
      Job & { if: string; strategy: unknown }
    >;
    // The run follows for less than eval.yml's 360-minute job, then hands over.
    expect(Number(run!.with!["follow-minutes"])).toBeGreaterThan(0);
    expect(Number(run!.with!["follow-minutes"])).toBeLessThan(360 - 20);
    expect(run!.with!["collect-run-id"]).toBeUndefined();
    expect(run!.if).toContain(`github.event.schedule == '${launch}'`);
    // The collect: the latest run of every module and level the run job starts, nothing started.
    expect(collect!.uses).toBe("./.github/workflows/eval.yml");
    expect(collect!.with).toMatchObject({ "collect-run-id": "latest" });
    expect(collect!.with!["follow-minutes"]).toBeUndefined();
    expect(collect!.strategy).toEqual({ ...(run!.strategy as object), "max-parallel": undefined });
    expect(collect!.if).toContain(`github.event.schedule != '${launch}'`);
    expect(wf.jobs.summary.needs).toEqual(expect.arrayContaining(["eval", "collect"]));
  });

  it("eval.yml passes follow-minutes and collect-run-id on; a collect has its own concurrency group", () => {
    const evalWf = load(".github/workflows/eval.yml");
    const job = evalWf.jobs.eval;
    const step = (job.steps as Step[]).find((s) => s.uses === "./")!;
    expect(step.with).toMatchObject({
      "follow-minutes": "${{ inputs.follow-minutes }}",
      "collect-run-id": "${{ inputs.collect-run-id }}",
    });
    expect(evalWf.on.workflow_call.outputs["run-id"].value).toBe("${{ jobs.eval.outputs.run-id }}");
    expect(job.concurrency.group).toMatch(/collect-run-id != '' && '-collect'/);
  });
});
