import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseIni, stringifyIni, type Ini } from "../src/ini.js";
import { REPO } from "./support/workspace.js";

const entries = (ini: Ini) =>
  Object.fromEntries([...ini].map(([name, section]) => [name, Object.fromEntries(section)]));

describe("parseIni", () => {
  it("reads sections, both key/value spellings, comments and blank lines", () => {
    const text = [
      "; a comment",
      "# another comment",
      "",
      "[MCS]",
      "metadata = level2",
      "team=demo",
      "evaluation_name   =   demo-eval  ",
      "timeout: 600",
      "empty =",
      "url = https://example.com/a?b=c",
      "",
      "[other.section]",
      "a-b_c.d = 1",
    ].join("\n");
    expect(entries(parseIni(text, "x.ini"))).toEqual({
      MCS: {
        metadata: "level2",
        team: "demo",
        evaluation_name: "demo-eval",
        timeout: "600",
        empty: "",
        url: "https://example.com/a?b=c",
      },
      "other.section": { "a-b_c.d": "1" },
    });
  });

  it("keeps the order of sections and keys", () => {
    const ini = parseIni("[b]\nz = 1\na = 2\n[a]\nm = 3\n", "x.ini");
    expect([...ini.keys()]).toEqual(["b", "a"]);
    expect([...ini.get("b")!.keys()]).toEqual(["z", "a"]);
  });

  it("accepts CRLF line endings", () => {
    expect(entries(parseIni("[MCS]\r\nteam = demo\r\n", "x.ini"))).toEqual({
      MCS: { team: "demo" },
    });
  });

  it("an empty or comment-only file has no sections", () => {
    expect(parseIni("", "x.ini").size).toBe(0);
    expect(parseIni("; nothing\n\n# here\n", "x.ini").size).toBe(0);
  });

  it("reads every INI file of the demo module", () => {
    for (const file of [
      "demo_aws.ini",
      "mcs_config_demo_level1.ini",
      "mcs_config_demo_level2.ini",
      "mcs_config_demo_oracle.ini",
    ]) {
      const text = readFileSync(path.join(REPO, "configs", file), "utf8");
      const ini = parseIni(text, file);
      expect([...ini.keys()], file).toEqual(["MCS"]);
    }
    const exec = parseIni(readFileSync(path.join(REPO, "configs/demo_aws.ini"), "utf8"), "e");
    expect(exec.get("MCS")!.get("run_script")).toBe("ray_script.sh");
    const mcs = parseIni(
      readFileSync(path.join(REPO, "configs/mcs_config_demo_oracle.ini"), "utf8"),
      "m",
    );
    expect(mcs.get("MCS")!.get("metadata")).toBe("oracle");
  });

  describe("errors name the file and line", () => {
    it("a line that is neither key = value, a section nor a comment", () => {
      const text = "; comment\n[MCS]\nteam = demo\n\nthis line has no equals sign\n";
      expect(() => parseIni(text, "configs/demo_aws.ini")).toThrow(
        'configs/demo_aws.ini:5: expected "key = value", "[section]" or a comment',
      );
    });

    it("counts lines the same with CRLF endings", () => {
      expect(() => parseIni("[MCS]\r\na = 1\r\nbroken\r\n", "c.ini")).toThrow(/^c\.ini:3: /);
    });

    it("an unterminated section header", () => {
      expect(() => parseIni("[MCS\na = 1\n", "c.ini")).toThrow(/^c\.ini:1: expected "key = value"/);
    });

    it("a key with characters a key cannot have", () => {
      expect(() => parseIni("[MCS]\nbad key = 1\n", "c.ini")).toThrow(/^c\.ini:2: expected/);
      expect(() => parseIni("[MCS]\n= 1\n", "c.ini")).toThrow(/^c\.ini:2: expected/);
    });

    it("a key set twice in one section", () => {
      const text = "[MCS]\nteam = demo\ntimeout = 1\nteam = other\n";
      expect(() => parseIni(text, "m.ini")).toThrow('m.ini:4: "team" is set twice');
    });

    it("the same key in two sections is fine", () => {
      const ini = parseIni("[a]\nk = 1\n[b]\nk = 2\n", "m.ini");
      expect(entries(ini)).toEqual({ a: { k: "1" }, b: { k: "2" } });
    });

    it("a section that appears twice", () => {
      const text = "[MCS]\na = 1\n\n[MCS]\nb = 2\n";
      expect(() => parseIni(text, "m.ini")).toThrow("m.ini:4: section [MCS] appears twice");
    });

    it("a key before any section", () => {
      const text = "# header comment\nteam = demo\n[MCS]\n";
      expect(() => parseIni(text, "m.ini")).toThrow('m.ini:2: "team" comes before any [section]');
    });

    it("messages are one line", () => {
      try {
        parseIni("[MCS]\noops\n", "m.ini");
        expect.unreachable();
      } catch (error) {
        expect((error as Error).message).not.toContain("\n");
      }
    });
  });
});

