"""Statement listeners: which ones are told the server, and how they are called."""

from __future__ import annotations

from typing import Any

import pytest

from orso_pg._executor import ServerListener


def two(text: str, params: tuple[Any, ...]) -> None:
    del text, params


def three(text: str, params: tuple[Any, ...], server: str) -> None:
    del text, params, server


def keyword(text: str, params: tuple[Any, ...], *, server: str = "") -> None:
    del text, params, server


def anything(*args: Any, **kwargs: Any) -> None:
    del args, kwargs


@pytest.mark.parametrize(
    ("listener", "wanted"),
    [(two, False), (three, True), (keyword, True), (anything, False), (max, False)],
    ids=["two", "three", "keyword", "varargs", "uninspectable"],
)
def test_only_listeners_naming_server_are_told_it(listener: Any, wanted: bool):
    """A listener is given the server only when it has a parameter named ``server``."""
    assert ServerListener.wanted(listener) is wanted


def test_a_server_listener_passes_the_server_by_keyword():
    """The wrapper calls the listener with ``server=`` (empty when no server is known)."""
    seen: list[tuple[str, tuple[Any, ...], str]] = []
    wrapped = ServerListener(lambda text, params, server: seen.append((text, params, server)))
    wrapped("SELECT 1", (), "db@host:5432/x")
    wrapped("SELECT 2", (1,))
    assert seen == [("SELECT 1", (), "db@host:5432/x"), ("SELECT 2", (1,), "")]
