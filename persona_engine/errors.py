"""The one exception type a user of Persona Engine ever needs to read.

Every problem with the user's own input (a file, a codebook, a study folder,
a setting) is raised as :class:`DataError` with a message a social scientist
can act on: which file, which row and column, what was found and what was
expected. The app and the CLI show ``str(error)`` and never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A problem with the user's input, described so that they can fix it.

    Parameters
    ----------
    message:
        What is wrong, in plain words.
    file:
        The file (or uploaded file name) the problem is in.
    row:
        The row as a spreadsheet shows it: the header is row 1, the first
        respondent row is row 2.
    column:
        The column name (or question id) the problem is in.
    expected:
        What would have been accepted.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.row = row
        self.column = column
        self.expected = expected
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        text = self.message
        if where:
            text = f"{', '.join(where)}: {text}"
        if self.expected:
            text = f"{text} (expected {self.expected})"
        return text


class DataWarning(UserWarning):
    """Something in the user's input was read in a way they may not expect (a column dropped, say).

    Issued with :func:`warnings.warn`; the CLI prints each as one line
    (``persona-engine: warning: ...``).
    """
