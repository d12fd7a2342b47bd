"""Aggregating runs, the printed tables, and the targets (issues 5 and 11) as PASS/FAIL lines."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

NUMERIC = (
    "wall_s",
    "orch_per_s",
    "act_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "peak_rss_mb",
    "cpu_s",
    "startup_cpu_s",
)


_TWO_WORKERS = {
    "sqlite-x2": "one also starts the workflows",
    "sqlite-w2": "workflows started by a third process",
}
"""The multi-process cells with two full runtimes, and where the client runs."""


def key_of(run: dict[str, Any]) -> tuple[str, str, str]:
    return run["system"], run["config"], run["workload"]


def label(system: str, config: str) -> str:
    return f"{system}/{config}"


def aggregate(runs: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Median of every numeric figure over the repeats of one (system, config, workload);
    failures are summed. A repeat that errored is left out of the medians."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(key_of(run), []).append(run)
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, group in groups.items():
        good = [r for r in group if not r.get("error")]
        agg: dict[str, Any] = {
            "system": key[0],
            "config": key[1],
            "workload": key[2],
            "n": group[0]["n"],
            "k": group[0]["k"],
            "runs": len(group),
            "runs_ok": len(good),
            "failures": sum(r["failures"] for r in group),
            "store_failures": sum(r["store_failures"] for r in group),
            "checked": sum(r["checked"] for r in group),
            "errors": sorted({r["error"] for r in group if r.get("error")}),
        }
        for field in NUMERIC:
            values = [r[field] for r in good if r.get(field) is not None]
            agg[field] = statistics.median(values) if values else None
        extra_keys = {k for r in good for k, v in r["extra"].items() if isinstance(v, int | float)}
        agg["extra"] = {
            k: statistics.median([r["extra"][k] for r in good if r["extra"].get(k) is not None])
            for k in sorted(extra_keys)
            if any(r["extra"].get(k) is not None for r in good)
        }
        out[key] = agg
    return out


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def results_table(agg: dict[tuple[str, str, str], dict[str, Any]], workloads: list[str]) -> str:
    parts = []
    for workload in workloads:
        rows = []
        for (system, config, w), a in agg.items():
            if w != workload:
                continue
            if a["runs_ok"] == 0:
                rows.append(
                    [label(system, config), f"n/a: {'; '.join(a['errors'])[:90]}"] + [""] * 10
                )
                continue
            extra = a["extra"]
            special = ""
            if workload == "W4":
                special = (
                    f"cycle@event 20 {_fmt(extra.get('turn_ms_early'), 2)} ms, "
                    f"@{_fmt(extra.get('mid_event'))} {_fmt(extra.get('turn_ms_mid'), 2)} ms "
                    f"(x{_fmt(extra.get('growth_mid_vs_early'), 2)}), "
                    f"last {_fmt(extra.get('turn_ms_last'), 2)} ms"
                )
            elif workload == "W6" and "file_mb_drained" in extra:
                special = (
                    f"file {_fmt(extra.get('file_mb_drained'))} MB (WAL "
                    f"{_fmt(extra.get('wal_mb_drained'))}), after deleting "
                    f"{_fmt(extra.get('deleted'), 0)} in {_fmt(extra.get('delete_s'))} s: "
                    f"{_fmt(extra.get('file_mb_after_delete'))} MB "
                    f"({_fmt(100 * extra.get('free_page_share_after_delete', 0), 0)} % free pages)"
                )
            elif workload in ("W5", "W5X"):
                special = (
                    f"{_fmt(extra.get('bytes_per_waiting_instance'), 0)} B/waiting inst, "
                    f"wake-up {_fmt(extra.get('wakeup_per_s'))}/s"
                )
            if "http_requests_per_activity" in extra or "http_requests_per_turn" in extra:
                special = (special + "; " if special else "") + (
                    f"HTTP {_fmt(extra.get('http_requests_per_orchestration'))}/orch, "
                    f"{_fmt(extra.get('http_requests_per_activity'))}/activity, "
                    f"{_fmt(extra.get('http_requests_per_turn'))}/turn, "
                    f"idle {_fmt(extra.get('idle_requests_per_s'))}/s; "
                    f"RU {_fmt(extra.get('ru_per_orchestration'))}/orch"
                )
            elif workload == "IDLE":
                special = (
                    f"idle per runtime: {_fmt(extra.get('idle_requests_per_s_per_runtime'))} "
                    f"req/s, {_fmt(extra.get('idle_ru_per_s_per_runtime'))} RU/s"
                )
            rows.append(
                [
                    label(system, config),
                    f"{a['n']}x{a['k']}" if a["k"] else str(a["n"]),
                    f"{a['runs_ok']}/{a['runs']}",
                    _fmt(a["wall_s"], 2),
                    _fmt(a["orch_per_s"]),
                    _fmt(a["act_per_s"]),
                    f"{_fmt(a['p50_ms'])} / {_fmt(a['p95_ms'])} / {_fmt(a['p99_ms'])}",
                    _fmt(a["peak_rss_mb"]),
                    _fmt(a["cpu_s"], 2),
                    f"{a['failures']} ({a['store_failures']} store)",
                    str(a["checked"]),
                    special,
                ]
            )
        headers = [
            "system/config",
            "size",
            "ok",
            "wall s",
            "orch/s",
            "act/s",
            "p50 / p95 / p99 ms",
            "RSS MB",
            "CPU s",
            "failures",
            "checked",
            "",
        ]
        parts.append(f"{workload}\n{_table(headers, rows)}")
    return "\n\n".join(parts)


RATIO_FIELDS = (
    ("orch_per_s", "orch/s"),
    ("act_per_s", "act/s"),
    ("p50_ms", "p50"),
    ("peak_rss_mb", "RSS"),
    ("cpu_s", "CPU"),
)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def ratios_table(agg: dict[tuple[str, str, str], dict[str, Any]], workloads: list[str]) -> str:
    """duro (each provider) divided by each peer config, workload by workload."""
    rows = []
    for workload in workloads:
        duro = [a for (s, _, w), a in agg.items() if s == "duro" and w == workload and a["runs_ok"]]
        peers = [
            a for (s, _, w), a in agg.items() if s != "duro" and w == workload and a["runs_ok"]
        ]
        for d in duro:
            for p in peers:
                cells = [workload, label("duro", d["config"]), label(p["system"], p["config"])]
                for field, _ in RATIO_FIELDS:
                    r = ratio(d.get(field), p.get(field))
                    cells.append("-" if r is None else f"{r:.2f}x")
                rows.append(cells)
    if not rows:
        return ""
    headers = ["", "duro", "peer", *(f"{name} ratio" for _, name in RATIO_FIELDS)]
    note = (
        "duro / peer, measured side by side in this run: above 1 is better for orch/s and "
        "act/s; below 1 is better for p50, RSS and CPU."
    )
    return f"{note}\n{_table(headers, rows)}"


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    status: str  # PASS, FAIL, INFO, SKIP
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}"


def _best(
    agg: dict[tuple[str, str, str], dict[str, Any]], system: str, workload: str
) -> dict[str, Any] | None:
    cands = [a for (s, _, w), a in agg.items() if s == system and w == workload and a["orch_per_s"]]
    return max(cands, key=lambda a: a["orch_per_s"]) if cands else None


def check_targets(agg: dict[tuple[str, str, str], dict[str, Any]]) -> list[Target]:
    """Issue 5's targets. Against a peer, duro is compared with that peer's *best* config."""
    out: list[Target] = []
    get = agg.get
    for workload in ("W1", "W2"):
        d = get(("duro", "sqlite", workload))
        if d is None or not d["orch_per_s"]:
            continue
        for peer, need in (("duroxide", 3.0), ("dbos", 1.0)):
            p = _best(agg, peer, workload)
            name = f"{workload} SQLite orch/s >= {need:g}x {peer}"
            if p is None:
                out.append(Target(name, "SKIP", "peer not run"))
                continue
            r = d["orch_per_s"] / p["orch_per_s"]
            verdict = "PASS" if r >= need else "FAIL"
            out.append(
                Target(
                    name,
                    verdict,
                    f"{r:.2f}x ({d['orch_per_s']:.1f} vs {p['orch_per_s']:.1f} "
                    f"orch/s, {label(p['system'], p['config'])}; need {need:g}x)",
                )
            )
    for config in ("sqlite", "memory"):
        d = get(("duro", config, "W3"))
        if d and d["p50_ms"] is not None:
            ok = d["p50_ms"] <= 15.0
            out.append(
                Target(
                    f"W3 {config} 10 ms timer p50 <= 15 ms",
                    "PASS" if ok else "FAIL",
                    f"p50 {d['p50_ms']:.1f} ms, p95 {_fmt(d['p95_ms'])} ms "
                    f"({15.0 - d['p50_ms']:+.1f} ms headroom)",
                )
            )
    for config in ("sqlite", "memory"):
        d = get(("duro", config, "W4"))
        g = d["extra"].get("growth_mid_vs_early") if d else None
        if d and g is not None:
            e = d["extra"]
            out.append(
                Target(
                    f"W4 {config} turn at event {e['mid_event']:,.0f} within 1.5x of event 20",
                    "PASS" if g <= 1.5 else "FAIL",
                    f"x{g:.2f} ({e['turn_ms_early']:.2f} -> {e['turn_ms_mid']:.2f} ms per "
                    f"cycle; at event {2 * e['mid_event']:,.0f}: "
                    f"x{_fmt(e.get('growth_last_vs_early'), 2)})",
                )
            )
    for config in ("sqlite", "memory"):
        d = get(("duro", config, "W1"))
        if d and d["peak_rss_mb"] is not None:
            out.append(
                Target(
                    f"W1 {config} peak RSS <= 60 MB",
                    "PASS" if d["peak_rss_mb"] <= 60 else "FAIL",
                    f"{d['peak_rss_mb']:.1f} MB",
                )
            )
    for config in ("sqlite", "memory"):
        d = get(("duro", config, "W5"))
        b = d["extra"].get("bytes_per_waiting_instance") if d else None
        if d and b is not None:
            out.append(
                Target(
                    f"W5 {config} memory per waiting instance",
                    "INFO",
                    f"{b:,.0f} bytes/instance over {d['n']:,} instances; wake-up "
                    f"{_fmt(d['extra'].get('wakeup_per_s'))} orch/s",
                )
            )
    for (s, c, w), a in sorted(agg.items()):
        e = a["extra"]
        if s == "duro" and "http_requests_per_turn" in e:
            out.append(
                Target(
                    f"{w} {c} HTTP requests",
                    "INFO",
                    f"{_fmt(e.get('http_requests_per_orchestration'))}/orchestration, "
                    f"{_fmt(e.get('http_requests_per_activity'))}/activity, "
                    f"{_fmt(e.get('http_requests_per_turn'))}/turn; idle "
                    f"{_fmt(e.get('idle_requests_per_s'))} requests/s; estimated "
                    f"{_fmt(e.get('ru_per_orchestration'))} RU/orchestration",
                )
            )
    out.extend(_scale_targets(agg))
    out.extend(_cosmos_targets(agg))
    duro_runs = [a for (s, _, _), a in agg.items() if s == "duro"]
    if duro_runs:
        store = sum(a["store_failures"] for a in duro_runs)
        total = sum(a["failures"] for a in duro_runs)
        checked = sum(a["checked"] for a in duro_runs)
        out.append(
            Target(
                "zero store-induced failures (duro)",
                "PASS" if store == 0 else "FAIL",
                f"{store} store-induced, {total} failures of any kind, {checked} results checked",
            )
        )
    return out


def _scale_targets(agg: dict[tuple[str, str, str], dict[str, Any]]) -> list[Target]:
    """Issue 16's: every core, memory per waiting instance, a backlog of 100,000, p99."""
    out: list[Target] = []
    get = agg.get
    for workload in ("W1", "W2"):
        one = get(("duro", "sqlite", workload))
        if one is None or not one["orch_per_s"]:
            continue
        out.append(
            Target(
                f"{workload} SQLite latency",
                "INFO",
                f"p50 {_fmt(one['p50_ms'])} / p95 {_fmt(one['p95_ms'])} / "
                f"p99 {_fmt(one['p99_ms'])} ms (start call to durable completion)",
            )
        )
        for config, setup in _TWO_WORKERS.items():
            multi = get(("duro", config, workload))
            if not multi or not multi["orch_per_s"]:
                continue
            r = multi["orch_per_s"] / one["orch_per_s"]
            out.append(
                Target(
                    f"{workload} SQLite, 2 worker processes ({setup}) >= 1.6x one",
                    "PASS" if r >= 1.6 else "FAIL",
                    f"{r:.2f}x ({multi['orch_per_s']:.1f} vs {one['orch_per_s']:.1f} orch/s)",
                )
            )
            peer = _best(agg, "duroxide", workload)
            if peer is not None:
                r = multi["orch_per_s"] / peer["orch_per_s"]
                out.append(
                    Target(
                        f"{workload} SQLite, 2 worker processes ({setup}) >= 6x duroxide",
                        "PASS" if r >= 6 else "FAIL",
                        f"{r:.2f}x ({multi['orch_per_s']:.1f} vs {peer['orch_per_s']:.1f} "
                        f"orch/s, {label(peer['system'], peer['config'])})",
                    )
                )
        split = get(("duro", "sqlite-split", workload))
        if split and split["orch_per_s"]:
            out.append(
                Target(
                    f"{workload} SQLite, turns and activities in separate processes",
                    "INFO",
                    f"{split['orch_per_s']:.1f} orch/s "
                    f"({split['orch_per_s'] / one['orch_per_s']:.2f}x one process)",
                )
            )
    w5 = get(("duro", "sqlite", "W5"))
    peer_w5 = _best(agg, "duroxide", "W5")
    if w5 and peer_w5:
        mine = w5["extra"].get("bytes_per_waiting_instance")
        theirs = peer_w5["extra"].get("bytes_per_waiting_instance")
        if mine is not None and theirs:
            wake = ratio(w5["extra"].get("wakeup_per_s"), peer_w5["extra"].get("wakeup_per_s"))
            out.append(
                Target(
                    "W5 SQLite bytes per waiting instance <= duroxide's",
                    "PASS" if mine <= theirs else "FAIL",
                    f"{mine:,.0f} vs {theirs:,.0f} B ({mine / theirs:.2f}x); wake-up "
                    f"{_fmt(wake, 2)}x duroxide's",
                )
            )
    w6, w2 = get(("duro", "sqlite", "W6")), get(("duro", "sqlite", "W2"))
    if w6 and w2 and w6["orch_per_s"] and w2["orch_per_s"]:
        r = w2["orch_per_s"] / w6["orch_per_s"]
        out.append(
            Target(
                f"W6 SQLite ({w6['n']:,} chains) throughput within 1.3x of W2's",
                "PASS" if r <= 1.3 else "FAIL",
                f"{w6['orch_per_s']:.1f} vs {w2['orch_per_s']:.1f} orch/s (W2 {r:.2f}x W6); "
                f"peak RSS {_fmt(w6['peak_rss_mb'])} MB",
            )
        )
    w5x = get(("duro", "sqlite", "W5X"))
    if w5x and w5x["extra"].get("rss_waiting_mb") is not None:
        e = w5x["extra"]
        out.append(
            Target(
                f"W5X SQLite, {w5x['n']:,} waiting instances",
                "INFO",
                f"RSS {e['rss_waiting_mb']:.0f} MB while waiting "
                f"({e['bytes_per_waiting_instance']:,.0f} B each), peak "
                f"{_fmt(w5x['peak_rss_mb'])} MB; wake-up {_fmt(e.get('wakeup_per_s'))} orch/s",
            )
        )
    return out


