"""``APITeacher``: paper-faithful warm-start explanations from the Anthropic or an OpenAI-compatible API.

Requests go out over ``httpx`` from a small thread pool, with exponential backoff on 429, 5xx
and connection errors. Every answer is appended to an on-disk JSON-lines cache as it arrives, so
a re-run with the same inputs sends no request and a failure loses nothing already paid for. The
API key comes only from the ``api_key`` argument: the library reads no environment variables.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from tqdm.auto import tqdm

from nla_lens.data.teachers.base import DEFAULT_TEACHER_PROMPT, check_records, format_prompt
from nla_lens.data.teachers.cache import AnswerCache, cache_key
from nla_lens.errors import InputError, TeacherError

PROVIDERS = ("anthropic", "openai")
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4o-mini"}
"""Used when ``model`` is not given; pass ``model=`` to pick another."""
DEFAULT_BASE_URLS = {"anthropic": "https://api.anthropic.com", "openai": "https://api.openai.com/v1"}
ANTHROPIC_VERSION = "2023-06-01"
_MAX_RETRY_AFTER = 60.0


def default_teacher_cache_dir() -> Path:
    """``~/.cache/nla_lens/teacher``."""
    from nla_lens.subjects.embedded import default_cache_dir

    return default_cache_dir() / "teacher"


class _Failed(Exception):
    """One request failed for good (``detail`` names the status and body)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class _Skipped(Exception):
    """A request never sent because an earlier one failed for good."""


