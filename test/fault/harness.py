#!/usr/bin/env python3
"""Fault harness: real sdiff daemons on loopback, seeded faults, then proof.

One run starts a real sdiff-rocks-master (--sync: a write is acknowledged
once fsynced) holding more keys than a follower may bootstrap or copy from,
and several sdiff-rocks-followers, each behind a proxy: follower 0 copies
the master's files when it starts empty (--sync), follower 1 is bootstrapped
(--no-clone). It writes through the master with `sdiff-ldb --master ...
load/delete`, and injects faults at seeded moments:
  - SIGKILL and restarts of followers and of the master;
  - SIGKILL of a follower timed to its start from nothing (wiped, its link
    throttled: while it copies the master's files or is bootstrapped) and to
    its catching up after a stop (while it resumes or repairs by diff);
  - on each follower's link: cuts, stalls, a 1 MB/s throttle, byte flips;
  - as root: a full disk. The master's and follower 0's databases live on
    size-limited tmpfs mounts that the harness fills to below the daemon's
    --min-free-mb for a few seconds, then frees.
Then the writes and faults stop and it checks, with RocksDB's own `ldb` as
the oracle:
  - every follower's full scan (every column family but sdiff's own) equals
    the master's;
  - every write the master acknowledged (sdiff-ldb exit 0) is in the master,
    and every acknowledged delete is;
  - no daemon died except those the harness killed (a clean stop exits 0);
  - every database opens with plain `ldb` (no repair needed).
A run prints its seed and its faults; `--seed N --runs 1` replays one.

Usage: harness.py --bin BUILD/bin [--runs N] [--seed FIRST] [--seconds S] [--jobs J]
Exit 0 when every run passed; 1 on the first divergence (with its seed).
--jobs runs that many seeds at once (each its own daemons, ports and mounts).
"""
import argparse
import concurrent.futures
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
PRELOAD_KEYS = 20000  # more than a master's bootstrap_min_keys (10000)
RESUME_WINDOW_MB, FOLLOWER_BACKLOG_MB = 8, 4  # the master's, 64 MiB each by default
# Full-disk faults: tmpfs sizes and the daemons' --min-free-mb.
MASTER_DISK_MB, MASTER_RESERVE_MB = 1024, 128
FOLLOWER_DISK_MB, FOLLOWER_RESERVE_MB = 512, 64


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


class Disk:
    """A size-limited tmpfs mounted at `path` (root only) that can be filled
    to below a reserve and freed again."""

    def __init__(self, path, size_mb):
        self.path, self.size_mb = path, size_mb
        self.filler = os.path.join(path, "filler")
        os.makedirs(path)
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", path],
                             capture_output=True)
        if out.returncode != 0:
            raise Failure(f"cannot mount a tmpfs at {path}: {out.stderr.decode().strip()}")
        self.lock = threading.Lock()
        self.timer = None

    def fill(self, leave_mb, seconds):
        """Leaves leave_mb free for `seconds`; returns the MiB written."""
        with self.lock:
            free = shutil.disk_usage(self.path).free
            n = max(0, free - leave_mb * (1 << 20))
            fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                chunk = b"\0" * (1 << 20)
                while n > 0:
                    n -= os.write(fd, chunk[:min(n, len(chunk))])
            except OSError:  # the daemon wrote meanwhile: give back leave_mb
                size = os.fstat(fd).st_size
                os.ftruncate(fd, max(0, size - leave_mb * (1 << 20)))
            finally:
                os.close(fd)
            if self.timer:
                self.timer.cancel()
            self.timer = threading.Timer(seconds, self.free)
            self.timer.daemon = True
            self.timer.start()
            return (free >> 20) - leave_mb

    def free(self):
        with self.lock:
            if os.path.exists(self.filler):
                os.remove(self.filler)

    def unmount(self):
        if self.timer:
            self.timer.cancel()
        self.free()
        subprocess.run(["umount", "-l", self.path], capture_output=True)


def can_mount():
    if os.geteuid() != 0:
        return False
    probe = tempfile.mkdtemp(prefix="sdiff-fault-probe-")
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", probe], capture_output=True)
    os.rmdir(probe)
    return ok


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


