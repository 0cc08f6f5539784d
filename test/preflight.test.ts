/**
 * The preflight (src/aws/preflight.ts) as users meet it: the action run the way the runner runs it
 * (`node dist/main/index.js` on Node 24, test/support/runner.ts) and the CLI's `preflight` command
 * (`node dist/cli/index.js`). AWS is moto on loopback behind the STS trust-policy proxy, with the
 * loopback OIDC endpoint (test/support/moto.ts, oidc.ts). moto's Service Quotas knows no EC2 quota,
 * so moto starts with test/support/moto_quotas on PYTHONPATH, which answers the ones in a file.
 *
 * Each wrong setup gives exit code 2 (the quota: a warning, exit 0) and exactly one finding line
 * naming the fix, and EC2 holds no instance afterwards. The action's runs that are not dry runs
 * get no Ray venv: had the preflight let one through, it would stop at the Ray install (exit 1),
 * never reach `ray up`.
 */
import { randomBytes, randomInt } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { DescribeInstancesCommand, DescribeSubnetsCommand, EC2Client } from "@aws-sdk/client-ec2";
import { CreateInstanceProfileCommand, IAMClient } from "@aws-sdk/client-iam";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { runCli, type CliResult } from "./support/cli.js";
import {
  listKeys,
  s3Client,
  startMoto,
  startStsProxy,
  TEST_KEYS,
  TEST_REGION,
  type MotoServer,
  type StsProxy,
} from "./support/moto.js";
import { startOidcServer, type OidcServer } from "./support/oidc.js";
import { ActionJob, cleanupActions, leakedSecrets, type ActionRun } from "./support/runner.js";
import { copyWorkspace, makeTemp, REPO, removeTemps } from "./support/workspace.js";

const ROLE = "arn:aws:iam::123456789012:role/mcs-eval";
const UNTRUSTED_ROLE = "arn:aws:iam::123456789012:role/mcs-untrusted";
const BUCKET = "mcs-preflight-results";
const PROFILE = "mcs-test-nodes";
/** A public parameter moto serves, naming an image moto's EC2 has (Canonical's it has not). */
const GOOD_IMAGE =
  "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";
/** The demo's head and its 2 m5.large workers: 6 vCPUs of the Standard on-demand quota. */
const STANDARD = "L-1216C47A";
const TIMEOUT_MS = 90_000;

let moto: MotoServer | undefined;
let proxy: StsProxy | undefined;
let oidc: OidcServer | undefined;
let quotaFile: string;
let subnets: string[] = [];

/** The CLI's credentials: long enough for the leak check to look for the secret. */
const cliKeys = {
  accessKeyId: `AKIA${randomBytes(8).toString("hex").toUpperCase()}`,
  secretAccessKey: randomBytes(30).toString("base64"),
};

const setQuotas = (quotas: Record<string, number>) =>
  writeFileSync(quotaFile, JSON.stringify(quotas));

beforeAll(async () => {
  quotaFile = path.join(makeTemp("mcs-quotas-"), "ec2.json");
  setQuotas({ [STANDARD]: 32 });
  moto = await startMoto({
    env: {
      PYTHONPATH: path.join(REPO, "test/support/moto_quotas"),
      MCS_MOTO_EC2_QUOTAS: quotaFile,
    },
  });
  oidc = await startOidcServer();
  proxy = await startStsProxy(moto.url, {
    acceptToken: (jwt) => oidc!.issued.some((t) => t.jwt === jwt),
  });
  const config = { region: TEST_REGION, endpoint: moto.url, credentials: TEST_KEYS };
  await s3Client(moto.url).send(new CreateBucketCommand({ Bucket: BUCKET }));
  await new IAMClient(config).send(
    new CreateInstanceProfileCommand({ InstanceProfileName: PROFILE }),
  );
  const out = await new EC2Client(config).send(
    new DescribeSubnetsCommand({
      Filters: [{ Name: "availability-zone", Values: ["us-east-1a", "us-east-1b"] }],
    }),
  );
  subnets = (out.Subnets ?? []).map((s) => s.SubnetId!).sort();
  expect(subnets).toHaveLength(2);
}, 60_000);

afterAll(async () => {
  await cleanupActions();
  await proxy?.close();
  await oidc?.close();
  await moto?.stop();
  removeTemps();
});

type Cluster = {
  provider: Record<string, unknown>;
  available_node_types: Record<string, { node_config: Record<string, unknown> }>;
};

/**
 * A workspace with the repo's demo module set up right for moto's account: the bucket, an image
 * through SSM, the instance profile, two subnets and their zones. `edit` then breaks one thing.
 */