# Issue 11's Cosmos targets: (RU per W1 orchestration, at P partitions, with 2 runtimes).
_COSMOS_RU_TARGETS = {1: 200.0, 30: 400.0}
_COSMOS_IDLE_RU_TARGET = 30.0  # per runtime and second, at 30 partitions
_COSMOS_412_TARGETS = {2: 0.05, 4: 0.10}  # refused lock writes, by runtime count


def _cosmos_targets(agg: dict[tuple[str, str, str], dict[str, Any]]) -> list[Target]:
    out: list[Target] = []
    for (s, c, w), a in sorted(agg.items()):
        e = a["extra"]
        if s != "duro" or "cosmos_partitions" not in e or not a["runs_ok"]:
            continue
        p, r = e["cosmos_partitions"], e.get("cosmos_runtimes", 1)
        ru = e.get("ru_per_orchestration")
        if w == "W1" and r == 2 and p in _COSMOS_RU_TARGETS and ru is not None:
            need = _COSMOS_RU_TARGETS[p]
            out.append(
                Target(
                    f"W1 {c} RU per orchestration <= {need:.0f}",
                    "PASS" if ru <= need else "FAIL",
                    f"{ru:.1f} estimated RU per orchestration ({p} partition(s), 2 runtimes)",
                )
            )
        share = e.get("lock_412_share")
        if w == "W1" and r in _COSMOS_412_TARGETS and share is not None:
            need = _COSMOS_412_TARGETS[r]
            out.append(
                Target(
                    f"W1 {c} refused lock writes <= {need:.0%}",
                    "PASS" if share <= need else "FAIL",
                    f"{share:.1%} of {e.get('lock_writes', 0):,} lock writes refused with 412",
                )
            )
        idle = e.get("idle_ru_per_s_per_runtime")
        if w == "IDLE" and p == 30 and idle is not None:
            out.append(
                Target(
                    f"IDLE {c} RU/s per idle runtime <= {_COSMOS_IDLE_RU_TARGET:.0f}",
                    "PASS" if idle <= _COSMOS_IDLE_RU_TARGET else "FAIL",
                    f"{idle:.1f} estimated RU/s per runtime ({r} runtime(s), 30 partitions)",
                )
            )
    return out


