"""Property tests over bundle messages: whatever a signed or unsigned message holds, a door either
reads it or refuses it with a :class:`BundleError` naming a known reason; nothing else escapes."""

from __future__ import annotations

import json
import zlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_py.errors import BundleError
from firmware_py.link import roster_bundle as rb

KEY = Ed25519PrivateKey.generate()
GROUPS = ("office",)
NUMBER = st.floats(allow_nan=False, allow_infinity=False)
CELL = st.one_of(st.none(), st.booleans(), st.integers(), NUMBER, st.text(max_size=20),
                 st.sampled_from(["office", "staff", "own", "2026-01-01", "430102********123X", "a" * 64]),
                 st.lists(st.text(max_size=10), max_size=3))
JSON = st.recursive(st.none() | st.booleans() | st.integers() | NUMBER | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                                max_size=5), max_leaves=20)


def read_everything(messages: list[bytes]) -> None:
    """What the door does with messages: check, assemble, read and check every row."""
    assembler = rb.Assembler()
    for message in messages:
        done = assembler.add(rb.read_message(message, KEY.public_key()))
        if done:
            _, rows = rb.read_payload(*done)
            for n, row in enumerate(rows, 1):
                rb.check_row(row, n, schedule_groups=GROUPS)


def refused_or_read(messages: list[bytes]) -> None:
    try:
        read_everything(messages)
    except BundleError as exc:
        assert exc.reason in rb.REASONS and str(exc)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_on_a_roster_topic_are_refused_with_a_reason(data):
    refused_or_read([data])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([rb.MANIFEST, rb.CHUNK]), st.binary(max_size=300))
def test_any_body_signed_by_the_station_is_read_or_refused_with_a_reason(kind, body):
    refused_or_read([rb.MAGIC + kind + KEY.sign(rb.MAGIC + kind + body) + body])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(CELL, min_size=len(rb.COLUMNS), max_size=len(rb.COLUMNS)), max_size=3),
       st.dictionaries(st.text(max_size=8), JSON, max_size=2))
def test_signed_bundles_of_arbitrary_rows_and_schedules_are_read_or_refused_with_a_reason(rows, schedules):
    header = {"site": "s", "version": 1, "made_at": "2026-11-23T08:00:00+08:00",
              "valid_until": "2026-12-23T08:00:00+08:00", "key_id": "k", "schedules": schedules}
    payload = rb.build_payload(header, rows)
    manifest, chunks = rb.sign_bundle(KEY, {**header, "count": len(rows)}, payload, chunk_bytes=1024)
    refused_or_read([*chunks, manifest])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=6))
def test_signed_payloads_of_arbitrary_lines_are_read_or_refused_with_a_reason(lines):
    payload = zlib.compress("\n".join(lines).encode("utf-8", "surrogatepass"))
    header = {"site": "s", "version": 1, "made_at": "2026-11-23T08:00:00+08:00",
              "valid_until": "2026-12-23T08:00:00+08:00", "key_id": "k", "count": max(0, len(lines) - 1)}
    manifest, chunks = rb.sign_bundle(KEY, header, payload)
    refused_or_read([*chunks, manifest])


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["site", "version", "made_at", "valid_until", "key_id", "rows", "size",
                                        "sha256", "chunks", "format"]), JSON))
def test_signed_manifests_of_arbitrary_fields_are_read_or_refused_with_a_reason(fields):
    body = json.dumps(fields).encode()
    refused_or_read([rb.MAGIC + rb.MANIFEST + KEY.sign(rb.MAGIC + rb.MANIFEST + body) + body])


@settings(max_examples=150, deadline=None)
@given(st.one_of(JSON, st.fixed_dictionaries({}, optional={
    "holidays": st.lists(st.one_of(st.text(max_size=12), st.sampled_from(["2026-10-01", "2026-02-30"])), max_size=3),
    "working_days": st.lists(st.sampled_from(["2026-10-10", "2026-10-01", "x"]), max_size=2),
    "adjusted_day_schedule": st.one_of(st.sampled_from(["mon", "sun", "xyz"]), JSON)})),
    st.dictionaries(st.sampled_from(["office", "Night", ""]), st.dictionaries(
        st.sampled_from(["mon", "wed", "funday"]), st.lists(st.sampled_from(
            ["08:30-12:00", "11:00-13:00", "25:00-26:00", "12:00-08:00", "00:00-24:00"]), max_size=3)), max_size=2))
def test_signed_bundles_of_arbitrary_hours_are_read_or_refused_with_a_reason(calendar, schedules):
    header = {"site": "s", "version": 1, "made_at": "2026-11-23T08:00:00+08:00",
              "valid_until": "2026-12-23T08:00:00+08:00", "key_id": "k", "schedules": schedules,
              "calendar": calendar}
    payload = rb.build_payload(header, [])
    manifest, chunks = rb.sign_bundle(KEY, {**header, "count": 0}, payload, chunk_bytes=1024)
    refused_or_read([*chunks, manifest])
