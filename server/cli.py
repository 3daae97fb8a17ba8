"""The ``yuntiao`` command line: serve, db upgrade, demo, audit verify, evidence verify,
esign verify, esign remind, user create.

Settings come from ``YUNTIAO_*`` environment variables (see ``config``); every sub-command has
``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import getpass
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases import accounts, demo
from cases.actor import Actor
from cases.audit import verify_chain
from cases.errors import DomainError
from cases.protect import FieldCipher
from cases.uow import transaction
from config import Settings, describe
from server import db

T = TypeVar("T")
Maker = async_sessionmaker[AsyncSession]
DEMO_FILE = "demo-accounts.txt"
# Young-generation collections cost about the live young objects (a PDF being signed or checked
# holds some 20,000); on this VM they took 3–43 ms each, one every second agreement (render, five
# signatures, validation). 100,000 makes them 5× rarer for about 7 MB more memory at 1,000
# participants (bench/README.md).
GC_GEN0_THRESHOLD = 100_000  # default 700
# How long a new recorder waits for its predecessor to close its files (seconds).
RECORDER_LOCK_WAIT_S = 30.0


def load_settings() -> Settings:
    return Settings.from_env().with_generated_secrets()


def _run_db(settings: Settings, work: Callable[..., Awaitable[T]], *args: object) -> T:
    """Run ``work(sessionmaker, *args)`` on a short-lived engine (CLI commands are one-shot)."""

    async def runner() -> T:
        engine = db.make_engine(settings.database_url_resolved)
        try:
            return await work(db.make_sessionmaker(engine), *args)
        finally:
            await engine.dispose()

    return asyncio.run(runner())


async def _seed(maker: Maker, settings: Settings) -> list[demo.DemoLogin] | None:
    async with transaction(maker) as session:
        if await demo.already_seeded(session):
            return None
        return await demo.seed_demo(session, FieldCipher(settings.field_encryption_key))


def ensure_demo(settings: Settings) -> None:
    """Seed the demo data once, keep the logins in DATA_DIR/demo-accounts.txt, print them."""
    path = settings.data_dir / DEMO_FILE
    logins = _run_db(settings, _seed, settings)
    if logins is not None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            for login in logins:
                fh.write(
                    f"{login.username}\t{login.password}\t{login.role}\t{login.display_name}\n"
                )
    if path.exists():
        print("Demo accounts (username / password / role):")
        for line in path.read_text().splitlines():
            username, password, role, name = line.split("\t")
            print(f"  {username:<10} {password:<14} {role:<13} {name}")


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import create_app

    settings = load_settings()
    settings = dataclasses.replace(
        settings, host=args.host or settings.host, port=args.port or settings.port
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    db.upgrade_sync(settings.database_url_resolved)
    if settings.seed_demo:
        ensure_demo(settings)
    print(
        f"Yuntiao is running at http://{settings.host}:{settings.port}/  (Ctrl+C stops it)",
        flush=True,
    )
    app = create_app(settings)
    # Hearing relays care about pauses: keep the start-up objects (modules, templates) out of
    # every later collection, and collect the young generation less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = load_settings()
    db.upgrade_sync(settings.database_url_resolved, args.revision)
    print(f"Database is at revision {args.revision}.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = load_settings()
    db.upgrade_sync(settings.database_url_resolved)
    ensure_demo(settings)
    return 0


async def _verify(maker: Maker) -> tuple[bool, str]:
    async with maker() as session:
        report = await verify_chain(session)
    if report.ok:
        return True, f"OK: audit chain intact ({report.rows} rows)"
    return False, f"BROKEN: first bad row {report.first_bad_seq}: {report.problem}"


def cmd_audit_verify(args: argparse.Namespace) -> int:
    ok, message = _run_db(load_settings(), _verify)
    print(message)
    return 0 if ok else 1


async def _evidence_verify(maker: Maker, settings: Settings, sign: bool) -> tuple[bool, str]:
    from evidence import ledger
    from evidence.runtime import EvidenceRuntime
    from evidence.verify import verify_all

    runtime = EvidenceRuntime.from_settings(settings)
    async with maker() as session:
        report = await verify_all(session, runtime.store, runtime.key)
    lines = [
        f"{'OK' if report.ok else 'BROKEN'}: {report.files} evidence files re-hashed, "
        f"{report.entries} ledger entries, {report.tree_heads} signed tree heads checked"
    ]
    lines += [f"  - {problem}" for problem in report.problems]
    if report.ok and sign:
        async with transaction(maker) as session:
            head = await ledger.sign_tree_head(session, runtime.key)
        lines.append(f"Signed tree head: size {head.tree_size}, root {head.root_hash}")
    return report.ok, "\n".join(lines)


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    settings = load_settings()
    ok, message = _run_db(settings, _evidence_verify, settings, args.sign)
    print(message)
    return 0 if ok else 1


async def _record(maker: Maker, settings: Settings, hearing_id: int, url: str) -> str:
    """Join the hearing as its recorder, record a new run until dismissed (or SIGTERM), then
    archive. One recorder per hearing: the recording lock is waited for briefly (a predecessor
    closing its files) and otherwise left to the recorder that holds it."""
    from recordings import archive
    from rooms.hearings import recorder_of
    from rooms.invitations import issue_invitation
    from rooms.models import Hearing
    from signaling.peer import host_addresses
    from signaling.recorder import record

    root = settings.recordings_dir
    stopping = asyncio.Event()
    # SIGTERM (the server shuts down): close the files cleanly, then archive them.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    try:
        async with archive.hold(root, hearing_id, archive.RECORDING_LOCK, RECORDER_LOCK_WAIT_S):
            async with maker() as session:
                hearing = await session.get(Hearing, hearing_id)
                recorder = recorder_of(hearing) if hearing is not None else None
                if hearing is None or recorder is None or hearing.recording_since is None:
                    return f"Hearing {hearing_id} is not being recorded."
                token = issue_invitation(settings.secret_key, hearing, recorder)
            run = await asyncio.to_thread(archive.new_run, root, hearing_id)
            addresses = [
                a.strip() for a in settings.recorder_host_addresses.split(",") if a.strip()
            ]
            chosen = host_addresses(addresses) if addresses else contextlib.nullcontext()
            with chosen:
                await record(url, token, run, stopping)
    except archive.LockBusy:
        return f"Hearing {hearing_id} is being recorded by another recorder."
    added = await archive.archive_hearing(
        maker, root, hearing_id, key=archive.master_key(settings.recording_encryption_key)
    )
    return f"Hearing {hearing_id}: {len(added)} recording files archived."


def cmd_record(args: argparse.Namespace) -> int:
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    print(_run_db(settings, _record, settings, args.hearing, args.url), flush=True)
    return 0


async def _recordings_verify(maker: Maker, settings: Settings) -> tuple[bool, str]:
    from recordings import archive

    key = archive.master_key(settings.recording_encryption_key)
    async with maker() as session:
        report = await archive.verify(session, settings.recordings_dir, key=key)
    lines = [f"{'OK' if report.ok else 'BROKEN'}: {report.checked} recording files re-hashed"]
    lines += [f"  - {problem}" for problem in report.problems]
    return report.ok, "\n".join(lines)


def cmd_recordings_verify(args: argparse.Namespace) -> int:
    settings = load_settings()
    ok, message = _run_db(settings, _recordings_verify, settings)
    print(message)
    return 0 if ok else 1


async def _recordings_purge(maker: Maker, settings: Settings) -> str:
    from recordings import archive

    async with transaction(maker) as session:
        deleted = await archive.purge(
            session, settings.recordings_dir, settings.recording_retention_days
        )
    return f"{len(deleted)} recording files past {settings.recording_retention_days} days deleted."


def cmd_recordings_purge(args: argparse.Namespace) -> int:
    settings = load_settings()
    print(_run_db(settings, _recordings_purge, settings))
    return 0


def cmd_esign_verify(args: argparse.Namespace) -> int:
    from esign.pki import load_authority
    from esign.verify import load_ca, report_lines, verify_pdf

    ca = load_ca(args.ca) if args.ca else load_authority(load_settings()).ca_cert_asn1
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"Cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    report = asyncio.run(verify_pdf(data, ca))
    print("\n".join(report_lines(report)))
    return 0 if report.ok else 1


async def _esign_remind(maker: Maker, days: int) -> list[int]:
    from esign.judicial import send_due_reminders
    from web.agreements import sms_texts

    texts = sms_texts(load_settings().default_locale)
    return await send_due_reminders(maker, days, texts, label="cli")


def cmd_esign_remind(args: argparse.Namespace) -> int:
    settings = load_settings()
    done = _run_db(settings, _esign_remind, settings.judicial_reminder_days)
    print(f"Judicial confirmation reminders sent for {len(done)} agreement(s).")
    return 0


async def _create_user(
    maker: Maker, settings: Settings, args: argparse.Namespace, password: str
) -> str:
    async with transaction(maker) as session:
        user = await accounts.create_user(
            session,
            Actor.system("cli"),
            username=args.username,
            password=password,
            display_name=args.display_name or args.username,
            role=args.role,
            organisation_id=args.organisation_id,
            phone=args.phone,
            categories=args.category or [],
            cipher=FieldCipher(settings.field_encryption_key),
        )
        return f"Created {user.role} {user.username} (id {user.id})"


def cmd_user_create(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("The two passwords differ.", file=sys.stderr)
            return 2
    try:
        print(_run_db(settings, _create_user, settings, args, password))
    except DomainError as exc:
        print(f"Error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    settings_help = "\n".join(
        f"  {name}  (default: {default or '—'})\n      {text}" for name, default, text in describe()
    )
    parser = argparse.ArgumentParser(
        prog="yuntiao",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Yuntiao (云调) online mediation platform.",
        epilog="Settings (environment variables):\n" + settings_help,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the web server (migrates, seeds the demo once)",
        description="Run the web server. Applies database migrations first "
        "and seeds the demo organisation once "
        "(YUNTIAO_SEED_DEMO).",
    )
    serve.add_argument("--host", help="override YUNTIAO_HOST")
    serve.add_argument("--port", type=int, help="override YUNTIAO_PORT")
    serve.set_defaults(func=cmd_serve)

    dbp = sub.add_parser("db", help="database schema", description="Database schema commands.")
    dbsub = dbp.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser(
        "upgrade", help="apply migrations", description="Apply Alembic migrations up to a revision."
    )
    up.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    up.set_defaults(func=cmd_db_upgrade)

    demo_p = sub.add_parser(
        "demo",
        help="seed the demo data (once) and print its logins",
        description="Seed the demo organisation, accounts and sample case "
        "if not done yet, and print the demo logins.",
    )
    demo_p.set_defaults(func=cmd_demo)

    audit = sub.add_parser("audit", help="audit trail", description="Audit trail commands.")
    auditsub = audit.add_subparsers(dest="audit_command", required=True)
    verify = auditsub.add_parser(
        "verify",
        help="check the hash chain",
        description="Recompute the audit hash chain; exit 1 and name the first bad row if a row "
        "was edited, deleted or inserted outside the application.",
    )
    verify.set_defaults(func=cmd_audit_verify)

    evidence = sub.add_parser(
        "evidence", help="evidence files and ledger", description="Evidence commands."
    )
    evidencesub = evidence.add_subparsers(dest="evidence_command", required=True)
    everify = evidencesub.add_parser(
        "verify",
        help="re-hash stored evidence and check the ledger",
        description="Decrypt and re-hash every stored evidence file, recompute the evidence "
        "ledger (Merkle log) and check every signed tree head; exit 1 and name each mismatch "
        "(changed stored byte, missing or altered ledger entry, tree head that no longer fits).",
    )
    everify.add_argument(
        "--sign", action="store_true", help="when all is well, sign and store a new tree head"
    )
    everify.set_defaults(func=cmd_evidence_verify)

    rec = sub.add_parser(
        "record",
        help="record a hearing (started by the server)",
        description="Join a hearing as its receive-only recorder, store each participant's audio "
        "and video until the recording stops, then archive the files. The server starts this "
        "when the mediator starts recording.",
    )
    rec.add_argument("--hearing", type=int, required=True)
    rec.add_argument(
        "--url", required=True, help="this server's base URL, e.g. http://127.0.0.1:8080"
    )
    rec.set_defaults(func=cmd_record)

    recs = sub.add_parser(
        "recordings", help="hearing recordings archive", description="Recordings archive commands."
    )
    recsub = recs.add_subparsers(dest="recordings_command", required=True)
    rverify = recsub.add_parser(
        "verify",
        help="re-hash archived recordings",
        description="Re-hash every archived recording file and compare with the SHA-256 and size "
        "taken when it was archived; exit 1 and name each missing or changed file.",
    )
    rverify.set_defaults(func=cmd_recordings_verify)
    rpurge = recsub.add_parser(
        "purge",
        help="apply the retention period",
        description="Delete recording files older than YUNTIAO_RECORDING_RETENTION_DAYS, except "
        "those under legal hold (the server also does this every hour).",
    )
    rpurge.set_defaults(func=cmd_recordings_purge)
    esign = sub.add_parser("esign", help="signed agreements", description="Agreement commands.")
    esignsub = esign.add_subparsers(dest="esign_command", required=True)
    sverify = esignsub.add_parser(
        "verify",
        help="check a signed agreement PDF offline",
        description="Validate every signature of FILE against the platform CA (from the data "
        "dir, or --ca): genuine, unmodified, who signed when. Exit 1 when it is not.",
    )
    sverify.add_argument("file")
    sverify.add_argument("--ca", help="CA certificate (PEM or DER) instead of the platform's")
    sverify.set_defaults(func=cmd_esign_verify)
    remind = esignsub.add_parser(
        "remind",
        help="send the judicial confirmation reminders that are due, once",
        description="Text the parties of agreements whose 30-day judicial confirmation "
        "deadline is within YUNTIAO_JUDICIAL_REMINDER_DAYS, once per agreement. The server "
        "does this by itself every YUNTIAO_JUDICIAL_REMINDER_INTERVAL_S seconds.",
    )
    remind.set_defaults(func=cmd_esign_remind)

    user = sub.add_parser("user", help="staff accounts", description="Staff account commands.")
    usersub = user.add_subparsers(dest="user_command", required=True)
    create = usersub.add_parser(
        "create",
        help="create a staff account",
        description="Create a staff account. The password is asked "
        "twice, or read from stdin with --password-stdin.",
    )
    create.add_argument("username")
    create.add_argument(
        "--role", required=True, choices=["system_admin", "org_admin", "mediator", "clerk"]
    )
    create.add_argument("--organisation-id", type=int, help="required except for system_admin")
    create.add_argument("--display-name", default="")
    create.add_argument("--phone", default="")
    create.add_argument("--category", action="append", help="a dispute category (repeatable)")
    create.add_argument("--password-stdin", action="store_true")
    create.set_defaults(func=cmd_user_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
