"""docs/library.md: every Python example runs as written (on free ports, in a process of its own)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .nodeproc import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "library.md").read_text(encoding="utf-8"), re.S)


def test_the_guide_has_its_four_examples() -> None:
    assert len(EXAMPLES) == 4


@pytest.mark.parametrize("example", EXAMPLES, ids=["Client", "AsyncClient", "node-in-asyncio", "core"])
def test_library_example_runs(example: str, tmp_path: Path) -> None:
    # The usual ports (8470, 8471) may be taken on a shared machine: free ones instead.
    code = example.replace("8470", str(free_port())).replace("8471", str(free_port()))
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=90,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
