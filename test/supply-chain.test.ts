/**
 * The workflows' supply chain: every remote action pinned to a commit (with the release it is, for
 * Dependabot and for readers), Dependabot keeping those pins current, reusable workflows handed
 * only the secrets they declare and use, and zizmor (pinned, from PyPI, by scripts/tools.mjs)
 * passing with the default persona. zizmor runs offline: its online audits need a GitHub token.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse, parseDocument, type Scalar, type YAMLMap } from "yaml";
import { isRemote, SHIPPED, usesIn } from "./support/pins.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

const ZIZMOR = path.join(REPO, ".tools/zizmor/bin/zizmor");
const ZIZMOR_VERSION = "1.32.0";
const load = (file: string) => parse(readFileSync(path.join(REPO, file), "utf8"));

afterAll(() => removeTemps());

/** zizmor offline over the given inputs, its findings as JSON. */
function zizmor(args: string[], cwd = REPO) {
  // Offline and without a token (CI has none; the result must not depend on one), and with the
  // configuration zizmor finds beside the inputs, not one from the environment.
  const unset = ["GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN", "ZIZMOR_CONFIG"];
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !unset.includes(name)),
  );
  const run = spawnSync(ZIZMOR, ["--offline", "--format", "json", ...args], {
    cwd,
    env,
    encoding: "utf8",
  });
  const findings = JSON.parse(run.stdout || "[]") as { ident: string }[];
  return { code: run.status, findings, stderr: run.stderr };
}

describe("pinned actions", () => {
  const all = SHIPPED.flatMap(usesIn);
  const remote = all.filter((u) => isRemote(u.ref));

  it("every remote `uses:` is a full commit SHA with its release in a comment", () => {
    expect(remote.length).toBeGreaterThanOrEqual(6);
    for (const u of remote) {
      const where = `${u.file}:${u.line} uses ${u.ref}`;
      expect(u.ref, where).toMatch(/^[\w.-]+\/[\w./-]+@[0-9a-f]{40}$/);
      expect(u.comment, `${where}: the release it is, e.g. # v4.4.0`).toMatch(/^v\d+\.\d+\.\d+$/);
    }
  });

  it("the text scan sees every `uses:` the YAML holds", () => {
    // A `uses:` the line scan misses (a flow mapping, say) would escape the check above.
    const parsed = SHIPPED.flatMap((file) => {
      const doc = load(file);
      const jobs = Object.values((doc.jobs ?? {}) as Record<string, { uses?: string; steps?: [] }>);
      const steps = [...jobs.flatMap((j) => j.steps ?? []), ...(doc.runs?.steps ?? [])] as {
        uses?: string;
      }[];
      return [...jobs, ...steps].flatMap((s) => (s.uses ? [`${file} ${s.uses}`] : []));
    });
    expect(all.map((u) => `${u.file} ${u.ref}`).sort()).toEqual(parsed.sort());
  });

  it("one action, one pin: the same commit wherever it is used", () => {
    const byAction = new Map<string, Set<string>>();
    for (const u of remote) {
      const [action] = u.ref.split("@");
      byAction.set(action!, (byAction.get(action!) ?? new Set()).add(`${u.ref} # ${u.comment}`));
    }
    for (const [action, pins] of byAction) expect([...pins], action).toHaveLength(1);
  });

  it("Dependabot updates them (and the npm packages), a week after each release", () => {
    const config = load(".github/dependabot.yml");
    expect(config.version).toBe(2);
    const updates = config.updates as {
      "package-ecosystem": string;
      directory?: string;
      directories?: string[];
      cooldown?: { "default-days"?: number };
    }[];
    const actions = updates.find((u) => u["package-ecosystem"] === "github-actions");
    const dirs = [
      ...(actions?.directories ?? []),
      ...(actions?.directory ? [actions.directory] : []),
    ];
    // Every folder holding a remote `uses:`: "/" is .github/workflows and the root action.yml.
    const needed = new Set(
      remote.map(({ file }) =>
        file.startsWith(".github/workflows/") || !file.includes("/")
          ? "/"
          : `/${path.dirname(file)}`,
      ),
    );
    for (const dir of needed) expect(dirs, `dependabot.yml covers ${dir}`).toContain(dir);
    expect(updates.map((u) => u["package-ecosystem"])).toContain("npm");
    for (const u of updates) expect(u.cooldown?.["default-days"]).toBeGreaterThanOrEqual(7);
  });
});

