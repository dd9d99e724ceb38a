"""Reading venue files from disk (the pure ``positioning.venue`` parses text; this opens the file)."""

from __future__ import annotations

from pathlib import Path

from positioning.errors import VenueError
from positioning.venue import Venue, parse_venue


def load_venue(path: str | Path) -> tuple[Venue, str]:
    """The parsed venue and its text. Raises ``VenueError`` naming the file for a missing, unreadable
    or invalid file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VenueError(str(p), "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VenueError(str(p), "", f"cannot read venue file: {exc}") from None
    return parse_venue(text, str(p)), text
