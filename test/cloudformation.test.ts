/**
 * The one-time setup as code (cloudformation/mcs-pipeline-setup.yaml): it passes cfn-lint, and
 * deployed to moto's CloudFormation it makes the action's role (trusting only the given
 * repository, carrying exactly docs/iam-policy.json), the results bucket, and the nodes' role and
 * instance profile ray-autoscaler-v1; its outputs are what the workflows' repository variables take.
 *
 * Where moto falls short, and what the tests do instead:
 * - moto's CloudFormation has no AWS::IAM::OIDCProvider (moto/cloudformation/parsing.py skips the
 *   type, and then refuses the role's Fn::GetAtt of it). The stacks are deployed with
 *   CreateOidcProvider=false into an account that already has GitHub's provider, made through
 *   IAM; the provider resource itself is checked by cfn-lint against AWS's resource schema.
 * - moto does not split a CommaDelimitedList's default: test/support/cloudformation.py passes the
 *   defaults as given values, as CloudFormation reads them.
 * - moto's S3 bucket applies only BucketEncryption and Tags of its properties: the public access
 *   block, the lifecycle rules and the ownership controls are read from what moto's CloudFormation
 *   resolved and handed to the bucket (recorded by test/support/moto_cfn.py).
 * - moto evaluates no web-identity trust conditions, and no condition keys of EC2 or IAM: the
 *   policies as IAM stores them are evaluated here (StringEquals, StringLike, wildcards), for
 *   GitHub tokens of the right and wrong repositories, branches, environments and audiences.
 * - moto's access control checks every SSM request against the resource "*", which the policy's
 *   parameter ARN does not match, and its SSM has no Canonical parameters: the preflight and the
 *   launch with the stack's roles use an `ami-` ID in place of the demo's resolve:ssm: image;
 *   that the policy allows the demo's parameter is evaluated here.
 * - moto's Service Quotas knows no EC2 quota: test/support/moto_quotas answers the preflight's.
 */
import { readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { DeleteKeyPairCommand } from "@aws-sdk/client-ec2";
import { IAMClient, PutRolePolicyCommand } from "@aws-sdk/client-iam";
import {
  ListObjectsV2Command,
  PutBucketVersioningCommand,
  S3Client,
  type BucketVersioningStatus,
} from "@aws-sdk/client-s3";
import { GetParametersCommand, SSMClient } from "@aws-sdk/client-ssm";
import {
  AssumeRoleCommand,
  AssumeRoleWithWebIdentityCommand,
  STSClient,
} from "@aws-sdk/client-sts";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parse as parseYaml } from "yaml";
import { assumeRoleWithOidc } from "../src/aws/oidc.js";
import { preflight, PROBE_PREFIX, type Finding } from "../src/aws/preflight.js";
import { InputError } from "../src/errors.js";
import { parseIni } from "../src/ini.js";
import { createRunKeyPair, removeRunResources } from "../src/targets/aws-resources.js";
import {
  ACCOUNT,
  actions,
  motoEnforceable,
  nodePolicy,
  POLICY_FILE,
  rayAws,
  renderRun,
  roleAccount,
  type IamAccount,
  type RenderedRun,
} from "./support/aws-provider.js";
import { startLoopbackAws, type LoopbackAws } from "./support/loopback.js";
import {
  startMoto,
  TEST_KEYS,
  TEST_REGION,
  type MotoServer,
  type ProxiedRequest,
  type StsProxy,
} from "./support/moto.js";
import { subjectOf, type OidcServer } from "./support/oidc.js";
import { leakedSecrets, runAction } from "./support/runner.js";
import { execCommand, VENV } from "./support/sshd.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

const TEMPLATE = path.join(REPO, "cloudformation", "mcs-pipeline-setup.yaml");
const SUPPORT = path.join(REPO, "test", "support");
const PYTHON = path.join(VENV, "bin", "python");
const CFN_LINT = path.join(VENV, "bin", "cfn-lint");
const CHECKOV = path.join(REPO, ".tools", "checkov", "bin", "checkov");
const GITHUB = "token.actions.githubusercontent.com";
const NODE_ROLE = "ray-autoscaler-v1";

type Statement = {
  Sid?: string;
  Effect: string;
  Principal?: Record<string, string>;
  Action: string | string[];
  Resource?: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
};
type Policy = { Version: string; Statement: Statement[] };

interface Deployed {
  status: string;
  reason: string | null;
  outputs: Record<string, string>;
  resources: Record<string, { type: string; id: string; status: string }>;
  roles: Record<
    string,
    { arn: string; trust: Policy; policies: Record<string, Policy>; attached: unknown[] }
  >;
  profiles: Record<string, { arn: string; roles: string[] }>;
  oidcProvider: string | null;
  bucket: { exists: boolean; encryption: unknown };
  /** Each resource's properties as moto's CloudFormation resolved them (moto_cfn.py). */
  resolved: Record<string, { type: string; properties: Record<string, unknown> }>;
}

/**
 * A fresh moto (with `env`), the template deployed with `parameters`. moto is stopped (by PID)
 * afterwards, unless `keep`: then the caller stops it.
 */
