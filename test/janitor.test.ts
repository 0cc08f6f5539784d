/**
 * The janitor against moto's EC2 on loopback, through the STS trust-policy proxy and the OIDC
 * endpoint, run as the runner runs it (`node dist/janitor/index.js` with janitor/action.yml's
 * inputs). moto sets LaunchTime to "now", so the age threshold is exercised with max-age-minutes
 * 0 (ours found) against the default 420 (nothing found), and in findLeftovers with a far `now`.
 * One lifetime rule (janitor/lifetime.ts): the rendered cluster YAML tags every node with its
 * cluster-max-minutes, and the janitor honours it; the head's watchdog (on a simulated clock) and
 * the janitor's sweeps run over the same clusters, launched by Ray's own AWS provider.
 */
import { readFileSync, symlinkSync } from "node:fs";
import path from "node:path";
import {
  CreateSecurityGroupCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
  EC2Client,
  ImportKeyPairCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type Tag,
} from "@aws-sdk/client-ec2";
import {
  AddRoleToInstanceProfileCommand,
  CreateInstanceProfileCommand,
  CreateRoleCommand,
  IAMClient,
} from "@aws-sdk/client-iam";
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSshKey, writeRunKey } from "../src/aws/keypair.js";
import {
  renderClusterYaml,
  validateWithRaySchema,
  WATCHDOG_DEFAULTS,
  type RunSshKey,
} from "../src/cluster.js";
import { InputError } from "../src/errors.js";
import { findLeftovers, formatAge, RAY_CLUSTER_TAG, terminate } from "../src/janitor/find.js";
import {
  LIFETIME_MARGIN_MINUTES,
  LIFETIME_TAG,
  parseLifetimeTag,
} from "../src/janitor/lifetime.js";
import { loadModule } from "../src/module.js";
import { rayAws, type IamAccount, type RenderedRun } from "./support/aws-provider.js";
import { startLoopbackAws, type LoopbackAws } from "./support/loopback.js";
import { startMoto, TEST_KEYS, TEST_REGION, type MotoServer } from "./support/moto.js";
import {
  cleanupActions,
  leakedSecrets,
  runAction,
  type ActionRun,
  type Entry,
} from "./support/runner.js";
import { execCommand, VENV } from "./support/sshd.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

const ROLE = "arn:aws:iam::123456789012:role/mcs-janitor";
const AMI = "ami-03cf127a"; // one of moto's built-in images
const OURS = "mcs-demo-123-1";
const MINUTE = 60_000;
/** The janitor's outputs about key pairs and security groups when there are none to delete. */
const NOTHING = { "key-pairs": "[]", "security-groups": "[]" };
/** What one sweep asks EC2: instances, then the runs' key pairs and Ray's security groups. */
const SWEEP = [
  "AssumeRoleWithWebIdentity",
  "DescribeInstances",
  "DescribeKeyPairs",
  "DescribeInstances",
  "DescribeSecurityGroups",
];

/**
 * The harness runs `<actionPath>/dist/<entry>/index.js` and reads `<actionPath>/action.yml`; its
 * Entry type names only main and post. The runner runs `uses: ./janitor` from janitor/ with
 * `main: ../dist/janitor/index.js`: the same file as this stand-in directory's dist/janitor.
 */
const JANITOR: Entry = "janitor";

/** Every live instance of clusters named `<prefix>...`, whatever their limits: ten years on. */
function everything(client: EC2Client, prefix: string) {
  const now = new Date(Date.now() + 10 * 365 * 24 * 60 * MINUTE);
  return findLeftovers(client, { prefix, olderThanMinutes: 0, now });
}

let loopback: LoopbackAws | undefined;
let actionPath = "";
let workspace = "";
/** Instance ids by role: ours, another team's cluster, untagged, and `Name=mcs-...` only. */
const ids = { ours: "", other: "", untagged: "", nameOnly: "" };

/** Straight to moto (not through the proxy): the proxy's log is the action's calls only. */
function ec2(): EC2Client {
  return new EC2Client({
    region: TEST_REGION,
    endpoint: loopback!.moto.url,
    credentials: TEST_KEYS,
    maxAttempts: 1,
  });
}

async function launch(tags: Tag[], client = ec2()): Promise<string> {
  const out = await client.send(
    new RunInstancesCommand({
      ImageId: AMI,
      InstanceType: "t3.micro",
      MinCount: 1,
      MaxCount: 1,
      ...(tags.length ? { TagSpecifications: [{ ResourceType: "instance", Tags: tags }] } : {}),
    }),
  );
  const id = out.Instances?.[0]?.InstanceId;
  if (!id) throw new Error("moto launched nothing");
  return id;
}

