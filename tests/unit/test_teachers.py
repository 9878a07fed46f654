"""Warm-start teachers without a model: ContextTeacher text, label_dataset, and APITeacher
against a fake Anthropic/OpenAI server on 127.0.0.1 (nothing reaches the internet)."""

from __future__ import annotations

import json
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
import torch

from nla_lens.data.dataset import ActivationDataset
from nla_lens.data.teachers import (
    DEFAULT_TEACHER_PROMPT,
    APITeacher,
    ContextTeacher,
    clean_explanation,
    label_dataset,
)
from nla_lens.data.teachers.cache import AnswerCache
from nla_lens.errors import InputError, NLALensError, TeacherError
from nla_lens.words import topic_words

PREFIX = "The knight, weary of the long crusade, pulled at his forelock some hours after a Saracen"
RECORDS = pd.DataFrame(
    {
        "prefix": [PREFIX, "Short text here", "A cat sat on the\nmat and then"],
        "token": [" Saracen", " here", " then"],
    }
)


def quoted(line: str) -> str:
    """The JSON string after the ``label:`` of one snippet line."""
    return json.loads(line.split(": ", 1)[1])


# -- ContextTeacher ------------------------------------------------------------------------------
def test_context_teacher_format_is_three_numbered_lines():
    texts = ContextTeacher()(RECORDS)
    assert len(texts) == len(RECORDS)
    for text, token in zip(texts, RECORDS["token"]):
        lines = text.split("\n")
        assert [line[:3] for line in lines] == ["1. ", "2. ", "3. "]
        assert lines[0].startswith("1. Recent context: ")
        assert lines[1].startswith("2. Topic words: ")
        assert lines[2] == f"3. Current token: {json.dumps(token)}"


def test_context_teacher_is_deterministic():
    first = ContextTeacher()(RECORDS)
    assert ContextTeacher()(RECORDS) == first
    assert ContextTeacher()(RECORDS.iloc[::-1]) == first[::-1]  # row order, not batch, decides


def test_context_words_come_from_the_end_of_the_prefix():
    text = ContextTeacher(n_context_words=5)(RECORDS.iloc[:1])[0]
    context = quoted(text.split("\n")[0])
    assert context == "…" + " ".join(PREFIX.split()[-5:])
    assert PREFIX.endswith(context[1:])
    full = quoted(ContextTeacher(n_context_words=15)(RECORDS.iloc[:1])[0].split("\n")[0])
    assert full == "…" + " ".join(PREFIX.split()[-15:])
    short = quoted(ContextTeacher()(RECORDS.iloc[1:2])[0].split("\n")[0])
    assert short == "Short text here"  # nothing cut, no ellipsis


def test_newlines_in_the_prefix_and_token_stay_on_one_line():
    records = pd.DataFrame({"prefix": ["first line\nsecond line\n"], "token": ["\n"]})
    lines = ContextTeacher()(records)[0].split("\n")
    assert len(lines) == 3
    assert quoted(lines[0]) == "first line second line"
    assert quoted(lines[2]) == "\n"


def test_no_subject_lists_the_longest_content_words():
    assert topic_words(PREFIX) == ["forelock", "Saracen", "crusade"]  # ties: most recent first
    assert topic_words("the and of which through themselves") == []  # stopwords only
    assert topic_words("Horse horse HORSE cat") == ["HORSE"]  # distinct ignoring case, as last seen; >= 4 letters
    line = ContextTeacher()(RECORDS.iloc[:1])[0].split("\n")[1]
    assert line == '2. Topic words: "forelock", "Saracen", "crusade"'
    assert ContextTeacher()(pd.DataFrame({"prefix": ["of the"], "token": [" the"]}))[0].split("\n")[1] == (
        "2. Topic words: (none)"
    )


def test_template_variant_omits_the_verbatim_context():
    default = ContextTeacher()(RECORDS.iloc[:1])[0]
    template = ContextTeacher(variant="template")(RECORDS.iloc[:1])[0]
    assert template != default and "Recent context" not in template
    lines = template.split("\n")
    assert lines[0] == '1. Topic words: "forelock", "Saracen", "crusade"'
    assert quoted(lines[1]) == "…" + " ".join(PREFIX.split()[-6:])
    assert lines[2] == '3. Current token: " Saracen"'


def test_context_teacher_rejects_bad_input():
    with pytest.raises(InputError, match="prefix"):
        ContextTeacher()(pd.DataFrame({"text": ["x"]}))
    with pytest.raises(InputError, match="variant"):
        ContextTeacher(variant="fancy")
    with pytest.raises(InputError, match="subject"):
        ContextTeacher(subject=object())
    with pytest.raises(InputError, match="no subject"):
        ContextTeacher().top_next_tokens(RECORDS)


