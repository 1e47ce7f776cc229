"""Secret masking: every form of every value is replaced in plain text, bytes, streams
split anywhere, and log records with their tracebacks."""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import re
import threading
import time
import traceback
from urllib.parse import quote, quote_plus

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pavedroad.secrets.masking import (
    MASK,
    MIN_MASKED_LENGTH,
    Masker,
    MaskingFormatter,
    StreamMasker,
    forms,
    install_log_masking,
    process_masker,
)


def _stream(masker: Masker, chunks: list[str]) -> str:
    stream = masker.stream()
    return "".join(stream.feed(chunk) for chunk in chunks) + stream.flush()


def _reference_mask(values: list[str], text: str) -> str:
    """The definition: one alternation of every form, longest first."""
    every_form = set().union(*(forms(value) for value in values))
    if not every_form:
        return text
    ordered = sorted(every_form, key=lambda form: (-len(form), form))
    return re.sub("|".join(map(re.escape, ordered)), MASK, text)


# --- forms ----------------------------------------------------------------------------------

B64_VALUE = "key?>?>~~="  # base64 has '+', '/' and '==' padding
B64_RAW = B64_VALUE.encode()


@pytest.mark.parametrize(
    "shown",
    [
        pytest.param(B64_VALUE, id="plain"),
        pytest.param(base64.b64encode(B64_RAW).decode(), id="base64"),
        pytest.param(base64.urlsafe_b64encode(B64_RAW).decode(), id="base64-urlsafe"),
        pytest.param(base64.b64encode(B64_RAW).decode().rstrip("="), id="base64-unpadded"),
        pytest.param(
            base64.urlsafe_b64encode(B64_RAW).decode().rstrip("="), id="base64-urlsafe-unpadded"
        ),
    ],
)
def test_plain_and_base64_forms_are_masked(shown: str) -> None:
    assert base64.b64encode(B64_RAW).decode() == "a2V5Pz4/Pn5+PQ=="
    masker = Masker([B64_VALUE])
    assert masker.mask(f"Authorization: {shown}; done") == f"Authorization: {MASK}; done"


def test_base64_of_non_ascii_value_uses_utf8() -> None:
    value = "pässwörd-ü"
    shown = base64.b64encode(value.encode("utf-8")).decode()
    assert Masker([value]).mask(f"x={shown}") == f"x={MASK}"


@pytest.mark.parametrize("encode", [quote, quote_plus], ids=["quote", "quote_plus"])
def test_url_encoded_forms_are_masked(encode: object) -> None:
    value = "p@ss word&x=1/2+3"
    shown = quote(value, safe="") if encode is quote else quote_plus(value)
    assert shown in {"p%40ss%20word%26x%3D1%2F2%2B3", "p%40ss+word%26x%3D1%2F2%2B3"}
    url = f"https://db.example/connect?user=app&password={shown}&tls=1"
    assert Masker([value]).mask(url) == f"https://db.example/connect?user=app&password={MASK}&tls=1"


def test_json_escaped_forms_are_masked() -> None:
    value = 'he said "hi" \\ C:\\path\nnext line é'
    masker = Masker([value])
    for ensure_ascii in (True, False):
        document = json.dumps({"password": value, "user": "app"}, ensure_ascii=ensure_ascii)
        masked = masker.mask(document)
        assert masked == f'{{"password": "{MASK}", "user": "app"}}', ensure_ascii


def test_each_line_of_a_pem_key_is_masked() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    body = [line for line in pem.splitlines() if not line.startswith("-----")]
    assert len(body) >= 2
    masker = Masker([pem.replace("\n", "\r\n")])  # a value with CRLF line ends
    for line in body:
        assert masker.mask(f"[tool] {line}\n") == f"[tool] {MASK}\n"
    # The whole key, printed as is or JSON-escaped, leaves no line of it behind.
    for shown in (pem, json.dumps(pem)):
        masked = masker.mask(shown)
        assert not any(line in masked for line in body)


def test_forms_of_each_line_of_a_multi_line_value() -> None:
    value = "first-line-secret\nsecond line & more"
    assert forms("first-line-secret") <= forms(value)
    assert quote_plus("second line & more") in forms(value)
    assert "second line & more" in forms(value)


def test_empty_and_short_values_are_ignored() -> None:
    assert forms("") == set()
    assert Masker(["", "x"]).mask("x marks the spot") == "x marks the spot"
    short = forms("abc")
    assert "abc" not in short
    assert all(len(form) >= MIN_MASKED_LENGTH for form in short)
    masker = Masker(["ab"])
    assert masker.mask("about a cab: ab") == "about a cab: ab"
    assert not Masker([""])
    assert Masker([""]).longest == 0


def test_overlapping_values_the_longer_wins() -> None:
    masker = Masker(["token-abc", "token-abcdef"])
    assert masker.mask("a=token-abcdef b=token-abc c=token-abcd") == (
        f"a={MASK} b={MASK} c={MASK}d"
    )
    # One value's end is another's start: the one starting first is masked whole.
    masker = Masker(["abcd1234", "1234wxyz"])
    assert masker.mask("abcd1234wxyz") == f"{MASK}wxyz"
    assert masker.mask("zabc1234wxyz") == f"zabc{MASK}"


