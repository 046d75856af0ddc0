"""deploy/tgmonitor.service: ``systemd-analyze verify`` prints nothing and ``security`` rates it OK or better.

Like the contract check, every ``Exec*=`` path to tgmonitor is replaced by the installed one (verify checks
that the binary exists). In CI systemd-analyze must be installed (.ci/run installs Debian's systemd): the
test fails there instead of skipping."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "tgmonitor.service"
TGM = str(Path(sys.executable).parent / "tgmonitor")


@pytest.fixture
def analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is not installed in CI (apt-get install systemd)")
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return exe


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    text = UNIT.read_text(encoding="utf-8")
    out = re.sub(r"^(Exec[A-Za-z]*=[-@:+!]*)[^ \n]*tgmonitor", lambda m: m.group(1) + TGM, text, flags=re.M)
    path = tmp_path / "tgmonitor.service"
    path.write_text(out, encoding="utf-8")
    return path


def test_unit_verifies_silently(analyze: str, unit: Path) -> None:
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def test_unit_security_exposure_is_ok(analyze: str, unit: Path) -> None:
    r = subprocess.run([analyze, "security", "--offline=yes", "--threshold=49", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert re.search(r"Overall exposure level for tgmonitor.service: \d+\.\d+ (OK|SAFE)", r.stdout), r.stdout[-500:]


def test_unit_has_what_the_service_relies_on() -> None:
    text = UNIT.read_text(encoding="utf-8")
    keys = dict(line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z]\w*=", line))
    assert keys["Type"] == "notify"
    assert keys["Restart"] == "on-failure"
    assert set(keys["RestartPreventExitStatus"].split()) == {"2", "78"}
    assert keys["ExecReload"].endswith("-HUP $MAINPID")
    assert int(keys["WatchdogSec"]) > 0
    assert int(keys["TimeoutStopSec"]) >= 10  # the service stops within 10 s
    assert keys["StateDirectory"] == "tgmonitor" and keys["User"] == "tgmonitor"
    assert keys["EnvironmentFile"].lstrip("-") == "/etc/tgmonitor/env"
    for k in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert keys[k] == "yes"
    assert keys["ProtectSystem"] == "strict"
    assert "#" not in "".join(keys.values())  # systemd takes no comments after a value