# -- label_dataset --------------------------------------------------------------------------------
def small_dataset() -> ActivationDataset:
    frame = pd.DataFrame(
        {
            "doc_id": [0, 0, 1, 2],
            "split": ["av_sft", "av_sft", "ar_sft", "av_sft"],
            "position": [3, 5, 4, 6],
            "token_id": [1, 2, 3, 4],
            "token": [" a", " b", " c", " d"],
            "prefix": ["one two a", "one two a three b", "four c", "five six d"],
            "norm": [1.0] * 4,
        }
    )
    return ActivationDataset(torch.ones(4, 3), frame, {})


def test_label_dataset_keeps_the_frame_index():
    ds = small_dataset()
    everything = label_dataset(ds, ContextTeacher())
    assert list(everything.index) == [0, 1, 2, 3] and everything.name == "explanation"
    sft = label_dataset(ds, ContextTeacher(), split="av_sft")
    assert list(sft.index) == [0, 1, 3]
    assert sft.loc[3] == everything.loc[3] and '" d"' in sft.loc[3]
    with pytest.raises(InputError, match="No split"):
        label_dataset(ds, ContextTeacher(), split="nope")
    with pytest.raises(TeacherError, match="returned 1 explanations for 4 rows"):
        label_dataset(ds, lambda records: ["only one"])


def test_clean_explanation_keeps_numbered_snippets_and_cuts_rambling():
    assert clean_explanation("  1. a\n2. b\n\nSure, anything else?") == "1. a\n2. b"
    assert clean_explanation("Here you go:\n\n1. a\n\n2. b\n\nHope it helps") == "1. a\n2. b"
    assert clean_explanation("A plain answer.\n\nMore chatter.") == "A plain answer."
    assert clean_explanation("   ") == ""


# -- a fake API server ------------------------------------------------------------------------------
class FakeAPI:
    """A local HTTP server imitating both APIs. ``script(n)`` picks the status of request n."""

    def __init__(self, script=lambda n: 200, delay: float = 0.0):
        self.script, self.delay = script, delay
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api.lock:
                    n = len(api.requests)
                    api.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    api.in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api.in_flight)
                time.sleep(api.delay)
                status = api.script(n)
                content = body["messages"][0]["content"]
                if status != 200:
                    payload = {"error": {"message": f"server exploded on request {n}"}}
                elif self.path.endswith("/v1/messages"):
                    payload = {"content": [{"type": "text", "text": f"  echo:{content}\n"}], "stop_reason": "end_turn"}
                else:
                    payload = {"choices": [{"message": {"role": "assistant", "content": f"echo:{content}"}}]}
                data = json.dumps(payload).encode()
                with api.lock:
                    api.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_api():
    servers = []

    def start(script=lambda n: 200, delay=0.0):
        servers.append(FakeAPI(script, delay))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


PROMPT = "P={prefix}|T={token}"


def api_teacher(server, tmp_path, provider="anthropic", **kwargs):
    base = server.url if provider == "anthropic" else server.url + "/v1"
    options = dict(
        api_key="sk-test", base_url=base, cache_dir=tmp_path / "cache", prompt=PROMPT, retry_backoff=0.0, progress=False
    )
    return APITeacher(provider, **{**options, **kwargs})


def expected_echo(records):
    return [f"echo:P={p}|T={t}" for p, t in zip(records["prefix"], records["token"])]


def test_missing_api_key_is_a_teacher_error(tmp_path):
    for key in (None, "", "  "):
        with pytest.raises(TeacherError, match="api_key=os.environ"):
            APITeacher("anthropic", api_key=key, cache_dir=tmp_path)
    assert issubclass(TeacherError, NLALensError) and issubclass(TeacherError, RuntimeError)


def test_anthropic_request_shape_and_reply(fake_api, tmp_path):
    server = fake_api()
    teacher = api_teacher(server, tmp_path, model="claude-test", max_tokens=123)
    assert "sk-test" not in repr(teacher)
    assert teacher(RECORDS) == expected_echo(RECORDS)  # reply stripped, in row order
    assert len(server.requests) == len(RECORDS)
    request = server.requests[0]
    assert request["path"] == "/v1/messages"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["x-api-key"] == "sk-test" and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert set(request["body"]) == {"model", "max_tokens", "messages"}
    assert request["body"]["model"] == "claude-test" and request["body"]["max_tokens"] == 123
    contents = sorted(r["body"]["messages"][0]["content"] for r in server.requests)
    assert contents == sorted(e[len("echo:") :] for e in expected_echo(RECORDS))
    assert all(r["body"]["messages"][0]["role"] == "user" for r in server.requests)


def test_openai_request_shape_and_reply(fake_api, tmp_path):
    server = fake_api()
    teacher = api_teacher(server, tmp_path, provider="openai", model="gpt-test")
    assert teacher(RECORDS) == expected_echo(RECORDS)
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer sk-test" and "x-api-key" not in headers
    assert request["body"]["model"] == "gpt-test"
    assert request["body"]["messages"][0]["role"] == "user"


def test_default_prompt_reaches_the_server(fake_api, tmp_path):
    server = fake_api()
    teacher = api_teacher(server, tmp_path, prompt=DEFAULT_TEACHER_PROMPT)
    teacher(RECORDS.iloc[:1])
    content = server.requests[0]["body"]["messages"][0]["content"]
    assert content == DEFAULT_TEACHER_PROMPT.format(prefix=PREFIX, token=" Saracen")
    assert PREFIX in content and "2-3" in content


