/**
 * Ray's AWS provider, for real, against moto with IAM enforced (DESIGN §6). The cluster YAML is
 * the one the action renders (preparePlan + the AWS target on autoscaler/ray_demo_aws.yaml); the
 * credentials are those of a role carrying exactly docs/iam-policy.json, the policy the README
 * and docs/aws-setup.md link (its trust policy the one that page shows); the launch and teardown
 * are Ray's own code (commands._bootstrap_config, AWSNodeProvider, commands.teardown_cluster)
 * run by test/support/ray_aws_provider.py; the run's key pair and its
 * removal are the action's own code (targets/aws-resources.ts). Every EC2/IAM call goes through a
 * recording proxy. Nothing is sent beyond loopback: the script refuses it, and says so.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import {
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
} from "@aws-sdk/client-ec2";
import { parse as parseYaml } from "yaml";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { securityGroupNameFor } from "../src/aws/ray-names.js";
import { deleteLeftoverResources, findLeftoverResources } from "../src/janitor/find.js";
import { createRunKeyPair, removeRunResources } from "../src/targets/aws-resources.js";
import {
  ACCOUNT,
  actions,
  iamRoleSection,
  inventory,
  motoEnforceable,
  nodePolicy,
  POLICY_FILE,
  rayAws,
  readmePolicy,
  renderRun,
  SETUP_PAGE,
  startIamAccount,
  without,
  type IamAccount,
  type RenderedRun,
} from "./support/aws-provider.js";
import { authorizations, decide, missingRequiredTypes, type Account } from "./support/iam-authz.js";
import { TEST_REGION, type ProxiedRequest } from "./support/moto.js";
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

  it("the README and the setup page's IAM role link the policy file, and the role carries exactly that policy", () => {
    const readme = readFileSync(path.join(REPO, "README.md"), "utf8");
    expect(readme).toContain(`(${path.relative(REPO, POLICY_FILE)})`);
    // The section whose trust policy the role is made with (docsTrustPolicy) links the file.
    expect(iamRoleSection()).toContain(`(${path.relative(path.dirname(SETUP_PAGE), POLICY_FILE)})`);
    expect(account.stored.policies).toEqual(["mcs-pipeline"]);
    expect(account.stored.attachedPolicies).toEqual([]);
    // As moto can enforce it: its actions (motoEnforceable); IAM's conditions are evaluated below.
    expect(account.stored.policy).toEqual(motoEnforceable(readmePolicy()));
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

    // While the cluster has instances, neither its security group nor its key pair is a
    // leftover, whatever their age: the head's autoscaler launches workers with that key pair.
    const running = await findLeftoverResources(ec2, { prefix: "mcs-", olderThanMinutes: 0 });
    expect(running).toEqual({ keyPairs: [], securityGroups: [] });
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

describe("every call of a run, by IAM's own rules: conditions and resources (iam-simulate)", () => {
  const NODE_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/ray-autoscaler-v1`;
  const policies = {
    action: { "mcs-pipeline": readmePolicy() },
    nodes: { "mcs-pipeline-node": nodePolicy() },
  };
  let iamAccount: Account;
  let run: RenderedRun;
  /** The action's and Ray's calls from the runner, and the head's own (autoscaler, watchdog). */
  let runnerCalls: ProxiedRequest[];
  let headCalls: ProxiedRequest[];

  /** Every tag of every instance, security group and key pair moto holds. */
  async function tagBook(account: IamAccount): Promise<Map<string, Record<string, string>>> {
    const ec2 = account.ec2();
    const tags = new Map<string, Record<string, string>>();
    const of = (list?: { Key?: string; Value?: string }[]) =>
      Object.fromEntries((list ?? []).map((t) => [t.Key!, t.Value!]));
    for (const r of (await ec2.send(new DescribeInstancesCommand({}))).Reservations ?? []) {
      for (const i of r.Instances ?? []) tags.set(i.InstanceId!, of(i.Tags));
    }
    for (const g of (await ec2.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups ?? []) {
      tags.set(g.GroupId!, of(g.Tags));
    }
    for (const k of (await ec2.send(new DescribeKeyPairsCommand({}))).KeyPairs ?? []) {
      tags.set(k.KeyName!, of(k.Tags));
    }
    return tags;
  }

  /** Each call's authorizations that `role`'s policies do not allow, as readable lines. */
  async function denied(role: "action" | "nodes", calls: ProxiedRequest[]): Promise<string[]> {
    const principal = role === "action" ? `arn:aws:iam::${ACCOUNT}:role/mcs-eval` : NODE_ROLE_ARN;
    const out: string[] = [];
    for (const call of calls) {
      for (const request of authorizations(call, iamAccount)) {
        const decision = await decide(policies[role], principal, request, ACCOUNT);
        // Only the duplicate resource-tag key EC2 does not list for a resource type may go unused.
        const unused = decision.ignored.filter((k) => !/^(aws|ec2):ResourceTag\//.test(k));
        expect(unused, `${request.action} ${request.resource}`).toEqual([]);
        if (decision.result !== "Allowed") {
          out.push(`${request.action} ${request.resource} ${JSON.stringify(request.context)}`);
        }
      }
    }
    return out;
  }

  /** The recorded call of `action` with some parameters changed (undefined: removed). */
  function altered(
    calls: ProxiedRequest[],
    action: string,
    changes: Record<string, string | undefined>,
  ): ProxiedRequest {
    const call = calls.find((c) => c.action === action);
    expect(call, `a recorded ${action}`).toBeDefined();
    const params = Object.entries({ ...call!.params, ...changes }).filter(
      (entry): entry is [string, string] => entry[1] !== undefined,
    );
    return { ...call!, params: Object.fromEntries(params) };
  }

  beforeAll(async () => {
    const account = await startIamAccount(readmePolicy());
    try {
      run = renderRun(runId());
      const { up, calls } = await launch(account, run);
      expect(up.error, up.traceback ?? up.log).toBeUndefined();
      iamAccount = {
        id: ACCOUNT,
        region: TEST_REGION,
        tags: await tagBook(account),
        profileRoles: { "ray-autoscaler-v1": NODE_ROLE_ARN },
      };
      const { ray, rayCalls } = await down(account, run);
      expect(ray.error, ray.traceback ?? ray.log).toBeUndefined();
      const { actionCalls } = await actionTeardown(account, run);
      runnerCalls = [...calls, ...rayCalls, ...actionCalls];
      // What the head does with the nodes' role: launch and tag workers (the same calls as the
      // launch's; test/support/ray_aws_provider.py launches one worker as the autoscaler does),
      // and the watchdog's `ray down`.
      headCalls = [
        ...calls.filter((c) => /^(RunInstances|CreateTags|Describe\w+)$/.test(c.action ?? "")),
        ...rayCalls,
      ];
    } finally {
      await account.stop();
    }
  });

  it("the model covers every resource type AWS requires for each call, and only known calls", async () => {
    const all = runnerCalls.flatMap((c) => authorizations(c, iamAccount));
    expect(await missingRequiredTypes(all)).toEqual([]);
    expect([...new Set(actions(runnerCalls))].sort()).toEqual(
      expect.arrayContaining([
        "AuthorizeSecurityGroupIngress",
        "CreateSecurityGroup",
        "CreateTags",
        "DeleteKeyPair",
        "DeleteSecurityGroup",
        "ImportKeyPair",
        "RunInstances",
        "TerminateInstances",
      ]),
    );
  });

  it("the action's role (docs/iam-policy.json) allows every call of the run, conditions included", async () => {
    expect(await denied("action", runnerCalls)).toEqual([]);
  });

  it("the nodes' role (docs/node-policy.json) allows the autoscaler's and the watchdog's calls", async () => {
    expect(await denied("nodes", headCalls)).toEqual([]);
  });

  it("neither role launches another cluster's, an unlisted type, an IMDSv1 or an untagged instance", async () => {
    const tag = "TagSpecification.1.Tag.1";
    const run = runnerCalls.find((c) => c.action === "RunInstances")!;
    // The first instance tag is Ray's ray-cluster-name (node_provider.py, _create_node).
    expect([run.params![`${tag}.Key`], run.params!["MetadataOptions.HttpTokens"]]).toEqual([
      "ray-cluster-name",
      "required",
    ]);
    const variants = {
      "another cluster": { [`${tag}.Value`]: "prod-web" },
      "an unlisted type": { InstanceType: "p3.16xlarge" },
      "IMDSv1 allowed": { "MetadataOptions.HttpTokens": "optional" },
      "no metadata options": { "MetadataOptions.HttpTokens": undefined },
      untagged: Object.fromEntries(
        Object.keys(run.params!)
          .filter((k) => k.startsWith("TagSpecification."))
          .map((k) => [k, undefined]),
      ),
      "another role's profile": {
        "IamInstanceProfile.Arn": undefined,
        "IamInstanceProfile.Name": "admin",
      },
    };
    iamAccount.profileRoles.admin = `arn:aws:iam::${ACCOUNT}:role/admin`;
    for (const role of ["action", "nodes"] as const) {
      for (const [name, changes] of Object.entries(variants)) {
        const call = altered(runnerCalls, "RunInstances", changes);
        expect((await denied(role, [call])).length, `${role}: ${name}`).toBeGreaterThan(0);
      }
    }
  });

  it("neither role terminates, re-tags or renames what is not this pipeline's", async () => {
    const instance = [...iamAccount.tags].find(([id]) => id.startsWith("i-"))![0];
    iamAccount.tags.set("i-0ther", { "ray-cluster-name": "prod-web" });
    iamAccount.tags.set("sg-0ther", { "ray-cluster-name": "prod-web" });
    iamAccount.tags.set("prod-key", {});
    const calls = [
      altered(runnerCalls, "TerminateInstances", {
        "InstanceId.1": "i-0ther",
        "InstanceId.2": undefined,
      }),
      altered(runnerCalls, "CreateTags", {
        "ResourceId.1": "i-0ther",
        "ResourceId.2": undefined,
        "Tag.1.Key": "ray-node-status",
        "Tag.1.Value": "up-to-date",
      }),
      // An instance of this pipeline moved to another cluster, or given another lifetime.
      altered(runnerCalls, "CreateTags", {
        "ResourceId.1": instance,
        "ResourceId.2": undefined,
        "Tag.1.Key": "ray-cluster-name",
        "Tag.1.Value": "mcs-other",
      }),
      altered(runnerCalls, "CreateTags", {
        "ResourceId.1": instance,
        "ResourceId.2": undefined,
        "Tag.1.Key": "mcs-max-minutes",
        "Tag.1.Value": "100000",
      }),
    ];
    for (const role of ["action", "nodes"] as const) {
      for (const call of calls) {
        expect(await denied(role, [call]), `${role}: ${JSON.stringify(call.params)}`).not.toEqual(
          [],
        );
      }
    }
    // The action's role: only the pipeline's security groups and key pairs.
    for (const call of [
      altered(runnerCalls, "AuthorizeSecurityGroupIngress", { GroupId: "sg-0ther" }),
      altered(runnerCalls, "DeleteSecurityGroup", { GroupId: "sg-0ther" }),
      altered(runnerCalls, "DeleteKeyPair", { KeyName: "prod-key" }),
      altered(runnerCalls, "ImportKeyPair", { KeyName: "prod-key" }),
    ]) {
      expect(await denied("action", [call]), JSON.stringify(call.params)).not.toEqual([]);
    }
  });
});
