#!/usr/bin/env python3
"""Helper for bench/compare.sh (not meant to be run by hand).

  report.py label BYTES
      A short label for a body of BYTES bytes, two significant digits
      (20496 -> 20KB, 204816 -> 200KB, 2048016 -> 2MB).

  report.py oha FILE
      One line from oha's JSON output (--output-format json):
      achieved_rps mean_ms p50_ms p99_ms p999_ms requests n200 n400 nother
      errors deadline_aborts. `requests` counts answered requests (any
      status); `errors` are connection/socket errors other than the requests
      oha abandoned at the end of the run (deadline_aborts).

  report.py report RESULTS OUT_JSON CLK_TCK
      Reads the lines compare.sh wrote, prints the Markdown tables and
      writes the JSON document. Line kinds (space-separated):
        meta KEY VALUE...
        body ID SIZE_KB SHAPE BYTES RATE BASIS...
        closed ID CONFIG rps mean_ms p99_ms requests non200 errors proxy_ticks sim_ticks aux_ticks other_pct
        open ID CONFIG target achieved mean p50 p99 p999 requests n200 n400 nother errors aborts proxy_ticks sim_ticks aux_ticks other_pct
        rss ID CONFIG KIB NPROCS   (one per run: the peak is the larger)
        check ID CONFIG WHAT VALUE
"""
import json
import sys

LIVEGATE_ALL = "livegate-all"
ORDER = ["direct", "nginx", "haproxy", "livegate-all", "livegate-no-redis", "livegate-no-tracing", "livegate-audit-devnull", "livegate-no-protection"]


def label(n: int) -> str:
    for unit, div in (("MB", 1e6), ("KB", 1e3), ("B", 1)):
        if n >= div:
            x = n / div
            s = f"{x:.2g}" if x < 100 else f"{round(x, -1):.0f}" if x < 1000 else f"{x:.0f}"
            return s + unit
    return f"{n}B"


