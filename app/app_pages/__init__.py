"""The app's pages: each module has ``render()``, which ``app/streamlit_app.py`` hands to ``st.navigation``."""
