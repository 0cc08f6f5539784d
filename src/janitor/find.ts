/**
 * Leftover clusters (DESIGN.md §5): `ray down` may never run (a cancelled `ray up`, a runner
 * that died, a kept cluster nobody took down). Ray's AWS launcher tags every instance it starts
 * with the cluster name, and ours are all `mcs-<module>-<run id>` (cluster.ts), so the janitor
 * finds them by that tag and that prefix, and only when they are older than any job could be.
 */
import {
  paginateDescribeInstances,
  TerminateInstancesCommand,
  type EC2Client,
  type Instance,
} from "@aws-sdk/client-ec2";
import { InputError } from "../errors.js";

/** Ray's tag for the cluster name (ray/autoscaler/tags.py, TAG_RAY_CLUSTER_NAME). */
export const RAY_CLUSTER_TAG = "ray-cluster-name";

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
}

export interface FindOptions {
  /** Cluster-name prefix: must start with `mcs-` (see checkPrefix). */
  prefix: string;
  /** Only instances launched at least this many minutes before `now`. */
  olderThanMinutes: number;
  now?: Date;
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

/** Instances of clusters named `<prefix>...` in a live state, launched ≥ the threshold ago. */
export async function findLeftovers(ec2: EC2Client, options: FindOptions): Promise<Leftover[]> {
  checkPrefix(options.prefix);
  if (!Number.isFinite(options.olderThanMinutes) || options.olderThanMinutes < 0) {
    throw new Error(`olderThanMinutes must be a number ≥ 0, not ${options.olderThanMinutes}`);
  }
  const now = options.now ?? new Date();
  const found: Leftover[] = [];
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
        const leftover = judge(instance, options.prefix, options.olderThanMinutes, now);
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
): Leftover | undefined {
  const cluster = instance.Tags?.find((t) => t.Key === RAY_CLUSTER_TAG)?.Value;
  const state = instance.State?.Name ?? "";
  const launched = instance.LaunchTime;
  if (!instance.InstanceId || !cluster?.startsWith(prefix) || !launched) return undefined;
  if (!(LIVE_STATES as readonly string[]).includes(state)) return undefined;
  const ageMs = now.getTime() - launched.getTime();
  if (ageMs < olderThanMinutes * 60_000) return undefined;
  return {
    id: instance.InstanceId,
    cluster,
    type: instance.InstanceType ?? "",
    state,
    launched,
    ageMinutes: Math.floor(ageMs / 60_000),
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

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
