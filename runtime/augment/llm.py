"""Style transfer through any OpenAI-compatible `/chat/completions` endpoint (a local vLLM server, say),
cached on disk by request hash: each rewrite is paid once and a rerun gives the same output byte for byte.

Retries with exponential backoff and jitter come from tenacity (connection errors, timeouts, 429 and 5xx;
other HTTP errors are the caller's mistake and fail at once). Requests run on a thread pool of
`concurrency` workers; results are applied in input order, so completion order never shows.
HTTP is the standard library's urllib: one POST of JSON needs no client library.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Retryable(Exception):
    """A failure worth retrying (the server is busy, down or slow)."""


class RequestFailed(Exception):
    pass


@dataclass
class Client:
    endpoint: str
    model: str
    cache_dir: Path
    api_key: str | None = None
    timeout_s: float = 60.0
    retries: int = 5
    backoff_s: float = 1.0
    concurrency: int = 4
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "cache_hits": 0, "failed": 0})
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def body(self, instruction: str, text: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"model": self.model, "messages": [{"role": "system", "content": instruction},
                                                  {"role": "user", "content": text}], **params}

    def key(self, body: dict[str, Any]) -> str:
        url = self.endpoint.rstrip("/") + "/chat/completions"
        return hashlib.sha256(json.dumps({"url": url, "body": body}, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _cached(self, key: str) -> str | None:
        path = self.cache_dir / key[:2] / f"{key}.json"
        try:
            return str(json.loads(path.read_text(encoding="utf-8"))["content"])
        except (OSError, ValueError, KeyError):
            return None

    def _store(self, key: str, body: dict[str, Any], content: str) -> None:
        path = self.cache_dir / key[:2] / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"request": body, "content": content}, sort_keys=True, ensure_ascii=False),
                       encoding="utf-8")
        os.replace(tmp, path)

    def _post(self, body: dict[str, Any]) -> str:
        url = self.endpoint.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                data = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            if e.code == 429 or e.code >= 500:
                raise Retryable(f"HTTP {e.code}") from None
            raise RequestFailed(f"{url}: HTTP {e.code}: {e.read()[:200]!r}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise Retryable(str(e)) from None
        except ValueError as e:
            raise RequestFailed(f"{url}: the answer is not JSON ({e})") from None
        try:
            return str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise RequestFailed(f"{url}: no choices[0].message.content in the answer") from None

    def complete(self, body: dict[str, Any]) -> str:
        """One rewrite: from the cache, else the endpoint (retried), then cached."""
        from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

        key = self.key(body)
        hit = self._cached(key)
        if hit is not None:
            self._count("cache_hits")
            return hit
        call = retry(retry=retry_if_exception_type(Retryable), stop=stop_after_attempt(max(1, self.retries)),
                     wait=wait_exponential_jitter(multiplier=self.backoff_s, max=30 * self.backoff_s, jitter=self.backoff_s), reraise=True)(self._post)
        self._count("requests")
        content = call(body)
        self._store(key, body, content)
        return content

    def complete_all(self, bodies: Sequence[dict[str, Any]]) -> list[str | None]:
        """Every body's rewrite, in order; None where it failed after its retries (counted in stats)."""
        unique = {self.key(b): b for b in bodies}
        results: dict[str, str | None] = {}

        def one(item: tuple[str, dict[str, Any]]) -> tuple[str, str | None]:
            try:
                return item[0], self.complete(item[1])
            except (Retryable, RequestFailed) as e:
                with self._lock:
                    self.errors.append(str(e))
                return item[0], None

        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for k, v in pool.map(one, unique.items()):
                results[k] = v
        self.stats["failed"] += sum(1 for v in results.values() if v is None)
        return [results[self.key(b)] for b in bodies]
