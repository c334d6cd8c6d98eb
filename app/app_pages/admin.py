"""Administration (admins only), three pages: Studies (build from the data folder's manifest or from any folder of
images, with a progress bar; assign readers; open / close), Readers (add, show the one-time access code, reset
a code, enable / disable) and Export (every table of a study as a zip of CSV and Parquet files).

In the demo database (its codes are public, so anyone may be its admin) accounts cannot be added, reset, disabled
or enabled, and no study is built: both are refused before anything is touched (:func:`app.demo_db.refuse_in_demo`).
Text that users or clients chose (names, client keys) is never read as Markdown (:func:`app.auth.md_escape`).
"""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from pathlib import Path

import streamlit as st

from r2c_core.errors import R2CError
from study import accounts, builder
from study import overview as study_overview
from study.builder import StudySpec
from study.errors import StudyError
from study.export import export_study
from study.manifest import folder_manifest, slug
from study.models import ALLOCATIONS, READER_ROLES, STUDY_KINDS

from .. import components, services, study_admin
from ..auth import md_escape, require_role
from ..demo_db import ACCOUNTS_REFUSAL, demo_refusal

NEW_CODE = "r2c_admin_new_code"


# -- studies -------------------------------------------------------------------------------------------------


def _study_actions(overview) -> None:
    names = dict(zip(overview["id"], overview["name"]))
    a, b, c, d = st.columns([3, 1, 1, 2], vertical_alignment="bottom")
    sid = a.selectbox("Study", list(names), format_func=names.get, key="adm_study")
    action = None
    if b.button("Open", key="adm_open"):
        action = "open"
    if c.button("Close", key="adm_close"):
        action = "closed"
    assign = d.button("Assign new readers", key="adm_assign", help="Give every reader not yet in this study their queries")
    if action is None and not assign:
        return
    try:
        with services.factory().begin() as session:
            if assign:
                n = builder.assign_readers(session, int(sid))
                msg = f"{n} new queries assigned." if n else "Every reader already has their queries."
            else:
                study = builder.set_status(session, int(sid), action)
                msg = f"Study {md_escape(repr(study.name))} is now {study.status}."
        st.session_state["adm_msg"] = msg
        st.rerun()
    except StudyError as exc:
        st.error(md_escape(exc))


def _spec_form(cfg) -> tuple[StudySpec, str] | None:
    with st.form("adm_build"):
        st.subheader("Build a new study")
        a, b, c = st.columns(3)
        name = a.text_input("Name", key="adm_name", max_chars=200)
        kind = b.selectbox("Kind", STUDY_KINDS, key="adm_kind")
        renderer = c.selectbox("Renderer", study_admin.RENDERERS, key="adm_renderer",
                               help="r2c: the bundled R2C-GAN weights; synthetic: fixed image variations (testing)")
        sources = (["Data folder manifest"] if cfg.has_data else []) + ["A folder of images"]
        source = st.radio("Cases from", sources, horizontal=True, key="adm_source")
        folder = st.text_input("Folder of images (for 'A folder of images')", key="adm_folder",
                               help="Images directly in it, or in covid/ and control/ subfolders")
        default_label = st.selectbox("Label of images outside covid/ or control/", ["covid", "control"], key="adm_label")
        possible, paper = study_admin.method_choices(cfg.weights_root)
        methods = st.multiselect("Methods (shown side by side; 'original' is required)", possible, default=paper,
                                 key="adm_methods", help="Default: the paper's reader-study set among the bundled models. "
                                      "Classical comparators (clahe, histeq, gamma, unsharp, nlm) are blinded the same way")
        d, e, f, g, h = st.columns(5)
        n_cases = d.number_input("Cases", min_value=1, max_value=5000, value=20, key="adm_n")
        split = e.selectbox("Split", ["test", "train", "all"], key="adm_split")
        practice = f.number_input("Practice queries", min_value=0, max_value=20, value=2, key="adm_practice")
        repeat = g.number_input("Repeat fraction", min_value=0.0, max_value=1.0, value=0.0, step=0.05, key="adm_repeat")
        allocation = h.selectbox("Allocation", ALLOCATIONS[::-1], key="adm_alloc",
                                 help="overlap: every reader reads every case; split: each case to one reader")
        s1, s2 = st.columns([1, 3])
        seed = s1.number_input("Seed", min_value=0, value=0, key="adm_seed")
        no_pref = s2.checkbox("Offer a \"no preference\" answer", value=False, key="adm_nopref",
                              help="Off by default: the paper forces a choice. Such answers are left out of the "
                                   "selection ratios and reported on their own (docs/STUDY.md)")
        go = st.form_submit_button("Build the study", type="primary")
    if not go:
        return None
    with services.factory().begin() as session:  # before any file is read or written (the demo codes are public)
        refused = demo_refusal(session)
    if refused:
        st.error(refused)
        return None
    common = dict(name=name.strip(), kind=kind, methods=tuple(methods), n_cases=int(n_cases), seed=int(seed),
                  allocation=allocation, repeat_fraction=float(repeat), n_practice=int(practice),
                  no_preference=bool(no_pref))
    StudySpec(manifest=cfg.data_dir / "MANIFEST.csv", split=None, **common).validate()  # name, methods, ... first
    if source == "A folder of images":
        if not folder.strip():
            st.error("Enter the folder of images.")
            return None
        out = cfg.assets.parent / "manifests" / f"{slug(name or 'study')}.csv"
        manifest, n_found = folder_manifest(folder.strip(), out, default_label)
        split_v = None
        n_cases = min(int(n_cases), n_found - int(practice)) if n_found > int(practice) else n_found
    else:
        manifest, split_v = cfg.data_dir / "MANIFEST.csv", (None if split == "all" else split)
    common["n_cases"] = int(n_cases)
    return StudySpec(manifest=manifest, split=split_v, **common), renderer


