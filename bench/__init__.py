"""``make bench``: orso_pg against raw psycopg 3 and SQLAlchemy 2 on one PostgreSQL, in one run.

Owns the benchmark harness, its workloads, the memory probe and the reports (markdown, JSON and a
chart under ``bench/results/``). It measures and reports; it must not change orso_pg, and it is
not part of the test suite (``make test`` only lints it).
"""
