"""Save-and-quit.

Three requests stop a run cleanly after the current optimizer step, with a full checkpoint:
``kill -USR1 <pid>``, ``touch RUN_DIR/STOP``, or one Ctrl-C (a second Ctrl-C aborts at once).
The callback asks the Trainer to save and stop (``control.should_save`` / ``should_training_stop``)
instead of rewriting its loop. In multi-process runs every rank takes part in one all-reduce (MAX) of its
local flag per step, so all ranks stop at the same step and collective saves (ZeRO) never hang.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from transformers import TrainerCallback


class StopRequest:
    """The local stop flag, set by a signal or the sentinel file."""

    # torchrun forwards the terminal's SIGINT to its workers, which already got it from the terminal: a
    # second SIGINT this soon after the first is that echo, not a second Ctrl-C (LOFT_SIGINT_DEBOUNCE_S).
    DEBOUNCE_S = float(os.environ.get("LOFT_SIGINT_DEBOUNCE_S", "0.5"))

    def __init__(self, sentinel: Path | None = None) -> None:
        self.sentinel = sentinel
        self.reason: str | None = None
        self.interrupts = 0
        self._first_interrupt = 0.0
        self._previous: dict[int, Any] = {}

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            print(f"\n[loft] {reason}: finishing this optimizer step, then saving a checkpoint and exiting "
                  "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    def _on_usr1(self, signum: int, frame: FrameType | None) -> None:
        self.request("SIGUSR1 received")

    def _on_int(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.interrupts and now - self._first_interrupt < self.DEBOUNCE_S:
            return
        self.interrupts += 1
        self._first_interrupt = self._first_interrupt or now
        if self.interrupts >= 2:
            print("\n[loft] second Ctrl-C: aborting without saving", file=sys.stderr, flush=True)
            self.restore()
            raise KeyboardInterrupt
        self.request("Ctrl-C received")

    def install(self) -> None:
        """Install handlers (main thread only; elsewhere the sentinel file still works)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in ((signal.SIGUSR1, self._on_usr1), (signal.SIGINT, self._on_int)):
            self._previous[sig] = signal.signal(sig, handler)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def local(self) -> bool:
        """This process wants to stop (checks the sentinel file too)."""
        if self.reason is None and self.sentinel is not None and self.sentinel.exists():
            self.request(f"{self.sentinel} found")
        return self.reason is not None


def agree(local: bool) -> bool:
    """True when any rank wants to stop: one all-reduce per call in multi-process runs."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    flag = torch.tensor([1 if local else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


class StopCallback(TrainerCallback):
    """Turns a stop request into save + stop at the end of the current optimizer step."""

    def __init__(self, request: StopRequest) -> None:
        self.request = request
        self.stopped_at: int | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if agree(self.request.local()) and self.stopped_at is None:
            if self.request.reason is None:
                self.request.reason = "another rank asked to stop"
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.stopped_at is not None:  # quitting: skip the end-of-epoch evaluation
            control.should_evaluate = False
        return control


def clear_sentinel(sentinel: Path) -> None:
    """A STOP file left from the previous stop must not stop the resumed run at its first step."""
    sentinel.unlink(missing_ok=True)
