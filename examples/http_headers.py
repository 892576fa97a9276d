"""The asyncio docs' "get HTTP headers" example, with ``asyncstreams`` in place of ``asyncio``.

The same code runs under ``asyncio.run``, uvloop and ``trio.run``, for http and https::

    python examples/http_headers.py http://example.com/path/page.html --backend trio
    python examples/http_headers.py https://example.com/path/page.html
"""

from __future__ import annotations

import functools
import urllib.parse

import _run

import asyncstreams


# --8<-- [start:headers]
async def print_http_headers(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        reader, writer = await asyncstreams.open_connection(
            parts.hostname, parts.port or 443, ssl=True
        )
    else:
        reader, writer = await asyncstreams.open_connection(parts.hostname, parts.port or 80)

    query = f"HEAD {parts.path or '/'} HTTP/1.0\r\nHost: {parts.hostname}\r\n\r\n"

    writer.write(query.encode("latin-1"))
    while True:
        line = await reader.readline()
        if not line:
            break

        text = line.decode("latin1").rstrip()
        if text:
            print(f"HTTP header> {text}")

    # Ignore the body, close the socket
    writer.close()
    await writer.wait_closed()


# --8<-- [end:headers]

if __name__ == "__main__":
    parser = _run.parser(__doc__)
    parser.add_argument("url")
    args = parser.parse_args()
    _run.run(functools.partial(print_http_headers, args.url), args.backend)
