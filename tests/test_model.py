"""Data types: the canonical form and sha2, and the validation of every field."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gossip.errors import LocalProtocolError
from gossip.model import (
    MAX_MSG_CHARS,
    MAX_NAME_CHARS,
    Gossip,
    Network,
    NodeConfig,
    Peer,
    PeerStatus,
    PeerView,
    EARLIEST_TIME,
    LATEST_TIME,
    canonical_bytes,
    check_guid,
    compute_sha2,
    iso_from_timestamp,
    timestamp_from_iso,
)

from .helpers import KEYS, T0

GUID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
WHEN = "2026-11-24T06:35:13.123456+00:00"


def by_hand(guid: str, date_time: str, who_name: str, msg: str) -> str:
    """sha2 exactly as CONTRACT.md states it."""
    canonical = json.dumps(
        {"date_time": date_time, "guid": guid, "msg": msg, "who_name": who_name},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()


# ---------------------------------------------------------------------------- Gossip

@pytest.mark.parametrize(
    "who, msg",
    [("node-1", "hello"), ("Zoë 🚀", 'héllo ✓ "q" \\ \n\t\u2028 😀 <b>'), ("n", ""), ("ノード", "\u0000\u007f")],
)
def test_create_computes_sha2_over_the_contracts_canonical_form(who: str, msg: str) -> None:
    g = Gossip.create(guid=GUID, date_time=WHEN, who_name=who, msg=msg)
    assert (g.guid, g.date_time, g.who_name, g.msg) == (GUID, WHEN, who, msg)
    assert g.sha2 == by_hand(GUID, WHEN, who, msg)
    assert g.sha2 == compute_sha2(guid=GUID, date_time=WHEN, who_name=who, msg=msg)
    assert g.verify()


def test_canonical_bytes_literally() -> None:
    data = canonical_bytes(guid=GUID, date_time=WHEN, who_name="Zoë", msg='a "b"\nç')
    assert data == (
        '{"date_time":"2026-11-24T06:35:13.123456+00:00","guid":"1b4e28ba-2fa1-41d2-883f-0016d3cca427",'
        '"msg":"a \\"b\\"\\nç","who_name":"Zoë"}'
    ).encode("utf-8")
    assert "ç".encode() in data  # UTF-8, not \\u00e7


def test_known_answer() -> None:
    """Pinned, so that any node in any language can check its canonical form against it."""
    g = Gossip.create(guid=GUID, date_time=WHEN, who_name="node-1", msg="hello")
    canonical = (
        b'{"date_time":"2026-11-24T06:35:13.123456+00:00","guid":"1b4e28ba-2fa1-41d2-883f-0016d3cca427",'
        b'"msg":"hello","who_name":"node-1"}'
    )
    assert g.sha2 == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize(
    "field, value",
    [("msg", "hellO"), ("who_name", "node-2"), ("date_time", "2026-11-24T06:35:13.123457+00:00"), ("guid", str(uuid.UUID(int=1, version=4)))],
)
def test_verify_fails_when_any_field_changes(field: str, value: str) -> None:
    g = Gossip.create(guid=GUID, date_time=WHEN, who_name="node-1", msg="hello")
    tampered = dataclasses.replace(g, **{field: value})
    assert tampered.sha2 == g.sha2 and not tampered.verify()


def test_verify_fails_with_another_well_formed_sha2() -> None:
    g = Gossip.create(guid=GUID, date_time=WHEN, who_name="node-1", msg="hello")
    assert not dataclasses.replace(g, sha2="0" * 64).verify()


def test_gossip_is_frozen_and_round_trips_as_dict() -> None:
    g = Gossip.create(guid=GUID, date_time=WHEN, who_name="Zoë", msg="✓")
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.msg = "other"  # type: ignore[misc]
    d = g.to_dict()
    assert d == {"guid": GUID, "date_time": WHEN, "who_name": "Zoë", "msg": "✓", "sha2": g.sha2}
    assert Gossip.from_dict(d) == g
    assert Gossip.from_dict(json.loads(json.dumps(d))) == g


GOOD: dict[str, Any] = dict(guid=GUID, date_time=WHEN, who_name="node-1", msg="hello", sha2="a" * 64)


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("guid", GUID.upper(), "lower-case canonical"),
        ("guid", "{" + GUID + "}", "UUID string"),
        ("guid", GUID.replace("-", ""), "UUID string"),
        ("guid", "urn:uuid:" + GUID, "UUID string"),
        ("guid", "1b4e28ba2fa141d2883f0016d3cca427----", "lower-case canonical"),
        ("guid", "z" * 36, "is not a UUID"),
        ("guid", "", "UUID string"),
        ("guid", None, "UUID string"),
        ("guid", 12345, "UUID string"),
        ("date_time", "2026-11-24T06:35:13.123456", "UTC offset"),
        ("date_time", "2026-11-24", "UTC offset"),
        ("date_time", "yesterday", "not ISO 8601"),
        ("date_time", "2026-13-24T06:35:13+00:00", "not ISO 8601"),
        ("date_time", "", "not ISO 8601"),
        ("date_time", "2026-11-24T06:35:13+00:00" + " " * 64, "ISO 8601"),
        ("date_time", 1790000000, "ISO 8601"),
        ("who_name", "", "who_name must be a non-empty string"),
        ("who_name", "   ", "who_name must be a non-empty string"),
        ("who_name", None, "who_name must be a non-empty string"),
        ("who_name", "a\nb", "control characters"),
        ("who_name", "a\x7f", "control characters"),
        ("who_name", "x" * (MAX_NAME_CHARS + 1), f"longer than {MAX_NAME_CHARS}"),
        ("who_name", "bad \ud800", "lone surrogates"),
        ("msg", "x" * (MAX_MSG_CHARS + 1), f"longer than {MAX_MSG_CHARS}"),
        ("msg", None, "msg must be a string"),
        ("msg", b"bytes", "msg must be a string"),
        ("msg", "bad \udfff", "lone surrogates"),
        ("sha2", "g" * 64, "64 lower-case hex"),
        ("sha2", "A" * 64, "64 lower-case hex"),
        ("sha2", "a" * 63, "64 lower-case hex"),
        ("sha2", "a" * 65, "64 lower-case hex"),
        ("sha2", None, "64 lower-case hex"),
        ("sha2", "a" * 64 + "\n", "64 lower-case hex"),
    ],
)
def test_gossip_validation_names_the_problem(field: str, value: Any, needle: str) -> None:
    with pytest.raises(LocalProtocolError, match=needle.replace("(", r"\(")) as info:
        Gossip(**dict(GOOD, **{field: value}))
    assert isinstance(info.value, ValueError) and info.value.status_hint == 400


def test_gossip_limits_are_inclusive() -> None:
    assert Gossip.create(guid=GUID, date_time=WHEN, who_name="x" * MAX_NAME_CHARS, msg="m" * MAX_MSG_CHARS).verify()
    assert Gossip(**dict(GOOD, date_time="2026-11-24T08:35:13+02:00")).date_time.endswith("+02:00")


@pytest.mark.parametrize(
    "date_time",
    [
        "0001-01-01T00:00:00+01:00",  # issue 10, item 8: broke `gossip status` on every node
        "0001-01-01T00:00:00+00:00",
        "1969-12-31T23:59:59.999999+00:00",
        "1970-01-01T00:30:00+01:00",  # 1969 once in UTC
        "9999-12-31T23:00:00-02:00",  # year 10000 once in UTC
        "9999-12-31T23:59:59.000001+00:00",
    ],
)
def test_gossip_date_time_must_convert_to_utc_from_1970_to_9999(date_time: str) -> None:
    with pytest.raises(LocalProtocolError, match="out of range"):
        Gossip(**dict(GOOD, date_time=date_time))
    with pytest.raises(LocalProtocolError, match="out of range"):
        Gossip.create(guid=GUID, date_time=date_time, who_name="n", msg="m")


@pytest.mark.parametrize(
    "date_time, timestamp",
    [
        ("1970-01-01T00:00:00+00:00", 0.0),
        ("1969-12-31T23:00:00-01:00", 0.0),  # 1970 once in UTC
        ("1970-01-01T01:00:00Z", 3600.0),
        ("9999-12-31T23:59:59+00:00", LATEST_TIME.timestamp()),
        ("9999-12-31T23:59:59+01:00", LATEST_TIME.timestamp() - 3600),
        (WHEN, 1795502113.123456),
    ],
)
def test_gossip_date_time_bounds_are_inclusive_and_give_its_timestamp(date_time: str, timestamp: float) -> None:
    g = Gossip(**dict(GOOD, date_time=date_time))
    assert g.timestamp() == timestamp == timestamp_from_iso(date_time)


def _status_formats(date_time: str) -> None:
    """What status outputs do with a date_time: `gossip status` converts it to UTC, a timestamp
    goes back to text. Raises if any of it fails."""
    utc = datetime.fromisoformat(date_time).astimezone(timezone.utc)
    utc.strftime("%Y-%m-%d %H:%M:%S")
    datetime.fromtimestamp(timestamp_from_iso(date_time), tz=timezone.utc).isoformat()


@given(
    st.datetimes(),  # year 1 to 9999
    # Whole seconds: Python 3.11's fromisoformat drops the sign of "-00:00:00.000001".
    st.integers(min_value=-86399, max_value=86399).map(lambda s: timedelta(seconds=s)),
)
@example(datetime(1, 1, 1), timedelta(hours=1))
@example(datetime(1970, 1, 1), timedelta(seconds=1))
@example(datetime(1969, 12, 31, 23, 59, 59), -timedelta(seconds=1))
@example(datetime(1969, 12, 31, 23, 59, 59, 999999), timedelta(0))
@example(datetime(9999, 12, 31, 23, 59, 59), timedelta(0))
@example(datetime(9999, 12, 31, 23, 59, 59, 999999), timedelta(0))
@example(datetime(9999, 12, 31, 23, 0), -timedelta(hours=2))
def test_a_date_is_accepted_exactly_when_it_lies_in_range_once_in_utc(when: datetime, offset: timedelta) -> None:
    """Property: over every year and offset, Gossip accepts a date_time iff it converts to UTC
    within the bounds, and then every conversion a status output makes succeeds."""
    aware = when.replace(tzinfo=timezone(offset))
    text = aware.isoformat()
    assert datetime.fromisoformat(text) == aware
    if EARLIEST_TIME <= aware <= LATEST_TIME:  # aware comparison: never overflows
        gossip = Gossip(**dict(GOOD, date_time=text))
        _status_formats(gossip.date_time)
        assert EARLIEST_TIME.timestamp() <= gossip.timestamp() <= LATEST_TIME.timestamp()
    else:
        with pytest.raises(LocalProtocolError, match="out of range"):
            Gossip(**dict(GOOD, date_time=text))


@given(
    st.integers(min_value=0, max_value=99999),
    st.sampled_from(["Z", "+00:00", "+23:59", "-23:59", "+14:00", "-12:00", "+01:00:00.5", ""]),
    st.sampled_from(["-01-01T00:00:00", "-12-31T23:59:59.999999", "-02-29T12:00", "-06-15"]),
)
@example(1, "+01:00", "-01-01T00:00:00")  # the date
@example(9999, "-23:59", "-12-31T23:59:59.999999")
@example(1969, "-01:00", "-12-31T23:59:59.999999")
def test_extreme_dates_are_refused_cleanly_or_accepted_and_formattable(year: int, offset: str, rest: str) -> None:
    """Property: whatever the year and offset, constructing a gossip either works, and every
    status output can format its date, or raises LocalProtocolError: never another error."""
    text = f"{year:04d}{rest}{offset}"
    try:
        gossip = Gossip(**dict(GOOD, date_time=text))
    except LocalProtocolError:
        return
    _status_formats(gossip.date_time)


@given(st.text(max_size=70))
def test_any_date_text_is_accepted_or_refused_with_local_protocol_error(text: str) -> None:
    try:
        gossip = Gossip(**dict(GOOD, date_time=text))
    except LocalProtocolError:
        return
    _status_formats(gossip.date_time)


def test_create_validates_too() -> None:
    with pytest.raises(LocalProtocolError, match="msg"):
        Gossip.create(guid=GUID, date_time=WHEN, who_name="n", msg="x" * (MAX_MSG_CHARS + 1))
    with pytest.raises(LocalProtocolError, match="guid"):
        Gossip.create(guid="nope", date_time=WHEN, who_name="n", msg="x")


@pytest.mark.parametrize("missing", ["guid", "date_time", "who_name", "msg", "sha2"])
def test_gossip_from_dict_names_a_missing_field(missing: str) -> None:
    data = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(LocalProtocolError, match=f"missing field '{missing}'"):
        Gossip.from_dict(data)


@pytest.mark.parametrize("data", [None, [], "gossip", 5])
def test_gossip_from_dict_needs_an_object(data: Any) -> None:
    with pytest.raises(LocalProtocolError, match="JSON object"):
        Gossip.from_dict(data)


def test_iso_from_timestamp_is_utc_with_microseconds() -> None:
    assert iso_from_timestamp(0) == "1970-01-01T00:00:00.000000+00:00"
    assert iso_from_timestamp(T0 + 0.5) == "2026-09-21T14:13:20.500000+00:00"
    assert iso_from_timestamp(LATEST_TIME.timestamp()) == "9999-12-31T23:59:59.000000+00:00"


@pytest.mark.parametrize("ts", [-1.0, -62135600400.0, LATEST_TIME.timestamp() + 1, 1e20, math.inf, -math.inf, math.nan])
def test_iso_from_timestamp_refuses_a_clock_out_of_range(ts: float) -> None:
    """A new gossip is dated by the node's clock: one that reads before 1970 or after 9999
    gets a LocalProtocolError (a 400), never a date that every receiver refuses."""
    with pytest.raises(LocalProtocolError, match="from 1970 to 9999"):
        iso_from_timestamp(ts)


# ---------------------------------------------------------------------------- Peer

PEER: dict[str, Any] = dict(guid=GUID, name="peer-1", ip="10.0.0.1", port=8470, network_name="default")


def test_peer_round_trips_as_dict() -> None:
    p = Peer(**PEER, incarnation=4)
    assert p.to_dict() == dict(PEER, incarnation=4)
    assert Peer.from_dict(p.to_dict()) == p
    assert Peer.from_dict(PEER).incarnation == 0
    assert p.address == ("10.0.0.1", 8470)


@pytest.mark.parametrize(
    "ip, normal",
    [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("0:0:0:0:0:0:0:1", "::1"), ("FE80::1", "fe80::1"), ("2001:db8::", "2001:db8::")],
)
def test_peer_ip_is_normalised(ip: str, normal: str) -> None:
    assert Peer(**dict(PEER, ip=ip)).ip == normal


@pytest.mark.parametrize("ip", ["localhost", "256.1.1.1", "1.2.3", "10.0.0.1:80", "", " 10.0.0.1", None, 167772161, "01.2.3.4"])
def test_peer_rejects_bad_ip(ip: Any) -> None:
    with pytest.raises(LocalProtocolError, match="ip"):
        Peer(**dict(PEER, ip=ip))


@pytest.mark.parametrize("port", [0, -1, 65536, 10**9, True, False, "80", 80.0, None])
def test_peer_rejects_bad_port(port: Any) -> None:
    with pytest.raises(LocalProtocolError, match="port .* must be an integer from 1 to 65535"):
        Peer(**dict(PEER, port=port))


@pytest.mark.parametrize("port", [1, 65535])
def test_peer_port_range_is_inclusive(port: int) -> None:
    assert Peer(**dict(PEER, port=port)).port == port


@pytest.mark.parametrize("name", ["a", "A.b_c-1", "9net", "x" * 64, "default"])
def test_network_name_accepted(name: str) -> None:
    assert Peer(**dict(PEER, network_name=name)).network_name == name
    assert Network(name=name, key=KEYS["default"]).name == name


@pytest.mark.parametrize(
    "name", ["", "-lead", ".dot", "_under", "a b", "x" * 65, "ünï", "a/b", "a\n", None, 5, "net\u0000"]
)
def test_network_name_rules(name: Any) -> None:
    with pytest.raises(LocalProtocolError, match="network name"):
        Peer(**dict(PEER, network_name=name))
    with pytest.raises(LocalProtocolError, match="network name"):
        Network(name=name, key=KEYS["default"])


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("guid", GUID.upper(), "peer guid"),
        ("guid", "peer-1", "peer guid"),
        ("name", "", "peer name"),
        ("name", "tab\there", "peer name must not contain control characters"),
        ("name", "x" * (MAX_NAME_CHARS + 1), "peer name is longer"),
        ("name", "lone \ud800", "peer name must be valid Unicode"),
        ("incarnation", -1, "incarnation"),
        ("incarnation", True, "incarnation"),
        ("incarnation", 2**53, "incarnation"),
        ("incarnation", "1", "incarnation"),
    ],
)
def test_peer_validation_names_the_field(field: str, value: Any, needle: str) -> None:
    with pytest.raises(LocalProtocolError, match=needle):
        Peer(**dict(PEER, **{field: value}))


@pytest.mark.parametrize("missing", ["guid", "name", "ip", "port", "network_name"])
def test_peer_from_dict_names_a_missing_field(missing: str) -> None:
    with pytest.raises(LocalProtocolError, match=f"missing field '{missing}'"):
        Peer.from_dict({k: v for k, v in PEER.items() if k != missing})


# ---------------------------------------------------------------------------- PeerView

@pytest.mark.parametrize(
    "view",
    [
        PeerView(peer=Peer(**PEER)),
        PeerView(peer=Peer(**PEER, incarnation=3), status=PeerStatus.SUSPECT, last_seen=T0 + 0.25, failures=2),
        PeerView(peer=Peer(**dict(PEER, ip="::1")), status=PeerStatus.DEAD, last_seen=0.0, failures=9),
    ],
)
def test_peer_view_round_trips_as_dict(view: PeerView) -> None:
    d = view.to_dict()
    assert d["status"] == str(view.status) and d["failures"] == view.failures
    assert {"guid", "name", "ip", "port", "network_name", "status", "last_seen"} <= set(d)
    assert d["last_seen"] is None if view.last_seen is None else d["last_seen"].endswith("+00:00")
    assert PeerView.from_dict(d) == view
    assert PeerView.from_dict(json.loads(json.dumps(d))) == view


def test_peer_view_to_dict_literally() -> None:
    view = PeerView(peer=Peer(**PEER), status=PeerStatus.SUSPECT, last_seen=T0 + 0.5, failures=1)
    assert view.to_dict() == dict(
        PEER, incarnation=0, status="suspect", last_seen="2026-09-21T14:13:20.500000+00:00", failures=1
    )


@pytest.mark.parametrize(
    "last_seen, shown",
    [
        (-62135600400.0, "1970-01-01T00:00:00.000000+00:00"),  # year 1: a 500 on the peers endpoint before
        (-1.0, "1970-01-01T00:00:00.000000+00:00"),
        (math.nan, "1970-01-01T00:00:00.000000+00:00"),
        (-math.inf, "1970-01-01T00:00:00.000000+00:00"),
        (1e20, "9999-12-31T23:59:59.000000+00:00"),
        (math.inf, "9999-12-31T23:59:59.000000+00:00"),
    ],
)
def test_peer_view_to_dict_never_fails_on_last_seen(last_seen: float, shown: str) -> None:
    """The peers endpoint and `gossip network` show to_dict(): a clock out of range (only a
    virtual one gives that) is shown as the nearer bound, never an error."""
    view = PeerView(peer=Peer(**PEER), last_seen=last_seen)
    assert view.to_dict()["last_seen"] == shown
    json.dumps(view.to_dict(), allow_nan=False)


def test_peer_view_from_dict_defaults() -> None:
    view = PeerView.from_dict(dict(PEER))
    assert (view.status, view.last_seen, view.failures) == (PeerStatus.ALIVE, None, 0)


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"status": "zombie"}, "status must be one of"),
        ({"failures": -1}, "failures"),
        ({"failures": True}, "failures"),
        ({"failures": "2"}, "failures"),
        ({"last_seen": "2026-09-21T14:13:20"}, "UTC offset"),
        ({"last_seen": "soon"}, "ISO 8601"),
        ({"last_seen": "0001-01-01T00:00:00+01:00"}, "last_seen .* is out of range"),
        ({"last_seen": "9999-12-31T23:00:00-02:00"}, "last_seen .* is out of range"),
        ({"port": 0}, "port"),
    ],
)
def test_peer_view_from_dict_rejects(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(LocalProtocolError, match=needle):
        PeerView.from_dict(dict(PEER, **changes))


# ---------------------------------------------------------------------------- Network / NodeConfig

NET = Network(name="default", key=KEYS["default"])


def config(**changes: Any) -> NodeConfig:
    fields: dict[str, Any] = dict(node_guid=GUID, node_name="node-1", networks=(NET,))
    fields.update(changes)
    return NodeConfig(**fields)


def test_node_config_defaults_and_helpers() -> None:
    other = Network(name="other", key=KEYS["other"])
    c = config(networks=[NET, other])  # a list is accepted and frozen to a tuple
    assert c.networks == (NET, other) and c.network_names == ("default", "other")
    assert (c.ip, c.port, c.gossip_timer, c.gossip_max_peer_count) == ("127.0.0.1", 8470, 1.0, 3)
    assert c.network("other") is other
    with pytest.raises(LocalProtocolError, match="not on network 'nope'"):
        c.network("nope")
    assert c.self_peer("other") == Peer(guid=GUID, name="node-1", ip="127.0.0.1", port=8470, network_name="other")
    changed = c.with_changes(port=9000)
    assert changed.port == 9000 and c.port == 8470
    with pytest.raises(LocalProtocolError, match="port"):
        c.with_changes(port=0)


def test_network_key_is_not_in_its_repr() -> None:
    assert KEYS["default"].hex() not in repr(NET) and repr(KEYS["default"]) not in repr(NET)
    assert KEYS["default"].hex() not in repr(config())


@pytest.mark.parametrize("key", [b"short", b"", "a string of at least sixteen chars", None])
def test_network_key_must_be_16_bytes_or_more(key: Any) -> None:
    with pytest.raises(LocalProtocolError, match="at least 16 bytes"):
        Network(name="default", key=key)


@pytest.mark.parametrize("timer", [0, 0.0009, -1, 86400.5, True, "1", None, float("nan"), float("inf")])
def test_node_config_rejects_bad_timer(timer: Any) -> None:
    with pytest.raises(LocalProtocolError, match="gossip_timer"):
        config(gossip_timer=timer)


@pytest.mark.parametrize("timer", [0.001, 1, 2.5, 86400])
def test_node_config_timer_range_is_inclusive(timer: float) -> None:
    assert config(gossip_timer=timer).gossip_timer == timer


@pytest.mark.parametrize("count", [0, -1, 1001, True, 1.5, "3", None])
def test_node_config_rejects_bad_max_peer_count(count: Any) -> None:
    with pytest.raises(LocalProtocolError, match="gossip_max_peer_count"):
        config(gossip_max_peer_count=count)


@pytest.mark.parametrize("count", [1, 1000])
def test_node_config_max_peer_count_range_is_inclusive(count: int) -> None:
    assert config(gossip_max_peer_count=count).gossip_max_peer_count == count


def test_node_config_rejects_duplicate_networks() -> None:
    with pytest.raises(LocalProtocolError, match="unique"):
        config(networks=(NET, Network(name="default", key=KEYS["other"])))


@pytest.mark.parametrize("networks", [(), []])
def test_node_config_needs_a_network(networks: Any) -> None:
    with pytest.raises(LocalProtocolError, match="at least one network"):
        config(networks=networks)


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"node_guid": "node-1"}, "node_guid"),
        ({"node_name": ""}, "node_name"),
        ({"ip": "localhost"}, "ip"),
        ({"port": 70000}, "port"),
    ],
)
def test_node_config_rejects_bad_identity(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(LocalProtocolError, match=needle):
        config(**changes)


def test_node_config_normalises_ip() -> None:
    assert config(ip="0:0::1").ip == "::1"


@given(st.text(max_size=40), st.text(max_size=200), st.text(max_size=40))
def test_canonical_bytes_is_the_contracts_json_dumps_for_any_text(who: str, msg: str, when: str) -> None:
    """canonical_bytes writes the JSON by hand, for speed: it must equal json.dumps everywhere."""
    fields = {"date_time": when, "guid": GUID, "msg": msg, "who_name": who}
    try:
        expected = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: neither form can be encoded
        with pytest.raises(UnicodeEncodeError):
            canonical_bytes(guid=GUID, date_time=when, who_name=who, msg=msg)
        return
    assert canonical_bytes(guid=GUID, date_time=when, who_name=who, msg=msg) == expected


@given(st.uuids() | st.text(max_size=40))
def test_check_guid_accepts_exactly_canonical_uuid_text(value: object) -> None:
    text = str(value)
    try:
        canonical = str(uuid.UUID(text)) == text
    except ValueError:
        canonical = False
    if canonical:
        assert check_guid(text) == text
    else:
        with pytest.raises(LocalProtocolError):
            check_guid(text)


@given(st.text(max_size=40).filter(lambda t: t.strip() and not any(ord(c) < 32 or ord(c) == 127 for c in t)),
       st.text(max_size=300))
def test_to_json_and_wire_size_match_json_dumps(who: str, msg: str) -> None:
    try:
        g = Gossip.create(guid=GUID, date_time=WHEN, who_name=who, msg=msg)
    except (LocalProtocolError, UnicodeEncodeError):
        return  # not a valid gossip (e.g. a lone surrogate): never sent
    compact = json.dumps(g.to_dict(), separators=(",", ":"), ensure_ascii=False)
    assert g.to_json() == compact
    assert g.wire_size() == len(compact.encode("utf-8"))


def test_to_json_is_written_once_and_never_given_to_another_gossip_with_the_same_sha2() -> None:
    """to_json keeps the text of recent gossips (by sha2, for that very object): a forged
    gossip that reuses a real one's sha2 gets its own text, and the real one keeps its own."""
    real = Gossip.create(guid=GUID, date_time=WHEN, who_name="a", msg="the truth")
    forged = Gossip(guid=GUID, date_time=WHEN, who_name="a", msg="a lie", sha2=real.sha2)
    text = real.to_json()
    assert real.to_json() is text  # kept, not written again
    assert json.loads(forged.to_json())["msg"] == "a lie"
    assert json.loads(real.to_json())["msg"] == "the truth"
    big = Gossip.create(guid=GUID, date_time=WHEN, who_name="a", msg="x" * 5000)
    assert json.loads(big.to_json())["msg"] == "x" * 5000  # too long to keep, written each time


def test_remember_keeps_the_newest_entries() -> None:
    from gossip.model import remember

    table: dict[int, str] = {}
    for i in range(10):
        remember(table, i, str(i), 4)
    assert list(table) == [6, 7, 8, 9]
    remember(table, 7, "again", 4)  # an update keeps its place
    assert list(table) == [6, 7, 8, 9] and table[7] == "again"
