// The test set-up's downloads and builds, kept once per machine under MCS_TEST_CACHE (default
// ~/.cache/mcs-pipeline, beside the tests' own rootfs and MCS venv), each entry named by what
// went into it so that another pin gets another entry. A clone's .venv and .tools/... are links
// to the entries. For scripts/dev-venv.mjs and scripts/tools.mjs (`npm run setup`); the product's
// own `setup` (a user's .venv) does not use it.
//
// An entry is complete once its READY file is in it (written last): a half-built one (a killed
// set-up) has none and is built again. Relocatable entries (a binary, Node's package) are built in
// a temporary directory beside their place and renamed into it, so two set-ups at once both build
// and the first rename wins. A venv is not relocatable: it is built at its place while holding a
// lock on `<entry>.lock` (flock, through Python: the kernel lets go when its holder dies, so a
// killed set-up leaves no stale lock).
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";

/** In an entry once it is complete. */
export const READY = ".mcs-ready";

export function cacheDir() {
  return path.resolve(
    process.env.MCS_TEST_CACHE ?? path.join(os.homedir(), ".cache", "mcs-pipeline"),
  );
}

/** A short hash of `parts` for an entry's name. */
export function shortHash(...parts) {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(`${part.length}:`).update(part);
  return hash.digest("hex").slice(0, 10);
}

/**
 * `python`'s version (X.Y) and `id` (its real path and full version, for a key: a venv is tied
 * to the interpreter it was made with).
 */
export function pythonInfo(python) {
  const out = execFileSync(
    python,
    [
      "-c",
      "import os, sys; print('%d.%d' % sys.version_info[:2]); print(os.path.realpath(sys.executable)); print(sys.version)",
    ],
    { encoding: "utf8" },
  );
  const [version, ...rest] = out.trim().split("\n");
  return { version, id: rest.join("\n") };
}

export function isReady(entry) {
  return existsSync(path.join(entry, READY));
}

function markReady(dir, what) {
  writeFileSync(path.join(dir, READY), `${what}\n`);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === "EPERM";
  }
}

/** Temporary build directories of `entry` left by set-ups that were killed. */
function sweep(entry) {
  const prefix = `${path.basename(entry)}.tmp-`;
  let names = [];
  try {
    names = readdirSync(path.dirname(entry));
  } catch {
    return;
  }
  for (const name of names) {
    const pid = name.startsWith(prefix) ? Number(name.slice(prefix.length).split("-")[0]) : NaN;
    if (pid && pid !== process.pid && !alive(pid)) {
      rmSync(path.join(path.dirname(entry), name), { recursive: true, force: true });
    }
  }
}

/**
 * The cache entry `entry` (a directory), made when missing by `build(dir)` filling a temporary
 * directory that is then renamed to `entry`: for what still works when moved. Returns whether it
 * came from the cache.
 */
export function cachedDir(entry, what, build, log = console.log) {
  if (isReady(entry)) {
    log(`Using ${what} from the cache (${entry})`);
    return true;
  }
  log(`Installing ${what} into the cache (${entry})`);
  mkdirSync(path.dirname(entry), { recursive: true });
  sweep(entry);
  const dir = mkdtempSync(`${entry}.tmp-${process.pid}-`);
  try {
    build(dir);
    markReady(dir, what);
    chmodSync(dir, 0o755); // not mkdtemp's 0700
    try {
      renameSync(dir, entry);
    } catch (error) {
      if (isReady(entry)) return false; // another set-up finished first
      if (!existsSync(entry)) throw error;
      rmSync(entry, { recursive: true, force: true }); // not ours, and incomplete
      renameSync(dir, entry);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return false;
}

/**
 * The cache entry `entry` (a venv, or anything that must be made in place), made when missing by
 * `build(entry)` under an exclusive lock; an incomplete entry is removed first. `python` holds the
 * lock. Returns whether it came from the cache.
 */
export async function cachedInPlace(entry, what, python, build, log = console.log) {
  if (isReady(entry)) {
    log(`Using ${what} from the cache (${entry})`);
    return true;
  }
  mkdirSync(path.dirname(entry), { recursive: true });
  const unlock = await lock(`${entry}.lock`, python, () =>
    log(`Waiting for another set-up that holds ${entry}.lock`),
  );
  try {
    if (isReady(entry)) {
      log(`Using ${what} from the cache (${entry}), built by another set-up`);
      return true;
    }
    if (existsSync(entry)) log(`Removing an incomplete ${entry}`);
    rmSync(entry, { recursive: true, force: true });
    log(`Installing ${what} into the cache (${entry})`);
    await build(entry);
    markReady(entry, what);
  } finally {
    await unlock();
  }
  return false;
}

// Holds an exclusive flock on argv[1] until its stdin closes (our end, or our process ending).
const LOCK_PY = `
import fcntl, sys
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
`;

/** Takes the lock on `file`; resolves to the function that lets it go. */
function lock(file, python, onWait) {
  return new Promise((resolve, reject) => {
    const holder = spawn(python, ["-c", LOCK_PY, file], { stdio: ["pipe", "pipe", "inherit"] });
    const exited = new Promise((done) => holder.once("exit", done));
    const waiting = setTimeout(onWait, 1000);
    let out = "";
    holder.stdout.setEncoding("utf8");
    holder.stdout.on("data", (chunk) => {
      out += chunk;
      if (!out.startsWith("locked")) return;
      clearTimeout(waiting);
      holder.stdout.removeAllListeners("data");
      resolve(async () => {
        holder.stdin.end();
        await exited;
      });
    });
    holder.once("error", (error) => {
      clearTimeout(waiting);
      reject(error);
    });
    holder.once("exit", (code, signal) => {
      clearTimeout(waiting);
      reject(new Error(`could not lock ${file} with ${python} (exit ${code ?? signal})`));
    });
  });
}

/** Points the symlink `link` at `target`, replacing a link (or file) there in one rename. */
export function linkTo(link, target) {
  let current;
  try {
    current = lstatSync(link);
  } catch {
    // nothing there
  }
  if (current?.isSymbolicLink() && readlinkSync(link) === target) return;
  if (current?.isDirectory()) rmSync(link, { recursive: true, force: true });
  mkdirSync(path.dirname(link), { recursive: true });
  const temp = `${link}.tmp-${process.pid}`;
  rmSync(temp, { force: true });
  symlinkSync(target, temp);
  renameSync(temp, link);
}

/** What is at `file`: "missing", "link" or "real" (a file or directory of the clone's own). */
export function kindOf(file) {
  try {
    return lstatSync(file).isSymbolicLink() ? "link" : "real";
  } catch {
    return "missing";
  }
}
