"""Roster bundles at one door: apply against a bare insert, size on the wire, memory, deciding meanwhile.

Issue 19's figures for the door's side of a station-signed roster:

1. *Apply vs bare insert.* A bundle of N persons, made by the station's own code
   (:func:`firmware_py.station.roster.bundle.read_roster` and ``make_bundle``), is handed message by
   message (chunks, then the manifest) to the door's real receiver
   (:class:`firmware_py.link.roster_receiver.RosterReceiver.handle`: signature, assembly, every row
   checked as hostile input, the all-or-nothing apply with its ``roster_applied`` event) on a new
   database. The baseline is a bare ``executemany`` of the very rows it stored, in one transaction,
   into a new database of the same schema (:func:`bench.storage.bare_insert`). They alternate;
   medians of the rounds are compared, wall and CPU.
2. *Size on the wire and memory.* The bundle's bytes (manifest + chunks) and chunk count; the
   door's peak resident memory while it applies, measured in a child process
   (:mod:`bench.bundle_child`) against the same child's peak before the bundle arrives.
3. *Deciding during the apply.* A door with the N-person roster (imported) runs in-and-out cycles
   through the real controller (:class:`bench.decision.DoorBench`) while its receiver applies a
   bundle of the same N persons on its own connection; credential → release during the apply
   against the same door's cycles just before it.

No broker: publish → applied at many doors through a real broker is :mod:`bench.bundle_fleet`.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_py.config.schema import Config, load_config
from firmware_py.core.clock import SimulatedClock
from firmware_py.link.roster_keys import door_keys
from firmware_py.link.roster_receiver import RosterReceiver
from firmware_py.station.roster.bundle import SignedBundle, make_bundle, read_roster

from .common import REPO, Result, check, log, summary_ms
from .data import BENCH_START, IMPORT_TIME, Workspace, write_config, write_roster_csv
from .decision import WARMUP_CYCLES, DoorBench
from .storage import bare_insert

TARGET_APPLY_RATIO = 3.0  # issue 19: applying ≤ 3× a bare insert of the same rows
TARGET_RSS_MB = 150.0  # issue 19: memory while applying (2,000,000 persons)
DECISION_TARGET_MS = 5.0  # the decision benchmark's p99 target, kept during the apply
ROUNDS = 3
VALID_FOR = timedelta(days=365)


# --------------------------------------------------------------------------- the station's side


def station_keys(directory: Path, site_key: bytes) -> tuple[Ed25519PrivateKey, Path, Path]:
    """A station signing key; its public half and the site roster key as the files a door is given."""
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    public, site = directory / "roster-signing.pub", directory / "site-roster.key"
    public.write_bytes(key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    site.write_bytes(site_key)
    site.chmod(0o600)
    return key, public, site


def signed_bundle(directory: Path, persons: int, *, key: Ed25519PrivateKey, site: str, site_key: bytes,
                  version: int = 1) -> tuple[SignedBundle, dict]:
    """The bench roster of ``persons`` as the station signs it; and how long the station took."""
    csv_path = write_roster_csv(directory / f"bundle-{persons}.csv", persons)
    t0 = time.perf_counter()
    rows = read_roster(csv_path, site_key=site_key, schedule_groups=["office"], today=IMPORT_TIME.date())
    checked_s = time.perf_counter() - t0
    bundle = make_bundle(rows, site=site, version=version, made_at=IMPORT_TIME, valid_for=VALID_FOR,
                         signing_key=key, site_key=site_key)
    made_s = time.perf_counter() - t0 - checked_s
    csv_path.unlink()
    return bundle, {"persons": persons, "csv_check_s": round(checked_s, 2), "sign_s": round(made_s, 2),
                    "payload_bytes": bundle.payload_bytes, "wire_bytes": bundle.wire_bytes,
                    "chunks": len(bundle.chunks),
                    "largest_message_bytes": max(len(m) for m in (bundle.manifest, *bundle.chunks))}


def write_messages(bundle: SignedBundle, directory: Path) -> Path:
    """The bundle's messages as files, in the order a door receives them (chunks, then the manifest)."""
    directory.mkdir(parents=True, exist_ok=True)
    for n, message in enumerate((*bundle.chunks, bundle.manifest)):
        (directory / f"{n:05d}.msg").write_bytes(message)
    return directory


