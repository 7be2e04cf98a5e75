"""Real sdiff daemons and servers for the monitoring tests, on loopback.

Every process is started with a parent-death signal (SIGKILL), so none
outlives the test even when ctest kills it at its timeout; Processes.stop_all()
stops them in the normal way out.
"""
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

SECRET = "the monitoring tests' shared secret"
PR_SET_PDEATHSIG = 1


class Failure(Exception):
    pass


def _die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_for(condition, deadline, what):
    """Polls `condition` until it returns something true; Failure at the deadline."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            last = condition()
        except (OSError, ValueError, KeyError, IndexError) as e:  # not up yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise Failure(f"timed out after {deadline:.0f} s waiting for {what} (last: {last!r})")


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def http_json(url, timeout=5):
    return json.loads(http_get(url, timeout)[2])


class Processes:
    """The processes a test started, each with its output in a file."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}

    def start(self, name, argv):
        out = open(os.path.join(self.workdir, name + ".out"), "wb")
        err = open(os.path.join(self.workdir, name + ".err"), "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=err, preexec_fn=_die_with_parent)
        self.procs[name] = proc
        return proc

    def output(self, name, stream="out"):
        with open(os.path.join(self.workdir, f"{name}.{stream}"), errors="replace") as f:
            return f.read()

    def printed_port(self, name, pattern, deadline=30):
        """The port in the line `pattern` (a regex with one group) that `name` printed."""

        def find():
            if self.procs[name].poll() is not None:
                raise Failure(f"{name} exited {self.procs[name].returncode}: "
                              f"{self.output(name, 'err')[-2000:]}")
            m = re.search(pattern, self.output(name))
            return int(m.group(1)) if m else None

        return wait_for(find, deadline, f"{name} to print {pattern!r}")

    def stop_all(self):
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def dump(self, names=None):
        """Each process's stderr tail, for a failure's report."""
        for name in names or self.procs:
            print(f"--- {name} stderr (tail) ---\n{self.output(name, 'err')[-3000:]}")


def start_pair(procs, bindir, workdir):
    """A master (accepting writers) and a follower, each with --metrics=127.0.0.1:0.

    Returns (master_port, master_metrics_port, follower_metrics_port)."""
    secret = os.path.join(workdir, "secret")
    with open(secret, "w") as f:
        f.write(SECRET)
    os.chmod(secret, 0o600)
    procs.start("master", [
        os.path.join(bindir, "sdiff-rocks-master"), "--db=" + os.path.join(workdir, "master"),
        "--create-if-missing", "--listen=127.0.0.1:0", "--metrics=127.0.0.1:0",
        "--allow-writers", "--secret-file=" + secret])
    master_port = procs.printed_port("master", r"serving .* on port (\d+)")
    master_metrics = procs.printed_port("master", r"metrics on port (\d+)")
    procs.start("follower", [
        os.path.join(bindir, "sdiff-rocks-follower"), "--db=" + os.path.join(workdir, "follower"),
        f"--master=127.0.0.1:{master_port}", "--metrics=127.0.0.1:0", "--secret-file=" + secret])
    follower_metrics = procs.printed_port("follower", r"metrics on port (\d+)")
    return master_port, master_metrics, follower_metrics


def write_keys(bindir, workdir, master_port, count, prefix="key"):
    """Writes `count` keys through the master with sdiff-ldb (one load)."""
    path = os.path.join(workdir, f"{prefix}.tsv")
    with open(path, "w") as f:
        for i in range(count):
            f.write(f"{prefix}{i}\tvalue{i}\n")
    r = subprocess.run([
        os.path.join(bindir, "sdiff-ldb"), f"--master=127.0.0.1:{master_port}",
        "--secret-file=" + os.path.join(workdir, "secret"), "load", path],
        capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise Failure(f"sdiff-ldb load exited {r.returncode}: {r.stderr}")


def metric_names(page):
    """The metric names a Prometheus text page declares (its # TYPE lines)."""
    return {m.group(1) for m in re.finditer(r"^# TYPE (\S+) \S+$", page, re.M)}


def run_test(name, body):
    """Runs body(procs, workdir) in a fresh temporary directory; returns the exit code.

    A Failure prints its reason and the processes' stderr; whatever happens,
    every process started is stopped and the directory removed."""
    workdir = tempfile.mkdtemp(prefix=f"sdiff-{name}-")
    procs = Processes(workdir)
    try:
        return body(procs, workdir)
    except Failure as e:
        print(f"FAILED: {e}")
        procs.dump()
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
