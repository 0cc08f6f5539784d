/**
 * The action's post step (post-if: always()): tear down any cluster the main step's state says
 * may be up. Fresh OIDC credentials first: those of the main step may have expired hours ago.
 * A driver the main step did not see end (a cancel, a crash) is stopped first, so its summary is
 * saved as interrupted. A run handed over (follow-minutes) is left running, to the head's
 * watchdog. Idempotent; its own failures become warnings with the command to run by hand.
 */
import * as core from "@actions/core";
import { roleCredentials, type CredentialServer } from "./aws/oidc.js";
import { stopDriver } from "./ray/detached.js";
import { rayStep, STATE } from "./targets/aws.js";
import { leftByHand, removeRunResources } from "./targets/aws-resources.js";

async function post(): Promise<void> {
  const yaml = core.getState(STATE.clusterYaml);
  const name = core.getState(STATE.clusterName);
  const up = Boolean(yaml) && core.getState(STATE.clusterUp) === "true";
  // The run's key pair and Ray's security group, when the main step's teardown left them.
  const resources = core.getState(STATE.runResources) === "created";
  if (!up && !resources) {
    core.info("No cluster to tear down.");
    return;
  }
  // follow-minutes: the run goes on; the head's watchdog tears the cluster down after it.
  if (core.getState(STATE.driver) === "handed-over") {
    core.info(
      `The run on cluster ${name} was handed over to the head's watchdog: its driver runs on, ` +
        "and the watchdog tears the cluster down once it has finished. Nothing to tear down here.",
    );
    return;
  }
  if (core.getState(STATE.keepCluster) === "true") {
    core.notice(
      `keep-cluster: ${name} was left running. Stop it with: ray down -y ${yaml}` +
        (resources ? `; then ${leftByHand(name)}` : ""),
    );
    return;
  }
  let credentials: CredentialServer | undefined;
  try {
    credentials = await roleCredentials({
      roleArn: core.getState(STATE.roleArn),
      region: core.getState(STATE.region),
      durationSeconds: Number(core.getState(STATE.durationSeconds)) || 3600,
      sessionName: `mcs-teardown-${name}`.slice(0, 64),
    });
    const ray = core.getState(STATE.ray);
    if (up && core.getState(STATE.driver) === "started") {
      core.startGroup("Stopping the driver on the head node");
      const said = await stopDriver(ray, yaml, core.getState(STATE.remotePlan), (line) =>
        core.info(line),
      ).finally(() => core.endGroup());
      core.info(`The driver: ${said ?? "no answer from the head node"}.`);
    }
    if (up) {
      await rayStep(ray, `ray down ${name}`, ["down", "-y", yaml]);
      core.info(`Cluster ${name} is torn down.`);
    }
    if (resources) await removeRunResources(name, core.getState(STATE.region), credentials);
  } catch (error) {
    core.warning(
      `Could not tear down cluster ${name}: ${(error as Error).message}. ` +
        `Do it by hand: \`ray down -y autoscaler/<module>.yaml\` with cluster_name: ${name}, ` +
        `or terminate the EC2 instances tagged ray-cluster-name=${name}` +
        (resources ? `; then ${leftByHand(name)}.` : "."),
      { title: "Cluster may still be running" },
    );
  } finally {
    await credentials?.close();
  }
}

void post();
