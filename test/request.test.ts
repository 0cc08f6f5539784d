import { describe, expect, it } from "vitest";
import { parseOverrides, parseRequest, type RawRequest } from "../src/request.js";
import { expectInputError } from "./support/workspace.js";

const parse = (raw: RawRequest) => parseRequest({ module: "demo", ...raw }, "local");

describe("parseRequest", () => {
  it("fills every default from a module name alone", () => {
    expect(parseRequest({ module: "demo" }, "local")).toEqual({
      module: "demo",
      scenes: "scenes/subset",
      metadata: "level2",
      target: "local",
      retries: 2,
      sceneTimeoutMinutes: undefined,
      overrides: {},
      resume: false,
      dryRun: false,
      outDir: ".mcs-local",
      numCpus: undefined,
    });
  });

  it("treats empty and blank inputs (as action inputs arrive) as not given", () => {
    const request = parseRequest(
      {
        module: "  demo ",
        scenes: " ",
        metadata: "",
        retries: "",
        sceneTimeoutMinutes: "  ",
        overrides: "",
        resume: "",
        dryRun: "",
        outDir: "",
        numCpus: " ",
      },
      "aws",
    );
    expect(request).toEqual({
      ...parseRequest({ module: "demo" }, "aws"),
      target: "aws",
    });
    expect(request.module).toBe("demo");
  });

  it("takes every input when given", () => {
    expect(
      parseRequest(
        {
          module: "team_x-2",
          scenes: "scenes/full",
          metadata: "oracle",
          retries: "0",
          sceneTimeoutMinutes: "1.5",
          overrides: "s3_folder=eval-test\n# comment\n\nteam = x",
          resume: "TRUE",
          dryRun: "true",
          outDir: "/tmp/out",
          numCpus: "4",
        },
        "aws",
      ),
    ).toEqual({
      module: "team_x-2",
      scenes: "scenes/full",
      metadata: "oracle",
      target: "aws",
      retries: 0,
      sceneTimeoutMinutes: 1.5,
      overrides: { s3_folder: "eval-test", team: "x" },
      resume: true,
      dryRun: true,
      outDir: "/tmp/out",
      numCpus: 4,
    });
  });

  it.each(["level1", "level2", "oracle"])("accepts metadata %s", (level) => {
    expect(parse({ metadata: level }).metadata).toBe(level);
  });

  it("accepts up to 1000 retries", () => {
    expect(parse({ retries: "1000" }).retries).toBe(1000);
  });

  describe("invalid inputs throw an InputError naming the input and the fix", () => {
    it("a missing module", () => {
      expectInputError(() => parseRequest({}, "local"), "module", /is required \(e\.g\. demo\)/);
      expectInputError(() => parse({ module: "   " }), "module", /is required/);
    });

    it.each(["../demo", "demo;rm -rf x", "demo/x", "-demo", "de mo", "$(id)", "démo", "_demo"])(
      "a module name with path or shell characters: %s",
      (module) => {
        const error = expectInputError(
          () => parse({ module }),
          "module",
          /is not a module name: use letters, digits, "-" and "_" only \(e\.g\. demo\)/,
        );
        expect(error.message).toContain(`"${module}"`);
      },
    );

    it.each(["level9", "Level2", "level 2", "all"])("metadata %s", (metadata) => {
      expectInputError(
        () => parse({ metadata }),
        "metadata",
        new RegExp(`^"${metadata}" is not a level: use level1, level2, oracle$`),
      );
    });

    it.each(["-1", "abc", "1.5", "2x", "1e3", "1001", "+1"])("retries %s", (retries) => {
      expectInputError(
        () => parse({ retries }),
        "retries",
        new RegExp(
          `^"${retries.replace("+", "\\+")}" is not a non-negative integer \\(e\\.g\\. 2\\)$`,
        ),
      );
    });

    it.each(["0", "-5", "abc", "Infinity", "NaN"])("scene timeout %s", (minutes) => {
      expectInputError(
        () => parse({ sceneTimeoutMinutes: minutes }),
        "scene-timeout-minutes",
        new RegExp(`^"${minutes}" is not a positive number of minutes \\(e\\.g\\. 60\\)$`),
      );
    });

    it.each(["yes", "1", "on"])("resume %s", (resume) => {
      expectInputError(
        () => parse({ resume }),
        "resume",
        new RegExp(`"${resume}" is not true or false`),
      );
    });

    it("dry-run that is not a boolean", () => {
      expectInputError(() => parse({ dryRun: "maybe" }), "dry-run", /"maybe" is not true or false/);
    });

    it.each(["x", "-2", "1.5"])("num-cpus %s", (numCpus) => {
      expectInputError(() => parse({ numCpus }), "num-cpus", /is not a non-negative integer/);
    });

    it("an override that is not key=value", () => {
      expectInputError(
        () => parse({ overrides: "s3_folder=ok\njust words" }),
        "mcs-config-overrides",
        /^"just words" is not a key=value line \(e\.g\. s3_folder=eval-test\)$/,
      );
    });
  });
});

describe("parseOverrides", () => {
  it("reads key=value lines, trimming around the key and the =", () => {
    expect(parseOverrides(" s3_folder = eval-test \r\nteam=x\n")).toEqual({
      s3_folder: "eval-test",
      team: "x",
    });
  });

  it("keeps = inside a value and lets a later line win", () => {
    expect(parseOverrides("a=b=c\na=d=e")).toEqual({ a: "d=e" });
  });

  it("lower-cases keys as configparser does, so S3_Folder= replaces s3_folder", () => {
    expect(parseOverrides("S3_Folder=eval-test\nS3_FOLDER+=-x")).toEqual({
      s3_folder: "eval-test",
      "s3_folder+": "-x",
    });
  });

  it("allows an empty value, blank lines and comments", () => {
    expect(parseOverrides("\n# not this=1\nlogs_to_s3=\n\n")).toEqual({ logs_to_s3: "" });
  });

  it.each(["=value", "bad key=1", "[MCS]"])("rejects %s", (line) => {
    expectInputError(() => parseOverrides(line), "mcs-config-overrides", /is not a key=value line/);
  });

  it.each([
    ["history_enabled=%(s3_bucket)s", "history_enabled"],
    ["s3_folder+=-100%", "s3_folder"],
    ["team = a%%b", "team"],
  ])(
    "rejects %s: configparser would interpolate it, and the config files refuse it too",
    (line, key) => {
      expectInputError(
        () => parseOverrides(`s3_folder=ok\n${line}`),
        "mcs-config-overrides",
        new RegExp(`^"${key}" has a %, which configparser on the node interpolates; remove it$`),
      );
    },
  );
});
