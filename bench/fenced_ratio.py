#!/usr/bin/env python3
# fenced_ratio.py PROFILE.json: issue 19's measure of a fenced spin, per stall.
import json, sys
d = json.load(open(sys.argv[1]))
for s in d['scenarios']:
    tl = s['timeline']  # [t, req_per_s, p50, p99]
    ev = s['events']
    stalls = [e['t'] for e in ev if e['kind'] == 'stall']
    rebuilds = [e['t'] for e in ev if e['kind'] == 'rebuild']
    if not stalls:
        continue
    before = [r for t, r, *_ in tl if 0.5 <= t < stalls[0] - 0.05]
    base = sum(before) / len(before)
    ratios = []
    for st in stalls:
        rb = min([r for r in rebuilds if r > st], default=None)
        if rb is None:
            continue
        end = st + d['stall_len_ms'] / 1000.0
        win = [r for t, r, *_ in tl if rb + 0.05 <= t and t + d['bin_s'] <= end]
        if win:
            ratios.append(sum(win) / len(win) / base)
    print(f"{s['name']}: before {base:.0f} req/s; between rebuild and end of spin: " +
          ", ".join(f"{x:.2f}" for x in ratios))
