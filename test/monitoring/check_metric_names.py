#!/usr/bin/env python3
"""Every sdiff_* metric the alert rules and the dashboard use is one the daemons export.

Starts a real sdiff-rocks-master and sdiff-rocks-follower with --metrics on
loopback, scrapes both /metrics pages, and compares the names they declare
with those in deploy/prometheus/sdiff-rules.yml and
deploy/grafana/sdiff-dashboard.json. A renamed metric breaks this test, not
an operator's alerting.

Usage: check_metric_names.py --bin BUILD/bin --deploy SOURCE/deploy
"""
import argparse
import json
import os
import re
import sys

import yaml

import daemons

NAME = re.compile(r"\bsdiff_[A-Za-z0-9_]+")


def rule_exprs(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs(path):
    with open(path) as f:
        doc = json.load(f)
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"] if "definition" in v]
    return exprs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--deploy", required=True)
    args = parser.parse_args()

    used = {}
    for what, exprs in (
            ("sdiff-rules.yml", rule_exprs(os.path.join(args.deploy, "prometheus", "sdiff-rules.yml"))),
            ("sdiff-dashboard.json",
             dashboard_exprs(os.path.join(args.deploy, "grafana", "sdiff-dashboard.json")))):
        if not exprs:
            raise daemons.Failure(f"{what}: no expressions found")
        for e in exprs:
            for name in NAME.findall(e):
                used.setdefault(name, set()).add(what)

    def check(procs, workdir):
        _, master_metrics, follower_metrics = daemons.start_pair(procs, args.bin, workdir)
        exported = set()
        for role, port in (("master", master_metrics), ("follower", follower_metrics)):
            status, _, page = daemons.http_get(f"http://127.0.0.1:{port}/metrics")
            if status != 200:
                raise daemons.Failure(f"{role} /metrics answered {status}")
            names = daemons.metric_names(page)
            if "sdiff_info" not in names or "sdiff_disk_free_bytes" not in names:
                raise daemons.Failure(f"{role} /metrics lacks sdiff_info or the disk:\n{page}")
            exported |= names
        missing = {n: sorted(w) for n, w in used.items() if n not in exported}
        print(f"{len(used)} sdiff_* names used by the rules and the dashboard, "
              f"{len(exported)} exported by a master and a follower")
        for name, where in sorted(missing.items()):
            print(f"not exported: {name} (used in {', '.join(where)})")
        if missing:
            return 1
        print("every name used is exported")
        return 0

    return daemons.run_test("metric-names", check)

if __name__ == "__main__":
    sys.exit(main())
