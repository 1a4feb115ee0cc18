"""``gossip``: the command-line client of a running node, and ``gossip init`` to make its config.

Every subcommand but ``init`` talks to a node's client API over HTTP (``/v1/...``), proving
that it holds the network's key with the :data:`~gossip.auth.CLIENT_AUTH_HEADER` header: the
password itself never travels. The node and the credentials come from ``server.json``
(``--config``), or from ``--node`` and ``--network``/``--password``.

Rules for what the user sees:

- Success: exit status 0 and the result on stdout (one guid, one line, a table or JSON).
- Failure: exactly one line on stderr, ``gossip: error: <what went wrong>; <what to do>``, and
  exit status 1 (something failed at run time) or 2 (the arguments are wrong). Never a
  traceback; argparse's own usage errors keep argparse's message and status 2.
- Text that came from the network (messages, names) is shown with control characters
  replaced, so that a gossip cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import ipaddress
import json
import os
import secrets
import shlex
import ssl
import sys
import time
import unicodedata
import urllib.parse
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import __version__
from .auth import CLIENT_AUTH_HEADER, DEFAULT_WINDOW, client_auth_header, derive_key, key_id, seal_key
from .configfile import load_config, read_secret_file, save_config
from .errors import AnswerTooLarge, ConfigError, ErrorCode, GossipError, LocalProtocolError, TransportError
from .http import DEFAULT_PORT, REGISTER_WAIT
from .model import Network, NodeConfig, check_network_name
from .client import Client, NodeError, NotANode
from .http.api import split_hostport
from .http.server import hostport

__all__ = [
    "main",
    "NodeClient",
    "CliError",
    "format_table",
    "gossip_table",
    "peers_table",
    "DEFAULT_CONFIG",
    "MAX_ANSWER",
    "EXIT_FAILURE",
    "EXIT_USAGE",
]

#: The config file used when ``--config`` is not given.
DEFAULT_CONFIG = "./server.json"
#: Exit status when something failed at run time (node unreachable, refused, bad config).
EXIT_FAILURE = 1
#: Exit status when the arguments are wrong (as argparse does).
EXIT_USAGE = 2

#: Seconds a call to the node may take in all (connect, send, the whole answer); ``register``
#: waits longer (the node waits for the other). ``--timeout`` overrides both.
TIMEOUT = 10.0
REGISTER_TIMEOUT = REGISTER_WAIT + 20.0
#: Widest message shown in the ``status`` table, in terminal columns.
MSG_WIDTH = 40
_RUN_NODE = "python -m gossip.http --config"


class CliError(Exception):
    """A failure to report as one line on stderr.

    Args:
        message: what went wrong and what to do, without the ``gossip: error:`` prefix.
        status: the exit status (:data:`EXIT_FAILURE` or :data:`EXIT_USAGE`).
    """

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------- talking to a node
#: Largest answer read, in bytes (``--max-answer`` MiB): a status of 100,000 gossips is about
#: 35 MB of JSON. Past it the call stops reading at once, whatever the node sends.
MAX_ANSWER = 64 << 20


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def _code(data: Any) -> ErrorCode | None:
    """The ``code`` of an error answer (None: none, or not one this version knows)."""
    return ErrorCode.from_wire(data.get("code")) if isinstance(data, dict) else None


class NodeClient:
    """Authenticated JSON calls to one node's client API.

    Args:
        url: the node's base URL, e.g. ``http://127.0.0.1:8470`` (no path).
        network: the network to authenticate for.
        key: that network's key (:func:`gossip.auth.derive_key`).
        start_hint: the command that starts this node, shown when it does not answer.
        timeout: seconds every call may take in all, whatever the call asks (None: as asked).
        max_answer: most answer bytes read (:data:`MAX_ANSWER`).
    """

    def __init__(
        self,
        url: str,
        network: str,
        key: bytes,
        *,
        start_hint: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float | None = None,
        max_answer: int = MAX_ANSWER,
    ) -> None:
        self.url = url.rstrip("/")
        self.network = network
        self.key = key
        self.ssl_context = ssl_context
        self.start_hint = start_hint
        self.timeout = timeout
        self.max_answer = max_answer
        #: The public client that does the talking (one persistent connection).
        self.client = Client(
            self.url, network=network, key=key, ssl_context=ssl_context, timeout=timeout or TIMEOUT,
            max_answer=max_answer,
        )

    def call(self, method: str, path: str, payload: Any = None, *, timeout: float = TIMEOUT,
             query: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Send one request, signed with a fresh timestamp and nonce.

        Args:
            method: ``GET`` or ``POST``.
            path: the API path, e.g. ``/v1/gossip`` (no query string).
            payload: the JSON body to send, or None for none.
            timeout: seconds the whole call may take (connect, send, the whole answer),
                unless the client was given its own.
            query: query parameters (signed with the rest).

        Returns:
            The HTTP status and the answer's JSON (None when it is not JSON).

        Raises:
            CliError: nothing (whole) answered in time, or the answer is over ``max_answer``.
        """
        status, data, _ = self.request(method, path, payload, timeout=timeout, query=query)
        return status, data

    def request(self, method: str, path: str, payload: Any = None, *, timeout: float = TIMEOUT,
                query: dict[str, Any] | None = None) -> tuple[int, Any, dict[str, str]]:
        """:meth:`call`, with the answer's headers (lower-case names) too."""
        wait = self.timeout if self.timeout is not None else timeout
        with self.reporting(path, wait):
            return self.client.request(method, path, payload, query=query, timeout=wait)

    @contextlib.contextmanager
    def reporting(self, path: str, wait: float) -> Iterator[None]:
        """Turn the client's failures to reach the node into one-line CLI errors."""
        try:
            yield
        except AnswerTooLarge as exc:
            raise CliError(
                f"the node at {self.url} answered {path} with more than {_mib(exc.limit)}; stopped reading."
                " Pass --max-answer MIB to accept more"
            ) from None
        except TransportError as exc:
            if exc.timed_out:
                raise CliError(
                    f"the node at {self.url} did not answer {path} in full within {wait:g} s;"
                    " is it overloaded, or not a gossip node? --timeout SECONDS waits longer"
                ) from None
            hint = (
                f"is it running? start it with: {self.start_hint}"
                if self.start_hint
                else "is it running, and is --node right?"
            )
            raise CliError(f"cannot reach the node at {self.url}: {exc.reason}; {hint}") from None
        except NotANode as exc:
            raise CliError(
                f"unexpected answer from {self.url}/healthz: HTTP {exc.status}; is --node the address of a gossip node?"
            ) from None
        except LocalProtocolError as exc:
            raise CliError(f"--node: {exc}", EXIT_USAGE) from None

    def fail(self, status: int, data: Any, path: str) -> CliError:
        """The error for an answer that is not the expected success, chosen by its ``code``.

        An error body without a code (a node older than the codes) is taken by its status;
        an answer that is no error body at all is not from a gossip node.
        """
        error = data.get("error") if isinstance(data, dict) else None
        text = error if isinstance(error, str) and error else None
        if text is None:
            return CliError(
                f"unexpected answer from {self.url}{path}: HTTP {status}; is --node the address of a gossip node?"
            )
        code = _code(data) or ErrorCode.for_status(status)
        url = self.url
        match code:
            case ErrorCode.CLOCK_SKEW:
                return CliError(
                    f"the node at {url} refused our request: this machine's clock and the node's differ"
                    f" too much ({text}); set both clocks right (NTP)"
                )
            case ErrorCode.REPLAYED:
                return CliError(f"the node at {url} took our request for a replay ({text}); try again")
            case ErrorCode.BAD_MAC | ErrorCode.WRONG_NETWORK:
                return CliError(
                    f"the node refused our credentials for network {self.network}: wrong network or password"
                    f" ({text}); check --network and --password, or the config"
                )
            case ErrorCode.NOT_FOUND | ErrorCode.METHOD_NOT_ALLOWED:
                return CliError(
                    f"unexpected answer from {url}{path}: HTTP {status} ({text}); is --node the address of a gossip node?"
                )
            case ErrorCode.BAD_REQUEST:
                return CliError(f"the node refused the request: {text}")
            case ErrorCode.TOO_LARGE:
                return CliError(f"the node refused the request as too large: {text}")
            case ErrorCode.QUOTA:
                return CliError(f"the node refused the request: a limit of the network was reached ({text}); try later")
            case ErrorCode.TIMEOUT:
                return CliError(f"the node at {url} gave up waiting for our request ({text}); try again")
            case ErrorCode.UNAVAILABLE:
                return CliError(f"the node at {url} is starting or busy ({text}); try again shortly")
            case ErrorCode.LOCAL_ONLY:
                return CliError(f"the node at {url} refused: {text}")
            case ErrorCode.TOO_MANY_STREAMS:
                return CliError(
                    f"the node at {url} has too many watchers open ({text}); stop another `gossip watch` or try later"
                )
            case ErrorCode.STORAGE_FAILED:
                return CliError(
                    f"the node at {url} could not write to its disk ({text}); nothing was kept, try again"
                    " once its disk is fixed"
                )
            case ErrorCode.UNKNOWN_KEY | ErrorCode.PRIMARY_KEY | ErrorCode.LAST_KEY | ErrorCode.KEY_IN_USE \
                    | ErrorCode.UNKNOWN_PEER | ErrorCode.AMBIGUOUS_PEER | ErrorCode.PEER_NOT_DEAD:
                return CliError(f"the node refused: {text}")  # its reason says what to do
            case ErrorCode.INTERNAL:
                return CliError(f"the node at {url} failed (HTTP {status}: {text}); its log has the details")
        return CliError(f"the node at {url} answered HTTP {status}: {text}")

    def expect(self, method: str, path: str, payload: Any, ok: int, shape: type, *, timeout: float = TIMEOUT) -> Any:
        """:meth:`call`, then insist on status ``ok`` and a JSON answer of type ``shape``."""
        status, data = self.call(method, path, payload, timeout=timeout)
        if status != ok:
            raise self.fail(status, data, path)
        if not isinstance(data, shape):
            raise CliError(
                f"the node at {self.url} answered {path} with something that is not a JSON"
                f" {shape.__name__}; is --node the address of a gossip node?"
            )
        return data


