"""Errors raised by the data package; each message names the file and the fix."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset, or one of its files, is not in any searched folder."""


class CorruptFileError(ValueError):
    """A data file is truncated, malformed or not in the expected format."""


class ChecksumError(CorruptFileError):
    """A data file does not match its published checksum."""


class DownloadError(RuntimeError):
    """The official files could not be fetched (e.g. no network)."""
