"""Command-line flags made from the option dataclasses (`hf_vit_port_tools.options`), and the dataclasses back
from the parsed flags: each setting is declared once, as a dataclass field.

A field `learning_rate: float = option(1e-4, "peak learning rate")` becomes `--learning-rate FLOAT`. The field's
metadata can say more: `flag` (another spelling, e.g. `--no-verify` for a `verify` that defaults to True),
`aliases`, `positional`, `nargs` (with `const`, the value of the flag given alone), `metavar`, `parse` (a
function from the text to the value; its ValueError becomes a usage error), `repeat` (the flag may be given several
times, collecting a list; a `dict` field collects the (key, value) pairs `parse` returns), and `cli=False` (no
flag).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

_SCALARS: dict[Any, Callable[[str], Any]] = {int: int, float: float, str: str, Path: Path}


def add_flags(parser: argparse.ArgumentParser, options: type, defaults: Mapping[str, Any] | None = None) -> None:
    """Add a flag (or positional argument) for each field of the dataclass `options` to `parser`. `defaults`
    replaces field defaults for this command (a field given one is no longer required)."""
    group = parser.add_argument_group(_title(options))
    hints = typing.get_type_hints(options)
    for spec in dataclasses.fields(options):
        if spec.metadata.get("cli", True):
            _add(group, spec, hints[spec.name], (defaults or {}).get(spec.name, _default(spec)))


def build(options: type, namespace: argparse.Namespace, defaults: Mapping[str, Any] | None = None) -> Any:
    """The `options` dataclass from parsed flags; fields without a flag take `defaults` or their own default."""
    values = {}
    hints = typing.get_type_hints(options)
    for spec in dataclasses.fields(options):
        if spec.metadata.get("cli", True):
            value = getattr(namespace, spec.name)
            repeated_pairs = spec.metadata.get("repeat") and typing.get_origin(hints[spec.name]) is dict
            values[spec.name] = dict(value) if repeated_pairs else value
        elif defaults and spec.name in defaults:
            values[spec.name] = defaults[spec.name]
    return options(**values)


def _title(options: type) -> str:
    doc = (options.__doc__ or "").strip()
    first = doc.split("\n\n")[0].replace("\n", " ") if doc and not doc.startswith(options.__name__ + "(") else ""
    return first or options.__name__


def _default(spec: dataclasses.Field) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return dataclasses.MISSING


def _add(group: Any, spec: dataclasses.Field, hint: Any, default: Any) -> None:
    meta = spec.metadata
    kwargs: dict[str, Any] = {"help": meta.get("help", "")}
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    if meta.get("positional"):
        kwargs.update(_value_kwargs(hint, meta), nargs=meta.get("nargs", "?"))
        if default is not dataclasses.MISSING:
            kwargs["default"] = default
        group.add_argument(spec.name, **kwargs)
        return
    names = [meta.get("flag") or "--" + spec.name.replace("_", "-"), *meta.get("aliases", ())]
    if _base(hint) is bool:
        kwargs["action"] = "store_false" if default is True else "store_true"
    elif meta.get("repeat"):
        kwargs.update(_value_kwargs(_item(hint), meta), action="append")
        if isinstance(default, dict):  # collected as (key, value) pairs, made a dict again by `build`
            default = list(default.items())
    else:
        kwargs.update(_value_kwargs(hint, meta))
        if "nargs" in meta:
            kwargs["nargs"] = meta["nargs"]
        if "const" in meta:
            kwargs["const"] = meta["const"]
    if "action" not in kwargs and "choices" not in kwargs and "metavar" not in kwargs:
        kwargs["metavar"] = names[0].lstrip("-").replace("-", "_").upper()
    if default is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
        if default not in (None, False, True, []) and kwargs["help"]:
            kwargs["help"] += " (default: %(default)s)"
    group.add_argument(*names, dest=spec.name, **kwargs)


def _value_kwargs(hint: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """`type` and `choices` for a field's values."""
    base = _base(_item(hint) if typing.get_origin(_base(hint)) is list else hint)
    if typing.get_origin(base) is Literal:
        return {"choices": typing.get_args(base)}
    if meta.get("parse"):
        return {"type": _usage_error_on_value_error(meta["parse"])}
    return {"type": _SCALARS.get(base, str)}


def _usage_error_on_value_error(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = getattr(parse, "__name__", "value")  # argparse names the type in its messages
    return convert


def _base(hint: Any) -> Any:
    """`X` of `X | None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _item(hint: Any) -> Any:
    """`X` of `list[X]`."""
    args = typing.get_args(_base(hint))
    return args[0] if args else str
