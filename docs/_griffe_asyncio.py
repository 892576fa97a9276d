"""A griffe extension for the API reference: asyncio links, and Sphinx roles as Markdown.

The docstrings are written with Sphinx roles (``:meth:`drain```); mkdocstrings renders
Markdown. This extension, run by mkdocstrings while it loads ``asyncstreams``:

* turns each role into a link: to asyncio's documentation for ``asyncio.*`` names, to
  anyio's for ``anyio.*``, to this reference for asyncstreams' own public objects
  (relative names are looked up in the enclosing class), else into plain code;
* ends the docstring of every object that mirrors a documented asyncio one with a link
  to it, e.g. ``StreamReader.readuntil`` to ``asyncio.StreamReader.readuntil``.

The builds are offline, so the asyncio anchors are listed here rather than read from
Python's ``objects.inv``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import griffe

PYTHON_DOCS = "https://docs.python.org/3/library/"
ANYIO_API = "https://anyio.readthedocs.io/en/stable/api.html#"

#: The page of asyncio's documentation that documents each asyncio name.
ASYNCIO_PAGES = {
    "open_connection": "asyncio-stream.html",
    "start_server": "asyncio-stream.html",
    "open_unix_connection": "asyncio-stream.html",
    "start_unix_server": "asyncio-stream.html",
    "StreamReader": "asyncio-stream.html",
    "StreamWriter": "asyncio-stream.html",
    "Server": "asyncio-eventloop.html",
    "loop": "asyncio-eventloop.html",
    "BaseTransport": "asyncio-protocol.html",
    "WriteTransport": "asyncio-protocol.html",
    "Transport": "asyncio-protocol.html",
    "BufferedProtocol": "asyncio-protocol.html",
    "IncompleteReadError": "asyncio-exceptions.html",
    "LimitOverrunError": "asyncio-exceptions.html",
    "CancelledError": "asyncio-exceptions.html",
}

#: What asyncio documents of each class that asyncstreams mirrors.
MIRRORED_MEMBERS = {
    "StreamReader": (
        "asyncio.StreamReader",
        {"feed_eof", "read", "readline", "readexactly", "readuntil", "at_eof"},
    ),
    "StreamWriter": (
        "asyncio.StreamWriter",
        {
            "write", "writelines", "close", "can_write_eof", "write_eof", "transport",
            "get_extra_info", "drain", "start_tls", "is_closing", "wait_closed",
        },
    ),
    "Server": (
        "asyncio.Server",
        {
            "close", "close_clients", "abort_clients", "start_serving", "serve_forever",
            "is_serving", "wait_closed", "sockets",
        },
    ),
}  # fmt: skip

#: StreamTransport's methods, documented on asyncio's BaseTransport or WriteTransport.
TRANSPORT_MEMBERS = {
    "close": "BaseTransport",
    "is_closing": "BaseTransport",
    "get_extra_info": "BaseTransport",
    **dict.fromkeys(
        (
            "abort", "can_write_eof", "get_write_buffer_limits", "get_write_buffer_size",
            "set_write_buffer_limits", "write", "writelines", "write_eof",
        ),
        "WriteTransport",
    ),
}  # fmt: skip

MIRRORED_FUNCTIONS = {
    "open_connection",
    "start_server",
    "open_unix_connection",
    "start_unix_server",
}

ROLE = re.compile(r":(?:func|meth|class|exc|attr|data|obj|mod):`(?P<tilde>~?)(?P<target>[^`]+)`")


def asyncio_url(name: str) -> str | None:
    """The URL of asyncio's documentation for ``asyncio.X[.y]``, if it documents it."""
    parts = name.split(".")
    if parts[0] != "asyncio" or len(parts) < 2 or parts[1] not in ASYNCIO_PAGES:
        return None
    return f"{PYTHON_DOCS}{ASYNCIO_PAGES[parts[1]]}#{name}"


def _public_class(obj: griffe.Object) -> griffe.Object | None:
    """The public asyncstreams class *obj* is or belongs to."""
    while obj is not None and not obj.is_class:
        obj = obj.parent  # type: ignore[assignment]
    return obj


class AsyncioLinks(griffe.Extension):
    def __init__(self) -> None:
        super().__init__()
        self._public: set[str] = set()

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "asyncstreams":
            return
        self._public = {name for name in pkg.members if not name.startswith("_")}
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = self._convert(obj.docstring.value, obj)
            link = self._mirror_of(obj)
            if link is not None:
                text = obj.docstring.value if obj.docstring is not None else ""
                note = f"asyncio's documentation: {link}"
                value = f"{text}\n\n{note}" if text else note
                obj.docstring = griffe.Docstring(value, parent=obj)

    def _mirror_of(self, obj: griffe.Object) -> str | None:
        parent = obj.parent
        if obj.is_function and parent is not None and parent.is_module:
            if obj.name in MIRRORED_FUNCTIONS:
                return _link(f"asyncio.{obj.name}")
            return None
        if obj.is_class and obj.name in MIRRORED_MEMBERS:
            return _link(MIRRORED_MEMBERS[obj.name][0])
        if obj.is_class and obj.name == "StreamTransport":
            return _link("asyncio.Transport")
        if parent is None or not parent.is_class:
            return None
        if parent.name in MIRRORED_MEMBERS:
            asyncio_name, members = MIRRORED_MEMBERS[parent.name]
            if obj.name in members:
                return _link(f"{asyncio_name}.{obj.name}")
        if parent.name == "StreamTransport" and obj.name in TRANSPORT_MEMBERS:
            return _link(f"asyncio.{TRANSPORT_MEMBERS[obj.name]}.{obj.name}")
        return None

    def _convert(self, text: str, obj: griffe.Object) -> str:
        def replace(match: re.Match[str]) -> str:
            target = match["target"]
            shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
            return self._reference(target, shown, obj)

        # RST's "``x``\ s" (an escaped space, to glue a suffix on) reads "x s" in Markdown.
        return ROLE.sub(replace, text).replace("\\ ", "")

    def _reference(self, target: str, shown: str, obj: griffe.Object) -> str:
        code = f"`{shown}`"
        url = asyncio_url(target) or asyncio_url(f"asyncio.{target}")
        if target.startswith("anyio."):
            return f"[{code}]({ANYIO_API}{target})"
        if target.startswith("asyncstreams."):
            name = target.split(".", 1)[1]
            if name.split(".")[0] in self._public:
                return f"[{code}][asyncstreams.{name}]"
            return code
        if target in self._public and target not in ("IncompleteReadError", "LimitOverrunError"):
            return f"[{code}][asyncstreams.{target}]"
        cls = _public_class(obj)
        if cls is not None and cls.name in self._public and target in cls.members:
            return f"[{code}][asyncstreams.{cls.name}.{target}]"
        if url is not None:
            return f"[{code}]({url})"
        return code


def _link(name: str) -> str:
    url = asyncio_url(name)
    assert url is not None, name
    return f"[`{name}`]({url})"


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    for member in obj.members.values():
        if member.is_alias:
            continue
        assert isinstance(member, griffe.Object)
        yield member
        if member.is_module or member.is_class:
            yield from _walk(member)
