/**
 * The run's SSH key (aws/keypair.ts), how the rendered cluster YAML carries it, and the teardown
 * of what a run leaves in EC2 (aws/run-resources.ts) against a scripted EC2 client: its waiting
 * and retrying, which moto (instances terminate at once) does not exercise.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { EC2Client } from "@aws-sdk/client-ec2";
import { parse as parseYaml } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { generateSshKey, keyPairNameFor, runKeyFile, writeRunKey } from "../src/aws/keypair.js";
import { deleteRunResources } from "../src/aws/run-resources.js";
import { renderClusterYaml } from "../src/cluster.js";
import { loadModule } from "../src/module.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

afterAll(() => removeTemps());

describe("the run's SSH key", () => {
  it("is an OpenSSH ed25519 key ssh-keygen reads, 0600 in a 0700 directory", () => {
    const keyDir = path.join(makeTemp("mcs-run-"), "ssh");
    const file = runKeyFile(keyDir, "mcs-demo-level2-1-1");
    expect(file).toBe(path.join(keyDir, "mcs-demo-level2-1-1.pem"));
    const publicKey = writeRunKey(file, "mcs-demo-level2-1-1");
    expect(publicKey).toMatch(
      /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43} mcs-demo-level2-1-1$/,
    );
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const derived = execFileSync("ssh-keygen", ["-y", "-f", file], { encoding: "utf8" }).trim();
    expect(derived.split(" ").slice(0, 2)).toEqual(publicKey.split(" ").slice(0, 2));

    // A second key for the same file replaces the first: no key is ever reused.
    expect(writeRunKey(file, "again")).not.toBe(publicKey);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it("differs every time, and its private half never appears in the public one", () => {
    const a = generateSshKey("x");
    const b = generateSshKey("x");
    expect(a.publicKey).not.toBe(b.publicKey);
    expect(a.privateKey).toMatch(
      /^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n-----END OPENSSH PRIVATE KEY-----\n$/,
    );
    expect(a.privateKey.split("\n").every((line) => line.length <= 70)).toBe(true);
  });
});

describe("renderClusterYaml with the run's key", () => {
  const key = {
    privateKeyFile: "/runner/temp/ssh/mcs-x.pem",
    keyPairName: keyPairNameFor("mcs-x"),
  };

  it("gives Ray the key through auth and the key pair through every node type's KeyName (AWS)", () => {
    const mod = loadModule(REPO, "demo", "level2");
    const dir = makeTemp("mcs-plan-");
    const file = renderClusterYaml(mod, "mcs-x", "2.60.0", dir, "1-1", key);
    const cluster = parseYaml(readFileSync(file, "utf8")) as {
      auth: Record<string, string>;
      available_node_types: Record<string, { node_config: Record<string, string> }>;
    };
    expect(cluster.auth).toEqual({ ssh_user: "ubuntu", ssh_private_key: key.privateKeyFile });
    const types = Object.values(cluster.available_node_types);
    expect(types.length).toBe(2);
    for (const type of types) expect(type.node_config.KeyName).toBe("mcs-x");
    // The module's own file is left as it was.
    expect(mod.cluster.auth).toEqual({ ssh_user: "ubuntu" });
  });

  it("leaves a non-AWS provider's auth alone (the launcher tests' local cluster)", () => {
    const mod = loadModule(REPO, "demo", "level2");
    mod.cluster = {
      ...mod.cluster,
      provider: { type: "local", head_ip: "127.0.0.1", worker_ips: [] },
      auth: { ssh_user: "me", ssh_private_key: "/home/me/.ssh/id" },
    };
    const dir = makeTemp("mcs-plan-");
    mkdirSync(dir, { recursive: true });
    const cluster = parseYaml(
      readFileSync(renderClusterYaml(mod, "mcs-x", "2.60.0", dir, "1-1", key), "utf8"),
    ) as { auth: unknown; available_node_types: Record<string, { node_config: object }> };
    expect(cluster.auth).toEqual({ ssh_user: "me", ssh_private_key: "/home/me/.ssh/id" });
    for (const type of Object.values(cluster.available_node_types)) {
      expect(type.node_config).not.toHaveProperty("KeyName");
    }
  });
});

/** An EC2 client that answers each command from a script, and records what it was sent. */
function scripted(answers: Record<string, ((input: Record<string, unknown>) => unknown)[]>) {
  const sent: string[] = [];
  const client = {
    send: (command: { constructor: { name: string }; input: Record<string, unknown> }) => {
      const name = command.constructor.name.replace(/Command$/, "");
      sent.push(name);
      const next = answers[name]?.length === 1 ? answers[name][0] : answers[name]?.shift();
      if (!next) throw new Error(`unscripted ${name}`);
      return Promise.resolve().then(() => next(command.input));
    },
  };
  return { ec2: client as unknown as EC2Client, sent };
}

