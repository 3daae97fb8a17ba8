"""What every benchmark shares: the server under test as its own process (on a fresh data
directory, prepared with ``yuntiao db upgrade`` and the domain functions before it starts),
hearings with invitation links, /proc readings of CPU and memory, percentiles, and the output
convention (progress lines, then exactly one JSON line of figures, last)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
YUNTIAO = VENV_BIN / "yuntiao"
OUT = ROOT / "bench" / "out"  # git-ignored: logs, profiles
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- output -------------------------------------------------------------------------------------


def say(message: str) -> None:
    """A progress line (never JSON, so the last line stays the only one)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cpu_reference_ms(repeat: int = 5) -> float:
    """Median time of a fixed pure-Python workload (dict updates, int → str), in ms.

    The machine is a shared VM whose speed changed by 2–4× between sessions (and within one)
    with nothing else running on it: a rough gauge for comparing the figures of two runs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        table: dict[int, int] = {}
        total = 0
        for i in range(200_000):
            key = i % 1000
            table[key] = table.get(key, 0) + i
            total += len(str(i))
        times.append((time.perf_counter() - started) * 1000)
    return round(sorted(times)[len(times) // 2], 1)


def result(figures: dict[str, Any]) -> None:
    """The one JSON line of figures; print it last. Adds ``cpu_reference_ms`` (measured now,
    after the work) unless the benchmark measured it itself."""
    figures.setdefault("cpu_reference_ms", cpu_reference_ms())
    print(json.dumps(figures, ensure_ascii=False, separators=(", ", ": ")), flush=True)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 2)


def mono_ns() -> int:
    """CLOCK_MONOTONIC in ns: one clock for every process of this machine."""
    return time.monotonic_ns()


# ---- processes ----------------------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def boost_priority(nice: int) -> int:
    """Run this process (and the servers and browsers it starts, which inherit it) at ``nice``
    when allowed (root): other work on the 2 cores then disturbs the figures less. Returns the
    niceness in force."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass
    return os.getpriority(os.PRIO_PROCESS, 0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB, from /proc/<pid>/status."""
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


@dataclass
class CpuWindow:
    """CPU of one process over a window, as % of one core."""

    pid: int
    started_cpu: float = 0.0
    started_at: float = 0.0

    def start(self) -> None:
        self.started_cpu, self.started_at = cpu_seconds(self.pid), time.monotonic()

    def percent(self) -> float:
        elapsed = time.monotonic() - self.started_at
        return 100 * (cpu_seconds(self.pid) - self.started_cpu) / elapsed if elapsed > 0 else 0.0


def machine_busy_s() -> float:
    """CPU-seconds all cores of the machine spent busy since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


@dataclass
class MachineWindow:
    """Busy CPU of the whole machine over a window, as % of one core (200% = both cores)."""

    started_busy: float = 0.0
    started_at: float = 0.0

    def start(self) -> None:
        self.started_busy, self.started_at = machine_busy_s(), time.monotonic()

    def percent(self) -> float:
        elapsed = time.monotonic() - self.started_at
        return 100 * (machine_busy_s() - self.started_busy) / elapsed if elapsed > 0 else 0.0


def wait_quiet(max_wait_s: float, other_limit_pct: float = 25.0, sample_s: float = 3.0) -> float:
    """Wait (up to ``max_wait_s``) until the machine is nearly idle — other work on it (tests,
    builds) skews every figure; returns the busy % of the last sample."""
    deadline = time.monotonic() + max_wait_s
    while True:
        window = MachineWindow()
        window.start()
        time.sleep(sample_s)
        busy = window.percent()
        if busy <= other_limit_pct or time.monotonic() >= deadline:
            return busy
        say(f"  the machine is busy ({busy:.0f}% of a core used by others); waiting")


def wait_http(url: str, seconds: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback URL)
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def stop(proc: subprocess.Popen[bytes], seconds: float = 10) -> None:
    """SIGTERM (SIGKILL after ``seconds``) a process this benchmark started."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def keep_logs(work: Path, prefix: str) -> None:
    """Copy the server logs of ``work`` to bench/out/ (``PREFIX-NAME.log``) and remove ``work``
    (databases of thousands of rows per run)."""
    OUT.mkdir(parents=True, exist_ok=True)
    for log in work.glob("*.log"):
        shutil.copyfile(log, OUT / f"{prefix}-{log.name}")
    shutil.rmtree(work, ignore_errors=True)


# ---- the server under test ----------------------------------------------------------------------


@dataclass
class ServerEnv:
    """A data directory and the secrets the server and the preparation share."""

    data_dir: Path
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    field_key: str = field(
        default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode()
    )
    url: str = ""  # a PostgreSQL database instead of SQLite in data_dir (diagnosis)

    @property
    def database_url(self) -> str:
        if self.url:
            return self.url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'yuntiao.sqlite3').resolve()}"

    def environ(self, port: int | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("YUNTIAO_")} | {
            "YUNTIAO_DATA_DIR": str(self.data_dir),
            "YUNTIAO_SECRET_KEY": self.secret,
            "YUNTIAO_FIELD_ENCRYPTION_KEY": self.field_key,
            "YUNTIAO_SEED_DEMO": "false",
            "YUNTIAO_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        if self.url:
            env["YUNTIAO_DATABASE_URL"] = self.url
        if port is not None:
            env["YUNTIAO_PORT"] = str(port)
        return env

    def copy(self, data_dir: Path) -> ServerEnv:
        """The same database and secrets in another directory (a fresh server per run)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.url:
            name = f"{pg_name(self.url)}_{data_dir.name.replace('-', '_')}"
            pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_name(self.url)}"')
            return ServerEnv(data_dir, self.secret, self.field_key, pg_url(name))
        for name in ("yuntiao.sqlite3", "yuntiao.sqlite3-wal", "yuntiao.sqlite3-shm"):
            if (self.data_dir / name).exists():
                shutil.copyfile(self.data_dir / name, data_dir / name)
        return ServerEnv(data_dir, self.secret, self.field_key)


