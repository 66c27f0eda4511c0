"""Datasets, downloads and splits (corpus.py), WordPiece tokenizers (vocab.py), atomic writes (utils.py) and
the logits cache file (logits_cache.py)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import stat
import threading
import time
import unicodedata

import pytest

import corpus
import logits_cache
import utils
from conftest import make_reviews, write_nsmc, write_steam
from vocab import SPECIAL_TOKENS, get_tokenizer, load_tokenizer, train_tokenizer


def test_nsmc_parses_and_splits(data_dir):
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    assert set(splits) == {"train", "valid", "test"}
    assert len(splits["test"]) == 200  # the official test file is kept whole
    assert len(splits["train"]) + len(splits["valid"]) == 600
    assert 0.01 < len(splits["valid"]) / 600 < 0.12
    for df in splits.values():
        assert list(df.columns) == ["id", "text", "label", "source"]
        assert set(df["label"]) <= {0, 1}
    ids = [set(df["id"]) for df in splits.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert splits["train"]["id"].iloc[0].isdigit()  # NSMC keeps its review ids


def test_splits_are_deterministic_and_stable_when_rows_are_added(tmp_path):
    write_steam(tmp_path / "a" / "steam.txt", n=300)
    first = corpus.load_dataset("steam", data_dir=tmp_path / "a")
    again = corpus.load_dataset("steam", data_dir=tmp_path / "a")
    for split in corpus.SPLITS:
        assert first[split].equals(again[split])
    # More rows: every old example stays in the split it had.
    write_steam(tmp_path / "b" / "steam.txt", n=500)
    bigger = corpus.load_dataset("steam", data_dir=tmp_path / "b")
    where = {i: s for s, df in bigger.items() for i in df["id"]}
    for split, df in first.items():
        assert all(where[i] == split for i in df["id"])


def test_shopping_ratings_map_to_labels_and_neutral_is_dropped(tmp_path):
    path = tmp_path / "naver_shopping.txt"
    path.write_text("5\t배송 빨라요\n1\t최악이에요\n3\t그냥 그래요\n2\t별로\n4\t좋아요\n", encoding="utf-8")
    df, report = corpus.parse_file(path, "rating", "naver_shopping")
    assert dict(zip(df["text"], df["label"])) == {"배송 빨라요": 1, "최악이에요": 0, "별로": 0, "좋아요": 1}
    assert report.neutral == 1 and report.kept == 4
    assert all(i.startswith("naver_shopping-") for i in df["id"])


def test_empty_texts_and_duplicates_are_dropped_and_counted(tmp_path):
    path = tmp_path / "steam.txt"
    path.write_text("1\t재밌다\n0\t   \n1\t재밌다\n0\t노잼\n", encoding="utf-8")
    df, report = corpus.parse_file(path, "label", "steam")
    assert df["text"].tolist() == ["재밌다", "노잼"]
    assert (report.rows, report.kept, report.empty, report.duplicates) == (4, 2, 1, 1)
    assert "1 empty dropped" in report.summary() and "1 duplicates dropped" in report.summary()


@pytest.mark.parametrize(
    "fmt, content, message",
    [
        ("nsmc", "id\tdocument\tlabel\n1\t좋다\t1\n2\t나쁘다\n", "expected 3 tab-separated columns"),
        ("nsmc", "id\tdocument\tlabel\n1\t좋다\t2\n", "label 2 is not one of"),
        ("nsmc", "document\tlabel\n", "expected the NSMC header"),
        ("rating", "6\t좋아요\n", "rating 6 is not one of"),
        ("label", "x\t좋아요\n", "'x' is not an integer"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, fmt, content, message):
    path = tmp_path / "file.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(corpus.DataFormatError, match=message) as err:
        corpus.parse_file(path, fmt, "x")
    assert str(path) in str(err.value)


def test_skip_bad_rows_counts_and_reports(tmp_path):
    path = tmp_path / "ratings_train.txt"
    path.write_text("id\tdocument\tlabel\n1\t좋다\t1\n2\t나쁘다\n3\t별로\t0\n4\t음\t7\n", encoding="utf-8")
    df, report = corpus.parse_file(path, "nsmc", "nsmc", skip_bad_rows=True)
    assert df["id"].tolist() == ["1", "3"]
    assert len(report.skipped) == 2 and f"{path}:3" in report.skipped[0]
    assert "2 malformed skipped" in report.summary()


def test_all_combines_sources_with_unique_ids(data_dir):
    splits = corpus.load_dataset("all", data_dir=data_dir)
    train = splits["train"]
    assert set(train["source"]) == {"nsmc", "naver_shopping", "steam"}
    all_ids = [i for df in splits.values() for i in df["id"]]
    assert len(all_ids) == len(set(all_ids))


def test_max_train_subset_is_reproducible(data_dir):
    a = corpus.load_dataset("nsmc", data_dir=data_dir, max_train=100)["train"]
    b = corpus.load_dataset("nsmc", data_dir=data_dir, max_train=100)["train"]
    assert len(a) == 100 and a["id"].tolist() == b["id"].tolist()


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="ratings_train.txt"):
        corpus.load_dataset("nsmc", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        corpus.load_dataset("imdb", data_dir=tmp_path)


@pytest.fixture
def http_root(tmp_path):
    """A local HTTP server on the loopback interface serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_is_atomic_and_not_repeated(http_root, tmp_path, monkeypatch):
    www, url = http_root
    write_nsmc(www, n_train=50, n_test=20)
    monkeypatch.setitem(
        corpus.DATASETS, "nsmc", corpus.DatasetSpec(corpus.DATASETS["nsmc"].files, url, "nsmc")
    )
    root = tmp_path / "data"
    splits = corpus.load_dataset("nsmc", root=root)
    target = root / "nsmc" / "ratings_train.txt"
    assert target.read_bytes() == (www / "ratings_train.txt").read_bytes()
    assert len(splits["test"]) == 20
    assert [p.name for p in (root / "nsmc").iterdir() if p.name.endswith(".tmp")] == []
    # An existing file is not downloaded again, even when the server is gone.
    (www / "ratings_train.txt").unlink()
    assert corpus.dataset_files("nsmc", root=root)["train"] == target