describe("secrets of called workflows", () => {
  const callers = SHIPPED.filter((f) => f.startsWith(".github/workflows/")).flatMap((file) =>
    Object.entries(load(file).jobs as Record<string, { uses?: string; secrets?: unknown }>)
      .filter(([, job]) => job.uses?.startsWith("./.github/workflows/"))
      .map(([name, job]) => ({ where: `${file} ${name}`, ...job, uses: job.uses! })),
  );

  it("no caller hands over all its secrets (`secrets: inherit`)", () => {
    expect(callers.length).toBeGreaterThanOrEqual(3);
    for (const { where, secrets } of callers) expect(secrets, where).not.toBe("inherit");
    for (const file of SHIPPED) {
      expect(readFileSync(path.join(REPO, file), "utf8"), file).not.toMatch(/secrets:\s*inherit/);
    }
  });

  it("each caller passes exactly the secrets its workflow declares, and it uses each one", () => {
    for (const { where, uses, secrets } of callers) {
      const callee = readFileSync(path.join(REPO, uses), "utf8");
      const declared = Object.keys(parse(callee).on.workflow_call.secrets ?? {}).sort();
      expect(Object.keys((secrets ?? {}) as object).sort(), where).toEqual(declared);
      for (const name of declared)
        expect(callee, `${uses} uses secrets.${name}`).toContain(`secrets.${name}`);
    }
  });
});

describe("the role ARN", () => {
  it("is the secret MCS_AWS_ROLE_ARN when there is one, else the variable, in every workflow", () => {
    const caller = "${{ secrets.MCS_AWS_ROLE_ARN }}";
    const roles = SHIPPED.filter((f) => f.startsWith(".github/workflows/")).flatMap((file) =>
      Object.values(load(file).jobs as Record<string, { secrets?: Record<string, string> }>)
        .flatMap((job) => [
          job.secrets?.["aws-role-arn"],
          ...((job as { steps?: { with?: Record<string, string> }[] }).steps ?? []).map(
            (s) => s.with?.["role-to-assume"],
          ),
        ])
        .filter((v) => v !== undefined)
        .map((value) => `${file}: ${value}`),
    );
    expect(roles.sort()).toEqual(
      [
        `.github/workflows/dispatch-eval.yml: ${caller}`,
        `.github/workflows/eval.yml: \${{ secrets.aws-role-arn || vars.MCS_AWS_ROLE_ARN }}`,
        `.github/workflows/janitor.yml: \${{ secrets.MCS_AWS_ROLE_ARN || vars.MCS_AWS_ROLE_ARN }}`,
        `.github/workflows/pr-eval.yml: ${caller}`,
        `.github/workflows/scheduled-eval.yml: ${caller}`,
        `.github/workflows/scheduled-eval.yml: ${caller}`,
      ].sort(),
    );
  });
});

describe("zizmor", () => {
  it(`is ${ZIZMOR_VERSION}, installed by npm run setup`, () => {
    expect(existsSync(ZIZMOR), "run `npm run setup` to install zizmor into .tools").toBe(true);
    const out = spawnSync(ZIZMOR, ["--version"], { encoding: "utf8" }).stdout.trim();
    expect(out).toBe(`zizmor ${ZIZMOR_VERSION}`);
  });

  it("passes on .github/ and both action.yml files (default persona, offline)", () => {
    const run = zizmor([".github", "action.yml", "janitor/action.yml"]);
    expect(
      run.findings.map((f) => f.ident),
      run.stderr,
    ).toEqual([]);
    expect(run.code, run.stderr).toBe(0);
    // It read what it was given: every workflow, both actions, dependabot.yml.
    for (const file of [...SHIPPED, ".github/dependabot.yml"]) {
      expect(run.stderr).toContain(`completed ${file}`);
    }
  });

  it("every ignore carries a reason", () => {
    // In the config: a comment above each rule (above the first, yaml gives it to the map).
    const config = parseDocument(readFileSync(path.join(REPO, ".github/zizmor.yml"), "utf8"));
    const rules = config.get("rules") as YAMLMap<Scalar<string>>;
    rules.items.forEach((rule, i) => {
      const reason = rule.key.commentBefore ?? (i === 0 ? rules.commentBefore : undefined);
      expect(reason ?? "", `zizmor.yml: ${rule.key.value}`).toMatch(/\w{3}/);
    });
    for (const file of SHIPPED) {
      for (const m of readFileSync(path.join(REPO, file), "utf8").matchAll(
        /zizmor: ?ignore\[[^\]]*\](.*)/g,
      )) {
        expect(m[1]!.replace(/^[\s:—-]+/, ""), `${file}: ${m[0]}`).toMatch(/\w{3}/);
      }
    }
  });

  it("fails a workflow with what it is there to catch", () => {
    const dir = makeTemp("mcs-zizmor-");
    const workflow = path.join(dir, "bad.yml");
    writeFileSync(
      workflow,
      [
        "name: bad",
        "on: pull_request_target",
        "permissions: write-all",
        "jobs:",
        "  build:",
        "    runs-on: ubuntu-latest",
        "    steps:",
        "      - uses: actions/checkout@v4",
        '      - run: echo "${{ github.event.pull_request.title }}"',
        "  call:",
        "    uses: octo-org/workflows/.github/workflows/x.yml@main",
        "    secrets: inherit",
        "",
      ].join("\n"),
    );
    const run = zizmor(["--no-config", workflow], dir);
    expect(run.code, run.stderr).not.toBe(0);
    for (const ident of ["unpinned-uses", "template-injection", "secrets-inherit", "artipacked"]) {
      expect(
        run.findings.map((f) => f.ident),
        ident,
      ).toContain(ident);
    }
  });
});
