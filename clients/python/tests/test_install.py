"""`pip install ./clients/python` in a fresh virtualenv installs no Django, and
`import ltpdash_client` works there (issue #14, acceptance 1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.mode_independent

CLIENT = Path(__file__).resolve().parent.parent

REPORT = """
import importlib.metadata as m, importlib.util as u, json
import ltpdash_client
print(json.dumps({
    "installed": sorted(d.metadata["Name"].lower() for d in m.distributions()),
    "requires": m.requires("ltpdash-client"),
    "django": u.find_spec("django") is not None,
    "exports": sorted(ltpdash_client.__all__),
}))
"""


def test_a_fresh_virtualenv_gets_the_client_and_websockets_and_no_django(tmp_path):
    # A venv without pip of its own; this interpreter's pip installs into it (pip --python),
    # from the same indexes and wheel cache a user's pip would use.
    # Built from a copy: pip builds in the source tree, and a build/ left there goes stale.
    source = tmp_path / "ltpdash-client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info"))
    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(source)],
        check=True,
        capture_output=True,
    )

    report = json.loads(
        subprocess.run(
            [str(python), "-I", "-c", REPORT], check=True, capture_output=True, text=True
        ).stdout
    )

    assert report["installed"] == ["ltpdash-client", "websockets"]
    assert not report["django"]
    assert [r for r in report["requires"] if "extra ==" not in r] == ["websockets>=13"]
    assert {"Gate", "LtpClient", "Rejected"} <= set(report["exports"])