def test_offline_download_error_names_url_and_destination(tmp_path):
    url = "http://127.0.0.1:9/ratings_train.txt"  # the discard port: connection refused
    with pytest.raises(RuntimeError, match="Could not download http://127.0.0.1:9/ratings_train.txt") as err:
        corpus.download(url, tmp_path / "x" / "ratings_train.txt", timeout=5, attempts=2, backoff=0.01)
    assert "--data-dir" in str(err.value) and str(tmp_path / "x" / "ratings_train.txt") in str(err.value)
    assert not (tmp_path / "x" / "ratings_train.txt").exists()


def test_read_unlabeled(tmp_path):
    path = tmp_path / "unlabeled.txt"
    path.write_text("재밌다\n\n재밌다\n지루함\n", encoding="utf-8")
    df = corpus.read_unlabeled(path)
    assert df["text"].tolist() == ["재밌다", "지루함"] and set(df["label"]) == {-1}
    with pytest.raises(FileNotFoundError):
        corpus.read_unlabeled(tmp_path / "nope.txt")


# --- tokenizer -------------------------------------------------------------------------------------------


def test_tokenizer_round_trip_keeps_hangul(tmp_path, data_dir):
    train = corpus.load_dataset("nsmc", data_dir=data_dir)["train"]
    tokenizer = get_tokenizer(train, 200, "nsmc", root=tmp_path)
    directory = tmp_path / "vocab_size_200"
    assert {"tokenizer.json", "vocab.txt", "training.json"} <= {p.name for p in directory.iterdir()}
    assert len(tokenizer) <= 200 and tokenizer.pad_token_id == 0
    text = "정말 재밌어요 최고"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    # No accent stripping: syllables are not split into jamo, and NFD input normalises to the same ids.
    assert "재밌어요" in tokenizer.tokenize(text)
    assert tokenizer(unicodedata.normalize("NFD", text), add_special_tokens=False)["input_ids"] == ids
    vocab = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert vocab[:5] == SPECIAL_TOKENS
    # Latin letters are lowercased.
    assert tokenizer.tokenize("MOVIE") == tokenizer.tokenize("movie")
    # Loading back gives the same encoding.
    assert load_tokenizer(directory)(text, add_special_tokens=False)["input_ids"] == ids


