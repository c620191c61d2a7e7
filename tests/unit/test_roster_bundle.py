"""The signed roster bundle (firmware_py/link/roster_bundle.py) and its making at the station."""

from __future__ import annotations

import hashlib
import re
import zlib
from datetime import date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.core import idnumber
from firmware_py.errors import BundleError, ConfigError, RosterError
from firmware_py.link import roster_bundle as rb
from firmware_py.link.roster_keys import key_id, load_public_key, load_signing_key, load_site_key
from firmware_py.station.roster.bundle import make_bundle, next_version, read_roster
from tests.fixtures.roster import HEADER, TZ, id_number

SITE_KEY = bytes(range(32))
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
GROUPS = ("office", "extended")
FULL_ID_NUMBER = re.compile(rb"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def person(n: int, group: str = "office") -> str:
    number = id_number(f"43010219850312{n % 1000:03d}")
    return (f"P{n:05d},测试人员{n},{number},{0x04000000 + n:08X},staff,示例档案馆,own,2026-01-01,48,2026-01-02,"
            f"2026-01-01,2026-12-31,{group}")


def roster_file(tmp_path, *rows: str):
    path = tmp_path / "roster.csv"
    path.write_text("\n".join((HEADER, *rows)) + "\n", encoding="utf-8")
    return path


def rows_of(tmp_path, count: int):
    return read_roster(roster_file(tmp_path, *(person(i) for i in range(count))), site_key=SITE_KEY,
                       schedule_groups=GROUPS, today=NOW.date())


def signed(tmp_path, count: int = 3, *, key=None, site="hn-archive-1", version=7, chunk_bytes=1024 * 1024,
           valid_for=timedelta(days=30)):
    key = key or Ed25519PrivateKey.generate()
    bundle = make_bundle(rows_of(tmp_path, count), site=site, version=version, made_at=NOW, valid_for=valid_for,
                         signing_key=key, site_key=SITE_KEY, chunk_bytes=chunk_bytes,
                         schedules={"office": {"mon": ["08:30-12:00"]}})
    return bundle, key.public_key()


def assemble(bundle, public_key):
    assembler = rb.Assembler()
    done = None
    for message in (*bundle.chunks, bundle.manifest):
        done = assembler.add(rb.read_message(message, public_key)) or done
    return done


def check(manifest, **kw):
    args = {"site": "hn-archive-1", "key": key_id(SITE_KEY), "applied_version": 0, "now": NOW} | kw
    rb.check_manifest(manifest, **args)


# ---------------------------------------------------------------- round trip


def test_a_signed_bundle_reads_back_as_the_rows_of_the_csv_with_masked_numbers_and_keyed_hashes(tmp_path):
    bundle, public = signed(tmp_path, 3)
    manifest, payload = assemble(bundle, public)
    check(manifest)
    header, rows = rb.read_payload(manifest, payload)
    checked = [rb.check_row(r, n, schedule_groups=GROUPS) for n, r in enumerate(rows, 1)]

    assert (header.version, header.count, header.schedules) == (7, 3, {"office": {"mon": ["08:30-12:00"]}})
    stored, badges = checked[0]
    number = id_number("43010219850312000")
    assert stored[0] == "P00000" and stored[6] == number[:6] + "********" + number[-4:]
    assert stored[5] == idnumber.id_hash(SITE_KEY, number)
    assert badges == ("04000000",)


def test_no_full_id_number_travels_in_any_message_or_in_the_decompressed_rows(tmp_path):
    bundle, public = signed(tmp_path, 50)
    manifest, payload = assemble(bundle, public)
    text = zlib.decompress(b"".join(payload))
    for blob in (bundle.manifest, *bundle.chunks, text):
        assert FULL_ID_NUMBER.search(blob) is None


def test_a_bundle_larger_than_a_chunk_travels_as_several_signed_chunks_and_reassembles(tmp_path):
    bundle, public = signed(tmp_path, 400, chunk_bytes=2048)
    manifest, payload = assemble(bundle, public)
    assert len(bundle.chunks) > 3 and all(len(c) < 2048 + 200 for c in bundle.chunks)
    assert len(list(rb.read_payload(manifest, payload)[1])) == 400


def test_chunks_arriving_after_the_manifest_and_out_of_order_still_complete_the_bundle(tmp_path):
    bundle, public = signed(tmp_path, 400, chunk_bytes=2048)
    assembler = rb.Assembler()
    results = [assembler.add(rb.read_message(m, public)) for m in (bundle.manifest, *reversed(bundle.chunks))]
    assert results[:-1] == [None] * len(bundle.chunks) and results[-1][0].version == 7


def test_a_stale_chunk_of_the_same_index_is_skipped_until_the_right_one_arrives(tmp_path):
    key = Ed25519PrivateKey.generate()
    old, public = signed(tmp_path, 400, key=key, version=8, chunk_bytes=2048)
    new, _ = signed(tmp_path, 401, key=key, version=8, chunk_bytes=2048)  # same version, other rows: a stale copy
    assembler = rb.Assembler()
    assembler.add(rb.read_message(new.manifest, public))
    for message in old.chunks[:1] + new.chunks[1:]:
        assert assembler.add(rb.read_message(message, public)) is None
    manifest, payload = assembler.add(rb.read_message(new.chunks[0], public))
    assert manifest.rows == 401


# ---------------------------------------------------------------- refusals, each with its reason


def test_a_tampered_row_fails_the_signature(tmp_path):
    bundle, public = signed(tmp_path)
    chunk = bytearray(bundle.chunks[0])
    chunk[-5] ^= 1
    with pytest.raises(BundleError) as caught:
        rb.read_message(bytes(chunk), public)
    assert caught.value.reason == "bad_signature"


def test_a_bundle_signed_with_another_key_fails_the_signature(tmp_path):
    bundle, _ = signed(tmp_path)
    with pytest.raises(BundleError) as caught:
        rb.read_message(bundle.manifest, Ed25519PrivateKey.generate().public_key())
    assert caught.value.reason == "bad_signature"


def test_a_version_not_newer_than_the_applied_one_is_old(tmp_path):
    bundle, public = signed(tmp_path, version=7)
    manifest, _ = assemble(bundle, public)
    with pytest.raises(BundleError, match="not newer than the applied version 7") as caught:
        check(manifest, applied_version=7)
    assert caught.value.reason == "old_version"


def test_a_bundle_for_another_site_is_refused(tmp_path):
    bundle, public = signed(tmp_path, site="other-site")
    with pytest.raises(BundleError, match="for site 'other-site'") as caught:
        check(assemble(bundle, public)[0])
    assert caught.value.reason == "other_site"


def test_a_bundle_hashed_under_another_site_roster_key_is_refused(tmp_path):
    bundle, public = signed(tmp_path)
    with pytest.raises(BundleError) as caught:
        check(assemble(bundle, public)[0], key=key_id(b"\x01" * 32))
    assert caught.value.reason == "other_key"


def test_a_bundle_arriving_after_its_validity_is_expired(tmp_path):
    bundle, public = signed(tmp_path, valid_for=timedelta(days=1))
    with pytest.raises(BundleError) as caught:
        check(assemble(bundle, public)[0], now=NOW + timedelta(days=2))
    assert caught.value.reason == "expired"


def test_a_truncated_message_is_malformed(tmp_path):
    bundle, public = signed(tmp_path)
    with pytest.raises(BundleError) as caught:
        rb.read_message(bundle.manifest[:40], public)
    assert caught.value.reason == "malformed"


def test_a_signed_payload_cut_short_is_malformed_when_its_rows_are_read(tmp_path):
    key = Ed25519PrivateKey.generate()
    rows = [rb.bundle_row(r) for r in rows_of(tmp_path, 20)]
    header = {"site": "s", "version": 1, "made_at": NOW.isoformat(), "valid_until": (NOW + timedelta(1)).isoformat(),
              "key_id": "k", "schedules": {}}
    payload = rb.build_payload(header, rows)[:-10]
    manifest_bytes, chunks = rb.sign_bundle(key, {**header, "count": 20}, payload)
    assembler = rb.Assembler()
    assembler.add(rb.read_message(chunks[0], key.public_key()))
    manifest, data = assembler.add(rb.read_message(manifest_bytes, key.public_key()))
    head, lines = rb.read_payload(manifest, data)
    with pytest.raises(BundleError) as caught:
        list(lines)
    assert caught.value.reason == "malformed"


def test_a_message_over_the_brokers_packet_limit_is_too_large():
    with pytest.raises(BundleError) as caught:
        rb.read_message(rb.MAGIC + b"C" + bytes(rb.MAX_MESSAGE + 8192), Ed25519PrivateKey.generate().public_key())
    assert caught.value.reason == "too_large"


def test_a_decompression_bomb_line_is_too_large_without_being_held_whole():
    bomb = zlib.compress(b"{" + b" " * (50 * 1024 * 1024))
    with pytest.raises(BundleError) as caught:
        list(rb._lines(bomb))
    assert caught.value.reason == "too_large"


@pytest.mark.parametrize("field, value, why", [
    ("id_hash", "430102198503121230", "64-digit hex"),
    ("schedule_group", "night", "not a group of this door"),
    ("name", "赵\x1b[2J", "control character"),
    ("valid_until", "2026-02-30", "not a real date"),
    ("badge_uids", ["XYZ"], "not hexadecimal"),
])
def test_a_signed_row_with_a_bad_field_is_malformed_naming_the_row_and_field(tmp_path, field, value, why):
    row = rb.bundle_row(rows_of(tmp_path, 1)[0])
    row[rb.COLUMNS.index(field)] = value
    with pytest.raises(BundleError, match=why) as caught:
        rb.check_row(row, 1, schedule_groups=GROUPS)
    assert caught.value.reason == "malformed" and "row 1" in str(caught.value)


# ---------------------------------------------------------------- the station's side


def test_a_csv_with_bad_rows_is_refused_naming_every_line_and_nothing_is_made(tmp_path):
    bad = person(2).replace("staff", "janitor")
    path = roster_file(tmp_path, person(1), bad, person(1))
    with pytest.raises(RosterError) as caught:
        read_roster(path, site_key=SITE_KEY, schedule_groups=GROUPS, today=date(2026, 11, 23))
    text = str(caught.value)
    assert "publish refused, nothing was published" in text
    assert "line 3, role: 'janitor'" in text and "line 4, person_id: P00001 is also on line 2" in text


def test_the_version_is_the_publish_time_or_one_more_than_the_brokers():
    assert next_version(0, NOW) == int(NOW.timestamp())
    assert next_version(int(NOW.timestamp()) + 5, NOW) == int(NOW.timestamp()) + 6


def test_a_hundred_thousand_person_bundle_fits_the_brokers_packet_limit_in_signed_chunks(tmp_path):
    rows = rows_of(tmp_path, 1000)
    many = []
    for i in range(100_000):
        base = rows[i % 1000]
        many.append(base._replace(person_id=f"Q{i:06d}", id_hash=hashlib.sha256(str(i).encode()).hexdigest(),
                                  badge_uids=(f"{0x05000000 + i:08X}",)))
    bundle = make_bundle(many, site="hn-archive-1", version=1, made_at=NOW, valid_for=timedelta(days=30),
                         signing_key=Ed25519PrivateKey.generate(), site_key=SITE_KEY)
    assert max(len(m) for m in (bundle.manifest, *bundle.chunks)) <= rb.MAX_MESSAGE
    assert len(bundle.chunks) > 1
    print(f"\n100,000 persons: {bundle.payload_bytes} bytes compressed, {len(bundle.chunks)} chunks, "
          f"{bundle.wire_bytes} bytes on the wire")


# ---------------------------------------------------------------- keys


def test_a_site_roster_key_others_may_read_is_refused(tmp_path):
    path = tmp_path / "site.key"
    path.write_bytes(SITE_KEY)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644"):
        load_site_key(path)


def test_a_site_roster_key_of_the_wrong_size_is_refused(tmp_path):
    path = tmp_path / "site.key"
    path.write_bytes(SITE_KEY[:16])
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="16 bytes, not 32"):
        load_site_key(path)


