"""docs/api.md's references of ``wxio.client`` and ``wxio.protocol`` are generated from the
docstrings (and ``#:`` comments) by :func:`render`; these tests keep them from drifting: the
generated blocks must match the code, every public name of the listed modules must appear, every
public protocol module must be listed, and the protocol example must run.

After changing a docstring or a public name, rewrite the blocks with::

    WXIO_UPDATE_DOCS=1 .venv/bin/pytest tests/test_docs_api.py
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import os
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any, ForwardRef

import pytest

ROOT = Path(__file__).resolve().parent.parent
API_MD = ROOT / "docs" / "api.md"

#: What each generated block documents, in order: a module, or a package whose names are only
#: listed as re-exports. ``wxio.client`` is documented as one module, as it is imported.
BLOCKS: dict[str, list[str]] = {
    "wxio.client": ["wxio.client"],
    "wxio.protocol": [
        "wxio.protocol",
        "wxio.protocol.errors",
        "wxio.protocol.envelope",
        "wxio.protocol.signing",
        "wxio.protocol.jsonutil",
        "wxio.protocol.statetable",
        "wxio.protocol.wsframe",
        "wxio.protocol.wsreader",
        "wxio.protocol.websocket",
        "wxio.protocol.deflate",
        "wxio.protocol.http1",
        "wxio.protocol.engineio",
        "wxio.protocol.engineio.packets",
        "wxio.protocol.engineio.payload",
        "wxio.protocol.engineio.handshake",
        "wxio.protocol.engineio.session",
        "wxio.protocol.socketio",
        "wxio.protocol.socketio.packets",
        "wxio.protocol.socketio.binary",
        "wxio.protocol.socketio.msgpack",
        "wxio.protocol.socketio.state",
    ],
}
#: Packages documented by their re-exports only (their names are documented where defined).
REEXPORTS = {"wxio.protocol", "wxio.protocol.engineio", "wxio.protocol.socketio"}
#: Public protocol modules without a reference (none: every one is documented).
UNLISTED: set[str] = set()
#: The order ``wxio.client``'s names are documented in (its ``__all__`` is alphabetical).
CLIENT_ORDER = [
    "WxioClient",
    "Message",
    "Credentials",
    "ApiClient",
    "Presence",
    "SendResult",
    "SendStatus",
    "Guarantee",
    "Receipt",
    "ApiSendResult",
    "WxioError",
    "Denied",
    "ConnectionClosed",
]
#: Classes made by a factory, whose constructor is not part of the API.
NO_CONSTRUCTOR = {"WxioClient"}

BEGIN = "<!-- reference {name}: generated from the docstrings by tests/test_docs_api.py -->"
END = "<!-- end of reference {name} -->"

# -- docstrings to Markdown ------------------------------------------------------------------

_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc):`(~?)([^`]+)`")


def _role(m: re.Match[str]) -> str:
    target = m.group(2).lstrip(".")
    if m.group(1):  # ~: the last component only, as Sphinx shows it
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _inline(text: str) -> str:
    return _ROLE.sub(_role, text).replace("``", "`")


def _is_rule(line: str) -> bool:
    return len(line) >= 3 and len(set(line)) == 1 and line[0] in "-="


def markdown(doc: str | None) -> list[str]:
    """A docstring as Markdown blocks: roles and double backticks become code spans, wrapped
    lines are joined, ``- `` items stay a list, an underlined title becomes bold, ``::``
    literal blocks and ``===`` tables become fenced code."""
    if not doc:
        return []
    lines = inspect.cleandoc(doc).splitlines()
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        block: list[str] = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        if _is_rule(block[0].strip()) and block[0].startswith("="):  # a table
            blocks.append("```\n" + "\n".join(block) + "\n```")
            continue
        if len(block) >= 2 and _is_rule(block[1].strip()):  # a section title
            blocks.append(f"**{_inline(block[0].strip())}**")
            block = block[2:]
            if not block:
                continue
        items: list[str] = []
        for line in block:
            if line.startswith("- ") or not items:
                items.append(line.strip())
            else:
                items[-1] += " " + line.strip()
        para = "\n".join(_inline(item) for item in items)
        if para.endswith("::"):
            # reST: "text::" reads "text:", a "::" on its own or after a space vanishes
            para = para[:-3] if para.endswith(" ::") else para[:-1]
            code: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                code.append(lines[i])
                i += 1
            if para.strip(":"):
                blocks.append(para)
            blocks.append("```\n" + inspect.cleandoc("\n".join(code)) + "\n```")
            continue
        blocks.append(para)
    return blocks


# -- signatures ------------------------------------------------------------------------------


def _default(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if callable(value) and hasattr(value, "__name__"):
        return str(value.__name__)
    return repr(value)


def _annotation(value: Any) -> str:
    if isinstance(value, ForwardRef):  # NamedTuple fields under postponed annotations
        return value.__forward_arg__
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature(func: Any, *, skip_first: bool = False) -> str:
    """``(a: int, *, b: str = 'x') -> bool`` with annotations as written in the source."""
    sig = inspect.signature(func)
    params = list(sig.parameters.values())[1 if skip_first else 0 :]
    out: list[str] = []
    star = False
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not star:
            out.append("*")
            star = True
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text, star = "*" + text, True
        elif p.kind is p.VAR_KEYWORD:
            text = "**" + text
        if p.annotation is not p.empty:
            text += ": " + _annotation(p.annotation)
        if p.default is not p.empty:
            text += (" = " if p.annotation is not p.empty else "=") + _default(p.default)
        out.append(text)
    result = f"({', '.join(out)})"
    if sig.return_annotation is not sig.empty:
        result += " -> " + _annotation(sig.return_annotation)
    return result


# -- `#:` comments ---------------------------------------------------------------------------


def comment_doc(source: str, pattern: str) -> str | None:
    """The ``#:`` comment lines right above the first line matching ``pattern``."""
    lines = source.splitlines()
    rx = re.compile(pattern)
    for i, line in enumerate(lines):
        if rx.match(line):
            doc: list[str] = []
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#:"):
                doc.insert(0, lines[j].strip()[2:].strip())
                j -= 1
            return " ".join(doc) or None
    return None


