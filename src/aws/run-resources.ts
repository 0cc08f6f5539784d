/**
 * What a run leaves in EC2 besides its instances, and their removal once `ray down` has
 * terminated those: the run's key pair (keypair.ts) and the security group Ray's bootstrap
 * created for the cluster, `ray-autoscaler-<cluster name>`, tagged with the cluster name
 * (ray/autoscaler/_private/aws/config.py, `_create_security_group`). Cluster names are unique per
 * run, so both belong to this run alone. A security group can only be deleted once no instance
 * uses it, and EC2 takes a minute or so to finish terminating: this waits for that.
 */
import {
  DeleteSecurityGroupCommand,
  DescribeInstancesCommand,
  DescribeSecurityGroupsCommand,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { awsError, deleteKeyPair } from "./keypair.js";
import { keyPairNameFor, RAY_CLUSTER_TAG, securityGroupNameFor } from "./ray-names.js";

export { securityGroupNameFor } from "./ray-names.js";

export interface SecurityGroupRef {
  id: string;
  name: string;
  cluster: string;
}

/** The security groups Ray created for `clusterName`: by name and by its tag, both. */
export async function clusterSecurityGroups(
  ec2: EC2Client,
  clusterName: string,
): Promise<SecurityGroupRef[]> {
  const name = securityGroupNameFor(clusterName);
  const found: SecurityGroupRef[] = [];
  let token: string | undefined;
  do {
    const page = await ec2
      .send(
        new DescribeSecurityGroupsCommand({
          Filters: [
            { Name: "group-name", Values: [name] },
            { Name: `tag:${RAY_CLUSTER_TAG}`, Values: [clusterName] },
          ],
          NextToken: token,
        }),
      )
      .catch((error: unknown) => {
        throw awsError("DescribeSecurityGroups", error);
      });
    for (const group of page.SecurityGroups ?? []) {
      const tag = group.Tags?.find((t) => t.Key === RAY_CLUSTER_TAG)?.Value;
      if (group.GroupId && group.GroupName === name && tag === clusterName) {
        found.push({ id: group.GroupId, name, cluster: clusterName });
      }
    }
    token = page.NextToken;
  } while (token);
  return found;
}

/** The cluster's instances in any state but terminated: `[id, state]`. */
export async function clusterInstances(
  ec2: EC2Client,
  clusterName: string,
): Promise<[id: string, state: string][]> {
  const found: [string, string][] = [];
  let token: string | undefined;
  do {
    const page = await ec2
      .send(
        new DescribeInstancesCommand({
          Filters: [{ Name: `tag:${RAY_CLUSTER_TAG}`, Values: [clusterName] }],
          NextToken: token,
        }),
      )
      .catch((error: unknown) => {
        throw awsError("DescribeInstances", error);
      });
    for (const reservation of page.Reservations ?? []) {
      for (const instance of reservation.Instances ?? []) {
        const state = instance.State?.Name ?? "unknown";
        const tag = instance.Tags?.find((t) => t.Key === RAY_CLUSTER_TAG)?.Value;
        if (instance.InstanceId && tag === clusterName && state !== "terminated") {
          found.push([instance.InstanceId, state]);
        }
      }
    }
    token = page.NextToken;
  } while (token);
  return found;
}

export interface CleanupOptions {
  /** How long to wait for terminating instances to let go of the security group (default 5 min). */
  timeoutMs?: number;
  /** Between two looks (default 5 s). */
  intervalMs?: number;
  log?: (line: string) => void;
}

export interface Cleanup {
  keyPair: string;
  /** Ids of the security groups deleted. */
  securityGroups: string[];
}

/**
 * After `ray down`: deletes the run's key pair, waits until the cluster's instances are
 * terminated, then deletes the security group Ray created for the cluster. Idempotent. Throws
 * (naming what is left) when instances are still up or the group stays in use past the timeout.
 */
export async function deleteRunResources(
  ec2: EC2Client,
  clusterName: string,
  options: CleanupOptions = {},
): Promise<Cleanup> {
  const log = options.log ?? (() => undefined);
  const interval = options.intervalMs ?? 5_000;
  const deadline = Date.now() + (options.timeoutMs ?? 300_000);
  const keyPair = keyPairNameFor(clusterName);
  await deleteKeyPair(ec2, keyPair);
  log(`Deleted EC2 key pair ${keyPair}`);

  const groups = await clusterSecurityGroups(ec2, clusterName);
  if (groups.length === 0) return { keyPair, securityGroups: [] };
  for (;;) {
    const left = await clusterInstances(ec2, clusterName);
    const up = left.filter(([, state]) => state !== "shutting-down");
    if (up.length > 0) {
      // Stopped instances still hold the group (and their volumes): ray down must terminate.
      throw new Error(
        `instances of ${clusterName} are not terminating (${describe(up)}), so security group ` +
          `${groups.map((g) => g.id).join(", ")} stays: terminate them, then delete it`,
      );
    }
    if (left.length === 0) break;
    if (Date.now() >= deadline) {
      throw new Error(
        `instances of ${clusterName} are still shutting down (${describe(left)}); ` +
          `security group ${groups.map((g) => g.id).join(", ")} is left for the janitor`,
      );
    }
    await sleep(interval);
  }
  const deleted: string[] = [];
  for (const group of groups) {
    await deleteSecurityGroup(ec2, group.id, deadline, interval);
    log(`Deleted security group ${group.name} (${group.id})`);
    deleted.push(group.id);
  }
  return { keyPair, securityGroups: deleted };
}

/**
 * Deletes a security group, retrying while EC2 still counts a network interface of a terminated
 * instance as using it (DependencyViolation), until `deadline`. A group already gone is fine.
 */
export async function deleteSecurityGroup(
  ec2: EC2Client,
  id: string,
  deadline = Date.now(),
  intervalMs = 5_000,
): Promise<void> {
  for (;;) {
    try {
      await ec2.send(new DeleteSecurityGroupCommand({ GroupId: id }));
      return;
    } catch (error) {
      const name = (error as Error).name;
      if (name === "InvalidGroup.NotFound") return;
      if (name !== "DependencyViolation" || Date.now() >= deadline) {
        throw awsError("DeleteSecurityGroup", error);
      }
    }
    await sleep(intervalMs);
  }
}

const describe = (instances: [string, string][]) =>
  instances.map(([id, state]) => `${id} ${state}`).join(", ");

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