# ---------------------------------------------------------------------- arguments
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gossip",
        exit_on_error=False,  # a mistyped command reaches _parse, which suggests the right one
        description="Client of a gossip node: create gossip, register with other nodes, see the"
        " network and the gossip a node holds. Start a node with: python -m gossip.http",
    )
    parser.add_argument("--version", action="version", version=f"gossip {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def password_options(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--password", help="the network password (prefer GOSSIP_PASSWORD or --password-file)")
        group.add_argument("--password-file", metavar="PATH", help="read the network password from this file")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--node", metavar="URL", help="the node to talk to (default: the one --config describes)")
    common.add_argument("--config", metavar="PATH", help=f"the node's config (default {DEFAULT_CONFIG})")
    common.add_argument("--network", help="authenticate for this network (default: the config's first)")
    common.add_argument("--tls-ca", metavar="PATH", help="the node serves HTTPS: verify it with this CA (PEM)")
    common.add_argument(
        "--timeout", type=_positive(float), metavar="SECONDS",
        help=f"most seconds a call to the node may take in all (default {TIMEOUT:g}; register {REGISTER_TIMEOUT:g})",
    )
    common.add_argument(
        "--max-answer", type=_positive(int), metavar="MIB", default=MAX_ANSWER >> 20,
        help=f"largest answer read from the node, in MiB (default {MAX_ANSWER >> 20})",
    )
    password_options(common)

    init = sub.add_parser(
        "init", help="write a new config (server.json) for a node",
        description="Write a new node config: a fresh guid and the key derived from the password"
        " (the password itself is not stored). Then start the node with python -m gossip.http.",
    )
    init.add_argument("--config", metavar="PATH", default=DEFAULT_CONFIG, help=f"where to write it (default {DEFAULT_CONFIG})")
    init.add_argument("--name", help="the node's name (default node-<guid prefix>)")
    init.add_argument("--network", default="default", help="the network's name (default 'default')")
    password_options(init)
    init.add_argument("--ip", default="127.0.0.1", help="address to listen on and advertise (default 127.0.0.1)")
    init.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    init.add_argument("--timer", type=float, default=1.0, help="seconds between gossip rounds (default 1)")
    init.add_argument("--max-peers", type=int, default=3, help="peers a new gossip is pushed to at once (default 3)")
    init.add_argument("--force", action="store_true", help="replace an existing config (a new node identity)")

    create = sub.add_parser("create", parents=[common], help="create a gossip on the node; prints its guid")
    create.add_argument("msg", metavar="MSG", help="the message text ('-' reads it from stdin)")

    register = sub.add_parser("register", parents=[common], help="register the node with another node")
    register.add_argument("address", metavar="HOST:PORT", help="the other node, e.g. 192.0.2.7:8470")

    network = sub.add_parser("network", parents=[common], help="the peers the node knows and their liveness")
    network.add_argument("--json", action="store_true", help="print the node's JSON list")

    status = sub.add_parser("status", parents=[common], help="the gossip the node holds")
    status.add_argument("--json", action="store_true", help="print the node's JSON list")
    status.add_argument("--limit", type=_positive(int), metavar="N",
                        help="at most N gossips: the newest N, or with --since the first N after it")
    status.add_argument("--since", type=_cursor, metavar="CURSOR", help="only gossip after this cursor")
    status.add_argument("--grep", metavar="TEXT", help="only gossip whose message or author holds TEXT (any case)")

    watch = sub.add_parser("watch", parents=[common], help="print each new gossip as the node learns it, until Ctrl-C")
    watch.add_argument("--json", action="store_true", help="one JSON object a line (the keys of status --json, and cursor)")
    watch.add_argument("--since", type=_cursor, metavar="CURSOR",
                       help="first what the node learnt after this cursor (resume without loss)")

    keys = sub.add_parser(
        "keys", parents=[common], help="rotate a network's password: list, install, use, remove keys",
        description="Rotate a network's password without downtime: 'install' the new one (every node"
        " then accepts both), wait until 'list' shows it on every node, 'use' it (nodes sign with it),"
        " wait again, then 'remove' the old one. Each step acts on the node and spreads to the others.",
    )
    keys.add_argument("action", choices=("list", "install", "use", "remove"), help="what to do")
    keys.add_argument("--json", action="store_true", help="list: print the node's JSON list")
    group = keys.add_mutually_exclusive_group()
    group.add_argument(
        "--key-password", metavar="PW", help="the password of the key to act on (prefer GOSSIP_KEY_PASSWORD or --key-password-file)"
    )
    group.add_argument("--key-password-file", metavar="PATH", help="read the password of the key to act on from this file")
    sub.add_parser(
        "leave", parents=[common], help="announce a graceful leave and stop the node",
        description="The node tells its peers that it leaves (they show it 'left', not dead), then"
        " stops. Started again, it rejoins.",
    )
    force_leave = sub.add_parser(
        "force-leave", parents=[common], help="mark a dead node as left on every node",
        description="Mark a node that is dead (not answering) as left: the mark spreads to every"
        " node, which stops retrying it and forgets it after --forget-after. Refused for a node"
        " that is alive or suspect.",
    )
    force_leave.add_argument("peer", metavar="NAME|GUID", help="the dead node, as gossip network lists it")
    delete = sub.add_parser(
        "delete", parents=[common], help="delete a gossip on every node: a tombstone that spreads"
    )
    delete.add_argument("guid", metavar="GUID", help="the gossip's guid (see gossip status)")
    return parser


