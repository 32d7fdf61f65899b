"""Checking JSON results against docs/schemas/<kind>.schema.json.

`check(instance, kind)` uses the `jsonschema` package (draft 2020-12) where it is installed (it comes with the
ray extra), else `problems()`: a small validator of the part of JSON Schema the documents use (type, enum,
required, properties, additionalProperties, items, anyOf, local $ref). hwnas itself needs neither."""
import json
from pathlib import Path

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def load(kind: str) -> dict:
    return json.loads((SCHEMAS / f"{kind}.schema.json").read_text())


def problems(instance, schema: dict, root: dict | None = None, at: str = "$") -> list[str]:
    """What is wrong with `instance` under `schema` (the subset above), as "path: why" lines; [] if nothing."""
    root = schema if root is None else root
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), f"only local $defs references are supported, not {ref}"
        return problems(instance, root["$defs"][ref[len("#/$defs/"):]], root, at)
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](instance) for t in types):
            return [f"{at}: {type(instance).__name__} {str(instance)[:60]!r} is not {' or '.join(types)}"]
    out = []
    if "enum" in schema and instance not in schema["enum"]:
        out.append(f"{at}: {instance!r} is not one of {schema['enum']}")
    if "anyOf" in schema:
        tries = [problems(instance, s, root, at) for s in schema["anyOf"]]
        if all(tries):
            out.append(f"{at}: matches none of anyOf ({'; '.join(t[0] for t in tries)})")
    if isinstance(instance, dict):
        out += [f"{at}: {k!r} is required" for k in schema.get("required", []) if k not in instance]
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        for k, v in instance.items():
            if k in props:
                out += problems(v, props[k], root, f"{at}.{k}")
            elif extra is False:
                out.append(f"{at}: {k!r} is not allowed")
            elif isinstance(extra, dict):
                out += problems(v, extra, root, f"{at}.{k}")
    if isinstance(instance, list) and "items" in schema:
        for i, v in enumerate(instance):
            out += problems(v, schema["items"], root, f"{at}[{i}]")
    return out


def check(instance, kind: str) -> None:
    """Assert that `instance` is a valid result of `kind` (docs/schemas/<kind>.schema.json)."""
    schema = load(kind)
    try:
        import jsonschema
    except ImportError:
        found = problems(instance, schema)
        assert not found, f"not a valid hwnas.{kind} result:\n" + "\n".join(found[:20])
        return
    validator = jsonschema.Draft202012Validator(schema)
    found = [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator.iter_errors(instance)]
    assert not found, f"not a valid hwnas.{kind} result:\n" + "\n".join(found[:20])


def json_strings(value, at: str = "$") -> list[str]:
    """Paths of the strings in `value` that hold a JSON object or array (nested data written as text)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in json_strings(v, f"{at}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in json_strings(v, f"{at}[{i}]")]
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return [at] if isinstance(json.loads(value), (dict, list)) else []
        except ValueError:
            return []
    return []
