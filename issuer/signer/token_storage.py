"""Where a SoftHSM2 module keeps its tokens, and whether that place is there: a clear reason for a
token that cannot be found because its storage is gone (an unmounted volume, a wrong path).

Only SoftHSM2 is known here; for any other module every answer is ``None`` and the caller keeps its
generic reason. Nothing here talks to the module, so it also works when the module cannot initialise.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

#: SoftHSM2 2.6's own order: ``$SOFTHSM2_CONF``, then the user's file if it exists, then the system's.
_SYSTEM_CONFIG = Path("/etc/softhsm/softhsm2.conf")
_USER_CONFIG = Path(".config/softhsm2/softhsm2.conf")
#: SoftHSM2's compiled-in token directory, used when its configuration names none (Debian's build).
_DEFAULT_TOKENDIR = Path("/var/lib/softhsm/tokens")


def is_softhsm2(module: str) -> bool:
    """Is ``module`` SoftHSM2's library (``libsofthsm2.so`` and its versioned names)?"""
    return Path(module).name.startswith("libsofthsm2")


def softhsm2_config(environ: Mapping[str, str] = os.environ) -> Path:
    """The configuration file SoftHSM2 reads in a process with this environment."""
    if environ.get("SOFTHSM2_CONF"):
        return Path(environ["SOFTHSM2_CONF"])
    home = environ.get("HOME")
    if home and (Path(home) / _USER_CONFIG).is_file():
        return Path(home) / _USER_CONFIG
    return _SYSTEM_CONFIG


def token_directory(config_text: str) -> Path:
    """The ``directories.tokendir`` a SoftHSM2 configuration names (its default when it names none)."""
    for line in config_text.splitlines():
        name, equals, value = line.strip().partition("=")
        if equals and not name.startswith("#") and name.strip() == "directories.tokendir":
            return Path(value.strip())
    return _DEFAULT_TOKENDIR


def storage_problem(module: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why a SoftHSM2 module cannot reach its token storage (a sentence naming the path), or ``None``
    when the storage looks usable or ``module`` is not SoftHSM2."""
    if not is_softhsm2(module) or not Path(module).is_file():
        return None  # another module, or no module at all: that is the problem to report
    config = softhsm2_config(environ)
    try:
        text = config.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return f"the SoftHSM2 configuration {config} cannot be read ({err.strerror or type(err).__name__})"
    directory = token_directory(text)
    named = f"the SoftHSM2 token directory {directory} (directories.tokendir in {config})"
    try:
        is_directory = stat.S_ISDIR(directory.stat().st_mode)
    except FileNotFoundError:
        is_directory = False
    except OSError as err:  # a parent directory we may not search
        return f"{named} is unreadable ({err.strerror or type(err).__name__})"
    if not is_directory:
        return f"{named} is missing"
    if not os.access(directory, os.R_OK | os.X_OK):
        return f"{named} is unreadable"
    return None
