#!/usr/bin/env python3
"""Fault harness: real sdiff daemons on loopback, seeded faults, then proof.

One run starts a real sdiff-rocks-master and several sdiff-rocks-followers,
each follower behind a proxy, writes through the master with
`sdiff-ldb --master ... load/delete`, and injects faults at seeded moments:
SIGKILL and restarts of followers and of the master, and on each follower's
link cuts, stalls, a 1 MB/s throttle and byte flips. Then the writes and
faults stop and it checks, with RocksDB's own `ldb` as the oracle:
  - every follower's full scan (every column family but sdiff's own) equals
    the master's;
  - every write the master acknowledged (sdiff-ldb exit 0) is in the master,
    and every acknowledged delete is;
  - no daemon died except those the harness killed (a clean stop exits 0);
  - every database opens with plain `ldb` (no repair needed).
A run prints its seed and its faults; `--seed N --runs 1` replays one.

Usage: harness.py --bin BUILD/bin [--runs N] [--seed FIRST] [--seconds S]
Exit 0 when every run passed; 1 on the first divergence (with its seed).
"""
import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SECRET = "the fault harness's shared secret"
DEADLINE = 90.0  # seconds for a daemon to start or a replica to converge


class Failure(Exception):
    pass


def wait_for(condition, deadline, what):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise Failure(f"timed out after {deadline:.0f} s waiting for {what}")


class Daemon:
    """One sdiff daemon process, its log in a file."""

    def __init__(self, name, argv, log_path):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.proc = None
        self.expected_exit = True  # no process alive, or one the harness killed

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.expected_exit = False

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if self.proc is not None and not self.expected_exit and self.proc.poll() is not None:
            raise Failure(f"{self.name} died on its own (exit {self.proc.returncode}); "
                          f"log {self.log_path}")

    def kill(self):
        if self.alive():
            self.expected_exit = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.log.close()

    def stop(self):
        """SIGTERM: a clean stop must exit 0."""
        if not self.alive():
            return
        self.check_alive()
        self.expected_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure(f"{self.name} did not stop within 30 s of SIGTERM")
        finally:
            self.log.close()
        if code != 0:
            raise Failure(f"{self.name} exited {code} on SIGTERM; log {self.log_path}")


class Proxy:
    """A TCP proxy between a follower and the master that can cut, stall,
    throttle and flip bytes (master to follower), as told."""

    def __init__(self, target_port, rng):
        self.target_port = target_port
        self.rng = rng
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.mode = "pass"
        self.until = 0.0
        self.lock = threading.Lock()
        self.sockets = []
        self.stopping = False
        self.flips = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode, seconds):
        with self.lock:
            self.mode, self.until = mode, time.monotonic() + seconds
            if mode == "cut":
                self._close_all()

    def current(self):
        with self.lock:
            if time.monotonic() > self.until:
                self.mode = "pass"
            return self.mode

    def _close_all(self):
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.sockets = []

    def stop(self):
        self.stopping = True
        with self.lock:
            self._close_all()
        self.listener.close()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._relay, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, True), daemon=True).start()

    def _relay(self, src, dst, from_master):
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                while self.current() == "stall":
                    time.sleep(0.05)
                mode = self.current()
                if mode == "throttle":  # 1 MB/s
                    time.sleep(len(data) / 1e6)
                if mode == "tamper" and from_master and len(data) > 64:
                    i = self.rng.randrange(len(data))
                    data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
                    self.flips += 1
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def ldb(bin_ldb, db, *args, secondary=None):
    argv = [bin_ldb, f"--db={db}"]
    if secondary:
        argv.append(f"--secondary_path={secondary}")
    out = subprocess.run(argv + list(args), capture_output=True, timeout=120)
    if out.returncode != 0:
        raise Failure(f"ldb {' '.join(args)} on {db} failed: {out.stderr.decode()[:300]}")
    return out.stdout.decode("utf-8", "replace")


def scan(db, secondary=None):
    """{family: {hexkey: hexvalue}} for every family but sdiff's own."""
    families = ldb("ldb", db, "list_column_families")
    listed = re.search(r"\{(.*)\}", families)
    if not listed:
        raise Failure(f"ldb cannot list the column families of {db}: {families[:200]!r}")
    names = listed.group(1).split(", ")
    out = {}
    for name in names:
        if name == "__sdiff":
            continue
        sec = tempfile.mkdtemp(dir=secondary) if secondary else None
        text = ldb("ldb", db, f"--column_family={name}", "--hex", "scan", secondary=sec)
        rows = {}
        for line in text.splitlines():  # "0xKEY : 0xVALUE"
            k, sep, v = line.partition(" : ")
            if not sep or not k.startswith("0x"):
                raise Failure(f"ldb scan of {db}: unexpected line {line[:80]!r}")
            rows[k] = v
        out[name] = rows
    return out


