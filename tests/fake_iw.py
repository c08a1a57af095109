"""A stand-in `iw` for tests: a shell script replaying a capture directory of tests/data/iw/."""

from __future__ import annotations

from pathlib import Path

IW = Path(__file__).parent / "data" / "iw"


def fake_iw(tmp_path: Path, driver: str) -> Path:
    """stdout from NAME.txt (NAME = the arguments joined by '_'); NAME.err is the stderr of a
    failing iw (exit 161, as iw exits on -95); anything else fails like an unknown device."""
    script = tmp_path / "iw"
    capture = IW / driver
    script.write_text(f"""#!/bin/sh
name=$(echo "$*" | tr ' ' '_')
if [ -f "{capture}/$name.txt" ]; then cat "{capture}/$name.txt"; exit 0; fi
if [ -f "{capture}/$name.err" ]; then cat "{capture}/$name.err" >&2; exit 161; fi
echo "command failed: No such device (-19)" >&2; exit 237
""")
    script.chmod(0o755)
    return script
