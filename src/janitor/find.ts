/**
 * Leftover clusters (DESIGN.md §5): `ray down` may never run (a cancelled `ray up`, a runner
 * that died, a kept cluster nobody took down). Ray's AWS launcher tags every instance it starts
 * with the cluster name, and ours are all `mcs-<module>-<run id>` (cluster.ts), so the janitor
 * finds them by that tag and that prefix, and only when they have outlived their cluster's own
 * lifetime (lifetime.ts: its `mcs-max-minutes` tag plus a margin; untagged, the fixed limit).
 * Each run also creates an EC2 key pair named after its cluster, and Ray's bootstrap a security
 * group `ray-autoscaler-<cluster>`; when the run's own teardown missed them, the janitor deletes
 * them too, once nothing of the cluster can still need them.
 */
import {
  DescribeKeyPairsCommand,
  paginateDescribeInstances,
  paginateDescribeSecurityGroups,
  TerminateInstancesCommand,
  type EC2Client,
  type Instance,
} from "@aws-sdk/client-ec2";
import { deleteKeyPair } from "../aws/keypair.js";
import {
  RAY_CLUSTER_TAG,
  RAY_SECURITY_GROUP_PREFIX,
  securityGroupNameFor,
} from "../aws/ray-names.js";
import { deleteSecurityGroup } from "../aws/run-resources.js";
import { InputError } from "../errors.js";
import { LIFETIME_MARGIN_MINUTES, LIFETIME_TAG, parseLifetimeTag } from "./lifetime.js";

/** Ray's tag for the cluster name (ray/autoscaler/tags.py, TAG_RAY_CLUSTER_NAME). */
export { RAY_CLUSTER_TAG } from "../aws/ray-names.js";

/** The prefix every cluster name of this pipeline starts with (cluster.ts clusterNameFor). */
export const PIPELINE_PREFIX = "mcs-";

/** States in which an instance still costs something (a stopped one keeps its volumes). */
export const LIVE_STATES = ["pending", "running", "stopping", "stopped"] as const;

export interface Leftover {
  id: string;
  /** The Ray cluster name (the tag's value). */
  cluster: string;
  type: string;
  state: string;
  launched: Date;
  /** Whole minutes since launch, at `now`. */
  ageMinutes: number;
  /** The age at which it became a leftover: its cluster's own lifetime plus the margin, or the fixed limit. */
  limitMinutes: number;
  /** Its cluster's own lifetime (the `mcs-max-minutes` tag), when it has a valid one. */
  ownLifetimeMinutes?: number;
}

export interface FindOptions {
  /** Cluster-name prefix: must start with `mcs-` (see checkPrefix). */
  prefix: string;
  /**
   * The fixed limit: instances without a valid `mcs-max-minutes` tag launched at least this many
   * minutes before `now` (tagged ones: their own lifetime plus the margin); key pairs this old.
   */
  olderThanMinutes: number;
  now?: Date;
  /** Told once per cluster whose `mcs-max-minutes` tag is not a lifetime (the fixed limit applies). */
  warn?: (message: string) => void;
  /** DescribeInstances MaxResults (EC2 allows 5 to 1000). */
  pageSize?: number;
}

/**
 * The prefix must name this pipeline's clusters and nothing else: non-empty, starting with
 * `mcs-`, and only the characters cluster names have (no EC2 filter wildcards `*` or `?`).
 */
export function checkPrefix(prefix: string): void {
  if (!prefix.startsWith(PIPELINE_PREFIX) || !/^[a-z0-9-]+$/.test(prefix)) {
    throw new InputError(
      "cluster-prefix",
      `${prefix ? `"${prefix}"` : "an empty prefix"} could match clusters that are not this ` +
        `pipeline's: it must start with "${PIPELINE_PREFIX}" and hold only a-z, 0-9 and -`,
    );
  }
}

