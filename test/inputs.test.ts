/**
 * The action's inputs (src/action/inputs.ts), read the way the runner hands them over
 * (INPUT_<NAME> variables, which `core.getInput` trims): each bad value of aws-region,
 * role-duration-seconds, ray-version, watchdog-idle-minutes and cluster-max-minutes is refused
 * with an InputError naming that input, before anything starts; good and empty (default) values
 * pass.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readInputs } from "../src/action/inputs.js";
import { expectInputError } from "./support/workspace.js";

const ROLE = "arn:aws:iam::123456789012:role/mcs-eval";
const inputVar = (name: string) => `INPUT_${name.replace(/ /g, "_").toUpperCase()}`;

let saved: NodeJS.ProcessEnv;

function clearInputs() {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith("INPUT_")) Reflect.deleteProperty(process.env, name);
  }
}

beforeEach(() => {
  saved = { ...process.env };
  clearInputs();
});

afterEach(() => {
  for (const name of Object.keys(process.env)) {
    if (!(name in saved)) Reflect.deleteProperty(process.env, name);
  }
  Object.assign(process.env, saved);
});

/** readInputs() with these inputs over module=demo and the role; "" is an input left empty. */
function read(inputs: Record<string, string> = {}) {
  clearInputs();
  const all: Record<string, string> = { module: "demo", "role-to-assume": ROLE, ...inputs };
  for (const [name, value] of Object.entries(all)) process.env[inputVar(name)] = value;
  return readInputs();
}

describe("readInputs: the defaults", () => {
  it("us-east-1, 3600 s, the pinned Ray, nothing kept", () => {
    const inputs = read();
    expect(inputs.aws).toEqual({
      roleArn: ROLE,
      region: "us-east-1",
      durationSeconds: 3600,
      keepCluster: false,
      watchdog: { idleMinutes: 15, maxMinutes: 390 },
    });
    expect(inputs.rayVersion).toBeUndefined();
    expect(inputs.allowFailures).toBe(false);
    expect(inputs.request).toMatchObject({ module: "demo", target: "aws", dryRun: false });
  });

  it("empty inputs (as the runner passes unset ones) are the defaults", () => {
    const inputs = read({
      "aws-region": "",
      "role-duration-seconds": "",
      "ray-version": "",
      "watchdog-idle-minutes": "",
      "cluster-max-minutes": "",
    });
    expect(inputs.aws.region).toBe("us-east-1");
    expect(inputs.aws.durationSeconds).toBe(3600);
    expect(inputs.aws.watchdog).toEqual({ idleMinutes: 15, maxMinutes: 390 });
    expect(inputs.rayVersion).toBeUndefined();
  });
});

describe("readInputs: watchdog-idle-minutes and cluster-max-minutes", () => {
  it.each([
    ["15", 15],
    ["0.25", 0.25],
    [".5", 0.5],
    ["2.", 2],
    ["720", 720],
  ])("take %j (fractions too: tests use seconds-long bounds)", (text, minutes) => {
    const both = read({ "watchdog-idle-minutes": text, "cluster-max-minutes": text });
    expect(both.aws.watchdog).toEqual({ idleMinutes: minutes, maxMinutes: minutes });
  });

  it.each(["0", "0.0", "-5", "1e3", "0x10", "15m", "1,5", "Infinity", "."])(
    "refuse %j, naming the input",
    (text) => {
      for (const name of ["watchdog-idle-minutes", "cluster-max-minutes"]) {
        expectInputError(
          () => read({ [name]: text }),
          name,
          /^".*" is not a positive number of minutes \(e\.g\. (15|390)\)$/,
        );
      }
    },
  );
});

describe("readInputs: aws-region", () => {
  it.each(["eu-central-1", "us-gov-west-1", "ap-southeast-2", "il-central-1", " us-west-2 "])(
    "takes %j",
    (region) => {
      expect(read({ "aws-region": region }).aws.region).toBe(region.trim());
    },
  );

  it.each([
    "us-east",
    "US-EAST-1",
    "us_east_1",
    "useast1",
    "us-east-1a",
    "us-east-1;rm",
    "1-east-1",
    "https://us-east-1",
  ])("refuses %j, naming aws-region", (region) => {
    expectInputError(
      () => read({ "aws-region": region }),
      "aws-region",
      new RegExp(
        `^"${region.replace(/[.;/]/g, "\\$&")}" is not a region \\(e\\.g\\. us-east-1\\)$`,
      ),
    );
  });
});