describe("stringifyIni", () => {
  it("writes sections and key = value lines that parse back to the same thing", () => {
    const ini: Ini = new Map([
      [
        "MCS",
        new Map([
          ["metadata", "level2"],
          ["s3_folder", "demo-eval-test"],
          ["empty", ""],
        ]),
      ],
      ["extra", new Map([["k", "v = w"]])],
    ]);
    const text = stringifyIni(ini);
    expect(text).toBe(
      "[MCS]\nmetadata = level2\ns3_folder = demo-eval-test\nempty = \n\n[extra]\nk = v = w\n",
    );
    expect(entries(parseIni(text, "round-trip"))).toEqual(entries(ini));
  });

  it("round-trips the demo MCS config", () => {
    const file = path.join(REPO, "configs/mcs_config_demo_level2.ini");
    const ini = parseIni(readFileSync(file, "utf8"), file);
    expect(entries(parseIni(stringifyIni(ini), "copy"))).toEqual(entries(ini));
  });
});

/**
 * The same text through Python's configparser, read as the MCS config is read on the nodes
 * (ConfigParser(), read_file, then the values with interpolation): each section's entries, or the
 * name of the error configparser raises.
 */
const PYTHON = path.join(process.env.MCS_VENV ?? path.join(REPO, ".venv"), "bin", "python");
const CONFIGPARSER = `
import configparser, io, json, sys
out = []
for text in json.load(sys.stdin):
    parser = configparser.ConfigParser()
    try:
        parser.read_file(io.StringIO(text, newline=None))
        out.append({s: dict(parser.items(s)) for s in parser.sections()})
    except configparser.Error as err:
        out.append({"error": type(err).__name__})
print(json.dumps(out))
`;
function configparser(
  texts: string[],
): (Record<string, Record<string, string>> | { error: string })[] {
  return JSON.parse(
    execFileSync(PYTHON, ["-c", CONFIGPARSER], { input: JSON.stringify(texts), encoding: "utf8" }),
  );
}