async function states(): Promise<Record<string, string>> {
  const out = await ec2().send(new DescribeInstancesCommand({}));
  const result: Record<string, string> = {};
  for (const r of out.Reservations ?? []) {
    for (const i of r.Instances ?? []) result[i.InstanceId!] = i.State?.Name ?? "";
  }
  return result;
}

/** Runs the janitor step; returns the run and the AWS / OIDC requests it made. */
async function janitor(inputs: Record<string, string>) {
  const { proxy, oidc } = loopback!;
  const before = { aws: proxy.requests.length, oidc: oidc.requests.length };
  const run = await runAction(JANITOR, {
    actionPath,
    workspace,
    inputs: { "role-to-assume": ROLE, ...inputs },
    oidc,
    awsEndpoint: proxy.url,
    timeoutMs: 60_000,
  });
  const aws = proxy.requests.slice(before.aws).map((r) => r.action ?? `${r.method} ${r.path}`);
  const oidcCalls = oidc.requests.length - before.oidc;
  return { run, aws, oidcCalls };
}

function expectSucceeded(run: ActionRun) {
  expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
  expect(run.annotations).toEqual([]);
  expect(leakedSecrets(run, loopback!.proxy.secrets())).toEqual([]);
}

beforeAll(async () => {
  loopback = await startLoopbackAws();
  workspace = makeTemp("mcs-janitor-ws-");
  actionPath = makeTemp("mcs-janitor-action-");
  symlinkSync(path.join(REPO, "janitor", "action.yml"), path.join(actionPath, "action.yml"));
  symlinkSync(path.join(REPO, "dist"), path.join(actionPath, "dist"));
  ids.ours = await launch([{ Key: RAY_CLUSTER_TAG, Value: OURS }]);
  ids.other = await launch([{ Key: RAY_CLUSTER_TAG, Value: "other-cluster" }]);
  ids.untagged = await launch([]);
  ids.nameOnly = await launch([{ Key: "Name", Value: "mcs-not-a-ray-node" }]);
});

afterAll(async () => {
  await Promise.allSettled([cleanupActions(), loopback?.stop()]);
  removeTemps();
});

describe("janitor/action.yml", () => {
  const action = () =>
    parseYaml(readFileSync(path.join(REPO, "janitor", "action.yml"), "utf8")) as {
      inputs: Record<string, { description?: string; default?: string }>;
      outputs: Record<string, { description?: string }>;
      runs: { using: string; main: string };
    };

  it("runs the janitor bundle from dist/ on node24, every input and output documented", () => {
    const a = action();
    expect(a.runs.using).toBe("node24");
    expect(path.resolve(REPO, "janitor", a.runs.main)).toBe(
      path.join(REPO, "dist", "janitor", "index.js"),
    );
    expect(Object.keys(a.inputs).sort()).toEqual(
      ["aws-region", "cluster-prefix", "dry-run", "max-age-minutes", "role-to-assume"].sort(),
    );
    expect(Object.keys(a.outputs).sort()).toEqual(
      ["found", "instances", "key-pairs", "security-groups", "terminated"].sort(),
    );
    for (const spec of [...Object.values(a.inputs), ...Object.values(a.outputs)]) {
      expect(spec.description?.length).toBeGreaterThan(10);
    }
    expect(a.inputs["max-age-minutes"]!.default).toBe("420");
    expect(a.inputs["cluster-prefix"]!.default).toBe("mcs-");
  });
});