def test_a_pem_key_pair_written_as_openssl_does_loads_and_verifies(tmp_path):
    from cryptography.hazmat.primitives import serialization as ser

    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / "signing.key", tmp_path / "signing.pub"
    private.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    bundle, _ = signed(tmp_path, key=load_signing_key(private))
    assert rb.read_message(bundle.manifest, load_public_key(public)).version == 7


def test_a_payload_read_in_the_chunks_it_came_in_gives_the_same_rows_and_no_joined_copy(tmp_path):
    bundle, public = signed(tmp_path, 400, chunk_bytes=1024)
    manifest, pieces = assemble(bundle, public)
    assert isinstance(pieces, tuple) and len(pieces) == len(bundle.chunks) > 5

    whole = b"".join(pieces)
    assert list(rb.read_payload(manifest, pieces)[1]) == list(rb.read_payload(manifest, whole)[1])


def test_bytes_after_the_compressed_stream_in_a_later_chunk_are_malformed():
    stream = zlib.compress(b'{"a": 1}\n')
    for pieces in ((stream, b"x"), (stream[:5], stream[5:] + b"x"), (stream, b"", b"x")):
        with pytest.raises(BundleError) as caught:
            list(rb._lines(pieces))
        assert caught.value.reason == "malformed" and "after its compressed stream" in str(caught.value)
    with pytest.raises(BundleError, match="cut short"):
        list(rb._lines((stream[:5], stream[5:-3])))