describe("readInputs: role-duration-seconds", () => {
  it.each([
    ["900", 900],
    ["3600", 3600],
    ["43200", 43200],
  ])("takes %j", (text, seconds) => {
    expect(read({ "role-duration-seconds": text }).aws.durationSeconds).toBe(seconds);
  });

  it.each(["899", "43201", "0", "-900", "3600.5", "900.0", "1h", "9e2", "0x384", "3,600"])(
    "refuses %j, naming role-duration-seconds and the range",
    (text) => {
      expectInputError(
        () => read({ "role-duration-seconds": text }),
        "role-duration-seconds",
        /is not a whole number of seconds from 900 to 43200$/,
      );
    },
  );
});

describe("readInputs: ray-version", () => {
  it.each(["2.60.0", "2.9.3", "3.0.10"])("takes %j", (version) => {
    expect(read({ "ray-version": version }).rayVersion).toBe(version);
  });

  it.each(["2.60", "latest", "v2.60.0", "2.60.0rc1", "2.60.0.1", "==2.60.0", "2.60.x"])(
    "refuses %j, naming ray-version",
    (version) => {
      expectInputError(
        () => read({ "ray-version": version }),
        "ray-version",
        /is not a Ray version \(e\.g\. 2\.60\.0\)$/,
      );
    },
  );
});

describe("readInputs: the rest", () => {
  it("role-to-assume is required unless dry-run, and must be a role ARN", () => {
    expectInputError(() => read({ "role-to-assume": "" }), "role-to-assume", /is required/);
    expectInputError(
      () => read({ "role-to-assume": "arn:aws:iam::123:user/x" }),
      "role-to-assume",
      /is not an IAM role ARN/,
    );
    expect(read({ "role-to-assume": "", "dry-run": "true" }).request.dryRun).toBe(true);
  });

  it("results-bucket replaces s3_bucket (an s3_bucket override still wins); a bad name is refused", () => {
    expect(read({ "results-bucket": "my-mcs-results" }).request.overrides).toEqual({
      s3_bucket: "my-mcs-results",
    });
    const both = read({
      "results-bucket": "my-mcs-results",
      "mcs-config-overrides": "s3_bucket=elsewhere\ns3_folder+=-test",
    });
    expect(both.request.overrides).toEqual({ s3_bucket: "elsewhere", "s3_folder+": "-test" });
    expect(read().request.overrides).toEqual({});
    expectInputError(
      () => read({ "results-bucket": "s3://my-mcs-results" }),
      "results-bucket",
      /^"s3:\/\/my-mcs-results" is not an S3 bucket name/,
    );
  });

  it("mcs-config-overrides refuses a value with %, naming the input and the key", () => {
    expectInputError(
      () => read({ "mcs-config-overrides": "s3_folder+=-test\nhistory_enabled=%(s3_bucket)s" }),
      "mcs-config-overrides",
      /^"history_enabled" has a %, which configparser on the node interpolates; remove it$/,
    );
  });

  it("keep-cluster and allow-failures take true or false only", () => {
    expect(read({ "keep-cluster": "true" }).aws.keepCluster).toBe(true);
    expect(read({ "allow-failures": "TRUE" }).allowFailures).toBe(true);
    expectInputError(() => read({ "keep-cluster": "yes" }), "keep-cluster", /is not true or false/);
    expectInputError(
      () => read({ "allow-failures": "1" }),
      "allow-failures",
      /is not true or false/,
    );
  });
});

describe("readInputs: follow-minutes and collect-run-id", () => {
  it("follow-minutes: empty follows to the end; a positive number of minutes, fractions allowed", () => {
    expect(read().aws.followMinutes).toBeUndefined();
    expect(read({ "follow-minutes": "" }).aws.followMinutes).toBeUndefined();
    expect(read({ "follow-minutes": "330" }).aws.followMinutes).toBe(330);
    expect(read({ "follow-minutes": "0.25" }).aws.followMinutes).toBe(0.25);
    for (const bad of ["0", "-5", "1h", "9e2", "soon"]) {
      expectInputError(
        () => read({ "follow-minutes": bad }),
        "follow-minutes",
        new RegExp(`^"${bad}" is not a positive number of minutes \\(e\\.g\\. 330\\)$`),
      );
    }
  });

  it("collect-run-id: empty runs; a run id or `latest` collects; anything else is refused", () => {
    expect(read().collectRunId).toBeUndefined();
    expect(read({ "collect-run-id": "18170960955-1-eval-51725241954" }).collectRunId).toBe(
      "18170960955-1-eval-51725241954",
    );
    expect(read({ "collect-run-id": "latest" }).collectRunId).toBe("latest");
    for (const bad of ["../x", "a b", "run/1", "-x"]) {
      expectInputError(
        () => read({ "collect-run-id": bad }),
        "collect-run-id",
        /is not a run id \(the run-id output of the launching step\) nor "latest"$/,
      );
    }
    expectInputError(
      () => read({ "collect-run-id": "latest", "dry-run": "true" }),
      "collect-run-id",
      /cannot be combined with dry-run/,
    );
  });
});
