#!/usr/bin/env python3
"""A real Prometheus server scraping a real sdiff master and follower.

Starts sdiff-rocks-master and sdiff-rocks-follower with --metrics on
loopback, and /usr/bin/prometheus (a generated config scraping both every
second, loading deploy/prometheus/sdiff-rules.yml, its own temporary TSDB,
listening on a loopback port the OS picks), writes keys through the master
with sdiff-ldb, then asks Prometheus's HTTP API:
  - /api/v1/targets: both targets up;
  - /api/v1/query: the master's sdiff_connected_followers is 1, the master
    sees the follower (peer label) at lag 0, the follower's
    sdiff_applied_sequence reaches the master's sdiff_master_sequence after
    the writes and its sdiff_lag_sequences and sdiff_lag_seconds are 0;
  - /api/v1/metadata: the types Prometheus recorded (gauge, counter);
  - /api/v1/rules: every alert rule loaded and evaluated without error;
  - every dashboard expression (deploy/grafana) is valid PromQL and returns
    data from these daemons.
Every wait has a deadline; everything it started is stopped on every way out.

Usage: prometheus_test.py --bin BUILD/bin --deploy SOURCE/deploy [--prometheus PATH]
"""
import argparse
import json
import os
import sys
import urllib.error
import urllib.parse

import daemons
from daemons import Failure, http_json, wait_for

DEADLINE = 20  # seconds for each condition; scrapes and rule evaluations are every second
KEYS = 50


def listening_ports(pid):
    """The TCP ports process `pid` listens on, from /proc (no ss or netstat needed)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # 0A: LISTEN
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            answer = http_json(url)
        except urllib.error.HTTPError as e:  # a bad query is a 400 with the reason in the body
            raise Failure(f"{path} {params}: HTTP {e.code}: {e.read().decode(errors='replace')}")
        if answer.get("status") != "success":
            raise Failure(f"{path} {params}: {answer}")
        return answer["data"]

    def query(self, expr):
        """An instant query's samples: [(labels, float value)]."""
        data = self.api("query", query=expr)
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]