class APITeacher:
    """Explanations from a hosted model: Anthropic Messages or OpenAI-compatible chat completions.

    Example::

        teacher = APITeacher("anthropic", api_key=os.environ["ANTHROPIC_API_KEY"],
                             fallback=ContextTeacher())
        explanations = label_dataset(dataset, teacher, split="av_sft")

    After a request fails for good (retries spent, or a 4xx such as a bad key), no new request
    is sent: without ``fallback`` a ``TeacherError`` names the status and body; with one, the
    failed and unsent rows are explained by the fallback and a warning says how many. Either way
    the answers received so far stay cached, and a re-run asks only for the missing ones.

    Args:
        provider: ``"anthropic"`` or ``"openai"`` (any OpenAI-compatible server via ``base_url``).
        model: Model name (default ``DEFAULT_MODELS[provider]``).
        api_key: The key, e.g. ``os.environ["ANTHROPIC_API_KEY"]``. Required.
        base_url: API root (default ``https://api.anthropic.com`` or ``https://api.openai.com/v1``).
        max_concurrency: Requests in flight at once.
        max_retries: Retries per request after the first attempt (429, 5xx, connection errors).
        timeout: Seconds per HTTP request.
        cache_dir: Folder of the answer cache (default ``~/.cache/nla_lens/teacher``).
        fallback: Teacher for rows whose request failed, e.g. ``ContextTeacher()``.
        prompt: Format string with ``{prefix}`` and ``{token}``.
        max_tokens: Reply cap in tokens.
        retry_backoff: First backoff in seconds; doubles on each retry (a ``Retry-After``
            header, capped at 60 s, takes precedence).
        progress: Show a ``tqdm`` progress bar.

    Raises:
        TeacherError: At construction when no ``api_key`` is given.
    """

    def __init__(
        self,
        provider: str = "anthropic",
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_concurrency: int = 4,
        max_retries: int = 3,
        timeout: float = 60,
        cache_dir: str | Path | None = None,
        fallback: Callable[[pd.DataFrame], list[str]] | None = None,
        prompt: str = DEFAULT_TEACHER_PROMPT,
        max_tokens: int = 300,
        retry_backoff: float = 1.0,
        progress: bool = True,
    ):
        if provider not in PROVIDERS:
            raise InputError(f"provider must be one of {PROVIDERS}, got {provider!r}.")
        if not isinstance(api_key, str) or not api_key.strip():
            variable = "ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY"
            raise TeacherError(
                f"APITeacher({provider!r}) needs an API key: pass api_key=..., e.g. "
                f"api_key=os.environ[{variable!r}] (nla_lens never reads environment variables "
                "itself; a local server without authentication accepts any string). For an "
                "offline teacher use ContextTeacher()."
            )
        for name, value, low in (
            ("max_concurrency", max_concurrency, 1),
            ("max_retries", max_retries, 0),
            ("max_tokens", max_tokens, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise InputError(f"{name} must be an int >= {low}, got {value!r}.")
        if fallback is not None and not callable(fallback):
            raise InputError(f"fallback must be a teacher (a callable), got {type(fallback).__name__}.")
        format_prompt(prompt, "", "")  # fail now on a malformed prompt
        self.provider, self.model = provider, model or DEFAULT_MODELS[provider]
        self._api_key = api_key
        self.base_url = (base_url or DEFAULT_BASE_URLS[provider]).rstrip("/")
        self.max_concurrency, self.max_retries, self.timeout = max_concurrency, max_retries, timeout
        self.cache = AnswerCache(cache_dir if cache_dir is not None else default_teacher_cache_dir())
        self.fallback, self.prompt, self.max_tokens = fallback, prompt, max_tokens
        self.retry_backoff, self.progress = retry_backoff, progress

    def __repr__(self) -> str:  # never shows the key
        return (
            f"APITeacher(provider={self.provider!r}, model={self.model!r}, base_url={self.base_url!r}, "
            f"cache={str(self.cache.path)!r})"
        )

    # -- one request ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.base_url}/v1/messages" if self.provider == "anthropic" else f"{self.base_url}/chat/completions"

    def _headers(self) -> dict[str, str]:
        if self.provider == "anthropic":
            return {
                "x-api-key": self._api_key,
                "anthropic-version": ANTHROPIC_VERSION,
                "content-type": "application/json",
            }
        return {"Authorization": f"Bearer {self._api_key}", "content-type": "application/json"}

    def _body(self, text: str) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens, "messages": [{"role": "user", "content": text}]}

    def _parse(self, response: httpx.Response) -> str:
        try:
            data = response.json()
            if self.provider == "anthropic":
                blocks = [b["text"] for b in data["content"] if b.get("type", "text") == "text"]
                text = "".join(blocks) if blocks else data["content"][0]["text"]
            else:
                text = data["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise TypeError(f"reply text is {type(text).__name__}")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise _Failed(
                f"HTTP {response.status_code} with an unreadable reply ({exc!r}): {response.text[:300]!r}"
            ) from exc
        return text.strip()

    def _request(self, client: httpx.Client, text: str, stop: threading.Event) -> str:
        """Send one prompt with retries; raise ``_Failed`` or ``_Skipped``."""
        detail = ""
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                raise _Skipped()
            delay = self.retry_backoff * 2**attempt
            try:
                response = client.post(self.url, headers=self._headers(), json=self._body(text))
            except httpx.TransportError as exc:
                detail = f"connection error {type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return self._parse(response)
                detail = f"HTTP {response.status_code}: {response.text[:300]!r}"
                if response.status_code != 429 and response.status_code < 500:
                    raise _Failed(detail)  # bad key, bad model, bad request: retrying cannot help
                try:
                    delay = min(float(response.headers.get("retry-after", "")), _MAX_RETRY_AFTER)
                except ValueError:
                    pass
            if attempt < self.max_retries:
                stop.wait(delay)  # returns at once when another request failed for good
        raise _Failed(f"{detail} (after {self.max_retries + 1} attempts)")

    # -- many records -------------------------------------------------------------------------
    def __call__(self, records: pd.DataFrame) -> list[str]:
        """One explanation per row of ``records`` (columns ``prefix``, ``token``), in row order.

        Raises:
            TeacherError: When a request fails for good and no ``fallback`` was given.
        """
        records = check_records(records)
        texts = [format_prompt(self.prompt, p, t) for p, t in zip(records["prefix"], records["token"])]
        keys = [cache_key(self.provider, self.model, text) for text in texts]
        answers = self.cache.load()
        pending = {key: text for key, text in zip(keys, texts) if key not in answers}
        failures: dict[str, str] = {}
        if pending:
            failures = self._fetch(pending, answers, cached=len(set(keys)) - len(pending))
        failed_rows = [i for i, key in enumerate(keys) if key not in answers]
        if failed_rows:
            first = next(iter(failures.values()), "not sent")
            received = sum(key in answers for key in pending)
            if self.fallback is None:
                raise TeacherError(
                    f"{self.provider} teacher at {self.url}: {len(failed_rows)} of {len(records)} rows got no "
                    f"answer; first failure: {first}. The {received} answers received in this run are "
                    f"cached in {self.cache.path}; re-run to resume, or pass fallback=ContextTeacher()."
                )
            warnings.warn(
                f"{self.provider} teacher: {len(failed_rows)} of {len(records)} rows got no answer "
                f"({first}); explained them with the fallback {type(self.fallback).__name__}.",
                stacklevel=2,
            )
            replacements = list(self.fallback(records.iloc[failed_rows]))
            if len(replacements) != len(failed_rows):
                raise TeacherError(
                    f"The fallback teacher returned {len(replacements)} explanations for {len(failed_rows)} rows."
                )
            by_row = dict(zip(failed_rows, replacements))
            return [by_row[i] if i in by_row else answers[key] for i, key in enumerate(keys)]
        return [answers[key] for key in keys]

    def _fetch(self, pending: dict[str, str], answers: dict[str, str], cached: int) -> dict[str, str]:
        """Request every pending prompt, caching each answer; return ``key -> failure`` details."""
        failures: dict[str, str] = {}
        stop = threading.Event()
        bar = tqdm(total=len(pending), desc=f"{self.provider} teacher", unit="req", disable=not self.progress)
        if cached:
            bar.set_postfix(cached=cached)
        limits = httpx.Limits(max_connections=self.max_concurrency)
        with (
            httpx.Client(timeout=self.timeout, limits=limits) as client,
            ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="nla-teacher") as pool,
        ):
            try:
                futures = {pool.submit(self._request, client, text, stop): key for key, text in pending.items()}
                for future in as_completed(futures):
                    key = futures[future]
                    try:
                        text = future.result()
                    except _Skipped:
                        continue
                    except _Failed as exc:
                        failures[key] = exc.detail
                        stop.set()  # the endpoint is unusable now: send nothing more
                        continue
                    self.cache.put(key, text, provider=self.provider, model=self.model)
                    answers[key] = text
                    bar.update(1)
            finally:
                stop.set()  # on Ctrl-C too: queued and backing-off requests return at once
                bar.close()
        return failures
