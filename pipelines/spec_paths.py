"""Dotted paths into an experiment spec (`train.max_steps`, `methods.0.r`): the one setter that
both `hpo` (a trial's sampled values) and the command line (`--set`, `-P set=...`) go through.

    python -m pipelines.compare experiments/dialogsum_demo.yaml --set "train.max_steps=2 eval.max_examples=3"
    mlflow run . -e peft_compare --env-manager local --experiment-name dialogsum_demo \\
        -P set="train.max_steps=2 methods.1.r=4"

Values are YAML scalars or flow collections (`2`, `null`, `3.0e-4`, `[q_proj, v_proj]`,
`{name: lora, r: 4}`); quote a value that holds spaces (`generation.instruction='Sum it up.'`).
The spec with its overrides is validated like any spec, so a bad value fails with its key path.
"""
from __future__ import annotations

import argparse
import copy
import shlex
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import PlatformError, first_line


def set_path(data: dict, key: str, value: Any) -> None:
    """Set `value` at the dotted `key` of a fully dumped spec (every field present), so a path that
    does not resolve names no field: ValueError saying which part, and what is there instead."""
    node: Any = data
    parts = key.split(".")
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth]) or "the spec"
        if isinstance(node, dict):
            if part not in node:
                raise ValueError(f"no field '{part}' in {here} (fields: {', '.join(node)})")
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ValueError(f"{here} is a list of {len(node)}; '{part}' is not an index in it")
            part = int(part)
        else:
            raise ValueError(f"{here} is a value ({node!r}), it has no field '{part}'")
        if depth == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


def parse_overrides(text: str | list[str] | None) -> dict[str, Any]:
    """`"a.b=1 c='x y'"` (or the same as a list of `key=value` words) -> {"a.b": 1, "c": "x y"}."""
    if not text:
        return {}
    words = [w for part in ([text] if isinstance(text, str) else text) for w in shlex.split(part)]
    out: dict[str, Any] = {}
    for word in words:
        key, sep, raw = word.partition("=")
        if not sep or not key.strip():
            raise PlatformError(f"override '{word}': use key.path=value (e.g. train.max_steps=2)")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise PlatformError(f"override {key}: '{raw}' is not a YAML value ({first_line(exc)})") from None
    return out


def with_overrides(raw: dict, full: dict, overrides: dict[str, Any]) -> dict:
    """`raw` (the spec as written) with `overrides` set, checked against `full` (the same spec
    dumped with every default) so that a path may reach a field the YAML leaves at its default
    while the fields it does not touch keep their written-or-default status."""
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        try:
            set_path(copy.deepcopy(full), key, value)  # the path names a field
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
        node, reference = out, full
        parts = key.split(".")
        for part in parts[:-1]:
            index = int(part) if isinstance(reference, list) else part
            reference = reference[index]
            if isinstance(node, dict) and index not in node:
                node[index] = copy.deepcopy(reference)  # a section left at its default
            node = node[index]
        last = parts[-1]
        node[int(last) if isinstance(node, list) else last] = value
    return out


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """The `--set` flag every spec-reading entry point takes (`-P set=...` under `mlflow run`)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE ...",
                        help="override spec fields by dotted path, e.g. --set \"train.max_steps=2 methods.1.r=4\"")


def experiment_of(spec_path: str | Path) -> str:
    """The MLflow experiment a spec's runs go to: named after the spec (its `name`, else its
    file's stem). Read leniently, before the spec is validated, so that a spec that fails to load
    still leaves its FAILED run beside the spec's other runs."""
    try:
        name = (yaml.safe_load(Path(spec_path).read_text()) or {}).get("name")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        name = None
    return name if isinstance(name, str) and name.strip() else Path(spec_path).stem
