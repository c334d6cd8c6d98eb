"""The sign-in page: an access code, checked against its salted hash; rate-limited and audited."""

from __future__ import annotations

import streamlit as st

from .. import components, services
from ..auth import client_key, set_user, sign_in
from ..demo_db import DEMO_ACCOUNTS


def render() -> None:
    st.title("Sign in")
    components.research_notice()
    st.write("Enter the access code you were given. Readers vote in the blinded study; researchers see the "
             "results; administrators manage studies and readers. The **Demo** page needs no code.")
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
        names = ", ".join(f"`{a}`" for a in DEMO_ACCOUNTS)
        st.info(f"This is the demo database: sign in with {names}. These codes work only here.")
