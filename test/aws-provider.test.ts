/**
 * Ray's AWS provider, for real, against moto with IAM enforced (DESIGN §6). The cluster YAML is
 * the one the action renders (preparePlan + the AWS target on autoscaler/ray_demo_aws.yaml); the
 * credentials are those of a role carrying exactly docs/iam-policy.json, the policy the README
 * links; the launch and teardown are Ray's own code (commands._bootstrap_config, AWSNodeProvider,
 * commands.teardown_cluster) run by test/support/ray_aws_provider.py; the run's key pair and its
 * removal are the action's own code (targets/aws-resources.ts). Every EC2/IAM call goes through a
 * recording proxy. Nothing is sent beyond loopback: the script refuses it, and says so.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { DescribeInstancesCommand } from "@aws-sdk/client-ec2";
import { parse as parseYaml } from "yaml";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { securityGroupNameFor } from "../src/aws/ray-names.js";
import { deleteLeftoverResources, findLeftoverResources } from "../src/janitor/find.js";
import { createRunKeyPair, removeRunResources } from "../src/targets/aws-resources.js";
import {
  actions,
  inventory,
  POLICY_FILE,
  rayAws,
  readmePolicy,
  renderRun,
  startIamAccount,
  without,
  type IamAccount,
  type RenderedRun,
} from "./support/aws-provider.js";
import { TEST_REGION } from "./support/moto.js";
import { REPO, removeTemps } from "./support/workspace.js";

const RAY_DEFAULT_KEY_PAIR = /^ray-autoscaler_/;
const UBUNTU_LTS_AMI =
  "resolve:ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id";
let serial = 0;
/** A run id unique in this file (the AWS target names the cluster after it). */
const runId = () => `${Date.now().toString(36)}-${++serial}`;

afterEach(() => {
  vi.unstubAllEnvs();
});
afterAll(() => removeTemps());

/** The action's SDK clients find the endpoint where the action's find it: AWS_ENDPOINT_URL. */
function actionEndpoint(account: IamAccount) {
  vi.stubEnv("AWS_ENDPOINT_URL", account.recorder.url);
}

/** The main step before `ray up` (the run's key pair), then `ray up`'s cloud side. */
async function launch(account: IamAccount, run: RenderedRun) {
  const from = account.calls().length;
  actionEndpoint(account);
  await createRunKeyPair(run.sshKey, run.clusterName, TEST_REGION, account.credentialServer());
  const up = await rayAws(account, "launch", run);
  return { up, calls: account.calls(from) };
}

/** `ray down`'s path (Ray's teardown_cluster). */
async function down(account: IamAccount, run: RenderedRun) {
  const from = account.calls().length;
  const ray = await rayAws(account, "down", run);
  return { ray, rayCalls: account.calls(from) };
}

/** The action's teardown after `ray down`: the run's key pair and Ray's security group. */
async function actionTeardown(account: IamAccount, run: RenderedRun) {
  const from = account.calls().length;
  actionEndpoint(account);
  const cleanup = await removeRunResources(
    run.clusterName,
    TEST_REGION,
    account.credentialServer(),
    run.sshKey.privateKeyFile,
  );
  return { cleanup, actionCalls: account.calls(from) };
}

async function states(account: IamAccount, ids: string[]): Promise<Record<string, string>> {
  const out = await account.ec2().send(new DescribeInstancesCommand({ InstanceIds: ids }));
  const result: Record<string, string> = {};
  for (const r of out.Reservations ?? []) {
    for (const i of r.Instances ?? []) result[i.InstanceId!] = i.State!.Name!;
  }
  return result;
}

/** Refused calls (the policy lacked something), as `Action status`. */
const refused = (calls: { action?: string; status: number }[]) =>
  calls.filter((c) => c.status >= 400).map((c) => `${c.action} ${c.status}`);

/**
 * One run from a fresh runner, checked all the way: the rendered YAML, `ray up`'s cloud side, `ray
 * down`'s path, the action's teardown. Returns the run's cluster name.
 */