def test_values_with_regex_metacharacters() -> None:
    value = r"a.b*c+(d)|[e]^$\1{2}?"
    masker = Masker([value])
    assert masker.mask(f"<{value}>") == f"<{MASK}>"
    near_miss = "aXbbbc+(d)|[e]^$\\1{2}?"
    assert masker.mask(near_miss) == near_miss
    assert masker.mask("a") == "a"


def test_matches_the_longest_first_alternation_for_many_values() -> None:
    rng = random.Random(20240611)
    for _ in range(200):
        values = [
            "".join(rng.choice("ab=") for _ in range(rng.randint(1, 10)))
            for _ in range(rng.randint(1, 15))
        ]
        masker = Masker(values)
        for _ in range(10):
            text = "".join(rng.choice("ab=YW%") for _ in range(80))
            assert masker.mask(text) == _reference_mask(values, text), (values, text)


def test_deeply_nested_prefixes() -> None:
    values = ["s" * length for length in range(4, 300)]
    masker = Masker(values)
    text = "x" + "s" * 250 + "x" + "s" * 700 + "x"
    assert masker.mask(text) == _reference_mask(values, text)
    assert masker.mask(text) == f"x{MASK}x{MASK}{MASK}{MASK}x"


def test_longest_bool_and_add() -> None:
    masker = Masker()
    assert not masker
    assert masker.longest == 0
    assert masker.mask("nothing to hide") == "nothing to hide"
    masker.add("db-password-1")
    assert masker
    assert masker.longest == max(len(form) for form in forms("db-password-1"))
    assert masker.mask("pw db-password-1") == f"pw {MASK}"
    masker.add("api-key-2")
    assert masker.mask("db-password-1 api-key-2") == f"{MASK} {MASK}"


