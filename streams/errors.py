"""The streams package's exceptions."""

from __future__ import annotations


class StreamsError(Exception):
    """Root of every error this package raises."""


class InvalidEvent(StreamsError):
    """A topic value that is not a well-formed Parley event."""


class BrokerUnavailable(StreamsError):
    """The broker did not confirm a write in time; the caller may retry."""


class WorkerStopping(StreamsError):
    """The worker is stopping while a batch is unstored: acknowledge nothing of it."""


class DeadLetterFailed(StreamsError):
    """The dead-letter topic did not confirm a write; the caller may retry."""
