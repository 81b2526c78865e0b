"""Query values: filters, sorts, aggregates, pages and the query builder.

Pure descriptions of what to read, turned into ``psycopg.sql`` by the compiler. Nothing here
touches a connection: running a query is the session's job (``QueryBuilder.fetch(db)`` hands the
builder to ``db``). Everything public is re-exported by :mod:`orso_pg`.
"""
