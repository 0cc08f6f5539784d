/**
 * Ours, not the `ini` package: `ini` reads `a = x ; y` as "x", unquotes values, has no `:`
 * separator and nests `[a.b]`, where Python's configparser (which reads these files on the nodes)
 * keeps "x ; y" and the quotes; this reader gives configparser's meaning or an error.
 *
 * A strict INI reader: `[section]`, `key = value` (or `key=value`, `key: value`), whole-line
 * `;`/`#` comments; keys are lower-cased and values are kept whole (`;`, `#`, quotes and `=` in a
 * value are part of it), as configparser does. What configparser would read differently (a
 * continuation line, `%` interpolation, `[DEFAULT]`, a byte-order mark) or not at all is an error
 * naming the file and line, because a silently misread MCS setting can send a whole evaluation's
 * results to the wrong place. test/ini.test.ts compares the two on the same text.
 */
export type Ini = Map<string, Map<string, string>>;

export function parseIni(text: string, source: string): Ini {
  const ini: Ini = new Map();
  let section: Map<string, string> | undefined;
  // The indentation of the last key line: a deeper line after it continues its value.
  let keyIndent: number | undefined;
  text.split(/\r?\n/).forEach((raw, index) => {
    const where = `${source}:${index + 1}`;
    if (index === 0 && raw.startsWith("\uFEFF")) {
      throw new Error(`${where}: starts with a byte-order mark, which configparser does not read`);
    }
    const line = raw.trim();
    if (line === "" || line.startsWith(";") || line.startsWith("#")) return;
    const indent = raw.length - raw.trimStart().length;
    if (keyIndent !== undefined && indent > keyIndent) {
      throw new Error(
        `${where}: an indented line continues the value above in configparser; unindent it`,
      );
    }
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      const name = header[1]!;
      if (name === "DEFAULT") {
        throw new Error(`${where}: configparser merges [DEFAULT] into every section; use [MCS]`);
      }
      if (ini.has(name)) throw new Error(`${where}: section [${name}] appears twice`);
      section = new Map();
      ini.set(name, section);
      keyIndent = undefined;
      return;
    }
    const pair = /^([A-Za-z0-9_.-]+)\s*[=:]\s*(.*)$/.exec(line);
    if (!pair) throw new Error(`${where}: expected "key = value", "[section]" or a comment`);
    const key = pair[1]!.toLowerCase();
    if (!section) throw new Error(`${where}: "${key}" comes before any [section]`);
    if (section.has(key)) throw new Error(`${where}: "${key}" is set twice`);
    if (pair[2]!.includes("%")) {
      throw new Error(`${where}: "${key}" has a %, which configparser interpolates`);
    }
    section.set(key, pair[2]!.trim());
    keyIndent = indent;
  });
  return ini;
}

export function stringifyIni(ini: Ini): string {
  const parts: string[] = [];
  for (const [name, entries] of ini) {
    parts.push(`[${name}]`, ...[...entries].map(([k, v]) => `${k} = ${v}`), "");
  }
  return parts.join("\n");
}

/**
 * An INI boolean as Python's configparser `getboolean` reads it (MCS reads `history_enabled` and
 * `video_enabled` so): 1/yes/true/on and 0/no/false/off, any case; `fallback` when absent;
 * undefined for anything else (the caller names the key in its error).
 */
export function iniBoolean(value: string | undefined, fallback: boolean): boolean | undefined {
  if (value === undefined) return fallback;
  const word = value.trim().toLowerCase();
  if (["1", "yes", "true", "on"].includes(word)) return true;
  if (["0", "no", "false", "off"].includes(word)) return false;
  return undefined;
}
