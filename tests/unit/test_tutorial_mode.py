"""Mode.setup's thread choice: fewer torch threads on a busy machine, and it says so."""

from __future__ import annotations

import os

import pytest
import torch

from nla_lens.tutorials import Mode
from nla_lens.tutorials.mode import choose_threads


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_an_idle_machine_keeps_every_core(two_cores, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    assert choose_threads() == (2, "")


def test_a_busy_machine_gets_one_thread_and_a_note(two_cores, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (4.6, 4.0, 3.0))
    threads, note = choose_threads()
    assert threads == 1 and "busy (load 4.6)" in note and "Mode(threads=N)" in note


def test_what_the_user_asks_wins(two_cores, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (4.6, 4.0, 3.0))
    assert choose_threads(2)[0] == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads() == (2, "torch threads: 2 (OMP_NUM_THREADS).")


def test_setup_applies_the_choice_and_shows_it(two_cores, monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    try:
        mode = Mode("smoke").setup()
        assert torch.get_num_threads() == 1
        assert "busy (load 5.0)" in mode._repr_html_()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("size", ["full", "lab", "smoke"])
def test_pick_answers_each_size(size):
    mode = Mode(size)
    assert mode.pick(full=1, lab=2, smoke=3) == {"full": 1, "lab": 2, "smoke": 3}[size]
    assert mode.smoke == (size == "smoke")


def test_lab_mode_is_full_mode_where_no_lab_size_is_named():
    assert Mode("lab").pick(full=[1, 2], smoke=[1]) == [1, 2]
    assert Mode("lab").pick(full=1, smoke=0, lab=None) is None  # None is a lab size like any other


def test_an_unknown_mode_names_the_sizes_and_the_variable():
    with pytest.raises(ValueError, match=r"unknown notebook mode 'quick'.*smoke, lab, full.*NLA_LENS_MODE"):
        Mode("quick")
    assert Mode(" Lab ").size == "lab"
