"""The dashboard's pages (run by streamlit_app.py through st.navigation) and ui.py, the helpers they share."""
