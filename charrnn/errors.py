"""Domain errors. Library code raises these; only the CLI turns them into messages and exit codes."""

from __future__ import annotations


class CharRNNError(Exception):
    """Base class: a failure the user can act on. `exit_code` follows the CLI contract."""

    exit_code: int = 1


class InputError(CharRNNError):
    """Bad input data: a corpus, a prompt or a file that cannot be used as given."""

    exit_code = 3


class CorpusError(InputError):
    """A corpus that is missing, empty, binary, badly encoded or too short."""


class CheckpointError(InputError):
    """A file that is not a charrnn checkpoint, is corrupted, or comes from an unknown format."""


class ConfigError(CharRNNError):
    """Options that are each valid but do not fit together (or do not fit the data)."""

    exit_code = 2


class WriteError(CharRNNError):
    """A file the user asked for (a page, an image, stdin's temporary copy) cannot be written: a full
    disk, a file-size limit, no permission. A runtime failure, so exit 1, like a full stdout."""


class TrainingError(CharRNNError):
    """Training cannot go on: checkpoints cannot be written, or the loss keeps diverging."""


class Interrupted(CharRNNError):
    """Training stopped on Ctrl-C (exit 130) or SIGTERM (exit 143) after saving its last checkpoint."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ServeError(CharRNNError):
    """The server cannot run: its address cannot be bound (taken, not local, not resolvable)."""
