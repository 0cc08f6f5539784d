/**
 * The janitor against moto's EC2 on loopback, through the STS trust-policy proxy and the OIDC
 * endpoint, run as the runner runs it (`node dist/janitor/index.js` with janitor/action.yml's
 * inputs). moto sets LaunchTime to "now", so the age threshold is exercised with max-age-minutes
 * 0 (ours found) against the default 420 (nothing found), and in findLeftovers with a far `now`.
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
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSshKey } from "../src/aws/keypair.js";
import { InputError } from "../src/errors.js";
import { findLeftovers, formatAge, RAY_CLUSTER_TAG } from "../src/janitor/find.js";
import {
  startMoto,
  startStsProxy,
  TEST_KEYS,
  TEST_REGION,
  type MotoServer,
  type StsProxy,
} from "./support/moto.js";
import { startOidcServer, type OidcServer } from "./support/oidc.js";
import {
  cleanupActions,
  leakedSecrets,
  runAction,
  type ActionRun,
  type Entry,
} from "./support/runner.js";
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

let moto: MotoServer | undefined;
let proxy: StsProxy | undefined;
let oidc: OidcServer | undefined;
let actionPath = "";
let workspace = "";
/** Instance ids by role: ours, another team's cluster, untagged, and `Name=mcs-...` only. */
const ids = { ours: "", other: "", untagged: "", nameOnly: "" };

/** Straight to moto (not through the proxy): the proxy's log is the action's calls only. */
function ec2(): EC2Client {
  return new EC2Client({
    region: TEST_REGION,
    endpoint: moto!.url,
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
  const before = { aws: proxy!.requests.length, oidc: oidc!.requests.length };
  const run = await runAction(JANITOR, {
    actionPath,
    workspace,
    inputs: { "role-to-assume": ROLE, ...inputs },
    oidc: oidc!,
    awsEndpoint: proxy!.url,
    timeoutMs: 60_000,
  });
  const aws = proxy!.requests.slice(before.aws).map((r) => r.action ?? `${r.method} ${r.path}`);
  const oidcCalls = oidc!.requests.length - before.oidc;
  return { run, aws, oidcCalls };
}

function expectSucceeded(run: ActionRun) {
  expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
  expect(run.annotations).toEqual([]);
  expect(leakedSecrets(run, proxy!.secrets())).toEqual([]);
}

beforeAll(async () => {
  moto = await startMoto();
  await Promise.all([
    startStsProxy(moto.url).then((p) => (proxy = p)),
    startOidcServer().then((o) => (oidc = o)),
  ]);
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
  await Promise.allSettled([cleanupActions(), moto?.stop(), proxy?.close(), oidc?.close()]);
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
    const client = new EC2Client({
      region: TEST_REGION,
      endpoint: proxy!.url,
      credentials: TEST_KEYS,
      maxAttempts: 1,
    });
    const paged: string[] = [];
    for (let i = 0; i < 7; i++)
      paged.push(await launch([{ Key: RAY_CLUSTER_TAG, Value: `mcs-page-${i}` }]));
    try {
      const before = proxy!.requests.length;
      const found = await findLeftovers(client, {
        prefix: "mcs-page-",
        olderThanMinutes: 0,
        pageSize: 5,
      });
      expect(found.map((l) => l.id).sort()).toEqual([...paged].sort());
      const calls = proxy!.requests.slice(before).filter((r) => r.action === "DescribeInstances");
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
});

describe("the janitor action", () => {
  it("leaves instances younger than the default age alone", async () => {
    const { run, aws } = await janitor({});
    expectSucceeded(run);
    expect(run.outputs).toEqual({ ...NOTHING, found: "0", terminated: "0", instances: "[]" });
    expect(run.summary).toContain("No leftover instances");
    expect(run.summary).toContain("launched at least 420 minutes ago");
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
    expect(run.summary).toContain("launched at least 420 minutes ago");
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
          `<td>[^<]+</td><td>0m</td><td>would terminate</td>`,
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
});
