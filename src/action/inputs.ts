/** The action's inputs, read once and validated before anything starts. */
import * as core from "@actions/core";
import { WATCHDOG_DEFAULTS } from "../cluster.js";
import { InputError } from "../errors.js";
import { parseRequest, type Request } from "../request.js";
import type { AwsSettings } from "../targets/aws.js";

export interface ActionInputs {
  request: Request;
  aws: Omit<AwsSettings, "workDir">;
  allowFailures: boolean;
  /** Empty: the pinned version. */
  rayVersion: string | undefined;
  /** `collect` mode: publish this run's report from the store (`latest`: the latest run). */
  collectRunId: string | undefined;
}

/** A run id as jobRunId or newRunId makes them (letters, digits, dashes), or `latest`. */
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

const ROLE_ARN = /^arn:aws[\w-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;

export function readInputs(): ActionInputs {
  const input = (name: string) => core.getInput(name);
  const bucket = input("results-bucket");
  if (bucket && !BUCKET.test(bucket)) {
    throw new InputError(
      "results-bucket",
      `"${bucket}" is not an S3 bucket name (e.g. my-mcs-results)`,
    );
  }
  const request = parseRequest(
    {
      module: input("module"),
      scenes: input("scenes"),
      metadata: input("metadata"),
      retries: input("retries"),
      sceneTimeoutMinutes: input("scene-timeout-minutes"),
      // The setup stack's bucket first: an s3_bucket line of the overrides still wins.
      overrides: [bucket && `s3_bucket=${bucket}`, input("mcs-config-overrides")]
        .filter(Boolean)
        .join("\n"),
      resume: input("resume"),
      dryRun: input("dry-run"),
      deadlineMinutes: input("deadline-minutes"),
      budgetUsd: input("budget-usd"),
    },
    "aws",
  );
  const roleArn = input("role-to-assume");
  if (!request.dryRun && !ROLE_ARN.test(roleArn)) {
    throw new InputError(
      "role-to-assume",
      roleArn
        ? `"${roleArn}" is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)`
        : "is required: the ARN of the IAM role the workflow assumes through OIDC",
    );
  }
  const region = input("aws-region") || "us-east-1";
  if (!REGION.test(region))
    throw new InputError("aws-region", `"${region}" is not a region (e.g. us-east-1)`);
  // Digits only: Number() would also take "9e2", "0x384" or "900.0".
  const durationText = input("role-duration-seconds") || "3600";
  const duration = Number(durationText);
  if (!/^\d+$/.test(durationText) || duration < 900 || duration > 43200) {
    throw new InputError(
      "role-duration-seconds",
      `"${durationText}" is not a whole number of seconds from 900 to 43200`,
    );
  }
  const watchdog = {
    idleMinutes: minutes("watchdog-idle-minutes", WATCHDOG_DEFAULTS.idleMinutes),
    maxMinutes: minutes("cluster-max-minutes", WATCHDOG_DEFAULTS.maxMinutes),
  };
  const followText = input("follow-minutes");
  const followMinutes = followText ? minutes("follow-minutes", 330) : undefined;
  const collectRunId = input("collect-run-id") || undefined;
  if (collectRunId && !RUN_ID.test(collectRunId)) {
    throw new InputError(
      "collect-run-id",
      `"${collectRunId}" is not a run id (the run-id output of the launching step) nor "latest"`,
    );
  }
  if (collectRunId && request.dryRun) {
    throw new InputError("collect-run-id", "collects a run: it cannot be combined with dry-run");
  }
  const rayVersion = input("ray-version") || undefined;
  if (rayVersion && !/^\d+\.\d+\.\d+$/.test(rayVersion)) {
    throw new InputError("ray-version", `"${rayVersion}" is not a Ray version (e.g. 2.60.0)`);
  }
  return {
    request,
    aws: {
      roleArn,
      region,
      durationSeconds: duration,
      keepCluster: flag("keep-cluster"),
      watchdog,
      followMinutes,
    },
    allowFailures: flag("allow-failures"),
    rayVersion,
    collectRunId,
  };
}

/** A positive number of minutes, fractions allowed (decimal digits only, like the seconds). */
function minutes(name: string, fallback: number): number {
  const text = core.getInput(name) || String(fallback);
  if (!/^(\d+\.?\d*|\.\d+)$/.test(text) || Number(text) <= 0) {
    throw new InputError(name, `"${text}" is not a positive number of minutes (e.g. ${fallback})`);
  }
  return Number(text);
}

function flag(name: string): boolean {
  const value = (core.getInput(name) || "false").toLowerCase();
  if (value !== "true" && value !== "false")
    throw new InputError(name, `"${value}" is not true or false`);
  return value === "true";
}
