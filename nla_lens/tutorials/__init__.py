"""Support for the ``tutorials/`` course and the ``notebooks/``: run sizes and exercise checks.

Two small pieces, both meant to be called from a notebook:

- :class:`Mode` holds the size the notebook runs at, full, lab or smoke (the notebook reads
  ``NLA_LENS_MODE`` itself and passes it in), and picks run sizes:
  ``mode.pick(full=200, lab=100, smoke=8)``.
- :mod:`nla_lens.tutorials.checks` holds the visible tests of the exercises: each ``check_*``
  function runs a student's function on fresh inputs, compares it with the library's own
  implementation, prints a tick on success and raises ``AssertionError`` with a hint otherwise.
"""

from nla_lens.tutorials.mode import Mode

__all__ = ["Mode"]