def test_tokenizer_is_reused_or_retrained(tmp_path, data_dir):
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    get_tokenizer(splits["train"], 200, "nsmc", root=tmp_path)
    path = tmp_path / "vocab_size_200" / "tokenizer.json"
    stamp = path.stat().st_mtime_ns
    get_tokenizer(splits["train"], 200, "nsmc", root=tmp_path)
    assert path.stat().st_mtime_ns == stamp  # same texts: reused
    get_tokenizer(splits["valid"], 200, "nsmc", root=tmp_path)
    assert path.stat().st_mtime_ns != stamp  # other texts: retrained
    with pytest.raises(FileNotFoundError, match="distil.py tokenizer"):
        load_tokenizer(tmp_path / "vocab_size_999")


def test_vocabulary_never_exceeds_the_requested_size(tmp_path):
    # Many distinct Hangul syllables: without a limited alphabet the vocabulary would overflow.
    syllables = [chr(0xAC00 + i) for i in range(0, 11172, 7)]
    texts = [" ".join(syllables[i : i + 40]) for i in range(0, len(syllables), 3)] * 2
    tokenizer = train_tokenizer(texts, 400, tmp_path / "v400")
    assert len(tokenizer) <= 400


# --- texts that normalize to nothing, encodings, data summary ----------------------------------------------

BLANK = ["\x00\x01", "\u200b\u200b", "\ufeff", " \u3000\u00a0", "\u200b \x7f\u2028", "\ufffd\u200d"]


