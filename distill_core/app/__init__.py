"""What the dashboard's pages read and ask for, as plain functions over the engine and the run store.

One module per noun: datasets (local data and uploads), catalog (model choices), estimate (time before Start),
views (a run as the live panel shows it), compare (comparison rows and per-example predictions), reports (CSV
and HTML exports, benchmark rows), playground (sample texts and interactive predictions). Nothing here imports
streamlit, so every function is testable without a browser; torch loads lazily inside the functions that need it.
"""