def oha(path: str) -> None:
    with open(path) as f:
        d = json.load(f)
    s = d["summary"]
    pct = d.get("latencyPercentiles") or {}
    codes = {int(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    errs = d.get("errorDistribution") or {}
    aborts = sum(v for k, v in errs.items() if "deadline" in k.lower() or "aborted" in k.lower())
    other_errs = sum(errs.values()) - aborts
    n = sum(codes.values())
    ms = lambda v: (v or 0.0) * 1000.0  # oha reports seconds
    print(
        f"{s.get('requestsPerSec') or 0:.1f} {ms(s.get('average')):.3f} {ms(pct.get('p50')):.3f} {ms(pct.get('p99')):.3f} "
        f"{ms(pct.get('p99.9')):.3f} {n} {codes.get(200, 0)} {codes.get(400, 0)} {n - codes.get(200, 0) - codes.get(400, 0)} "
        f"{other_errs} {aborts}"
    )


def fnum(v, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v)


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def report(path: str, out_json: str, tck: str) -> None:
    tck = float(tck)
    meta, bodies, rows, checks = {}, {}, {}, []
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p:
                continue
            kind = p[0]
            if kind == "meta":
                meta[p[1]] = " ".join(p[2:])
            elif kind == "body":
                bid, size_kb, shape, nbytes, rate = p[1:6]
                bodies[bid] = {"id": bid, "image_kib": int(size_kb), "shape": shape, "bytes": int(nbytes),
                               "rate": float(rate), "rate_basis": " ".join(p[6:])}
            elif kind == "closed":
                bid, cfg = p[1:3]
                v = list(map(float, p[3:]))
                rps, mean, p99, reqs, non200, errs, pt, st, at, other = v
                per = lambda t: t * 1e6 / tck / reqs if reqs else None
                rows.setdefault((bid, cfg), {"body": bid, "config": cfg})["closed"] = {
                    "rps": rps, "mean_ms": mean, "p99_ms": p99, "requests": int(reqs), "non200": int(non200),
                    "errors": int(errs),
                    "proxy_cpu_us_per_req": per(pt) if cfg != "direct" else None,
                    "upstream_cpu_us_per_req": per(st), "aux_cpu_us_per_req": per(at), "other_cpu_pct": other,
                }
            elif kind == "open":
                bid, cfg = p[1:3]
                v = list(map(float, p[3:]))
                target, achieved, mean, p50, p99, p999, reqs, n200, n400, nother, errs, aborts, pt, st, at, other = v
                per = lambda t: t * 1e6 / tck / reqs if reqs else None
                rows.setdefault((bid, cfg), {"body": bid, "config": cfg})["open"] = {
                    "target_rps": target, "achieved_rps": achieved, "mean_ms": mean, "p50_ms": p50, "p99_ms": p99,
                    "p999_ms": p999, "requests": int(reqs), "status_200": int(n200), "status_400": int(n400),
                    "status_other": int(nother), "errors": int(errs), "aborted_at_end": int(aborts),
                    "saturated": achieved < 0.97 * target,
                    "proxy_cpu_us_per_req": per(pt) if cfg != "direct" else None,
                    "upstream_cpu_us_per_req": per(st), "aux_cpu_us_per_req": per(at), "other_cpu_pct": other,
                }
            elif kind == "rss":
                bid, cfg, kib, nproc = p[1:5]
                r = rows.setdefault((bid, cfg), {"body": bid, "config": cfg})
                # one line per run (closed, open): the peak over both
                mib = int(kib) / 1024 if cfg != "direct" else None
                if mib is not None and (r.get("peak_rss_mib") or 0) < mib:
                    r["peak_rss_mib"] = mib
                r.setdefault("peak_rss_mib", None)
                r["processes"] = int(nproc)
            elif kind == "check":
                checks.append({"body": p[1], "config": p[2], "what": p[3], "value": " ".join(p[4:])})

    # Latency added over direct: the p50/p99 of the direct run whose body is
    # what this configuration's upstream receives -- the body as sent for
    # direct/nginx/haproxy, the canonical body of the same size for livegate
    # (it forwards canonical base64 whatever the client sent).
    def reference(bid, cfg):
        b = bodies[bid]
        if cfg.startswith("livegate"):
            for ob in bodies.values():
                if ob["image_kib"] == b["image_kib"] and ob["shape"] == "canonical":
                    return ob["id"]
            return None
        return bid

    for (bid, cfg), r in rows.items():
        ref = reference(bid, cfg)
        d = rows.get((ref, "direct"), {}).get("open") if ref else None
        o = r.get("open")
        r["latency_reference"] = f"direct {ref}" if ref else None
        for q in ("p50", "p99", "p999"):
            r[f"added_{q}_ms"] = (o[f"{q}_ms"] - d[f"{q}_ms"]) if (o and d) else None

    order = {c: i for i, c in enumerate(ORDER)}
    border = {bid: i for i, bid in enumerate(bodies)}
    keys = sorted(rows, key=lambda k: (border.get(k[0], 99), order.get(k[1], 99)))

    ratios = []
    for bid in bodies:
        lg = rows.get((bid, LIVEGATE_ALL))
        if not lg:
            continue
        for other in ("nginx", "haproxy"):
            o = rows.get((bid, other))
            if not o:
                continue
            g = lambda r, part, k: (r.get(part) or {}).get(k)
            ratios.append({
                "body": bid, "livegate": LIVEGATE_ALL, "vs": other,
                "cpu_per_req": ratio(g(lg, "closed", "proxy_cpu_us_per_req"), g(o, "closed", "proxy_cpu_us_per_req")),
                "cpu_per_req_at_rate": ratio(g(lg, "open", "proxy_cpu_us_per_req"), g(o, "open", "proxy_cpu_us_per_req")),
                "added_p99": ratio(lg.get("added_p99_ms"), o.get("added_p99_ms")),
                "added_p99_ms": [lg.get("added_p99_ms"), o.get("added_p99_ms")],
                "rps": ratio(g(lg, "closed", "rps"), g(o, "closed", "rps")),
                "peak_rss": ratio(lg.get("peak_rss_mib"), o.get("peak_rss_mib")),
            })

    # The targets, read off the run (labels as report.py names them).
    def find(label_, shape):
        for b in bodies.values():
            if b["shape"] == shape and b["id"].startswith(label_ + "-"):
                return b["id"]
        return None

    targets = []
    for name, lbl, shape, key, limit in (
        ("CPU/request, everything on, 200 KB canonical <= nginx", "200KB", "canonical", "cpu_per_req", 1.0),
        ("CPU/request, everything on, 20 KB canonical <= 1.2x nginx", "20KB", "canonical", "cpu_per_req", 1.2),
        ("CPU/request, everything on, 200 KB wrapped <= 1.5x nginx", "200KB", "wrapped", "cpu_per_req", 1.5),
        ("added p99 at the fixed rate, 200 KB canonical <= nginx's", "200KB", "canonical", "added_p99", 1.0),
        ("added p99 at the fixed rate, 200 KB wrapped <= nginx's", "200KB", "wrapped", "added_p99", 1.0),
    ):
        bid = find(lbl, shape)
        r = next((x for x in ratios if x["body"] == bid and x["vs"] == "nginx"), None)
        val = r[key] if r else None
        met = None
        if key == "added_p99" and r:
            a, b = r["added_p99_ms"]
            met = None if a is None or b is None else a <= b
        elif val is not None:
            met = val <= limit
        targets.append({"target": name, "body": bid, "value": val, "limit": limit, "met": met,
                        "detail": r["added_p99_ms"] if (r and key == "added_p99") else None})

    doc = {"meta": meta, "bodies": list(bodies.values()), "results": [rows[k] for k in keys],
           "ratios": ratios, "targets": targets, "checks": checks}
    with open(out_json, "w") as f:
        json.dump(doc, f, indent=1)

    # --- Markdown ---------------------------------------------------------
    print(f"Closed loop: wrk, {meta.get('conns', '?')} connections, 1 thread, {meta.get('duration', '?')} per run. "
          f"Open loop: oha at a fixed rate per body size ({meta.get('rate_rule', '?')}), "
          f"{meta.get('rate_conns', '?')} connections, {meta.get('rate_duration', '?')} per run, latency corrected "
          f"for coordinated omission (measured from each request's scheduled start).\n")
    seen = set()
    for b in bodies.values():
        if b["image_kib"] not in seen:
            seen.add(b["image_kib"])
            print(f"- fixed rate for the {b['id'].split('-')[0]} bodies: {b['rate']:.0f} req/s = {b['rate_basis']}")
    print()
    print("| body | config | req/s | proxy CPU µs/req | +redis/OTLP µs/req | peak RSS MiB | rate (achieved) | p50 ms | p99 ms | p99.9 ms | +p99 vs direct ms | proxy CPU µs/req at rate | statuses (closed / open) | other % |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|")
    for k in keys:
        r = rows[k]
        c, o = r.get("closed") or {}, r.get("open") or {}
        aux = c.get("aux_cpu_us_per_req")
        aux_s = fnum(aux) if r["config"].startswith("livegate") else "–"
        st_c = "all 200" if c and c.get("non200") == 0 else f"{c.get('non200')} non-200" if c else "–"
        if o:
            if o["status_200"] == o["requests"]:
                st_o = "all 200"
            elif o["status_400"] == o["requests"]:
                st_o = "all 400"
            else:
                st_o = f"{o['status_200']}×200 {o['status_400']}×400 {o['status_other']} other"
            if o["errors"]:
                st_o += f", {o['errors']} errors"
        else:
            st_o = "–"
        if c and c.get("non200") == c.get("requests"):
            st_c = "all non-200"
        others = [x["other_cpu_pct"] for x in (c, o) if x]
        other_s = f"{max(others):.0f}" if others else "–"
        rate = f"{o['target_rps']:.0f} ({o['achieved_rps']:.0f}{' SATURATED' if o['saturated'] else ''})" if o else "–"
        print(f"| {r['body']} | {r['config']} | {fnum(c.get('rps'), '{:.0f}')} | {fnum(c.get('proxy_cpu_us_per_req'))} | {aux_s} | "
              f"{fnum(r.get('peak_rss_mib'))} | {rate} | {fnum(o.get('p50_ms'), '{:.2f}')} | {fnum(o.get('p99_ms'), '{:.2f}')} | "
              f"{fnum(o.get('p999_ms'), '{:.2f}')} | {fnum(r.get('added_p99_ms'), '{:+.2f}')} | {fnum(o.get('proxy_cpu_us_per_req'))} | {st_c} / {st_o} | {other_s} |")
    print()
    print("| body | livegate-all / … | CPU/req | CPU/req at rate | added p99 (ms: livegate vs other) | req/s | peak RSS |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for x in ratios:
        a, b = x["added_p99_ms"]
        ap = f"{fnum(x['added_p99'], '{:.2f}x')} ({fnum(a, '{:+.2f}')} vs {fnum(b, '{:+.2f}')})"
        print(f"| {x['body']} | {x['vs']} | {fnum(x['cpu_per_req'], '{:.2f}x')} | {fnum(x['cpu_per_req_at_rate'], '{:.2f}x')} | "
              f"{ap} | {fnum(x['rps'], '{:.2f}x')} | {fnum(x['peak_rss'], '{:.2f}x')} |")
    print()
    print("| target (livegate-all vs nginx) | measured | met? |")
    print("|---|--:|---|")
    for t in targets:
        if t["body"] is None:
            continue
        if t["detail"] is not None:
            a, b = t["detail"]
            v = f"{fnum(a, '{:+.2f}')} ms vs {fnum(b, '{:+.2f}')} ms"
        else:
            v = fnum(t["value"], "{:.2f}x")
        met = "–" if t["met"] is None else "yes" if t["met"] else "**no**"
        print(f"| {t['target']} | {v} | {met} |")
    print("\nother % = the most CPU used during the row's two runs by anything but the load generator, the simulator,"
          " the proxy, redis-server and the OTLP receiver, in % of one core (2 cores = 200 %): other processes, and"
          " the kernel's softirq work (loopback networking, which grows with the bytes moved); well above that"
          " baseline, the machine was shared and the row is noisy.")
    if any((r.get("open") or {}).get("saturated") for r in rows.values()):
        print("\nSATURATED: the configuration could not keep up with the fixed rate (achieved < 97 % of it);"
              " its latencies are those of a queue, not of the proxy.")
    worst = max([(r.get("closed") or {}).get("other_cpu_pct", 0) for r in rows.values()] +
                [(r.get("open") or {}).get("other_cpu_pct", 0) for r in rows.values()] or [0])
    if worst > 25:
        print(f"\nWARNING: up to {worst:.0f}% of a core went outside the benchmark's processes during some runs"
              " (see other %): expect noise.")
    # Feature checks, summed up per kind (every one is in the JSON).
    kinds = {}
    for c in checks:
        kinds.setdefault(c["what"].rsplit("_", 1)[0] if c["what"].endswith(("_closed", "_open")) else c["what"], []).append(c)
    for what, cs in kinds.items():
        vals = [float(c["value"]) for c in cs]
        if len(vals) == 1:
            print(f"check: {what} = {cs[0]['value']}")
        else:
            lo = min(cs, key=lambda c: float(c["value"]))
            print(f"check: {what}: {len(vals)} runs, {min(vals):g}..{max(vals):g} (lowest: {lo['config']} {lo['body']} {lo['what'].rsplit('_', 1)[1]})")


if __name__ == "__main__":
    cmd, args = sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:]
    if cmd == "label" and len(args) == 1:
        print(label(int(args[0])))
    elif cmd == "oha" and len(args) == 1:
        oha(args[0])
    elif cmd == "report" and len(args) == 3:
        report(*args)
    else:
        sys.exit(__doc__)