def render_studies() -> None:
    require_role("admin")
    st.title("Studies")
    components.research_notice()
    cfg = services.settings()
    if msg := st.session_state.pop("adm_msg", None):
        st.success(msg)
    with services.factory().begin() as session:
        overview = study_overview.studies(session)
    if overview.empty:
        st.info("No studies yet.")
    else:
        st.dataframe(overview, hide_index=True, width="stretch", key="adm_studies")
        _study_actions(overview)
    try:
        picked = _spec_form(cfg)
        if picked is None:
            return
        spec, renderer_name = picked
        spec.validate()
        renderer, _ = study_admin.make_renderer(renderer_name, spec.kind, cfg.weights_root, cfg.device,
                                                list(spec.methods))
        bar = st.progress(0.0, text="Rendering…")
        t0 = time.perf_counter()
        sid = study_admin.build(services.factory(), spec, renderer, cfg.assets,
                                progress=lambda done, total: bar.progress(done / max(1, total), text=f"Rendered {done} of {total} cases"))
        st.session_state["adm_msg"] = (f"Study {md_escape(repr(spec.name))} (id {sid}) built in "
                                       f"{time.perf_counter() - t0:.0f} s and opened.")
        st.rerun()
    except (StudyError, R2CError) as exc:
        st.error(md_escape(exc))


# -- readers -------------------------------------------------------------------------------------------------


def _show_new_code() -> None:
    got = st.session_state.get(NEW_CODE)
    if not got:
        return
    name, code = got
    st.success(f"Access code for **{md_escape(name)}** (shown only now: copy it and give it to them):")
    st.code(code, language=None)
    if st.button("I have noted the code", key="adm_code_ok"):
        st.session_state.pop(NEW_CODE, None)
        st.rerun()


