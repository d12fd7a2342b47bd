"""Generate docs/reference.md, the API reference, from the docstrings of the public names.

    python scripts/api_reference.py          # rewrite docs/reference.md
    python scripts/api_reference.py --check  # exit 1 if it is stale or a name is undocumented

Public means: listed in ``__all__`` of ``duro``, ``duro.testing``, ``duro.history``,
``duro.providers`` or ``duro_cosmos``, and, for classes, their public methods and properties
defined by duro (inherited ones included, test methods of the contract suites excluded).
Constants are documented by the string literal that follows their assignment in the source.
``tests/test_reference.py`` runs the check.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import itertools
import re
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "reference.md"
NAMESPACES = ["duro", "duro.testing", "duro.history", "duro.providers", "duro_cosmos"]
PACKAGES = ["duro", "duro_cosmos"]

HEADER = """\
# API reference

Generated from the docstrings by `python scripts/api_reference.py`; do not edit by hand
(`tests/test_reference.py` fails when this page is stale or a public name has no docstring).
Guides with examples: [getting started](getting-started.md), [orchestrations](orchestrations.md),
[testing](testing.md), [deploying](deploying.md), [the API at a glance](api.md).

Namespaces: {toc}.
"""


def main(argv: list[str]) -> int:
    text = render()
    missing = undocumented()
    if "--check" in argv:
        stale = not OUTPUT.exists() or OUTPUT.read_text() != text
        for name in missing:
            print(f"undocumented: {name}")
        if stale:
            print(f"{OUTPUT.relative_to(REPO)} is stale: run python scripts/api_reference.py")
        return 1 if stale or missing else 0
    OUTPUT.write_text(text)
    for name in missing:
        print(f"undocumented: {name}")
    return 0


# -- what is public ------------------------------------------------------------------------------


def public_names() -> Iterator[tuple[str, str, Any]]:
    """(namespace, name, object) for every exported name, in namespace then name order."""
    for namespace in NAMESPACES:
        module = importlib.import_module(namespace)
        for name in sorted(module.__all__, key=_sort_key):
            yield namespace, name, getattr(module, name)


def members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties of ``cls`` that duro defines (own or inherited)."""
    if issubclass(cls, BaseException) or issubclass(cls, enum.Enum):
        return
    for name in sorted(dir(cls)):
        if name.startswith("_") or name.startswith("test_"):
            continue
        raw = inspect.getattr_static(cls, name)
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not owner.__module__.startswith(tuple(PACKAGES)):
            continue
        if isinstance(raw, staticmethod | classmethod):
            raw = raw.__func__
        if inspect.isfunction(raw) or isinstance(raw, property):
            yield name, raw


def undocumented() -> list[str]:
    missing = []
    for namespace, name, obj in public_names():
        if not _doc(obj, name):
            missing.append(f"{namespace}.{name}")
        if inspect.isclass(obj):
            for member, raw in members(obj):
                if not _member_doc(obj, member, raw):
                    missing.append(f"{namespace}.{name}.{member}")
    return missing


# -- rendering -----------------------------------------------------------------------------------


def render() -> str:
    seen: dict[int, str] = {}
    sections: list[str] = []
    current = ""
    for namespace, name, obj in public_names():
        if namespace != current:
            current = namespace
            module = importlib.import_module(namespace)
            sections.append(f"## `{namespace}`\n\n{_first_paragraph(module.__doc__)}\n")
        qualified = f"{namespace}.{name}"
        if id(obj) in seen and not _is_constant(obj):
            sections.append(f"### `{qualified}`\n\nThe same object as `{seen[id(obj)]}`.\n")
            continue
        seen[id(obj)] = qualified
        sections.append(_render(qualified, name, obj))
    toc = ", ".join(f"[`{n}`](#{n.replace('.', '')})" for n in NAMESPACES)
    return HEADER.format(toc=toc) + "\n" + "\n".join(sections)


def _render(qualified: str, name: str, obj: Any) -> str:
    lines = [f"### `{qualified}`", ""]
    if inspect.isclass(obj):
        lines += _code(_class_signature(name, obj))
        lines += [_doc(obj, name), ""]
        if issubclass(obj, enum.Enum):
            lines += [", ".join(f"`{m.name}`" for m in obj), ""]
        for member, raw in members(obj):
            lines += [f"#### `{name}.{member}`", ""]
            lines += _code(_member_signature(member, raw))
            lines += [_member_doc(obj, member, raw), ""]
    elif callable(obj) and not _is_constant(obj):
        lines += _code(*_function_signatures(name, obj))
        lines += [_doc(obj, name), ""]
    else:
        lines += _code(f"{name}: {_type_name(obj)}")
        lines += [_doc(obj, name), ""]
    return "\n".join(lines)