describe("findLeftovers", () => {
  it("finds ours only, and only once older than the threshold", async () => {
    const client = ec2();
    const launched = (await findLeftovers(client, { prefix: "mcs-", olderThanMinutes: 0 }))[0]
      ?.launched;
    expect(launched).toBeInstanceOf(Date);
    const at = (minutes: number) => new Date(launched!.getTime() + minutes * MINUTE);

    expect(await findLeftovers(client, { prefix: "mcs-", olderThanMinutes: 420 })).toEqual([]);
    expect(
      await findLeftovers(client, { prefix: "mcs-", olderThanMinutes: 420, now: at(419) }),
    ).toEqual([]);
    const old = await findLeftovers(client, {
      prefix: "mcs-",
      olderThanMinutes: 420,
      now: at(420),
    });
    expect(old.map((l) => l.id)).toEqual([ids.ours]);

    const farFuture = await findLeftovers(client, {
      prefix: "mcs-demo-",
      olderThanMinutes: 420,
      now: at(10 * 24 * 60 + 7),
    });
    expect(farFuture).toEqual([
      {
        id: ids.ours,
        cluster: OURS,
        type: "t3.micro",
        state: "running",
        launched,
        ageMinutes: 10 * 24 * 60 + 7,
        limitMinutes: 420,
      },
    ]);
    expect(formatAge(farFuture[0]!.ageMinutes)).toBe("10d 0h");
    expect(formatAge(427)).toBe("7h 7m");
    expect(formatAge(4)).toBe("4m");

    // A prefix of another of ours matches nothing.
    expect(
      await findLeftovers(client, { prefix: "mcs-other-", olderThanMinutes: 0, now: at(9999) }),
    ).toEqual([]);
  });

  it("reads every page of DescribeInstances", async () => {
    // Through the proxy, to count the calls; moto pages by reservation.
    const { proxy } = loopback!;
    const client = new EC2Client({
      region: TEST_REGION,
      endpoint: proxy.url,
      credentials: TEST_KEYS,
      maxAttempts: 1,
    });
    const paged: string[] = [];
    for (let i = 0; i < 7; i++)
      paged.push(await launch([{ Key: RAY_CLUSTER_TAG, Value: `mcs-page-${i}` }]));
    try {
      const before = proxy.requests.length;
      const found = await findLeftovers(client, {
        prefix: "mcs-page-",
        olderThanMinutes: 0,
        pageSize: 5,
      });
      expect(found.map((l) => l.id).sort()).toEqual([...paged].sort());
      const calls = proxy.requests.slice(before).filter((r) => r.action === "DescribeInstances");
      expect(calls.length).toBe(2);
    } finally {
      await ec2().send(new TerminateInstancesCommand({ InstanceIds: paged }));
    }
  });

  it("refuses a prefix that is not this pipeline's before asking EC2", async () => {
    const client = ec2();
    let sent = 0;
    client.middlewareStack.add(
      (next) => (args) => {
        sent++;
        return next(args);
      },
      { step: "initialize" },
    );
    for (const prefix of ["", "other-", "mcs", "mcs-*", "MCS-"]) {
      await expect(findLeftovers(client, { prefix, olderThanMinutes: 0 })).rejects.toThrow(
        InputError,
      );
    }
    expect(sent).toBe(0);
  });

  it("honours each cluster's own lifetime plus the margin; a malformed one gets the fixed limit, warned once", async () => {
    const life = (cluster: string, minutes?: string) =>
      launch([
        { Key: RAY_CLUSTER_TAG, Value: cluster },
        ...(minutes === undefined ? [] : [{ Key: LIFETIME_TAG, Value: minutes }]),
      ]);
    const launched = {
      long: [await life("mcs-life-long", "600"), await life("mcs-life-long", "600")],
      short: [await life("mcs-life-short", "60")],
      fraction: [await life("mcs-life-fraction", "0.5")],
      bad: [await life("mcs-life-bad", "6h"), await life("mcs-life-bad", "6h")],
      zero: [await life("mcs-life-zero", "0")],
      untagged: [await life("mcs-life-untagged")],
    };
    const client = ec2();
    try {
      const times = (await everything(client, "mcs-life-")).map((l) => l.launched.getTime());
      // Every instance is at least `minutes` old at last + minutes, and younger before first + minutes.
      const [first, last] = [Math.min(...times), Math.max(...times)];
      const warnings: string[] = [];
      const sweep = async (at: number) =>
        (
          await findLeftovers(client, {
            prefix: "mcs-life-",
            olderThanMinutes: 420,
            now: new Date(at),
            warn: (message) => warnings.push(message),
          })
        )
          .map((l) => l.id)
          .sort();
      const ids = (...kinds: (keyof typeof launched)[]) => kinds.flatMap((k) => launched[k]).sort();
      const justBefore = (minutes: number) => first + minutes * MINUTE - 1_000;
      const at = (minutes: number) => last + minutes * MINUTE;

      expect(LIFETIME_MARGIN_MINUTES).toBe(30);
      expect(await sweep(justBefore(30.5))).toEqual([]);
      expect(await sweep(at(30.5))).toEqual(ids("fraction"));
      expect(await sweep(justBefore(90))).toEqual(ids("fraction"));
      expect(await sweep(at(90))).toEqual(ids("fraction", "short"));
      expect(await sweep(justBefore(420))).toEqual(ids("fraction", "short"));
      // The fixed limit: untagged, and tags that are no lifetime. Not the 600-minute cluster.
      expect(await sweep(at(420))).toEqual(ids("fraction", "short", "bad", "zero", "untagged"));
      expect(await sweep(justBefore(630))).toEqual(
        ids("fraction", "short", "bad", "zero", "untagged"),
      );
      const all = await findLeftovers(client, {
        prefix: "mcs-life-",
        olderThanMinutes: 420,
        now: new Date(at(630)),
      });
      expect(all.map((l) => l.id).sort()).toEqual(Object.values(launched).flat().sort());
      expect(all.find((l) => l.cluster === "mcs-life-long")).toMatchObject({
        limitMinutes: 630,
        ownLifetimeMinutes: 600,
      });
      expect(all.find((l) => l.cluster === "mcs-life-bad")).toMatchObject({ limitMinutes: 420 });
      expect(all.find((l) => l.cluster === "mcs-life-bad")).not.toHaveProperty(
        "ownLifetimeMinutes",
      );

      // One line per cluster and sweep (two instances of mcs-life-bad: still one line).
      const sweeps = 7;
      expect(warnings).toHaveLength(2 * sweeps);
      expect(new Set(warnings)).toEqual(
        new Set([
          'cluster mcs-life-bad: its mcs-max-minutes tag "6h" is not a positive number of ' +
            "minutes, so its instances get the fixed limit of 420 minutes (max-age-minutes)",
          'cluster mcs-life-zero: its mcs-max-minutes tag "0" is not a positive number of ' +
            "minutes, so its instances get the fixed limit of 420 minutes (max-age-minutes)",
        ]),
      );
      for (const value of ["", " 60", "60m", "-5", "1e3", "0x10", "NaN", "Infinity", "."]) {
        expect(parseLifetimeTag(value), value).toBeUndefined();
      }
      expect([parseLifetimeTag("600"), parseLifetimeTag(".5"), parseLifetimeTag("7.")]).toEqual([
        600, 0.5, 7,
      ]);
    } finally {
      await client.send(
        new TerminateInstancesCommand({ InstanceIds: Object.values(launched).flat() }),
      );
    }
  });
});