def test_blank_texts_are_dropped_and_counted_in_every_split(tmp_path):
    texts = ["재밌다", *BLANK, "\u200b노잼\u200b", "최고"]
    rows = [f"{i + 1}\t{text}\t{i % 2}" for i, text in enumerate(texts)]
    for name in ("ratings_train.txt", "ratings_test.txt"):
        (tmp_path / name).write_text("id\tdocument\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    for name in ("ratings_train.txt", "ratings_test.txt"):
        df, report = corpus.parse_file(tmp_path / name, "nsmc", "nsmc")
        assert (report.rows, report.kept, report.empty) == (len(rows), 3, len(BLANK))
        assert df["text"].tolist() == ["재밌다", "\u200b노잼\u200b", "최고"]
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("\n".join(["좋아요", *BLANK, "좋아요"]) + "\n", encoding="utf-8")
    assert corpus.read_unlabeled(unlabeled)["text"].tolist() == ["좋아요"]
    unlabeled.write_text("\n".join(BLANK) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no text"):
        corpus.read_unlabeled(unlabeled)


def test_is_blank_agrees_with_the_tokenizer(tmp_path, data_dir):
    texts = corpus.load_dataset("nsmc", data_dir=data_dir)["train"]["text"].tolist()
    tokenizer = train_tokenizer(texts, 200, tmp_path / "t")
    normalizer = tokenizer.backend_tokenizer.normalizer
    # every code point of the BMP alone (surrogates cannot be encoded) and a sample of the other planes,
    # then each blank text alone and next to a kept character
    chars = [chr(c) for c in [*range(0xD800), *range(0xE000, 0x10000), *range(0x10000, 0x110000, 17)]]
    disagree = [hex(ord(c)) for c in chars if corpus.is_blank(c) != (not normalizer.normalize_str(c).strip())]
    assert disagree == []
    for text in BLANK:
        assert corpus.is_blank(text) and tokenizer.tokenize(text) == []
        assert not corpus.is_blank(text + "!") and len(tokenizer.tokenize(text + "!")) == 1


def test_cp949_file_is_a_clear_error_with_the_fix(tmp_path):
    path = tmp_path / "ratings_train.txt"
    path.write_bytes("id\tdocument\tlabel\n1\tgood\t1\n2\t재밌다\t1\n".encode("cp949"))
    with pytest.raises(corpus.DataEncodingError) as err:
        corpus.parse_file(path, "nsmc", "nsmc")
    message = str(err.value)
    assert f"{path}:3: not valid UTF-8" in message and "CP949" in message and "\n" not in message
    assert f"iconv -f cp949 -t utf-8 {path} > {path}.utf8" in message
    with pytest.raises(corpus.DataEncodingError, match=f"{path}:3"):
        corpus.read_unlabeled(path)
    # Converted as the message says, the file parses.
    (tmp_path / "ratings_train.txt.utf8").write_text(path.read_bytes().decode("cp949"), encoding="utf-8")
    converted = corpus.parse_file(tmp_path / "ratings_train.txt.utf8", "nsmc", "nsmc")[0]
    assert converted["text"].tolist() == ["good", "재밌다"]
    # Bytes that are no Korean encoding either: still the file and line.
    path.write_bytes(b"1\tok\n0\tbad \xff\xfe\xff\n")
    with pytest.raises(corpus.DataEncodingError, match=f"{path}:2: .*another encoding"):
        corpus.parse_file(path, "label", "steam")


def test_summary_counts_texts_shared_with_train_and_warns_single_class(tmp_path, caplog):
    write_nsmc(tmp_path, n_train=300, n_test=100)
    train_texts = (tmp_path / "ratings_train.txt").read_text(encoding="utf-8").splitlines()[1:6]
    with open(tmp_path / "ratings_test.txt", "a", encoding="utf-8") as f:  # five train texts again, new ids
        for i, line in enumerate(train_texts):
            _, text, label = line.split("\t")
            f.write(f"{9_000_000 + i}\t{text}\t{label}\n")
    with caplog.at_level("INFO", logger="distilkobilstm"):
        splits = corpus.load_dataset("nsmc", data_dir=tmp_path)
    report = corpus.describe_splits(splits)
    shared = int(splits["test"]["text"].isin(set(splits["train"]["text"])).sum())
    assert report.in_train["test"] == shared >= 5 and len(splits["test"]) == 105  # counted, not dropped
    assert f"{shared:,} test texts also in train" in caplog.text and report.single_class() == []
    assert report.sizes == {s: len(df) for s, df in splits.items()}

    lines = [f"1\t좋아요 {i}" for i in range(200)]
    write_steam(tmp_path / "one" / "steam.txt")
    (tmp_path / "one" / "steam.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    caplog.clear()
    with caplog.at_level("WARNING", logger="distilkobilstm"):
        corpus.load_dataset("steam", data_dir=tmp_path / "one")
    assert "the train split has only one class (label 1)" in caplog.text
    assert "the test split has only one class" in caplog.text


# --- downloads: length check, retries, sha256 record -----------------------------------------------------


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Serves BODY; the first ``short`` requests get only half of it under the full Content-Length."""

    body = b""
    short = 0
    requests = 0

    def do_GET(self):
        cls = type(self)
        cls.requests += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(cls.body)))
        self.end_headers()
        self.wfile.write(cls.body[: len(cls.body) // 2] if cls.requests <= cls.short else cls.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    body = b"id\tdocument\tlabel\n" + "1\t좋아요\t1\n".encode() * 5000
    handler = type("Handler", (FlakyHandler,), {"body": body})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/ratings_train.txt"
    server.shutdown()
    server.server_close()


def test_short_download_is_retried_and_never_kept(flaky_server, tmp_path):
    handler, url = flaky_server
    dest = tmp_path / "d" / "ratings_train.txt"
    handler.short = 10  # always short
    size = len(handler.body)
    with pytest.raises(RuntimeError, match=f"Could not download {url} .*received {size // 2:,} of {size:,}"):
        corpus.download(url, dest, attempts=3, backoff=0.01)
    assert handler.requests == 3 and list((tmp_path / "d").iterdir()) == []  # no final file, no temporary
    handler.requests, handler.short = 0, 2  # short twice, then whole
    assert corpus.download(url, dest, attempts=3, backoff=0.01).read_bytes() == handler.body
    assert handler.requests == 3
    digest = hashlib.sha256(handler.body).hexdigest()
    assert (tmp_path / "d" / "ratings_train.txt.sha256").read_text().splitlines() == [
        f"{digest}  ratings_train.txt",
        f"# size {len(handler.body)}",
    ]


def test_reused_download_is_verified_and_fetched_again_when_changed(flaky_server, tmp_path, caplog):
    handler, url = flaky_server
    dest = corpus.download(url, tmp_path / "ratings_train.txt", backoff=0.01)
    assert corpus.download(url, dest) == dest and handler.requests == 1  # intact: reused
    for damage in (lambda b: b[:1000], lambda b: b[:100] + b"X" + b[101:]):  # truncated; one byte changed
        dest.write_bytes(damage(handler.body))
        with caplog.at_level("WARNING", logger="distilkobilstm"):
            assert corpus.download(url, dest).read_bytes() == handler.body
        assert "does not match its download record" in caplog.text
    assert handler.requests == 3
    # A file put there by hand (no record) is used as it is.
    (tmp_path / "ratings_train.txt.sha256").unlink()
    dest.write_bytes(b"id\tdocument\tlabel\n")
    assert corpus.download(url, dest).read_bytes() == b"id\tdocument\tlabel\n" and handler.requests == 3


# --- temporaries, file modes -----------------------------------------------------------------------------


def test_remove_stale_temporaries_only_ours_and_only_old(tmp_path):
    old = time.time() - 2 * 3600
    ours = [".ratings_train.txt.a1b2c3d4.tmp", ".vocab_size_3000.tmp-k9_x2m4q", ".student.old-abcd1234"]
    others = ["notes.tmp", ".hidden", ".x.tmp", "data.old-abcd1234", "ratings_train.txt"]
    for name in ours + others:
        if "-" in name and name.startswith("."):
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (old, old))
    (tmp_path / ".vocab_size_3000.tmp-k9_x2m4q" / "tokenizer.json").write_text("{")
    os.utime(tmp_path / ".vocab_size_3000.tmp-k9_x2m4q", (old, old))
    (tmp_path / ".fresh.json.zzzz9999.tmp").write_text("being written")  # a writer still at work
    assert utils.remove_stale_temporaries(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, ".fresh.json.zzzz9999.tmp"])
    assert utils.remove_stale_temporaries(tmp_path / "missing") == 0


def test_get_tokenizer_clears_temporaries_of_killed_trainings(tmp_path, data_dir):
    stale = tmp_path / ".vocab_size_200.tmp-abcd1234"
    stale.mkdir()
    (stale / "tokenizer.json").write_text('{"trunc')
    os.utime(stale, (time.time() - 7200,) * 2)
    get_tokenizer(corpus.load_dataset("nsmc", data_dir=data_dir)["train"], 200, "nsmc", root=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab_size_200"]


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_writers_use_the_umask(tmp_path, umask):
    import torch
    from safetensors.torch import save_file

    previous = os.umask(umask)
    try:
        utils.atomic_write_json(tmp_path / "a.json", {"x": 1})
        utils.atomic_save(tmp_path / "b.bin", lambda p: p.write_bytes(b"1"))
        utils.atomic_dir(tmp_path / "d", lambda p: (p / "f.txt").write_text("x"))
        utils.atomic_dir(tmp_path / "d", lambda p: (p / "f.txt").write_text("y"))  # replacing an existing one
        utils.atomic_dir(tmp_path / "s", lambda p: save_file({"w": torch.zeros(2)}, p / "w.safetensors"))
    finally:
        os.umask(previous)
    for name in ("a.json", "b.bin", "d/f.txt", "s/w.safetensors"):  # safetensors itself creates files 0600
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "d", "s"]


# --- corrupt derived data: logits cache, shared tokenizer ------------------------------------------------


def test_unreadable_logits_cache_is_a_cache_mismatch_naming_the_file(tmp_path):
    import torch

    path = tmp_path / "nsmc-train.safetensors"
    leftover = tmp_path / ".nsmc-train.safetensors.k2j4h5g6.tmp"  # a writer killed two hours ago
    leftover.write_bytes(b"half")
    os.utime(leftover, (time.time() - 7200,) * 2)
    meta = {"format": logits_cache.CACHE_FORMAT}
    cache = logits_cache.LogitsCache(
        ["1", "2", "3"], logits_cache.text_hashes(["a", "b", "c"]), torch.randn(3, 2), meta
    )
    cache.save(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    loaded = logits_cache.LogitsCache.load(path)
    assert loaded.ids == ["1", "2", "3"] and torch.equal(loaded.logits, cache.logits) and loaded.meta == meta
    whole = path.read_bytes()
    assert b'"shape":[3,2]' in whole and whole.endswith(b"1\n2\n3")
    damaged = {
        "truncated": whole[: len(whole) // 2],
        "header only": whole[:8],
        "empty": b"",
        "garbage": b"\x00\xffnot a safetensors file" * 10,
        "garbled header": whole.replace(b'"shape":[3,2]', b'"shape":[5,2]'),
        "garbled logits": whole[:-8] + bytes(8),
        "garbled ids": whole[:-1] + b"9",
    }
    for data in damaged.values():
        path.write_bytes(data)
        with pytest.raises(logits_cache.CacheMismatch, match=str(path)):
            logits_cache.LogitsCache.load(path)
    # Readable, but its tensors disagree in length.
    logits_cache.LogitsCache(
        ["1", "2"], logits_cache.text_hashes(["a", "b", "c"]), torch.randn(3, 2), meta
    ).save(path)
    with pytest.raises(logits_cache.CacheMismatch, match="inconsistent: 2 ids, 3 hashes"):
        logits_cache.LogitsCache.load(path)


@pytest.mark.parametrize(
    "name, damage",
    [
        ("tokenizer.json", lambda b: b[: len(b) // 2]),
        ("tokenizer.json", lambda b: b.replace(b'"[UNK]"', b'"[UNQ]"', 1)),  # parses, but another vocabulary
        ("training.json", lambda b: b[:10]),
    ],
)
def test_corrupt_shared_tokenizer_is_trained_again(tmp_path, data_dir, caplog, name, damage):
    train = corpus.load_dataset("nsmc", data_dir=data_dir)["train"]
    expected = get_tokenizer(train, 200, "nsmc", root=tmp_path).get_vocab()
    path = tmp_path / "vocab_size_200" / name
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level("WARNING", logger="distilkobilstm"):
        tokenizer = get_tokenizer(train, 200, "nsmc", root=tmp_path)
    assert str(path.parent) in caplog.text and "training the tokenizer again" in caplog.text
    assert tokenizer.get_vocab() == expected
    assert load_tokenizer(tmp_path / "vocab_size_200").get_vocab() == expected  # whole again


def test_corrupt_tokenizer_outside_the_shared_folder_is_a_one_line_error(tmp_path, data_dir):
    train = corpus.load_dataset("nsmc", data_dir=data_dir)["train"]
    train_tokenizer(train["text"].tolist(), 200, tmp_path / "run" / "tokenizer")
    path = tmp_path / "run" / "tokenizer" / "tokenizer.json"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(utils.CorruptFileError) as err:
        load_tokenizer(path.parent)
    message = str(err.value)
    assert message.startswith(f"{path} is corrupt or truncated") and "train the tokenizer again" in message
    assert "\n" not in message


def test_tokenizer_training_is_deterministic(tmp_path):
    # Many ties in character and pair frequencies: the trainer alone numbered (and, at the alphabet limit,
    # chose) tokens differently on every call.
    syllables = [chr(0xAC00 + i) for i in range(0, 11172, 13)]
    texts = [text for text, _ in make_reviews(3000, 0)]
    texts += [" ".join(syllables[i : i + 7]) for i in range(0, len(syllables), 2)]
    vocabs = []
    for i in range(3):
        train_tokenizer(texts, 300, tmp_path / str(i))
        vocabs.append((tmp_path / str(i) / "vocab.txt").read_bytes())
        training = json.loads((tmp_path / str(i) / "training.json").read_text(encoding="utf-8"))
        assert training["vocab_sha256"] == hashlib.sha256(vocabs[-1]).hexdigest()
    assert vocabs[0] == vocabs[1] == vocabs[2]
    assert vocabs[0].decode().split("\n")[:5] == SPECIAL_TOKENS
