"""Bulk work: batch inserts, updates, upserts and deletes through COPY and set-based SQL.

Owns the staging-table SQL, row checking for tuples and dicts, chunking and progress. It runs
through a session like every operation; it must not open connections of its own. Everything
public is re-exported by :mod:`orso_pg`.
"""
