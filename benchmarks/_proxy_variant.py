"""The proxy with one part switched off, for on/off comparisons in one benchmark run.

python benchmarks/_proxy_variant.py norecord --config FILE --port P
  norecord: no usage records and no metric updates (the access-log line is still written)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

variant = sys.argv[1]
if variant == "norecord":
    import router.recording as recording

    recording.Recorder.store_usage = lambda self, *args: None  # type: ignore[method-assign]
    recording.Recorder.count = lambda self, *args: None  # type: ignore[method-assign]
else:
    raise SystemExit(f"unknown variant {variant!r}")

from router.cli import main  # noqa: E402

sys.exit(main(sys.argv[2:]))