def render_readers() -> None:
    require_role("admin")
    st.title("Readers")
    components.research_notice()
    _show_new_code()
    with services.factory().begin() as session:
        table = study_overview.readers(session)
    st.dataframe(table, hide_index=True, width="stretch", key="adm_readers")
    if services.backend().demo.is_demo:
        st.info(ACCOUNTS_REFUSAL)
    with st.form("adm_add_reader", clear_on_submit=True):
        st.subheader("Add an account")
        a, b = st.columns([3, 1])
        name = a.text_input("Name", key="adm_reader_name", max_chars=200)
        role = b.selectbox("Role", READER_ROLES, key="adm_reader_role")
        add = st.form_submit_button("Add", type="primary")
    if add:
        try:
            with services.factory().begin() as session:
                _refuse_account_change(session)
                reader, code = accounts.add_reader(session, name, role)
                st.session_state[NEW_CODE] = (reader.name, code)
            st.rerun()
        except StudyError as exc:
            st.error(md_escape(exc))
    if table.empty:
        return
    _lockouts()
    st.subheader("Change an account")
    names = list(table["name"])
    a, b, c, d = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
    who = a.selectbox("Account", names, key="adm_reader_pick")
    reset = b.button("Reset code", key="adm_reset")  # every button is drawn before any of them acts
    disable, enable = c.button("Disable", key="adm_disable"), d.button("Enable", key="adm_enable")
    try:
        if reset:
            with services.factory().begin() as session:
                _refuse_account_change(session)
                st.session_state[NEW_CODE] = (who, accounts.reset_code(session, who))
            st.rerun()
        if disable or enable:
            with services.factory().begin() as session:
                _refuse_account_change(session)
                accounts.set_active(session, who, bool(enable))
            st.rerun()
    except StudyError as exc:
        st.error(md_escape(exc))


def _refuse_account_change(session) -> None:
    """Accounts of the demo database are fixed: its codes are public, so whoever signs in as ``demo-admin`` must
    not lock the other visitors out, take over an account or make admins of their own (raises StudyError)."""
    if demo_refusal(session):
        raise StudyError(ACCOUNTS_REFUSAL)


def _lockouts() -> None:
    """Sign-in lockouts in force (an address or an account), each with a button that lifts it (audited)."""
    user = require_role("admin")
    with services.factory().begin() as session:
        current = accounts.lockouts(session)
    if not current:
        return
    st.subheader("Sign-in lockouts")
    st.caption("After 5 wrong codes in 10 minutes from one address, or for one account from anywhere, sign-in is refused "
               "for 10 minutes. Lift a lockout once you know who it was.")
    for i, lock in enumerate(current):
        a, b = st.columns([4, 1], vertical_alignment="center")
        a.text(f"{lock['kind']}: {lock['key']}")  # plain text: a client key comes from the network
        if b.button("Lift", key=f"adm_lift_{i}"):
            with services.factory().begin() as session:
                accounts.lift_lockout(session, client_key=lock["client_key"], reader_id=lock["reader_id"], actor=user.id)
            st.rerun()


# -- export --------------------------------------------------------------------------------------------------


def export_zip(factory, study_id: int, actor: int | None) -> tuple[bytes, list[str]]:
    """Every export file of a study (:func:`study.export.export_study`) zipped in memory."""
    with tempfile.TemporaryDirectory(prefix="r2c-export-") as tmp:
        with factory.begin() as session:
            files = export_study(session, study_id, tmp, actor=actor)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, arcname=Path(f).name)
    return buf.getvalue(), [Path(f).name for f in files]


def render_export() -> None:
    user = require_role("admin")
    st.title("Export")
    components.research_notice()
    factory = services.factory()
    with factory.begin() as session:
        overview = study_overview.studies(session)
    if overview.empty:
        st.info("No studies yet.")
        return
    names = dict(zip(overview["id"], overview["name"]))
    sid = st.selectbox("Study", list(names), format_func=names.get, key="exp_study")
    st.write("The tidy vote table (one row per shown query) and every statistics table, as CSV and Parquet. "
             "Each export is written to the audit log.")
    if st.button("Prepare the export", key="exp_go", type="primary"):
        try:
            data, files = export_zip(factory, int(sid), user.id)
        except StudyError as exc:
            st.error(md_escape(exc))
            return
        st.session_state["exp_zip"] = (int(sid), data, files)
    got = st.session_state.get("exp_zip")
    if got and got[0] == int(sid):
        st.caption(md_escape(", ".join(got[2])))  # file names carry the study's name
        st.download_button("Download (zip)", got[1], file_name=f"study-{got[0]}-export.zip", mime="application/zip",
                           key="exp_dl")
