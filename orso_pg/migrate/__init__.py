"""Migrations: table DDL, live-schema introspection, the planner, applying and history.

Owns the comparison of models with the live catalog and the steps that bring one to the other,
applied in one transaction under an advisory lock. It must not be imported by the query or batch
layers, except for the table DDL they share (``_ddl``). Everything public is re-exported by
:mod:`orso_pg`.
"""
