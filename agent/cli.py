"""`linecheck-agent`: check (self-check now), run (daemon).

The report's modules (rich, the renderers) are imported only by the commands that print one: the
daemon (`run`) lives for months on a small gateway and should not carry them (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent import config as agent_config
from agent import spoolplace
from agent.coverage import EXIT_UNUSABLE, exit_code
from agent.handover import hand_over
from agent.lan import cli as lan_cli
from linecheck.cliargs import add_config, add_log_level, add_version
from linecheck.configfile import ConfigError
from linecheck.i18n import LANGUAGES, Texts, from_locale, resolve
from linecheck.i18n.phrases import Phrase
from linecheck.wire import ResultEnvelope, Trigger

if TYPE_CHECKING:
    from rich.console import Console

# Where the package's `enroll` writes the config and where `check` and `run` look for it.
DEFAULT_CONFIG = "/etc/linecheck/agent.yaml"


def _lang(value: str) -> str:
    try:
        return resolve(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linecheck-agent", description="Check this office's broadband line.")
    add_version(p)
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="run a line check now and print the report")
    check.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                       help=f"agent config file (YAML; default {DEFAULT_CONFIG}, written by enroll)")
    check.add_argument("--json", action="store_true", help="print the result envelope as JSON, nothing else")
    check.add_argument("--only", action="append", metavar="KIND", help="run only this check (repeatable)")
    check.add_argument("--no-spool", action="store_true",
                       help="do not queue the result for the collector (its seq is then 0: not numbered)")
    check.add_argument("--lang", type=_lang, default=from_locale(), metavar="|".join(LANGUAGES),
                       help="language of the report (zh is zh-CN; default from the locale: zh-CN for zh_*, else en)")
    check.add_argument("--save-report", metavar="FILE.html",
                       help="also write a standalone HTML report (to hand over to the customer)")
    enroll = sub.add_parser("enroll", help="enrol this gateway with a one-time token from the carrier")
    enroll.add_argument("--collector", required=True, help="the collector's enrolment URL (https://...)")
    enroll.add_argument("--token", required=True, help="the one-time token: <agent id>.<secret>")
    enroll.add_argument("--config-out", default=DEFAULT_CONFIG, metavar="FILE",
                        help=f"where to write the agent's config (default {DEFAULT_CONFIG})")
    enroll.add_argument("--data-dir", default="/var/lib/linecheck",
                        help="where the agent keeps its key, spool and state (default /var/lib/linecheck)")
    enroll.add_argument("--ca-file", help="CA certificate to trust for the collector's HTTPS")
    enroll.add_argument("--allow-http", action="store_true", help=argparse.SUPPRESS)  # tests on loopback only
    lan_cli.add_parsers(sub)
    run = sub.add_parser("run", help="run the agent daemon (schedule, spool, publish)")
    add_config(run, "agent", default=DEFAULT_CONFIG)
    add_log_level(run)
    return p


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agent.report import render, render_html

    cfg = agent_config.load(args.config)
    unknown = [k for k in args.only or [] if k not in cfg.checks]
    if unknown:
        print(f"linecheck-agent: --only {', '.join(unknown)}: not configured in {args.config} "
              f"(configured: {', '.join(cfg.checks)})", file=sys.stderr)
        return EXIT_UNUSABLE
    # Where spool, lock and state go is decided before the check runs, and said once (agent/spoolplace.py):
    # a user without access to the service's data_dir still gets the report, and it is never thrown away.
    place = spoolplace.choose(cfg.data_dir, queue=not args.no_spool)
    if place.note:
        print(f"linecheck-agent: {place.note}", file=sys.stderr)
    if place.data_dir is not None and place.data_dir != cfg.data_dir:
        cfg = cfg.model_copy(update={"data_dir": place.data_dir})
    console = Console(stderr=True, quiet=args.json)
    try:
        envelope = _run_with_progress(cfg, args, console)
        # Not queued (--no-spool): the result keeps seq 0 (agent/envelope.py): no number is consumed, so the
        # collector sees no gap, and a result below the wire's minimum seq can never be ingested as delivered.
        if not args.no_spool and place.data_dir is not None:
            envelope = _queue(cfg, envelope)
    finally:
        if place.data_dir is not None:
            hand_over(place.data_dir)  # root's files in the service's data_dir: back to the service's user
    if args.json:
        sys.stdout.write(envelope.model_dump_json(by_alias=True, indent=2) + "\n")
    else:
        render(envelope, Console(), args.lang)
    if args.save_report:
        try:
            Path(args.save_report).write_text(render_html(envelope, args.lang), encoding="utf-8")
        except OSError as exc:
            print(f"linecheck-agent: cannot write the report {args.save_report}: {exc.strerror}", file=sys.stderr)
            return EXIT_UNUSABLE
        console.print(Texts(args.lang).ui("saved_report", path=args.save_report), highlight=False, soft_wrap=True)
    return exit_code(envelope)


def _queue(cfg: agent_config.AgentConfig, envelope: ResultEnvelope) -> ResultEnvelope:
    """Spool the result for the collector; when that fails the report is still shown (said why, not queued)."""
    from agent.spool import SpoolRefused, open_spool

    try:
        spool = open_spool(cfg)
    except (OSError, sqlite3.Error) as exc:
        print(f"linecheck-agent: result not queued for the collector: cannot open the spool in {cfg.data_dir} "
              f"({exc})", file=sys.stderr)
        return envelope
    try:
        return spool.enqueue(envelope, report_health=False)
    except SpoolRefused as exc:
        print(f"linecheck-agent: result not queued for the collector: {exc}", file=sys.stderr)
        return envelope
    finally:
        spool.close()


def progress_label(t: Texts, kind: str, said: Phrase | str) -> str:
    """The progress line's description (rich markup): the check's title and its step, in the reader's language
    (a step given as plain text, uncatalogued, shows as it is). Targets in the step come from the config and
    the line: escaped, never markup."""
    from rich.markup import escape

    text = said if isinstance(said, str) else t.say("progress", said) or said.key
    return f"[bold]{escape(t.check(kind))}[/]: {escape(text)}"


def _run_with_progress(cfg: agent_config.AgentConfig, args: argparse.Namespace, console: Console) -> ResultEnvelope:
    """Run the line check with a progress bar (on stderr; silent with --json) under the check lock."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from agent import checklock
    from agent.runner import run_line_check

    t = Texts(args.lang)
    kinds = [k for k in cfg.checks if not args.only or k in args.only]
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(Progress(*columns, console=console, transient=True))
        task = progress.add_task(t.ui("progress_checking"), total=len(kinds))
        # Hold the agent's check lock so the daemon neither overlaps nor mistakes us for the office;
        # without a writable data_dir (e.g. --no-spool as another user) run without it.
        with contextlib.suppress(OSError):
            stack.enter_context(checklock.holding(
                cfg.data_dir / "check.lock",
                on_wait=lambda: progress.update(task, description=t.ui("progress_waiting"))))
        current: list[str] = []

        def on_check(kind: str, said: Phrase | str) -> None:
            if not current or current[-1] != kind:
                if current:
                    progress.advance(task)
                current.append(kind)
            progress.update(task, description=progress_label(t, kind, said))

        envelope = run_line_check(cfg, Trigger.MANUAL, only=args.only, on_check=on_check)
        progress.update(task, completed=len(kinds), description=t.ui("progress_done"))
    return envelope