describe("parseIni and Python's configparser agree", () => {
  /** Lines whose meaning the two must share: ours reads each to configparser's values. */
  const same = {
    "`;` and `#` inside a value are part of it": "[MCS]\na = x ; y\nb = x # y\nc = x;y#z\n",
    "quotes are kept": '[MCS]\na = "quoted"\nb = \'single\'\nc = ""\n',
    "`:` separates too": "[MCS]\na: 1\nb :2\nc=3\n",
    "the first `=` or `:` separates": "[MCS]\nurl = https://x/?a=b\nd: e = f\ng = h: i\n",
    "keys are lower-cased, section names are not": "[Mixed]\nRun_Script = run.sh\nTEAM = demo\n",
    "whitespace around keys, values and comments": "  ; c\n[MCS]\n\tk\t=\t v v \t\n\n  # c\nz =\n",
    "a comment between keys": "[MCS]\na = 1\n; a = 2\n# b\nb = 2\n",
    "dotted and spaced section names": "[a.b]\nk = 1\n[ MCS ]\nk = 2\n",
    "CRLF line endings": "[MCS]\r\nteam = demo\r\nempty =\r\n",
    "lines indented alike, none after a key": "  [MCS]\n  a = 1\n  b = 2\n",
  };
  /** Lines configparser reads otherwise than they look (as `looks` says): ours refuses them. */
  const differ: Record<string, [text: string, looks: object]> = {
    "an indented line after a key (a continuation)": [
      "[MCS]\na = 1\n  b = 2\n",
      { MCS: { a: "1", b: "2" } },
    ],
    "a continuation after a blank line and a comment": [
      "[MCS]\na = 1\n\n# c\n  b = 2\n",
      { MCS: { a: "1", b: "2" } },
    ],
    "a section header indented under a key": [
      "[MCS]\na = 1\n  [other]\n",
      { MCS: { a: "1" }, other: {} },
    ],
    "a % (interpolated)": ["[MCS]\nfolder = 50%\n", { MCS: { folder: "50%" } }],
    "%% (unescaped to %)": ["[MCS]\nfolder = a%%b\n", { MCS: { folder: "a%%b" } }],
    "[DEFAULT] (merged into every section)": [
      "[DEFAULT]\nteam = x\n[MCS]\nmetadata = level2\n",
      { DEFAULT: { team: "x" }, MCS: { metadata: "level2" } },
    ],
    "a byte-order mark": ["\uFEFF[MCS]\na = 1\n", { MCS: { a: "1" } }],
  };
  const rejected = {
    "a key set twice, by case": "[MCS]\nteam = a\nTeam = b\n",
    "a key set twice": "[MCS]\na = 1\na = 2\n",
    "a section twice": "[MCS]\na = 1\n[MCS]\nb = 1\n",
    "a key with no value": "[MCS]\nflag\n",
    "a key before any section": "a = 1\n[MCS]\n",
    "an empty key": "[MCS]\n= 1\n",
  };
  const python = configparser([
    ...Object.values(same),
    ...Object.values(differ).map(([text]) => text),
    ...Object.values(rejected),
  ]);
  const cases: { kind: string; name: string; text: string; looks?: object }[] = [
    ...Object.entries(same).map(([name, text]) => ({ kind: "same", name, text })),
    ...Object.entries(differ).map(([name, [text, looks]]) => ({
      kind: "differ",
      name,
      text,
      looks,
    })),
    ...Object.entries(rejected).map(([name, text]) => ({ kind: "rejected", name, text })),
  ];
  const withPython = cases.map((c, i) => ({ ...c, python: python[i] }));
  const ours = (text: string) => entries(parseIni(text, "x.ini"));

  it.each(withPython.filter((c) => c.kind === "same"))(
    "reads the same: $name",
    ({ text, python }) => {
      expect(python).not.toHaveProperty("error");
      expect(ours(text)).toEqual(python);
    },
  );

  it.each(withPython.filter((c) => c.kind === "differ"))(
    "refuses what configparser reads another way: $name",
    ({ text, looks, python }) => {
      expect(python).not.toEqual(looks);
      expect(() => ours(text)).toThrow(/^x\.ini:\d+: /);
    },
  );

  it.each(withPython.filter((c) => c.kind === "rejected"))(
    "refuses what configparser refuses: $name",
    ({ text, python }) => {
      expect(python).toHaveProperty("error");
      expect(() => ours(text)).toThrow(/^x\.ini:\d+: /);
    },
  );

  it("the demo module's configs read the same", () => {
    const files = ["demo_aws.ini", "mcs_config_demo_level2.ini"].map((f) =>
      readFileSync(path.join(REPO, "configs", f), "utf8"),
    );
    expect(files.map(ours)).toEqual(configparser(files));
  });
});