def _cursor(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise argparse.ArgumentTypeError(f"a cursor is a whole number (as status --json shows), not {text[:40]!r}")
    return int(text)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with a hint in the usage error for the slips a newcomer makes.

    Raises:
        SystemExit: argparse's usage error (status 2), or --help and --version (status 0).
    """
    try:
        args, extra = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:  # the command (the main parser's only argument)
        word = next((arg for arg in argv if not arg.startswith("-")), None)
        close = difflib.get_close_matches(word, _COMMANDS, n=1) if word is not None else []
        parser.error(f"{exc}; did you mean: {close[0]}?" if close else str(exc))
    if extra:
        message = f"unrecognized arguments: {' '.join(extra)}"
        if args.command == "create" and not any(arg.startswith("-") for arg in extra):
            text = " ".join([args.msg, *extra])
            message += f"; quote a message with spaces: gossip create {_quote(text)}"
        parser.error(message)
    return args


def _quote(text: str) -> str:
    """``text`` as one shell word, in double quotes when they need no escapes (as people type it)."""
    return f'"{text}"' if not set(text) & set('"$`\\!') else shlex.quote(text)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` above 0 (and finite)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{' whole' if kind is int else ''} number: {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _given_secret(value: str | None, path: str | None, flag: str) -> str | None:
    """A secret given by ``FLAG PW`` (``value``) or ``FLAG-file PATH`` (``path``), if either."""
    if value is not None:
        if not value:
            raise CliError(f"{flag} is empty", EXIT_USAGE)
        return str(value)
    if path is not None:
        return read_secret_file(path, f"{flag}-file")
    return None


def _password(args: argparse.Namespace) -> str | None:
    """The password given by --password or --password-file (not the environment)."""
    return _given_secret(args.password, args.password_file, "--password")


def _env_password() -> str | None:
    return os.environ.get("GOSSIP_PASSWORD") or None


def _check_network(name: str) -> str:
    try:
        return check_network_name(name)
    except LocalProtocolError as exc:
        raise CliError(f"--network: {exc}", EXIT_USAGE) from None


def _node_url(text: str) -> str:
    """``--node`` as a base URL; ``HOST:PORT`` alone means ``http://HOST:PORT``."""
    url = text.strip() if "://" in text else "http://" + text.strip()
    example = f"like http://127.0.0.1:{DEFAULT_PORT}"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise CliError(f"--node {text!r} is not a node URL {example}", EXIT_USAGE) from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise CliError(f"--node {text!r} is not a node URL {example}", EXIT_USAGE)
    return f"{parts.scheme}://{parts.netloc}"


def _check_hostport(text: str) -> str:
    """Check the form of ``HOST:PORT`` (the node resolves the name, not this client), by the
    node's own rule (:func:`~gossip.http.api.split_hostport`)."""
    try:
        split_hostport(text)
    except LocalProtocolError:
        raise CliError(f"{text!r} is not HOST:PORT of a node (for example 127.0.0.1:{DEFAULT_PORT})", EXIT_USAGE) from None
    return text.strip()


def _connect(args: argparse.Namespace) -> NodeClient:
    """The node to talk to and the credentials to use, from the flags and the config.

    The config is read when ``--config`` is given, or when the flags alone do not name the
    node, the network and a password.
    """
    node_url = _node_url(args.node) if args.node is not None else None
    network = _check_network(args.network) if args.network is not None else None
    password = _password(args)
    path = Path(args.config or DEFAULT_CONFIG)
    shown = args.config or DEFAULT_CONFIG
    config: NodeConfig | None = None
    if args.config is not None or node_url is None or network is None or (password or _env_password()) is None:
        if not path.exists():
            raise CliError(
                f"no config at {shown}: run 'gossip init --config {shown} --name NAME --network NET"
                " --password PW', or pass --node URL with --network NET and --password PW"
            )
        try:
            config = load_config(path)
        except ConfigError as exc:
            raise CliError(str(exc)) from None
    start_hint = f"{_RUN_NODE} {shlex.quote(shown)}" if config is not None and node_url is None else None
    if network is None:
        assert config is not None
        network = config.networks[0].name
    if password is not None:
        key = derive_key(network, password)
    elif config is not None and network in config.network_names:
        key = config.network(network).key
    elif (env := _env_password()) is not None:
        key = derive_key(network, env)
    else:
        raise CliError(
            f"no password for network {network}: {shown} is not on it; pass --password or"
            " --password-file, or set GOSSIP_PASSWORD",
            EXIT_USAGE,
        )
    if node_url is None:
        assert config is not None
        host = config.ip
        if ipaddress.ip_address(host).is_unspecified:  # listens everywhere: talk to it here
            host = "::1" if ":" in host else "127.0.0.1"
        scheme = "https" if args.tls_ca else "http"
        node_url = f"{scheme}://{hostport(host, config.port)}"
    ssl_context = None
    if args.tls_ca:
        try:
            ssl_context = ssl.create_default_context(cafile=args.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"cannot load --tls-ca {args.tls_ca}: {exc}", EXIT_USAGE) from None
    return NodeClient(
        node_url, network, key, start_hint=start_hint, ssl_context=ssl_context,
        timeout=args.timeout, max_answer=int(args.max_answer) << 20,
    )


# ---------------------------------------------------------------------- output
def _out(text: str) -> None:
    """Print to stdout, replacing what the terminal's encoding cannot show."""
    try:
        print(text)
    except UnicodeEncodeError:
        encoding = getattr(sys.stdout, "encoding", None) or "ascii"
        print(text.encode(encoding, "replace").decode(encoding))


def _print_json(data: Any) -> None:
    try:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    except UnicodeEncodeError:
        print(json.dumps(data, indent=2, ensure_ascii=True))


_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def _printable(value: Any) -> str:
    """One line of harmless text: newlines as ⏎, other control characters as �."""
    text = "" if value is None else str(value)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    out = []
    for c in text:
        if c == "\n":
            out.append("⏎")
        elif c in _BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs"):
            out.append("\ufffd")
        else:
            out.append(c)
    return "".join(out)


def _width(text: str) -> int:
    """Terminal columns: wide (East Asian) characters take two, combining marks none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        for c in text
    )


def _clip(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` columns, ending in … when cut."""
    if _width(text) <= width:
        return text
    out, used = [], 0
    for c in text:
        w = _width(c)
        if used + w > width - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def _short_time(value: Any) -> str:
    """An ISO 8601 time as ``YYYY-MM-DD HH:MM:SS`` in UTC (as given when it does not parse)."""
    if not isinstance(value, str):
        return "-" if value is None else _printable(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return _printable(value)
    if when.tzinfo is not None:
        try:
            when = when.astimezone(timezone.utc)
        except OverflowError:  # year 1 at +01:00, from a node older than the date rules
            return _printable(value)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned by their widest cell, two spaces apart, no trailing spaces.

    Args:
        header: the column titles.
        rows: the cells, already one-line text.

    Returns:
        The table, one line per row after the header, without a final newline.
    """
    widths = [max(_width(cell) for cell in column) for column in zip(header, *rows)]
    return "\n".join(
        "  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths)).rstrip()
        for row in [header, *rows]
    )


def _field(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, dict) else None


_IN_SYNC = {True: "yes", False: "no", None: "?"}


def peers_table(peers: Sequence[Any]) -> str:
    """The human form of ``GET /v1/peers``: NAME, STATUS, IN SYNC, ADDRESS, LAST SEEN, GUID;
    the node itself first (status ``self``), then its peers by name."""
    own: list[list[str]] = []
    rows: list[list[str]] = []
    for peer in peers:
        ip, port = _field(peer, "ip"), _field(peer, "port")
        address = hostport(str(ip), port) if isinstance(ip, str) and isinstance(port, int) else "-"
        last_seen = _field(peer, "last_seen")
        itself = _field(peer, "self") is True
        in_sync = _field(peer, "in_sync")
        row = [
            _printable(_field(peer, "name")),
            "self" if itself else _printable(_field(peer, "status")),
            _IN_SYNC.get(in_sync, "?") if isinstance(in_sync, (bool, type(None))) else "?",
            _printable(address),
            "-" if itself else "never" if last_seen is None else _short_time(last_seen),
            _printable(_field(peer, "guid")),
        ]
        (own if itself else rows).append(row)
    rows.sort(key=lambda r: (r[0], r[3], r[5]))
    return format_table(["NAME", "STATUS", "IN SYNC", "ADDRESS", "LAST SEEN", "GUID"], own + rows)


def gossip_table(gossips: Sequence[Any]) -> str:
    """The human form of ``GET /v1/gossip``: WHEN (UTC), WHO, MSG, SHA2, GUID; oldest first."""
    ordered = sorted(
        gossips,
        key=lambda g: (
            _field(g, "date_time") is None,
            str(_field(g, "date_time") or ""),
            str(_field(g, "guid") or ""),
        ),
    )
    rows = []
    for g in ordered:
        complete = _field(g, "complete") is True and isinstance(_field(g, "sha2"), str)
        rows.append([
            _short_time(_field(g, "date_time")) if complete else "-",
            _printable(_field(g, "who_name")) if complete else "-",
            _clip(_printable(_field(g, "msg")), MSG_WIDTH) if complete else "(data not here yet)",
            _printable(_field(g, "sha2"))[:12] if complete else "pending",
            _printable(_field(g, "guid")),
        ])
    return format_table(["WHEN (UTC)", "WHO", "MSG", "SHA2", "GUID"], rows)


# ---------------------------------------------------------------------- the commands
def _cmd_init(args: argparse.Namespace) -> int:
    network = _check_network(args.network)
    password = _password(args) or _env_password()
    if password is None:
        raise CliError(
            "gossip init needs the network password: pass --password or --password-file, or set GOSSIP_PASSWORD",
            EXIT_USAGE,
        )
    path = Path(args.config)
    if (path.exists() or path.is_symlink()) and not args.force:
        raise CliError(
            f"{args.config} already exists; keep it (start it with: {_RUN_NODE} {shlex.quote(args.config)})"
            " or pass --force to replace it with a new node"
        )
    guid = str(uuid.uuid4())
    try:
        config = NodeConfig(
            node_guid=guid,
            node_name=args.name if args.name is not None else f"node-{guid[:8]}",
            networks=(Network(name=network, key=derive_key(network, password)),),
            ip=args.ip,
            port=args.port,
            gossip_timer=args.timer,
            gossip_max_peer_count=args.max_peers,
        )
    except LocalProtocolError as exc:
        raise CliError(f"bad option: {exc}", EXIT_USAGE) from None
    try:
        save_config(path, config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    _out(
        f"wrote {args.config}: node {_printable(config.node_name)} ({guid}) on network {network},"
        f" listening on {hostport(config.ip, config.port)}"
    )
    _out(f"start it with: {_RUN_NODE} {shlex.quote(args.config)}")
    return 0


def _cmd_create(args: argparse.Namespace) -> int:
    msg = args.msg
    if msg == "-":  # like $(cat): without the final newline
        msg = sys.stdin.read()
        msg = msg[:-1] if msg.endswith("\n") else msg
    if not msg.strip():
        raise CliError("the message is empty; give the text to gossip, e.g. gossip create 'hello'", EXIT_USAGE)
    client = _connect(args)
    gossip = client.expect("POST", "/v1/gossip", {"msg": msg}, 201, dict)
    _out(_printable(gossip.get("guid")))
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    guid = args.guid.strip().lower()
    try:
        guid = str(uuid.UUID(guid)) if len(guid) == 36 else ""
    except ValueError:
        guid = ""
    if not guid:
        raise CliError(
            f"{_printable(args.guid)!r} is not a gossip guid (8-4-4-4-12 hex digits, as gossip status shows)", EXIT_USAGE
        )
    client = _connect(args)
    status, data = client.call("POST", "/v1/gossip/delete", {"guid": guid})
    if status == 404:
        raise CliError(f"the node holds no gossip {guid} on network {client.network}; check the guid with: gossip status")
    if status != 200 or not isinstance(data, dict):
        raise client.fail(status, data, "/v1/gossip/delete")
    _out(f"deleted {guid}; the tombstone spreads to every node of network {client.network}")
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    address = _check_hostport(args.address)
    client = _connect(args)
    status, data = client.call("POST", "/v1/register", {"address": address}, timeout=REGISTER_TIMEOUT)
    error = data.get("error") if isinstance(data, dict) else None
    if status != 200 and isinstance(error, str) and error:
        # The node's text names the other node and says why ("<address> refused the
        # registration: ...", "<address> did not answer (...)"); the code says what to do.
        code = _code(data)
        if code is ErrorCode.PEER_REFUSED:
            cause = ErrorCode.from_wire(data.get("cause"))
            if cause is ErrorCode.CLOCK_SKEW:
                hint = "the clocks of both machines must agree within 15 minutes"
            elif cause is ErrorCode.REPLAYED:
                hint = "try again"
            else:
                hint = "both nodes need the same network and password"
            raise CliError(f"cannot register: {error}; {hint}")
        if code is ErrorCode.PEER_UNREACHABLE:
            raise CliError(f"cannot register: {error}; is a gossip node running there?")
    if status != 200:
        raise client.fail(status, data, "/v1/register")
    peer = data.get("peer") if isinstance(data, dict) else None
    if not isinstance(peer, dict):
        raise CliError(f"the node at {client.url} answered /v1/register without the peer; is it a gossip node?")
    name = _printable(peer.get("name"))
    where = hostport(str(peer.get("ip")), peer["port"]) if isinstance(peer.get("port"), int) else address
    _out(
        f"registered with {name} ({_printable(peer.get('guid'))}) at {_printable(where)}"
        f" on network {_printable(peer.get('network_name') or client.network)}"
    )
    return 0


def _show_list(args: argparse.Namespace, path: str, table: Callable[[list[Any]], str], empty: str) -> int:
    """GET a list from the node and print it: as JSON, as a table, or a hint when empty."""
    client = _connect(args)
    rows = client.expect("GET", path, None, 200, list)
    if args.json:
        _print_json(rows)
    elif not any(_field(row, "self") is not True for row in rows):  # nothing but the node itself
        _out(empty.format(network=client.network))
    else:
        _out(table(rows))
    return 0


def _cmd_network(args: argparse.Namespace) -> int:
    hint = "no peers known on network {network} yet; add one with: gossip register HOST:PORT"
    return _show_list(args, "/v1/peers", peers_table, hint)


def _cmd_status(args: argparse.Namespace) -> int:
    client = _connect(args)
    rows = _gossip_pages(client, since=args.since, limit=args.limit, grep=args.grep)
    if args.json:
        _print_json(rows)
    elif rows:
        _out(gossip_table(rows))
    elif args.since is None and args.grep is None:
        _out(f"no gossip on network {client.network} yet; create one with: gossip create MSG")
    else:
        _out(f"no gossip on network {client.network} matches")
    return 0


#: Rows asked for per page when listing (the node's cap is 10,000).
_PAGE = 5000


def _gossip_pages(client: NodeClient, *, since: int | None, limit: int | None, grep: str | None) -> list[Any]:
    """GOSSIP_STATUS a page at a time, so that no answer nears ``--max-answer``: after
    ``since`` oldest first, else newest first (then put back in cursor order)."""
    newest = since is None and limit is not None
    rows: list[Any] = []
    query: dict[str, Any] = {"after": since, "order": "newest" if newest else None, "q": grep}
    while limit is None or len(rows) < limit:
        query["limit"] = _PAGE if limit is None else min(_PAGE, limit - len(rows))
        status, page, headers = client.request("GET", "/v1/gossip", query=query)
        if status != 200:
            raise client.fail(status, page, "/v1/gossip")
        if not isinstance(page, list):
            raise CliError(f"the node at {client.url} answered /v1/gossip with something that is not a JSON list;"
                           " is --node the address of a gossip node?")
        rows.extend(page)
        nxt = headers.get("gossip-next", "")
        if not nxt.isdigit():  # the last page (or a node older than paging: everything at once)
            break
        query["before" if newest else "after"] = int(nxt)
    rows = rows if limit is None else rows[:limit]
    return rows[::-1] if newest else rows


def _cmd_watch(args: argparse.Namespace) -> int:
    client = _connect(args)
    try:
        with client.reporting("/v1/gossip/stream", client.timeout or TIMEOUT):
            try:
                for row in client.client.watch(since=args.since):
                    if args.json:
                        line = json.dumps(row, ensure_ascii=False)
                    else:
                        who, msg = _printable(row.get("who_name")), _one_line(str(row.get("msg")))
                        line = f"{_short_time(row.get('date_time'))}  {who}  {msg}"
                    _out(line)
                    sys.stdout.flush()
            except NotANode:
                raise
            except NodeError as exc:  # a refusal: by its code, as for every command
                raise client.fail(exc.status, {"error": str(exc), "code": exc.code}, "/v1/gossip/stream") from None
    except KeyboardInterrupt:  # Ctrl-C is how a watch ends: quietly, status 0
        pass
    return 0


def _key_password(args: argparse.Namespace) -> str:
    """The password of the key ``gossip keys`` acts on: --key-password, --key-password-file or
    GOSSIP_KEY_PASSWORD."""
    given = _given_secret(args.key_password, args.key_password_file, "--key-password")
    if given is not None:
        return given
    env = os.environ.get("GOSSIP_KEY_PASSWORD")
    if env:
        return env
    raise CliError(
        f"gossip keys {args.action} needs the password of the key: pass --key-password or"
        " --key-password-file, or set GOSSIP_KEY_PASSWORD",
        EXIT_USAGE,
    )


def keys_table(rows: Sequence[Any]) -> str:
    """``gossip keys list``: one line per key, the primary marked, with how many nodes hold it."""
    lines = ["KEY ID            PRIMARY  NODES"]
    for row in rows:
        mark = "yes" if _field(row, "primary") is True else ""
        held = f"{_printable(_field(row, 'nodes'))}/{_printable(_field(row, 'known'))}"
        unheard = _field(row, "unheard")
        note = f"  ({unheard} not heard from yet)" if isinstance(unheard, int) and unheard else ""
        lines.append(f"{_printable(_field(row, 'id')):<17} {mark:<8} {held}{note}")
    return "\n".join(lines)


def _cmd_keys(args: argparse.Namespace) -> int:
    if args.action == "list":
        client = _connect(args)
        rows = client.expect("GET", "/v1/keys", None, 200, list)
        if args.json:
            _print_json(rows)
        else:
            _out(keys_table(rows))
        return 0
    password = _key_password(args)
    client = _connect(args)
    key = derive_key(client.network, password)
    kid = key_id(key)
    payload: dict[str, Any] = {"op": args.action, "id": kid}
    if args.action == "install":
        # Sealed under the key this request is signed with: the new key never crosses in clear.
        payload["sealed"] = seal_key(client.key, key, nonce=secrets.token_bytes(16), context=client.network)
    answer = client.expect("POST", "/v1/keys", payload, 200, dict)
    changed = answer.get("changed") is not False
    done = {
        "install": ("installed key {id} on network {net}", "key {id} was installed already on network {net}"),
        "use": ("key {id} is now the primary key of network {net}", "key {id} was the primary key of network {net} already"),
        "remove": ("removed key {id} from network {net}", "removed key {id} from network {net}"),
    }[args.action][0 if changed else 1]
    _out(done.format(id=kid, net=client.network) + "; it spreads to the other nodes: `gossip keys list` shows how many hold it")
    return 0


def _cmd_leave(args: argparse.Namespace) -> int:
    client = _connect(args)
    data = client.expect("POST", "/v1/leave", {}, 200, dict)
    told, answered = data.get("told"), data.get("answered")
    networks = ", ".join(_printable(n) for n in data.get("networks") or [client.network])
    _out(
        f"{_printable(data.get('node_name'))} left network {networks}: told {_printable(told)} peers,"
        f" {_printable(answered)} took it; the node has stopped (start it again to rejoin)"
    )
    return 0


def _cmd_force_leave(args: argparse.Namespace) -> int:
    client = _connect(args)
    data = client.expect("POST", "/v1/force-leave", {"peer": args.peer}, 200, dict)
    peer = data.get("peer") if isinstance(data.get("peer"), dict) else {}
    who = f"{_printable(peer.get('name'))} ({_printable(peer.get('guid'))})"
    if data.get("changed") is True:
        _out(f"{who} is now marked left on network {client.network}; the other nodes learn it by gossip")
    else:
        _out(f"{who} had already left network {client.network}; nothing to do")
    return 0


_COMMANDS = {
    "init": _cmd_init,
    "create": _cmd_create,
    "register": _cmd_register,
    "network": _cmd_network,
    "status": _cmd_status,
    "keys": _cmd_keys,
    "leave": _cmd_leave,
    "force-leave": _cmd_force_leave,
    "watch": _cmd_watch,
    "delete": _cmd_delete,
}


def _one_line(text: str) -> str:
    return " ".join(_printable(text).replace("⏎", " ").split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gossip`` command line.

    Args:
        argv: the arguments after the program name (``sys.argv[1:]`` when None).

    Returns:
        The exit status: 0 on success, 1 when something failed, 2 for bad arguments
        (argparse's usage errors included); 130 when interrupted.
    """
    try:
        args = _parse(_parser(), sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else 0
    try:
        return _COMMANDS[args.command](args)
    except CliError as exc:
        message, status = str(exc), exc.status
    except GossipError as exc:
        message, status = str(exc), EXIT_FAILURE
    except KeyboardInterrupt:
        message, status = "interrupted", 130
    except BrokenPipeError:  # stdout closed early (| head): not worth a word
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 -- the contract: never a traceback
        message, status = f"internal error ({type(exc).__name__}: {exc}); please report it", EXIT_FAILURE
    print(f"gossip: error: {_one_line(message)}", file=sys.stderr)
    return status
