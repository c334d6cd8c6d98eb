"""The security review's findings, fixed: client addresses behind a proxy, the outbox of a session that has ended,
the public demo page on a real study, the demo database's accounts, reader-facing errors, and sign-in under
simultaneous attempts (docs/APP.md, "Running a real study")."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from app import auth, demo_db
from app import instant_vote as iv
from app.settings import AppSettings, load_settings
from study import audit
from study.accounts import account_fingerprint, authenticate, reset_code, set_active, start_sitting
from study.db import connect
from study.models import AuditEvent, Reader, Vote
from tests.app.conftest import app_test
from tests.e2e.harness import build_test_study

REPO = Path(__file__).resolve().parents[2]


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [i.value for i in at.info] + [s.value for s in at.success]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [t.value for t in at.text]
    parts += [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts)


def _page(page: str, user: tuple[int, str, str, str] | None):
    from streamlit.testing.v1 import AppTest

    def script(page_name: str, who):
        import streamlit as st

        from app import auth
        from app.app_pages import admin, vote

        if who is not None and auth.current_user() is None and "ran" not in st.session_state:
            st.session_state["ran"] = True
            auth.set_user(auth.User(id=who[0], name=who[1], role=who[2], sitting_id=0, fingerprint=who[3]))
        {"vote": vote.render, "studies": admin.render_studies, "readers": admin.render_readers}[page_name]()

    return AppTest.from_function(script, args=(page, user), default_timeout=60)


def _account(url: str, name: str) -> tuple[int, str, str, str]:
    with connect(url).begin() as s:
        r = s.scalar(select(Reader).where(Reader.name == name))
        return r.id, r.name, r.role, account_fingerprint(r)


# -- 1. client addresses ----------------------------------------------------------------------------------------


def test_client_address_is_always_an_address():
    assert auth.client_address("203.0.113.9", None, set()) == "203.0.113.9"
    assert auth.client_address(None, "1.2.3.4:5678", {"127.0.0.1"}) == "1.2.3.4"  # a port is not part of the key
    assert auth.client_address(None, "[2001:db8::1]:443", {"::1"}) == "2001:db8::1"
    evil = "![x](http://evil.example/i.png) `code` [link](javascript:alert(1))"
    assert auth.client_address(None, evil, {"127.0.0.1"}) == auth.INVALID_ADDRESS  # never text a client chose
    assert auth.client_address(evil, None, set()) == auth.INVALID_ADDRESS
    assert auth.normal_address("2001:DB8:0::1") == "2001:db8::1" and auth.normal_address("local") is None


def _key(monkeypatch, peer, forwarded, *, trusted=None, server=None) -> str:
    headers = SimpleNamespace(get_all=lambda name: [forwarded] if forwarded and name.lower() == "x-forwarded-for" else [])
    monkeypatch.setattr(auth, "st", SimpleNamespace(context=SimpleNamespace(ip_address=peer, headers=headers)))
    for var, value in (("R2C_TRUSTED_PROXIES", trusted), ("FORWARDED_ALLOW_IPS", server)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    return auth.client_key()


def test_client_key_ignores_an_address_the_web_server_took_from_the_header(monkeypatch):
    """uvicorn (Streamlit's server) replaces the peer with the header's address for peers in FORWARDED_ALLOW_IPS
    (default 127.0.0.1): through a proxy on this machine a client could name its own address. Without
    R2C_TRUSTED_PROXIES the header counts for nothing, whatever the server did with it."""
    assert _key(monkeypatch, "6.6.6.6", "6.6.6.6") == "ip:local"  # server default: possibly forged, shared key
    assert _key(monkeypatch, "6.6.6.6", "9.9.9.9, 6.6.6.6:1234") == "ip:local"
    assert _key(monkeypatch, "203.0.113.9", "1.2.3.4") == "ip:203.0.113.9"  # a direct client's header: ignored
    assert _key(monkeypatch, "6.6.6.6", "6.6.6.6", server="") == "ip:6.6.6.6"  # the scripts: the server never rewrites
    assert _key(monkeypatch, None, "1.2.3.4", server="") == "ip:local"
    assert _key(monkeypatch, None, "6.6.6.6, 1.2.3.4", trusted="127.0.0.1", server="") == "ip:1.2.3.4"
    assert _key(monkeypatch, None, "`x` ![i](http://e/)", trusted="127.0.0.1", server="") == "ip:invalid"


def test_scripts_and_docs_leave_the_forwarded_header_to_the_app():
    for script in ("scripts/run_study.sh", "scripts/run_app.sh"):
        text = (REPO / script).read_text()
        assert "export FORWARDED_ALLOW_IPS=" in text and "${FORWARDED_ALLOW_IPS" not in text, script
    doc = (REPO / "docs" / "APP.md").read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in doc  # overwritten, never appended to
    assert "$proxy_add_x_forwarded_for" not in doc.split("```nginx")[1].split("```")[0]


def test_lockout_keys_and_names_are_never_read_as_markdown(study_env):
    from app.auth import md_escape, sign_in

    evil = "ip:`]![x](http://evil.example/i.png)"
    factory = connect(study_env.url)
    for _ in range(6):  # the sixth is refused and writes the lockout
        sign_in(factory, "nonsense", evil)
    at = _page("readers", _account(study_env.url, "admin-1")).run()
    assert not at.exception
    assert any(evil in t.value for t in at.text)  # shown as plain text
    assert not [m.value for m in at.markdown if "evil.example" in m.value]
    assert md_escape("reader-1") == "reader-1"
    assert md_escape("[a](http://x) ![i](y) `c` :red[r] $m$ www.x.org\nnext") == (
        "\\[a\\]\\(http\\://x\\) \\!\\[i\\]\\(y\\) \\`c\\` \\:red\\[r\\] \\$m\\$ www\\.x\\.org next")


# -- 2. the outbox of a session that has ended ------------------------------------------------------------------


def _outbox_script(user, outbox, probe):
    import streamlit as st

    from app import auth
    from app import instant_vote as iv

    if not probe.get("ran"):
        probe["ran"] = True
        auth.set_user(user)
        if probe.get("idle"):
            st.session_state[auth.SEEN_KEY] -= 2 * 3600
        st.session_state[iv.KEY] = {"outbox": outbox}
        iv._on_outbox()  # as Streamlit calls it, before the page
    probe["user"] = auth.current_user()
    probe["ended"] = st.session_state.get(auth.ENDED_KEY)


def _queue(url: str, reader_id: int, sitting: int, n: int = 4) -> dict:
    from study.vote_queue import upcoming

    with connect(url).begin() as s:
        views = upcoming(s, reader_id, count=n, sitting_id=sitting)
    return {"nonce": 1, "need": [], "requests": [
        {"key": f"k-vote-{i:04d}", "kind": "vote", "query": v.query_token, "slot": 1, "dwell_ms": 900}
        for i, v in enumerate(views)]}


def _votes(url: str) -> int:
    with connect(url).begin() as s:
        return int(s.scalar(select(func.count()).select_from(Vote)))


@pytest.mark.parametrize("change", ["reset", "disable", "role", "idle", None])
def test_an_outbox_is_applied_only_for_a_session_still_valid(study_env, change):
    from streamlit.testing.v1 import AppTest

    url = study_env.url
    rid, name, role, fp = _account(url, "reader-1")
    with connect(url).begin() as s:
        sitting = start_sitting(s, rid).id
    user = auth.User(id=rid, name=name, role=role, sitting_id=sitting, fingerprint=fp)
    outbox = _queue(url, rid, sitting)
    with connect(url).begin() as s:
        if change == "reset":
            reset_code(s, name)
        elif change == "disable":
            set_active(s, name, False)
        elif change == "role":
            s.get(Reader, rid).role = "researcher"
    probe = {"idle": change == "idle"}
    at = AppTest.from_function(_outbox_script, args=(user, outbox, probe), default_timeout=60).run()
    assert not at.exception, at.exception
    if change is None:
        assert _votes(url) == 4 and probe["user"] == user and not probe["ended"]
    else:
        assert _votes(url) == 0  # nothing recorded for a session that has ended
        assert probe["user"] is None and probe["ended"]  # signed out, with the reason for the sign-in page
    # handle_outbox itself refuses a stale account too (the review's demonstration: reset code, stale User)
    if change in ("reset", "disable", "role"):
        state = iv.InstantState()
        assert iv.handle_outbox(user, state, outbox) is False and _votes(url) == 0
        assert "sign in again" in state.message


def test_a_queued_vote_is_never_recorded_for_another_reader(tmp_path, monkeypatch):
    """Reader A's queue sent in reader B's session (one browser, two readers): refused, nothing recorded; the same
    queue, sent after A signs in again (a new sitting), is recorded for A."""
    ts = build_test_study(tmp_path / "s", n_cases=3, n_practice=0, accounts={"a": "reader", "b": "reader"})
    for k, v in ts.env.items():
        monkeypatch.setenv(k, v)
    ids = {}
    for who in ("a", "b"):
        rid, name, role, fp = _account(ts.url, who)
        with connect(ts.url).begin() as s:
            ids[who] = auth.User(id=rid, name=name, role=role, sitting_id=start_sitting(s, rid).id, fingerprint=fp)
    outbox = _queue(ts.url, ids["a"].id, ids["a"].sitting_id, n=3)
    state = iv.InstantState()
    assert iv.handle_outbox(ids["b"], state, outbox)
    assert [a["outcome"] for a in state.acks] == ["refused"] * 3 and _votes(ts.url) == 0
    with connect(ts.url).begin() as s:
        later = start_sitting(s, ids["a"].id).id
    a_again = auth.User(**{**ids["a"].__dict__, "sitting_id": later})
    state = iv.InstantState()
    assert iv.handle_outbox(a_again, state, outbox)
    assert [a["outcome"] for a in state.acks] == ["recorded"] * 3 and _votes(ts.url) == 3
    assert iv.reader_tag(ids["a"].id, "a") != iv.reader_tag(ids["b"].id, "b")  # separate queues in the browser


def test_every_render_of_a_session_is_named_apart_from_another_sessions(study_env):
    rid, name, role, fp = _account(study_env.url, "reader-1")
    with connect(study_env.url).begin() as s:
        sitting = start_sitting(s, rid).id
    user = auth.User(id=rid, name=name, role=role, sitting_id=sitting, fingerprint=fp)
    one, two = iv.InstantState(), iv.InstantState()
    m1 = iv.unpack(iv.build_data(user, one, min_dwell_s=0.35, questions={}, labels={}))[0]
    m2 = iv.unpack(iv.build_data(user, two, min_dwell_s=0.35, questions={}, labels={}))[0]
    assert m1["render"] == m2["render"] == 1 and m1["epoch"] != m2["epoch"]
    js = (REPO / "app" / "instant_vote.js").read_text()
    assert "meta.epoch" in js


# -- 4. the public demo page ------------------------------------------------------------------------------------


def test_the_demo_page_is_public_by_default_only_on_the_demo_database(monkeypatch):
    monkeypatch.delenv("R2C_PUBLIC_DEMO", raising=False)
    cfg = load_settings()
    assert cfg.public_demo is None and cfg.demo_page_public(True) and not cfg.demo_page_public(False)
    for value, expect in (("0", False), ("1", True), ("", None)):
        monkeypatch.setenv("R2C_PUBLIC_DEMO", value)
        assert load_settings().public_demo is expect
    monkeypatch.setenv("R2C_PUBLIC_DEMO", "1")
    assert load_settings().demo_page_public(False)
    monkeypatch.setenv("R2C_PUBLIC_DEMO", "0")
    assert not load_settings().demo_page_public(True)


def _nav_pages(at) -> set[str]:
    return {str(info.get("page_name", "")) for info in at._registered_pages.values()}


def test_a_signed_out_visitor_gets_no_demo_page_on_a_real_study(study_env, monkeypatch):
    monkeypatch.delenv("R2C_PUBLIC_DEMO", raising=False)
    at = app_test().run()
    assert not at.exception
    assert _nav_pages(at) == {"Sign in"}
    monkeypatch.setenv("R2C_PUBLIC_DEMO", "1")  # asked for explicitly
    at = app_test().run()
    assert _nav_pages(at) == {"Sign in", "Demo"}


# -- 5. the demo database's accounts ----------------------------------------------------------------------------


def _demo(tmp_path, monkeypatch) -> AppSettings:
    cfg = AppSettings(db_url=f"sqlite:///{tmp_path / 'var' / 'study.db'}", assets=tmp_path / "var" / "assets",
                      data_dir=tmp_path / "none", weights_root=tmp_path / "no-weights", device="cpu", demo_allowed=True)
    demo_db.ensure_demo_database(cfg)
    for k, v in {"R2C_DB_URL": cfg.db_url, "R2C_ASSETS": str(cfg.assets), "R2C_DATA": str(cfg.data_dir),
                 "R2C_WEIGHTS": str(cfg.weights_root), "R2C_DEMO_DB": "1"}.items():
        monkeypatch.setenv(k, v)
    return cfg


def test_each_start_repairs_the_demo_accounts(tmp_path, monkeypatch):
    from study.accounts import add_reader

    cfg = _demo(tmp_path, monkeypatch)
    factory = connect(cfg.db_url)
    with factory.begin() as s:  # what a visitor signed in as demo-admin could do before this fix
        reset_code(s, "demo-reader")
        set_active(s, "demo-researcher", False)
        s.scalar(select(Reader).where(Reader.name == "demo-admin")).role = "reader"
        add_reader(s, "intruder", "admin")
        add_reader(s, "visitor", "reader")
    assert demo_db.ensure_demo_database(cfg).is_demo  # the next start
    with factory.begin() as s:
        for alias, role in demo_db.DEMO_ACCOUNTS.items():
            reader = authenticate(s, demo_db.resolve_alias(s, alias))
            assert reader is not None and reader.role == role
        assert not s.scalar(select(Reader.active).where(Reader.name == "intruder"))
        assert s.scalar(select(Reader.active).where(Reader.name == "visitor"))  # readers can do no harm
        assert s.scalar(select(Reader.active).where(Reader.name == "sim-reader-1"))
        repairs = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == audit.READER_CHANGED))
    assert repairs >= 4
    with factory.begin() as s:
        assert demo_db.repair_demo_accounts(s) == []  # nothing left to repair


def test_the_demo_admin_cannot_change_accounts_or_read_server_folders(tmp_path, monkeypatch):
    cfg = _demo(tmp_path, monkeypatch)
    admin = _account(cfg.db_url, "demo-admin")
    with connect(cfg.db_url).begin() as s:
        before = [(r.name, r.code_hash, r.active) for r in s.scalars(select(Reader).order_by(Reader.id))]
    at = _page("readers", admin).run()
    assert not at.exception and demo_db.ACCOUNTS_REFUSAL in _texts(at)
    at.text_input(key="adm_reader_name").input("my own admin")
    at.selectbox(key="adm_reader_role").set_value("admin")
    at.form_submit_button[0].click().run()
    assert any("accounts are fixed" in e.value for e in at.error) and not at.code
    at.selectbox(key="adm_reader_pick").set_value("demo-reader")
    at.button(key="adm_reset").click().run()
    assert any("accounts are fixed" in e.value for e in at.error) and not at.code
    at.button(key="adm_disable").click().run()
    assert any("accounts are fixed" in e.value for e in at.error)
    with connect(cfg.db_url).begin() as s:
        assert [(r.name, r.code_hash, r.active) for r in s.scalars(select(Reader).order_by(Reader.id))] == before
    # a folder of images: refused before the folder is looked at (no path oracle, no manifest written)
    folder = tmp_path / "secret-folder"
    folder.mkdir()
    at = _page("studies", admin).run()
    at.text_input(key="adm_name").input("Probe")
    at.radio(key="adm_source").set_value("A folder of images")
    at.text_input(key="adm_folder").input(str(folder))
    at.form_submit_button[0].click().run()
    errors = " ".join(e.value for e in at.error)
    assert "demo database" in errors and "not a folder" not in errors and "no images" not in errors
    assert not (cfg.assets.parent / "manifests").exists()


def test_a_real_admin_still_manages_accounts(study_env):
    at = _page("readers", _account(study_env.url, "admin-1")).run()
    assert demo_db.ACCOUNTS_REFUSAL not in _texts(at)
    at.selectbox(key="adm_reader_pick").set_value("reader-1")
    at.button(key="adm_reset").click().run()
    assert not at.exception and not at.error and at.code  # the new code, shown once


# -- 6. reader-facing errors ------------------------------------------------------------------------------------


def _lose_assets(ts) -> list[str]:
    files = sorted(Path(ts.env["R2C_ASSETS"]).rglob("*.png"))
    for f in files:
        f.unlink()
    return [f.stem for f in files] + [ts.env["R2C_ASSETS"]]


@pytest.mark.parametrize("ui", ["plain", "instant"])
def test_a_missing_image_gives_the_reader_one_generic_line_and_keeps_them_signed_in(study_env, monkeypatch, caplog, ui):
    monkeypatch.setenv("R2C_VOTE_UI", ui)
    secrets = _lose_assets(study_env)
    at = app_test().run()
    at.text_input(key="access_code").input(study_env.codes["reader-1"])
    at.button[0].click().run()
    assert not at.exception, at.exception
    shown = _texts(at) + " ".join(t.value for t in at.toast)
    assert iv.IMAGES_UNAVAILABLE in shown
    assert not [s for s in secrets if s in shown] and "asset" not in shown.lower()
    assert isinstance(at.session_state[auth.USER_KEY], auth.User)  # still signed in
    assert "Signed in as **reader-1**" in shown
    assert any("rendition image missing" in r.getMessage() for r in caplog.records)  # the details: server log only


def test_reader_messages_name_no_server_paths():
    from study.errors import DatabaseLockedError, NotFoundError, VoteRefused

    assert iv.reader_message(VoteRefused("the study 'x' is closed")) == "the study 'x' is closed"
    assert iv.reader_message(NotFoundError("no such query for this reader")) == "no such query for this reader"
    assert iv.reader_message(iv.ImagesUnavailable("missing from /srv/assets")) == iv.IMAGES_UNAVAILABLE
    assert iv.reader_message(DatabaseLockedError("sqlite:////srv/var/study.db is locked")) == iv.SERVER_TROUBLE


# -- 7. sign-in under simultaneous attempts ---------------------------------------------------------------------


def _slow_checks(monkeypatch, seconds: float) -> dict:
    """Make every code check take ``seconds`` and record how many ran at once."""
    seen = {"now": 0, "max": 0}
    lock = threading.Lock()
    real = auth.check_code

    def slow(found):
        with lock:
            seen["now"] += 1
            seen["max"] = max(seen["max"], seen["now"])
        time.sleep(seconds)
        try:
            return real(found)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(auth, "check_code", slow)
    return seen


def _together(n: int, fn) -> list:
    out: list = [None] * n
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _failures(url: str) -> int:
    with connect(url).begin() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == audit.SIGN_IN_FAILED)))


def test_simultaneous_wrong_codes_never_overrun_the_limit(study_env, monkeypatch):
    from study.accounts import MAX_FAILURES

    monkeypatch.setattr(auth, "_GATE", [])
    _slow_checks(monkeypatch, 0.3)
    factory = connect(study_env.url)
    good = study_env.codes["reader-1"]
    wrong = good[:-1] + ("A" if good[-1] != "A" else "B")  # the right account, a wrong secret
    results = _together(12, lambda i: auth.sign_in(factory, wrong, "ip:6.6.6.6"))
    assert all(r.user is None for r in results)
    assert _failures(study_env.url) <= MAX_FAILURES  # before: up to 12
    assert not auth._PENDING  # every reservation released
    assert auth.sign_in(factory, good, "ip:6.6.6.6").message == auth.LOCKED_MESSAGE


def test_at_most_a_few_code_checks_run_at_once(study_env, monkeypatch):
    monkeypatch.setenv("R2C_SIGN_IN_HASHES", "2")
    monkeypatch.setattr(auth, "_GATE", [])
    seen = _slow_checks(monkeypatch, 0.2)
    factory = connect(study_env.url)
    results = _together(6, lambda i: auth.sign_in(factory, "AAAA-BBBB-CCCC-DDDD", f"ip:10.0.0.{i}"))
    assert all(r.user is None for r in results) and seen["max"] <= 2
    assert auth.hash_slots() == 2
    monkeypatch.setenv("R2C_SIGN_IN_HASHES", "junk")
    assert auth.hash_slots() == 2
    ok = auth.sign_in(factory, study_env.codes["reader-1"], "ip:10.0.0.1")
    assert ok.user is not None and not auth._PENDING


def test_a_bundled_model_whose_weights_do_not_load_is_left_out_of_the_demo_study(tmp_path, caplog):
    """A truncated weights file costs the demo study that model (with a warning and a note), not the whole demo."""
    from tests.e2e.harness import export_test_weights

    export_test_weights(tmp_path / "weights", models=("op-q1", "op-q3", "cnn-compact"), lung=False)
    bad = tmp_path / "weights" / "r2c-op-q3" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:4000])
    _, methods, name, skipped = demo_db.pick_renderer(tmp_path / "weights", device="cpu")
    assert name == "r2c" and "op-q3-x3" not in methods and {"original", "cnn-compact-x3"} <= set(methods)
    assert len(skipped) == 1 and skipped[0].startswith("op-q3 (") and "safetensors" in skipped[0]
    assert "op-q3" in caplog.text
    # every model unreadable: the synthetic renderer, and the demo still starts
    for d in (tmp_path / "weights").glob("r2c-*"):
        (d / "model.safetensors").write_bytes(b"not a checkpoint")
    _, methods, name, skipped = demo_db.pick_renderer(tmp_path / "weights", device="cpu")
    assert name == "synthetic" and len(skipped) == 3