function workspace(edit?: (cluster: Cluster) => void, bucket = BUCKET): string {
  const ws = copyWorkspace();
  const file = path.join(ws, "autoscaler/ray_demo_aws.yaml");
  const cluster = parse(readFileSync(file, "utf8")) as Cluster;
  cluster.provider.availability_zone = "us-east-1a,us-east-1b";
  for (const type of Object.values(cluster.available_node_types)) {
    Object.assign(type.node_config, {
      ImageId: GOOD_IMAGE,
      IamInstanceProfile: { Name: PROFILE },
      SubnetIds: subnets,
    });
  }
  edit?.(cluster);
  writeFileSync(file, stringify(cluster));
  const configs = path.join(ws, "configs");
  for (const name of readdirSync(configs).filter((f) => f.startsWith("mcs_config_"))) {
    const ini = path.join(configs, name);
    const text = readFileSync(ini, "utf8").replace(/^s3_bucket\s*=.*$/m, `s3_bucket = ${bucket}`);
    writeFileSync(ini, text);
  }
  return ws;
}

/** Every node type's node_config gets `fields`. */
const everyNode = (fields: Record<string, unknown>) => (cluster: Cluster) => {
  for (const type of Object.values(cluster.available_node_types)) {
    Object.assign(type.node_config, fields);
  }
};

/** The action's main step in `ws` (a run unless dryRun), authenticating through the proxy. */
async function action(
  ws: string,
  { dryRun = false, role = ROLE }: { dryRun?: boolean; role?: string } = {},
): Promise<ActionRun> {
  const job = new ActionJob({
    oidc: oidc!,
    awsEndpoint: proxy!.url,
    workspace: ws,
    inputs: {
      module: "demo",
      "role-to-assume": role,
      "aws-region": TEST_REGION,
      "job-key": String(randomInt(10_000_000_000, 99_999_999_999)),
      ...(dryRun ? { "dry-run": "true" } : {}),
    },
    // A run gets no Ray: past the preflight it stops at the install, before any `ray up`.
    ...(dryRun ? {} : { venv: path.join(makeTemp("mcs-no-venv-"), "venv") }),
    env: dryRun ? {} : { MCS_PYTHON: "/nonexistent/python3" },
  });
  return job.run("main", { timeoutMs: TIMEOUT_MS });
}

function cli(ws: string): Promise<CliResult> {
  return runCli(["preflight", "--module", "demo", "--metadata", "level2"], ws, TIMEOUT_MS, {
    AWS_ENDPOINT_URL: moto!.url,
    AWS_ACCESS_KEY_ID: cliKeys.accessKeyId,
    AWS_SECRET_ACCESS_KEY: cliKeys.secretAccessKey,
    AWS_SESSION_TOKEN: undefined,
    AWS_PROFILE: undefined,
    AWS_REGION: undefined,
    AWS_DEFAULT_REGION: undefined,
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    AWS_CONFIG_FILE: "/dev/null",
    AWS_EC2_METADATA_DISABLED: "true",
  });
}

const actionContext = (run: ActionRun) =>
  `exit ${run.code ?? run.signal} in ${Math.round(run.ms)} ms\n${run.stdout}\n${run.stderr}`;
const cliContext = (run: CliResult) =>
  `exit ${run.code ?? run.signal} in ${Math.round(run.ms)} ms\n${run.stdout}\n${run.stderr}`;

const annotations = (run: ActionRun, command: "error" | "warning") =>
  run.annotations.filter((a) => a.command === command).map((a) => a.message);

/** The CLI's finding lines (stderr). */
const findingLines = (run: CliResult) =>
  run.stderr.split("\n").filter((l) => l.startsWith("mcs-pipeline: preflight "));

async function instancesInMoto(): Promise<string[]> {
  const ec2 = new EC2Client({ region: TEST_REGION, endpoint: moto!.url, credentials: TEST_KEYS });
  const out = await ec2.send(new DescribeInstancesCommand({}));
  ec2.destroy();
  return (out.Reservations ?? []).flatMap((r) => (r.Instances ?? []).map((i) => i.InstanceId!));
}

/** Nothing started, nothing leaked: no instance, no `ray` step, no cluster state, no secret. */
async function expectNothingStarted(run: ActionRun) {
  expect(await instancesInMoto()).toEqual([]);
  expect(run.stdout).not.toMatch(/^::group::ray /m);
  expect(run.state["cluster-up"]).toBeUndefined();
  const secrets = [...proxy!.secrets(), ...oidc!.issued.map((t) => t.jwt), oidc!.requestToken];
  expect(leakedSecrets(run, secrets)).toEqual([]);
}

