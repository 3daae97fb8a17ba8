"""Settings: typed, from the environment, secrets generated into the data dir — and every
setting documented in the README (a test fails when one is not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, describe

ROOT = Path(__file__).resolve().parent.parent


def test_from_environment() -> None:
    s = Settings.from_env(
        {"YUNTIAO_PORT": "9000", "YUNTIAO_SEED_DEMO": "false", "YUNTIAO_DATA_DIR": "/srv/yt"}
    )
    assert s.port == 9000 and s.seed_demo is False and s.data_dir == Path("/srv/yt")
    assert s.database_url_resolved == "sqlite+aiosqlite:////srv/yt/yuntiao.sqlite3"
    with pytest.raises(ValueError):
        Settings.from_env({"YUNTIAO_SEED_DEMO": "maybe"})


def test_secrets_generated_once(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).with_generated_secrets()
    again = Settings(data_dir=tmp_path).with_generated_secrets()
    assert first.secret_key and first.secret_key == again.secret_key
    assert first.field_encryption_key == again.field_encryption_key
    given = Settings(data_dir=tmp_path, secret_key="from-env").with_generated_secrets()
    assert given.secret_key == "from-env"


def test_every_setting_is_documented_in_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name, _default, _help in describe() if f"`{name}`" not in readme]
    assert not missing, f"README lacks settings: {missing}"