# -- Cosmos request-unit tables --------------------------------------------------------------

COSMOS_KINDS = (
    "cross_partition_query",
    "partition_query",
    "range_query",
    "batch",
    "replace",
    "point_read",
    "create",
    "upsert",
    "delete",
    "patch",
    "pkranges",
    "other",
)


def _cosmos_cells(
    agg: dict[tuple[str, str, str], dict[str, Any]],
) -> list[dict[str, Any]]:
    return [
        a
        for (s, _, _), a in agg.items()
        if s == "duro" and a["runs_ok"] and "cosmos_partitions" in a["extra"]
    ]


def cosmos_tables(
    agg: dict[tuple[str, str, str], dict[str, Any]], runs: list[dict[str, Any]] | None = None
) -> str:
    """Estimated RU of the Cosmos cells: per orchestration / activity / turn, idle per runtime,
    the 412 share of lock writes, and RU per orchestration (or per idle second) by kind."""
    del runs  # the per-kind figures are in the aggregated extras already
    cells = _cosmos_cells(agg)
    if not cells:
        return ""
    rows = []
    for a in cells:
        e = a["extra"]
        share = e.get("lock_412_share")
        rows.append(
            [
                a["workload"],
                a["config"],
                _fmt(e.get("cosmos_partitions"), 0),
                _fmt(e.get("cosmos_runtimes"), 0),
                _fmt(e.get("http_requests_per_orchestration")),
                _fmt(e.get("ru_per_orchestration")),
                _fmt(e.get("ru_per_activity")),
                _fmt(e.get("ru_per_turn")),
                "-" if share is None else f"{100 * share:.0f}% of {_fmt(e.get('lock_writes'), 0)}",
                _fmt(e.get("idle_requests_per_s_per_runtime")),
                _fmt(e.get("idle_ru_per_s_per_runtime")),
            ]
        )
    headers = [
        "workload",
        "config",
        "P",
        "runtimes",
        "req/orch",
        "RU/orch",
        "RU/activity",
        "RU/turn",
        "412 of lock writes",
        "idle req/s/rt",
        "idle RU/s/rt",
    ]
    parts = [
        "Cosmos: estimated request units of the runtimes' requests (compat-layer meter; "
        "P = simulated physical partitions; idle columns: IDLE rows are runtimes that never "
        "had work, workload rows the 3 s after the workload)",
        _table(headers, rows),
    ]
    busy = [a for a in cells if "ru_per_orchestration" in a["extra"]]
    if busy:
        parts.append("")
        parts.append("RU per orchestration by request kind (requests per orchestration)")
        parts.append(_kind_table(busy, "ru_per_orch.", "requests_per_orch."))
    idle = [a for a in cells if a["workload"] == "IDLE"]
    if idle:
        parts.append("")
        parts.append("IDLE: RU per second by request kind, all runtimes (requests per second)")
        parts.append(_kind_table(idle, "idle_ru_per_s.", "idle_requests_per_s."))
    return "\n".join(parts)


def _kind_table(cells: list[dict[str, Any]], ru_prefix: str, count_prefix: str) -> str:
    kinds = [k for k in COSMOS_KINDS if any(f"{ru_prefix}{k}" in a["extra"] for a in cells)]
    rows = []
    for kind in kinds:
        row = [kind]
        for a in cells:
            ru = a["extra"].get(f"{ru_prefix}{kind}")
            count = a["extra"].get(f"{count_prefix}{kind}")
            row.append("-" if ru is None else f"{_fmt(ru)} ({_fmt(count)})")
        rows.append(row)
    headers = ["kind", *(f"{a['workload']} {a['config']}" for a in cells)]
    return _table(headers, rows)
