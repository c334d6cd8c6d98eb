"""r2c review app: ``streamlit run app/streamlit_app.py`` (``scripts/run_app.sh`` sets everything up first).

Pages depend on the signed-in role: everyone gets Sign in (and Demo, on the demo database or with
``R2C_PUBLIC_DEMO=1``); readers get Vote; researchers the Dashboard and Demo; admins Studies, Readers, Export, the
Dashboard and Demo. The sidebar shows who is signed in, the
device the models run on, and the research-use notice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run app/streamlit_app.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Before torch loads OpenMP: idle model threads sleep instead of spinning. With spinning threads, a busy 2-core
# machine made the demo ~15x slower (docs/APP.md, Performance).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st

from app import auth, components, services
from app.app_pages import admin, dashboard, demo, sign_in, vote


@dataclass(frozen=True)
class PageSpec:
    render: Callable[[], None]
    title: str
    url_path: str
    icon: str


SIGN_IN = PageSpec(sign_in.render, "Sign in", "sign-in", ":material/login:")
VOTE = PageSpec(vote.render, "Vote", "vote", ":material/how_to_vote:")
DASHBOARD = PageSpec(dashboard.render, "Dashboard", "dashboard", ":material/monitoring:")
STUDIES = PageSpec(admin.render_studies, "Studies", "studies", ":material/science:")
READERS = PageSpec(admin.render_readers, "Readers", "readers", ":material/group:")
EXPORT = PageSpec(admin.render_export, "Export", "export", ":material/download:")
DEMO = PageSpec(demo.render, "Demo", "demo", ":material/image:")

PAGES_BY_ROLE: dict[str | None, list[PageSpec]] = {
    None: [SIGN_IN, DEMO],
    # no demo page for readers: running the study's models on named images would unblind them
    "reader": [VOTE],
    "researcher": [DASHBOARD, DEMO],
    "admin": [STUDIES, READERS, EXPORT, DASHBOARD, DEMO],
}


def pages_for(role: str | None, public_demo: bool = True) -> list[PageSpec]:
    """The pages a role sees, the first being its start page. Unknown roles get the anonymous pages; without
    ``public_demo`` (``R2C_PUBLIC_DEMO=0``) visitors who are not signed in get the sign-in page only."""
    pages = PAGES_BY_ROLE.get(role, PAGES_BY_ROLE[None])
    if role not in PAGES_BY_ROLE or role is None:
        pages = [p for p in pages if public_demo or p is not DEMO]
    return pages


def _sidebar(user: auth.User | None) -> None:
    with st.sidebar:
        if user is not None:
            st.markdown(f"Signed in as **{auth.md_escape(user.name)}** ({user.role})")  # names are typed by admins
            if st.button("Sign out", key="sign_out", icon=":material/logout:"):
                auth.sign_out()
                st.rerun()
        st.caption(f"Models run on: **{services.device_label()}**")
        b = services.backend()
        if b.demo.is_demo:
            st.caption("Demo database (fixed demo codes)")
            if b.demo.renderer == "synthetic":
                st.caption(":orange[Demo study images are synthetic variations: no restoration weights are bundled.]")
        elif b.factory is None:
            st.caption(f":red[Study database unavailable: {b.error}]")
        components.research_notice()


def main() -> None:
    auth.revalidate(services.backend().factory)  # an account changed or an idle session ends here, before any page
    user = auth.current_user()
    st.set_page_config(page_title="r2c reader study", page_icon=":material/radiology:", layout="wide",
                       initial_sidebar_state="collapsed" if user and user.role == "reader" else "auto")
    services.backend()  # creates the demo database on first start (when allowed)
    services.configure_process()
    # the demo page for visitors who are not signed in: R2C_PUBLIC_DEMO when set, else only on the demo database
    specs = pages_for(user.role if user else None, services.settings().demo_page_public(services.backend().demo.is_demo))
    pages = [st.Page(p.render, title=p.title, url_path=p.url_path, icon=p.icon, default=(i == 0))
             for i, p in enumerate(specs)]
    nav = st.navigation(pages)
    _sidebar(user)
    nav.run()


if __name__ == "__main__":  # streamlit runs this file as __main__; importing it (tests) has no side effects
    main()
