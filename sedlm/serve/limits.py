"""The server's limits: what one request may ask for and how much work the process takes on at once.
Every field is also a ``sedlm serve`` flag (``max_n`` -> ``--max-n``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sedlm.errors import SedlmError


def _limit(default: int, help: str) -> int:
    return field(default=default, metadata={"help": help})


@dataclass
class Limits:
    max_body_bytes: int = _limit(64 * 1024, "request body size in bytes, by Content-Length and by the bytes read (413)")
    max_n: int = _limit(16, "samples per request (422)")
    max_steps: int = _limit(1000, "denoising steps per request (422)")
    max_seq_len: int = _limit(
        0, "canvas length in tokens a request may ask for; 0: the checkpoint's data.seq_len (422)"
    )
    max_text_chars: int = _limit(4000, "prompt, src or template length in characters (413)")
    max_concurrent: int = _limit(1, "model calls running at once; the others wait in the queue")
    max_queue: int = _limit(8, "requests running or waiting; one more is answered 503")
    stream_events: int = _limit(100, "step events per stream at most: every k-th step when there are more steps")
    max_seconds: int = _limit(0, "sampling time per request in seconds, checked after every step; 0: no limit (503)")

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            zero_ok = name in ("max_seq_len", "max_seconds")
            if value < (0 if zero_ok else 1):
                flag = "--" + name.replace("_", "-")
                raise SedlmError(f"{flag} must be {'>= 0' if zero_ok else 'positive'} (got {value})")

    def summary(self) -> dict[str, int]:
        return asdict(self)