def _code(*signatures: str) -> list[str]:
    return ["```text", *signatures, "```", ""]


_ADDRESS = re.compile(r"<([\w. -]+?)(?: object)? at 0x[0-9a-f]+>")
_QUOTED = re.compile(r"""(: |-> )(['"])(.*?)\2(?=, |\)|$| =)""")


def _signature(obj: Any, *, method: bool = False) -> str:
    """``inspect.signature`` as written in the source: annotations without quotes."""
    text = _QUOTED.sub(r"\1\3", str(inspect.signature(obj)))
    # Defaults without a stable repr (an address changes every run): name their type.
    text = text.replace("<msgspec.Raw object", "<null msgspec.Raw object")
    text = _ADDRESS.sub(r"<\1>", text)
    if method:
        text = text.replace("(self, ", "(", 1).replace("(self)", "()", 1)
        text = text.replace("(cls, ", "(", 1).replace("(cls)", "()", 1)
    return text


def _class_signature(name: str, cls: type) -> str:
    if issubclass(cls, enum.Enum):
        return f"enum {name}"
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    kind = "exception" if issubclass(cls, BaseException) else "class"
    try:
        signature = _signature(cls).removesuffix(" -> None")
    except (TypeError, ValueError):
        signature = ""
    if issubclass(cls, BaseException) or signature in ("(*args, **kwargs)", "()"):
        signature = ""
    suffix = f"  # from {', '.join(bases)}" if bases and kind == "exception" else ""
    return f"{kind} {name}{signature}{suffix}"


def _function_signatures(name: str, fn: Callable[..., Any], *, method: bool = False) -> list[str]:
    prefix = "async " if inspect.iscoroutinefunction(fn) else ""
    overloads = typing.get_overloads(fn) or [fn]
    return [f"{prefix}{name}{_signature(o, method=method)}" for o in overloads]


def _member_signature(name: str, raw: Any) -> str:
    if isinstance(raw, property):
        returns = _signature(raw.fget).rpartition(" -> ")[2] if raw.fget else ""
        return f"property {name}: {returns}" if returns else f"property {name}"
    return "\n".join(_function_signatures(name, raw, method=True))


def _member_doc(cls: type, name: str, raw: Any) -> str:
    if isinstance(raw, property):
        doc = raw.__doc__
        if not doc:  # an override without a docstring inherits the documented one
            doc = next(
                (
                    vars(k)[name].__doc__
                    for k in cls.__mro__
                    if isinstance(vars(k).get(name), property) and vars(k)[name].__doc__
                ),
                None,
            )
        return inspect.cleandoc(doc or "")
    return inspect.getdoc(getattr(cls, name)) or ""


def _doc(obj: Any, name: str) -> str:
    if _is_constant(obj):
        return attribute_docs().get(name, "")
    own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return inspect.cleandoc(own or "")


def _is_constant(obj: Any) -> bool:
    return not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj)) or (
        isinstance(obj, type(int | None))
    )


def _type_name(obj: Any) -> str:
    if isinstance(obj, type(int | None)):
        return f"a union: {obj}".replace("duro._history.", "").replace("duro._messages.", "")
    text = repr(obj)
    return text if len(text) <= 100 else f"{type(obj).__name__} (see the source)"


def _first_paragraph(doc: str | None) -> str:
    return inspect.cleandoc(doc or "").split("\n\n", 1)[0]


def _sort_key(name: str) -> tuple[int, str]:
    return (0 if name[:1].isupper() else 1, name.lower())


_attribute_docs: dict[str, str] | None = None


def attribute_docs() -> dict[str, str]:
    """Module-level ``NAME = value`` followed by a string literal, across the packages."""
    global _attribute_docs
    if _attribute_docs is None:
        found: dict[str, str] = {}
        for package in PACKAGES:
            for path in sorted((REPO / package).rglob("*.py")):
                body = ast.parse(path.read_text()).body
                for node, after in itertools.pairwise(body):
                    target = _assigned_name(node)
                    if target and isinstance(after, ast.Expr) and _is_str(after.value):
                        text = after.value.value  # type: ignore[attr-defined]
                        found.setdefault(target, inspect.cleandoc(text))
        _attribute_docs = found
    return _attribute_docs


def _assigned_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
    elif isinstance(node, ast.AnnAssign):
        target = node.target
    else:
        return None
    return target.id if isinstance(target, ast.Name) else None


def _is_str(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