def _enroll(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agent.enroll import EnrolFailed, enroll

    try:
        path = enroll(args.collector, args.token, Path(args.config_out), Path(args.data_dir),
                      Path(args.ca_file) if args.ca_file else None, allow_http=args.allow_http)
    except EnrolFailed as exc:
        print(f"linecheck-agent: enrolment failed: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    finally:
        hand_over(Path(args.data_dir))  # the key root wrote must be readable by the agent's service
    print(f"enrolled; config written to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "enroll":
            return _enroll(args)
        if args.command == "lan-serve":
            logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            return lan_cli.serve(args)
        if args.command == "lan-test":
            return lan_cli.lan_test(args)
        cfg = agent_config.load(args.config)
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        place = spoolplace.choose(cfg.data_dir)
        if place.data_dir is None:
            # Another user's data_dir is the service's spool: a second daemon for this agent would number
            # its results twice. Nowhere writable: nothing to keep results in.
            print(f"linecheck-agent: cannot run the agent: {place.note}", file=sys.stderr)
            return EXIT_UNUSABLE
        if place.note:
            logging.getLogger("agent").warning("%s", place.note)
            cfg = cfg.model_copy(update={"data_dir": place.data_dir})
        from agent.daemon import serve

        serve(cfg)
        return 0
    except ConfigError as exc:
        print(f"linecheck-agent: invalid config\n{exc}", file=sys.stderr)
        return EXIT_UNUSABLE


if __name__ == "__main__":
    sys.exit(main())
