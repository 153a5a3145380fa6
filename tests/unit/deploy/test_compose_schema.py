"""The compose files follow the Compose specification (scripts/check_compose.py, run by `make lint`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
CHECK = ROOT / "scripts" / "check_compose.py"


def _check(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), *map(str, files)], capture_output=True, text=True, check=False
    )


def test_every_compose_file_of_the_repository_is_valid() -> None:
    checked = _check()
    assert checked.returncode == 0, checked.stderr
    assert "2 compose files valid" in checked.stdout


def test_a_misspelt_key_or_a_wrong_type_is_an_error_naming_its_place(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    gateway = next(name for name in document["services"] if name.startswith("gateway"))
    document["services"][gateway]["restrat"] = "always"
    document["services"][gateway]["ports"] = "8000:8000"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(document))
    checked = _check(broken)
    assert checked.returncode == 1
    assert f"services/{gateway}: 'restrat' does not match any of the regexes: '^x-'" in checked.stderr
    assert f"services/{gateway}/ports: " in checked.stderr
