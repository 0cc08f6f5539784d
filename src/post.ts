/**
 * The action's post step (post-if: always()): tear down any cluster the main step's state says
 * may be up. Fresh OIDC credentials first: those of the main step may have expired hours ago.
 * Idempotent; its own failures become warnings with the command to run by hand.
 */
import * as core from "@actions/core";
import { assumeRoleWithOidc, exportCredentials } from "./aws/oidc.js";
import { rayStep, STATE } from "./targets/aws.js";

async function post(): Promise<void> {
  const yaml = core.getState(STATE.clusterYaml);
  const name = core.getState(STATE.clusterName);
  if (!yaml || core.getState(STATE.clusterUp) !== "true") {
    core.info("No cluster to tear down.");
    return;
  }
  if (core.getState(STATE.keepCluster) === "true") {
    core.notice(`keep-cluster: ${name} was left running. Stop it with: ray down -y ${yaml}`);
    return;
  }
  try {
    const region = core.getState(STATE.region);
    const creds = await assumeRoleWithOidc({
      roleArn: core.getState(STATE.roleArn),
      region,
      durationSeconds: Number(core.getState(STATE.durationSeconds)) || 3600,
      sessionName: `mcs-teardown-${name}`.slice(0, 64),
    });
    exportCredentials(creds, region);
    await rayStep(core.getState(STATE.ray), `ray down ${name}`, ["down", "-y", yaml]);
    core.info(`Cluster ${name} is torn down.`);
  } catch (error) {
    core.warning(
      `Could not tear down cluster ${name}: ${(error as Error).message}. ` +
        `Do it by hand: \`ray down -y autoscaler/<module>.yaml\` with cluster_name: ${name}, ` +
        `or terminate the EC2 instances tagged ray-cluster-name=${name}.`,
      { title: "Cluster may still be running" },
    );
  }
}

void post();