def assignment(name: str, modules: list[ModuleType]) -> tuple[str | None, str | None]:
    """(the ``#:`` doc, the one-line right-hand side) of ``name = ...`` in the first of
    ``modules`` that assigns it."""
    pattern = rf"^{re.escape(name)}\s*(?::[^=]*)?=\s*(.*)$"
    for module in modules:
        source = inspect.getsource(module)
        m = re.search(pattern, source, re.M)
        if m:
            rhs = m.group(1).strip()
            one_line = rhs if rhs and rhs[-1] not in "([{," else None
            return comment_doc(source, pattern), one_line
    return None, None


# -- rendering -------------------------------------------------------------------------------


def bullet(head: str, doc: list[str]) -> list[str]:
    """``- head: first paragraph`` and the others indented under it."""
    if not doc:
        return [f"- {head}"]
    out = [f"- {head}: {doc[0]}"]
    for para in doc[1:]:
        out.append("")
        out.extend("  " + line if line else "" for line in para.splitlines())
    return out


def _fields(cls: type) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    return list(getattr(cls, "_fields", ()))


def class_signature(cls: type) -> str | None:
    if dataclasses.is_dataclass(cls):
        parts = []
        for f in dataclasses.fields(cls):
            text = f"{f.name}: {_annotation(f.type)}"
            if f.default is not dataclasses.MISSING:
                text += " = " + _default(f.default)
            parts.append(text)
        return f"({', '.join(parts)})"
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        hints = cls.__annotations__
        defaults = cls._field_defaults
        parts = []
        for name in cls._fields:
            text = f"{name}: {_annotation(hints[name])}"
            if name in defaults:
                text += " = " + _default(defaults[name])
            parts.append(text)
        return f"({', '.join(parts)})"
    if issubclass(cls, enum.Enum) or getattr(cls, "_is_protocol", False):
        return None
    if "__init__" in cls.__dict__:
        return signature(cls.__dict__["__init__"], skip_first=True).removesuffix(" -> None")
    if issubclass(cls, BaseException):
        return None
    return "()"