/** Instances of clusters named `<prefix>...` in a live state that have outlived their limit. */
export async function findLeftovers(ec2: EC2Client, options: FindOptions): Promise<Leftover[]> {
  checkPrefix(options.prefix);
  if (!Number.isFinite(options.olderThanMinutes) || options.olderThanMinutes < 0) {
    throw new Error(`olderThanMinutes must be a number ≥ 0, not ${options.olderThanMinutes}`);
  }
  const now = options.now ?? new Date();
  const found: Leftover[] = [];
  const warned = new Set<string>();
  const pages = paginateDescribeInstances(
    { client: ec2, pageSize: options.pageSize ?? 1000 },
    {
      Filters: [
        { Name: `tag:${RAY_CLUSTER_TAG}`, Values: [`${options.prefix}*`] },
        { Name: "instance-state-name", Values: [...LIVE_STATES] },
      ],
    },
  );
  for await (const page of pages) {
    for (const reservation of page.Reservations ?? []) {
      for (const instance of reservation.Instances ?? []) {
        const leftover = judge(instance, options.prefix, options.olderThanMinutes, now, (text) => {
          if (!warned.has(text)) options.warn?.(text);
          warned.add(text);
        });
        if (leftover) found.push(leftover);
      }
    }
  }
  return found.sort((a, b) => a.launched.getTime() - b.launched.getTime() || cmp(a.id, b.id));
}

/** The filters again, on our side: a filter EC2 (or a stand-in) ignores must not widen the sweep. */
function judge(
  instance: Instance,
  prefix: string,
  olderThanMinutes: number,
  now: Date,
  warn: (message: string) => void,
): Leftover | undefined {
  const cluster = instance.Tags?.find((t) => t.Key === RAY_CLUSTER_TAG)?.Value;
  const state = instance.State?.Name ?? "";
  const launched = instance.LaunchTime;
  if (!instance.InstanceId || !cluster?.startsWith(prefix) || !launched) return undefined;
  if (!(LIVE_STATES as readonly string[]).includes(state)) return undefined;
  const tag = instance.Tags?.find((t) => t.Key === LIFETIME_TAG)?.Value;
  const own = tag === undefined ? undefined : parseLifetimeTag(tag);
  if (tag !== undefined && own === undefined) {
    warn(
      `cluster ${cluster}: its ${LIFETIME_TAG} tag ${JSON.stringify(tag)} is not a positive ` +
        `number of minutes, so its instances get the fixed limit of ${olderThanMinutes} ` +
        `minutes (max-age-minutes)`,
    );
  }
  const limitMinutes = own === undefined ? olderThanMinutes : own + LIFETIME_MARGIN_MINUTES;
  const ageMs = now.getTime() - launched.getTime();
  if (ageMs < limitMinutes * 60_000) return undefined;
  return {
    id: instance.InstanceId,
    cluster,
    type: instance.InstanceType ?? "",
    state,
    launched,
    ageMinutes: Math.floor(ageMs / 60_000),
    limitMinutes,
    ...(own !== undefined && { ownLifetimeMinutes: own }),
  };
}

export interface TerminateResult {
  /** Ids EC2 answered for (now shutting-down or terminated). */
  terminated: string[];
  /** Batches EC2 refused, with its message. */
  failed: { ids: string[]; message: string }[];
}

/** TerminateInstances in batches; a refused batch does not stop the others. */
export async function terminate(
  ec2: EC2Client,
  ids: readonly string[],
  batchSize = 100,
): Promise<TerminateResult> {
  const result: TerminateResult = { terminated: [], failed: [] };
  for (let i = 0; i < ids.length; i += batchSize) {
    const batch = ids.slice(i, i + batchSize);
    try {
      const out = await ec2.send(new TerminateInstancesCommand({ InstanceIds: batch }));
      for (const change of out.TerminatingInstances ?? []) {
        if (change.InstanceId) result.terminated.push(change.InstanceId);
      }
    } catch (error) {
      const e = error as Error;
      result.failed.push({ ids: batch, message: `${e.name}: ${e.message}` });
    }
  }
  return result;
}

/** `5d 3h`, `7h 12m`, `4m`. */
export function formatAge(minutes: number): string {
  const d = Math.floor(minutes / 1440);
  const h = Math.floor((minutes % 1440) / 60);
  const m = minutes % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return `${m}m`;
}

// ---------------------------------------------------------------------------------------------
// Key pairs and security groups a run's teardown left

/** States in which an instance may still use its security group. */
const NOT_TERMINATED = [...LIVE_STATES, "shutting-down"];

export interface LeftoverKeyPair {
  /** The key pair's name: its cluster's name (aws/ray-names.ts keyPairNameFor). */
  name: string;
  created: Date;
  ageMinutes: number;
}

export interface LeftoverSecurityGroup {
  id: string;
  name: string;
  cluster: string;
}

export interface LeftoverResources {
  keyPairs: LeftoverKeyPair[];
  securityGroups: LeftoverSecurityGroup[];
}