describe("the janitor action", () => {
  it("leaves instances younger than the default age alone", async () => {
    const { run, aws } = await janitor({});
    expectSucceeded(run);
    expect(run.outputs).toEqual({ ...NOTHING, found: "0", terminated: "0", instances: "[]" });
    expect(run.summary).toContain("No leftover instances");
    expect(run.summary).toContain("or without that tag 420 minutes ago");
    expect(aws).toEqual(SWEEP);
    expect(await states()).toMatchObject({
      [ids.ours]: "running",
      [ids.other]: "running",
      [ids.untagged]: "running",
      [ids.nameOnly]: "running",
    });
  });

  it("takes an empty max-age-minutes (janitor.yml's scheduled runs) as the default", async () => {
    const { run } = await janitor({ "max-age-minutes": "" });
    expectSucceeded(run);
    expect(run.outputs.found).toBe("0");
    expect(run.summary).toContain("or without that tag 420 minutes ago");
  });

  it("dry-run lists ours and terminates nothing", async () => {
    const { run, aws } = await janitor({ "max-age-minutes": "0", "dry-run": "true" });
    expectSucceeded(run);
    expect(run.outputs).toEqual({
      ...NOTHING,
      found: "1",
      terminated: "0",
      instances: JSON.stringify([ids.ours]),
    });
    expect(run.summary).toContain("dry run: nothing terminated");
    expect(run.summary).toMatch(
      new RegExp(
        `<td>${ids.ours}</td><td>${OURS}</td><td>t3.micro</td><td>running</td>` +
          `<td>[^<]+</td><td>0m</td><td>0m</td><td>would terminate</td>`,
      ),
    );
    for (const id of [ids.other, ids.untagged, ids.nameOnly]) expect(run.summary).not.toContain(id);
    expect(aws).toEqual(SWEEP);
    expect(await states()).toMatchObject({ [ids.ours]: "running", [ids.other]: "running" });
  });

  it("terminates ours, only ours, and says so", async () => {
    const { run, aws } = await janitor({ "max-age-minutes": "0" });
    expectSucceeded(run);
    expect(run.outputs).toEqual({
      ...NOTHING,
      found: "1",
      terminated: "1",
      instances: JSON.stringify([ids.ours]),
    });
    expect(run.summary).not.toContain("dry run");
    expect(run.summary).toMatch(
      new RegExp(`<td>${ids.ours}</td><td>${OURS}</td>.*<td>terminated</td>`),
    );
    expect(run.stdout).toContain(`${ids.ours} ${OURS} t3.micro running`);
    expect(aws).toEqual([...SWEEP, "TerminateInstances"]);
    const after = await states();
    expect(["shutting-down", "terminated"]).toContain(after[ids.ours]);
    expect(after).toMatchObject({
      [ids.other]: "running",
      [ids.untagged]: "running",
      [ids.nameOnly]: "running",
    });

    // Terminated instances are not leftovers: a second sweep finds nothing.
    const again = await janitor({ "max-age-minutes": "0" });
    expectSucceeded(again.run);
    expect(again.run.outputs.found).toBe("0");
  });

  it("deletes runs' key pairs and Ray's security groups of gone clusters, only those", async () => {
    const client = ec2();
    const importKey = (name: string) =>
      client.send(
        new ImportKeyPairCommand({
          KeyName: name,
          PublicKeyMaterial: Buffer.from(generateSshKey(name).publicKey),
        }),
      );
    const group = async (name: string, cluster?: string) => {
      const out = await client.send(
        new CreateSecurityGroupCommand({
          GroupName: name,
          Description: "test",
          ...(cluster && {
            TagSpecifications: [
              { ResourceType: "security-group", Tags: [{ Key: RAY_CLUSTER_TAG, Value: cluster }] },
            ],
          }),
        }),
      );
      return out.GroupId!;
    };
    await importKey("mcs-gone-1");
    await importKey("other-key");
    const gone = await group("ray-autoscaler-mcs-gone-1", "mcs-gone-1");
    const busyInstance = await launch([{ Key: RAY_CLUSTER_TAG, Value: "mcs-busy-1" }]);
    const busy = await group("ray-autoscaler-mcs-busy-1", "mcs-busy-1");
    const notRays = await group("ray-autoscaler-mcs-untagged-1");
    const others = await group("ray-autoscaler-other-1", "other-1");
    const inventory = async () => {
      const pairs = await client.send(new DescribeKeyPairsCommand({}));
      const groups = await client.send(new DescribeSecurityGroupsCommand({}));
      return {
        keyPairs: (pairs.KeyPairs ?? []).map((k) => k.KeyName).sort(),
        groups: (groups.SecurityGroups ?? []).map((g) => g.GroupId),
      };
    };

    const dry = await janitor({ "max-age-minutes": "0", "dry-run": "true" });
    expectSucceeded(dry.run);
    expect(dry.run.outputs).toMatchObject({
      "key-pairs": JSON.stringify(["mcs-gone-1"]),
      "security-groups": JSON.stringify([gone]),
    });
    expect(dry.run.summary).toMatch(
      new RegExp(
        `<td>security group</td><td>ray-autoscaler-mcs-gone-1 \\(${gone}\\)</td><td>mcs-gone-1</td><td>would delete</td>`,
      ),
    );
    expect(dry.aws).toEqual(SWEEP);
    expect((await inventory()).keyPairs).toEqual(["mcs-gone-1", "other-key"]);

    const { run, aws } = await janitor({ "max-age-minutes": "0" });
    expectSucceeded(run);
    expect(run.outputs).toMatchObject({
      instances: JSON.stringify([busyInstance]),
      "key-pairs": JSON.stringify(["mcs-gone-1"]),
      "security-groups": JSON.stringify([gone]),
    });
    expect(aws).toEqual([...SWEEP, "TerminateInstances", "DeleteKeyPair", "DeleteSecurityGroup"]);
    expect(run.stdout).toContain(`security group ray-autoscaler-mcs-gone-1 ${gone}: deleted`);
    let left = await inventory();
    expect(left.keyPairs).toEqual(["other-key"]);
    expect(left.groups).not.toContain(gone);
    // The cluster whose instance it terminated just now keeps its group until the next sweep.
    expect(left.groups).toEqual(expect.arrayContaining([busy, notRays, others]));

    const next = await janitor({ "max-age-minutes": "0" });
    expectSucceeded(next.run);
    expect(next.run.outputs).toMatchObject({ "security-groups": JSON.stringify([busy]) });
    left = await inventory();
    expect(left.groups).not.toContain(busy);
    expect(left.groups).toEqual(expect.arrayContaining([notRays, others]));
  });

  for (const [prefix, shown] of [
    ["", "an empty prefix"],
    ["other-", '"other-"'],
  ] as const) {
    it(`refuses cluster-prefix=${JSON.stringify(prefix)} before reaching GitHub or AWS`, async () => {
      const { run, aws, oidcCalls } = await janitor({
        "cluster-prefix": prefix,
        "max-age-minutes": "0",
      });
      expect(run.code).toBe(1);
      expect(run.annotations).toHaveLength(1);
      expect(run.annotations[0]!.command).toBe("error");
      expect(run.annotations[0]!.message).toBe(
        `input cluster-prefix: ${shown} could match clusters that are not this pipeline's: ` +
          `it must start with "mcs-" and hold only a-z, 0-9 and -`,
      );
      expect(aws).toEqual([]);
      expect(oidcCalls).toBe(0);
      expect(run.outputs).toEqual({});
      expect(await states()).toMatchObject({ [ids.other]: "running" });
    });
  }

  it("refuses a bad max-age-minutes in one line", async () => {
    const { run, aws } = await janitor({ "max-age-minutes": "7h" });
    expect(run.code).toBe(1);
    expect(run.annotations.map((a) => a.message)).toEqual([
      'input max-age-minutes: "7h" is not a whole number of minutes (≥ 0)',
    ]);
    expect(aws).toEqual([]);
  });

  it("keeps a cluster within its own lifetime past max-age-minutes, and its key pair; warns once of a malformed one", async () => {
    const client = ec2();
    const long = await launch([
      { Key: RAY_CLUSTER_TAG, Value: "mcs-life-long-1" },
      { Key: LIFETIME_TAG, Value: "600" },
    ]);
    const bad = [0, 1].map(() => [
      { Key: RAY_CLUSTER_TAG, Value: "mcs-life-bad-1" },
      { Key: LIFETIME_TAG, Value: "6h" },
    ]);
    const bads = [await launch(bad[0]!), await launch(bad[1]!)];
    for (const name of ["mcs-life-long-1", "mcs-life-bad-1"]) {
      await client.send(
        new ImportKeyPairCommand({
          KeyName: name,
          PublicKeyMaterial: Buffer.from(generateSshKey(name).publicKey),
        }),
      );
    }
    const inputs = { "cluster-prefix": "mcs-life-", "max-age-minutes": "0" };
    try {
      const { run } = await janitor(inputs);
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
      expect(run.annotations.map((a) => [a.command, a.message])).toEqual([
        [
          "warning",
          'cluster mcs-life-bad-1: its mcs-max-minutes tag "6h" is not a positive number of ' +
            "minutes, so its instances get the fixed limit of 0 minutes (max-age-minutes)",
        ],
      ]);
      expect(run.outputs).toMatchObject({
        found: "2",
        terminated: "2",
        instances: JSON.stringify([...bads].sort()),
        // Both clusters had instances when it looked: their key pairs wait.
        "key-pairs": "[]",
      });
      expect(run.stdout).toContain(
        "2 leftover instance(s): tag ray-cluster-name=mcs-life-*, launched at least their " +
          "cluster's own lifetime (tag mcs-max-minutes) plus 30 minutes ago, or without that tag " +
          "0 minutes ago, in us-east-1",
      );
      expect(run.summary).toContain("<th>Limit</th>");
      expect(run.summary).not.toContain(long);
      expect(run.stdout).toContain(`${bads[0]} mcs-life-bad-1 t3.micro running`);
      expect((await states())[long]).toBe("running");

      // Once the cluster is gone (its watchdog's `ray down`), its key pair goes too.
      await client.send(new TerminateInstancesCommand({ InstanceIds: [long] }));
      const next = await janitor(inputs);
      expectSucceeded(next.run);
      expect(next.run.outputs.found).toBe("0");
      expect((JSON.parse(next.run.outputs["key-pairs"]!) as string[]).sort()).toEqual([
        "mcs-life-bad-1",
        "mcs-life-long-1",
      ]);
    } finally {
      await client.send(new TerminateInstancesCommand({ InstanceIds: [long, ...bads] }));
    }
  });
});

