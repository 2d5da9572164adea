#!/usr/bin/env python3
"""Helper for bench/gateway.sh (not meant to be run by hand).

  gateway.py payloads IMAGE SIZE_KB OUTDIR
      Pads IMAGE (a JPEG) to about SIZE_KB KiB by inserting APP2 segments (FF E2,
      big-endian length counting itself, at most 65535 each; an unregistered
      "LGPAD" identifier, then random bytes) right after the SOI marker, so it
      stays a valid JPEG whose frame header the gateway still has to walk to.
      APP2 (where ICC profiles live) is kept by metadata removal, so the
      padded image is forwarded as it came, as nginx forwards it; SIZE_KB=0, or an image already that
      large, leaves it as it is. Writes OUTDIR/image.jpg, OUTDIR/canonical.json
      ({"faceImage":"<base64>"}) and OUTDIR/wrapped.json (a data: URL whose
      base64 is wrapped at 76 columns with CRLF, escaped as \\r\\n in the JSON).

  gateway.py report RESULTS CONNS DURATION ROUNDS
      Prints the tables from the result lines bench/gateway.sh wrote:
      case who round req/s mean_ms p99_ms requests non200 errors gw_us sim_us
      other_pct (gw_us is "-" for the direct case), who being direct, gateway, baseline
      or candidate.
"""
import base64
import os
import statistics
import sys


def pad_jpeg(data: bytes, target: int) -> bytes:
    if data[:2] != b"\xff\xd8":
        sys.exit("gateway.py: not a JPEG (no SOI marker)")
    segments = []
    size = len(data)
    while size + 4 < target:  # a segment is 4 header bytes plus its payload
        payload = min(65533, target - size - 4)
        tag = b"LGPAD\0"[:payload]
        segments.append(
            b"\xff\xe2" + (payload + 2).to_bytes(2, "big") + tag + os.urandom(payload - len(tag))
        )
        size += payload + 4
    return data[:2] + b"".join(segments) + data[2:]


def payloads(image: str, size_kb: str, outdir: str) -> None:
    with open(image, "rb") as f:
        data = pad_jpeg(f.read(), int(size_kb) * 1024)
    with open(os.path.join(outdir, "image.jpg"), "wb") as f:
        f.write(data)
    b64 = base64.b64encode(data).decode("ascii")
    with open(os.path.join(outdir, "canonical.json"), "w") as f:
        f.write('{"faceImage":"%s"}' % b64)
    wrapped = "".join(b64[i : i + 76] + "\\r\\n" for i in range(0, len(b64), 76))
    with open(os.path.join(outdir, "wrapped.json"), "w") as f:
        f.write('{"faceImage":"data:image/jpeg;base64,%s"}' % wrapped)


FIELDS = ["rps", "mean", "p99", "requests", "non200", "errors", "gw", "sim", "other"]
HEAD = "{:<18} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>6} {:>6} {:>6}"
ROW = "{:<18} {:>8.0f} {:>8.2f} {:>8.2f} {:>10} {:>10.1f} {:>9d} {:>6d} {:>6d} {:>6}"


def load(path):
    runs = {}  # (case, who) -> list of dicts, in round order
    with open(path) as f:
        for line in f:
            case, who, _round, *vals = line.split()
            run = {k: (None if v == "-" else float(v)) for k, v in zip(FIELDS, vals)}
            runs.setdefault((case, who), []).append(run)
    return runs


def summary(runs):
    med = lambda k: statistics.median(r[k] for r in runs) if runs[0][k] is not None else None
    s = {k: med(k) for k in ("rps", "mean", "p99", "gw", "sim", "other")}
    for k in ("requests", "non200", "errors"):
        s[k] = int(sum(r[k] for r in runs))
    return s


def row(label, s):
    gw = "-" if s["gw"] is None else f"{s['gw']:.1f}"
    return ROW.format(label, s["rps"], s["mean"], s["p99"], gw, s["sim"], s["requests"], s["non200"], s["errors"], f"{s['other']:.0f}%")


def header(first):
    return HEAD.format(first, "req/s", "mean ms", "p99 ms", "gw µs/req", "sim µs/req", "requests", "non200", "errors", "other%")


def change(ratio, more, less):
    pct = abs(ratio - 1) * 100
    return f"{ratio:.3f}x = {pct:.1f}% {more if ratio >= 1 else less}"


def report(path, conns, duration, rounds):
    runs = load(path)
    agg = "median of %s rounds" % rounds if int(rounds) > 1 else "1 round"
    print(f"{conns} connections, {duration} per run, {agg}; requests/non200/errors are totals")
    if any(who == "baseline" for _, who in runs):
        for case in ("canonical", "wrapped"):
            b, c = runs[(case, "baseline")], runs[(case, "candidate")]
            sb, sc = summary(b), summary(c)
            print(f"\n== gateway, {case} body ==")
            print(header(""))
            print(row("baseline", sb))
            print(row("candidate", sc))
            print("candidate/baseline: req/s " + change(sc["rps"] / sb["rps"], "more", "fewer") + " requests per second;")
            print("                    gw cpu/req " + change(sc["gw"] / sb["gw"], "more", "less") + " CPU per request")
            if len(b) > 1:
                per = lambda k: " ".join(f"{y[k] / x[k]:.3f}" for x, y in zip(b, c))
                print(f"  per round: req/s {per('rps')}; gw cpu/req {per('gw')}")
    else:
        direct = None
        print("\n" + header("case") + " {:>9}".format("vs direct"))
        for case, who in runs:
            s = summary(runs[(case, who)])
            name = f"{who}-{case}"
            if who == "direct" and direct is None:
                direct = s["rps"]
            vs = "-" if direct is None else f"{direct / s['rps']:.2f}x"
            print(row(name, s) + f" {vs:>9}")
        print("vs direct = direct req/s / case req/s (time per request relative to calling the simulator directly)")
    worst = max(summary(r)["other"] for r in runs.values())
    if worst > 25:
        print(f"WARNING: other processes used up to {worst:.0f}% of a core during the runs (other%): expect noise")


if __name__ == "__main__":
    cmd, args = sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:]
    if cmd == "payloads" and len(args) == 3:
        payloads(*args)
    elif cmd == "report" and len(args) == 4:
        report(*args)
    else:
        sys.exit(__doc__)
