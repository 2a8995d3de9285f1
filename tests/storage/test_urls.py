"""storage/urls.py: where the URL comes from, what is refused, and that a password never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from errors import StorageError
from storage.urls import DEFAULT_URL, describe, normalise, parse, redact, require_sqlite_file, resolve_url, scrub


def test_resolve_url_order_option_file_env_envfile_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SARSWEEP_STORAGE", raising=False)
    monkeypatch.delenv("SARSWEEP_STORAGE_FILE", raising=False)
    assert resolve_url() == DEFAULT_URL
    env_file = tmp_path / "env.url"
    env_file.write_text("postgresql://u@h/envfile\n")
    monkeypatch.setenv("SARSWEEP_STORAGE_FILE", str(env_file))
    assert resolve_url() == "postgresql://u@h/envfile"
    monkeypatch.setenv("SARSWEEP_STORAGE", "postgresql://u@h/env")
    assert resolve_url() == "postgresql://u@h/env"
    option_file = tmp_path / "opt.url"
    option_file.write_text("  sqlite:///x.db  ")
    assert resolve_url(None, str(option_file)) == "sqlite:///x.db"
    assert resolve_url("sqlite:///y.db", str(option_file)) == "sqlite:///y.db"


def test_unreadable_or_empty_url_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"^--storage-file: cannot read storage URL file .*missing"):
        resolve_url(None, str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(StorageError, match=r"storage URL file .*empty is empty$"):
        resolve_url(None, str(tmp_path / "empty"))


@pytest.mark.parametrize("url", ["postgresql://u:s3cret@h/db", "postgresql://u:s3cret@h:bad/db"])
def test_redact_hides_the_password_even_when_the_url_does_not_parse(url: str) -> None:
    assert "s3cret" not in redact(url) and "***" in redact(url)


def test_parse_takes_the_short_postgres_form_and_pins_psycopg2() -> None:
    assert parse("postgres://u@h/db").drivername == "postgresql+psycopg2"
    assert parse("postgresql://u@h/db").drivername == "postgresql+psycopg2"
    assert normalise("postgresql://u:pw@h/db") == "postgresql+psycopg2://u:pw@h/db"


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://u:pw@h/db", "unsupported storage URL mysql://u:***@h/db: use postgresql://... or sqlite:///..."),
    ("postgresql://u:pw@h", "storage URL postgresql://u:***@h names no database"),
    ("://nothing", "malformed storage URL ://nothing"),
])
def test_parse_refuses_with_one_redacted_line(url: str, message: str) -> None:
    with pytest.raises(StorageError) as caught:
        parse(url)
    assert str(caught.value).startswith(message) and "pw@" not in str(caught.value)


def test_require_sqlite_file_refuses_a_missing_file_but_not_memory_or_postgres(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"^no SQLite database at .*nope\.db: run `sarsweep init` first"):
        require_sqlite_file(f"sqlite:///{tmp_path / 'nope.db'}")
    (tmp_path / "yes.db").write_bytes(b"")
    require_sqlite_file(f"sqlite:///{tmp_path / 'yes.db'}")
    require_sqlite_file("sqlite://")
    require_sqlite_file("postgresql://u@h/db")


def test_describe_and_scrub() -> None:
    assert describe(parse("postgresql://u@db-host:6543/s")) == "host db-host, port 6543, database s"
    assert describe(parse("sqlite:///a.db")) == "SQLite file a.db"
    assert scrub("FATAL:  password\n  s3cret   failed", parse("postgresql://u:s3cret@h/db")) == \
        "FATAL: password *** failed"


def test_a_url_file_with_a_password_others_can_read_gets_a_warning(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    open_to_all = tmp_path / "url"
    open_to_all.write_text("postgresql://u:s3cret@h/db")
    open_to_all.chmod(0o644)
    assert resolve_url(None, str(open_to_all)) == "postgresql://u:s3cret@h/db"  # taken, with a warning
    assert f"--storage-file: {open_to_all} holds a password and is readable by others (mode 0644)" in caplog.text
    assert "s3cret" not in caplog.text
    caplog.clear()
    open_to_all.chmod(0o600)
    resolve_url(None, str(open_to_all))
    no_password = tmp_path / "plain"
    no_password.write_text("postgresql://u@h/db")
    no_password.chmod(0o644)
    resolve_url(None, str(no_password))
    assert caplog.text == ""
