"""The demo database: created on first start so that the README's first command gives a working app.

When the app runs on its default database (SQLite ``<repo>/var/study.db``) and that file does not exist yet,
or when ``R2C_DEMO_DB=1`` names a new database, :func:`ensure_demo_database` creates it with:

* three demo accounts whose access codes are fixed and printed in the README: ``demo-reader`` (role reader),
  ``demo-researcher`` (researcher) and ``demo-admin`` (admin). The short names are *aliases*: sign-in turns
  them into the accounts' real access codes (:func:`demo_access_code`) only in a database that carries the
  demo flag (an audit entry written when the demo database is created), so they never work elsewhere;
* a small restoration study ("Demo study": 6 Hannover (mhh) cases plus 1 practice case) rendered with the
  bundled weights (:class:`r2c_core.study_renderer.R2CRenderer`), or with the synthetic renderer and a
  visible notice when no restoration weights are bundled. Without a data folder the study is skipped (no other
  study can be built in the demo database). The demo reader votes in this study;
* a **simulated** study ("Simulated study (demo data, not real votes)", :func:`study.simstudy.simulate_study`):
  generated cases voted through the real voting service by simulated readers, so that every statistic of the
  dashboard (Tables III/IV, intervals, tests, position bias, ranking, agreement) shows from the first minute.
  It is flagged ``simulated`` (``Study.simulated``): the dashboard shows a banner, exports carry a column and
  a notice. Its readers (``sim-reader-N``) have no usable access codes.

Its codes are public, so anyone may be its ``demo-admin``. The app therefore refuses every account change in it
(:data:`ACCOUNTS_REFUSAL`: no account added, no code reset, none disabled or enabled) and every study build
(:func:`demo_refusal`), and each start repairs it (:func:`repair_demo_accounts`): the demo accounts get their fixed
codes, roles and sign-in back, and any other researcher or admin account is disabled.

Run it ahead of the server (``scripts/run_app.sh`` does) with ``python -m app.demo_db``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from study import audit
from study.accounts import add_reader
from study.builder import DEMO_REFUSAL, StudySpec, build_study
from study.db import connect
from study.manifest import read_manifest
from study.models import Reader, Study
from study.render import SyntheticRenderer
from study.security import ALPHABET, SECRET_LEN, SELECTOR_LEN, hash_secret, verify_secret

from .settings import AppSettings, load_settings

log = logging.getLogger(__name__)

#: The audit action that marks a database as the auto-created demo database.
DEMO_FLAG = audit.DEMO_DATABASE
DEMO_STUDY = "Demo study"
#: alias -> role of the demo accounts (the alias is also the account's name)
DEMO_ACCOUNTS = {"demo-reader": "reader", "demo-researcher": "researcher", "demo-admin": "admin"}
SIMULATED_STUDY = "Simulated study (demo data, not real votes)"
SIMULATED_READERS = 5
SIMULATED_CASES = 30
DEMO_SOURCE = "mhh"
DEMO_CASES = 6
DEMO_PRACTICE = 1
#: why the admin page refuses to add, reset, disable or enable an account in the demo database
ACCOUNTS_REFUSAL = ("This is the demo database: its access codes are public, so its accounts are fixed here (adding "
                    "an account, resetting a code, disabling or enabling an account are refused). A real study runs "
                    "with a database of its own: bash scripts/run_study.sh (docs/APP.md).")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DemoStatus:
    """What :func:`ensure_demo_database` found or did."""

    is_demo: bool
    created: bool = False
    study_built: bool = False
    renderer: str | None = None
    note: str = ""


def demo_access_code(alias: str) -> str:
    """The fixed access code behind a demo alias (deterministic, in the study's code format)."""
    digest = hashlib.sha256(f"r2c-demo-database:{alias}".encode("utf-8")).digest()
    chars = "".join(ALPHABET[b % len(ALPHABET)] for b in digest[: SELECTOR_LEN + SECRET_LEN])
    return "-".join(chars[i : i + 4] for i in range(0, len(chars), 4))


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser().resolve()


def is_demo_database(session: Session) -> bool:
    """Whether this database carries the demo flag."""
    return audit.is_demo_database(session)


def resolve_alias(session: Session, typed: str) -> str:
    """The access code to check: a demo alias becomes its fixed code in the demo database only."""
    alias = str(typed or "").strip().lower()
    if alias in DEMO_ACCOUNTS and is_demo_database(session):
        return demo_access_code(alias)
    return str(typed or "")


def demo_refusal(session: Session) -> str | None:
    """Why an admin action that only a real study needs (building a study) is refused here, or None when this is not
    the demo database."""
    return DEMO_REFUSAL if is_demo_database(session) else None


def repair_demo_accounts(session: Session) -> list[str]:
    """Put the demo database's accounts back as the README gives them; returns what was changed (audited).

    The three demo accounts get their role, their fixed code (:func:`demo_access_code`) and sign-in back; any other
    account with the role researcher or admin is disabled (they can only have been added through the public
    ``demo-admin``). Other readers (the simulated readers, readers added for screenshots) are left alone."""
    changed: list[str] = []
    for alias, role in DEMO_ACCOUNTS.items():
        reader = session.scalar(select(Reader).where(Reader.name == alias))
        new = reader is None
        if new:
            reader, _ = add_reader(session, alias, role)
        plain = demo_access_code(alias).replace("-", "")
        selector, secret = plain[:SELECTOR_LEN], plain[SELECTOR_LEN:]
        what = []
        if reader.code_selector != selector or not verify_secret(secret, reader.code_hash):
            reader.code_selector, reader.code_hash = selector, hash_secret(secret)
            what += [] if new else ["code"]
        if reader.role != role:
            reader.role = role
            what.append("role")
        if not reader.active:
            reader.active = True
            what.append("active")
        if what:
            audit.record(session, audit.READER_CHANGED, reader_id=reader.id,
                         detail={"demo_repair": what, "active": True, "role": role})
            changed.append(f"{alias}: {', '.join(what)}")
    others = session.scalars(select(Reader).where(Reader.name.not_in(list(DEMO_ACCOUNTS)), Reader.role != "reader",
                                                  Reader.active.is_(True))).all()
    for reader in others:
        reader.active = False
        audit.record(session, audit.READER_CHANGED, reader_id=reader.id,
                     detail={"demo_repair": ["disabled"], "active": False})
        changed.append(f"{reader.name}: disabled")
    return changed


def _ensure_accounts(session: Session) -> None:
    for line in repair_demo_accounts(session):
        log.warning("demo database repaired: %s", line)


def demo_manifest(data_dir: Path, out: Path) -> Path | None:
    """A manifest of the data folder's Hannover (mhh) images, written to ``out``; None without data."""
    src = data_dir / "MANIFEST.csv"
    if not src.is_file():
        return None
    df = read_manifest(src)
    part = df[df["source"] == DEMO_SOURCE]
    if len(part) < DEMO_CASES + DEMO_PRACTICE:
        part = df  # a data folder without enough Hannover images: use any
    out.parent.mkdir(parents=True, exist_ok=True)
    part.to_csv(out, index=False)
    return out


def usable_methods(methods: list[str], weights_root: Path) -> tuple[list[str], list[str]]:
    """``(usable, skipped)``: the methods whose model loads from ``weights_root`` (``original`` always), and one
    line per model whose bundled weights do not (missing, truncated or corrupt file, a checkpoint that does not fit
    its model), so that one bad file costs the demo that model, not the whole demo study."""
    from r2c_core.errors import R2CError
    from r2c_core.methods import ORIGINAL, load_restorer, parse_method

    verdict: dict[str, str | None] = {}
    usable: list[str] = []
    for method in methods:
        model, _ = parse_method(method)
        if model != ORIGINAL and model not in verdict:
            try:
                load_restorer(model, weights_root, device="cpu")
                verdict[model] = None
            except (R2CError, OSError, ValueError, RuntimeError) as exc:
                verdict[model] = f"{model} ({exc})"
                log.warning("demo study: model %s left out, its weights do not load: %s", model, exc)
        if model == ORIGINAL or verdict[model] is None:
            usable.append(method)
    return usable, [v for v in verdict.values() if v]


def pick_renderer(weights_root: Path, device: str | None = None) -> tuple[object, tuple[str, ...], str, list[str]]:
    """``(renderer, methods, name, skipped)``: the paper's reader-study methods among the bundled models whose
    weights load (every such model when fewer than two paper methods do) when at least one restorer is there,
    else the synthetic renderer; ``skipped`` names the bundled models left out because their weights do not load."""
    from r2c_core.study_renderer import PAPER_METHODS, R2CRenderer, available_methods

    bundled, skipped = usable_methods(available_methods(weights_root), weights_root)
    paper = [m for m in PAPER_METHODS if m in bundled]
    methods = paper if len(paper) >= 2 else bundled
    if len(methods) >= 2:
        renderer = R2CRenderer("restoration", weights_root=weights_root, device=device, methods=methods)
        return renderer, tuple(methods), "r2c", skipped
    synthetic = SyntheticRenderer("restoration", working_size=256)
    return synthetic, tuple(synthetic.methods), "synthetic", skipped


def _build_demo_study(factory: sessionmaker[Session], settings: AppSettings,
                      progress: Progress | None) -> tuple[str | None, list[str]]:
    var = (sqlite_file(settings.db_url) or settings.assets).parent
    manifest = demo_manifest(settings.data_dir, var / "demo-manifest.csv")
    if manifest is None:
        return None, []
    renderer, methods, name, skipped = pick_renderer(settings.weights_root, settings.device)
    spec = StudySpec(name=DEMO_STUDY, manifest=manifest, kind="restoration", methods=methods, split=None,
                     n_cases=DEMO_CASES, seed=7, allocation="overlap", n_practice=DEMO_PRACTICE,
                     method_settings={"renderer": name, "demo": True})
    study_id = build_study(factory, spec, renderer, assets=settings.assets, data_root=settings.data_dir,
                           progress=progress, show_bar=False)
    with factory.begin() as session:
        study = session.get(Study, study_id)
        if study is not None and not study.settings.get("demo"):
            study.settings = {**study.settings, "demo": True}
    return name, skipped


def _build_simulated_study(factory: sessionmaker[Session], settings: AppSettings) -> None:
    from study.simstudy import simulate_study

    with factory.begin() as session:
        if session.scalar(select(Study.id).where(Study.name == SIMULATED_STUDY)) is not None:
            return
    simulate_study(factory, seed=11, assets=settings.assets, n_readers=SIMULATED_READERS, n_cases=SIMULATED_CASES,
                   name=SIMULATED_STUDY)
    with factory.begin() as session:
        study = session.scalar(select(Study).where(Study.name == SIMULATED_STUDY))
        study.settings = {**study.settings, "demo": True}


def demo_renderer_name(session: Session) -> str | None:
    """``r2c`` or ``synthetic`` for the demo study, None when there is none."""
    study = session.scalar(select(Study).where(Study.name == DEMO_STUDY))
    if study is None:
        return None
    return str((study.settings.get("method_settings") or {}).get("renderer") or "") or None


def ensure_demo_database(settings: AppSettings | None = None, progress: Progress | None = None) -> DemoStatus:
    """Create (or finish creating) the demo database when allowed (see the module doc); else do nothing."""
    settings = settings or load_settings()
    path = sqlite_file(settings.db_url)
    fresh = path is not None and not path.exists()
    if not fresh:
        factory = connect(settings.db_url, migrate=True)
        with factory.begin() as session:
            if not is_demo_database(session):
                return DemoStatus(is_demo=False)
            _ensure_accounts(session)  # on every start: whatever a visitor changed as demo-admin is undone
            has_study = session.scalar(select(Study.id).where(Study.name == DEMO_STUDY)) is not None
            has_sim = session.scalar(select(Study.id).where(Study.name == SIMULATED_STUDY)) is not None
            renderer = demo_renderer_name(session)
        if has_study and renderer and has_sim:
            return DemoStatus(is_demo=True, renderer=renderer)
    elif not settings.demo_allowed:
        return DemoStatus(is_demo=False)
    else:
        factory = connect(settings.db_url, migrate=True)
    with factory.begin() as session:
        if not is_demo_database(session):
            audit.record(session, DEMO_FLAG, detail={"note": "auto-created demo database with fixed demo codes"})
        _ensure_accounts(session)
    with factory.begin() as session:
        has_study = session.scalar(select(Study.id).where(Study.name == DEMO_STUDY)) is not None
        renderer = demo_renderer_name(session)
    skipped: list[str] = []
    if not (has_study and renderer):
        renderer, skipped = _build_demo_study(factory, settings, progress)
    _build_simulated_study(factory, settings)
    note = "" if renderer else f"no X-ray data in {settings.data_dir}: demo study skipped"
    if skipped:
        note = "; ".join(filter(None, [note, "left out of the demo study, weights that do not load: " + "; ".join(skipped)]))
    return DemoStatus(is_demo=True, created=fresh, study_built=renderer is not None, renderer=renderer, note=note)


def main(argv: list[str] | None = None) -> int:
    """``python -m app.demo_db``: create the demo database when the app would (prints what it did)."""
    parser = argparse.ArgumentParser(prog="python -m app.demo_db", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings()

    def show(done: int, total: int) -> None:
        print(f"\rbuilding the demo study: {done}/{total} cases", end="" if done < total else "\n", flush=True)

    try:
        status = ensure_demo_database(settings, progress=show)
    except Exception as exc:  # one line for the console, never a traceback
        print(f"error: demo database: {exc}", file=sys.stderr)
        return 2
    if status.is_demo:
        what = "created" if status.created else "ready"
        print(f"demo database {what}: {settings.db_url}" + (f" ({status.note})" if status.note else ""))
        if status.renderer == "synthetic":
            print("note: no restoration weights in weights/r2c-*: the demo study uses synthetic renditions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
