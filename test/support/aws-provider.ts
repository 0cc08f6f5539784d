/**
 * Ray's AWS provider against moto with IAM enforced (DESIGN §6): a moto server on loopback holding
 * an account whose role carries exactly docs/iam-policy.json, a recording proxy in front of it
 * (every EC2/IAM/STS action, in order, with its status), runs rendered by the action's own plan
 * code (preparePlan + the AWS target's stage), and Ray's own launcher code driven on them by
 * ray_aws_provider.py, which refuses any connection beyond loopback.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
  EC2Client,
} from "@aws-sdk/client-ec2";
import type { AwsCredentialIdentity } from "@aws-sdk/types";
import { parse as parseYaml, stringify } from "yaml";
import type { CredentialServer } from "../../src/aws/oidc.js";
import { clusterYamlPath, type RunSshKey } from "../../src/cluster.js";
import { preparePlan } from "../../src/engine.js";
import type { Plan } from "../../src/plan.js";
import { parseRequest } from "../../src/request.js";
import { awsTarget } from "../../src/targets/aws.js";
import { runSshKey } from "../../src/targets/aws-resources.js";
import { startLoopbackAws } from "./loopback.js";
import { TEST_REGION, type MotoServer, type ProxiedRequest, type StsProxy } from "./moto.js";
import { execCommand, VENV } from "./sshd.js";
import { makeTemp, REPO } from "./workspace.js";

/** moto's account. */
export const ACCOUNT = "123456789012";
export const ROLE = "mcs-eval";
export const POLICY_FILE = path.join(REPO, "docs", "iam-policy.json");
/** The nodes' role's policy (the template's NodeRole), as docs/iam-policy.json is the action's. */
export const NODE_POLICY_FILE = path.join(REPO, "docs", "node-policy.json");
const PYTHON = path.join(VENV, "bin", "python");
const SUPPORT = path.join(REPO, "test", "support");

export type PolicyDocument = {
  Version: string;
  Statement: { Sid?: string; Effect: string; Action: string | string[]; Resource?: unknown }[];
};

/** docs/iam-policy.json as an administrator deploys it: the account and bucket filled in. */
export function readmePolicy(bucket = "mcs-test-results"): PolicyDocument {
  const text = readFileSync(POLICY_FILE, "utf8")
    .replaceAll("ACCOUNT", ACCOUNT)
    .replaceAll("RESULTS_BUCKET", bucket);
  return JSON.parse(text) as PolicyDocument;
}

/** docs/node-policy.json (the nodes' role) as the stack deploys it in the test region. */
export function nodePolicy(bucket = "mcs-test-results", scenes = bucket): PolicyDocument {
  const text = readFileSync(NODE_POLICY_FILE, "utf8")
    .replaceAll("ACCOUNT", ACCOUNT)
    .replaceAll("REGION", TEST_REGION)
    .replaceAll("RESULTS_BUCKET", bucket)
    .replaceAll("SCENES_BUCKET", scenes);
  return JSON.parse(text) as PolicyDocument;
}

/** The docs page of the one-time AWS setup: the IAM role's trust policy and permissions. */
export const SETUP_PAGE = path.join(REPO, "docs", "aws-setup.md");

/** SETUP_PAGE's section "The IAM role", from its heading to the next heading of its level. */
export function iamRoleSection(): string {
  const page = readFileSync(SETUP_PAGE, "utf8");
  const start = page.indexOf("\n## The IAM role\n");
  if (start < 0) throw new Error(`${path.relative(REPO, SETUP_PAGE)}: no section 'The IAM role'`);
  const end = page.indexOf("\n## ", start + 1);
  return page.slice(start, end < 0 ? undefined : end);
}

/** The trust policy the docs show (GitHub's OIDC provider), for this account and a repository. */
export function docsTrustPolicy(): unknown {
  const json = /```json\n([\s\S]*?)```/.exec(iamRoleSection())?.[1];
  if (!json) {
    throw new Error(`${path.relative(REPO, SETUP_PAGE)}: no trust policy under 'The IAM role'`);
  }
  return JSON.parse(
    json
      .replaceAll("ACCOUNT", ACCOUNT)
      .replaceAll("OWNER@OWNERID/NAME@REPOID", "mcs@1001/pipeline@2002"),
  );
}

/**
 * `policy` as moto can enforce it: moto authorizes EC2, IAM and SSM calls against the resource
 * "*" (moto/core/authorization.py), which a statement scoped to ARNs never matches, and it skips
 * conditions it has no values for. So moto checks the actions a policy allows; the resources
 * and conditions of each call are IAM's to decide, evaluated by test/support/iam-authz.ts.
 */
export function motoEnforceable(policy: PolicyDocument): PolicyDocument {
  const copy = structuredClone(policy);
  for (const statement of copy.Statement) {
    if (![statement.Action].flat().every((a) => a.startsWith("s3:"))) statement.Resource = "*";
  }
  return copy;
}

