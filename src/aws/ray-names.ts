/**
 * The names Ray's AWS cluster launcher gives what it creates (Ray 2.x), and the names this
 * pipeline gives what it creates beside them: teardown and the janitor find both by them.
 */

/** Ray's tag for the cluster name on instances and on its security groups (tags.py). */
export const RAY_CLUSTER_TAG = "ray-cluster-name";

/** Ray's name for the security group it creates per cluster (config.py SECURITY_GROUP_TEMPLATE). */
export const RAY_SECURITY_GROUP_PREFIX = "ray-autoscaler-";

export function securityGroupNameFor(clusterName: string): string {
  return `${RAY_SECURITY_GROUP_PREFIX}${clusterName}`;
}

/** The run's own EC2 key pair (keypair.ts) is named after its cluster, which is unique per run. */
export function keyPairNameFor(clusterName: string): string {
  return clusterName;
}