const RAY = "2.60.0";
const PYTHON = path.join(VENV, "bin", "python");

describe("the cluster's lifetime in its rendered YAML", () => {
  type Rendered = {
    available_node_types: Record<string, { node_config: { TagSpecifications?: unknown } }>;
    head_start_ray_commands: string[];
  };
  const key: RunSshKey = { privateKeyFile: "/runner/temp/ssh/mcs-x.pem", keyPairName: "mcs-x" };
  function render(maxMinutes?: number, edit?: (cluster: Record<string, unknown>) => void) {
    const mod = loadModule(REPO, "demo", "level2");
    edit?.(mod.cluster);
    const watchdog = maxMinutes === undefined ? undefined : { ...WATCHDOG_DEFAULTS, maxMinutes };
    const dir = makeTemp("mcs-plan-");
    const file = renderClusterYaml(mod, "mcs-x", RAY, dir, "1-1", key, watchdog);
    return { file, cluster: parseYaml(readFileSync(file, "utf8")) as Rendered };
  }
  /** Our tag's value in each node type's instance tags. */
  const lifetimes = (cluster: Rendered) =>
    Object.values(cluster.available_node_types).map((type) =>
      (type.node_config.TagSpecifications as { ResourceType: string; Tags: Tag[] }[])
        .filter((spec) => spec.ResourceType === "instance")
        .flatMap((spec) => spec.Tags)
        .filter((tag) => tag.Key === LIFETIME_TAG)
        .map((tag) => tag.Value ?? ""),
    );

  it("tags every node type's instances with the watchdog's --max-minutes, and Ray's schema accepts it", async () => {
    const { file, cluster } = render(600);
    const types = Object.values(cluster.available_node_types);
    expect(types).toHaveLength(2);
    for (const type of types) {
      expect(type.node_config.TagSpecifications).toEqual([
        { ResourceType: "instance", Tags: [{ Key: LIFETIME_TAG, Value: "600" }] },
      ]);
    }
    expect(cluster.head_start_ray_commands.at(-1)).toContain(" --max-minutes 600 ");
    await validateWithRaySchema(PYTHON, file, "the rendered cluster YAML");
    // The default lifetime, and a fraction (the tests' form), read back as the janitor reads them.
    expect(lifetimes(render().cluster)).toEqual([["390"], ["390"]]);
    expect(lifetimes(render(0.25).cluster).flat().map(parseLifetimeTag)).toEqual([0.25, 0.25]);
  });

  it("keeps a module's own tags and tag specifications; a tag of its key is replaced", async () => {
    const { file, cluster } = render(600, (module) => {
      const types = module.available_node_types as Record<string, { node_config: object }>;
      types["ray.head.default"]!.node_config = {
        ...types["ray.head.default"]!.node_config,
        TagSpecifications: [
          { ResourceType: "volume", Tags: [{ Key: "team", Value: "opics" }] },
          {
            ResourceType: "instance",
            Tags: [
              { Key: "team", Value: "opics" },
              { Key: LIFETIME_TAG, Value: "99999" },
            ],
          },
        ],
      };
    });
    expect(cluster.available_node_types["ray.head.default"]!.node_config.TagSpecifications).toEqual(
      [
        { ResourceType: "volume", Tags: [{ Key: "team", Value: "opics" }] },
        {
          ResourceType: "instance",
          Tags: [
            { Key: "team", Value: "opics" },
            { Key: LIFETIME_TAG, Value: "600" },
          ],
        },
      ],
    );
    expect(lifetimes(cluster)).toEqual([["600"], ["600"]]);
    await validateWithRaySchema(PYTHON, file, "the rendered cluster YAML");
  });

  it("refuses a module's TagSpecifications that are not a list, in one line", () => {
    expect(() =>
      render(600, (module) => {
        const types = module.available_node_types as Record<string, { node_config: object }>;
        types["ray.worker.default"]!.node_config = {
          ...types["ray.worker.default"]!.node_config,
          TagSpecifications: { ResourceType: "instance" },
        };
      }),
    ).toThrow(
      new InputError(
        "module",
        "ray_demo_aws.yaml: ray.worker.default's node_config.TagSpecifications must be a list of {ResourceType, Tags: [...]}",
      ),
    );
  });

  it("leaves a non-AWS provider's node_config alone (the launcher tests' local cluster)", () => {
    const { cluster } = render(600, (module) => {
      module.provider = { type: "local", head_ip: "127.0.0.1", worker_ips: [] };
    });
    for (const type of Object.values(cluster.available_node_types)) {
      expect(type.node_config).not.toHaveProperty("TagSpecifications");
    }
  });
});