# PostgreSQL on 127.0.0.1:5432 (as the test suite uses it), for the diagnosis runs only.
PG_ADMIN_DSN = os.environ.get(
    "YUNTIAO_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pg_url(database: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{database}"


def pg_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def pg_admin(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def pg_drop_like(prefix: str) -> None:
    """Drop the databases this benchmark created (names starting with ``prefix``)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            names = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", prefix + "%"
            )
            for row in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{row[0]}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(run())


def db_upgrade(env: ServerEnv) -> None:
    env.data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(YUNTIAO), "db", "upgrade"],
        env=env.environ(),
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_server(env: ServerEnv, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m server.cli serve`` on 127.0.0.1:``port``; returns once /healthz answers."""
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "server.cli", "serve"],
        env=env.environ(port),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


# ---- hearings and links -------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    participant_id: int
    token: str
    kind: str
    name: str
    side: str
    party_id: int | None = None


@dataclass(frozen=True)
class HearingLinks:
    hearing_id: int
    title: str
    links: tuple[Link, ...]  # the mediator first

    @property
    def mediator(self) -> Link:
        return self.links[0]

    @property
    def parties(self) -> tuple[Link, ...]:
        return self.links[1:]


async def _build(
    env: ServerEnv, hearings: int, parties: int, acknowledge: bool, admitted: int, record: bool
) -> list[HearingLinks]:
    from cases.accounts import create_user
    from cases.actor import Actor
    from cases.dispatch import do_assign_mediator
    from cases.intake import CaseInput, PartyInput, do_create_case
    from cases.organisations import do_create_organisation
    from cases.protect import FieldCipher
    from cases.uow import transaction
    from rooms import hearings as rooms_hearings
    from rooms.invitations import issue_invitation
    from server import db

    cipher = FieldCipher(env.field_key)
    system = Actor.system("bench")
    engine = db.make_engine(env.database_url)
    maker = db.make_sessionmaker(engine)
    out: list[HearingLinks] = []
    try:
        async with transaction(maker) as session:
            org = await do_create_organisation(
                session,
                system,
                name="压测调解委员会",
                short_name="压测",
                kind="peoples_committee",
                categories=["contract"],
            )
            mediators = []
            for i in range(max(1, min(25, hearings // 10 or 1))):
                mediators.append(
                    await create_user(
                        session,
                        system,
                        username=f"bench-mediator-{i}",
                        password=secrets.token_urlsafe(16),
                        display_name=f"调解员{i}",
                        role="mediator",
                        organisation_id=org.id,
                        categories=["contract"],
                    )
                )
            org_id = org.id
        now = dt.datetime.now(dt.UTC)
        for h in range(hearings):
            async with transaction(maker) as session:
                roles = ["applicant"] + ["respondent"] * (parties - 1)
                case = await do_create_case(
                    session,
                    system,
                    cipher,
                    org_id,
                    CaseInput(
                        channel="party_application",
                        category="contract",
                        title=f"压测案件 {h + 1}",
                        parties=[
                            PartyInput(role=r, name=f"当事人{h + 1}-{i + 1}")
                            for i, r in enumerate(roles)
                        ],
                    ),
                )
                mediator = mediators[h % len(mediators)]
                case = await do_assign_mediator(session, system, cipher, case, mediator.id)
                hearing = await rooms_hearings.do_schedule_hearing(
                    session,
                    Actor.for_user(mediator),
                    case,
                    rooms_hearings.HearingInput(
                        title=f"压测听证 {h + 1}",
                        scheduled_at=now,
                        duration_minutes=rooms_hearings.MAX_DURATION_MINUTES,
                        record=record,
                    ),
                )
                links = []
                for p in hearing.participants:
                    admit = h < admitted
                    if not p.is_staff and (acknowledge or admit):
                        await rooms_hearings.do_acknowledge_rights(
                            session, Actor("party", p.party_id), p
                        )
                    if record and not p.is_staff:
                        await rooms_hearings.do_record_consent(
                            session, Actor("party", p.party_id), p, True
                        )
                    if admit and not p.is_staff:
                        p = await rooms_hearings.do_join(session, Actor("party", p.party_id), p)
                        p = await rooms_hearings.do_admit(session, Actor.for_user(mediator), p)
                    links.append(
                        Link(
                            p.id,
                            issue_invitation(env.secret, hearing, p),
                            p.kind,
                            p.display_name,
                            p.side,
                            p.party_id,
                        )
                    )
                out.append(HearingLinks(hearing.id, hearing.title, tuple(links)))
    finally:
        await engine.dispose()
    return out


def prepare(
    env: ServerEnv,
    hearings: int,
    parties: int = 3,
    *,
    acknowledge: bool = True,
    admitted: int = 0,
    record: bool = False,
) -> list[HearingLinks]:
    """Migrate a fresh database in ``env`` (``yuntiao db upgrade``) and create ``hearings``
    hearings (one case each, the mediator and ``parties`` parties) with everyone's link.
    ``acknowledge``: parties have confirmed their rights; in the first ``admitted`` hearings the
    parties have also been admitted already (as after an earlier admission: their link lets
    them straight in). ``record``: the hearings are scheduled as recorded and every party agreed."""
    db_upgrade(env)
    return asyncio.run(_build(env, hearings, parties, acknowledge, admitted, record))


def code_version() -> str:
    """The commit under test, with ``+dirty`` when the work tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def python_info() -> str:
    return f"Python {sys.version.split()[0]}"
