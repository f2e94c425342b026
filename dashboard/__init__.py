"""Streamlit dashboard for the planner: `streamlit run dashboard/app.py`.

`dashboard.compute` and `dashboard.uploads` are plain Python on top of the planner API (no
streamlit import), so tests and the benchmark use them directly; `dashboard/app.py` is the page.
"""
