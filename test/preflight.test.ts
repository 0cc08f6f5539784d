/**
 * The preflight (src/aws/preflight.ts) as users meet it: the action run the way the runner runs it
 * (`node dist/main/index.js` on Node 24, test/support/runner.ts) and the CLI's `preflight` command
 * (`node dist/cli/index.js`). AWS is moto on loopback behind the STS trust-policy proxy, with the
 * loopback OIDC endpoint (test/support/loopback.ts). moto's Service Quotas knows no EC2 quota, so
 * moto starts with test/support/moto_quotas on PYTHONPATH, which answers the ones in a file.
 *
 * Each wrong setup gives exit code 2 (the quota: a warning, exit 0) and exactly one finding line
 * naming the fix, and EC2 holds no instance afterwards. The action's runs that are not dry runs
 * get no Ray venv: had the preflight let one through, it would stop at the Ray install (exit 1),
 * never reach `ray up`.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  CreateVpcCommand,
  DescribeInstancesCommand,
  DescribeSubnetsCommand,
  EC2Client,
  ModifySubnetAttributeCommand,
} from "@aws-sdk/client-ec2";
import {
  AddRoleToInstanceProfileCommand,
  CreateInstanceProfileCommand,
  CreateRoleCommand,
  DeleteInstanceProfileCommand,
  DeleteRoleCommand,
  DetachRolePolicyCommand,
  IAMClient,
  ListAttachedRolePoliciesCommand,
  RemoveRoleFromInstanceProfileCommand,
} from "@aws-sdk/client-iam";
import { CreateBucketCommand, PutBucketVersioningCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import {
  allSubnets,
  raySubnets,
  RAY_DEFAULT_PROFILE,
  RAY_DEFAULT_ROLE,
  REGION_TAG,
  type SubnetChoice,
} from "../src/aws/preflight.js";
import { runCli, type CliResult } from "./support/cli.js";
import { demoJob, startLoopbackAws, TEST_ROLE, type LoopbackAws } from "./support/loopback.js";
import { listKeys, s3Client, TEST_KEYS, TEST_REGION } from "./support/moto.js";
import { cleanupActions, leakedSecrets, type ActionRun } from "./support/runner.js";
import { execCommand, VENV } from "./support/sshd.js";
import { copyWorkspace, makeTemp, REPO, removeTemps } from "./support/workspace.js";

const UNTRUSTED_ROLE = "arn:aws:iam::123456789012:role/mcs-untrusted";
const BUCKET = "mcs-preflight-results";
const PROFILE = "mcs-test-nodes";
/** A public parameter moto serves, naming an image moto's EC2 has (Canonical's it has not). */
const GOOD_IMAGE =
  "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";
/** The demo's head and its 2 m5.large workers: 6 vCPUs of the Standard on-demand quota. */
const STANDARD = "L-1216C47A";
const TIMEOUT_MS = 90_000;

let aws: LoopbackAws | undefined;
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
  aws = await startLoopbackAws({
    moto: {
      env: {
        PYTHONPATH: path.join(REPO, "test/support/moto_quotas"),
        MCS_MOTO_EC2_QUOTAS: quotaFile,
        // AmazonEC2FullAccess and friends, which Ray's bootstrap attaches to the role it makes.
        MOTO_IAM_LOAD_MANAGED_POLICIES: "true",
      },
    },
  });
  const motoUrl = aws.moto.url;
  const config = { region: TEST_REGION, endpoint: motoUrl, credentials: TEST_KEYS };
  // As the setup stack makes it: versioned (an unversioned bucket is a warning).
  await s3Client(motoUrl).send(new CreateBucketCommand({ Bucket: BUCKET }));
  await s3Client(motoUrl).send(
    new PutBucketVersioningCommand({
      Bucket: BUCKET,
      VersioningConfiguration: { Status: "Enabled" },
    }),
  );
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
  await aws?.stop();
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
  {
    dryRun = false,
    role = TEST_ROLE,
    inputs = {},
  }: { dryRun?: boolean; role?: string; inputs?: Record<string, string> } = {},
): Promise<ActionRun> {
  const job = demoJob(
    aws!,
    ws,
    {
      "role-to-assume": role,
      "aws-region": TEST_REGION,
      ...(dryRun ? { "dry-run": "true" } : {}),
      ...inputs,
    },
    {
      // A run gets no Ray: past the preflight it stops at the install, before any `ray up`.
      ...(dryRun ? {} : { venv: path.join(makeTemp("mcs-no-venv-"), "venv") }),
      env: dryRun ? {} : { MCS_PYTHON: "/nonexistent/python3" },
    },
  );
  return job.run("main", { timeoutMs: TIMEOUT_MS });
}

