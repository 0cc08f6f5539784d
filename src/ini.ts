/**
 * A strict INI reader: `[section]`, `key = value` (or `key=value`), `;`/`#` comments. Anything
 * else is an error naming the file and line, because a silently skipped MCS setting can send a
 * whole evaluation's results to the wrong place.
 */
export type Ini = Map<string, Map<string, string>>;

export function parseIni(text: string, source: string): Ini {
  const ini: Ini = new Map();
  let section: Map<string, string> | undefined;
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    const where = `${source}:${index + 1}`;
    if (line === "" || line.startsWith(";") || line.startsWith("#")) return;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      const name = header[1]!.trim();
      if (ini.has(name)) throw new Error(`${where}: section [${name}] appears twice`);
      section = new Map();
      ini.set(name, section);
      return;
    }
    const pair = /^([A-Za-z0-9_.-]+)\s*[=:]\s*(.*)$/.exec(line);
    if (!pair) throw new Error(`${where}: expected "key = value", "[section]" or a comment`);
    if (!section) throw new Error(`${where}: "${pair[1]}" comes before any [section]`);
    if (section.has(pair[1]!)) throw new Error(`${where}: "${pair[1]}" is set twice`);
    section.set(pair[1]!, pair[2]!.trim());
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