const awsFailure = (name: string) => () => {
  throw Object.assign(new Error(`${name} says no`), { name });
};
const group = {
  GroupId: "sg-1",
  GroupName: "ray-autoscaler-mcs-x",
  Tags: [{ Key: "ray-cluster-name", Value: "mcs-x" }],
};
const instances =
  (...states: string[]) =>
  () => ({
    Reservations: [
      {
        Instances: states.map((state, i) => ({
          InstanceId: `i-${i}`,
          State: { Name: state },
          Tags: [{ Key: "ray-cluster-name", Value: "mcs-x" }],
        })),
      },
    ],
  });

describe("deleteRunResources", () => {
  it("waits for terminating instances, retries a group still in use, then deletes it", async () => {
    const { ec2, sent } = scripted({
      DeleteKeyPair: [() => ({})],
      DescribeSecurityGroups: [() => ({ SecurityGroups: [group] })],
      DescribeInstances: [instances("shutting-down", "terminated"), instances("terminated")],
      DeleteSecurityGroup: [awsFailure("DependencyViolation"), () => ({})],
    });
    const log: string[] = [];
    const done = await deleteRunResources(ec2, "mcs-x", { intervalMs: 1, log: (l) => log.push(l) });
    expect(done).toEqual({ keyPair: "mcs-x", securityGroups: ["sg-1"] });
    expect(sent).toEqual([
      "DeleteKeyPair",
      "DescribeSecurityGroups",
      "DescribeInstances",
      "DescribeInstances",
      "DeleteSecurityGroup",
      "DeleteSecurityGroup",
    ]);
    expect(log).toEqual([
      "Deleted EC2 key pair mcs-x",
      "Deleted security group ray-autoscaler-mcs-x (sg-1)",
    ]);
  });

  it("leaves the group, naming why, when an instance was stopped rather than terminated", async () => {
    const { ec2, sent } = scripted({
      DeleteKeyPair: [() => ({})],
      DescribeSecurityGroups: [() => ({ SecurityGroups: [group] })],
      DescribeInstances: [instances("stopped", "shutting-down")],
    });
    await expect(deleteRunResources(ec2, "mcs-x", { intervalMs: 1 })).rejects.toThrow(
      "instances of mcs-x are not terminating (i-0 stopped), so security group sg-1 stays",
    );
    expect(sent).not.toContain("DeleteSecurityGroup");
  });

  it("gives up on instances still shutting down at the deadline, for the janitor", async () => {
    const { ec2 } = scripted({
      DeleteKeyPair: [() => ({})],
      DescribeSecurityGroups: [() => ({ SecurityGroups: [group] })],
      DescribeInstances: [instances("shutting-down")],
    });
    await expect(
      deleteRunResources(ec2, "mcs-x", { intervalMs: 1, timeoutMs: 20 }),
    ).rejects.toThrow(
      "instances of mcs-x are still shutting down (i-0 shutting-down); security group sg-1 is left for the janitor",
    );
  });

  it("is done after the key pair when Ray made no group (or it is gone), and names a refused action", async () => {
    const none = scripted({
      DeleteKeyPair: [() => ({})],
      DescribeSecurityGroups: [() => ({ SecurityGroups: [] })],
    });
    expect(await deleteRunResources(none.ec2, "mcs-x")).toEqual({
      keyPair: "mcs-x",
      securityGroups: [],
    });
    expect(none.sent).toEqual(["DeleteKeyPair", "DescribeSecurityGroups"]);

    const denied = scripted({ DeleteKeyPair: [awsFailure("UnauthorizedOperation")] });
    await expect(deleteRunResources(denied.ec2, "mcs-x")).rejects.toThrow(
      "EC2 DeleteKeyPair failed (ec2:DeleteKeyPair): UnauthorizedOperation: UnauthorizedOperation says no",
    );
  });
});
