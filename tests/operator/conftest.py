"""Fixtures for operator tests (fakes live in opfakes.py so tests can import them)."""

from __future__ import annotations

import pytest
from opfakes import World, make_world


@pytest.fixture
def world() -> World:
    return make_world()
