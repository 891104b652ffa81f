"""The proxy with one part switched off, for on/off comparisons in one benchmark run.

python benchmarks/_proxy_variant.py norecord --config FILE --port P
  norecord: no usage records and no metrics (Recorder.finish does nothing)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

variant = sys.argv[1]
if variant == "norecord":
    import router.recording as recording

    recording.Recorder.finish = lambda self, rec: None  # type: ignore[method-assign]
else:
    raise SystemExit(f"unknown variant {variant!r}")

from router.cli import main  # noqa: E402

sys.exit(main(sys.argv[2:]))