def test_a_500_then_200_is_retried(fake_api, tmp_path):
    server = fake_api(script=lambda n: 500 if n == 0 else 200)
    assert api_teacher(server, tmp_path)(RECORDS.iloc[:1]) == expected_echo(RECORDS.iloc[:1])
    assert len(server.requests) == 2


def test_a_429_is_retried_but_a_401_is_not(fake_api, tmp_path):
    server = fake_api(script=lambda n: 429 if n < 2 else 200)
    assert api_teacher(server, tmp_path)(RECORDS.iloc[:1]) == expected_echo(RECORDS.iloc[:1])
    assert len(server.requests) == 3
    unauthorized = fake_api(script=lambda n: 401)
    with pytest.raises(TeacherError, match="HTTP 401"):
        api_teacher(unauthorized, tmp_path / "other", max_retries=5)(RECORDS.iloc[:1])
    assert len(unauthorized.requests) == 1


def test_a_failing_endpoint_raises_with_the_status_and_body(fake_api, tmp_path):
    server = fake_api(script=lambda n: 500)
    with pytest.raises(TeacherError, match=r"HTTP 500.*server exploded.*after 3 attempts"):
        api_teacher(server, tmp_path, max_retries=2, max_concurrency=1)(RECORDS.iloc[:1])
    assert len(server.requests) == 3


def test_a_failing_endpoint_with_a_fallback_warns_and_uses_it(fake_api, tmp_path):
    server = fake_api(script=lambda n: 503)
    teacher = api_teacher(server, tmp_path, max_retries=1, fallback=ContextTeacher())
    with pytest.warns(UserWarning, match=r"3 of 3 rows got no answer \(HTTP 503"):
        texts = teacher(RECORDS)
    assert texts == ContextTeacher()(RECORDS)
    assert len(server.requests) <= 2 * len(RECORDS)


def test_connection_errors_are_retried_then_reported(tmp_path):
    closed = FakeAPI()
    url = closed.url
    closed.close()  # nothing listens on this port any more
    teacher = APITeacher(
        "openai",
        api_key="k",
        base_url=url,
        cache_dir=tmp_path,
        retry_backoff=0.0,
        max_retries=1,
        timeout=5,
        progress=False,
    )
    with pytest.raises(TeacherError, match="connection error"):
        teacher(RECORDS.iloc[:1])


def test_the_cache_makes_a_second_run_send_nothing(fake_api, tmp_path):
    server = fake_api()
    first = api_teacher(server, tmp_path)(RECORDS)
    assert len(server.requests) == 3
    again = api_teacher(server, tmp_path)(RECORDS)  # a new teacher, the same cache folder
    assert again == first and len(server.requests) == 3
    api_teacher(server, tmp_path, model="another-model")(RECORDS.iloc[:1])  # the key includes the model
    assert len(server.requests) == 4
    duplicated = pd.concat([RECORDS.iloc[:1]] * 3, ignore_index=True)
    api_teacher(server, tmp_path / "fresh")(duplicated)  # one request per distinct prompt
    assert len(server.requests) == 5


def test_answers_before_a_failure_stay_cached(fake_api, tmp_path):
    rows = pd.DataFrame({"prefix": [f"document number {i}" for i in range(5)], "token": [f" {i}" for i in range(5)]})
    failing_after_two = fake_api(script=lambda n: 200 if n < 2 else 500)
    with pytest.raises(TeacherError, match=r"3 of 5 rows got no answer.*2 answers received"):
        api_teacher(failing_after_two, tmp_path, max_concurrency=1, max_retries=1)(rows)
    cached = AnswerCache(tmp_path / "cache").load()
    assert sorted(cached.values()) == expected_echo(rows)[:2]  # one worker: rows go in order
    healthy = fake_api()
    assert api_teacher(healthy, tmp_path)(rows) == expected_echo(rows)
    assert len(healthy.requests) == 3  # only the rows that were never answered


def test_a_truncated_cache_line_is_skipped(fake_api, tmp_path):
    server = fake_api()
    api_teacher(server, tmp_path)(RECORDS.iloc[:1])
    cache = AnswerCache(tmp_path / "cache")
    with cache.path.open("a") as fh:
        fh.write('{"key": "abc", "te')  # a crash mid-write
    assert len(cache.load()) == 1
    api_teacher(server, tmp_path)(RECORDS.iloc[1:2])
    assert len(cache.load()) == 2  # the next answer starts on a fresh line


def test_concurrency_is_limited(fake_api, tmp_path):
    server = fake_api(delay=0.05)
    rows = pd.DataFrame({"prefix": [f"text {i}" for i in range(8)], "token": [f" {i}" for i in range(8)]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert api_teacher(server, tmp_path, max_concurrency=2)(rows) == expected_echo(rows)
    assert server.max_in_flight == 2