def session_phase(log):
    """Where a follower's log says it is: its session's start mode and
    whether a diff finished since, e.g. "(bootstrapping, no diff finished)"."""
    modes = re.findall(r"connected to master \S+: ([a-z ]+) \(", log)
    if not modes:
        return "(before its handshake)"
    done = "diff with master repaired" in log.split("connected to master")[-1]
    return f"({modes[-1]}, {'a diff finished' if done else 'no diff finished'})"


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
        self.refused_for_room = 0  # writes the master refused, its disk short of room
        # The master is an application embedding it (test/fault/app_writer.cc),
        # writing on its own besides sdiff-ldb's writes, or sdiff-rocks-master.
        self.app = {"app": True, "daemon": False}.get(args.master, seed % 2 == 1)
        self.app_starts = 0

    def log(self, what):
        self.faults.append(f"{time.monotonic() - self.t0:6.2f}s {what}")
        if self.args.verbose:
            print(f"seed {self.seed}: {self.faults[-1]}", flush=True)

    def master_daemon(self, port):
        common = [f"--db={self.master_db}", f"--listen=127.0.0.1:{port}",
                  f"--secret-file={self.secret}", "--sync", f"--min-free-mb={MASTER_RESERVE_MB}",
                  # Small limits, so a stalled or throttled follower falls
                  # past them: disconnected as too slow, then beyond the window.
                  f"--resume-window-mb={RESUME_WINDOW_MB}",
                  f"--follower-backlog-mb={FOLLOWER_BACKLOG_MB}"]
        if self.app:  # an application embedding the master, writing on its own
            self.app_starts += 1
            return Daemon("master (app)", [f"{self.bin}/sdiff-fault-app",
                                           f"--seed={self.seed * 1000 + self.app_starts}"] + common,
                          f"{self.dir}/master.log")
        return Daemon("master", [f"{self.bin}/sdiff-rocks-master", "--create-if-missing",
                                 "--allow-writers"] + common, f"{self.dir}/master.log")

    def start_master(self, port):
        self.master = self.master_daemon(port)
        self.master.start()
        m = wait_for(lambda: re.search(r"master listening on 127\.0\.0\.1:(\d+)",
                                       self.master.log_text()[self.master_log_from:]),
                     DEADLINE, "the master to listen")
        return int(m.group(1))

    def follower_daemon(self, i):
        # Follower 0: copies the master's files when empty, fsyncs what it
        # applies, and may sit on a small disk. Follower 1 and later: bootstrapped.
        flags = ["--sync", f"--min-free-mb={FOLLOWER_RESERVE_MB}"] if i == 0 else ["--no-clone"]
        return Daemon(f"follower {i}", [f"{self.bin}/sdiff-rocks-follower",
                                        f"--db={self.follower_db[i]}",
                                        f"--master=127.0.0.1:{self.proxies[i].port}",
                                        f"--secret-file={self.secret}"] + flags,
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

    def preload(self):
        """Enough keys that an empty follower is copied or bootstrapped, not diffed."""
        path = f"{self.dir}/preload.tsv"
        with open(path, "w") as f:
            for i in range(PRELOAD_KEYS):
                f.write(f"p{i:05d}\t{'preloaded value ' * 6}{i}\n")
        if not self.ldb_master("load", path, timeout=120):
            raise Failure("cannot preload the master through sdiff-ldb load")
        self.log(f"preloaded {PRELOAD_KEYS} keys")

    def note(self, key, value, acknowledged):
        if acknowledged:
            self.acked[key] = [value, set()]
        elif key in self.acked:
            self.acked[key][1].add(value)

    def ldb_master(self, *args, timeout=30):
        argv = [f"{self.bin}/sdiff-ldb", f"--master=127.0.0.1:{self.master_port}",
                f"--secret-file={self.secret}"] + list(args)
        try:
            out = subprocess.run(argv, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        if b"refuses writes through it until there is room" in out.stderr:
            self.refused_for_room += 1
        return out.returncode == 0

    # ---- the run ----

    def go(self):
        self.t0 = time.monotonic()
        self.secret = f"{self.dir}/secret"
        with open(self.secret, "w") as f:
            f.write(SECRET)
        os.chmod(self.secret, 0o600)
        self.disks = {}
        self.master_db = f"{self.dir}/master"
        self.follower_db = [f"{self.dir}/follower{i}" for i in range(self.args.followers)]
        if self.args.disks:
            self.disks["master"] = Disk(f"{self.dir}/master-disk", MASTER_DISK_MB)
            self.disks["follower 0"] = Disk(f"{self.dir}/follower0-disk", FOLLOWER_DISK_MB)
            self.master_db = f"{self.dir}/master-disk/db"
            self.follower_db[0] = f"{self.dir}/follower0-disk/db"
        self.master_log_from = 0
        self.master_port = self.start_master(0)
        self.preload()
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
        if self.app:  # the application stops writing too
            self.master.proc.send_signal(signal.SIGUSR1)
        self.log(f"writes stopped: {len(self.acked)} keys acknowledged")
        for disk in self.disks.values():
            disk.free()
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
            faults = ["kill follower", "kill follower", "restart follower", "kill master",
                      "restart master", "cut", "stall", "throttle", "tamper",
                      "kill starting follower", "kill catching-up follower"]
            if self.disks:
                # An application's own writes on a full disk are its business
                # (RocksDB 7.8 may abort it): only sdiff-rocks-master's disk fills.
                faults += ["fill follower disk"] + ([] if self.app else ["fill master disk"])
            fault = self.rng.choice(faults)
            i = self.rng.randrange(len(self.followers))
            if fault == "kill starting follower":
                self.kill_starting(i)
            elif fault == "kill catching-up follower":
                self.kill_catching_up(i)
            elif fault.startswith("fill"):
                who = "master" if fault == "fill master disk" else "follower 0"
                reserve = MASTER_RESERVE_MB if who == "master" else FOLLOWER_RESERVE_MB
                seconds = self.rng.uniform(1.0, 4.0)
                leave = self.rng.randrange(reserve // 4, reserve // 2)
                filled = self.disks[who].fill(leave, seconds)
                self.log(f"fill {who}'s disk ({filled} MiB) to {leave} MiB free "
                         f"(its reserve: {reserve}) for {seconds:.1f} s")
            elif fault == "kill follower":
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

    def check_app_writes(self, master):
        """Every write the application saw committed ("A n" in its output) is
        in the master, unless a later write of the key (acknowledged or not)
        replaced it."""
        acked, pending, writes = {}, {}, 0
        def orphan(ops):  # written, never acknowledged: may have landed
            for family, key, value in ops:
                acked.setdefault((family, key), [None, set(), False])[1].add(value)
        for line in self.master.log_text().split("\n")[:-1]:  # the last: maybe cut
            if line == "app started":
                for ops in pending.values():
                    orphan(ops)
                pending = {}
                continue
            parts = line.split(" ")
            if parts[0] == "W" and len(parts) == 5:
                value = None if parts[4] == "-" else parts[4]
                pending.setdefault(parts[1], []).append((parts[2], parts[3], value))
            elif parts[0] in ("A", "F") and len(parts) >= 2 and parts[1] in pending:
                ops = pending.pop(parts[1])
                if parts[0] == "F":
                    orphan(ops)  # RocksDB said no; it cannot have landed, but be lenient
                    continue
                writes += 1
                for family, key, value in ops:
                    acked[(family, key)] = [value, set(), True]
        for ops in pending.values():
            orphan(ops)
        hexed = lambda v: None if v is None else "0x" + v.encode().hex().upper()
        for (family, key), (value, maybe, known) in acked.items():
            got = master.get(family, {}).get(hexed(key))
            allowed = {hexed(m) for m in maybe}
            if known:
                allowed.add(hexed(value))
            else:
                allowed.add(None)  # never acknowledged: absent is fine too
            if got not in allowed:
                raise Failure(f"the application's acknowledged write of {family}/{key} is not in "
                              f"the master ({'absent' if got is None else 'another value'})")
        self.log(f"the application's {writes} acknowledged writes are in the master")

    def since(self, daemon, offset):
        return daemon.log_text()[offset:]

    def kill_starting(self, i):
        """Wipes follower i and kills it while it starts from nothing over a
        throttled link: follower 0 while it copies the master's files,
        follower 1 while it is bootstrapped."""
        f = self.followers[i]
        f.kill()
        shutil.rmtree(self.follower_db[i], ignore_errors=True)
        self.proxies[i].set("throttle", 4.0)
        offset = len(f.log_text())
        f.start()
        start = "asking master" if i == 0 else "connecting to master"
        wait_for(lambda: start in self.since(f, offset), DEADLINE, f"follower {i} to start")
        time.sleep(self.rng.uniform(0.0, 1.5))
        text = self.since(f, offset)
        if i == 0 and not re.search(r"copied the master's files|not copying|copying the master's "
                                    r"files failed", text):
            phase = "while copying the master's files"
        else:
            phase = session_phase(text)
        f.kill()
        self.log(f"SIGKILL wiped follower {i} {phase}")
        time.sleep(self.rng.uniform(0.05, 0.5))
        f.start()

    def kill_catching_up(self, i):
        """Stops follower i while writes go on, then kills it soon after it
        reconnects over a throttled link: while it resumes or repairs by diff."""
        f = self.followers[i]
        f.stop()
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.proxies[i].set("throttle", 3.0)
        offset = len(f.log_text())
        f.start()
        wait_for(lambda: "connected to master" in self.since(f, offset), DEADLINE,
                 f"follower {i} to reconnect")
        time.sleep(self.rng.uniform(0.0, 1.0))
        phase = session_phase(self.since(f, offset))
        f.kill()
        self.log(f"SIGKILL follower {i} catching up {phase}")
        time.sleep(self.rng.uniform(0.05, 0.5))
        f.start()

    def check(self):
        sec = f"{self.dir}/secondary"
        os.makedirs(sec)
        why = {}

        def converged():
            self.master.check_alive()
            for f in self.followers:
                f.check_alive()
            master = scan(self.master_db, sec)
            for i in range(len(self.followers)):
                try:
                    why[i] = first_difference(master, scan(self.follower_db[i], sec))
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
        if self.disks:
            said = self.followers[0].log_text().count("stops applying until there is room")
            self.log(f"full disks: the master refused {self.refused_for_room} writes for room, "
                     f"follower 0 stopped applying for room {said} times")
        if self.app:
            self.check_app_writes(master)
        for f in self.followers:
            f.stop()
        self.master.stop()
        # Each database opens as a primary, no repair, and still agrees.
        master = scan(self.master_db)
        for i in range(len(self.followers)):
            d = first_difference(master, scan(self.follower_db[i]))
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
        for disk in getattr(self, "disks", {}).values():
            if keep:  # the logs and databases stay readable: copy them off the tmpfs
                shutil.copytree(disk.path, disk.path + "-kept", dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("filler"))
            disk.unmount()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def one_run(args, seed):
    """Runs one seed; returns (seed, None, summary) or (seed, failure text, None)."""
    run = Run(args, seed)
    try:
        run.go()
    except BaseException as e:  # a Failure, or a bug here: no daemon outlives the harness
        run.cleanup(keep=True)
        if not isinstance(e, Failure):
            raise
        return seed, (f"FAIL seed {seed}: {e}\n  faults:\n    " + "\n    ".join(run.faults) +
                      f"\n  replay: {sys.argv[0]} --bin {args.bin} --seed {seed} --runs 1"
                      f" --seconds {args.seconds}\n  logs kept in {run.dir}"), None
    faults = sum(1 for f in run.faults if re.sub(r"^\s*[\d.]+s ", "", f).startswith(FAULT_WORDS))
    run.cleanup(keep=args.keep)
    return seed, None, (faults, len(run.acked))


# The log lines of a run that are faults (the rest: set-up and checks).
FAULT_WORDS = ("SIGKILL", "restart", "cut", "stall", "throttle", "tamper", "fill")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, help="the build's bin directory")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1, help="the first run's seed")
    parser.add_argument("--seconds", type=float, default=15, help="faults per run, seconds")
    parser.add_argument("--followers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--master", choices=["mixed", "app", "daemon"], default="mixed",
                        help="the master: an application embedding it (sdiff-fault-app), "
                             "sdiff-rocks-master, or (mixed) the app for odd seeds")
    parser.add_argument("--disks", choices=["auto", "yes", "no"], default="auto",
                        help="full-disk faults on tmpfs mounts (needs root; auto: if possible)")
    parser.add_argument("--deadline", type=float, default=DEADLINE,
                        help="seconds for the followers to converge after the faults")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep every run's logs and databases")
    args = parser.parse_args()
    mountable = can_mount()
    if args.disks == "yes" and not mountable:
        print("harness: --disks yes needs root and tmpfs mounts", file=sys.stderr)
        return 2
    args.disks = mountable if args.disks == "auto" else args.disks == "yes"
    if not args.disks:
        print("harness: not root: no full-disk faults", flush=True)
    totals = {"runs": 0, "faults": 0}
    seeds = range(args.seed, args.seed + args.runs)
    failed = None
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        pending = set()
        it = iter(seeds)
        while True:
            while failed is None and len(pending) < args.jobs:
                seed = next(it, None)
                if seed is None:
                    break
                pending.add(pool.submit(one_run, args, seed))
            if not pending:
                break
            done, pending = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                seed, failure, summary = future.result()
                if failure:
                    print(failure, flush=True)
                    failed = failed or failure
                    continue
                faults, acked = summary
                totals["runs"] += 1
                totals["faults"] += faults
                print(f"seed {seed}: ok, {faults} faults, {acked} keys acknowledged", flush=True)
    if failed:
        return 1
    print(f"{totals['runs']} runs, {totals['faults']} faults injected, divergences: 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
