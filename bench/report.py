"""The figures table in docs/performance.md, regenerated from bench/results/*.json.

    .venv/bin/python -m bench.report [--results DIR] [--doc FILE]

Only the block between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` is
replaced; the text around it is written by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import REPO, RESULTS, describe_machine

DOC = REPO / "docs" / "performance.md"
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
ORDER = ("decision", "backlog", "storage", "memory", "pin")
PROFILE_ENTRIES = 12


def load_results(directory: Path = RESULTS) -> list[dict]:
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]
    return sorted(docs, key=lambda d: ORDER.index(d["name"]) if d["name"] in ORDER else len(ORDER))


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".strip()


def summary_table(results: list[dict]) -> str:
    lines = ["| benchmark | measure | product | baseline (same run) | ratio | target | met |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for c in r["checks"]:
            ratio = "—" if c["ratio"] is None else f"{c['ratio']:g}×"
            met = "yes" if c["met"] else "**NO — missed**"
            lines.append(f"| {r['name']} | {c['metric']} | {_fmt(c['product'], c['unit'])} | "
                         f"{_fmt(c['baseline'], c['unit'])} | {ratio} | {c['target']} | {met} |")
    return "\n".join(lines)


def _pair(s: dict | None) -> str:
    return "—" if not s else f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}"


def _decision(r: dict) -> list[str]:
    cases = r["details"].get("cases", [])
    n = cases[0]["release"]["n"] if cases else 0
    lines = [f"Milliseconds, p50 / p99 (nearest rank) over {n} passages per case (badge and ID-card decisions "
             "split them; the baseline has one append per passage):", "",
             "| case | decision, badge | decision, ID card | grant → lock pin released | grant, whole handling "
             "| of which the durable append | credential → release | max | baseline: durable append "
             "| the same after an idle wait |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        lines.append(f"| {c['label']} | {_pair(c['decision_badge'])} | {_pair(c['decision_id_card'])} | "
                     f"{_pair(c['grant'])} | {_pair(c['grant_handling'])} | {_pair(c.get('grant_append'))} | "
                     f"{_pair(c['release'])} | "
                     f"{c['release']['max_ms']:.2f} | {_pair(c['baseline_append'])} | "
                     f"{_pair(c.get('baseline_after_idle'))} |")
    if "stored_events_generation_s" in r["details"]:
        lines += ["", f"Generating the stored events took {r['details']['stored_events_generation_s']} s."]
    return lines


def _backlog(r: dict) -> list[str]:
    d = r["details"]
    link, raw = d["link"], d["raw_paho"]
    lines = ["| | seconds | msg/s |", "|---|---|---|",
             f"| MqttLink: broker up → CONNACK (reconnect back-off) | {link['reconnect_s']:.2f} | |",
             f"| MqttLink: CONNACK → outbox empty ({link['queued']:,} events) | {link['flush_s']:.2f} | "
             f"{d['link_msgs_per_s']:,} |"]
    for n, v in raw.items():
        lines.append(f"| raw paho QoS 1, max_inflight {n} | {v['seconds']:.2f} | {v['msgs_per_s']:,} |")
    sup = d["supervisor_received"]
    lines += ["", f"Supervisor: {sup['distinct']:,} distinct seqs in {sup['messages']:,} messages; "
                  f"payloads {d['payload_bytes']} bytes."]
    return lines


def _storage(r: dict) -> list[str]:
    d = r["details"]
    i, v = d["import"], d["verify"]
    rounds = "; ".join(f"{r['import_s']} s / {r['bare_insert_s']} s" for r in i.get("rounds", ()))
    return [f"- Import: {i['rows']:,} rows in {i['import_s']} s ({i['rows_per_s']:,} rows/s); the bare insert of "
            f"the same rows took {i['bare_insert_s']} s"
            + (f" (medians; each round import / bare: {rounds}). CPU time of the process: import "
               f"{i['import_cpu_s']} s, bare insert {i['bare_insert_cpu_s']} s ({i['cpu_ratio']}×)."
               if rounds else "."),
            f"- Verify: {v['events']:,} events ({v['database_mb']} MB database): library {v['library_s']} s "
            f"({v['events_per_s']:,} events/s), CLI {v['cli_s']} s (`{v['cli_output']}`, exit {v['cli_exit']}); "
            f"bare chain walk {v['bare_walk_s']} s."]


def _memory(r: dict) -> list[str]:
    lines = ["| case | ready, median / slowest (s) | VmHWM (MB) | baseline ready median (s) | baseline VmHWM (MB) |",
             "|---|---|---|---|---|"]
    for c in r["details"].get("cases", []):
        slowest = max(p["ready_s"] for p in c["product"])
        hwm = max(p["hwm_mb"] for p in c["product"])
        base_hwm = max(p["hwm_mb"] for p in c["baseline"])
        lines.append(f"| {c['label']} | {c['ready_s_median']} / {slowest} | {hwm} | "
                     f"{c['baseline_ready_s_median']} | {base_hwm} |")
    return lines


def _pin(r: dict) -> list[str]:
    d = r["details"]
    h = d["hash"]
    p = h["params"]
    return [f"Milliseconds, p50 / p99 (nearest rank) over {d['release_card']['n']} entries of each kind:", "",
            "| entry | wall: credential → release | of which the PIN check | CPU time of the door's loop |",
            "|---|---|---|---|",
            f"| badge alone (baseline) | {_pair(d['release_card'])} | — | {_pair(d['cpu_card'])} |",
            f"| badge + PIN | {_pair(d['release_card_pin'])} | {_pair(d['pin_check_on_loop'])} | "
            f"{_pair(d['cpu_card_pin'])} |", "",
            f"One PIN check (scrypt N={p['n']:,}, r={p['r']}, p={p['p']}, {p['memory_mib']:g} MiB), {h['samples']} "
            f"samples: CPU time best / median / worst {h['cpu']['best_ms']} / {h['cpu']['median_ms']} / "
            f"{h['cpu']['worst_ms']} ms, wall {h['wall']['best_ms']} / {h['wall']['median_ms']} / "
            f"{h['wall']['worst_ms']} ms; on a Raspberry Pi 4 (×{h['pi4_factor']:g}) {h['pi4_ms']} ms "
            f"(from the median: {h['pi4_median_ms']} ms)."]


def _trim(profile: str, entries: int = PROFILE_ENTRIES) -> str:
    """The profile's header and its first ``entries`` rows."""
    lines = profile.splitlines()
    header = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), None)
    if header is None:
        return profile
    kept = [line for line in lines[:header] if "Ordered by" not in line and "List reduced" not in line]
    return "\n".join(kept + lines[header:header + 1 + entries])


