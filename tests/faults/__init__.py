"""The fault suite: ``make faults`` (``python -m tests.faults``).

Runs Parley's processes separately on real services, drives load with clients
that follow the documented protocol, injects one fault per scenario, and prints
what was sent, acked, stored, shown and lost. See ``docs/reliability.md``.
"""
