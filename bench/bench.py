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

Environment knobs:
  BENCH_RUNS        runs per case (default 3)
  BENCH_QUICK=1     small sizes for a smoke run (200 / 1 000 / 5 000 files, 64 MiB)
  BENCH_SMALL       files in cases 1, 2 and 6 (default 2 000)
  BENCH_MID         files in cases 2 and 3 (default 10 000)
  BENCH_HUGE        files in case 5 (default 100 000, as the issue asks; seeding them takes
                    ~11 min on moto, so a full run takes ~45 min; BENCH_HUGE=20000 for a shorter one)
  BENCH_HUGE_PEERS=1  also run aws/rclone in case 5 (slow: they upload it all first)
  BENCH_BIG_MB      size of the case-4 file in MiB (default 1024)
  BENCH_FS_RUNS     runs of case 7 (default max(100, 30 x BENCH_RUNS))
  BENCH_CONCURRENCY concurrency of the raw loop (default 32, swamp's default)
  BENCH_S3S=1       also run against s3s-fs (BENCH_S3S_BIN or s3s-fs on PATH)
  BENCH_S3S_CASES   case groups run on s3s-fs (default small,big: the transfer ratios; the
                    no-op cases cost the same few requests on any server)
  BENCH_SERVERS     comma list overriding the servers: moto,s3s
  BENCH_OUT         where to write the table (default bench/RESULTS.md)
  BENCH_KEEP=1      keep the temp dir (printed) for inspection
  BENCH_CASES       comma list of case groups to run (default all): small (cases 1, 2, 6),
                    mid (2, 3), big (4, 6), huge (5), fs (7)
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWAMP = ROOT / "target" / "release" / "swamp"
RAW = ROOT / "target" / "release" / "examples" / "raw_s3"
MIB = 1024 * 1024
BUCKET = "bench"


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
CONCURRENCY = env_int("BENCH_CONCURRENCY", 32)
FILE_SIZE = 4096
DIRS = 40
OUT = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "RESULTS.md")
KEEP = os.environ.get("BENCH_KEEP") == "1"
ALL_CASES = ("small", "mid", "big", "huge", "fs")
CASES = [c.strip() for c in os.environ.get("BENCH_CASES", ",".join(ALL_CASES)).split(",") if c.strip()]
S3S_CASES = [c.strip() for c in os.environ.get("BENCH_S3S_CASES", "small,big").split(",") if c.strip()]

PEERS = ("aws", "rclone")


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