DETAILS = {"decision": _decision, "backlog": _backlog, "storage": _storage, "memory": _memory, "pin": _pin}


def render(results: list[dict]) -> str:
    if not results:
        return "No results yet: run `scripts/bench.sh`."
    machines = {describe_machine(r["machine"]) for r in results}
    out = ["## Figures from the last run", ""]
    out += [f"Machine: {m}." for m in machines]
    loads = {r["machine"].get("load_before") for r in results if r["machine"].get("load_before")}
    if loads:
        out.append(f"Load average when each benchmark started: {', '.join(sorted(loads))}.")
    out += ["", summary_table(results), ""]
    for r in results:
        quick = " (quick pass)" if r["quick"] else ""
        out += [f"### {r['name']}: {r['title']}{quick}", "",
                f"Run {r['started']}, {r['seconds']} s, commit {r['machine'].get('commit') or '?'}.", ""]
        detail = DETAILS.get(r["name"])
        try:
            out += detail(r) + [""] if detail else []
        except (KeyError, TypeError, ValueError):  # a result of an older shape: the summary row suffices
            pass
        out += [f"- {n}" for n in r["notes"]]
        out.append("")
        shown: set[str] = set()
        for metric, text in r["profiles"].items():
            kind = metric.split(",")[0]  # one profile per kind of figure; the other cases' are in the JSON
            if kind in shown:
                continue
            shown.add(kind)
            others = [m for m in r["profiles"] if m != metric and m.split(",")[0] == kind]
            also = f" (the other {len(others)} case(s): in the run's bench/results/{r['name']}.json)" \
                if others else ""
            out += [f"Profile for the missed target *{metric}* (cProfile, cumulative, top entries){also}:", "",
                    "```", _trim(text), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def update_doc(results: list[dict], doc: Path = DOC) -> Path:
    block = f"{BEGIN}\n<!-- generated by `python -m bench.report` from bench/results/*.json; edit outside -->\n\n" \
            f"{render(results)}\n{END}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Performance\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    print(update_doc(load_results(args.results), args.doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
