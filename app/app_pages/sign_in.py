"""The sign-in page: an access code, checked against its salted hash; rate-limited and audited."""

from __future__ import annotations

import streamlit as st

from .. import components, services
from ..auth import ENDED_KEY, client_key, set_user, sign_in
from ..demo_db import DEMO_ACCOUNTS


def render() -> None:
    st.title("Sign in")
    components.research_notice()
    st.write("Enter the access code you were given. Readers vote in the blinded study; researchers see the "
             "results; administrators manage studies and readers. The **Demo** page needs no code.")
    ended = st.session_state.pop(ENDED_KEY, None)
    if ended:
        st.warning(ended)
    backend = services.backend()
    if backend.factory is None:
        st.error(f"The study database is not available: {backend.error}")
        return
    with st.form("sign_in", clear_on_submit=True, enter_to_submit=True):
        code = st.text_input("Access code", type="password", key="access_code", autocomplete="off")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        result = sign_in(backend.factory, code, client_key())
        if result.user is not None:
            set_user(result.user)
            st.rerun()
        st.error(result.message)
    if backend.demo.is_demo:
        demo_guide()


#: The guided path for demo visitors: (code, what it shows, what to look for), in the order to try them.
DEMO_PATH = (
    ("demo-researcher", "the researcher's dashboard",
     "Open **Simulated study** (already voted by five simulated readers): the selection ratios per reader and "
     "overall (the paper's Tables III and IV) with 95% intervals, the charts, the tests against the original, "
     "and the full analysis (position bias, ranking, agreement). The demo study next to it starts empty."),
    ("demo-reader", "the blinded voting page",
     "Vote in the demo study: one practice query, then six real X-rays, each shown as the original and restored "
     "versions in a random order, none of them named. Keys 1-5 vote, U undoes. Then sign out."),
    ("demo-admin", "studies, readers and exports",
     "See the studies, how readers get their access codes, and export the votes (building a real study is "
     "refused here: the demo codes are public; a study deployment has its own database). Sign in as "
     "`demo-researcher` again: your votes are now in the demo study's dashboard."),
)


def demo_guide() -> None:
    """The three demo codes, in order, with what to look for (shown only on the demo database)."""
    with st.container(border=True):
        st.markdown("#### Demo: try these three codes in this order")
        for i, (code, what, look) in enumerate(DEMO_PATH, start=1):
            st.markdown(f"**{i}. `{code}`**: {what}. {look}")
        st.caption(f"These codes ({', '.join(DEMO_ACCOUNTS)}) work only in this auto-created demo database; a real "
                   "study's database never accepts them. The Demo page (restore and segment your own X-ray) needs no code.")
