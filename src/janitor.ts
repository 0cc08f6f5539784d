/**
 * The janitor action (janitor/action.yml): finds EC2 instances of this pipeline's Ray clusters
 * that outlived their cluster's own lifetime (janitor/lifetime.ts) and terminates them (dry-run:
 * lists only), then says what it did in the job summary. Run hourly by
 * .github/workflows/janitor.yml.
 */
import * as core from "@actions/core";
import { EC2Client } from "@aws-sdk/client-ec2";
import { assumeRoleWithOidc, exportCredentials } from "./aws/oidc.js";
import { InputError } from "./errors.js";
import {
  checkPrefix,
  deleteLeftoverResources,
  findLeftoverResources,
  findLeftovers,
  formatAge,
  PIPELINE_PREFIX,
  RAY_CLUSTER_TAG,
  terminate,
  type Leftover,
  type LeftoverResources,
  type Removal,
} from "./janitor/find.js";
import { LIFETIME_MARGIN_MINUTES, LIFETIME_TAG } from "./janitor/lifetime.js";

/**
 * The fixed limit, for instances without their cluster's own lifetime (the `mcs-max-minutes`
 * tag, janitor/lifetime.ts). The eval job runs with `timeout-minutes: 360` (the README's smallest
 * workflow); when that expires GitHub cancels it and the post step still runs `ray down`. An instance of ours launched more than an
 * hour past that cannot belong to a job that is still running, or still tearing down.
 */
const DEFAULT_MAX_AGE_MINUTES = 420;
/** A step summary over 1 MiB is dropped whole: list this many rows, the rest are in the log. */
const MAX_ROWS = 500;