function cli(ws: string): Promise<CliResult> {
  return runCli(["preflight", "--module", "demo", "--metadata", "level2"], ws, TIMEOUT_MS, {
    AWS_ENDPOINT_URL: aws!.moto.url,
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
  const ec2 = new EC2Client({
    region: TEST_REGION,
    endpoint: aws!.moto.url,
    credentials: TEST_KEYS,
  });
  const out = await ec2.send(new DescribeInstancesCommand({}));
  ec2.destroy();
  return (out.Reservations ?? []).flatMap((r) => (r.Instances ?? []).map((i) => i.InstanceId!));
}

/** Nothing started, nothing leaked: no instance, no `ray` step, no cluster state, no secret. */
async function expectNothingStarted(run: ActionRun) {
  expect(await instancesInMoto()).toEqual([]);
  expect(run.stdout).not.toMatch(/^::group::ray /m);
  expect(run.state["cluster-up"]).toBeUndefined();
  const secrets = [
    ...aws!.proxy.secrets(),
    ...aws!.oidc.issued.map((t) => t.jwt),
    aws!.oidc.requestToken,
  ];
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
      expect(await listKeys(aws!.moto.url, BUCKET)).toEqual([]);
      await expectNothingStarted(dry);
    },
    TIMEOUT_MS,
  );

  it(
    "a role whose trust policy refuses the token: exit 2, one line naming role-to-assume and the trust policy",
    async () => {
      aws!.proxy.refuse.add(UNTRUSTED_ROLE);
      try {
        const run = await action(workspace(), { role: UNTRUSTED_ROLE });
        expectOneError(
          run,
          /^preflight: role-to-assume: AWS refused arn:aws:iam::123456789012:role\/mcs-untrusted \(AccessDenied: .*\): this job's OIDC token presented sub repo:mcs-org\/mcs-pipeline:ref:refs\/heads\/main and aud sts\.amazonaws\.com; a trust policy admits it with StringEquals token\.actions\.githubusercontent\.com:aud = sts\.amazonaws\.com and StringLike token\.actions\.githubusercontent\.com:sub = repo:mcs-org\/mcs-pipeline:ref:refs\/heads\/main \(the setup stack: GitHubRepository mcs-org\/mcs-pipeline, GitHubSubjects including ref:refs\/heads\/main\)$/,
        );
        await expectNothingStarted(run);
      } finally {
        aws!.proxy.refuse.delete(UNTRUSTED_ROLE);
      }
    },
    TIMEOUT_MS,
  );

  it(
    "a bucket in another region: exit 2, one line naming its region",
    async () => {
      const bucket = `mcs-eu-${randomBytes(4).toString("hex")}`;
      await s3Client(aws!.moto.url).send(
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
      expect(await listKeys(aws!.moto.url, bucket)).toEqual([]); // no probe where it does not belong
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
    "a bucket that keeps no versions: a warning (older reports would link newer files)",
    async () => {
      const bucket = "mcs-preflight-unversioned";
      await s3Client(aws!.moto.url).send(new CreateBucketCommand({ Bucket: bucket }));
      const run = await action(workspace(undefined, bucket), { dryRun: true });
      const ctx = actionContext(run);
      expect(run.code, ctx).toBe(0);
      expect(annotations(run, "error"), ctx).toEqual([]);
      expect(annotations(run, "warning"), ctx).toEqual([
        `preflight: bucket ${bucket} keeps no object versions: a later run replaces each scene's history and videos, and older reports will link the newer files; turn versioning on (the setup stack does, or aws s3api put-bucket-versioning --bucket ${bucket} --versioning-configuration Status=Enabled)`,
      ]);
      await expectNothingStarted(run);
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

describe("the preflight sees what ray up will see", () => {
  const HEAD = "ray.head.default";
  const WORKER = "ray.worker.default";
  const awsConfig = () => ({
    region: TEST_REGION,
    endpoint: aws!.moto.url,
    credentials: TEST_KEYS,
  });
  /** Networks beside the default VPC: A (a private subnet in 1a, a public one in 1c), B (public
   * in 1a), C (private only), each with a security group; and the default VPC's 1a and 1c. */
  const net: Record<string, string> = {};

  beforeAll(async () => {
    const ec2 = new EC2Client(awsConfig());
    const vpc = async (cidr: string) =>
      (await ec2.send(new CreateVpcCommand({ CidrBlock: cidr }))).Vpc!.VpcId!;
    const subnet = async (VpcId: string, CidrBlock: string, zone: string, isPublic: boolean) => {
      const id = (
        await ec2.send(new CreateSubnetCommand({ VpcId, CidrBlock, AvailabilityZone: zone }))
      ).Subnet!.SubnetId!;
      if (isPublic) {
        await ec2.send(
          new ModifySubnetAttributeCommand({ SubnetId: id, MapPublicIpOnLaunch: { Value: true } }),
        );
      }
      return id;
    };
    const group = async (VpcId: string, name: string) =>
      (
        await ec2.send(
          new CreateSecurityGroupCommand({ VpcId, GroupName: name, Description: name }),
        )
      ).GroupId!;
    net.vpcA = await vpc("10.1.0.0/16");
    net.a1 = await subnet(net.vpcA, "10.1.1.0/24", "us-east-1a", false);
    net.a2 = await subnet(net.vpcA, "10.1.2.0/24", "us-east-1c", true);
    net.sgA = await group(net.vpcA, "mcs-a");
    net.vpcB = await vpc("10.2.0.0/16");
    net.b1 = await subnet(net.vpcB, "10.2.1.0/24", "us-east-1a", true);
    net.vpcC = await vpc("10.3.0.0/16");
    net.c1 = await subnet(net.vpcC, "10.3.1.0/24", "us-east-1a", false);
    net.sgC = await group(net.vpcC, "mcs-c");
    for (const zone of ["us-east-1a", "us-east-1c"]) {
      const defaults = await ec2.send(
        new DescribeSubnetsCommand({
          Filters: [
            { Name: "availability-zone", Values: [zone] },
            { Name: "default-for-az", Values: ["true"] },
          ],
        }),
      );
      net[`default${zone.slice(-2)}`] = defaults.Subnets![0]!.SubnetId!;
    }
    ec2.destroy();
  });

  /** Ray's own bootstrap step `command` (test/support/ray_bootstrap.py) against moto. */
  async function rayBootstrap(command: string, ...args: string[]) {
    const result = await execCommand(
      path.join(VENV, "bin", "python"),
      [path.join(REPO, "test/support/ray_bootstrap.py"), command, ...args],
      {
        env: {
          PATH: process.env.PATH,
          HOME: makeTemp("mcs-ray-home-"),
          AWS_ENDPOINT_URL: aws!.moto.url,
          AWS_ACCESS_KEY_ID: TEST_KEYS.accessKeyId,
          AWS_SECRET_ACCESS_KEY: TEST_KEYS.secretAccessKey,
          AWS_CONFIG_FILE: "/dev/null",
          AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
          AWS_EC2_METADATA_DISABLED: "true",
        },
      },
    );
    expect(result.code, result.stderr).toBe(0);
  }

  it(
    "chooses each node type's subnets as Ray 2.60's bootstrap does, and aborts where it aborts",
    async () => {
      const demo = parse(
        readFileSync(path.join(REPO, "autoscaler/ray_demo_aws.yaml"), "utf8"),
      ) as Cluster;
      const variant = (
        provider: Record<string, unknown>,
        nodes: Record<string, Record<string, unknown>>,
      ) => {
        const cluster = structuredClone(demo);
        Object.assign(cluster.provider, provider);
        for (const [type, fields] of Object.entries(nodes)) {
          Object.assign(cluster.available_node_types[type]!.node_config, fields);
        }
        return JSON.parse(JSON.stringify(cluster)) as Cluster;
      };
      const both = (fields: Record<string, unknown>) => ({ [HEAD]: fields, [WORKER]: fields });
      /** Each case: the YAML, the VPC of its SecurityGroupIds, what Ray makes of it. */
      const cases: [string, Cluster, string | undefined, string][] = [
        ["the demo: the default VPC's subnets in its zones", variant({}, {}), undefined, "chosen"],
        [
          "a VPC's public subnet in a zone not listed",
          variant({}, both({ SecurityGroupIds: [net.sgA] })),
          net.vpcA,
          "zones",
        ],
        [
          "the same, no zones listed",
          variant({ availability_zone: undefined }, both({ SecurityGroupIds: [net.sgA] })),
          net.vpcA,
          "chosen",
        ],
        [
          "a private subnet with use_internal_ips",
          variant(
            { use_internal_ips: true, availability_zone: "us-east-1a" },
            both({ SecurityGroupIds: [net.sgA] }),
          ),
          net.vpcA,
          "chosen",
        ],
        [
          "a VPC without a public subnet",
          variant({}, both({ SecurityGroupIds: [net.sgC] })),
          net.vpcC,
          "none",
        ],
        [
          "a private subnet in SubnetIds",
          variant({}, { [HEAD]: { SubnetIds: [net.a1] } }),
          undefined,
          "none",
        ],
        [
          "a public and a private subnet in SubnetIds",
          variant({}, { [HEAD]: { SubnetIds: [net.default1a, net.a1] } }),
          undefined,
          "unusable",
        ],
        [
          "SubnetIds of two VPCs",
          variant(
            { availability_zone: "us-east-1a" },
            { [HEAD]: { SubnetIds: [net.default1a, net.b1] } },
          ),
          undefined,
          "vpcs",
        ],
        [
          "SubnetIds in a zone not listed",
          variant({}, { [HEAD]: { SubnetIds: [net.default1a, net.default1c] } }),
          undefined,
          "mismatch",
        ],
        [
          "the head's VPC for the workers",
          variant({ availability_zone: "us-east-1a" }, { [HEAD]: { SubnetIds: [net.b1] } }),
          undefined,
          "chosen",
        ],
        [
          "a network interface's subnet",
          variant(
            { availability_zone: "us-east-1c" },
            {
              [HEAD]: {
                NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: net.a2, Groups: [net.sgA] }],
              },
            },
          ),
          net.vpcA,
          "chosen",
        ],
      ];
      const dir = makeTemp("mcs-ray-subnets-");
      writeFileSync(path.join(dir, "cases.json"), JSON.stringify(cases.map((c) => c[1])));
      await rayBootstrap("subnets", path.join(dir, "cases.json"), path.join(dir, "out.json"));
      const ray = JSON.parse(readFileSync(path.join(dir, "out.json"), "utf8")) as (
        { subnets: Record<string, string[]> } | { abort: string }
      )[];
      const ec2 = new EC2Client(awsConfig());
      const all = await allSubnets(ec2);
      ec2.destroy();
      const messages: Record<string, RegExp> = {
        none: /No usable subnets found/,
        // Ray 2.60 puts the set of refused subnets into this abort's message, which its cli_logger
        // then formats: `ray up` stops with a KeyError naming a subnet instead of its message.
        unusable: /^KeyError: "'subnet-/,
        zones: /No usable subnets matching availability zone/,
        mismatch: /MISMATCH between specified subnets and Availability Zones/,
        vpcs: /Subnets specified in more than one VPC/,
      };
      cases.forEach(([name, cluster, vpcOfSg, expected], i) => {
        const ours = raySubnets(cluster, all, vpcOfSg);
        const theirs = ray[i]!;
        const context = `${name}: ${JSON.stringify({ ours, theirs })}`;
        const aborted = ours.find(
          (c): c is SubnetChoice & { abort: { kind: string } } => "abort" in c,
        );
        if (expected === "chosen") {
          expect(theirs, context).toHaveProperty("subnets");
          expect(aborted, context).toBeUndefined();
          // Ray keeps a node type's own SubnetIds (their order too); it sets the others'.
          const chosen = Object.fromEntries(
            ours.map((c) => [
              c.type,
              c.user
                ? (theirs as { subnets: Record<string, string[]> }).subnets[c.type]
                : (c as { subnets: string[] }).subnets,
            ]),
          );
          expect(chosen, context).toEqual((theirs as { subnets: unknown }).subnets);
          for (const c of ours.filter((c) => c.user)) {
            expect([...(c as { subnets: string[] }).subnets].sort(), context).toEqual(
              [...(theirs as { subnets: Record<string, string[]> }).subnets[c.type]!].sort(),
            );
          }
        } else {
          expect((theirs as { abort?: string }).abort, context).toMatch(messages[expected]!);
          expect(aborted?.abort.kind, context).toBe(expected);
        }
      });
    },
    TIMEOUT_MS,
  );

  it(
    "no usable subnet (a VPC without public ones): exit 2, one line naming the VPC, the zones and the fix",
    async () => {
      const run = await cli(
        workspace(everyNode({ SubnetIds: undefined, SecurityGroupIds: [net.sgC] })),
      );
      await expectCliError(
        run,
        new RegExp(
          `node types ray\\.head\\.default, ray\\.worker\\.default: no usable subnet of us-east-1 in ${net.vpcC} \\(the VPC of the SecurityGroupIds.*\\): Ray uses only available subnets that map public IPv4 addresses on launch, and none of the 1 is one, so ray up aborts \\("No usable subnets found"\\): turn on auto-assign public IPv4 addresses \\(MapPublicIpOnLaunch\\) on a subnet in us-east-1a, us-east-1b of ${net.vpcC}, or set use_internal_ips: true in provider of autoscaler/ray_demo_aws\\.yaml`,
        ),
      );
    },
    TIMEOUT_MS,
  );

  it(
    "the nodes' role of the setup stack of another region: exit 2, one line naming its region",
    async () => {
      const iam = new IAMClient(awsConfig());
      const profile = "mcs-eu-nodes";
      const trust = JSON.stringify({
        Version: "2012-10-17",
        Statement: [
          {
            Effect: "Allow",
            Principal: { Service: "ec2.amazonaws.com" },
            Action: "sts:AssumeRole",
          },
        ],
      });
      await iam.send(
        new CreateRoleCommand({
          RoleName: RAY_DEFAULT_ROLE,
          AssumeRolePolicyDocument: trust,
          Tags: [{ Key: REGION_TAG, Value: "eu-west-1" }],
        }),
      );
      await iam.send(new CreateInstanceProfileCommand({ InstanceProfileName: profile }));
      await iam.send(
        new AddRoleToInstanceProfileCommand({
          InstanceProfileName: profile,
          RoleName: RAY_DEFAULT_ROLE,
        }),
      );
      try {
        const run = await cli(workspace(everyNode({ IamInstanceProfile: { Name: profile } })));
        await expectCliError(
          run,
          /the nodes' role ray-autoscaler-v1 serves eu-west-1 \(its tag mcs-pipeline:region: the setup stack's region\), not us-east-1, so the head's launches of workers would be refused: run in eu-west-1 \(aws-region and provider\.region of autoscaler\/ray_demo_aws\.yaml\), or deploy the setup stack in us-east-1/,
        );
      } finally {
        await iam.send(
          new RemoveRoleFromInstanceProfileCommand({
            InstanceProfileName: profile,
            RoleName: RAY_DEFAULT_ROLE,
          }),
        );
        await iam.send(new DeleteInstanceProfileCommand({ InstanceProfileName: profile }));
        await iam.send(new DeleteRoleCommand({ RoleName: RAY_DEFAULT_ROLE }));
        iam.destroy();
      }
    },
    TIMEOUT_MS,
  );

  it(
    "a ray-autoscaler-v1 that Ray's bootstrap made (full EC2 and S3): exit 2, one line: delete it, deploy the stack",
    async () => {
      // Ray's own _configure_iam_role, as on a first `ray up` in an account without the stack.
      const dir = makeTemp("mcs-ray-iam-");
      const config = {
        provider: { type: "aws", region: TEST_REGION },
        head_node_type: HEAD,
        available_node_types: { [HEAD]: { node_config: {} } },
      };
      writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
      await rayBootstrap("iam-role", path.join(dir, "config.json"));
      const iam = new IAMClient(awsConfig());
      try {
        const run = await cli(
          workspace(everyNode({ IamInstanceProfile: { Name: RAY_DEFAULT_PROFILE } })),
        );
        await expectCliError(
          run,
          /the nodes' role ray-autoscaler-v1 has AmazonEC2FullAccess and AmazonS3FullAccess attached, as Ray's bootstrap makes it .*: delete role and instance profile ray-autoscaler-v1, then deploy the setup stack \(cloudformation\/mcs-pipeline-setup\.yaml\)$/,
        );
      } finally {
        const attached = await iam.send(
          new ListAttachedRolePoliciesCommand({ RoleName: RAY_DEFAULT_ROLE }),
        );
        for (const policy of attached.AttachedPolicies ?? []) {
          await iam.send(
            new DetachRolePolicyCommand({
              RoleName: RAY_DEFAULT_ROLE,
              PolicyArn: policy.PolicyArn,
            }),
          );
        }
        await iam.send(
          new RemoveRoleFromInstanceProfileCommand({
            InstanceProfileName: RAY_DEFAULT_PROFILE,
            RoleName: RAY_DEFAULT_ROLE,
          }),
        );
        await iam.send(
          new DeleteInstanceProfileCommand({ InstanceProfileName: RAY_DEFAULT_PROFILE }),
        );
        await iam.send(new DeleteRoleCommand({ RoleName: RAY_DEFAULT_ROLE }));
        iam.destroy();
      }
    },
    TIMEOUT_MS,
  );

  it(
    "role-duration-seconds above the role's MaxSessionDuration: exit 2, one line with both numbers, not a trust problem",
    async () => {
      const iam = new IAMClient(awsConfig());
      const role = await iam.send(
        new CreateRoleCommand({
          RoleName: "mcs-short-sessions",
          AssumeRolePolicyDocument: "{}",
        }),
      );
      iam.destroy();
      const arn = role.Role!.Arn!;
      // STS refuses a longer session than the role's MaxSessionDuration (moto's does not).
      aws!.proxy.maxSessionDuration.set(arn, role.Role!.MaxSessionDuration!);
      try {
        const run = await action(workspace(), {
          role: arn,
          inputs: { "role-duration-seconds": "7200" },
        });
        expectOneError(
          run,
          new RegExp(
            `^preflight: role-duration-seconds is 7200 but the MaxSessionDuration of ${arn} is 3600, so STS refuses the session: lower role-duration-seconds to 3600 or less \\(the action renews its credentials before they expire, so 3600 serves runs of any length\\), or raise the role's MaxSessionDuration$`,
          ),
        );
        await expectNothingStarted(run);
      } finally {
        aws!.proxy.maxSessionDuration.delete(arn);
      }
    },
    TIMEOUT_MS,
  );
});
