"""HTTP/1.1 message heads, parsed and written the same way by the server and the client.

Only what a gossip node speaks: a start line, header fields, a ``Content-Length`` body. No
chunked bodies, no trailers, no obsolete line folding: each is refused with a reason, because
each is also a classic way to smuggle one request inside another.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass

__all__ = ["Head", "HeadError", "parse_head", "body_length", "keep_alive", "response_head", "SERVER_NAME"]

#: What the node calls itself in ``Server`` and ``User-Agent``.
SERVER_NAME = "gossip-http/1"
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DIGITS = re.compile(r"[0-9]{1,30}")  # longer is no length, just an attack
_VERSION = re.compile(rb"HTTP/1\.[01]")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class HeadError(Exception):
    """A message head that cannot be accepted; ``status`` is the answer a server gives."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed head: the three parts of the start line, and the header fields in order.

    For a request the start line is (method, target, version); for a response it is
    (version, status, reason). Header names are lower case.
    """

    start: tuple[str, str, str]
    fields: tuple[tuple[str, str], ...]
    #: Each name once, the values of repeated fields joined by ", " (built in one pass: a
    #: head may hold thousands of tiny fields, and a lookup per field would be quadratic).
    joined: dict[str, str]

    def get(self, name: str) -> str | None:
        """The field's value (several joined by ", "), or None."""
        return self.joined.get(name)

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.fields if n == name]


def parse_head(data: bytes, *, request: bool) -> Head:
    """Parse a head (everything before the blank line, without it).

    Raises:
        HeadError: malformed (``status`` 400: an HTTP version other than 1.0 and 1.1 is a
            client's mistake too, so that a 5xx always means the node's fault).
    """
    lines = data.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) != 3:
        raise HeadError("malformed start line")
    if request:
        method, target, version = lines[0].split(b" ") if lines[0].count(b" ") == 2 else (b"", b"", b"")
        if not _TOKEN.fullmatch(method) or not target or b" " in target or _BAD_VALUE.search(target):
            raise HeadError("malformed request line")
        if not _VERSION.fullmatch(version):
            raise HeadError(f"unsupported HTTP version {version[:16]!r}; this node speaks HTTP/1.1")
    else:
        version, status, _ = parts
        if not _VERSION.fullmatch(version) or len(status) != 3 or not status.isdigit():
            raise HeadError("malformed status line")
    fields = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            # Includes "Name : value" and folded lines: both smuggle headers past proxies.
            raise HeadError("malformed header line")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise HeadError("control characters in a header value")
        fields.append((name.decode("ascii").lower(), value.decode("latin-1")))
    joined: dict[str, str] = {}
    for key, text in fields:
        joined[key] = f"{joined[key]}, {text}" if key in joined else text
    start = tuple(p.decode("latin-1") for p in parts)
    return Head(start=(start[0], start[1], start[2]), fields=tuple(fields), joined=joined)


def body_length(head: Head, *, max_body: int) -> int:
    """The body's length from ``Content-Length`` (0 without one).

    Raises:
        HeadError: chunked (411), a bad or conflicting length (400), too large (413).
    """
    if head.get("transfer-encoding") is not None:
        raise HeadError("chunked bodies are not accepted; send a Content-Length", 411)
    values = {v.strip() for v in head.get_all("content-length")}
    if not values:
        return 0
    text = values.pop()
    if values or not _DIGITS.fullmatch(text):
        raise HeadError("invalid Content-Length header")
    length = int(text)
    if length > max_body:
        raise HeadError(f"body of {length} bytes exceeds the limit of {max_body} bytes", 413)
    return length


def keep_alive(head: Head, version: str) -> bool:
    """Whether the connection stays open after this message (HTTP/1.1 yes, 1.0 no, unless said)."""
    tokens = {t.strip().lower() for t in (head.get("connection") or "").split(",")}
    if "close" in tokens:
        return False
    return version == "HTTP/1.1" or "keep-alive" in tokens


def response_head(status: int, length: int | None, content_type: str, headers: dict[str, str], *, close: bool) -> bytes:
    """The head of an answer, blank line included (``length`` None: the body ends when the
    connection closes, as a stream's does; ``close`` must then be true)."""
    reason = http.client.responses.get(status, "Unknown")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Server: {SERVER_NAME}",
        f"Content-Type: {content_type}",
        *([] if length is None else [f"Content-Length: {length}"]),
        "X-Content-Type-Options: nosniff",
    ]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
