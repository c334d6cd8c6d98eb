"""``python -m study``: init, add-reader, reset-code, build, assign, set-status, status, stats, export, simulate.

Every command takes ``--db URL`` (else ``$R2C_DB_URL``, else ``sqlite:///<repo>/var/study.db``). Bad input
(unknown study, duplicate reader, malformed manifest, locked database, ...) prints one line ``error: ...`` on
stderr and exits 2.

``build --renderer r2c`` imports ``r2c_core.study_renderer.R2CRenderer`` here, at the edge; the study core
never imports ``r2c_core``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from .errors import DatabaseError, StudyError

log = logging.getLogger(__name__)


def _factory(args: argparse.Namespace) -> Any:
    from .db import connect

    return connect(args.db)


def _csv_list(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def _pick_study(session: Any, ref: str | None) -> Any:
    from .errors import UnknownStudyError
    from .lookup import get_study
    from .models import Study

    if ref:
        return get_study(session, ref)
    studies = session.scalars(select(Study).order_by(Study.id)).all()
    if len(studies) == 1:
        return studies[0]
    if not studies:
        raise UnknownStudyError("there are no studies yet; build one with: python -m study build --name NAME")
    raise UnknownStudyError(f"several studies, pick one with --study ({', '.join(s.name for s in studies)})")


# -- commands ------------------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from .db import display_url, head_revision, init_db

    engine = init_db(args.db)
    print(f"study schema ready at {display_url(engine.url.render_as_string())} (revision {head_revision()})")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from .backup import backup

    n = backup(args.db, args.out)
    print(f"backup written to {args.out}: " + ", ".join(f"{v} {k}" for k, v in n.items()))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from .backup import restore

    n = restore(args.source, args.db, force=args.force)
    print(f"restored from {args.source}: " + ", ".join(f"{v} {k}" for k, v in n.items()))
    return 0


def cmd_add_reader(args: argparse.Namespace) -> int:
    from .accounts import add_reader

    with _factory(args).begin() as session:
        reader, code = add_reader(session, args.name, args.role)
        name, role = reader.name, reader.role
    print(f"reader {name!r} added (role {role})")
    print(f"access code (shown once, give it to the reader): {code}")
    return 0


def cmd_reset_code(args: argparse.Namespace) -> int:
    from .accounts import reset_code

    with _factory(args).begin() as session:
        code = reset_code(session, args.name)
    print(f"new access code for {args.name!r} (shown once; the old one no longer works): {code}")
    return 0


def _make_renderer(args: argparse.Namespace) -> Any:
    from .render import SyntheticRenderer

    if args.renderer == "synthetic":
        return SyntheticRenderer(args.kind)
    try:
        from r2c_core.study_renderer import (
            R2CRenderer,  # edge import, allowed here only
        )
    except ImportError as exc:
        raise StudyError(f"the r2c renderer is not available ({exc}); install r2c_core or use --renderer synthetic") from exc
    weights = Path(args.weights) if args.weights else None
    extra = {"methods": list(_csv_list(args.methods))} if args.methods else {}
    try:
        return R2CRenderer(args.kind, weights_root=weights, **extra)
    except Exception as exc:  # r2c_core raises its own one-line errors (missing weights, ...)
        raise StudyError(f"cannot start the r2c renderer: {exc}") from exc


def cmd_build(args: argparse.Namespace) -> int:
    from .builder import StudySpec, build_study, get_study
    from .manifest import default_manifest
    from .render import DEFAULT_METHODS

    renderer = _make_renderer(args)
    methods = _csv_list(args.methods) or tuple(getattr(renderer, "methods", None) or DEFAULT_METHODS)
    spec = StudySpec(
        name=args.name, manifest=Path(args.manifest) if args.manifest else default_manifest(), kind=args.kind,
        methods=methods, split=None if args.split == "all" else args.split, n_cases=args.n, seed=args.seed,
        allocation=args.allocation, readers=_csv_list(args.readers), repeat_fraction=args.repeat_fraction,
        repeat_min_gap=args.repeat_min_gap, n_practice=args.practice, practice_from=args.practice_from,
        no_preference=args.no_preference,
    )
    factory = _factory(args)
    study_id = build_study(factory, spec, renderer, assets=args.assets, show_bar=not args.no_progress)
    with factory.begin() as session:
        study = get_study(session, study_id)
        print(_status_lines(session, study)[0])
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    from .builder import assign_readers

    with _factory(args).begin() as session:
        study = _pick_study(session, args.study)
        n = assign_readers(session, study, _csv_list(args.readers))
        print(f"study {study.name!r}: {n} new queries assigned")
    return 0


def cmd_set_status(args: argparse.Namespace) -> int:
    from .builder import set_status

    with _factory(args).begin() as session:
        study = set_status(session, _pick_study(session, args.study), args.status)
        print(f"study {study.name!r} is now {study.status}")
    return 0


def _status_lines(session: Any, study: Any) -> list[str]:
    from .models import Case, Query, Reader, Rendition, Vote

    n_case = dict(session.execute(select(Case.role, func.count()).where(Case.study_id == study.id).group_by(Case.role)).all())
    n_rend = session.scalar(select(func.count()).select_from(Rendition).join(Case).where(Case.study_id == study.id))
    want = (n_case.get("study", 0) + n_case.get("practice", 0)) * len(study.methods)
    rows = session.execute(
        select(Reader.name, Query.is_practice, func.count(Query.id), func.count(Vote.id))
        .join(Query, Query.reader_id == Reader.id).outerjoin(Vote, Vote.query_id == Query.id)
        .where(Query.study_id == study.id).group_by(Reader.id, Reader.name, Query.is_practice).order_by(Reader.id)
    ).all()
    per: dict[str, dict[bool, tuple[int, int]]] = {}
    for name, practice, total, answered in rows:
        per.setdefault(name, {})[bool(practice)] = (int(total), int(answered))
    lines = [
        f"study {study.id} {study.name!r}: {study.kind}, {study.allocation}, {study.status}; "
        f"{n_case.get('study', 0)} cases (+{n_case.get('practice', 0)} practice), renditions {n_rend}/{want}, "
        f"{len(per)} readers"
    ]
    for name, d in per.items():
        total, answered = d.get(False, (0, 0))
        p_total, p_answered = d.get(True, (0, 0))
        lines.append(f"  {name}: {answered}/{total} answered, practice {p_answered}/{p_total}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    from .models import Reader, Study

    with _factory(args).begin() as session:
        studies = [_pick_study(session, args.study)] if args.study else session.scalars(select(Study).order_by(Study.id)).all()
        readers = session.execute(select(Reader.role, func.count()).group_by(Reader.role)).all()
        print("readers: " + (", ".join(f"{n} {role}" for role, n in readers) or "none"))
        if not studies:
            print("no studies yet")
        for study in studies:
            print("\n".join(_status_lines(session, study)))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from .analysis import tables as st
    from .export import tidy_votes

    with _factory(args).begin() as session:
        study = _pick_study(session, args.study)
        tidy = tidy_votes(session, study)
        name, kind, methods = study.name, study.kind, list(study.methods)
    if args.full:
        try:
            from .analysis import format_report, full_report
        except ImportError as exc:
            raise StudyError(f"the full analysis (study.analysis) is not available ({exc})") from exc
        print(format_report(full_report(tidy, original="original", seed=args.seed, n_boot=args.n_boot)))
        return 0
    table = "Table III" if kind == "restoration" else "Table IV"
    print(st.format_summary(st.summary(tidy, methods=methods), title=f"{name} ({kind}; {table} style)"))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_study, has_parquet

    formats = _csv_list(args.format) or ("csv", "parquet")
    bad = [f for f in formats if f not in ("csv", "parquet")]
    if bad:
        raise StudyError(f"unknown export format {bad[0]!r} (csv, parquet)")
    with _factory(args).begin() as session:
        study = _pick_study(session, args.study)
        files = export_study(session, study, args.out, formats=formats)
    if "parquet" in formats and not has_parquet():
        print("note: pyarrow is not installed, Parquet files were skipped", file=sys.stderr)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .db import connect
    from .simstudy import simulate_study

    factory = connect(args.db, migrate=True)
    result = simulate_study(factory, seed=args.seed, assets=args.assets, n_readers=args.readers, n_cases=args.cases,
                            name=args.name)
    print(f"simulated study {result.study_name!r}: {len(result.readers)} readers, {result.votes} votes")
    print(f"next: python -m study stats --study {result.study_name} --full"
          + (f" --db {args.db}" if args.db else ""))
    return 0


# -- parser --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help="database URL (default $R2C_DB_URL or var/study.db)")
    parser = argparse.ArgumentParser(prog="python -m study", description="blinded reader study: database, builder, statistics")
    parser.add_argument("--db", default=None, help="database URL (default $R2C_DB_URL or var/study.db)")
    parser.add_argument("--log-level", default="WARNING", help="logging level (DEBUG, INFO, WARNING)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    add("init", cmd_init, "create or upgrade the study database schema")
    p = add("backup", cmd_backup, "write a consistent copy of the (SQLite) study database while the app runs")
    p.add_argument("--out", required=True, help="backup file to create (never overwritten)")
    p = add("restore", cmd_restore, "copy a backup into the (SQLite) study database")
    p.add_argument("--from", dest="source", required=True, help="backup file")
    p.add_argument("--force", action="store_true", help="replace an existing database (stop the app first)")
    p = add("add-reader", cmd_add_reader, "add a reader and print their one-time access code")
    p.add_argument("name")
    p.add_argument("--role", default="reader", choices=["reader", "researcher", "admin"])
    p = add("reset-code", cmd_reset_code, "give a reader a new access code")
    p.add_argument("name")

    p = add("build", cmd_build, "create (or resume) a study: pick cases, render, assign readers, open")
    p.add_argument("--name", required=True)
    p.add_argument("--kind", default="restoration", choices=["restoration", "segmentation"])
    p.add_argument("--manifest", help="MANIFEST.csv (default $R2C_DATA/MANIFEST.csv or ../shared/data/cxr)")
    p.add_argument("--split", default="test", help="manifest split to draw from, or 'all' (default test)")
    p.add_argument("--n", type=int, default=50, help="number of cases (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", help="comma-separated methods (default: the renderer's, else the paper's five); the r2c renderer also makes the classical comparators clahe, histeq, gamma, unsharp, nlm")
    p.add_argument("--allocation", default="overlap", choices=["overlap", "split"])
    p.add_argument("--readers", help="comma-separated reader names (default: every reader with role reader)")
    p.add_argument("--repeat-fraction", type=float, default=0.0, help="fraction of each reader's cases shown twice")
    p.add_argument("--repeat-min-gap", type=int, default=5, help="other queries between a case and its repeat")
    p.add_argument("--practice", type=int, default=0, help="practice queries per reader (never counted)")
    p.add_argument("--practice-from", default="extra", choices=["extra", "repeat"])
    p.add_argument("--no-preference", action="store_true",
                   help='offer readers a "no preference" answer (off by default: the paper forces a choice)')
    p.add_argument("--renderer", default="synthetic", choices=["synthetic", "r2c"])
    p.add_argument("--weights", help="weights folder for --renderer r2c")
    p.add_argument("--assets", help="rendition folder (default $R2C_ASSETS or var/assets)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = add("assign", cmd_assign, "assign readers added later to a study (overlap studies)")
    p.add_argument("--study")
    p.add_argument("--readers", help="comma-separated reader names (default: every reader with role reader)")
    p = add("set-status", cmd_set_status, "open or close a study for voting")
    p.add_argument("status", choices=["open", "closed"])
    p.add_argument("--study")
    p = add("status", cmd_status, "studies, renditions and each reader's progress")
    p.add_argument("--study")
    p = add("stats", cmd_stats, "print the selection-ratio table (Tables III/IV) and the tests")
    p.add_argument("--study")
    p.add_argument("--full", action="store_true", help="full analysis report (study.analysis)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed for --full")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for --full")
    p = add("export", cmd_export, "write votes and tables as CSV (and Parquet)")
    p.add_argument("--study")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", default="csv,parquet", help="csv,parquet (default both)")
    p = add("simulate", cmd_simulate, "build a small simulated study and vote it through the real service")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--readers", type=int, default=4)
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--name", help="study name (default simulated-SEED)")
    p.add_argument("--assets", help="rendition folder (default $R2C_ASSETS or var/assets)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    from .db import resolve_url, translate_errors

    try:
        with translate_errors(resolve_url(args.db)):
            return int(args.func(args) or 0)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: {DatabaseError(f'database error: {first}')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: one line, never a traceback
        log.debug("unexpected error", exc_info=True)
        print(f"error: unexpected {exc.__class__.__name__}: {exc} (run with --log-level DEBUG)", file=sys.stderr)
        return 1