/**
 * Both backstops over the same clusters, on one simulated timeline: two clusters of the demo
 * module with cluster-max-minutes 600 (above the janitor's fixed 420), launched by Ray's own AWS
 * provider (head and worker, tagged as Ray tags them) against a moto of their own. The watched
 * cluster's watchdog (its real loop, on a simulated clock, started 5 minutes after its head's
 * launch, when `ray up` gets there) acts at 600 minutes, and its `ray down` is Ray's teardown. The
 * other's watchdog is gone (killed on its head, say). The janitor sweeps every 5 minutes of that
 * timeline with its own find and terminate (the action reads the wall clock, and moto launches
 * at "now").
 */
describe("one lifetime rule: the head's watchdog and the janitor over the same clusters", () => {
  const MAX = 600;
  let own: MotoServer | undefined;
  beforeAll(async () => {
    own = await startMoto();
    // The nodes' instance profile, as the setup stack makes it (else Ray's bootstrap makes one
    // with AWS's managed AmazonEC2FullAccess, which moto does not have).
    const iam = new IAMClient({ region: TEST_REGION, endpoint: own.url, credentials: TEST_KEYS });
    const name = "ray-autoscaler-v1";
    const trust = {
      Version: "2012-10-17",
      Statement: [
        { Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" },
      ],
    };
    await iam.send(
      new CreateRoleCommand({ RoleName: name, AssumeRolePolicyDocument: JSON.stringify(trust) }),
    );
    await iam.send(new CreateInstanceProfileCommand({ InstanceProfileName: name }));
    await iam.send(
      new AddRoleToInstanceProfileCommand({ InstanceProfileName: name, RoleName: name }),
    );
    iam.destroy();
  });
  afterAll(async () => {
    await own?.stop();
  });

  it("the watchdog tears its cluster down first; the janitor leaves it, and takes the other once 600 + 30 minutes have passed", async () => {
    // Ray's launcher straight to this moto, which authenticates nobody (IAM is aws-provider.test.ts's).
    const account = {
      recorder: { url: own!.url },
      credentials: { ...TEST_KEYS, sessionToken: "" },
    } as unknown as IamAccount;
    const launch = async (name: string) => {
      const dir = makeTemp("mcs-plan-");
      const sshKey = { privateKeyFile: path.join(dir, "key.pem"), keyPairName: name };
      writeRunKey(sshKey.privateKeyFile, name);
      const watchdog = { ...WATCHDOG_DEFAULTS, maxMinutes: MAX };
      const mod = loadModule(REPO, "demo", "level2");
      const yaml = renderClusterYaml(mod, name, RAY, dir, "1-1", sshKey, watchdog);
      const home = makeTemp("mcs-runner-home-");
      const run = { yaml, home, tmp: makeTemp("mcs-runner-tmp-") } as RenderedRun;
      const up = await rayAws(account, "launch", run);
      expect(up.error, up.log).toBeUndefined();
      expect(up.network).toEqual([]);
      const nodes = Object.entries(up.nodes!);
      expect(nodes.map(([, n]) => n.kind).sort()).toEqual(["head", "worker"]);
      for (const [, node] of nodes) {
        expect(node.tags).toMatchObject({
          [RAY_CLUSTER_TAG]: name,
          "ray-node-type": node.kind, // Ray's TAG_RAY_NODE_KIND
          [LIFETIME_TAG]: String(MAX),
        });
      }
      return { run, dir, head: nodes.find(([, n]) => n.kind === "head")![0] };
    };
    const watched = await launch("mcs-demo-level2-life-watched");
    await launch("mcs-demo-level2-life-orphan");

    const client = new EC2Client({
      region: TEST_REGION,
      endpoint: own!.url,
      credentials: TEST_KEYS,
      maxAttempts: 1,
    });
    const prefix = "mcs-demo-level2-life-";
    const launched = await everything(client, prefix);
    expect(launched).toHaveLength(4);
    // Minute t of the timeline: every instance is at least t minutes old.
    const origin = Math.max(...launched.map((l) => l.launched.getTime()));
    const headLaunch = launched.find((l) => l.id === watched.head)!.launched.getTime();

    // `ray up` starts the watchdog once it has reached the head over SSH and set it up (Ray's
    // install): minutes after the launch. Its clock counts from then.
    const out = path.join(watched.run.tmp, "watchdog.json");
    const started = (headLaunch + 5 * MINUTE) / 1000;
    const clock = await execCommand(
      PYTHON,
      [
        path.join(REPO, "test", "support", "watchdog_clock.py"),
        watched.run.yaml,
        path.join(watched.dir, "head-plan"),
        String(started),
        out,
      ],
      { timeoutMs: 120_000 },
    );
    expect(clock.code, clock.stderr).toBe(0);
    const watchdog = JSON.parse(readFileSync(out, "utf8")) as {
      max_minutes: number;
      acted_at: number;
      log: string[];
    };
    expect(watchdog.max_minutes).toBe(MAX);
    expect(watchdog.log[0]).toBe(
      "the cluster has run for 600.0 min, its maximum lifetime is 600 min " +
        "(cluster-max-minutes): tearing the cluster down",
    );

    const taken = new Map<string, number>();
    let tornDownAt: number | undefined;
    for (let t = 0; t <= MAX + 100; t += 5) {
      const now = origin + t * MINUTE;
      if (tornDownAt === undefined && now >= watchdog.acted_at * 1000) {
        const down = await rayAws(account, "down", watched.run);
        expect(down.error, down.log).toBeUndefined();
        expect(down.left).toEqual([]);
        tornDownAt = t;
      }
      const found = await findLeftovers(client, {
        prefix,
        olderThanMinutes: 420,
        now: new Date(now),
      });
      for (const f of found) if (!taken.has(f.cluster)) taken.set(f.cluster, t);
      const result = await terminate(
        client,
        found.map((f) => f.id),
      );
      expect(result.failed).toEqual([]);
    }
    // The watchdog, 600 minutes after its start: before the janitor's 600 + 30 of its nodes.
    expect(tornDownAt).toBe(605);
    expect(Object.fromEntries(taken)).toEqual({ "mcs-demo-level2-life-orphan": 630 });
    expect(await everything(client, prefix)).toEqual([]);
    client.destroy();
  }, 300_000);
});
