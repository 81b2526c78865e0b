"""Sessions: where and when statements run.

Owns the connection pool, transactions, the connection settings and the embedded server.
Later: the replica router and the pipeline. It decides which server and which connection a
statement gets; it must not build SQL for a model (the compiler does) nor know what an
operation means (the Orso methods do). Everything public is re-exported by :mod:`orso_pg`.
"""
