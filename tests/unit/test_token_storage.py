"""Reading SoftHSM2's configuration for its token directory, and naming a storage fault; no token."""

from __future__ import annotations

from pathlib import Path

import pytest

from issuer.signer import token_storage


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("directories.tokendir = /srv/tokens\n", "/srv/tokens", id="plain"),
        pytest.param(
            "  directories.tokendir=/srv/t  \nlog.level = ERROR\n", "/srv/t", id="no-spaces-trailing"
        ),
        pytest.param(
            "# directories.tokendir = /old\ndirectories.tokendir = /new\n", "/new", id="comment-skipped"
        ),
        pytest.param("objectstore.backend = file\n", "/var/lib/softhsm/tokens", id="default-when-unnamed"),
    ],
)
def test_token_directory_from_config(text: str, expected: str) -> None:
    assert token_storage.token_directory(text) == Path(expected)


def test_config_is_found_as_softhsm2_looks_for_it(tmp_path: Path) -> None:
    user = tmp_path / ".config/softhsm2/softhsm2.conf"
    assert token_storage.softhsm2_config({"SOFTHSM2_CONF": "/x.conf", "HOME": str(tmp_path)}) == Path(
        "/x.conf"
    )
    assert token_storage.softhsm2_config({"HOME": str(tmp_path)}) == Path("/etc/softhsm/softhsm2.conf")
    user.parent.mkdir(parents=True)
    user.write_text("directories.tokendir = /u\n")
    assert token_storage.softhsm2_config({"HOME": str(tmp_path)}) == user


@pytest.fixture
def softhsm2_module(tmp_path: Path) -> str:
    module = tmp_path / "libsofthsm2.so"
    module.write_bytes(b"")
    return str(module)


def test_missing_and_present_token_directory(tmp_path: Path, softhsm2_module: str) -> None:
    tokens = tmp_path / "tokens"
    config = tmp_path / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {tokens}\n")
    environ = {"SOFTHSM2_CONF": str(config)}
    problem = token_storage.storage_problem(softhsm2_module, environ)
    assert problem is not None and str(tokens) in problem and "missing" in problem and str(config) in problem
    tokens.mkdir()
    assert token_storage.storage_problem(softhsm2_module, environ) is None
    tokens.rmdir()
    tokens.write_text("not a directory")
    assert "missing" in (token_storage.storage_problem(softhsm2_module, environ) or "")


def test_unreadable_config_is_named(tmp_path: Path, softhsm2_module: str) -> None:
    missing = tmp_path / "nowhere.conf"
    problem = token_storage.storage_problem(softhsm2_module, {"SOFTHSM2_CONF": str(missing)})
    assert problem is not None and str(missing) in problem


def test_other_modules_and_absent_modules_keep_their_generic_reason(tmp_path: Path) -> None:
    environ = {"SOFTHSM2_CONF": str(tmp_path / "nowhere.conf")}
    other = tmp_path / "libsgx_pkcs11.so"
    other.write_bytes(b"")
    assert token_storage.storage_problem(str(other), environ) is None
    assert token_storage.storage_problem(str(tmp_path / "libsofthsm2.so"), environ) is None
    assert token_storage.is_softhsm2("/usr/lib/softhsm/libsofthsm2.so.2")