def first_difference(a, b):
    for family in sorted(set(a) | set(b)):
        fa, fb = a.get(family, {}), b.get(family, {})
        for key in sorted(set(fa) | set(fb)):
            if fa.get(key) != fb.get(key):
                return f"family {family}, key {key}: master {fa.get(key, '(none)')[:40]}, " \
                       f"follower {fb.get(key, '(none)')[:40]}"
    return None


class Run:
    def __init__(self, args, seed):
        self.args, self.seed = args, seed
        self.rng = random.Random(seed)
        self.dir = tempfile.mkdtemp(prefix=f"sdiff-fault-{seed}-")
        self.faults = []
        # key -> [the last acknowledged value (None: deleted), values sent
        # since without an acknowledgement]: a write whose acknowledgement
        # was lost (the master killed after the commit) may have landed.
        self.acked = {}
        self.bin = args.bin

    def log(self, what):
        self.faults.append(f"{time.monotonic() - self.t0:6.2f}s {what}")
        if self.args.verbose:
            print(f"seed {self.seed}: {self.faults[-1]}", flush=True)

    def master_daemon(self, port):
        return Daemon("master", [f"{self.bin}/sdiff-rocks-master", f"--db={self.dir}/master",
                                 "--create-if-missing", f"--listen=127.0.0.1:{port}",
                                 f"--secret-file={self.secret}", "--allow-writers"],
                      f"{self.dir}/master.log")

    def start_master(self, port):
        self.master = self.master_daemon(port)
        self.master.start()
        m = wait_for(lambda: re.search(r"master listening on 127\.0\.0\.1:(\d+)",
                                       self.master.log_text()[self.master_log_from:]),
                     DEADLINE, "the master to listen")
        return int(m.group(1))

    def follower_daemon(self, i):
        return Daemon(f"follower {i}", [f"{self.bin}/sdiff-rocks-follower",
                                        f"--db={self.dir}/follower{i}",
                                        f"--master=127.0.0.1:{self.proxies[i].port}",
                                        f"--secret-file={self.secret}"],
                      f"{self.dir}/follower{i}.log")

    # ---- writes through the master ----

    def writer(self):
        n = 0
        while not self.stop_writes.is_set():
            n += 1
            if self.rng_w.random() < 0.2 and self.acked:
                key = self.rng_w.choice(sorted(self.acked))
                self.note(key, None, self.ldb_master("delete", key))
                continue
            lines = []
            batch = {}
            for _ in range(self.rng_w.randrange(1, 50)):
                key = f"k{self.rng_w.randrange(5000):05d}"
                size = self.rng_w.choice([8, 100, 1000]) if self.rng_w.random() > 0.02 else 2 << 20
                value = "".join(self.rng_w.choices("abcdefghij", k=16)) * (size // 16 + 1)
                batch[key] = value[:size]
            path = f"{self.dir}/batch.tsv"
            with open(path, "w") as f:
                for k, v in batch.items():
                    f.write(f"{k}\t{v}\n")
            ok = self.ldb_master("load", path)
            for k, v in batch.items():
                self.note(k, v, ok)

    def note(self, key, value, acknowledged):
        if acknowledged:
            self.acked[key] = [value, set()]
        elif key in self.acked:
            self.acked[key][1].add(value)

    def ldb_master(self, *args):
        argv = [f"{self.bin}/sdiff-ldb", f"--master=127.0.0.1:{self.master_port}",
                f"--secret-file={self.secret}"] + list(args)
        try:
            out = subprocess.run(argv, capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0

    # ---- the run ----

    def go(self):
        self.t0 = time.monotonic()
        self.secret = f"{self.dir}/secret"
        with open(self.secret, "w") as f:
            f.write(SECRET)
        os.chmod(self.secret, 0o600)
        self.master_log_from = 0
        self.master_port = self.start_master(0)
        self.proxies = [Proxy(self.master_port, random.Random(self.seed * 7 + i))
                        for i in range(self.args.followers)]
        self.followers = [self.follower_daemon(i) for i in range(self.args.followers)]
        for f in self.followers:
            f.start()
        self.rng_w = random.Random(self.seed * 31)
        self.stop_writes = threading.Event()
        writer = threading.Thread(target=self.writer, daemon=True)
        writer.start()
        try:
            self.inject_faults()
        finally:
            self.stop_writes.set()
            writer.join()
        self.log(f"writes stopped: {len(self.acked)} keys acknowledged")
        for p in self.proxies:
            p.set("pass", 0)
        for f in self.followers:
            if not f.alive():
                f.start()
        self.check()

    def inject_faults(self):
        end = self.t0 + self.args.seconds
        while time.monotonic() < end:
            time.sleep(self.rng.uniform(0.3, 1.5))
            self.master.check_alive()
            for f in self.followers:
                f.check_alive()
            fault = self.rng.choice(["kill follower", "kill follower", "restart follower",
                                     "kill master", "restart master", "cut", "stall",
                                     "throttle", "tamper"])
            i = self.rng.randrange(len(self.followers))
            if fault == "kill follower":
                self.log(f"SIGKILL follower {i}")
                self.followers[i].kill()
                time.sleep(self.rng.uniform(0.05, 1.0))
                self.followers[i].start()
            elif fault == "restart follower":
                self.log(f"restart follower {i}")
                self.followers[i].stop()
                self.followers[i].start()
            elif fault in ("kill master", "restart master"):
                self.log(("SIGKILL" if fault == "kill master" else "restart") + " master")
                if fault == "kill master":
                    self.master.kill()
                else:
                    self.master.stop()
                time.sleep(self.rng.uniform(0.05, 0.5))
                self.master_log_from = len(self.master.log_text())
                self.start_master(self.master_port)  # the same port: proxies go on
            else:
                seconds = self.rng.uniform(0.5, 3.0)
                self.log(f"{fault} follower {i}'s link for {seconds:.1f} s")
                self.proxies[i].set(fault, seconds)

    def check(self):
        sec = f"{self.dir}/secondary"
        os.makedirs(sec)
        why = {}

        def converged():
            self.master.check_alive()
            for f in self.followers:
                f.check_alive()
            master = scan(f"{self.dir}/master", sec)
            for i in range(len(self.followers)):
                try:
                    why[i] = first_difference(master, scan(f"{self.dir}/follower{i}", sec))
                except Failure as e:  # not created yet, say
                    why[i] = str(e)
            return master if not any(why.values()) else None

        try:
            master = wait_for(converged, self.args.deadline, "every follower to equal the master")
        except Failure as e:
            raise Failure(f"{e}: " + "; ".join(f"follower {i}: {d}" for i, d in why.items() if d))
        self.log(f"every follower equals the master (ldb, secondary): "
                 f"{sum(len(rows) for rows in master.values())} keys")
        rows = master.get("default", {})
        hexed = lambda v: None if v is None else "0x" + v.encode().hex().upper()
        for key, (value, maybe) in self.acked.items():
            got = rows.get(hexed(key))
            if got != hexed(value) and got not in {hexed(m) for m in maybe}:
                raise Failure(f"acknowledged write of {key} is not in the master "
                              f"({'absent' if got is None else 'another value'})")
        for f in self.followers:
            f.stop()
        self.master.stop()
        # Each database opens as a primary, no repair, and still agrees.
        master = scan(f"{self.dir}/master")
        for i in range(len(self.followers)):
            d = first_difference(master, scan(f"{self.dir}/follower{i}"))
            if d:
                raise Failure(f"after the stop, follower {i}: {d}")
        for p in self.proxies:
            p.stop()

    def cleanup(self, keep):
        for d in [getattr(self, "master", None)] + getattr(self, "followers", []):
            if d is not None and d.alive():
                d.kill()
        for p in getattr(self, "proxies", []):
            p.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, help="the build's bin directory")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1, help="the first run's seed")
    parser.add_argument("--seconds", type=float, default=15, help="faults per run, seconds")
    parser.add_argument("--followers", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=DEADLINE,
                        help="seconds for the followers to converge after the faults")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    totals = {"runs": 0, "faults": 0}
    for seed in range(args.seed, args.seed + args.runs):
        run = Run(args, seed)
        try:
            run.go()
        except BaseException as e:  # a Failure, or a bug here: no daemon outlives the harness
            if not isinstance(e, Failure):
                run.cleanup(keep=True)
                raise
            print(f"FAIL seed {seed}: {e}\n  faults:\n    " + "\n    ".join(run.faults) +
                  f"\n  replay: {sys.argv[0]} --bin {args.bin} --seed {seed} --runs 1"
                  f" --seconds {args.seconds}\n  logs kept in {run.dir}", flush=True)
            run.cleanup(keep=True)
            return 1
        faults = sum(1 for f in run.faults if "stopped" not in f and "equals" not in f)
        totals["runs"] += 1
        totals["faults"] += faults
        print(f"seed {seed}: ok, {faults} faults, {len(run.acked)} keys acknowledged", flush=True)
        run.cleanup(keep=False)
    print(f"{totals['runs']} runs, {totals['faults']} faults injected, divergences: 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