def start_prometheus(procs, binary, workdir, rules, targets):
    config = os.path.join(workdir, "prometheus.yml")
    # The scrape config docs/operations.md ("Monitor") shows, with 1 s intervals.
    with open(config, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: sdiff
    static_configs:
      - targets: [{", ".join(f"'{t}'" for t in targets)}]
""")
    proc = procs.start("prometheus", [
        binary, "--config.file=" + config,
        "--storage.tsdb.path=" + os.path.join(workdir, "tsdb"),
        "--web.listen-address=127.0.0.1:0",  # Prometheus logs :0, not the port it got
        "--log.level=warn"])

    def port():
        if proc.poll() is not None:
            raise Failure(f"prometheus exited {proc.returncode}: {procs.output('prometheus', 'err')}")
        ports = listening_ports(proc.pid)
        return next(iter(ports)) if len(ports) == 1 else None

    prom = Prometheus(wait_for(port, DEADLINE, "prometheus to listen"))
    wait_for(lambda: daemons.http_get(prom.base + "/-/ready")[0] == 200, DEADLINE,
             "prometheus to be ready")
    return prom


def one(samples, what):
    if len(samples) != 1:
        raise Failure(f"{what}: expected one sample, got {samples}")
    return samples[0]


def check(prom, master, follower, bindir, workdir, master_port, dashboard):
    # Both targets scraped, and healthy.
    def targets_up():
        active = prom.api("targets")["activeTargets"]
        health = {t["labels"]["instance"]: t["health"] for t in active}
        return health if health == {master: "up", follower: "up"} else None

    wait_for(targets_up, DEADLINE, f"targets {master} and {follower} up")

    daemons.write_keys(bindir, workdir, master_port, KEYS)

    # The master's connected-followers count, and its view of the follower.
    def connected():
        labels, value = one(prom.query("sdiff_connected_followers"), "sdiff_connected_followers")
        return (labels, value) if value == 1 else None

    labels, _ = wait_for(connected, DEADLINE, "sdiff_connected_followers == 1")
    if labels.get("instance") != master or labels.get("job") != "sdiff":
        raise Failure(f"sdiff_connected_followers has labels {labels}")

    # The follower catches up: its applied sequence reaches the master's
    # (at least the keys written), and its lag is 0 in sequences and seconds.
    def caught_up():
        _, master_seq = one(prom.query(f'sdiff_master_sequence{{instance="{master}"}}'),
                            "master's sdiff_master_sequence")
        _, applied = one(prom.query("sdiff_applied_sequence"), "sdiff_applied_sequence")
        lag_labels, lag = one(prom.query("sdiff_lag_sequences"), "sdiff_lag_sequences")
        _, lag_s = one(prom.query("sdiff_lag_seconds"), "sdiff_lag_seconds")
        peer_labels, peer_lag = one(prom.query("sdiff_follower_lag_sequences"),
                                    "master's sdiff_follower_lag_sequences")
        ok = master_seq >= KEYS and applied == master_seq and lag == 0 and lag_s == 0 and peer_lag == 0
        return (master_seq, lag_labels, peer_labels) if ok else None

    master_seq, lag_labels, peer_labels = wait_for(
        caught_up, DEADLINE, "the follower's applied sequence to reach the master's, lag 0")
    if lag_labels.get("instance") != follower:
        raise Failure(f"sdiff_lag_sequences has labels {lag_labels}, not the follower's")
    if not peer_labels.get("peer", "").startswith("127.0.0.1:") or peer_labels["instance"] != master:
        raise Failure(f"sdiff_follower_lag_sequences has labels {peer_labels}")
    info = {l["role"]: l["instance"] for l, _ in prom.query("sdiff_info")}
    if info != {"master": master, "follower": follower}:
        raise Failure(f"sdiff_info roles: {info}")

    # The types Prometheus recorded from the TYPE lines.
    expected = {
        "sdiff_connected_followers": "gauge",
        "sdiff_lag_sequences": "gauge",
        "sdiff_lag_seconds": "gauge",
        "sdiff_follower_lag_seconds": "gauge",
        "sdiff_bytes_sent_total": "counter",
        "sdiff_audit_mismatches_total": "counter",
        "sdiff_disk_free_bytes": "gauge",
    }

    def metadata():
        data = prom.api("metadata")
        got = {name: data[name][0]["type"] for name in expected if name in data}
        return got if got == expected else None

    wait_for(metadata, DEADLINE, f"metadata types {expected}")

    # Every alert rule loaded and evaluated cleanly on these targets.
    def rules_ok():
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if len(rules) < 5 or any(r.get("lastEvaluation", "").startswith("0001") for r in rules):
            return None  # not all evaluated yet
        bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        if bad:
            raise Failure(f"rules failing: {bad}")
        return len(rules)

    rule_count = wait_for(rules_ok, DEADLINE, "every rule evaluated")

    # The dashboard's queries, with Grafana's variables given values.
    with open(dashboard) as f:
        panels = json.load(f)["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    empty = []
    for e in exprs:
        q = e.replace("$instance", ".*").replace("$__rate_interval", "1m")
        if not prom.query(q):
            empty.append(e)
    # A few need history or a reserve to have data (a rate over a minute, the
    # last audit's age); most must answer now.
    if len(empty) > len(exprs) // 3:
        raise Failure(f"dashboard queries with no data: {empty}")
    print(f"prometheus: targets up; connected followers 1; follower at master sequence "
          f"{master_seq:.0f}, lag 0; {rule_count} rules healthy; {len(exprs)} dashboard queries "
          f"valid ({len(exprs) - len(empty)} with data)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--deploy", required=True)
    parser.add_argument("--prometheus", default="/usr/bin/prometheus")
    args = parser.parse_args()
    rules = os.path.join(args.deploy, "prometheus", "sdiff-rules.yml")
    dashboard = os.path.join(args.deploy, "grafana", "sdiff-dashboard.json")

    def run(procs, workdir):
        master_port, master_metrics, follower_metrics = daemons.start_pair(procs, args.bin, workdir)
        master = f"127.0.0.1:{master_metrics}"
        follower = f"127.0.0.1:{follower_metrics}"
        prom = start_prometheus(procs, args.prometheus, workdir, rules, [master, follower])
        check(prom, master, follower, args.bin, workdir, master_port, dashboard)
        return 0

    return daemons.run_test("prometheus", run)

if __name__ == "__main__":
    sys.exit(main())
