"""How long the end of a long call takes: a 10-minute CallRecorder fed like the bridge feeds it
(20 ms caller frames, 20 ms agent frames), then what `CallBridge._finalize` does after the call:
recorder.finalize, then call_finalize (the WAV stored through Django's storage API, analytics
and status in the database). Run on a throwaway SQLite database:

    .venv/bin/python bench/end_of_call.py --minutes 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-end-"))
    os.environ.update(
        DJANGO_ENV="development",
        DATABASE_URL=f"sqlite:///{workdir}/end.sqlite3",
        RECORDING_STORAGE_PATH=str(workdir / "recordings"),
        DJANGO_SETTINGS_MODULE="bridge_project.settings",
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from audio.recorder import CallRecorder
    from calls.models import Call
    from calls.services import CallOutcome, RecordingFile, call_finalize

    call_command("migrate", verbosity=0)
    call = Call.objects.create(call_sid="CA" + "0" * 32, caller="+1", started_at=timezone.now())
    frame = bytes(range(96, 256))  # 160 bytes of mu-law
    recorder = CallRecorder(workdir / "call.wav")
    frames = int(args.minutes * 60 * 50)
    started = time.perf_counter()
    for n in range(frames):
        recorder.add_caller(frame, n * 20)
        recorder.add_agent(frame, n * 20 + 5)
    feeding_s = time.perf_counter() - started
    end_ms = frames * 20.0
    t0 = time.perf_counter()
    info = recorder.finalize(end_ms)
    t1 = time.perf_counter()
    call_finalize(
        call_id=str(call.pk),
        outcome=CallOutcome(
            end_reason="caller hung up",
            ended_at=timezone.now(),
            analytics={"turns": 10},
            recording=RecordingFile(
                path=Path(info.path),
                duration_s=info.duration_s,
                size_bytes=info.size_bytes,
                sample_rate=info.sample_rate,
                channels=info.channels,
            ),
            network={"frames_missing": 0, "frames_late": 0},
        ),
    )
    t2 = time.perf_counter()
    print(
        f"{args.minutes:g}-minute call ({info.size_bytes / 2**20:.1f} MiB WAV): recorder fed in "
        f"{feeding_s:.2f} s ({feeding_s / (args.minutes * 60) * 100:.3f}% of a core per call); "
        f"end of call {(t2 - t0) * 1000:.0f} ms = recorder.finalize {(t1 - t0) * 1000:.0f} ms "
        f"+ call_finalize (storage save + database) {(t2 - t1) * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