def test_add_is_thread_safe() -> None:
    masker = Masker()
    values = [f"concurrent-secret-{index:04d}" for index in range(120)]
    errors: list[BaseException] = []

    def add(part: list[str]) -> None:
        try:
            for value in part:
                masker.add(value)
                masker.mask(value)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=add, args=(values[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert masker.mask(" ".join(values)) == " ".join([MASK] * len(values))


def test_process_masker_is_one_instance() -> None:
    assert process_masker() is process_masker()
    assert isinstance(process_masker(), Masker)


# --- bytes ---------------------------------------------------------------------------------


def test_bytes_with_invalid_utf8_survive() -> None:
    masker = Masker(["s3cr3t-välue"])
    data = b"\xff\xfe head " + "s3cr3t-välue".encode() + b" \x80\xc3 tail"
    assert masker.mask_bytes(data) == b"\xff\xfe head *** \x80\xc3 tail"
    assert masker.mask_bytes(b"\xff\x00plain") == b"\xff\x00plain"


# --- streams --------------------------------------------------------------------------------


def test_value_split_across_two_chunks() -> None:
    masker = Masker(["split-secret-value"])
    assert _stream(masker, ["log: split-sec", "ret-value end\n"]) == f"log: {MASK} end\n"


def test_value_split_across_one_character_chunks() -> None:
    masker = Masker(["one-char-chunks-secret"])
    text = "start one-char-chunks-secret middle one-char-chunks-secret"
    assert _stream(masker, list(text)) == f"start {MASK} middle {MASK}"


def test_feed_holds_back_only_what_could_begin_a_secret() -> None:
    masker = Masker(["zzzz-never-shown"])
    text = "a line of output with nothing secret in it\n" * 3
    stream = masker.stream()
    assert stream.feed(text) == text  # a line before a pause shows at once
    assert stream.feed("then zzzz") == "then "  # this could be the secret beginning
    rest = stream.feed("-never-shown and more")  # (its last "e" could begin base64 of it)
    assert rest.startswith(f"{MASK} and mor") and rest + stream.flush() == f"{MASK} and more"


def test_feed_never_emits_half_a_form() -> None:
    masker = Masker(["abcd1234", "abcd1234zz"])
    stream = masker.stream()
    out = stream.feed("xxabcd1234")  # a longer form could still follow
    assert "abcd" not in out
    out += stream.feed("zz tail")
    assert out + stream.flush() == f"xx{MASK} tail"


STREAM_VALUES = [
    "token-abc",
    "token-abcdef",
    "abcd1234",
    "1234wxyz",
    "p@ss word&x=1",
    "multi-line-1\nmulti-line-2",
]
STREAM_TEXTS = [
    "token-abcdef token-abc token-abcd",
    "abcd1234wxyz zabc1234wxyz 1234wxy",
    "url?pw=p%40ss%20word%26x%3D1&q=p%40ss+word%26x%3D1",
    "b64 " + base64.b64encode(b"token-abcdef").decode() + " end",
    "multi-line-1\nmulti-line-2\nmulti-line-\n",
    "token-abctoken-abcdeftoken-ab",
    "no secrets at all, just a fairly ordinary line of text",
]


@pytest.mark.parametrize("text", STREAM_TEXTS)
def test_stream_equals_mask_for_every_split_point(text: str) -> None:
    masker = Masker(STREAM_VALUES)
    expected = masker.mask(text)
    for point in range(len(text) + 1):
        assert _stream(masker, [text[:point], text[point:]]) == expected, point
    for first in range(0, len(text) + 1, 3):
        for second in range(first, len(text) + 1, 2):
            chunks = [text[:first], text[first:second], text[second:]]
            assert _stream(masker, chunks) == expected, (first, second)


def test_stream_equals_mask_for_random_splits() -> None:
    masker = Masker(STREAM_VALUES)
    rng = random.Random(1337)
    pieces = [*STREAM_VALUES, " ", "\n", "token-", "abcd", "1234", "x", "wxyz"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        cuts = sorted(rng.randint(0, len(text)) for _ in range(rng.randint(0, 12)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert "".join(chunks) == text
        assert _stream(masker, chunks) == masker.mask(text), (text, cuts)


def test_stream_can_be_reused_after_flush() -> None:
    masker = Masker(["reuse-secret"])
    stream: StreamMasker = masker.stream()
    assert stream.feed("a reuse-sec") + stream.feed("ret") + stream.flush() == f"a {MASK}"
    assert stream.feed("reuse-secret") + stream.flush() == MASK


# --- logging and tracebacks -----------------------------------------------------------------

TRACEBACK_SECRET = "tb-Zq8wX-s3cr3t"


def _connect_with_password() -> None:
    raise ConnectionError("login refused for password=tb-Zq8wX-s3cr3t at db.example")


def _assert_no_form(text: str, value: str) -> None:
    for form in forms(value):
        assert form not in text, form


def _capturing_logger(name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger.handlers = [handler]
    return logger, buffer, handler


def test_secret_in_a_logged_traceback_is_masked() -> None:
    logger, buffer, _ = _capturing_logger("pavedroad.test.masking.traceback")
    install_log_masking(Masker([TRACEBACK_SECRET]), logger)
    try:
        _connect_with_password()
    except ConnectionError:
        logger.exception("connecting failed (password %s)", TRACEBACK_SECRET)
    output = buffer.getvalue()
    _assert_no_form(output, TRACEBACK_SECRET)
    assert f"ERROR pavedroad.test.masking.traceback connecting failed (password {MASK})" in output
    assert "Traceback (most recent call last):" in output
    assert "in _connect_with_password" in output
    assert f'raise ConnectionError("login refused for password={MASK} at db.example")' in output
    assert f"ConnectionError: login refused for password={MASK} at db.example" in output


def test_secret_in_stack_info_is_masked() -> None:
    logger, buffer, _ = _capturing_logger("pavedroad.test.masking.stack")
    install_log_masking(Masker([TRACEBACK_SECRET]), logger)
    logger.warning("look here", stack_info=True)  # tb-Zq8wX-s3cr3t
    output = buffer.getvalue()
    _assert_no_form(output, TRACEBACK_SECRET)
    assert "Stack (most recent call last):" in output
    assert f"# {MASK}" in output


def test_traceback_text_streamed_through_a_stream_masker() -> None:
    try:
        _connect_with_password()
    except ConnectionError:
        text = traceback.format_exc()
    assert TRACEBACK_SECRET in text
    masker = Masker([TRACEBACK_SECRET])
    chunks = [text[index : index + 7] for index in range(0, len(text), 7)]
    streamed = _stream(masker, chunks)
    assert streamed == masker.mask(text)
    _assert_no_form(streamed, TRACEBACK_SECRET)
    assert streamed.startswith("Traceback (most recent call last):")
    assert f"password={MASK} at db.example" in streamed


def test_install_log_masking_is_idempotent() -> None:
    logger, buffer, handler = _capturing_logger("pavedroad.test.masking.idempotent")
    original = handler.formatter
    masker = Masker(["idempotent-secret"])
    install_log_masking(masker, logger)
    install_log_masking(masker, logger)
    formatter = handler.formatter
    assert isinstance(formatter, MaskingFormatter)
    assert formatter.inner is original
    logger.info("value idempotent-secret")
    assert buffer.getvalue() == f"INFO pavedroad.test.masking.idempotent value {MASK}\n"


def test_install_log_masking_defaults_to_the_root_logger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)  # no formatter: the default one is wrapped
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", logging.INFO)
    install_log_masking(Masker(["root-level-secret"]))
    logging.getLogger("pavedroad.test.masking.child").warning("got root-level-secret")
    assert buffer.getvalue() == f"got {MASK}\n"


# --- speed ------------------------------------------------------------------------------------


def test_masking_a_megabyte_with_200_values_is_fast() -> None:
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_ \n"
    values = ["".join(rng.choice(alphabet[:64]) for _ in range(32)) for _ in range(200)]
    filler = "".join(rng.choice(alphabet) for _ in range(1_000_000))
    text = filler[:300_000] + values[17] + filler[300_000:] + values[199]
    masker = Masker(values)
    started = time.perf_counter()
    masked = masker.mask(text)
    elapsed = time.perf_counter() - started
    assert masked.count(MASK) >= 2
    assert values[17] not in masked
    assert elapsed < 2.0, elapsed
