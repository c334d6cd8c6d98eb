"""AppTest tests of the app's page logic: sign-in, rate limit, role gating, voting, undo, resume, dashboard numbers,
admin actions and the demo page's handling of bad uploads."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.streamlit_app import PAGES_BY_ROLE, pages_for
from study.db import connect
from study.export import tidy_votes
from tests.app.conftest import app_test, signed_in
from tests.e2e.harness import build_test_study, vote_through


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [i.value for i in at.info] + [s.value for s in at.success]
    parts += [p.text for p in at.get("progress")] + [e.value for e in at.error] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


def _titles(role):
    return [p.title for p in pages_for(role)]


def test_pages_by_role():
    assert _titles(None) == ["Sign in", "Demo"]
    assert _titles("reader") == ["Vote"]  # no demo for readers: it would unblind them
    assert [p.title for p in pages_for(None, public_demo=False)] == ["Sign in"]
    assert [p.title for p in pages_for("researcher", public_demo=False)] == ["Dashboard", "Demo"]
    assert "Dashboard" not in _titles("reader") and "Vote" not in _titles("researcher")
    assert _titles("researcher")[0] == "Dashboard"
    assert set(_titles("admin")) >= {"Studies", "Readers", "Export", "Dashboard"}
    assert _titles("something-else") == _titles(None)
    urls = [p.url_path for ps in PAGES_BY_ROLE.values() for p in ps]
    assert all(u and u.replace("-", "").isalpha() for u in urls)


def test_sign_in_rejects_a_bad_code_and_accepts_a_good_one(study_env):
    at = app_test().run()
    assert not at.exception
    at.text_input(key="access_code").input("AAAA-BBBB-CCCC-DDDD")
    at.button[0].click().run()
    assert "not valid" in _texts(at)
    at.text_input(key="access_code").input(study_env.codes["reader-1"].lower())
    at.button[0].click().run()
    assert "Signed in as **reader-1** (reader)" in _texts(at)
    assert [b.label for b in at.button if b.key and b.key.startswith("choose_")] == [f"Choose {k}" for k in range(1, 6)]


def test_sign_in_is_rate_limited_and_audited(study_env):
    from sqlalchemy import select

    from study.models import AuditEvent

    at = app_test().run()
    for _ in range(5):
        at.text_input(key="access_code").input("wrong")
        at.button[0].click().run()
    at.text_input(key="access_code").input(study_env.codes["reader-1"])
    at.button[0].click().run()
    assert "Too many failed attempts" in _texts(at)
    assert "Signed in as" not in _texts(at)
    with connect(study_env.url).begin() as s:
        actions = list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions.count("sign_in_failed") == 5 and actions[-1] == "sign_in_rate_limited"


def test_reader_votes_undoes_and_resumes(study_env):
    at = signed_in(study_env, "reader-1")
    assert "Practice 1 of 1" in _texts(at)
    at.button(key="choose_2").click().run()
    assert "Query **1 of 4**" in _texts(at)
    at.segmented_control(key="vote_confidence").set_value(4)
    at.text_input(key="vote_comment").input("sharp")
    at.button(key="choose_5").click().run()
    assert "Query **2 of 4**" in _texts(at)
    at.button(key="undo").click().run()
    assert "Query **1 of 4**" in _texts(at)
    at.button(key="choose_3").click().run()
    assert "Query **2 of 4**" in _texts(at)
    with connect(study_env.url).begin() as s:
        tidy = tidy_votes(s, study_env.study_id)
    answered = tidy[tidy["chosen_slot"].notna()]
    assert list(answered["chosen_slot"]) == [3]  # the undone vote is gone, practice never counts
    assert answered["confidence"].isna().all() and answered["comment"].isna().all()
    # a new session (page reload) signs in again and resumes at the first unanswered query; undo is off
    at2 = signed_in(study_env, "reader-1")
    assert "Query **2 of 4**" in _texts(at2)
    assert at2.button(key="undo").disabled
    for _ in range(3):
        at2.button(key="choose_1").click().run()
    assert "All done" in _texts(at2)


def test_vote_keeps_confidence_and_comment(study_env):
    at = signed_in(study_env, "reader-1")
    at.button(key="choose_1").click().run()  # practice
    at.segmented_control(key="vote_confidence").set_value(5)
    at.text_input(key="vote_comment").input("clear lung fields")
    at.button(key="choose_4").click().run()
    # the next query starts with empty optional fields
    assert at.segmented_control(key="vote_confidence").value is None and at.text_input(key="vote_comment").value == ""
    with connect(study_env.url).begin() as s:
        row = tidy_votes(s, study_env.study_id).dropna(subset=["chosen_slot"]).iloc[0]
    assert (row["chosen_slot"], row["confidence"], row["comment"]) == (4, 5, "clear lung fields")


def test_a_stale_click_never_votes_on_the_next_query(study_env):
    """A second press bound to an already answered query (double click, key repeat) is refused, and never
    lands on the query shown now."""
    from streamlit.testing.v1 import AppTest

    def script():
        import streamlit as st

        from app import auth
        from app.app_pages import vote

        st.session_state.setdefault(auth.USER_KEY, st.session_state["as_user"])
        stale = st.session_state.pop("stale", None)
        if stale:
            vote._choose(stale, 2)
        vote.render()

    at = signed_in(study_env, "reader-1")
    user = at.session_state["r2c_user"]
    at = AppTest.from_function(script, default_timeout=60)
    at.session_state["as_user"] = user
    at.run()
    at.button(key="choose_1").click().run()  # practice
    first = at.session_state["r2c_vote"].view.query_token
    at.button(key="choose_1").click().run()
    current = at.session_state["r2c_vote"].view.query_token
    assert current != first
    at.session_state["stale"] = first
    at.run()
    assert not at.exception
    assert at.session_state["r2c_vote"].view.query_token == current
    assert any("already answered" in t.value for t in at.toast)
    with connect(study_env.url).begin() as s:
        tidy = tidy_votes(s, study_env.study_id)
    assert list(tidy["chosen_slot"].dropna()) == [1]


def _vote_everything(url: str, reader_name: str, pick) -> None:
    vote_through(url, reader_name, pick)


def test_dashboard_numbers_match_the_database(tmp_path, monkeypatch):
    ts = build_test_study(tmp_path / "s", n_cases=6, accounts={"r1": "reader", "r2": "reader", "res": "researcher"})
    for k, v in ts.env.items():
        monkeypatch.setenv(k, v)
    _vote_everything(ts.url, "r1", lambda v: 1)
    _vote_everything(ts.url, "r2", lambda v: 1 + v.index % v.n_slots)
    with connect(ts.url).begin() as s:
        tidy = tidy_votes(s, ts.study_id)
    expected = tidy.groupby(["reader", "chosen_method"]).size()
    at = signed_in(ts, "res")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Answered"] == str(int(tidy["chosen_method"].notna().sum())) == "12"
    assert metrics["Readers"] == "2"
    counts = at.table[0].value
    for (reader, method), n in expected.items():
        assert int(counts.loc[reader, method]) == int(n)
    assert int(counts.loc["overall"].sum()) == 12
    # filtering by label changes the numbers the same way
    at.multiselect(key=f"dash_labels_{ts.study_id}").set_value(["covid"]).run()
    covid = tidy[tidy["label"] == "covid"]
    assert {m.label: m.value for m in at.metric}["Answered"] == str(int(covid["chosen_method"].notna().sum()))
    assert at.download_button(key="dash_csv") is not None


def _page(page: str, user: tuple[int, str, str] | None):
    from streamlit.testing.v1 import AppTest

    def script(page_name: str, who):
        import streamlit as st

        from app import auth
        from app.app_pages import admin, dashboard, demo, vote

        if who is not None:
            st.session_state[auth.USER_KEY] = auth.User(id=who[0], name=who[1], role=who[2], sitting_id=0)
        {"dashboard": dashboard.render, "vote": vote.render, "studies": admin.render_studies,
         "readers": admin.render_readers, "export": admin.render_export, "demo": demo.render}[page_name]()

    return AppTest.from_function(script, args=(page, user), default_timeout=60)


@pytest.mark.parametrize("page,role", [("dashboard", "reader"), ("vote", "researcher"), ("studies", "reader"),
                                       ("readers", "researcher"), ("export", "reader"), ("dashboard", None)])
def test_pages_refuse_other_roles(study_env, page, role):
    at = _page(page, None if role is None else (1, "x", role)).run()
    assert not at.exception
    shown = _texts(at)
    assert "not available for your role" in shown or "Please sign in first" in shown
    assert not at.table and not at.metric and not [b for b in at.button if (b.key or "").startswith("choose_")]


def test_admin_adds_a_reader_and_sees_the_code_once(study_env):
    at = signed_in(study_env, "admin-1")
    assert at.title[0].value == "Studies"
    at = _page("readers", (3, "admin-1", "admin")).run()
    at.text_input(key="adm_reader_name").input("new reader")
    at.form_submit_button[0].click().run()
    shown = _texts(at)
    assert "Access code for **new reader**" in shown
    code = at.code[0].value
    from study.accounts import authenticate

    with connect(study_env.url).begin() as s:
        assert authenticate(s, code).name == "new reader"
    at.button(key="adm_code_ok").click().run()
    assert not at.code


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name,data,expect", [
    ("broken.png", b"\x89PNG\r\n\x1a\nthis is not really a png", "broken.png"),
    ("empty.png", b"", "empty"),
    ("notes.txt", b"hello, these are notes", "notes.txt"),
])
def test_demo_page_reports_bad_uploads_and_stays_up(study_env, tmp_path, monkeypatch, name, data, expect):
    from tests.e2e.harness import export_test_weights

    weights = export_test_weights(tmp_path / "w", lung=False)
    monkeypatch.setenv("R2C_WEIGHTS", str(weights))
    at = _page("demo", None).run()
    at.file_uploader(key="demo_upload").set_value((name, data, "application/octet-stream")).run()
    assert not at.exception
    # the message is Markdown with every special character of the (visitor-chosen) name escaped: it reads
    # as the plain text once the backslashes are gone, as the browser shows it
    assert len(at.error) == 1 and expect in at.error[0].value.replace("\\", "").lower()
    assert not at.image
    # the app stays up: a good 16-bit image right after works
    good = _png((np.linspace(0, 65535, 64 * 80).reshape(64, 80)).astype(np.uint16))
    at.file_uploader(key="demo_upload").set_value(("ok16.png", good, "image/png")).run()
    assert not at.exception and not at.error
    captions = [c for im in at.image for c in im.captions]
    assert captions == ["Original", "Restored (op-q1, 3 passes)"]
    assert any(m.label == "COVID-19 probability" for m in at.metric)


def test_demo_page_offers_the_classical_comparators(study_env, tmp_path, monkeypatch):
    from tests.e2e.harness import export_test_weights

    monkeypatch.setenv("R2C_WEIGHTS", str(export_test_weights(tmp_path / "w", lung=False)))
    at = _page("demo", None).run()
    assert {"op-q1", "clahe", "histeq", "gamma", "unsharp", "nlm"} <= set(at.selectbox(key="demo_model").options)
    at.selectbox(key="demo_model").set_value("clahe").run()
    assert at.slider(key="demo_passes").disabled
    good = _png((np.linspace(0, 255, 96 * 80).reshape(96, 80)).astype(np.uint8))
    at.file_uploader(key="demo_upload").set_value(("ok.png", good, "image/png")).run()
    assert not at.exception and not at.error
    assert [c for im in at.image for c in im.captions] == ["Original", "Enhanced (clahe)"]
    prob = next(m for m in at.metric if m.label == "COVID-19 probability")
    assert prob.value.endswith("%")  # from the bundled generator's classifier on the enhanced image


def test_demo_page_runs_hqg_net_with_the_bundled_classifier(study_env, tmp_path, monkeypatch):
    from tests.e2e.harness import export_test_weights
    from tests.test_hqg import _export_tiny_hqg

    weights = _export_tiny_hqg(export_test_weights(tmp_path / "w", lung=False))
    monkeypatch.setenv("R2C_WEIGHTS", str(weights))
    at = _page("demo", None).run()
    assert "hqg" in at.selectbox(key="demo_model").options
    at.selectbox(key="demo_model").set_value("hqg").run()
    assert at.slider(key="demo_passes").disabled  # applied once, as hqg-x1 is in studies, whatever the slider says
    good = _png((np.linspace(0, 255, 96 * 80).reshape(96, 80)).astype(np.uint8))
    at.file_uploader(key="demo_upload").set_value(("ok.png", good, "image/png")).run()
    assert not at.exception and not at.error
    assert [c for im in at.image for c in im.captions] == ["Original", "Restored (hqg, 1 pass)"]
    prob = next(m for m in at.metric if m.label == "COVID-19 probability")
    assert prob.value.endswith("%")  # op-q1's classifier on HQG-Net's output


def test_demo_page_without_weights_says_so(study_env, tmp_path, monkeypatch):
    monkeypatch.setenv("R2C_WEIGHTS", str(tmp_path / "none"))
    at = _page("demo", None).run()
    assert not at.exception
    assert "No restoration weights" in _texts(at)


def test_admin_builds_a_study_and_closes_it(study_env):
    at = _page("studies", (3, "admin-1", "admin")).run()
    assert not at.exception
    at.text_input(key="adm_name").input("Built in the app")
    at.selectbox(key="adm_renderer").set_value("synthetic")
    at.number_input(key="adm_n").set_value(2)
    at.number_input(key="adm_practice").set_value(0)
    at.multiselect(key="adm_methods").set_value(["original", "cnn-x1", "op-q3-x3"])
    at.form_submit_button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Built in the app" in at.success[0].value and "opened" in at.success[0].value
    from study import overview as queries

    with connect(study_env.url).begin() as s:
        row = queries.studies(s).set_index("name").loc["Built in the app"]
    assert (row["cases"], row["methods"], row["status"], row["readers"]) == (2, 3, "open", 1)
    at.selectbox(key="adm_study").set_value(int(row["id"]))
    at.button(key="adm_close").click().run()
    with connect(study_env.url).begin() as s:
        assert queries.studies(s).set_index("name").loc["Built in the app", "status"] == "closed"


def test_admin_export_gives_a_zip(study_env):
    import zipfile

    _vote_everything(study_env.url, "reader-1", lambda v: 2)
    at = _page("export", (3, "admin-1", "admin")).run()
    at.button(key="exp_go").click().run()
    assert not at.exception and not at.error
    from app.app_pages.admin import export_zip

    data, names = export_zip(connect(study_env.url), study_env.study_id, None)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert set(zf.namelist()) == set(names)
        votes = [n for n in names if n.endswith("_votes.csv")]
        assert votes and zf.read(votes[0]).count(b"\n") == 1 + 4


# ------------------------------------------------------------------ issue 16: sessions follow the account
def _db_change(url: str, name: str, change: str) -> None:
    from sqlalchemy import select

    from study.accounts import reset_code, set_active
    from study.models import Reader

    with connect(url).begin() as s:
        if change == "disable":
            set_active(s, name, False)
        elif change == "reset":
            reset_code(s, name)
        else:
            s.scalar(select(Reader).where(Reader.name == name)).role = change


@pytest.mark.parametrize("account,change", [("admin-1", "disable"), ("admin-1", "reset"), ("researcher-1", "reader"),
                                            ("reader-1", "disable")])
def test_an_open_session_ends_at_its_next_action_when_the_account_changes(study_env, account, change):
    at = signed_in(study_env, account)
    assert f"Signed in as **{account}**" in _texts(at)
    _db_change(study_env.url, account, change)
    at.run()  # the next action of the open tab
    assert not at.exception
    shown = _texts(at)
    assert "Signed in as" not in shown and "changed by an administrator" in shown
    assert at.text_input(key="access_code") is not None  # back on the sign-in page
    assert not at.metric and not [b for b in at.button if (b.key or "").startswith(("choose_", "adm_"))]


def test_an_idle_session_is_signed_out(study_env, monkeypatch):
    from app import auth

    monkeypatch.setenv("R2C_SESSION_IDLE_MIN", "30")
    at = signed_in(study_env, "researcher-1")
    at.session_state[auth.SEEN_KEY] = at.session_state[auth.SEEN_KEY] - 31 * 60
    at.run()
    shown = _texts(at)
    assert "Signed in as" not in shown and "without activity" in shown
    at2 = signed_in(study_env, "researcher-1")  # an active session stays
    at2.run()
    assert "Signed in as **researcher-1**" in _texts(at2)


def test_the_code_hash_runs_outside_every_transaction(study_env, monkeypatch):
    """A sign-in flood must never hold a database connection (or SQLite's write lock) while scrypt runs."""
    import study.accounts as accounts
    from app.auth import sign_in

    factory = connect(study_env.url)
    engine = factory.kw["bind"]
    seen = []
    real = accounts.verify_secret

    def checked(secret, stored):
        seen.append(engine.pool.checkedout())
        return real(secret, stored)

    monkeypatch.setattr(accounts, "verify_secret", checked)
    ok = sign_in(factory, study_env.codes["reader-1"], "ip:test")
    bad = sign_in(factory, study_env.codes["reader-1"][:-1] + ("A" if study_env.codes["reader-1"][-1] != "A" else "B"), "ip:test")
    assert ok.user is not None and ok.user.fingerprint and bad.user is None
    assert seen == [0, 0]  # no connection checked out during either hash check


def test_admin_lifts_a_lockout_on_the_readers_page(study_env):
    from app.auth import sign_in

    factory = connect(study_env.url)
    for _ in range(5):
        sign_in(factory, "nonsense", "ip:6.6.6.6")
    assert sign_in(factory, study_env.codes["reader-1"], "ip:6.6.6.6").user is None
    at = _page("readers", (3, "admin-1", "admin")).run()
    assert "Sign-in lockouts" in [h.value for h in at.subheader]
    at.button(key="adm_lift_0").click().run()
    assert not at.exception and "Sign-in lockouts" not in [h.value for h in at.subheader]
    assert sign_in(factory, study_env.codes["reader-1"], "ip:6.6.6.6").user is not None


def test_a_double_click_never_votes_on_the_next_query(study_env, monkeypatch):
    """The second click of a double click reaches the next query's button when the page is fast: it is ignored
    when it comes sooner than R2C_MIN_DWELL_S after that query appeared (issue 16's scale-out run found this)."""
    monkeypatch.setenv("R2C_MIN_DWELL_S", "30")  # anything an AppTest run can do is "too soon"
    at = signed_in(study_env, "reader-1")
    at.button(key="choose_2").click().run()  # the practice query was on screen long enough? no: also too soon
    toasts = lambda: " ".join(t.value for t in at.toast)  # noqa: E731
    assert "double click was ignored" in toasts() and "Practice 1 of 1" in _texts(at)
    monkeypatch.setenv("R2C_MIN_DWELL_S", "0")
    at.button(key="choose_2").click().run()  # a deliberate vote
    assert "Query **1 of 4**" in _texts(at)
    monkeypatch.setenv("R2C_MIN_DWELL_S", "30")
    at.button(key="choose_3").click().run()  # right after the next query appeared: the double click's second half
    assert "Query **1 of 4**" in _texts(at) and "double click was ignored" in toasts()
    with connect(study_env.url).begin() as s:
        tidy = tidy_votes(s, study_env.study_id)
    assert int(tidy["chosen_method"].notna().sum()) == 0  # only the practice vote was cast


def test_dashboard_filters_start_fresh_for_another_study(tmp_path, monkeypatch):
    """A label picked for one study must not empty the next study's view (its filters start with everything)."""
    from app import demo_db
    from app.settings import AppSettings

    url = f"sqlite:///{tmp_path / 'var' / 'study.db'}"
    for k, v in {"R2C_DB_URL": url, "R2C_ASSETS": str(tmp_path / "var" / "assets"), "R2C_DATA": str(tmp_path / "none"),
                 "R2C_WEIGHTS": str(tmp_path / "none"), "R2C_DEMO_DB": "1"}.items():
        monkeypatch.setenv(k, v)
    demo_db.ensure_demo_database(AppSettings(db_url=url, assets=tmp_path / "var" / "assets", data_dir=tmp_path / "none",
                                             weights_root=tmp_path / "none", device="cpu", demo_allowed=True))
    at = app_test().run()
    at.text_input(key="access_code").input("demo-researcher")
    at.button[0].click().run()
    sim_id = int(at.selectbox(key="dash_study").value)
    at.multiselect(key=f"dash_labels_{sim_id}").set_value(["covid"]).run()
    narrowed = int({m.label: m.value for m in at.metric}["Answered"])
    assert narrowed > 0
    # the same widget keys would carry ["covid"] over; per-study keys start each study with every label
    assert f"dash_labels_{sim_id + 1}" not in at.session_state


def test_demo_page_shows_an_upload_name_as_literal_text(study_env, tmp_path, monkeypatch):
    """An upload named like Markdown (a link, colour markup) is shown escaped in the error, never rendered."""
    from tests.e2e.harness import export_test_weights

    monkeypatch.setenv("R2C_WEIGHTS", str(export_test_weights(tmp_path / "w", lung=False)))
    at = _page("demo", None).run()
    name = "[click](http://evil.example):red[x].png"
    at.file_uploader(key="demo_upload").set_value((name, b"not an image", "image/png")).run()
    assert not at.exception and len(at.error) == 1
    shown = at.error[0].value
    assert "[click](http" not in shown and ":red[" not in shown and r"\[click\]\(http" in shown