def render_class(qualname: str, cls: type) -> list[str]:
    source = inspect.getsource(cls)
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        bases = ["NamedTuple"]
    if dataclasses.is_dataclass(cls):
        bases = ["dataclass"]
    if getattr(cls, "_is_protocol", False):
        bases = ["Protocol"]
    head = f"`{qualname}"
    sig = None if cls.__name__ in NO_CONSTRUCTOR else class_signature(cls)
    head += f"{sig}`" if sig is not None else "`"
    if bases:
        head += " (" + ", ".join(f"`{b}`" for b in bases) + ")"
    out = [f"#### `{qualname}`", "", head, ""]
    for para in markdown(cls.__doc__ if "__doc__" in cls.__dict__ else None):
        out += [para, ""]
    items: list[str] = []
    if issubclass(cls, enum.Enum):
        for member in cls:
            doc = comment_doc(source, rf"^\s+{member.name}\s*=")
            items += bullet(f"`{member.name} = {member.value!r}`", markdown(doc))
    for field in _fields(cls):
        doc = comment_doc(source, rf"^\s+{field}\s*:")
        if doc:
            items += bullet(f"`{field}`", markdown(doc))
    for attr in re.findall(r"^\s+#: .*\n(?:\s+#:.*\n)*\s+self\.([a-z]\w*)\b", source, re.M):
        doc = comment_doc(source, rf"^\s+self\.{attr}\b")
        items += bullet(f"`{attr}`", markdown(doc))
    for name, value in cls.__dict__.items():
        if name.startswith("_") or name in _fields(cls):
            continue
        if issubclass(cls, enum.Enum) and name in cls.__members__:
            continue
        if isinstance(value, property):
            items += bullet(f"`{name}` (property)", markdown(value.fget.__doc__))
            continue
        kind = ""
        if isinstance(value, (classmethod, staticmethod)):
            kind = " (classmethod)" if isinstance(value, classmethod) else " (staticmethod)"
            value = value.__func__
        if inspect.isfunction(value):
            prefix = "async " if inspect.iscoroutinefunction(value) else ""
            skip = not isinstance(cls.__dict__[name], staticmethod)
            sig = signature(value, skip_first=skip)
            items += bullet(f"`{prefix}{name}{sig}`{kind}", markdown(value.__doc__))
        elif isinstance(value, (str, int, float, bool)):
            doc = comment_doc(source, rf"^\s+{name}\s*[:=]")
            items += bullet(f"`{name} = {value!r}`", markdown(doc))
    if items:
        out += items + [""]
    return out


def render_name(module: ModuleType, name: str, sources: list[ModuleType]) -> list[str]:
    obj = getattr(module, name)
    if inspect.isclass(obj) and obj.__name__ == name:
        return render_class(name, obj)
    if inspect.isfunction(obj) and obj.__name__ == name:
        prefix = "async " if inspect.iscoroutinefunction(obj) else ""
        return bullet(f"`{prefix}{name}{signature(obj)}`", markdown(obj.__doc__)) + [""]
    doc, rhs = assignment(name, sources)
    head = f"`{name} = {rhs}`" if rhs is not None else f"`{name}`"
    return bullet(head, markdown(doc)) + [""]


