"""The table rows of the scale sections (latency under load, restart, memory), kept out of __main__.py."""

from __future__ import annotations

from typing import Any

Row = tuple[str, str, str, str]


def scale_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    n = r.get("peak_rss_n")
    lat = r.get("latency_under_load")
    if lat:
        rows.append((f"one IdP's time to Ready during the N={n} burst", f"p50 {lat['p50_s']} s",
                     "", f"p99 {lat['p99_s']} s over {lat['ready']}/{lat['probes']} probes "
                         f"({lat['created_during_burst']} created mid-burst), namespace {lat['namespace']}"))
    rs = r.get("restart")
    if rs and "error" in rs:
        rows.append(("restart", "failed", "", rs["error"][:100]))
    elif rs:
        rows.append((f"restart with {rs['objects']} Ready objects", f"watching in {rs['watching_s']} s", "",
                     f"in the next {rs['window_s']:g} s: {rs['modifying_requests']} modifying requests, "
                     f"{rs['metadata_fetches']} metadata fetches ({rs['url_idps']} URL IdPs)"))
    return rows