/**
 * The key pairs of this pipeline's runs (`<prefix>...`) created at least the threshold ago whose
 * cluster has no instance left but terminated ones: the head's autoscaler launches workers with
 * the key pair for as long as the cluster lives, which may be longer than the threshold (its own
 * lifetime, lifetime.ts). The security groups Ray created for its clusters (`ray-autoscaler-<cluster>`,
 * tagged with the cluster name) when nothing of the cluster remains: no instance in any state but
 * terminated, and no key pair younger than the threshold (a run imports its key pair before `ray
 * up` creates the group, so a young key pair means a launch may be under way).
 */
export async function findLeftoverResources(
  ec2: EC2Client,
  options: FindOptions,
): Promise<LeftoverResources> {
  checkPrefix(options.prefix);
  const now = options.now ?? new Date();
  const threshold = options.olderThanMinutes * 60_000;

  const keyPairs: LeftoverKeyPair[] = [];
  const young = new Set<string>();
  const pairs = await ec2.send(
    new DescribeKeyPairsCommand({
      Filters: [{ Name: "key-name", Values: [`${options.prefix}*`] }],
    }),
  );
  for (const pair of pairs.KeyPairs ?? []) {
    const { KeyName: name, CreateTime: created } = pair;
    if (!name?.startsWith(options.prefix) || !created) continue;
    const ageMs = now.getTime() - created.getTime();
    if (ageMs < threshold) young.add(name);
    else keyPairs.push({ name, created, ageMinutes: Math.floor(ageMs / 60_000) });
  }

  const busy = new Set<string>();
  const instances = paginateDescribeInstances(
    { client: ec2, pageSize: options.pageSize ?? 1000 },
    {
      Filters: [
        { Name: `tag:${RAY_CLUSTER_TAG}`, Values: [`${options.prefix}*`] },
        { Name: "instance-state-name", Values: NOT_TERMINATED },
      ],
    },
  );
  for await (const page of instances) {
    for (const reservation of page.Reservations ?? []) {
      for (const instance of reservation.Instances ?? []) {
        const cluster = instance.Tags?.find((t) => t.Key === RAY_CLUSTER_TAG)?.Value;
        if (cluster && NOT_TERMINATED.includes(instance.State?.Name ?? "")) busy.add(cluster);
      }
    }
  }

  const securityGroups: LeftoverSecurityGroup[] = [];
  const groups = paginateDescribeSecurityGroups(
    { client: ec2, pageSize: options.pageSize ?? 1000 },
    {
      Filters: [
        { Name: "group-name", Values: [`${RAY_SECURITY_GROUP_PREFIX}${options.prefix}*`] },
        { Name: `tag:${RAY_CLUSTER_TAG}`, Values: [`${options.prefix}*`] },
      ],
    },
  );
  for await (const page of groups) {
    for (const group of page.SecurityGroups ?? []) {
      const cluster = group.Tags?.find((t) => t.Key === RAY_CLUSTER_TAG)?.Value;
      if (!group.GroupId || !cluster?.startsWith(options.prefix)) continue;
      if (group.GroupName !== securityGroupNameFor(cluster)) continue;
      if (busy.has(cluster) || young.has(cluster)) continue;
      securityGroups.push({ id: group.GroupId, name: group.GroupName, cluster });
    }
  }
  const unused = keyPairs.filter((pair) => !busy.has(pair.name));
  unused.sort((a, b) => a.created.getTime() - b.created.getTime() || cmp(a.name, b.name));
  securityGroups.sort((a, b) => cmp(a.cluster, b.cluster) || cmp(a.id, b.id));
  return { keyPairs: unused, securityGroups };
}

export type Removal = "deleted" | "in use" | `not deleted (${string})`;

/**
 * Deletes what findLeftoverResources found: every key pair, and every security group EC2 lets go
 * (one still attached to a terminating instance is `in use`: the next sweep gets it).
 */
export async function deleteLeftoverResources(
  ec2: EC2Client,
  found: LeftoverResources,
): Promise<Map<string, Removal>> {
  const result = new Map<string, Removal>();
  for (const pair of found.keyPairs) {
    await deleteKeyPair(ec2, pair.name).then(
      () => result.set(pair.name, "deleted"),
      (error: Error) => result.set(pair.name, `not deleted (${error.message})`),
    );
  }
  for (const group of found.securityGroups) {
    await deleteSecurityGroup(ec2, group.id).then(
      () => result.set(group.id, "deleted"),
      (error: Error) =>
        result.set(
          group.id,
          error.message.includes("DependencyViolation")
            ? "in use"
            : `not deleted (${error.message})`,
        ),
    );
  }
  return result;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