const ROLE_ARN = /^arn:aws[\w-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;

interface JanitorInputs {
  roleArn: string;
  region: string;
  maxAgeMinutes: number;
  prefix: string;
  dryRun: boolean;
}

/** Every input checked before anything reaches GitHub or AWS. */
function readInputs(): JanitorInputs {
  const roleArn = core.getInput("role-to-assume");
  if (!ROLE_ARN.test(roleArn)) {
    throw new InputError(
      "role-to-assume",
      roleArn
        ? `"${roleArn}" is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)`
        : "is required: the ARN of the IAM role the workflow assumes through OIDC",
    );
  }
  const region = core.getInput("aws-region") || "us-east-1";
  if (!REGION.test(region)) {
    throw new InputError("aws-region", `"${region}" is not a region (e.g. us-east-1)`);
  }
  const age = core.getInput("max-age-minutes") || String(DEFAULT_MAX_AGE_MINUTES);
  const maxAgeMinutes = Number(age);
  if (!/^\d+$/.test(age) || !Number.isSafeInteger(maxAgeMinutes)) {
    throw new InputError("max-age-minutes", `"${age}" is not a whole number of minutes (≥ 0)`);
  }
  // Read raw (the runner keeps the hyphen in INPUT_CLUSTER-PREFIX): an empty prefix must be
  // refused, not replaced by the default. Unset (outside a runner): the default.
  const prefix = process.env["INPUT_CLUSTER-PREFIX"]?.trim() ?? PIPELINE_PREFIX;
  checkPrefix(prefix);
  const dry = (core.getInput("dry-run") || "false").toLowerCase();
  if (dry !== "true" && dry !== "false") {
    throw new InputError("dry-run", `"${dry}" is not true or false`);
  }
  return { roleArn, region, maxAgeMinutes, prefix, dryRun: dry === "true" };
}

async function main(): Promise<void> {
  const inputs = readInputs();
  const { GITHUB_RUN_ID: runId, GITHUB_RUN_ATTEMPT: attempt } = process.env;
  const credentials = await assumeRoleWithOidc({
    roleArn: inputs.roleArn,
    region: inputs.region,
    durationSeconds: 900,
    sessionName: runId ? `mcs-janitor-${runId}-${attempt ?? "1"}` : "mcs-janitor",
  });
  exportCredentials(credentials, inputs.region);
  const ec2 = new EC2Client({ region: inputs.region, credentials });

  const now = new Date();
  const found = await findLeftovers(ec2, {
    prefix: inputs.prefix,
    olderThanMinutes: inputs.maxAgeMinutes,
    now,
    warn: (message) => core.warning(message),
  });
  // Before any terminate: the clusters terminated now keep their security group until next time.
  const resources = await findLeftoverResources(ec2, {
    prefix: inputs.prefix,
    olderThanMinutes: inputs.maxAgeMinutes,
    now,
  });
  const criteria =
    `tag ${RAY_CLUSTER_TAG}=${inputs.prefix}*, launched at least their cluster's own lifetime ` +
    `(tag ${LIFETIME_TAG}) plus ${LIFETIME_MARGIN_MINUTES} minutes ago, or without that tag ` +
    `${inputs.maxAgeMinutes} minutes ago, in ${inputs.region}`;
  core.info(`${found.length} leftover instance(s): ${criteria}`);

  const ids = found.map((f) => f.id);
  let actions = new Map<string, string>(ids.map((id) => [id, "would terminate"]));
  let failure: string | undefined;
  if (!inputs.dryRun && ids.length > 0) {
    const result = await terminate(ec2, ids);
    const done = new Set(result.terminated);
    actions = new Map(ids.map((id) => [id, done.has(id) ? "terminated" : "not terminated"]));
    for (const batch of result.failed) {
      for (const id of batch.ids) actions.set(id, `not terminated (${batch.message})`);
    }
    const left = ids.length - done.size;
    if (left > 0) {
      failure = `could not terminate ${left} of ${ids.length} instances: ${
        result.failed[0]?.message ?? "EC2 did not report them as terminating"
      }`;
    }
  }
  const removals = inputs.dryRun
    ? new Map<string, Removal | "would delete">(
        [
          ...resources.keyPairs.map((k) => k.name),
          ...resources.securityGroups.map((g) => g.id),
        ].map((id) => [id, "would delete"]),
      )
    : await deleteLeftoverResources(ec2, resources);
  for (const pair of resources.keyPairs) {
    core.info(
      `key pair ${pair.name} (${formatAge(pair.ageMinutes)} old): ${removals.get(pair.name)}`,
    );
  }
  for (const group of resources.securityGroups) {
    core.info(`security group ${group.name} ${group.id}: ${removals.get(group.id)}`);
  }
  const notDeleted = [...removals].filter(([, r]) => r.startsWith("not deleted"));
  if (notDeleted.length > 0 && !failure) {
    failure = `could not delete ${notDeleted.map(([id, r]) => `${id}: ${r}`).join("; ")}`;
  }
  for (const f of found) {
    core.info(
      `${f.id} ${f.cluster} ${f.type} ${f.state} launched ${f.launched.toISOString()} ` +
        `(${formatAge(f.ageMinutes)} ago, limit ${limit(f)}): ${actions.get(f.id)}`,
    );
  }

  const terminated = [...actions.values()].filter((a) => a === "terminated").length;
  core.setOutput("found", String(found.length));
  core.setOutput("terminated", String(terminated));
  core.setOutput("instances", JSON.stringify(ids));
  const removed = (id: string) => ["deleted", "would delete"].includes(removals.get(id) ?? "");
  const pairs = resources.keyPairs.map((k) => k.name).filter(removed);
  core.setOutput("key-pairs", JSON.stringify(pairs));
  core.setOutput(
    "security-groups",
    JSON.stringify(resources.securityGroups.map((g) => g.id).filter(removed)),
  );
  await writeSummary(found, actions, inputs, criteria, resources, removals);
  if (failure) throw new Error(failure);
}

async function writeSummary(
  found: readonly Leftover[],
  actions: ReadonlyMap<string, string>,
  inputs: JanitorInputs,
  criteria: string,
  resources: LeftoverResources,
  removals: ReadonlyMap<string, string>,
): Promise<void> {
  const summary = core.summary.addHeading(
    inputs.dryRun ? "MCS janitor (dry run: nothing terminated)" : "MCS janitor",
    2,
  );
  summary.addRaw(`<p>Looked for EC2 instances with ${escapeHtml(criteria)}.</p>`, true);
  if (found.length === 0) {
    summary.addRaw("<p>No leftover instances.</p>", true);
  } else {
    const header = ["Instance", "Cluster", "Type", "State", "Launched", "Age", "Limit", "Action"];
    summary.addTable([
      header.map((data) => ({ data, header: true })),
      ...found
        .slice(0, MAX_ROWS)
        .map((f) =>
          [
            f.id,
            f.cluster,
            f.type,
            f.state,
            f.launched.toISOString(),
            formatAge(f.ageMinutes),
            limit(f),
            actions.get(f.id) ?? "",
          ].map(escapeHtml),
        ),
    ]);
    if (found.length > MAX_ROWS) {
      summary.addRaw(`<p>… and ${found.length - MAX_ROWS} more: see the step's log.</p>`, true);
    }
  }
  const rows = [
    ...resources.keyPairs.map((k) => ["key pair", k.name, k.name, removals.get(k.name) ?? ""]),
    ...resources.securityGroups.map((g) => [
      "security group",
      `${g.name} (${g.id})`,
      g.cluster,
      removals.get(g.id) ?? "",
    ]),
  ];
  summary.addRaw(
    `<p>Runs' key pairs (${escapeHtml(inputs.prefix)}*, at least ${inputs.maxAgeMinutes} ` +
      `minutes old) and Ray's security groups, of clusters with no instance left: ` +
      `${rows.length === 0 ? "none." : `${rows.length}.`}</p>`,
    true,
  );
  if (rows.length > 0) {
    summary.addTable([
      ["Kind", "Name", "Cluster", "Action"].map((data) => ({ data, header: true })),
      ...rows.slice(0, MAX_ROWS).map((row) => row.map(escapeHtml)),
    ]);
  }
  await summary.write();
}

/** `10h 30m (600 + 30)` for a cluster's own lifetime plus the margin, `7h 0m` for the fixed limit. */
function limit(f: Leftover): string {
  const own = f.ownLifetimeMinutes;
  return `${formatAge(f.limitMinutes)}${own === undefined ? "" : ` (${own} + ${LIFETIME_MARGIN_MINUTES})`}`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

main().catch((error: unknown) => {
  if (error instanceof InputError) core.setFailed(`input ${error.input}: ${error.message}`);
  else core.setFailed(error instanceof Error ? error.message : String(error));
});