def render_module(modname: str) -> list[str]:
    module = importlib.import_module(modname)
    out = [f"### `{modname}`", ""]
    for block in markdown(module.__doc__):
        out += [block, ""]
    names = list(module.__all__)
    if modname in REEXPORTS:
        listed = ", ".join(f"`{n}`" for n in names)
        return out + [f"Re-exports (documented with their modules below): {listed}.", ""]
    sources = [module]
    if modname == "wxio.client":
        assert sorted(CLIENT_ORDER) == sorted(names), "CLIENT_ORDER must list wxio.client.__all__"
        names = CLIENT_ORDER
        sources += [
            importlib.import_module(f"wxio.client.{m.name}")
            for m in pkgutil.iter_modules(module.__path__)
        ]
    # Functions and constants as one list, classes as sections after it.
    plain = [n for n in names if not inspect.isclass(getattr(module, n))]
    classes = [n for n in names if inspect.isclass(getattr(module, n))]
    if modname == "wxio.client":
        plain, classes = [], names  # in CLIENT_ORDER, aliases among the classes
    for name in plain:
        out += render_name(module, name, sources)
    for name in classes:
        obj = getattr(module, name)
        if isinstance(obj, type) and obj.__name__ != name:  # another name of a class
            doc, _ = assignment(name, sources)
            out += bullet(f"`{name}` = `{obj.__name__}`", markdown(doc)) + [""]
            continue
        out += render_name(module, name, sources)
    return out


def render(block: str) -> str:
    """The Markdown of one generated block (without its markers)."""
    lines: list[str] = []
    for modname in BLOCKS[block]:
        lines += render_module(modname)
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    # Trailing blanks of bullet lists and paragraphs are noise.
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def current(text: str, block: str) -> str:
    begin, end = BEGIN.format(name=block), END.format(name=block)
    assert begin in text and end in text, f"docs/api.md has no markers for {block}"
    return text[text.index(begin) + len(begin) : text.index(end)].strip()


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("block", list(BLOCKS))
def test_reference_matches_the_docstrings(block: str) -> None:
    text = API_MD.read_text()
    expected = render(block)
    if os.environ.get("WXIO_UPDATE_DOCS") == "1":
        begin, end = BEGIN.format(name=block), END.format(name=block)
        start = text.index(begin) + len(begin)
        text = text[:start] + "\n\n" + expected + "\n\n" + text[text.index(end) :]
        API_MD.write_text(text)
    assert current(API_MD.read_text(), block) == expected, (
        f"docs/api.md's {block} reference is stale: "
        "WXIO_UPDATE_DOCS=1 .venv/bin/pytest tests/test_docs_api.py"
    )


def listed_modules(text: str) -> list[str]:
    """The modules docs/api.md has a reference section for."""
    return re.findall(r"^### `(wxio\.(?:client|protocol)[\w.]*)`$", text, re.M)


def test_every_public_name_is_in_the_reference() -> None:
    """Every name exported by wxio.client and by each protocol module listed in docs/api.md
    appears there as code, and the listed protocol modules are all of the public ones."""
    text = API_MD.read_text()
    modules = listed_modules(text)
    assert "wxio.client" in modules
    missing = []
    for modname in modules:
        module = importlib.import_module(modname)
        for name in module.__all__:
            if not re.search(rf"`{re.escape(name)}\b", text):
                missing.append(f"{modname}.{name}")
    assert missing == [], f"not in docs/api.md: {missing}"

    import wxio.protocol

    public = {
        m.name
        for m in pkgutil.walk_packages(wxio.protocol.__path__, "wxio.protocol.")
        if not any(part.startswith("_") for part in m.name.split("."))
    } | {"wxio.protocol"}
    listed = {m for m in modules if m.startswith("wxio.protocol")}
    assert listed == public - UNLISTED, "docs/api.md must list every public protocol module"


def protocol_example() -> str:
    text = API_MD.read_text()
    section = text.index("## The protocol layer")
    start = text.index("```python", section) + len("```python")
    return text[start : text.index("```", start)]


def test_protocol_example_runs() -> None:
    """The sans-IO example in docs/api.md runs as written (its asserts hold)."""
    exec(compile(protocol_example(), "docs/api.md", "exec"), {"__name__": "docs_example"})