class HarnessError(Exception):
    """The harness itself broke (not a slow number)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def measure(argv: list[str], env: dict, server=None, cwd=None) -> Measure:
    """Runs argv once: wall time, CPU, peak RSS and S3 requests.

    Peak RSS comes from GNU time's %M (the child is forked from the small
    `time` process). wait4's ru_maxrss of a child spawned straight from this
    Python process would include Python's own RSS (Linux carries the
    high-water mark of the pre-exec address space over exec), so it is only
    the fallback when GNU time is missing, and then a floor of ~25 MiB.
    """
    before = server.settled_count() if server else None
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    rss_file = None
    full = argv
    if GNU_TIME:
        fd, rss_file = tempfile.mkstemp(prefix="bench-rss-")
        os.close(fd)
        full = [GNU_TIME, "-f", "%M", "-o", rss_file, *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(full, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_mib = usage.ru_maxrss / 1024.0
    if rss_file:
        try:
            lines = Path(rss_file).read_text().strip().splitlines()
            rss_mib = int(lines[-1].strip()) / 1024.0
        except (OSError, ValueError, IndexError):
            pass
        os.unlink(rss_file)
    requests = None
    if server is not None and before is not None:
        after = server.settled_count()
        requests = None if after is None else after - before
    error = ""
    if proc.returncode != 0:
        err.seek(0)
        out.seek(0)
        text = (err.read() or out.read()).decode(errors="replace").strip()
        error = text.splitlines()[-1] if text else f"exit {proc.returncode}"
        log(f"FAILED (exit {proc.returncode}): {' '.join(argv)}: {error}")
    out.close()
    err.close()
    return Measure(
        wall=wall,
        user=usage.ru_utime,
        sys=usage.ru_stime,
        rss_mib=rss_mib,
        rc=proc.returncode,
        requests=requests,
        error=error,
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

    def swamp(self, home: Path, prefix: str, *args: str, defaults: bool = False) -> Measure:
        env = self.swamp_env(home, prefix, defaults)
        return measure([str(SWAMP), "--repo-dir", str(self.repo), *args], env, self.server)

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

    def rclone_push(self, local: Path, prefix: str) -> Measure:
        return measure(["rclone", "sync", str(local), f"m:{BUCKET}/{prefix}"], self.rclone_env, self.server)

    def rclone_pull(self, prefix: str, local: Path) -> Measure:
        return measure(["rclone", "sync", f"m:{BUCKET}/{prefix}", str(local)], self.rclone_env, self.server)

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

    def order(self, run: int) -> list[str]:
        tools = ["swamp", "aws", "rclone"]
        k = run % len(tools)
        return tools[k:] + tools[:k]

    def scratch(self, name: str) -> Path:
        p = self.workdir / "scratch" / name
        if p.exists():
            shutil.rmtree(p)
        p.mkdir(parents=True)
        return p

    def all(self) -> None:
        self.server.create_bucket(BUCKET)
        cases = CASES if self.server.name == "moto" else [c for c in CASES if c in S3S_CASES]
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
        c_noop = f"2. no-op, {n:,} files"
        swamp_home0 = None
        for run in range(RUNS):
            log(f"[{self.server.name}] case 1 push/pull, run {run + 1}/{RUNS}")
            for tool in self.order(run):
                prefix = f"c1-{tool}-{run}"
                if tool == "swamp":
                    home = self.t.new_home()
                    shutil.copytree(ds / "outputs", self.t.cache(home) / "outputs")
                    m = self.t.swamp(home, prefix, "datastore", "sync", "--push")
                    if run == 0:
                        swamp_home0 = home
                elif tool == "aws":
                    m = self.t.aws_push(ds, prefix)
                else:
                    m = self.t.rclone_push(ds, prefix)
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
            for tool in self.order(run):
                if tool == "swamp":
                    home = self.t.new_home()
                    m = self.t.swamp(home, "c1-swamp-0", "datastore", "sync", "--pull")
                    shutil.rmtree(home)
                elif tool == "aws":
                    dest = self.scratch("pull")
                    m = self.t.aws_pull("c1-aws-0", dest)
                else:
                    dest = self.scratch("pull")
                    m = self.t.rclone_pull("c1-rclone-0", dest)
                self.res.row(c_pull, "pull_small", tool).add(m)
        log(f"[{self.server.name}] case 2 no-op {n}")
        for run in range(RUNS):
            for tool in self.order(run):
                if tool == "swamp":
                    m = self.t.swamp(swamp_home0, "c1-swamp-0", "data", "list")
                elif tool == "aws":
                    m = self.t.aws_push(ds, "c1-aws-0")
                else:
                    m = self.t.rclone_push(ds, "c1-rclone-0")
                self.res.row(c_noop, "noop_small", tool).add(m)

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
        c_noop = f"2. no-op, {n:,} files"
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
        c_one = f"3. one changed file among {n:,}"
        log(f"[{self.server.name}] case 3 one changed among {n}")
        for run in range(RUNS):
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
                    shutil.rmtree(home)
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
                    shutil.rmtree(home)
                elif tool == "aws":
                    m = self.t.aws_pull("c4-aws-0", self.scratch("pull"))
                else:
                    m = self.t.rclone_pull("c4-rclone-0", self.scratch("pull"))
                self.res.row(c_pull, "pull_big", tool).add(m)
            shutil.rmtree(self.workdir / "scratch", ignore_errors=True)
            if run > 0:
                for tool in ("swamp", "aws", "rclone"):
                    self.t.remove_prefix(f"c4-{tool}-{run}")
        if self.server.swamp_settings:
            settings = " ".join(f"{k}={v}" for k, v in self.server.swamp_settings.items())
            self.notes.append(f"swamp runs with {settings} on {self.server.name}; the row marked 'defaults' is one run without it.")
            log(f"[{self.server.name}] case 4 pull with swamp's default settings (1 run)")
            home = self.t.new_home()
            m = self.t.swamp(home, "c4-swamp-0", "datastore", "sync", "--pull", defaults=True)
            shutil.rmtree(home)
            self.res.row(f"{c_pull} (swamp defaults)", "pull_big_defaults", "swamp").add(m)
        for tool in ("swamp", "aws", "rclone"):
            self.t.remove_prefix(f"c4-{tool}-0")
        big.unlink()

    # case 5 ------------------------------------------------------------------
    def case_huge(self) -> None:
        n = HUGE_N
        log(f"[{self.server.name}] generating {n} files x 4 KiB in a swamp cache")
        home = self.t.new_home()
        gen_files(self.t.cache(home), n, dirs=100)
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
        c_noop = f"5. no-op, {n:,} files"
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
        if n < 100000:
            self.notes.append(
                f"Case 5 ran with {n:,} files, not the issue's 100 000: uploading 100 000 objects to moto first takes"
                " over 10 minutes on a 2-core machine. `BENCH_CASES=huge BENCH_HUGE=100000 bench/run` measures it"
                " (writes RESULTS.md; use BENCH_OUT to keep the full table)."
            )
        if not HUGE_PEERS:
            self.notes.append(
                f"Case 5: peers not run (BENCH_HUGE_PEERS=1 runs them; each would first upload all {n:,} files)."
            )

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


# --------------------------------------------------------------------------
# Report


def table(res: Results) -> list[str]:
    raw_for = {"push_small": "raw_put_small", "pull_small": "raw_get_small", "push_big": "raw_put_big", "pull_big": "raw_get_big"}
    lines = [
        "| case | tool | runs | median | min | max | S3 requests | peak RSS MiB | CPU s | aws ÷ swamp | rclone ÷ swamp | raw ÷ swamp |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
        ]
        if r.tool == "swamp":
            for peer in PEERS:
                p = res.get(r.key, peer)
                cells.append(fmt_ratio(p.median() if p else None, r.median()))
            rk = raw_for.get(r.key)
            raw = res.get(rk, "raw SDK") if rk else None
            cells.append(fmt_ratio(raw.median() if raw else None, r.median()))
        else:
            cells += ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


@dataclass
class Target:
    text: str
    measured: str
    met: bool | None  # None: could not be evaluated


def targets(res: Results) -> list[Target]:
    out: list[Target] = []

    def med(key, tool):
        r = res.get(key, tool)
        return r.median() if r and r.ok and r.times() else None

    def speedup(key, peer, want, what):
        s, p = med(key, "swamp"), med(key, peer)
        if s is None or p is None:
            out.append(Target(f"{what}: ≥ {want}× faster than {peer}", "not measured", None))
        else:
            out.append(Target(f"{what}: ≥ {want}× faster than {peer}", f"{p / s:.2f}× ({fmt_s(p)} vs {fmt_s(s)})", p / s >= want))

    def requests(key, want, what):
        r = res.get(key, "swamp")
        v = r.requests() if r else None
        if v is None:
            why = "n/a (server does not log requests)" if r else "not measured"
            out.append(Target(f"{what}: ≤ {want} S3 requests", why, None))
        else:
            worst = max(m.requests for m in r.runs if m.requests is not None)
            out.append(Target(f"{what}: ≤ {want} S3 requests", f"{v} (max {worst})", worst <= want))

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

    speedup("noop_mid", "aws", 20, f"no-op, {MID_N:,} files")
    speedup("noop_mid", "rclone", 10, f"no-op, {MID_N:,} files")
    requests("noop_mid", 4, f"no-op, {MID_N:,} files")
    requests("one_mid", 6, f"one changed among {MID_N:,}")
    for key, what in (("push_small", f"push {SMALL_N:,} × 4 KiB"), ("pull_small", f"pull {SMALL_N:,} × 4 KiB")):
        speedup(key, "rclone", 2, what)
        speedup(key, "aws", 5, what)
        rate(key, "raw_put_small" if key.startswith("push") else "raw_get_small", 0.70, what)
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
        f"rclone: {cmd(['rclone', 'version']).splitlines()[0] if shutil.which('rclone') else '?'}; moto {moto_v}; Python {platform.python_version()}",
        f"- settings: BENCH_RUNS={RUNS}, files {SMALL_N:,} / {MID_N:,} / {HUGE_N:,} × 4 KiB, big file {BIG_MB} MiB, "
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
        "user+sys seconds (median), and ratios = peer median ÷ swamp median (above 1: swamp is faster;",
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
        for t in (t for t in targets(b.res) if t.measured != "not measured"):
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
        "  no-op = `swamp data list` on an up-to-date cache (lock, conditional GET of the index, nothing to push,",
        "  release); one changed = one file rewritten (same size) in the cache, then `swamp datastore sync`.",
        "- aws: `aws s3 sync SRC DST --endpoint-url URL --only-show-errors`; rclone: `rclone sync SRC m:bench/PREFIX`",
        "  with default flags. Each tool pushes into its own prefix (rclone sync would delete swamp's index, and a",
        "  peer's no-op only means something against objects it uploaded itself).",
        "- Pulls read the prefix the tool pushed in run 1, into an empty directory / empty cache.",
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
    import signal

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    try:
        sys.exit(main())
    except HarnessError as e:
        log(f"harness error: {e}")
        sys.exit(2)
