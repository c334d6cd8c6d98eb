"""User-facing error types: each carries one clear line that the CLI and the app can show as is."""


class R2CError(Exception):
    """An error caused by the user's input (file, checkpoint, manifest, option), not by a bug."""


class ImageLoadError(R2CError):
    """The input could not be read as a chest X-ray image."""


class CheckpointError(R2CError):
    """A checkpoint is missing, corrupt, or does not fit the model it is loaded into."""


class ManifestError(R2CError):
    """A manifest CSV is missing, empty, malformed, or names images that do not exist."""
