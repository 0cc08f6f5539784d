/**
 * The formats this side shares with the driver, each described once as a JSON Schema file in
 * pipeline/mcs_pipeline/schemas/ (the plan copies pipeline/ to the head node, so the driver finds
 * them there too; pipeline/mcs_pipeline/schemas/__init__.py validates with the same files). They
 * are imported as JSON, so the ncc bundles in dist/ carry them.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import planSchema from "../pipeline/mcs_pipeline/schemas/plan.schema.json" with { type: "json" };
import runSummarySchema from "../pipeline/mcs_pipeline/schemas/run-summary.schema.json" with { type: "json" };

export const SCHEMAS = {
  "plan.schema.json": planSchema,
  "run-summary.schema.json": runSummarySchema,
} as const;
export type SchemaFile = keyof typeof SCHEMAS;

// strict: a schema with an unknown keyword or a loose type fails to compile (in the tests first).
const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, verbose: true });

/** The validator of a schema file, or of one of its `$defs` (`definition`); ajv keeps them. */
function validator(file: SchemaFile, definition?: string): ValidateFunction {
  if (!ajv.getSchema(file)) ajv.addSchema(SCHEMAS[file], file);
  const id = definition ? `${file}#/$defs/${definition}` : file;
  const validate = ajv.getSchema(id);
  if (!validate) throw new Error(`no schema ${id}`);
  return validate;
}

/**
 * Where `doc` first differs from the schema, in one line naming the field and the schema path
 * (e.g. `scenes[3].status must be one of SUCCESS, FAILED, PENDING, got "DONE"
 * (run-summary.schema.json#/$defs/sceneStatus/enum)`), or undefined when it matches.
 */
export function schemaProblem(
  doc: unknown,
  file: SchemaFile,
  definition?: string,
): string | undefined {
  const validate = validator(file, definition);
  if (validate(doc)) return undefined;
  const error = validate.errors![0]!;
  // Where the keyword is in the file, $refs resolved (ajv's schemaPath restarts at each $ref).
  const where = locations(file).get(error.parentSchema as object);
  const keyword = where === undefined ? error.schemaPath : `#${where}/${error.keyword}`;
  return `${describeError(error)} (${file}${keyword})`;
}

const pointers = new Map<SchemaFile, Map<object, string>>();

/** Every subschema object of the file → its JSON pointer in the file. */
function locations(file: SchemaFile): Map<object, string> {
  let found = pointers.get(file);
  if (!found) {
    found = new Map();
    const walk = (node: unknown, pointer: string) => {
      if (typeof node !== "object" || node === null) return;
      if (!found!.has(node)) found!.set(node, pointer);
      for (const [key, value] of Object.entries(node)) walk(value, `${pointer}/${key}`);
    };
    walk(SCHEMAS[file], "");
    pointers.set(file, found);
  }
  return found;
}

function describeError(error: ErrorObject): string {
  const at = fieldPath(error.instancePath);
  const field = (key: string) => (at ? `${at}.${key}` : key);
  const got = `got ${describe(error.data)}`;
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case "required":
      return `${field(String(params.missingProperty))} is missing`;
    case "additionalProperties":
      return `${field(String(params.additionalProperty))} is not allowed`;
    case "type":
      return `${at || "the document"} must be ${article(String(params.type))}, ${got}`;
    case "enum":
      return `${at} must be one of ${(params.allowedValues as unknown[]).map(String).join(", ")}, ${got}`;
    case "const":
      return `${at} must be ${JSON.stringify(params.allowedValue)}, ${got}`;
    default:
      return `${at || "the document"} ${error.message ?? "does not match"}, ${got}`;
  }
}

/** `/scenes/3/outputs/videos/0` → `scenes[3].outputs.videos[0]`. */
function fieldPath(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`))
    .join("")
    .replace(/^\./, "");
}

function article(types: string): string {
  return types
    .split(",")
    .map((type) => (/^[aeiou]/.test(type) ? `an ${type}` : type === "null" ? type : `a ${type}`))
    .join(" or ");
}

export function describe(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") {
    const text = JSON.stringify(value);
    return text.length > 60 ? `${text.slice(0, 57)}..."` : text;
  }
  return String(value);
}
