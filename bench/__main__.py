"""`python -m bench --n 1000` (`make bench`): every figure from one run, printed as a table and written to
bench/results/latest.json. `--n 100` runs the quick version (N=100 only). See bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# Accelerated idle window: timers tick every IDLE_TICK s instead of every 60 s and the resync runs every
# IDLE_TICK s instead of every 300 s, so IDLE_TICKS ticks cover what 15 minutes would (15 timer ticks).
IDLE_TICK = 2.0
IDLE_TICKS = 15
# The idle window also runs this many IdentityProviders on metadata URLs of their own, refreshing at every
# tick (refreshInterval 1s < the 2 s tick): each is re-read 10+ times, and an unchanged document writes nothing.
IDLE_URL_IDPS = 10


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _scim(n: int) -> dict[str, Any] | None:
    if importlib.util.find_spec("bench.scim_bench") is None:
        return None
    module = importlib.import_module("bench.scim_bench")
    run = getattr(module, "run", None)
    if run is None:
        return None
    result = run(n, max(10, n // 10))
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return dict(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="the largest N (N=100 always runs; default 1000)")
    parser.add_argument("--shared-n", type=int, default=100, help="IdentityProviders sharing one URL")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--kubeconfig", help="run the convergence, floor, idle, latency and restart sections "
                        "against this cluster instead of the emulator (bench/external.py; namespaces are left behind)")
    args = parser.parse_args(argv)
    if args.kubeconfig:
        from .external import run_id
        from .harness import EXTERNAL

        EXTERNAL.update(kubeconfig=args.kubeconfig, run=run_id())
        _log(f"against {args.kubeconfig}: namespaces kpbench-{EXTERNAL['run']}-* "
             f"(kubectl delete ns -l keyplane.dev/bench-run={EXTERNAL['run']})")

    from .convergence import convergence, run_keyplane
    from .render_bench import render
    from .scale_report import memory
    from .shared_url import shared_url

    started = time.monotonic()
    sizes = sorted({min(100, args.n), args.n})
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "convergence": [],
    }
    for n in sizes:
        _log(f"convergence N={n}: Keyplane, then the floor")
        # After the largest run, a 10 s idle window at production intervals (no acceleration).
        # It also carries the latency probes and the restart (bench/latency.py, bench/restart.py).
        kwargs = {"idle_window": 10.0, "settle": 3.0, "probes": True, "restart": True} \
            if n == sizes[-1] else {}
        row = asyncio.run(convergence(n, **kwargs))
        results["convergence"].append(row)
        _log(f"  Keyplane {row['keyplane_s']:.1f}s, floor {row['floor_s']:.1f}s, ratio {row['ratio']}")
    largest = results["convergence"][-1]
    results["peak_rss_mb"] = round(largest["keyplane"]["peak_rss_mb"], 1)
    results["peak_rss_n"] = largest["n"]
    results["peak_rss_method"] = "VmHWM of the `python -m keyplane run` subprocess (/proc/<pid>/status)"
    results["idle_unaccelerated"] = largest["keyplane"].get("idle")
    results["latency_under_load"] = largest["keyplane"].get("latency")
    results["restart"] = largest["keyplane"].get("restart")
    results["memory"] = memory(results)

    idle_n = sizes[0]
    _log(f"idle window N={idle_n}: timers and resync every {IDLE_TICK:g}s, {IDLE_TICKS} ticks")
    env = {"KEYPLANE_TIMER_INTERVAL": f"{IDLE_TICK:g}", "KEYPLANE_RESYNC_INTERVAL": f"{IDLE_TICK:g}"}
    idle_run = asyncio.run(run_keyplane(idle_n, env=env, idle_window=IDLE_TICK * IDLE_TICKS, settle=3.0,
                                        url_idps=IDLE_URL_IDPS, url_refresh="1s"))
    results["idle"] = {"n": idle_n, "tick_s": IDLE_TICK, "ticks": IDLE_TICKS,
                       "equivalent_minutes": IDLE_TICKS * 60 / 60, **idle_run["idle"]}
    results["idle_modifying_requests"] = idle_run["idle"]["modifying_requests"]

    if args.kubeconfig:  # the other sections do not depend on the API server
        return _finish(results, args.out, started)

    _log(f"shared metadata URL: {args.shared_n} IdentityProviders")
    shared = asyncio.run(shared_url(args.shared_n))
    results["shared_url"] = shared
    results["shared_url_fetches_per_interval"] = shared["etag_304"]["fetches_per_interval"]

    _log("keyplane render: 1000 objects")
    rendered = render(1000)
    results["render"] = rendered
    results["render_1000_s"] = rendered["seconds"]

    _log("SCIM (bench/scim_bench.py)")
    try:
        scim = _scim(args.n)
    except Exception as exc:  # another engineer's section must not sink the whole run
        scim = {"error": f"{type(exc).__name__}: {exc}"}
    if scim is not None:
        results["scim"] = scim
    else:
        _log("  bench/scim_bench.py not present: skipped")

    _log("app side (bench/app_bench.py): SQLite vs PostgreSQL, 1 vs 2 replicas, 10 000 users, 1 000 groups")
    from .app_bench import run as run_app_bench

    try:
        results["app"] = run_app_bench(10_000, 1_000)
    except Exception as exc:  # the app's section must not sink the operator's figures
        results["app"] = {"error": f"{type(exc).__name__}: {exc}"}

    return _finish(results, args.out, started)


def _finish(results: dict[str, Any], out: Path, started: float) -> int:
    results["total_s"] = round(time.monotonic() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_table(results)
    if "app" in results:
        from .app_bench import table as app_table

        print()
        print(app_table(results["app"]) if "shapes" in results["app"] else f"app side: {results['app']}")
    print(f"\nwritten {out} (total {results['total_s']}s)")
    return 0


def print_table(r: dict[str, Any]) -> None:
    from .scale_report import scale_rows

    rows = [("measure", "Keyplane", "floor (bare Kopf)", "note")]
    for row in r["convergence"]:
        kp, fl = row["keyplane"], row["floor"]
        rows.append((f"convergence N={row['n']} ({row['objects']} objects)", f"{row['keyplane_s']:.1f} s",
                     f"{row['floor_s']:.1f} s", f"ratio {row['ratio']:.2f}"))
        rows.append(("  objects/s", f"{row['keyplane_objects_per_s']:.1f}", f"{row['floor_objects_per_s']:.1f}",
                     f"creates took {kp['create_s']:.1f} / {fl['create_s']:.1f} s"))
        rows.append(("  operator CPU", f"{kp['operator_cpu_s']:.1f} s", f"{fl['operator_cpu_s']:.1f} s",
                     f"API requests {kp['requests']} / {fl['requests']}"))
        if kp.get("api_latency") and fl.get("api_latency"):  # a real API server's answers, timed by the proxy
            kl, fll = kp["api_latency"], fl["api_latency"]
            rows.append(("  API server answered in (p50 / p99)", f"{kl['p50_s']:.3f} / {kl['p99_s']:.3f} s",
                         f"{fll['p50_s']:.3f} / {fll['p99_s']:.3f} s", "the operator's requests, watches left out"))
    idle = r["idle"]
    rows.append((f"idle modifying requests (N={idle['n']})", str(idle["modifying_requests"]), "",
                 f"{idle['window_s']:g} s, ~{idle['timer_ticks_per_object']} timer ticks/object "
                 f"(= {idle['ticks']} min)"))
    if idle.get("url_idps"):
        urls = idle["url_idps"]
        rows.append((f"  idle window incl. URL IdPs ({urls['count']})", str(idle["modifying_requests"]), "",
                     f"{urls['refreshes_per_idp']:g} refreshes each, statuses {urls['statuses']}"))
    if r.get("idle_unaccelerated"):
        iu = r["idle_unaccelerated"]
        rows.append((f"idle modifying requests (N={r['peak_rss_n']}, real time)", str(iu["modifying_requests"]),
                     "", f"{iu['window_s']:g} s at production intervals"))
    rows.append((f"peak RSS (N={r['peak_rss_n']})", f"{r['peak_rss_mb']:.0f} MB",
                 f"{r['convergence'][-1]['floor']['peak_rss_mb']:.0f} MB", "VmHWM of the operator process"))
    rows.extend(scale_rows(r))
    s = r.get("shared_url")
    if s is None:  # --kubeconfig: the API-server sections only
        _print_rows(rows)
        return
    rows.append((f"shared URL fetches/interval (N={s['n']})", f"{s['etag_304']['fetches_per_interval']:g}", "",
                 f"ETag: {s['etag_304']['statuses']}; no ETag: {s['no_etag_200']['fetches_per_interval']:g} "
                 f"{s['no_etag_200']['statuses']}"))
    rows.append(("keyplane render, 1000 objects", f"{r['render_1000_s']:.2f} s", "",
                 f"CPU {r['render'].get('cpu_s', '?')} s, exit {r['render']['exit_code']}, "
                 f"interpreter start {r['render']['interpreter_startup_s']:.2f} s"))
    if "scim" in r:
        rows.append(("SCIM (scim_bench)", json.dumps(r["scim"], default=str)[:60], "", ""))
    _print_rows(rows)


def _print_rows(rows: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(str(cell).ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    raise SystemExit(main())