async function deploy(
  parameters: Record<string, string>,
  keep?: (moto: MotoServer) => void,
  env: Record<string, string> = {},
): Promise<Deployed> {
  const dir = makeTemp("mcs-cfn-");
  const record = path.join(dir, "resolved.jsonl");
  const moto = await startMoto({
    script: path.join(SUPPORT, "moto_cfn.py"),
    env: { ...env, MOTO_CFN_RECORD: record },
  });
  try {
    const parametersFile = path.join(dir, "parameters.json");
    const outFile = path.join(dir, "out.json");
    writeFileSync(parametersFile, JSON.stringify(parameters));
    const result = await execCommand(
      PYTHON,
      [path.join(SUPPORT, "cloudformation.py"), moto.url, TEMPLATE, parametersFile, outFile],
      { env: { PATH: process.env.PATH, HOME: dir, AWS_EC2_METADATA_DISABLED: "true" } },
    );
    if (result.code !== 0) throw new Error(`deploying the template failed:\n${result.stderr}`);
    const out = JSON.parse(readFileSync(outFile, "utf8")) as Omit<Deployed, "resolved">;
    const resolved: Deployed["resolved"] = {};
    for (const line of readFileSync(record, "utf8").split("\n").filter(Boolean)) {
      const entry = JSON.parse(line) as { logicalId: string } & Deployed["resolved"][string];
      resolved[entry.logicalId] = { type: entry.type, properties: entry.properties };
    }
    return { ...out, resolved };
  } finally {
    if (keep) keep(moto);
    else await moto.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// IAM's policy language, as far as these policies use it

/** IAM's wildcards: `*` any run of characters, `?` any one. */
function like(pattern: string, value: string, ignoreCase = false): boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${source.replace(/\?/g, ".")}$`, ignoreCase ? "i" : "").test(value);
}

const list = (value: string | string[] | undefined): string[] =>
  value === undefined ? [] : [value].flat();

/** A statement's conditions against a request's context (a key it lacks matches nothing). */
function conditionsHold(statement: Statement, context: Record<string, string>): boolean {
  for (const [operator, keys] of Object.entries(statement.Condition ?? {})) {
    for (const [key, expected] of Object.entries(keys)) {
      const actual = context[key];
      if (actual === undefined) return false;
      const match =
        operator === "StringEquals"
          ? (e: string) => e === actual
          : operator === "StringLike"
            ? (e: string) => like(e, actual)
            : undefined;
      if (!match) throw new Error(`condition operator ${operator} is not evaluated here`);
      if (!list(expected).some(match)) return false;
    }
  }
  return true;
}

/** Would the trust policy let GitHub's provider assume the role with a token of these claims? */
function trustAllows(trust: Policy, provider: string, claims: { sub: string; aud: string }) {
  const context = { [`${GITHUB}:sub`]: claims.sub, [`${GITHUB}:aud`]: claims.aud };
  return trust.Statement.some(
    (s) =>
      s.Effect === "Allow" &&
      s.Principal?.Federated === provider &&
      list(s.Action).includes("sts:AssumeRoleWithWebIdentity") &&
      conditionsHold(s, context),
  );
}

/**
 * The subject contexts (what follows repo:OWNER/NAME: in `sub`) that the OIDC tokens of each
 * shipped workflow's jobs carry, by workflow file: per GitHub's OIDC reference, a job with an
 * environment presents environment:NAME, else a pull_request run presents pull_request and any
 * other run its ref (a schedule's is the default branch; workflow_dispatch is run from main).
 */
function workflowSubjects(): Record<string, string[]> {
  type Job = { permissions?: Record<string, string>; environment?: unknown; uses?: string };
  type Workflow = { on: unknown; permissions?: Record<string, string>; jobs: Record<string, Job> };
  const dir = path.join(REPO, ".github", "workflows");
  const read = (file: string) => parseYaml(readFileSync(file, "utf8")) as Workflow;
  const environments = (jobs: Job[]): string[] =>
    jobs.flatMap((job) => {
      if (job.environment === undefined) return [];
      const env = job.environment as string | { name: string };
      return [`environment:${typeof env === "string" ? env : env.name}`];
    });
  const subjects: Record<string, string[]> = {};
  for (const file of readdirSync(dir)) {
    const workflow = read(path.join(dir, file));
    const triggers = Object.keys(
      typeof workflow.on === "string" ? { [workflow.on]: null } : (workflow.on as object),
    );
    if (triggers.every((t) => t === "workflow_call")) continue; // its callers' jobs present it
    for (const [name, job] of Object.entries(workflow.jobs)) {
      const permissions = job.permissions ?? workflow.permissions ?? {};
      if (permissions["id-token"] !== "write") continue;
      // A reusable workflow's jobs present their caller's subject, or their own environment.
      const called = job.uses?.startsWith("./")
        ? Object.values(read(path.join(REPO, job.uses)).jobs)
        : [];
      const own = environments([job, ...called]);
      subjects[`${file} ${name}`] = own.length
        ? own
        : triggers.map((trigger) => {
            if (trigger === "pull_request") return "pull_request";
            if (trigger === "schedule" || trigger === "workflow_dispatch")
              return "ref:refs/heads/main";
            throw new Error(`${file}: the subject of a ${trigger} run is not known here: add it`);
          });
    }
  }
  return subjects;
}

/** Would the identity policy allow `action` on `resource`, with this condition context? */
function allows(policy: Policy, action: string, resource: string, context = {}): boolean {
  const matches = (s: Statement) =>
    list(s.Action).some((a) => like(a, action, true)) &&
    list(s.Resource).some((r) => like(r, resource)) &&
    conditionsHold(s, context);
  const applicable = policy.Statement.filter(matches);
  return (
    applicable.some((s) => s.Effect === "Allow") && !applicable.some((s) => s.Effect === "Deny")
  );
}

// ---------------------------------------------------------------------------------------------

/** docs/iam-policy.json with this account and these buckets filled in. */
function policyFile(results: string, scenes: string): Policy {
  const text = readFileSync(POLICY_FILE, "utf8")
    .replaceAll("ACCOUNT", ACCOUNT)
    .replaceAll("RESULTS_BUCKET", results)
    .replaceAll("SCENES_BUCKET", scenes);
  return JSON.parse(text) as Policy;
}

/** The action role (the one the RoleArn output names). */
function actionRole(stack: Deployed) {
  return Object.values(stack.roles).find((r) => r.arn === stack.outputs.RoleArn)!;
}

/** The lifecycle rules moto's CloudFormation resolved for the bucket (AWS::NoValue dropped). */
function lifecycleRules(stack: Deployed): Record<string, unknown>[] {
  const config = stack.resolved.ResultsBucket!.properties.LifecycleConfiguration as
    { Rules: (Record<string, unknown> | null)[] } | undefined;
  expect(config, "the results bucket's LifecycleConfiguration").toBeDefined();
  return config!.Rules.filter((rule) => rule !== null);
}

/** Would any enabled expiration rule delete `key`? */
function expires(rules: Record<string, unknown>[], key: string): boolean {
  return rules.some(
    (r) =>
      r.Status === "Enabled" &&
      r.ExpirationInDays !== undefined &&
      key.startsWith(r.Prefix as string),
  );
}

const BASE = {
  GitHubRepository: "mcs/pipeline",
  CreateOidcProvider: "false",
  ResultsBucketName: "mcs-test-results",
};
/** Only main and the prod environment; a scenes bucket; three test folders. */
const NARROW = {
  ...BASE,
  GitHubSubjects: "ref:refs/heads/main,environment:prod",
  ScenesBucketName: "mcs-test-scenes",
  TestFolders: "eval-35-test,eval-35-movies-test,demo-eval-test",
  TestFolderExpirationDays: "7",
  NoncurrentVersionDays: "30",
};

let defaults: Deployed;
let narrow: Deployed;
/** The moto `defaults` was deployed to, kept for the launch at the end. */
let defaultsMoto: MotoServer | undefined;
beforeAll(async () => {
  // The preflight asks Service Quotas for the account's EC2 vCPU quota, which moto's does not
  // know: test/support/moto_quotas answers it (32 vCPUs of the on-demand Standard families).
  const quotas = path.join(makeTemp("mcs-cfn-quotas-"), "ec2.json");
  writeFileSync(quotas, JSON.stringify({ "L-1216C47A": 32 }));
  defaults = await deploy(BASE, (moto) => (defaultsMoto = moto), {
    PYTHONPATH: path.join(SUPPORT, "moto_quotas"),
    MCS_MOTO_EC2_QUOTAS: quotas,
  });
  narrow = await deploy(NARROW);
});
afterAll(async () => {
  await defaultsMoto?.stop();
  removeTemps();
});

describe("the template", () => {
  it("passes cfn-lint, the version requirements-dev.txt pins", async () => {
    const pin = /^cfn-lint==(\S+)$/m.exec(
      readFileSync(path.join(REPO, "pipeline", "requirements-dev.txt"), "utf8"),
    )?.[1];
    expect(pin).toBeDefined();
    const version = await execCommand(CFN_LINT, ["--version"]).catch((error: Error) => {
      throw new Error(
        `${CFN_LINT}: ${error.message} (pip install -r pipeline/requirements-dev.txt)`,
      );
    });
    expect(version.stdout.trim()).toBe(`cfn-lint ${pin}`);
    const lint = await execCommand(CFN_LINT, [TEMPLATE]);
    expect(lint.stdout + lint.stderr).toBe("");
    expect(lint.code).toBe(0);
  });

  it("passes checkov (scripts/tools.mjs pins it); each skip carries its reason", async () => {
    const report = await checkov(TEMPLATE);
    expect(report.failed.map((c) => `${c.check_id} ${c.resource}`)).toEqual([]);
    for (const skip of report.skipped) {
      expect(
        skip.check_result.suppress_comment?.trim(),
        `${skip.check_id}: its reason`,
      ).toBeTruthy();
    }
    // Write access only with constraints (CKV_AWS_111), for both roles: checked, and passed.
    expect(
      report.passed.filter((c) => c.check_id === "CKV_AWS_111").map((c) => c.resource),
    ).toEqual(expect.arrayContaining(["AWS::IAM::Role.ActionRole", "AWS::IAM::Role.NodeRole"]));
  });

  it("(checkov fails a role that may terminate any instance)", async () => {
    const template = readFileSync(TEMPLATE, "utf8");
    const anchor = "              - Sid: ReadNodeProfile\n";
    expect(template).toContain(anchor);
    const loose = path.join(makeTemp("mcs-checkov-"), "template.yaml");
    writeFileSync(
      loose,
      template.replace(
        anchor,
        "              - Sid: Anything\n                Effect: Allow\n" +
          '                Action: ec2:TerminateInstances\n                Resource: "*"\n' +
          anchor,
      ),
    );
    const report = await checkov(loose);
    expect(report.failed.map((c) => `${c.check_id} ${c.resource}`)).toContain(
      "CKV_AWS_111 AWS::IAM::Role.ActionRole",
    );
  });
});

type CheckovCheck = {
  check_id: string;
  resource: string;
  check_result: { result: string; suppress_comment?: string };
};

/** checkov's CloudFormation checks on `file`, offline (--skip-download: no Prisma Cloud calls). */
async function checkov(file: string) {
  const result = await execCommand(
    CHECKOV,
    ["-f", file, "--framework", "cloudformation", "--skip-download", "-o", "json"],
    { env: { PATH: process.env.PATH, HOME: makeTemp("mcs-checkov-home-") } },
  );
  const out = JSON.parse(result.stdout) as {
    results: Record<string, CheckovCheck[] | undefined>;
    summary: { checkov_version: string; parsing_errors: number };
  };
  const pin = /const CHECKOV = "([^"]+)"/.exec(
    readFileSync(path.join(REPO, "scripts", "tools.mjs"), "utf8"),
  )?.[1];
  expect(out.summary.checkov_version).toBe(pin);
  expect(out.summary.parsing_errors).toBe(0);
  return {
    passed: out.results.passed_checks ?? [],
    failed: out.results.failed_checks ?? [],
    skipped: out.results.skipped_checks ?? [],
  };
}

describe("deployed to moto's CloudFormation", () => {
  it("(moto cannot create the OIDC provider: CreateOidcProvider=true is refused)", async () => {
    // When this fails, moto has learnt AWS::IAM::OIDCProvider: deploy with the default instead.
    await expect(deploy({ ...BASE, CreateOidcProvider: "true" })).rejects.toThrow(
      /Fn::GetAtt references undefined resource GitHubOidcProvider/,
    );
  });

  it("completes with the role, the bucket, the nodes' role and instance profile", () => {
    for (const stack of [defaults, narrow]) {
      expect(stack.status, stack.reason ?? "").toBe("CREATE_COMPLETE");
      expect(
        Object.entries(stack.resources)
          .map(([id, r]) => [id, r.type, r.status])
          .sort(),
      ).toEqual([
        ["ActionRole", "AWS::IAM::Role", "CREATE_COMPLETE"],
        ["NodeInstanceProfile", "AWS::IAM::InstanceProfile", "CREATE_COMPLETE"],
        ["NodeRole", "AWS::IAM::Role", "CREATE_COMPLETE"],
        ["ResultsBucket", "AWS::S3::Bucket", "CREATE_COMPLETE"],
      ]);
      expect(stack.bucket.exists).toBe(true);
      expect(Object.keys(stack.roles).sort()).toEqual(
        [stack.resources.ActionRole!.id, NODE_ROLE].sort(),
      );
    }
  });

  it("its outputs are the values of the repository variables the workflows read", () => {
    const workflows = path.join(REPO, ".github", "workflows");
    const read = new Set<string>();
    for (const file of readdirSync(workflows)) {
      const text = readFileSync(path.join(workflows, file), "utf8");
      for (const match of text.matchAll(/\bvars\.(MCS_AWS_\w+)/g)) read.add(match[1]!);
    }
    const variables = {
      MCS_AWS_ROLE_ARN: "RoleArn",
      MCS_AWS_REGION: "Region",
      MCS_AWS_RESULTS_BUCKET: "ResultsBucket",
    };
    expect([...read].sort()).toEqual(Object.keys(variables).sort());
    for (const stack of [defaults, narrow]) {
      expect(stack.outputs).toEqual({
        RoleArn: actionRole(stack).arn,
        Region: "us-east-1",
        ResultsBucket: "mcs-test-results",
      });
      expect(stack.outputs.RoleArn).toMatch(new RegExp(`^arn:aws:iam::${ACCOUNT}:role/`));
      // Each output is the value of one of those variables.
      expect(Object.keys(stack.outputs).sort()).toEqual(Object.values(variables).sort());
    }
  });

  it("the role carries exactly docs/iam-policy.json, the buckets filled in", () => {
    expect(actionRole(narrow).policies).toEqual({
      "mcs-pipeline": policyFile("mcs-test-results", "mcs-test-scenes"),
    });
    // Without a scenes bucket, scene sets are in the results bucket: ListScenes names it.
    expect(actionRole(defaults).policies).toEqual({
      "mcs-pipeline": policyFile("mcs-test-results", "mcs-test-results"),
    });
    for (const stack of [defaults, narrow]) {
      expect(actionRole(stack).attached).toEqual([]);
      // It may hand the nodes their role, and create no IAM role or profile itself.
      const policy = actionRole(stack).policies["mcs-pipeline"]!;
      const nodeRole = stack.roles[NODE_ROLE]!.arn;
      const toEc2 = { "iam:PassedToService": "ec2.amazonaws.com" };
      expect(allows(policy, "iam:PassRole", nodeRole, toEc2)).toBe(true);
      expect(allows(policy, "iam:PassRole", actionRole(stack).arn, toEc2)).toBe(false);
      for (const create of [
        "iam:CreateRole",
        "iam:CreateInstanceProfile",
        "iam:AttachRolePolicy",
      ]) {
        expect(allows(policy, create, "*")).toBe(false);
      }
    }
  });

  it("the role trusts GitHub's provider for the repository's chosen branches and environments only", () => {
    const provider = `arn:aws:iam::${ACCOUNT}:oidc-provider/${GITHUB}`;
    expect(narrow.oidcProvider).toBe(provider);
    const token = (sub: string, aud = "sts.amazonaws.com") => ({ sub, aud });

    const trust = actionRole(narrow).trust;
    expect(trustAllows(trust, provider, token("repo:mcs/pipeline:ref:refs/heads/main"))).toBe(true);
    expect(trustAllows(trust, provider, token("repo:mcs/pipeline:environment:prod"))).toBe(true);
    for (const refused of [
      "repo:mcs/pipeline:ref:refs/heads/feature",
      "repo:mcs/pipeline:environment:staging",
      "repo:mcs/pipeline:pull_request",
      "repo:mcs/pipeline:ref:refs/tags/v1",
      "repo:other/pipeline:ref:refs/heads/main",
      "repo:mcs/pipeline-fork:ref:refs/heads/main",
    ]) {
      expect(trustAllows(trust, provider, token(refused)), refused).toBe(false);
    }
    const main = "repo:mcs/pipeline:ref:refs/heads/main";
    expect(trustAllows(trust, provider, token(main, "https://github.com/mcs"))).toBe(false);
    expect(trustAllows(trust, `arn:aws:iam::${ACCOUNT}:oidc-provider/other`, token(main))).toBe(
      false,
    );
    expect(trust.Statement).toHaveLength(1);

    // The default: main and pull requests (what the shipped workflows' jobs present), nothing
    // else of the repository, nothing of any other.
    const open = actionRole(defaults).trust;
    for (const sub of [main, "repo:mcs/pipeline:pull_request"]) {
      expect(trustAllows(open, provider, token(sub)), sub).toBe(true);
    }
    for (const sub of [
      "repo:mcs/pipeline:ref:refs/heads/feature",
      "repo:mcs/pipeline:ref:refs/tags/v1",
      "repo:mcs/pipeline:environment:x",
      "repo:other/pipeline:ref:refs/heads/main",
      "repo:mcs/pipeline2:pull_request",
    ]) {
      expect(trustAllows(open, provider, token(sub)), sub).toBe(false);
    }
    expect(open.Statement[0]!.Condition).toEqual({
      StringEquals: { [`${GITHUB}:aud`]: "sts.amazonaws.com" },
      StringLike: {
        [`${GITHUB}:sub`]: [
          "repo:mcs/pipeline:ref:refs/heads/main",
          "repo:mcs/pipeline:pull_request",
        ],
      },
    });
  });

  it("the default subjects are exactly those the shipped workflows' OIDC jobs present", () => {
    const subjects = workflowSubjects();
    // Scheduled and by-hand runs from main, the janitor, pull-request test runs.
    expect([...new Set(Object.values(subjects).flat())].sort()).toEqual([
      "pull_request",
      "ref:refs/heads/main",
    ]);
    const sub = actionRole(defaults).trust.Statement[0]!.Condition!.StringLike![`${GITHUB}:sub`];
    expect(new Set(list(sub))).toEqual(
      new Set(Object.values(subjects).flatMap((s) => s.map((c) => `repo:mcs/pipeline:${c}`))),
    );
  });

  it("the bucket is private and encrypted, and what test runs write expires", () => {
    for (const stack of [defaults, narrow]) {
      expect(stack.bucket.encryption).toEqual({
        Rules: [
          {
            ApplyServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" },
            BucketKeyEnabled: false,
          },
        ],
      });
      const bucket = stack.resolved.ResultsBucket!.properties;
      expect(bucket.BucketName).toBe("mcs-test-results");
      expect(bucket.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(bucket.OwnershipControls).toEqual({
        Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }],
      });
    }

    // The default covers the demo module's pull-request runs: pr-eval.yml appends -test to its
    // folders (s3_folder+=-test, s3_movies_folder+=-test).
    const prEval = readFileSync(path.join(REPO, ".github", "workflows", "pr-eval.yml"), "utf8");
    expect(prEval).toMatch(/s3_folder\+=-test/);
    expect(prEval).toMatch(/s3_movies_folder\+=-test/);
    const file = path.join(REPO, "configs", "mcs_config_demo_level2.ini");
    const config = parseIni(readFileSync(file, "utf8"), file).get("MCS")!;
    const [folder, movies, name] = ["s3_folder", "s3_movies_folder", "evaluation_name"].map((key) =>
      config.get(key)!,
    );
    const rules = lifecycleRules(defaults);
    expect(expires(rules, `${folder}-test/${name}_level2_demo_scene_01.json`)).toBe(true);
    expect(expires(rules, `${movies}-test/${name}_level2_demo_scene_01_visual.mp4`)).toBe(true);
    expect(expires(rules, `${folder}/${name}_level2_demo_scene_01.json`)).toBe(false);
    expect(expires(rules, `${movies}/${name}_level2_demo_scene_01_visual.mp4`)).toBe(false);
    expect(expires(rules, `${folder}-test-other/x.json`)).toBe(false);

    // With versioning, an expiry leaves a delete marker: the test data goes as a noncurrent version.
    const testFolder = (n: number, folder: string) => ({
      Id: `test-folder-${n}`,
      Status: "Enabled",
      Prefix: `${folder}/`,
      ExpirationInDays: 7,
      NoncurrentVersionExpiration: { NoncurrentDays: 7 },
    });
    expect(lifecycleRules(narrow)).toEqual([
      testFolder(1, "eval-35-test"),
      testFolder(2, "eval-35-movies-test"),
      testFolder(3, "demo-eval-test"),
      {
        Id: "incomplete-uploads",
        Status: "Enabled",
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
      },
      {
        Id: "noncurrent-versions",
        Status: "Enabled",
        NoncurrentVersionExpiration: { NoncurrentDays: 30 },
        ExpiredObjectDeleteMarker: true,
      },
    ]);
  });

  it("the bucket keeps versions (each report links its run's), and a replaced version expires", () => {
    for (const stack of [defaults, narrow]) {
      expect(stack.resolved.ResultsBucket!.properties.VersioningConfiguration).toEqual({
        Status: "Enabled",
      });
    }
    // Every key's replaced versions go after NoncurrentVersionDays (90: GitHub's default
    // retention of a run's logs and job summary), and a test folder's as fast as its objects.
    const rules = lifecycleRules(defaults);
    expect(rules.find((r) => r.Id === "noncurrent-versions")).toEqual({
      Id: "noncurrent-versions",
      Status: "Enabled",
      NoncurrentVersionExpiration: { NoncurrentDays: 90 },
      ExpiredObjectDeleteMarker: true,
    });
    const tests = rules.filter((r) => String(r.Id).startsWith("test-folder-"));
    expect(tests.length).toBe(2);
    for (const rule of tests) {
      expect(rule.NoncurrentVersionExpiration).toEqual({ NoncurrentDays: 14 });
    }
  });

  it("the nodes' instance profile ray-autoscaler-v1: the bucket only, the watchdog, the autoscaler", () => {
    for (const [stack, scenes] of [
      [defaults, "mcs-test-results"],
      [narrow, "mcs-test-scenes"],
    ] as const) {
      expect(stack.profiles).toEqual({
        [NODE_ROLE]: {
          arn: `arn:aws:iam::${ACCOUNT}:instance-profile/${NODE_ROLE}`,
          roles: [NODE_ROLE],
        },
      });
      const role = stack.roles[NODE_ROLE]!;
      expect(role.arn).toBe(`arn:aws:iam::${ACCOUNT}:role/${NODE_ROLE}`);
      expect(role.attached).toEqual([]);
      expect(role.trust.Statement).toEqual([
        { Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" },
      ]);
      expect(Object.keys(role.policies)).toEqual(["mcs-pipeline-node"]);
      const policy = role.policies["mcs-pipeline-node"]!;

      // S3: the results bucket (and the scenes bucket, read only), nothing else.
      const results = "arn:aws:s3:::mcs-test-results";
      for (const action of ["s3:PutObject", "s3:GetObject"]) {
        expect(allows(policy, action, `${results}/demo-eval/summary.json`)).toBe(true);
        expect(allows(policy, action, "arn:aws:s3:::another-bucket/x")).toBe(false);
      }
      expect(allows(policy, "s3:ListBucket", results)).toBe(true);
      expect(allows(policy, "s3:GetObject", `arn:aws:s3:::${scenes}/set/scene.json`)).toBe(true);
      expect(allows(policy, "s3:ListBucket", `arn:aws:s3:::${scenes}`)).toBe(true);
      expect(allows(policy, "s3:DeleteObject", `${results}/x`)).toBe(false);
      const s3 = policy.Statement.filter((s) => list(s.Action).some((a) => a.startsWith("s3:")));
      for (const statement of s3) {
        for (const resource of list(statement.Resource)) {
          expect(resource).toMatch(/^arn:aws:s3:::mcs-test-(results|scenes)(\/\*)?$/);
        }
      }

      // The watchdog's `ray down` and the autoscaler's launches, tags and terminations: exactly
      // docs/node-policy.json, which test/aws-provider.test.ts evaluates, conditions included,
      // on every call Ray's own code makes.
      expect(policy).toEqual(nodePolicy("mcs-test-results", scenes));
      // An ImageId that names an SSM parameter (resolve:ssm:NAME): RunInstances reads it.
      for (const file of readdirSync(path.join(REPO, "autoscaler"))) {
        const yaml = readFileSync(path.join(REPO, "autoscaler", file), "utf8");
        for (const [, name] of yaml.matchAll(/^\s*ImageId:\s*resolve:ssm:(\S+)/gm)) {
          const parameter = `arn:aws:ssm:${TEST_REGION}::parameter${name}`;
          expect(allows(policy, "ssm:GetParameters", parameter), `${file}: ${name}`).toBe(true);
        }
      }
      expect(
        allows(policy, "ssm:GetParameters", `arn:aws:ssm:${TEST_REGION}:${ACCOUNT}:parameter/x`),
      ).toBe(false);
      const toEc2 = { "iam:PassedToService": "ec2.amazonaws.com" };
      expect(allows(policy, "iam:PassRole", role.arn, toEc2)).toBe(true);
      expect(allows(policy, "iam:PassRole", actionRole(stack).arn, toEc2)).toBe(false);
      for (const never of ["ec2:StopInstances", "iam:CreateRole", "iam:CreateInstanceProfile"]) {
        expect(allows(policy, never, "*")).toBe(false);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// GitHub's two subject forms (docs.github.com/en/actions/reference/security/oidc#immutable-subject-
// claims): the deployed trust policies, evaluated by the STS proxy, against the action's own
// AssumeRoleWithWebIdentity with tokens from the OIDC endpoint

/** BASE's repository as GitHub names it in the ID form: repositories created since mid-2026. */
const IDS = { owner: 1_001, repository: 2_002 };
const ID_REPOSITORY = `mcs@${IDS.owner}/pipeline@${IDS.repository}`;

interface TokenOf {
  repository?: string;
  ids?: { owner: number; repository: number };
  context?: string;
}

describe("a repository in either subject form: its form's tokens are admitted, no other", () => {
  let ids: Deployed;
  let idsMoto: MotoServer | undefined;
  /** The STS proxy in front of idsMoto, accepting the tokens of every endpoint oidcFor starts. */
  let aws: LoopbackAws;
  /** The endpoint oidcFor started last. */
  let latest: OidcServer;

  /** An OIDC endpoint issuing tokens of this repository (ID form when `ids`) and context. */
  async function oidcFor(token: TokenOf): Promise<OidcServer> {
    latest = await aws.addOidc({
      repository: token.repository ?? "mcs/pipeline",
      ...(token.ids ? { ids: token.ids, immutableSubject: true } : {}),
      ...(token.context ? { context: token.context } : {}),
    });
    return latest;
  }

  /** The action's AssumeRoleWithWebIdentity with such a token: credentials, or the error. */
  async function assume(roleArn: string, token: TokenOf) {
    const server = await oidcFor(token);
    for (const [name, value] of Object.entries(server.env())) vi.stubEnv(name, value);
    vi.stubEnv("AWS_ENDPOINT_URL", aws.proxy.url);
    try {
      return await assumeRoleWithOidc({
        roleArn,
        region: TEST_REGION,
        durationSeconds: 900,
        sessionName: "mcs-cfn-subjects",
        attempts: 1,
      }).catch((error: unknown) => error as Error);
    } finally {
      vi.unstubAllEnvs();
    }
  }

  beforeAll(async () => {
    ids = await deploy({ ...BASE, GitHubRepository: ID_REPOSITORY }, (moto) => (idsMoto = moto));
    const provider = `arn:aws:iam::${ACCOUNT}:oidc-provider/${GITHUB}`;
    const trusts = new Map([defaults, ids].map((stack) => [actionRole(stack).arn, stack]));
    expect(trusts.size).toBe(2);
    aws = await startLoopbackAws({
      moto: idsMoto!,
      proxy: {
        trust: (arn, claims) => {
          const stack = trusts.get(arn);
          const token = { sub: String(claims.sub), aud: String(claims.aud) };
          return stack !== undefined && trustAllows(actionRole(stack).trust, provider, token);
        },
      },
    });
  });
  afterAll(async () => {
    await aws?.stop();
    await idsMoto?.stop();
  });

  it("the template takes OWNER/NAME or OWNER@ID/NAME@ID, nothing in between", () => {
    const parameter = (
      parseYaml(readFileSync(TEMPLATE, "utf8"), { logLevel: "error" }) as {
        Parameters: Record<string, { AllowedPattern: string }>;
      }
    ).Parameters.GitHubRepository!;
    // CloudFormation's AllowedPattern must match the whole value.
    const pattern = new RegExp(`^(?:${parameter.AllowedPattern})$`);
    for (const good of ["mcs/pipeline", ID_REPOSITORY, "my-org@1234567/mcs.pipeline_2@987654321"]) {
      expect(pattern.test(good), good).toBe(true);
    }
    for (const bad of [
      "mcs@1001/pipeline",
      "mcs/pipeline@2002",
      "mcs@/pipeline@2002",
      "mcs@x1/pipeline@2002",
      "mcs/*",
      "*/pipeline",
      "mcs/pipeline:*",
      "repo:mcs/pipeline",
      "mcs",
    ]) {
      expect(pattern.test(bad), bad).toBe(false);
    }
  });

  it("the ID-form stack trusts repo:OWNER@ID/NAME@ID:<subject> and nothing of the name form", () => {
    expect(ids.status, ids.reason ?? "").toBe("CREATE_COMPLETE");
    expect(actionRole(ids).trust.Statement).toEqual([
      {
        Effect: "Allow",
        Principal: { Federated: `arn:aws:iam::${ACCOUNT}:oidc-provider/${GITHUB}` },
        Action: "sts:AssumeRoleWithWebIdentity",
        Condition: {
          StringEquals: { [`${GITHUB}:aud`]: "sts.amazonaws.com" },
          StringLike: {
            [`${GITHUB}:sub`]: [
              `repo:${ID_REPOSITORY}:ref:refs/heads/main`,
              `repo:${ID_REPOSITORY}:pull_request`,
            ],
          },
        },
      },
    ]);
  });

  // Tokens GitHub issues to the same repository in either form, to a repository (or owner)
  // deleted and recreated under its name (same names, new ID), to other branches and repositories.
  const recreated = { owner: IDS.owner, repository: 3_003 };
  const owner = { owner: 4_004, repository: IDS.repository };
  const other = { repository: "other/pipeline", ids: { owner: 5_005, repository: 6_006 } };
  const feature = "ref:refs/heads/feature";
  const cases: { token: string; form: "name" | "id"; answer: string; of: TokenOf }[] = [
    { token: "main, name form", form: "name", answer: "admitted", of: {} },
    {
      token: "a pull request, name form",
      form: "name",
      answer: "admitted",
      of: { context: "pull_request" },
    },
    { token: "main, ID form", form: "name", answer: "refused", of: { ids: IDS } },
    {
      token: "a feature branch, name form",
      form: "name",
      answer: "refused",
      of: { context: feature },
    },
    {
      token: "another repository",
      form: "name",
      answer: "refused",
      of: { repository: "other/pipeline" },
    },
    { token: "main, ID form", form: "id", answer: "admitted", of: { ids: IDS } },
    {
      token: "a pull request, ID form",
      form: "id",
      answer: "admitted",
      of: { ids: IDS, context: "pull_request" },
    },
    { token: "main, name form", form: "id", answer: "refused", of: {} },
    {
      token: "a feature branch, ID form",
      form: "id",
      answer: "refused",
      of: { ids: IDS, context: feature },
    },
    {
      token: "a repository recreated under the name",
      form: "id",
      answer: "refused",
      of: { ids: recreated },
    },
    {
      token: "an owner recreated under the name",
      form: "id",
      answer: "refused",
      of: { ids: owner },
    },
    { token: "another repository, ID form", form: "id", answer: "refused", of: other },
  ];
  it.each(cases.map((c) => [c.token, c.form, c.answer, c.of] as const))(
    "%s, to the %s-form stack's role: %s",
    async (_, form, answer, token) => {
      const role = actionRole(form === "id" ? ids : defaults).arn;
      const result = await assume(role, token);
      const sub = subjectOf(token.repository ?? "mcs/pipeline", token.context, token.ids);
      const issued = latest.issued;
      expect(issued.map((t) => t.subject)).toEqual([sub]);
      if (answer === "admitted") {
        expect(result, String(result)).not.toBeInstanceOf(Error);
        expect(aws.proxy.credentials.at(-1)!.roleArn).toBe(role);
        return;
      }
      // Refused by the trust policy, once; the one line names what the token presented.
      expect(result).toBeInstanceOf(InputError);
      const message = (result as InputError).message;
      expect(message).not.toMatch(/\n/);
      expect(message).toContain(`AWS refused ${role} (AccessDenied: `);
      expect(message).toContain(`presented sub ${sub} and aud sts.amazonaws.com;`);
      expect(message).toContain(
        `StringEquals ${GITHUB}:aud = sts.amazonaws.com and StringLike ${GITHUB}:sub = ${sub}`,
      );
      expect(aws.proxy.requests.at(-1)).toMatchObject({ roleArn: role, refused: "AccessDenied" });
      for (const part of issued[0]!.jwt.split(".")) expect(message).not.toContain(part);
    },
  );

  it("the action (the janitor) with an ID-form token, the role trusting the name form: one line with its sub; the fix it names works", async () => {
    const actionPath = makeTemp("mcs-cfn-janitor-");
    symlinkSync(path.join(REPO, "janitor", "action.yml"), path.join(actionPath, "action.yml"));
    symlinkSync(path.join(REPO, "dist"), path.join(actionPath, "dist"));
    const oidc = await oidcFor({ ids: IDS });
    const run = (role: string) =>
      runAction("janitor", {
        actionPath,
        workspace: makeTemp("mcs-cfn-janitor-ws-"),
        inputs: { "role-to-assume": role, "dry-run": "true" },
        oidc,
        awsEndpoint: aws.proxy.url,
        timeoutMs: 60_000,
      });
    const sub = `repo:${ID_REPOSITORY}:ref:refs/heads/main`;
    const nameRole = actionRole(defaults).arn;
    const refusedRun = await run(nameRole);
    const context = `${refusedRun.stdout}\n${refusedRun.stderr}`;
    expect(refusedRun.code, context).not.toBe(0);
    expect(
      refusedRun.annotations.map((a) => a.message),
      context,
    ).toEqual([
      `input role-to-assume: AWS refused ${nameRole} (AccessDenied: Not authorized to perform` +
        ` sts:AssumeRoleWithWebIdentity): this job's OIDC token presented sub ${sub} and aud` +
        ` sts.amazonaws.com; a trust policy admits it with StringEquals ${GITHUB}:aud =` +
        ` sts.amazonaws.com and StringLike ${GITHUB}:sub = ${sub} (the setup stack:` +
        ` GitHubRepository ${ID_REPOSITORY}, GitHubSubjects including ref:refs/heads/main)`,
    ]);
    // Neither the token (nor any part of it) nor any credential in what the step leaves.
    const secrets = [...aws.proxy.secrets(), ...oidc.issued.flatMap((t) => t.jwt.split("."))];
    expect(leakedSecrets(refusedRun, secrets)).toEqual([]);

    // The stack deployed with the GitHubRepository the line names admits the same job.
    const admitted = await run(actionRole(ids).arn);
    expect(admitted.code, `${admitted.stdout}\n${admitted.stderr}`).toBe(0);
    expect(oidc.issued.map((t) => t.subject)).toEqual([sub, sub]);
    expect(
      leakedSecrets(admitted, [
        ...aws.proxy.secrets(),
        ...oidc.issued.flatMap((t) => t.jwt.split(".")),
      ]),
    ).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// The stack's roles and outputs, used by the action's preflight and by Ray's own AWS code
// (test/support/ray_aws_provider.py), IAM enforced

type Keys = IamAccount["credentials"];
type NodeConfig = { ImageId: string };

/** A public parameter moto's SSM serves, naming an image moto's EC2 has (Canonical's it has not). */
const MOTO_IMAGE_PARAMETER =
  "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

/** The role's credentials from moto's STS (before IAM is enforced): as the action, or as EC2. */
async function assume(endpoint: string, roleArn: string, as: "github" | "ec2"): Promise<Keys> {
  const sts = new STSClient({ region: TEST_REGION, endpoint, credentials: TEST_KEYS });
  try {
    const session = { RoleArn: roleArn, RoleSessionName: "mcs-cfn-test", DurationSeconds: 3600 };
    const out =
      as === "github"
        ? await sts.send(
            new AssumeRoleWithWebIdentityCommand({ ...session, WebIdentityToken: "stand-in" }),
          )
        : await sts.send(new AssumeRoleCommand(session));
    const c = out.Credentials!;
    return {
      accessKeyId: c.AccessKeyId!,
      secretAccessKey: c.SecretAccessKey!,
      sessionToken: c.SessionToken!,
    };
  } finally {
    sts.destroy();
  }
}

/** A recorded call: its query action, its JSON operation, or S3's method and path (probe keys as *). */
const label = (c: ProxiedRequest) =>
  c.action ??
  c.target?.split(".").pop() ??
  `${c.method} ${c.path.replace(/\/mcs-preflight\/[^/]+$/, "/mcs-preflight/*")}`;

const refused = (calls: ProxiedRequest[]) =>
  calls.filter((c) => c.status >= 400).map((c) => `${label(c)} ${c.status}`);

describe("the stack's roles with the action's preflight and Ray's own AWS code, IAM enforced", () => {
  let moto: MotoServer;
  /** The STS proxy in front of moto, recording every call (its OIDC endpoint goes unused). */
  let aws: LoopbackAws | undefined;
  let recorder: StsProxy;
  let runner: IamAccount;
  let head: IamAccount;
  let run: RenderedRun;
  let policy: Policy;
  /** The demo YAML's ImageId (a resolve:ssm: parameter), which this YAML replaces. */
  const demoImages = new Set<string>();

  beforeAll(async () => {
    moto = defaultsMoto!;
    // moto's CloudFormation stores an inline policy as Python's repr of it, which moto's own
    // access control cannot parse (json.loads): put each back as JSON through IAM, its EC2
    // resources as "*", the only resource moto matches them against (motoEnforceable).
    const iam = new IAMClient({ region: TEST_REGION, endpoint: moto.url, credentials: TEST_KEYS });
    for (const [role, { policies }] of Object.entries(defaults.roles)) {
      for (const [name, document] of Object.entries(policies)) {
        await iam.send(
          new PutRolePolicyCommand({
            RoleName: role,
            PolicyName: name,
            PolicyDocument: JSON.stringify(motoEnforceable(document)),
          }),
        );
      }
    }
    iam.destroy();
    policy = actionRole(defaults).policies["mcs-pipeline"]!;
    // The bucket's versioning as the template resolved it (moto's CloudFormation applies only
    // its encryption and tags to the bucket: moto_cfn.py).
    const versioning = defaults.resolved.ResultsBucket!.properties.VersioningConfiguration as {
      Status: BucketVersioningStatus;
    };
    expect(versioning).toEqual({ Status: "Enabled" });
    const s3 = new S3Client({
      region: TEST_REGION,
      endpoint: moto.url,
      forcePathStyle: true,
      credentials: TEST_KEYS,
    });
    await s3.send(
      new PutBucketVersioningCommand({
        Bucket: defaults.outputs.ResultsBucket!,
        VersioningConfiguration: versioning,
      }),
    );
    s3.destroy();
    // The nodes' image: the AMI a public parameter moto serves names, read while moto still
    // authorizes everyone, as an `ami-` ID in place of the demo's resolve:ssm: (see the preflight).
    const ssm = new SSMClient({ region: TEST_REGION, endpoint: moto.url, credentials: TEST_KEYS });
    const image = (await ssm.send(new GetParametersCommand({ Names: [MOTO_IMAGE_PARAMETER] })))
      .Parameters?.[0]?.Value;
    ssm.destroy();
    expect(image).toMatch(/^ami-/);
    run = renderRun(`cfn-${Date.now().toString(36)}`, (cluster) => {
      const types = cluster.available_node_types as Record<string, { node_config: NodeConfig }>;
      for (const type of Object.values(types)) {
        demoImages.add(type.node_config.ImageId);
        type.node_config.ImageId = image!;
      }
    });
    expect([...demoImages]).toEqual([expect.stringMatching(/^resolve:ssm:\/aws\/service\//)]);

    const action = await assume(moto.url, defaults.outputs.RoleArn!, "github");
    const node = await assume(moto.url, defaults.roles[NODE_ROLE]!.arn, "ec2");
    // From here on moto authorizes every request by the caller's policies (not their conditions).
    const enforce = await fetch(`${moto.url}/moto-api/reset-auth`, { method: "POST", body: "0" });
    expect(enforce.ok).toBe(true);
    aws = await startLoopbackAws({ moto });
    recorder = aws.proxy;
    runner = roleAccount(moto, recorder, defaults.outputs.RoleArn!, action);
    head = roleAccount(moto, recorder, defaults.roles[NODE_ROLE]!.arn, node);
  });
  afterAll(async () => {
    vi.unstubAllEnvs();
    await runner?.stop();
    await head?.stop();
    await aws?.stop();
  });

  it("the action's preflight passes with the action's role and the stack's outputs, before the launch", async () => {
    const { outputs } = defaults;
    const from = recorder.requests.length;
    vi.stubEnv("AWS_ENDPOINT_URL", recorder.url); // the preflight's SDK clients
    let findings: Finding[];
    const started = performance.now();
    try {
      // As the AWS target's preflight calls it (src/targets/aws.ts, preflightPlan), with the
      // stack's bucket (the results-bucket input) and region, on the YAML the launch below uses.
      findings = await preflight({
        region: outputs.Region!,
        bucket: outputs.ResultsBucket!,
        bucketSource: `configs/mcs_config_${run.plan.module}_${run.plan.metadata}.ini`,
        cluster: parseYaml(readFileSync(run.yaml, "utf8")) as Record<string, unknown>,
        clusterSource: `autoscaler/ray_${run.plan.module}_aws.yaml`,
        credentials: () => Promise.resolve(runner.credentials),
      });
    } finally {
      vi.unstubAllEnvs();
    }
    const ms = performance.now() - started;
    console.log(`preflight with the stack's role: ${Math.round(ms)} ms`);
    const calls = runner.calls(from);
    const context = JSON.stringify({ findings, calls }, null, 1);
    // No finding at all: the bucket is the stack's, in its region, and the role may write and
    // delete the probe; the AMI exists; the head's default profile ray-autoscaler-v1 and the one
    // the workers name are the stack's, with its role; the zones are real; the quota covers
    // the head and 2 workers (6 vCPUs of 32).
    expect(findings, context).toEqual([]);
    expect(refused(calls), context).toEqual([]);
    // Every check was made, each with the action role's keys and nothing else.
    const bucket = `/${outputs.ResultsBucket}`;
    expect(calls.map(label).sort(), context).toEqual(
      [
        `GET ${bucket}/`, // GetBucketLocation (?location)
        `GET ${bucket}/`, // GetBucketVersioning (?versioning)
        `PUT ${bucket}/mcs-preflight/*`,
        `DELETE ${bucket}/mcs-preflight/*`,
        "DescribeImages",
        "GetInstanceProfile", // ray-autoscaler-v1: Ray's default for the head,
        "GetInstanceProfile", // and the profile the workers name
        "GetRole", // the nodes' role: the stack's region (PreflightRoles),
        "ListAttachedRolePolicies", // not Ray's full-access defaults
        "DescribeAvailabilityZones",
        "DescribeSubnets", // the subnets Ray would choose
        "DescribeInstanceTypes",
        "GetServiceQuota",
      ].sort(),
    );
    expect(new Set(calls.map((c) => c.accessKeyId)), context).toEqual(
      new Set([runner.credentials.accessKeyId]),
    );
    expect(ms).toBeLessThan(5_000);
    // The probe is gone.
    const s3 = new S3Client({
      region: TEST_REGION,
      endpoint: moto.url,
      forcePathStyle: true,
      credentials: runner.credentials,
    });
    const listed = await s3.send(
      new ListObjectsV2Command({ Bucket: outputs.ResultsBucket, Prefix: PROBE_PREFIX }),
    );
    s3.destroy();
    expect(listed.Contents ?? []).toEqual([]);

    // The YAML names an `ami-` ID here, not the demo's resolve:ssm: parameter, which moto does
    // not serve. The policy as deployed allows reading the demo's parameter (moto authorizes SSM
    // calls against "*" only: motoEnforceable), and nothing beyond AWS's public parameters.
    const parameter = (name: string) => `arn:aws:ssm:${outputs.Region}::parameter${name}`;
    for (const image of demoImages) {
      const name = image.slice("resolve:ssm:".length);
      expect(allows(policy, "ssm:GetParameters", parameter(name)), name).toBe(true);
    }
    expect(allows(policy, "ssm:GetParameters", parameter(MOTO_IMAGE_PARAMETER))).toBe(true);
    expect(allows(policy, "ssm:GetParameters", "*")).toBe(false);
  });

  it("the action's preflight in another region than the stack's: one error naming the stack's region", async () => {
    vi.stubEnv("AWS_ENDPOINT_URL", recorder.url);
    let findings: Finding[];
    try {
      findings = await preflight({
        region: "eu-west-1",
        bucket: defaults.outputs.ResultsBucket!,
        bucketSource: "configs/x.ini",
        cluster: parseYaml(readFileSync(run.yaml, "utf8")) as Record<string, unknown>,
        clusterSource: "autoscaler/x.yaml",
        credentials: () => Promise.resolve(runner.credentials),
      });
    } finally {
      vi.unstubAllEnvs();
    }
    // Among the findings of a region without the bucket, the zones or the AMI: the nodes' role
    // serves the stack's region (its tag), where its permissions are.
    const role = findings.filter((f) => f.text.includes(`nodes' role ${NODE_ROLE}`));
    expect(role, JSON.stringify(findings, null, 1)).toEqual([
      {
        level: "error",
        text: expect.stringMatching(
          /^the nodes' role ray-autoscaler-v1 serves us-east-1 \(its tag mcs-pipeline:region: the setup stack's region\), not eu-west-1, .*: run in us-east-1 .*, or deploy the setup stack in eu-west-1 instead/,
        ),
      },
    ]);
  });

  it("the action's role launches a cluster with the stack's profile; the nodes' role tears it down from the head", async () => {
    try {
      vi.stubEnv("AWS_ENDPOINT_URL", recorder.url); // the action's own SDK clients
      const from = recorder.requests.length;
      await createRunKeyPair(run.sshKey, run.clusterName, TEST_REGION, runner.credentialServer());
      const up = await rayAws(runner, "launch", run);
      expect(up.error, up.traceback ?? up.log).toBeUndefined();
      const launched = runner.calls(from);
      expect(refused(launched)).toEqual([]);
      // Ray's bootstrap found the stack's profile, with its role: it created no IAM anything.
      expect(actions(launched)).toContain("GetInstanceProfile");
      expect(
        actions(launched).filter((a) => /^(Create|Add|Attach)\w*(Role|Profile)/.test(a)),
      ).toEqual([]);
      const nodes = Object.values(up.nodes!);
      expect(nodes.find((n) => n.kind === "head")!.iam_instance_profile).toBe(
        defaults.profiles[NODE_ROLE]!.arn,
      );

      // The head's watchdog: `ray down` with the head's credentials, the nodes' role.
      const downFrom = recorder.requests.length;
      const down = await rayAws(head, "down", run);
      expect(down.error, down.traceback ?? down.log).toBeUndefined();
      expect(refused(head.calls(downFrom))).toEqual([]);
      expect(actions(head.calls(downFrom))).toContain("TerminateInstances");
      expect(down.left).toEqual([]);
      expect(down.network).toEqual([]);
      // The nodes' role is held to its policy: the run's key pair is the action's to delete.
      await expect(
        head.ec2().send(new DeleteKeyPairCommand({ KeyName: run.clusterName })),
      ).rejects.toThrow(/not authorized to perform: ec2:DeleteKeyPair/);
      const cleanup = await removeRunResources(
        run.clusterName,
        TEST_REGION,
        runner.credentialServer(),
        run.sshKey.privateKeyFile,
      );
      expect(cleanup.keyPair).toBe(run.clusterName);
      expect(refused(runner.calls(downFrom))).toEqual([]);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});
