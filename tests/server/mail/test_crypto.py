"""Secrets at rest: Fernet keys newest first, the default key file, clear refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from wiremesh.server.config import Settings
from wiremesh.server.crypto import (
    SecretBox,
    SecretKeyInvalid,
    SecretKeyMismatch,
    configured_keys,
    generate_key,
    parse_key_file,
    secret_box,
    write_key_file,
)


def test_encrypts_to_something_else_and_back() -> None:
    box = SecretBox([generate_key()])
    token = box.encrypt("p@ss wörd")
    assert "p@ss" not in token
    assert token != box.encrypt("p@ss wörd")  # a fresh IV every time
    assert box.decrypt(token) == "p@ss wörd"


def test_wrong_key_is_a_clear_mismatch_never_garbage() -> None:
    token = SecretBox([generate_key()]).encrypt("secret")
    with pytest.raises(SecretKeyMismatch) as caught:
        SecretBox([generate_key()]).decrypt(token)
    assert caught.value.code == "secret_key_mismatch"
    assert caught.value.status == 500


def test_a_tampered_token_is_a_mismatch() -> None:
    box = SecretBox([generate_key()])
    token = box.encrypt("secret")
    with pytest.raises(SecretKeyMismatch):
        box.decrypt(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))


def test_newest_key_encrypts_and_older_keys_still_decrypt() -> None:
    old, new = generate_key(), generate_key()
    under_old = SecretBox([old]).encrypt("secret")
    both = SecretBox([new, old])
    assert both.decrypt(under_old) == "secret"
    assert not both.newest_key_decrypts(under_old)
    rotated = both.rotate(under_old)
    assert both.newest_key_decrypts(rotated)
    assert SecretBox([new]).decrypt(rotated) == "secret"
    with pytest.raises(SecretKeyMismatch):
        SecretBox([old]).decrypt(both.encrypt("x"))


def test_malformed_key_is_refused_with_its_position() -> None:
    with pytest.raises(SecretKeyInvalid) as caught:
        SecretBox([generate_key(), "not-a-key"])
    assert caught.value.code == "secret_key_invalid"
    assert "#2" in caught.value.message


def test_no_key_at_all_is_a_mismatch() -> None:
    with pytest.raises(SecretKeyMismatch):
        SecretBox([])


def test_default_key_file_is_made_on_first_encryption_owner_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_keys=[])
    path = tmp_path / "secret.key"
    with pytest.raises(SecretKeyMismatch):
        secret_box(settings)  # decrypting never invents a key
    assert not path.exists()
    token = secret_box(settings, for_encrypting=True).encrypt("secret")
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_box(settings).decrypt(token) == "secret"
    # a second "first use" reuses the file instead of replacing the key
    assert secret_box(settings, for_encrypting=True).decrypt(token) == "secret"
    assert len(configured_keys(settings)) == 1


def test_keys_from_settings_win_over_the_key_file(tmp_path: Path) -> None:
    key = generate_key()
    settings = Settings(data_dir=tmp_path, secret_keys=[key])
    secret_box(settings, for_encrypting=True).encrypt("x")
    assert not (tmp_path / "secret.key").exists()
    assert configured_keys(settings) == [key]


def test_explicit_key_file_must_exist(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key_file=tmp_path / "missing.key")
    with pytest.raises(SecretKeyMismatch) as caught:
        secret_box(settings, for_encrypting=True)
    assert "missing.key" in caught.value.message


def test_key_file_lists_keys_newest_first_with_comments(tmp_path: Path) -> None:
    new, old = generate_key(), generate_key()
    path = tmp_path / "keys"
    write_key_file(path, [new, old])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert parse_key_file(path.read_text()) == [new, old]
    assert parse_key_file("# c\n\n  k1  \n#k2\nk3\n") == ["k1", "k3"]
    settings = Settings(data_dir=tmp_path, secret_key_file=path)
    assert secret_box(settings).decrypt(SecretBox([old]).encrypt("s")) == "s"
