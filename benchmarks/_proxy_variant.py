"""The proxy with one part switchable, for on/off comparisons in one benchmark run.

python benchmarks/_proxy_variant.py switchable --config FILE --port P
  switchable: usage records and metric updates on; SIGUSR2 switches them off, SIGUSR1 on again.
              Comparing one process with itself keeps differences between processes (memory
              layout, hash seeds, what each has served before) out of a small difference.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import router.record.recorder as recording  # noqa: E402

variant = sys.argv[1]
if variant == "switchable":
    store_usage, count = recording.Recorder.store_usage, recording.Recorder.count
    recording_on = [True]

    def switched(method):  # type: ignore[no-untyped-def]
        def run(self, *args):  # type: ignore[no-untyped-def]
            if recording_on[0]:
                method(self, *args)
        return run

    recording.Recorder.store_usage = switched(store_usage)  # type: ignore[method-assign]
    recording.Recorder.count = switched(count)  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR1, lambda *_: recording_on.__setitem__(0, True))
    signal.signal(signal.SIGUSR2, lambda *_: recording_on.__setitem__(0, False))
else:
    raise SystemExit(f"unknown variant {variant!r}")

from router.cli import main  # noqa: E402

sys.exit(main(sys.argv[2:]))
