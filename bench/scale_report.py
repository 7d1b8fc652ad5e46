"""The table rows of the scale sections (latency under load, restart, memory), kept out of __main__.py."""

from __future__ import annotations

from typing import Any

Row = tuple[str, str, str, str]


def scale_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    n = r.get("peak_rss_n")
    mem = memory(r)
    if mem:
        rows.append(("  RSS vs floor; MB per N (3 objects)", f"{mem['ratio']:.2f}x",
                     f"{mem['floor_mb_per_n']:.3f}" if mem.get("floor_mb_per_n") is not None else "",
                     f"Keyplane {mem['keyplane_mb_per_n']:.3f} MB per N" if mem.get("keyplane_mb_per_n") is not None
                     else "slope needs two sizes"))
        if mem.get("keyplane_ready_mb") and mem.get("floor_ready_mb"):
            rows.append(("  RSS when watching, before any object", f"{mem['keyplane_ready_mb']:.0f} MB",
                         f"{mem['floor_ready_mb']:.0f} MB",
                         f"the peak is {mem['keyplane_above_ready_mb']:.0f} MB above it (floor "
                         f"{mem['floor_above_ready_mb']:.0f} MB): imports vs what the objects cost"))
    lat = r.get("latency_under_load")
    if lat:
        rows.append((f"one IdP's time to Ready during the N={n} burst", f"p50 {lat['p50_s']} s, p99 {lat['p99_s']} s",
                     "", f"{lat['ready']}/{lat['probes']} probes in {lat['namespace']}; the "
                         f"{lat['created_during_burst']} created mid-burst: p50 {lat.get('mid_burst_p50_s')} s, "
                         f"p99 {lat.get('mid_burst_p99_s')} s"))
    rs = r.get("restart")
    if rs and "error" in rs:
        rows.append(("restart", "failed", "", rs["error"][:100]))
    elif rs:
        rows.append((f"restart with {rs['objects']} Ready objects", f"watching in {rs['watching_s']} s", "",
                     f"in the next {rs['window_s']:g} s: {rs['modifying_requests']} modifying requests, "
                     f"{rs['metadata_fetches']} metadata fetches ({rs['url_idps']} URL IdPs)"))
    return rows


def memory(r: dict[str, Any]) -> dict[str, Any] | None:
    """Peak RSS against the floor at the largest N, what each process held before any object (its RSS once
    watching) and the peak above that, and the slope (MB per N) between the two sizes."""
    rows = r.get("convergence") or []
    if not rows or not rows[-1]["keyplane"].get("peak_rss_mb") or not rows[-1]["floor"].get("peak_rss_mb"):
        return None
    last = rows[-1]
    out: dict[str, Any] = {"n": last["n"], "keyplane_mb": last["keyplane"]["peak_rss_mb"],
                           "floor_mb": last["floor"]["peak_rss_mb"]}
    out["ratio"] = round(out["keyplane_mb"] / out["floor_mb"], 3)
    for who in ("keyplane", "floor"):
        ready = last[who].get("ready_rss_mb")
        if ready:
            out[f"{who}_ready_mb"] = round(ready, 1)
            out[f"{who}_above_ready_mb"] = round(last[who]["peak_rss_mb"] - ready, 1)
    if len(rows) > 1 and rows[-1]["n"] > rows[0]["n"]:
        dn = rows[-1]["n"] - rows[0]["n"]
        for who in ("keyplane", "floor"):
            out[f"{who}_mb_per_n"] = round((rows[-1][who]["peak_rss_mb"] - rows[0][who]["peak_rss_mb"]) / dn, 4)
    return out
