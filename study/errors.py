"""User-facing errors of the study engine: each carries one clear line that the CLI and the app show as is.

``study`` must not import ``r2c_core``, so these do not derive from ``r2c_core.errors.R2CError``; callers that
handle both catch :class:`StudyError` too.
"""

from __future__ import annotations


class StudyError(Exception):
    """An error caused by input or state (unknown study, bad manifest, refused vote), not by a bug."""


class SchemaError(StudyError):
    """The database has no study schema, or one at a revision this code does not know."""


class DatabaseError(StudyError):
    """The database cannot be reached or used (refused connection, bad URL, unreadable file)."""


class DatabaseLockedError(DatabaseError):
    """SQLite stayed locked by another process for longer than the busy timeout."""


class UnknownStudyError(StudyError):
    """No study with that name or id."""


class UnknownReaderError(StudyError):
    """No reader with that name or id."""


class DuplicateReaderError(StudyError):
    """A reader with that name already exists."""


class ManifestError(StudyError):
    """The manifest CSV is missing, empty, malformed, or names images that do not exist."""


class RenditionError(StudyError):
    """A renderer broke the rendition contract (missing method, wrong size, not 8-bit gray)."""


class VoteRefused(StudyError):
    """A vote (or an undo) that the service will not record: wrong reader, wrong case, closed study, bad value."""


class NotFoundError(StudyError):
    """A query or image token that does not exist for this reader."""