# --------------------------------------------------------------------------- the door's side


def with_roster_keys(cfg: Config, public: Path, site: Path) -> Config:
    """``cfg`` with a ``[roster]`` section naming the station's public key and the site roster key."""
    text = cfg.path.read_text(encoding="utf-8")
    text += f'\n[roster]\nstation_public_key = "{public}"\nsite_key = "{site}"\n'
    cfg.path.write_text(text, encoding="utf-8")
    return load_config(cfg.path)


def apply_at_door(cfg: Config, messages: list[bytes]) -> tuple[float, float, int]:
    """Hand the messages to the door's receiver; seconds, CPU seconds, and the version it then has."""
    receiver = RosterReceiver(cfg, door_keys(cfg), clock=SimulatedClock(BENCH_START))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for message in messages:
            receiver.handle(message)
        return time.perf_counter() - t0, time.process_time() - c0, receiver.version
    finally:
        receiver.close()


def new_door(directory: Path, public: Path, site: Path) -> Config:
    if directory.exists():
        shutil.rmtree(directory)
    return with_roster_keys(write_config(directory), public, site)


def memory_child(cfg: Config, messages_dir: Path) -> dict:
    """``python -m bench.bundle_child``: the door's peak memory before and after applying."""
    out = subprocess.run([sys.executable, "-m", "bench.bundle_child", str(cfg.path), str(messages_dir)],
                         cwd=REPO, capture_output=True, text=True, timeout=3600,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        raise RuntimeError(f"bench.bundle_child failed ({out.returncode}): {out.stderr[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def deciding_during_apply(cfg: Config, persons: int, messages: list[bytes]) -> dict:
    """Credential → release before and during the apply of a bundle of the same ``persons``."""
    with DoorBench(cfg, persons=persons) as bench:
        bench.run(max(10, WARMUP_CYCLES + 20) - WARMUP_CYCLES)
        before = list(bench.release)
        bench.release.clear()
        outcome: dict = {}

        def apply() -> None:
            outcome["seconds"], outcome["cpu_s"], outcome["version"] = apply_at_door(cfg, messages)

        worker = threading.Thread(target=apply, name="bench-apply")
        worker.start()
        cycles = 0
        while worker.is_alive():
            bench.cycle(record=True, use_id_card=cycles % 4 == 0)
            cycles += 1
        worker.join()
    if outcome.get("version") != 1:
        raise RuntimeError(f"the bundle was not applied during the cycles: {outcome}")
    return {"before": summary_ms(before), "during": summary_ms(bench.release), "cycles_during": cycles,
            "apply_s": round(outcome["seconds"], 2)}


# --------------------------------------------------------------------------- the benchmark


def run(ws: Workspace, *, quick: bool, persons: int | None = None, large: int | None = None) -> Result:
    persons = persons or (10_000 if quick else 100_000)
    large = large if large is not None else (0 if quick else 2_000_000)
    result = Result("bundle", "Roster bundles at one door", data_dir=ws.root, quick=quick,
                    params={"persons": persons, "large": large, "rounds": ROUNDS})
    directory = ws.root / "bundle"
    directory.mkdir(parents=True, exist_ok=True)
    site_key = bytes(range(32))
    key, public, site_file = station_keys(directory / "keys", site_key)
    site = write_config(directory / "probe").site.site

    log(f"bundle: the station signs {persons:,} persons")
    bundle, made = signed_bundle(directory, persons, key=key, site=site, site_key=site_key)
    messages = [bundle.manifest] if not bundle.chunks else [*bundle.chunks, bundle.manifest]
    result.detail("bundle", made)

    rounds = []
    for n in range(ROUNDS):
        log(f"bundle: applying {persons:,} persons at a new door, then the bare insert ({n + 1}/{ROUNDS})")
        cfg = new_door(directory / f"apply-{n}", public, site_file)
        seconds, cpu_s, version = apply_at_door(cfg, messages)
        if version != 1:
            raise RuntimeError(f"the door did not apply the bundle (version {version}); see its events")
        rows, bare_s, bare_cpu_s = bare_insert(cfg.storage.database, directory)
        if rows != persons:
            raise RuntimeError(f"the door stored {rows:,} persons of {persons:,}")
        rounds.append({"apply_s": round(seconds, 3), "apply_cpu_s": round(cpu_s, 3),
                       "bare_insert_s": round(bare_s, 3), "bare_insert_cpu_s": round(bare_cpu_s, 3)})
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    ratio = median["apply_s"] / max(median["bare_insert_s"], 1e-9)
    result.add(check(f"bundle apply at a door, {persons:,} persons (median of {ROUNDS})", unit="s",
                     product=median["apply_s"], baseline=median["bare_insert_s"],
                     target=f"≤ {TARGET_APPLY_RATIO:g}× baseline", met=ratio <= TARGET_APPLY_RATIO))
    result.detail("apply", {"rounds": rounds, **median, "ratio": round(ratio, 2),
                            "cpu_ratio": round(median["apply_cpu_s"] / max(median["bare_insert_cpu_s"], 1e-9), 2)})

    log(f"bundle: the door decides while it applies {persons:,} persons")
    cfg = ws.roster_db(persons, "bundle-deciding")
    shutil.copyfile(cfg.storage.secret, directory / "deciding-site.key")  # the import hashed under this key
    (directory / "deciding-site.key").chmod(0o600)
    door_site_key = (directory / "deciding-site.key").read_bytes()
    cfg = with_roster_keys(cfg, public, directory / "deciding-site.key")
    same, _ = signed_bundle(directory, persons, key=key, site=site, site_key=door_site_key)
    deciding = deciding_during_apply(cfg, persons, [*same.chunks, same.manifest] if same.chunks else [same.manifest])
    during99, before99 = deciding["during"]["p99_ms"], deciding["before"]["p99_ms"]
    result.add(check(f"credential → release p99 while {persons:,} persons are applied", unit="ms",
                     product=during99, baseline=before99, target=f"≤ {DECISION_TARGET_MS:g} ms",
                     met=during99 <= DECISION_TARGET_MS))
    result.detail("deciding", deciding)

    sizes = [persons] + ([large] if large else [])
    for n in sizes:
        if n != persons:
            log(f"bundle: the station signs {n:,} persons")
            big, made_big = signed_bundle(directory, n, key=key, site=site, site_key=site_key)
            result.detail(f"bundle_{n}", made_big)
        else:
            big, made_big = bundle, made
        result.add(check(f"bundle on the wire, {n:,} persons ({made_big['chunks']} chunks)", unit="MB",
                         product=made_big["wire_bytes"] / 1e6, baseline=None,
                         target="every message ≤ the brokers' packet limit (4 MiB)",
                         met=made_big["largest_message_bytes"] <= 4 * 2**20))
        log(f"bundle: the door's memory while it applies {n:,} persons (a child process)")
        messages_dir = write_messages(big, directory / f"messages-{n}")
        del big
        child = memory_child(new_door(directory / f"memory-{n}", public, site_file), messages_dir)
        shutil.rmtree(messages_dir)
        result.add(check(f"door's peak memory applying {n:,} persons", unit="MB", product=child["peak_mb"],
                         baseline=child["before_mb"], target=f"≤ {TARGET_RSS_MB:g} MB",
                         met=child["peak_mb"] <= TARGET_RSS_MB))
        result.add(check(f"bundle arrived → applied at one door, {n:,} persons", unit="s",
                         product=child["apply_s"], baseline=None, target="reported", met=True))
        result.detail(f"memory_{n}", child)

    result.note("Apply = the door's receiver handling every message of the bundle (Ed25519 signature, "
                "assembly, each row checked as hostile input, the build beside the live tables in short write "
                "steps that leave the door's database free between them, the swap with its roster_applied "
                "event). Bare insert = one executemany of the persons and badges it stored, one transaction, "
                "WAL, synchronous=FULL. Wall time includes the apply's pauses for the door; CPU time is "
                "this process's.")
    result.note("Memory: VmHWM of a child process that opened the door's database and read the bundle's "
                "messages from files (before), then handed them to the receiver (peak). The bundle's bytes "
                "are held as they arrive, as at a door.")
    result.note("Deciding during the apply: the decision benchmark's door (badges, every fourth entry by "
                "resident ID card through the serial driver on a pty) cycles while another thread applies a "
                "bundle of the same persons on its own connection, as the door's link does.")
    return result