/** The action failed with 2 and exactly one error, `pattern`, and no warning. */
function expectOneError(run: ActionRun, pattern: RegExp) {
  const ctx = actionContext(run);
  expect(run.code, ctx).toBe(2);
  expect(annotations(run, "error"), ctx).toHaveLength(1);
  expect(annotations(run, "error")[0], ctx).toMatch(pattern);
  expect(annotations(run, "warning"), ctx).toEqual([]);
}

/** The CLI exited 2 with exactly one finding line, an error matching `pattern`. */
async function expectCliError(run: CliResult, pattern: RegExp) {
  const ctx = cliContext(run);
  expect(run.code, ctx).toBe(2);
  const lines = findingLines(run);
  expect(lines, ctx).toHaveLength(1);
  expect(lines[0], ctx).toMatch(/^mcs-pipeline: preflight error: /);
  expect(lines[0], ctx).toMatch(pattern);
  expect(`${run.stdout}${run.stderr}`).not.toContain(cliKeys.secretAccessKey);
  expect(await instancesInMoto()).toEqual([]);
}

describe("the preflight", () => {
  it(
    "passes a good setup with no findings, in seconds (CLI and the action's dry run)",
    async () => {
      const ws = workspace();
      const run = await cli(ws);
      const ctx = cliContext(run);
      expect(run.code, ctx).toBe(0);
      expect(findingLines(run), ctx).toEqual([]);
      const passed = /^preflight: demo level2 passed in us-east-1 \((\d+\.\d) s\)$/m.exec(
        run.stdout,
      );
      expect(passed, ctx).not.toBeNull();
      // In seconds: the checks themselves, and the whole command with Node's start.
      expect(Number(passed![1]), ctx).toBeLessThan(5);
      expect(run.ms, ctx).toBeLessThan(10_000);
      console.log(`preflight: ${passed![1]} s of checks, ${Math.round(run.ms)} ms for the command`);

      const dry = await action(ws, { dryRun: true });
      const dryCtx = actionContext(dry);
      expect(dry.code, dryCtx).toBe(0);
      expect(dry.annotations, dryCtx).toEqual([]);
      expect(dry.stdout).toMatch(/^preflight: passed$/m);
      expect(dry.outputs.status).toBe("planned");
      // The probe objects were written and deleted again.
      expect(await listKeys(moto!.url, BUCKET)).toEqual([]);
      await expectNothingStarted(dry);
    },
    TIMEOUT_MS,
  );

  it(
    "a role whose trust policy refuses the token: exit 2, one line naming role-to-assume and the trust policy",
    async () => {
      proxy!.refuse.add(UNTRUSTED_ROLE);
      try {
        const run = await action(workspace(), { role: UNTRUSTED_ROLE });
        expectOneError(
          run,
          /^preflight: role-to-assume: AWS refused arn:aws:iam::123456789012:role\/mcs-untrusted \(AccessDenied: .*\): its trust policy must allow token\.actions\.githubusercontent\.com with aud sts\.amazonaws\.com and sub repo:mcs-org\/mcs-pipeline:\*$/,
        );
        await expectNothingStarted(run);
      } finally {
        proxy!.refuse.delete(UNTRUSTED_ROLE);
      }
    },
    TIMEOUT_MS,
  );

  it(
    "a bucket in another region: exit 2, one line naming its region",
    async () => {
      const bucket = `mcs-eu-${randomBytes(4).toString("hex")}`;
      await s3Client(moto!.url).send(
        new CreateBucketCommand({
          Bucket: bucket,
          CreateBucketConfiguration: { LocationConstraint: "eu-west-1" },
        }),
      );
      const run = await action(workspace(undefined, bucket));
      expectOneError(
        run,
        new RegExp(
          `^preflight: bucket ${bucket} \\(s3_bucket in configs/mcs_config_demo_level2\\.ini\\) is in eu-west-1, not us-east-1: run in eu-west-1 \\(aws-region and provider\\.region of autoscaler/ray_demo_aws\\.yaml\\), or use a bucket in us-east-1$`,
        ),
      );
      expect(await listKeys(moto!.url, bucket)).toEqual([]); // no probe where it does not belong
      await expectNothingStarted(run);
    },
    TIMEOUT_MS,
  );

  it(
    "a bucket that does not exist: exit 2, one line saying to create it",
    async () => {
      const run = await cli(workspace(undefined, "mcs-no-such-bucket"));
      await expectCliError(
        run,
        /bucket mcs-no-such-bucket \(s3_bucket in configs\/mcs_config_demo_level2\.ini\) does not exist: create it in us-east-1/,
      );
    },
    TIMEOUT_MS,
  );

  it(
    "an AMI the region does not have: exit 2, one line for both node types naming the fix",
    async () => {
      const run = await cli(workspace(everyNode({ ImageId: "ami-0c7217cdde317cfec" })));
      await expectCliError(
        run,
        /node types ray\.head\.default, ray\.worker\.default: ImageId ami-0c7217cdde317cfec does not exist in us-east-1: AMI IDs differ per region; use an AMI of us-east-1 in autoscaler\/ray_demo_aws\.yaml, or resolve:ssm:/,
      );
    },
    TIMEOUT_MS,
  );

  it(
    "a resolve:ssm: image whose parameter SSM does not have: exit 2, one line naming the parameter",
    async () => {
      const name =
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-idx";
      const run = await cli(workspace(everyNode({ ImageId: `resolve:ssm:${name}` })));
      await expectCliError(
        run,
        new RegExp(
          `ImageId resolve:ssm:${name}: SSM has no parameter ${name} in us-east-1: fix the name in autoscaler/ray_demo_aws\\.yaml`,
        ),
      );
    },
    TIMEOUT_MS,
  );

  it(
    "an instance profile that does not exist: exit 2, one line naming it and the fix",
    async () => {
      const run = await action(
        workspace((cluster) => {
          const head = cluster.available_node_types["ray.head.default"]!.node_config;
          head.IamInstanceProfile = {
            Arn: "arn:aws:iam::123456789012:instance-profile/mcs-no-such-profile",
          };
        }),
      );
      expectOneError(
        run,
        /^preflight: node type ray\.head\.default: instance profile mcs-no-such-profile \(IamInstanceProfile\) does not exist: create it .* or fix IamInstanceProfile in autoscaler\/ray_demo_aws\.yaml$/,
      );
      await expectNothingStarted(run);
    },
    TIMEOUT_MS,
  );

  it(
    "no IamInstanceProfile and no ray-autoscaler-v1: a warning for the workers, and one naming the permissions Ray needs to create it",
    async () => {
      const run = await cli(workspace(everyNode({ IamInstanceProfile: undefined })));
      const ctx = cliContext(run);
      expect(run.code, ctx).toBe(0);
      const lines = findingLines(run);
      expect(lines, ctx).toHaveLength(2);
      // Workers get no profile from Ray at all: their scenes could not write results.
      expect(lines[0]).toMatch(
        /^mcs-pipeline: preflight warning: node type ray\.worker\.default names no IamInstanceProfile: Ray gives one to the head only, so their scenes could not write results to S3; set IamInstanceProfile: \{Name: ray-autoscaler-v1\}/,
      );
      expect(lines[1]).toMatch(
        /^mcs-pipeline: preflight warning: head node type ray\.head\.default names no IamInstanceProfile, so Ray uses ray-autoscaler-v1, which does not exist: Ray creates it on the first ray up, which needs iam:CreateInstanceProfile, .*iam:PassRole; set IamInstanceProfile/,
      );
      expect(run.stdout).toMatch(/passed in us-east-1 with 2 warning\(s\)/);
    },
    TIMEOUT_MS,
  );

  it(
    "a zone of another region and a subnet that does not exist: exit 2, one line each",
    async () => {
      const zone = await cli(
        workspace((cluster) => {
          cluster.provider.availability_zone = "us-east-1a,us-east-1b,us-west-2b";
        }),
      );
      await expectCliError(
        zone,
        /provider\.availability_zone of autoscaler\/ray_demo_aws\.yaml names us-west-2b, not a zone of us-east-1: list zones of us-east-1 \(us-east-1a, /,
      );
      const subnet = await cli(workspace(everyNode({ SubnetIds: ["subnet-0123456789abcdef0"] })));
      await expectCliError(
        subnet,
        /node types ray\.head\.default, ray\.worker\.default: subnet subnet-0123456789abcdef0 does not exist in us-east-1/,
      );
    },
    TIMEOUT_MS,
  );

  it(
    "a vCPU quota below the head plus max_workers: a warning (not an error) naming the quota and the need",
    async () => {
      setQuotas({ [STANDARD]: 4 });
      try {
        const run = await action(workspace(), { dryRun: true });
        const ctx = actionContext(run);
        expect(run.code, ctx).toBe(0);
        expect(annotations(run, "error"), ctx).toEqual([]);
        const warnings = annotations(run, "warning");
        expect(warnings, ctx).toEqual([
          `preflight: the cluster may run 6 vCPUs of "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" (head 1 × m5.large + 2 × m5.large) but the account's quota in us-east-1 is 4: request ${STANDARD} of 6 or more in Service Quotas, or lower max_workers in autoscaler/ray_demo_aws.yaml`,
        ]);
        expect(run.stdout).toMatch(/^preflight: passed with 1 warning\(s\)$/m);
        await expectNothingStarted(run);
      } finally {
        setQuotas({ [STANDARD]: 32 });
      }
    },
    TIMEOUT_MS,
  );
});
