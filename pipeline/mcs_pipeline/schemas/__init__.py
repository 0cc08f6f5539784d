"""The formats the TypeScript side and the driver share, each described once as a JSON Schema
file next to this one: plan.schema.json (plan.json) and run-summary.schema.json (the run
summary; its $defs describe the journal chunks and the latest-run pointer). src/schemas.ts
validates against the same files; jsonschema comes with Ray.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAN = "plan.schema.json"
RUN_SUMMARY = "run-summary.schema.json"


def load(name: str) -> dict:
    return json.loads((HERE / name).read_text())


def validator(name: str, definition: str | None = None):
    """A jsonschema validator for the schema file `name`, or for its `$defs/<definition>`."""
    return whole_file(name) if definition is None else definition_of(name, definition)


@cache
def whole_file(name: str):
    from jsonschema import Draft202012Validator

    schema = load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@cache
def definition_of(name: str, definition: str):
    from jsonschema import Draft202012Validator

    whole = whole_file(name).schema  # its very $defs objects, so that `locations` finds them
    return Draft202012Validator({"$schema": whole["$schema"], "$defs": whole["$defs"],
                                 "$ref": f"#/$defs/{definition}"})


def problem(doc, name: str, definition: str | None = None) -> str | None:
    """One line naming where `doc` first differs from the schema, or None when it matches."""
    error = next(iter(validator(name, definition).iter_errors(doc)), None)
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    # Where the failing keyword is in the file ($refs resolved), e.g. #/$defs/scene/required.
    keyword = f"{locations(name).get(id(error.schema), '')}/{error.validator}"
    return f"{where.lstrip('.') or 'the document'}: {error.message} ({name}#{keyword})"


@cache
def locations(name: str) -> dict[int, str]:
    """id() of every subschema of the file's validators -> its JSON pointer in the file."""
    found: dict[int, str] = {}

    def walk(node, pointer: str) -> None:
        if isinstance(node, dict):
            found.setdefault(id(node), pointer)
            for key, value in node.items():
                walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{pointer}/{i}")

    walk(whole_file(name).schema, "")
    return found


def check(doc, name: str, definition: str | None = None) -> None:
    """ValueError when `doc` does not match the schema (see `problem`)."""
    text = problem(doc, name, definition)
    if text is not None:
        raise ValueError(text)