async function launchAndTearDown(account: IamAccount): Promise<string> {
  const run = renderRun(runId());
  // The rendered YAML: the run's key for Ray, its key pair for every node type.
  const rendered = parseYaml(readFileSync(run.yaml, "utf8")) as {
    provider: Record<string, unknown>;
    auth: Record<string, string>;
    available_node_types: Record<string, { node_config: Record<string, unknown> }>;
  };
  expect(rendered.provider.cache_stopped_nodes).toBe(false);
  expect(rendered.auth.ssh_private_key).toBe(run.sshKey.privateKeyFile);
  for (const type of Object.values(rendered.available_node_types)) {
    expect(type.node_config.KeyName).toBe(run.clusterName);
  }
  // Not in the plan (synced to the head) nor in the work directory (uploaded as an artifact).
  expect(path.relative(run.workDir, run.sshKey.privateKeyFile)).toMatch(/^\.\.\//);

  const { up, calls } = await launch(account, run);
  expect(up.error, up.traceback ?? up.log).toBeUndefined();
  expect(statSync(run.sshKey.privateKeyFile).mode & 0o777).toBe(0o600);
  // Every call the launch made, the policy allowed; Ray never looked for a key pair of its own.
  expect(refused(calls)).toEqual([]);
  const launched = actions(calls);
  expect(launched.filter((a) => a === "ImportKeyPair")).toHaveLength(1);
  expect(launched).not.toContain("CreateKeyPair");
  // Ray's default key pairs cost one more DescribeKeyPairs per launch, and a key in ~/.ssh.
  expect(launched).not.toContain("DescribeKeyPairs");
  expect(existsSync(path.join(run.home, ".ssh"))).toBe(false);
  expect(launched.filter((a) => a === "RunInstances")).toHaveLength(2);
  expect(launched).toContain("CreateSecurityGroup");

  expect(up.bootstrapped!.auth.ssh_private_key).toBe(run.sshKey.privateKeyFile);
  const group = securityGroupNameFor(run.clusterName);
  const nodes = Object.entries(up.nodes!);
  expect(nodes.map(([, n]) => n.kind).sort()).toEqual(["head", "worker"]);
  for (const [, node] of nodes) {
    expect(node.tags["ray-cluster-name"]).toBe(run.clusterName);
    expect(node.key_name).toBe(run.clusterName);
    // The demo's ImageId names Canonical's public SSM parameter: Ray's bootstrap and node provider
    // hand it to RunInstances unchanged, for EC2 to resolve per region at launch.
    expect(node.image_id).toBe(UBUNTU_LTS_AMI);
    expect(node.security_groups).toHaveLength(1);
  }
  const head = nodes.find(([, n]) => n.kind === "head")![1];
  expect(head.iam_instance_profile).toMatch(/:instance-profile\/ray-autoscaler-v1$/);
  expect((await inventory(account)).securityGroups).toContain(group);
  expect(up.network).toEqual([]);

  const { ray, rayCalls } = await down(account, run);
  expect(ray.error, ray.traceback ?? ray.log).toBeUndefined();
  // teardown_cluster's one step that reaches a node (`ray stop` over SSH) was stopped before it.
  expect(ray.stopped_before_ssh).toEqual(["ray stop"]);
  expect(ray.network).toEqual([]);
  expect(ray.left).toEqual([]);
  expect(refused(rayCalls)).toEqual([]);
  expect(actions(rayCalls)).toContain("TerminateInstances");
  expect(actions(rayCalls)).not.toContain("StopInstances");
  const ids = nodes.map(([id]) => id);
  expect(Object.values(await states(account, ids))).toEqual(["terminated", "terminated"]);

  // The action's teardown: the run's key pair and Ray's security group of the cluster.
  const { cleanup, actionCalls } = await actionTeardown(account, run);
  expect(existsSync(run.sshKey.privateKeyFile)).toBe(false);
  expect(cleanup.keyPair).toBe(run.clusterName);
  expect(cleanup.securityGroups).toEqual([head.security_groups[0]]);
  expect(refused(actionCalls)).toEqual([]);
  expect(actions(actionCalls)).toEqual([
    "DeleteKeyPair",
    "DescribeSecurityGroups",
    "DescribeInstances",
    "DeleteSecurityGroup",
  ]);
  const after = await inventory(account);
  expect(after.keyPairs).not.toContain(run.clusterName);
  expect(after.keyPairs.filter((k) => RAY_DEFAULT_KEY_PAIR.test(k))).toEqual([]);
  expect(after.securityGroups).not.toContain(group);
  // No instance of the run is anything but terminated, so none is stopped.
  expect(actions(account.calls())).not.toContain("StopInstances");
  return run.clusterName;
}

describe("with the README's policy (docs/iam-policy.json), IAM enforced", () => {
  let account: IamAccount;
  beforeAll(async () => {
    account = await startIamAccount(readmePolicy());
  });
  afterAll(() => account?.stop());

  it("the README links the policy file, and the role carries exactly that policy", () => {
    const readme = readFileSync(path.join(REPO, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("### The IAM role"), readme.indexOf("### Inputs"));
    expect(section).toContain(`(${path.relative(REPO, POLICY_FILE)})`);
    expect(account.stored.policies).toEqual(["mcs-pipeline"]);
    expect(account.stored.attachedPolicies).toEqual([]);
    expect(account.stored.policy).toEqual(readmePolicy());
  });

  it("three launches from fresh runners: terminated, never stopped, no key pair of Ray's, tagged, nothing left", async () => {
    const before = await inventory(account);
    const clusters: string[] = [];
    for (let i = 0; i < 3; i++) clusters.push(await launchAndTearDown(account));
    expect(new Set(clusters).size).toBe(3);
    const after = await inventory(account);
    expect(after).toEqual(before);
    expect(
      after.keyPairs.filter((k) => RAY_DEFAULT_KEY_PAIR.test(k) || clusters.includes(k)),
    ).toEqual([]);
    expect(after.securityGroups.filter((g) => g.startsWith("ray-autoscaler-"))).toEqual([]);
    // No instance of any run was ever stopped.
    expect(actions(account.calls())).not.toContain("StopInstances");
  });

  it("the janitor removes what a run whose own teardown never ran left, once nothing needs it", async () => {
    const run = renderRun(runId());
    const { up } = await launch(account, run);
    expect(up.error, up.traceback ?? up.log).toBeUndefined();
    const ec2 = account.ec2(true);
    const from = account.calls().length;
    const group = securityGroupNameFor(run.clusterName);

    // While the cluster has instances, its security group is not a leftover; its key pair is
    // only once older than the threshold.
    const running = await findLeftoverResources(ec2, { prefix: "mcs-", olderThanMinutes: 0 });
    expect(running.securityGroups).toEqual([]);
    expect(running.keyPairs.map((k) => k.name)).toEqual([run.clusterName]);
    expect(await findLeftoverResources(ec2, { prefix: "mcs-", olderThanMinutes: 420 })).toEqual({
      keyPairs: [],
      securityGroups: [],
    });

    // `ray down` only (say the runner died after it): the key pair and the group stay.
    const { ray } = await down(account, run);
    expect(ray.error, ray.traceback ?? ray.log).toBeUndefined();
    expect((await inventory(account)).keyPairs).toContain(run.clusterName);
    // A young key pair means a launch may be under way: its group waits too.
    expect(
      (await findLeftoverResources(ec2, { prefix: "mcs-", olderThanMinutes: 420 })).securityGroups,
    ).toEqual([]);
    const found = await findLeftoverResources(ec2, { prefix: "mcs-", olderThanMinutes: 0 });
    expect(found.keyPairs.map((k) => k.name)).toEqual([run.clusterName]);
    expect(found.securityGroups.map((g) => [g.name, g.cluster])).toEqual([
      [group, run.clusterName],
    ]);
    const removed = await deleteLeftoverResources(ec2, found);
    expect([...removed.values()]).toEqual(["deleted", "deleted"]);
    expect(refused(account.calls(from))).toEqual([]);
    const after = await inventory(account);
    expect(after.keyPairs).not.toContain(run.clusterName);
    expect(after.securityGroups).not.toContain(group);
  });
});

describe("a policy without a permission the launch needs fails, naming it", () => {
  let account: IamAccount | undefined;
  afterEach(async () => {
    await account?.stop();
    account = undefined;
  });

  it("without ec2:RunInstances, Ray's launch fails with an error naming ec2:RunInstances", async () => {
    account = await startIamAccount(without(readmePolicy(), "ec2:RunInstances"));
    const run = renderRun(runId());
    const { up, calls } = await launch(account, run);
    expect(up.error).toMatch(
      /^NodeLaunchException: Node Launch Exception \(AccessDenied\): User: arn:aws:sts::\d+:assumed-role\/mcs-eval\/\S+ is not authorized to perform: ec2:RunInstances/,
    );
    expect(refused(calls).every((c) => c === "RunInstances 403")).toBe(true);
    expect(refused(calls).length).toBeGreaterThan(0);
    expect(up.nodes).toBeUndefined();
    expect(up.network).toEqual([]);
  });

  it("without ec2:ImportKeyPair, the action fails before `ray up`, naming ec2:ImportKeyPair", async () => {
    account = await startIamAccount(without(readmePolicy(), "ec2:ImportKeyPair"));
    const run = renderRun(runId());
    actionEndpoint(account);
    await expect(
      createRunKeyPair(run.sshKey, run.clusterName, TEST_REGION, account.credentialServer()),
    ).rejects.toThrow(
      new RegExp(
        `^could not create the run's EC2 key pair ${run.clusterName}: EC2 ImportKeyPair failed ` +
          `\\(ec2:ImportKeyPair\\): AccessDenied: User: \\S+ is not authorized to perform: ec2:ImportKeyPair`,
      ),
    );
    expect(actions(account.calls())).toEqual(["ImportKeyPair"]);
  });
});

describe("the checks above see what they guard against", () => {
  let account: IamAccount;
  beforeAll(async () => {
    account = await startIamAccount(readmePolicy());
  });
  afterAll(() => account?.stop());

  it("without cache_stopped_nodes: false, ray down's path calls StopInstances (refused by the policy)", async () => {
    const run = renderRun(runId(), (cluster) => {
      delete (cluster.provider as Record<string, unknown>).cache_stopped_nodes;
    });
    const { up } = await launch(account, run);
    expect(up.error, up.traceback ?? up.log).toBeUndefined();
    const { ray, rayCalls } = await down(account, run);
    expect(actions(rayCalls)).toContain("StopInstances");
    expect(actions(rayCalls)).not.toContain("TerminateInstances");
    expect(refused(rayCalls)).toEqual(["StopInstances 403"]);
    expect(ray.error).toMatch(/not authorized to perform: ec2:StopInstances/);
    const ids = Object.keys(up.nodes!);
    expect(Object.values(await states(account, ids))).toEqual(["running", "running"]);
  });

  it("without the run's key in the YAML, Ray's bootstrap goes for a ray-autoscaler_* key pair", async () => {
    const run = renderRun(runId(), (cluster) => {
      delete (cluster.auth as Record<string, unknown>).ssh_private_key;
      const types = cluster.available_node_types as Record<string, { node_config: object }>;
      for (const type of Object.values(types))
        delete (type.node_config as { KeyName?: string }).KeyName;
    });
    const from = account.calls().length;
    const up = await rayAws(account, "launch", run);
    const calls = account.calls(from);
    expect(actions(calls)).toContain("DescribeKeyPairs");
    expect(refused(calls)).toEqual(["CreateKeyPair 403"]);
    expect(up.error).toMatch(/not authorized to perform: ec2:CreateKeyPair/);
    expect(existsSync(path.join(run.home, ".ssh"))).toBe(true);
  });
});