/** `policy` without one action (wherever it is listed). */
export function without(policy: PolicyDocument, action: string): PolicyDocument {
  const copy = structuredClone(policy);
  for (const statement of copy.Statement) {
    const actions = [statement.Action].flat();
    if (!actions.includes(action)) continue;
    statement.Action = actions.filter((a) => a !== action);
  }
  copy.Statement = copy.Statement.filter((s) => [s.Action].flat().length > 0);
  return copy;
}

export interface IamAccount {
  moto: MotoServer;
  /** In front of moto: every request Ray and the action make, recorded. */
  recorder: StsProxy;
  roleArn: string;
  credentials: AwsCredentialIdentity & { sessionToken: string };
  /** What moto holds as the role's policies (read back before enforcement started). */
  stored: { policies: string[]; attachedPolicies: unknown[]; policy: unknown };
  /** An EC2 client with the role's credentials: through the recorder, or straight to moto. */
  ec2(recorded?: boolean): EC2Client;
  /** The recorded actions from index `from` on. */
  calls(from?: number): ProxiedRequest[];
  /** The action's credential source, as the AWS target holds it (only `provider` is used). */
  credentialServer(): CredentialServer;
  stop(): Promise<void>;
}

/**
 * The account of a role whose `credentials` a test already holds, in `moto`, its calls recorded
 * by `recorder` (which accounts may share). stop() destroys its clients; moto and the recorder
 * are the caller's to stop.
 */
export function roleAccount(
  moto: MotoServer,
  recorder: StsProxy,
  roleArn: string,
  credentials: IamAccount["credentials"],
  stored: IamAccount["stored"] = { policies: [], attachedPolicies: [], policy: undefined },
): IamAccount {
  const clients: EC2Client[] = [];
  return {
    moto,
    recorder,
    roleArn,
    credentials,
    stored,
    ec2: (recorded = false) => {
      const endpoint = recorded ? recorder.url : moto.url;
      const client = new EC2Client({ region: TEST_REGION, endpoint, credentials, maxAttempts: 1 });
      clients.push(client);
      return client;
    },
    calls: (from = 0) => recorder.requests.slice(from),
    credentialServer: () => ({
      env: {},
      childEnv: (base = process.env) => base,
      provider: () => Promise.resolve(credentials),
      close: () => Promise.resolve(),
    }),
    stop: () => {
      for (const client of clients) client.destroy();
      return Promise.resolve();
    },
  };
}

/**
 * A fresh moto, the role made with `policy` while moto authenticates nobody, then IAM enforced
 * for every later request: moto's server-mode switch for INITIAL_NO_AUTH_ACTION_COUNT
 * (POST /moto-api/reset-auth; `0` = no unauthenticated actions left).
 */
export async function startIamAccount(policy: PolicyDocument): Promise<IamAccount> {
  // RunInstances refuses a KeyName EC2 does not know, as AWS does. The STS proxy in front of
  // moto records the calls (its OIDC endpoint goes unused: the role's keys come from moto_iam.py).
  const aws = await startLoopbackAws({ moto: { env: { MOTO_ENABLE_KEYPAIR_VALIDATION: "true" } } });
  const { moto } = aws;
  try {
    const dir = makeTemp("mcs-iam-");
    const accountFile = path.join(dir, "account.json");
    const outFile = path.join(dir, "credentials.json");
    writeFileSync(
      accountFile,
      JSON.stringify({ role: ROLE, trust: docsTrustPolicy(), policy: motoEnforceable(policy) }),
    );
    const setup = await execCommand(
      PYTHON,
      [path.join(SUPPORT, "moto_iam.py"), moto.url, accountFile, outFile],
      {
        env: { PATH: process.env.PATH, HOME: dir, AWS_EC2_METADATA_DISABLED: "true" },
      },
    );
    if (setup.code !== 0) throw new Error(`IAM setup failed:\n${setup.stderr}`);
    const out = JSON.parse(readFileSync(outFile, "utf8")) as {
      roleArn: string;
      accessKeyId: string;
      secretAccessKey: string;
      sessionToken: string;
      policies: string[];
      attachedPolicies: unknown[];
      policy: unknown;
    };
    const enforce = await fetch(`${moto.url}/moto-api/reset-auth`, { method: "POST", body: "0" });
    if (!enforce.ok) throw new Error(`moto reset-auth: ${enforce.status}`);
    const credentials = {
      accessKeyId: out.accessKeyId,
      secretAccessKey: out.secretAccessKey,
      sessionToken: out.sessionToken,
    };
    const account = roleAccount(moto, aws.proxy, out.roleArn, credentials, {
      policies: out.policies,
      attachedPolicies: out.attachedPolicies,
      policy: out.policy,
    });
    return {
      ...account,
      stop: async () => {
        await account.stop();
        await aws.stop();
      },
    };
  } catch (error) {
    await aws.stop();
    throw error;
  }
}

