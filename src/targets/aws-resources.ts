/**
 * What the AWS target creates in EC2 for a run besides the instances Ray manages, and its removal:
 * the run's own SSH key, imported as an EC2 key pair named after the cluster before `ray up`, and
 * after `ray down` that key pair and the security group Ray created for the cluster. The main
 * step (aws.ts) and the post step (post.ts) call these; the janitor sweeps what both missed.
 */
import { rmSync } from "node:fs";
import path from "node:path";
import * as core from "@actions/core";
import { EC2Client } from "@aws-sdk/client-ec2";
import { importKeyPair, keyPairNameFor, runKeyFile, writeRunKey } from "../aws/keypair.js";
import type { CredentialServer } from "../aws/oidc.js";
import { deleteRunResources, securityGroupNameFor, type Cleanup } from "../aws/run-resources.js";
import type { RunSshKey } from "../cluster.js";
import { EnvironmentError } from "../errors.js";
import type { Plan } from "../plan.js";

/**
 * The run's key: a file beside the work directory (`RUNNER_TEMP/mcs-pipeline-ssh/`), never in it:
 * the plan is synced to the head, and eval.yml uploads the work directory as an artifact.
 */
export function runSshKey(workDir: string, plan: Plan): RunSshKey {
  const cluster = plan.cluster_name!;
  const keyDir = path.join(path.dirname(workDir), `${path.basename(workDir)}-ssh`);
  return { privateKeyFile: runKeyFile(keyDir, cluster), keyPairName: keyPairNameFor(cluster) };
}

/** Generates the run's key (0600, never logged) and imports its public half into EC2. */
export async function createRunKeyPair(
  key: RunSshKey,
  clusterName: string,
  region: string,
  credentials: CredentialServer,
): Promise<void> {
  const publicKey = writeRunKey(key.privateKeyFile, clusterName);
  const ec2 = new EC2Client({ region, credentials: credentials.provider });
  try {
    await importKeyPair(ec2, key.keyPairName, publicKey, clusterName);
  } catch (error) {
    throw new EnvironmentError(
      `could not create the run's EC2 key pair ${key.keyPairName}: ${(error as Error).message}`,
    );
  } finally {
    ec2.destroy();
  }
  core.info(`The run's SSH key is EC2 key pair ${key.keyPairName}`);
}

/**
 * After `ray down`: the run's key pair and Ray's security group of the cluster, deleted; then the
 * private key file, when given (the runner empties RUNNER_TEMP after the job anyway).
 */
export async function removeRunResources(
  clusterName: string,
  region: string,
  credentials: CredentialServer,
  keyFile?: string,
): Promise<Cleanup> {
  const ec2 = new EC2Client({ region, credentials: credentials.provider });
  try {
    const done = await deleteRunResources(ec2, clusterName, { log: (line) => core.info(line) });
    if (keyFile) rmSync(keyFile, { force: true });
    return done;
  } finally {
    ec2.destroy();
  }
}

/** What to delete by hand when teardown could not. */
export function leftByHand(clusterName: string): string {
  return (
    `delete EC2 key pair ${keyPairNameFor(clusterName)} and security group ` +
    `${securityGroupNameFor(clusterName)} once the instances are terminated`
  );
}