export interface RenderedRun {
  plan: Plan;
  clusterName: string;
  yaml: string;
  sshKey: RunSshKey;
  /** The action's work directory (RUNNER_TEMP/mcs-pipeline: eval.yml uploads it as an artifact). */
  workDir: string;
  /** A fresh runner: its own HOME (no ~/.ssh, no ~/.aws) and TMPDIR (no Ray config cache). */
  home: string;
  tmp: string;
}

/**
 * A run of the demo module as the action plans it: preparePlan with the AWS target (which renders
 * autoscaler/ray_demo_aws.yaml with the run's key). `edit` changes the rendered YAML afterwards
 * (the controls: what the YAML would be without one of the action's settings).
 */
export function renderRun(
  runId: string,
  edit?: (cluster: Record<string, unknown>) => void,
): RenderedRun {
  const home = makeTemp("mcs-runner-home-");
  const tmp = makeTemp("mcs-runner-tmp-");
  const workDir = path.join(makeTemp("mcs-runner-temp-"), "mcs-pipeline");
  const target = awsTarget({
    roleArn: `arn:aws:iam::${ACCOUNT}:role/${ROLE}`,
    region: TEST_REGION,
    durationSeconds: 3600,
    keepCluster: false,
    workDir,
  });
  const request = parseRequest({ module: "demo", metadata: "level2" }, "aws");
  const plan = preparePlan(
    request,
    { toolRoot: REPO, workspace: REPO, venvDir: VENV, log: () => undefined },
    target,
    runId,
  );
  const yaml = clusterYamlPath(plan.dir);
  if (edit) {
    const cluster = parseYaml(readFileSync(yaml, "utf8")) as Record<string, unknown>;
    edit(cluster);
    writeFileSync(yaml, stringify(cluster));
  }
  return {
    plan,
    clusterName: plan.cluster_name!,
    yaml,
    sshKey: runSshKey(workDir, plan),
    workDir,
    home,
    tmp,
  };
}

export interface RayAwsOutput {
  command: string;
  error?: string;
  traceback?: string;
  /** Connections beyond loopback and ssh/rsync processes the guard refused. */
  network: string[];
  bootstrapped?: {
    auth: Record<string, string>;
    head_node: Record<string, unknown>;
    node_configs: Record<string, Record<string, unknown>>;
  };
  nodes?: Record<
    string,
    {
      kind: string;
      tags: Record<string, string>;
      key_name: string | null;
      image_id: string;
      security_groups: string[];
      iam_instance_profile: string | null;
    }
  >;
  stopped_before_ssh?: string[];
  left?: string[];
  /** The script's own output (Ray's CLI logger). */
  log: string;
  ms: number;
}

/** ray_aws_provider.py `command` on the run's YAML, as the run's runner (its HOME and TMPDIR). */
export async function rayAws(
  account: IamAccount,
  command: "launch" | "down",
  run: RenderedRun,
): Promise<RayAwsOutput> {
  const out = path.join(run.tmp, `${command}.json`);
  const result = await execCommand(
    PYTHON,
    [path.join(SUPPORT, "ray_aws_provider.py"), command, run.yaml, out],
    {
      env: {
        PATH: process.env.PATH,
        HOME: run.home,
        TMPDIR: run.tmp,
        AWS_ENDPOINT_URL: account.recorder.url,
        AWS_ACCESS_KEY_ID: account.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: account.credentials.secretAccessKey,
        AWS_SESSION_TOKEN: account.credentials.sessionToken,
        AWS_DEFAULT_REGION: TEST_REGION,
        AWS_EC2_METADATA_DISABLED: "true",
        RAY_USAGE_STATS_ENABLED: "0",
        PYTHONUNBUFFERED: "1",
      },
      timeoutMs: 120_000,
    },
  );
  let parsed: Omit<RayAwsOutput, "log" | "ms">;
  try {
    parsed = JSON.parse(readFileSync(out, "utf8")) as typeof parsed;
  } catch {
    throw new Error(
      `ray_aws_provider.py ${command} wrote nothing (exit ${result.code}):\n${result.stdout}\n${result.stderr}`,
    );
  }
  return { ...parsed, log: `${result.stdout}${result.stderr}`, ms: result.ms };
}

/** Every key pair's name and every security group's name in the account (role credentials). */
export async function inventory(
  account: IamAccount,
): Promise<{ keyPairs: string[]; securityGroups: string[] }> {
  const ec2 = account.ec2();
  const pairs = await ec2.send(new DescribeKeyPairsCommand({}));
  const groups = await ec2.send(new DescribeSecurityGroupsCommand({}));
  return {
    keyPairs: (pairs.KeyPairs ?? []).map((k) => k.KeyName!).sort(),
    securityGroups: (groups.SecurityGroups ?? []).map((g) => g.GroupName!).sort(),
  };
}

/** The recorded actions' names (`Action` of the query protocol), in order. */
export function actions(calls: readonly ProxiedRequest[]): string[] {
  return calls.map((c) => c.action ?? `${c.method} ${c.path}`);
}
