"""The student's tokenizer kinds (vocab.py): WordPiece, SentencePiece unigram and BPE, and WordPiece over Kiwi
morphemes (the real kiwipiepy) — trained, saved, reloaded, reused, named in runs and carried inside every
student folder, so that each backend tokenizes exactly as training did."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

import corpus
import distil
import model
import vocab
from config import Paths, RunConfig, configs_from_params
from conftest import cli_common, make_reviews
from model import Student, encode
from train import train_student

KINDS = vocab.TOKENIZER_KINDS
ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["정말 재밌어요 최고", "시간 아까운 ㅋㅋ 龘", "별로 최악 지루해요", "MOVIE 좋아요"]


@pytest.fixture(scope="module")
def train_texts(data_dir) -> list[str]:
    return corpus.load_dataset("nsmc", data_dir=data_dir)["train"]["text"].tolist()


def as_read(tokenizer, texts: list[str]) -> list[list[int]]:
    """What a user of AutoTokenizer does: the folder's pre-tokenizer, then the tokenizer."""
    return tokenizer(vocab.pretokenize(tokenizer, texts), add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_trains_saves_and_reloads(kind, tmp_path, train_texts):
    directory = tmp_path / kind
    trained = vocab.train_tokenizer(train_texts, 300, directory, kind=kind)
    names = {p.name for p in directory.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "training.json"} <= names
    assert len(trained) <= 300 and trained.pad_token_id == 0
    assert (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")[:5] == vocab.SPECIAL_TOKENS
    training = json.loads((directory / "training.json").read_text(encoding="utf-8"))
    assert training["kind"] == kind and training["vocab_size"] == 300
    ids = encode(trained, TEXTS, 128)
    for loaded in (AutoTokenizer.from_pretrained(str(directory)), vocab.load_tokenizer(directory)):
        assert vocab.kind_of(loaded) == kind
        assert as_read(loaded, TEXTS) == ids == encode(loaded, TEXTS, 128)
    unk = trained.unk_token_id
    assert unk in ids[1] and all(unk not in seq for seq in (ids[0], ids[2]))  # 龘 was never seen
    tokens = trained.convert_ids_to_tokens(ids[0])
    config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    if kind.startswith("sentencepiece"):
        assert tokens[0].startswith(vocab.METASPACE) and not any(t.startswith("##") for t in tokens)
    if kind == "kiwi":
        spec = config["pretokenizer"]
        assert spec == {
            "name": "kiwi",
            "kiwipiepy": training["pretokenizer"]["kiwipiepy"],
            "model_type": "cong",
        }
        assert vocab.pretokenize(trained, ["재밌었어요"]) == ["재밌 었 어요"]
        assert ids != as_read_without_kiwi(trained, TEXTS)  # the morphemes change the ids
    else:
        assert "pretokenizer" not in config and vocab.pretokenize(trained, TEXTS) == TEXTS


def as_read_without_kiwi(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("kind", KINDS)
def test_training_is_deterministic(kind, tmp_path):
    # Ties in character and pair frequencies, and (at 300 tokens) many characters the unigram model prunes
    # and its trainer adds back in a random order.
    syllables = [chr(0xAC00 + i) for i in range(0, 11172, 13)]
    texts = [text for text, _ in make_reviews(2000, 0)]
    texts += [" ".join(syllables[i : i + 7]) for i in range(0, len(syllables), 2)]
    files = []
    for i in range(3):
        vocab.train_tokenizer(texts, 300, tmp_path / str(i), kind=kind)
        files.append({p.name: p.read_bytes() for p in sorted((tmp_path / str(i)).iterdir())})
    assert files[0] == files[1] == files[2]


def test_unigram_characters_added_back_get_their_scores_in_alphabet_order():
    # The unigram trainer adds back each character its model pruned with the lowest score plus 0.0001 times
    # its place in a hash-set walk: any order of that walk must give one tokenizer.
    alphabet = [vocab.METASPACE, "가", "나", "다", "라"]
    low = -12.0
    model = {"[UNK]": 0.0, vocab.METASPACE: -2.0, "가나": -3.0, "다": -5.0, "가나다": low}
    expected = {**model, "가": low + 2e-4, "나": low + 1e-4, "라": low}  # the most frequent the highest
    for order in itertools.permutations(["가", "나", "라"]):
        scores = model | {c: low + i * 1e-4 for i, c in enumerate(order)}
        assert vocab._required_char_scores(scores, alphabet) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_kind_folders_are_reused_and_retrained(kind, tmp_path, data_dir):
    splits = corpus.load_dataset("nsmc", data_dir=data_dir)
    vocab.get_tokenizer(splits["train"], 200, "nsmc", tmp_path, kind)
    directory = vocab.tokenizer_dir(200, tmp_path, kind)
    assert directory.name == ("vocab_size_200" if kind == "wordpiece" else f"{kind}_vocab_size_200")
    assert [p.name for p in tmp_path.iterdir()] == [directory.name]  # no other kind's folder touched
    path = directory / "tokenizer.json"
    stamp = path.stat().st_mtime_ns
    reused = vocab.get_tokenizer(splits["train"], 200, "nsmc", tmp_path, kind)
    assert path.stat().st_mtime_ns == stamp and vocab.kind_of(reused) == kind  # same texts: reused
    vocab.get_tokenizer(splits["valid"], 200, "nsmc", tmp_path, kind)
    assert path.stat().st_mtime_ns != stamp  # other texts: retrained


def test_a_folder_of_another_kind_is_retrained(tmp_path, data_dir):
    train = corpus.load_dataset("nsmc", data_dir=data_dir)["train"]
    vocab.get_tokenizer(train, 200, "nsmc", tmp_path, "sentencepiece-bpe")
    # A folder whose training.json names another kind (copied by hand) is not reused as this kind.
    source, target = (
        vocab.tokenizer_dir(200, tmp_path, "sentencepiece-bpe"),
        vocab.tokenizer_dir(200, tmp_path),
    )
    source.rename(target)
    assert vocab.kind_of(vocab.get_tokenizer(train, 200, "nsmc", tmp_path)) == "wordpiece"


def test_default_names_are_unchanged_and_other_kinds_get_their_own():
    assert vocab.tokenizer_dir(3000) == Path("tokenizer/vocab_size_3000")
    assert vocab.tokenizer_dir(3000, kind="kiwi") == Path("tokenizer/kiwi_vocab_size_3000")
    assert RunConfig().tokenizer == "wordpiece" and RunConfig(alpha=1.0).run_name() == "base-v3000-none-a1"
    assert RunConfig(teacher="t").run_name() == "base-v3000-t-a0.1-T2"
    names = {kind: RunConfig(alpha=1.0, tokenizer=kind).run_name() for kind in KINDS}
    assert names == {
        "wordpiece": "base-v3000-none-a1",
        "sentencepiece-unigram": "base-v3000-sp-unigram-none-a1",
        "sentencepiece-bpe": "base-v3000-sp-bpe-none-a1",
        "kiwi": "base-v3000-kiwi-none-a1",
    }
    with pytest.raises(ValueError, match=r"tokenizer \(--tokenizer\) must be one of wordpiece, "):
        RunConfig(tokenizer="mecab")
    with pytest.raises(ValueError, match="unknown tokenizer kind 'mecab'"):
        vocab.tokenizer_dir(3000, kind="mecab")


def test_the_setting_reaches_the_cli_stages_and_the_notebook(tmp_path, data_dir):
    parser = distil.build_parser()
    for stage in ("tokenizer", "student", "run"):
        args = parser.parse_args([stage, "--tokenizer", "kiwi", "sentencepiece-bpe"])
        assert args.tokenizer == ["kiwi", "sentencepiece-bpe"]
    configs = distil.student_configs(parser.parse_args(["student", "--tokenizer", "kiwi"]), None)
    assert [c.tokenizer for c in configs] == ["kiwi"]
    params = {"vocab_size": [200], "tokenizer": ["wordpiece", "sentencepiece-unigram"], "alpha": [1.0]}
    _, configs = configs_from_params(params)
    assert [c.tokenizer for c in configs] == ["wordpiece", "sentencepiece-unigram"]
    notebook = json.loads((Path(distil.__file__).parent / "main.ipynb").read_text(encoding="utf-8"))
    cell = next(c for c in notebook["cells"] if c.get("id") == "parameters")
    assert '"tokenizer": ["wordpiece"]' in "".join(cell["source"])
    distil.main(["tokenizer", *cli_common(tmp_path, data_dir), "--tokenizer", "sentencepiece-bpe", "kiwi"])
    folders = sorted(p.name for p in (tmp_path / "tok").iterdir())
    assert folders == ["kiwi_vocab_size_3000", "sentencepiece-bpe_vocab_size_3000"]


@pytest.fixture(scope="module")
def students(tmp_path_factory, data_dir) -> dict[str, Path]:
    """A tiny student per kind, trained by train.train_student: kind -> its run folder."""
    root = tmp_path_factory.mktemp("kinds")
    paths = Paths(str(data_dir), str(root / "data"), str(root / "tok"), str(root / "t"), str(root / "runs"))
    runs = {}
    for kind in KINDS:
        cfg = RunConfig(
            alpha=1.0, tokenizer=kind, size="tiny", vocab_size=300, epochs=2, lr=1e-2, batch_size=32
        )
        metrics = train_student(cfg, paths, device="cpu")
        assert metrics["tokenizer"] == kind
        runs[kind] = Path(metrics["run_dir"])
    return runs


@pytest.mark.parametrize("kind", KINDS)
def test_a_student_of_each_kind_round_trips_and_predicts_alike_on_every_backend(kind, students, tmp_path):
    run_dir = students[kind]
    texts = [*TEXTS, "", "   "]
    as_trained = encode(vocab.load_tokenizer(run_dir / "tokenizer"), TEXTS, 128)
    torch_student = Student.from_pretrained(run_dir / "student")
    assert vocab.kind_of(torch_student.tokenizer) == kind
    assert encode(torch_student.tokenizer, TEXTS, 128) == as_trained
    logits = torch_student.predict_logits(texts)
    bundle = torch_student.save_pretrained(tmp_path / "bundle")  # the folder push_to_hub uploads
    assert f"| tokenizer | {vocab.KIND_NAMES[kind]}, " in (bundle / "README.md").read_text(encoding="utf-8")
    for folder, backend in [(run_dir / "student", "onnx"), (bundle, "torch"), (bundle, "onnx")]:
        student = Student.from_pretrained(folder, backend=backend)
        assert encode(student.tokenizer, TEXTS, 128) == as_trained
        assert student.predict(texts) == torch_student.predict(texts)
        np.testing.assert_allclose(student.predict_logits(texts), logits, atol=1e-5)
    config = json.loads((bundle / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert ("pretokenizer" in config) == (kind == "kiwi")


def test_kiwi_students_tokenize_alike_from_several_threads(students):
    student = Student.from_pretrained(students["kiwi"] / "student", backend="onnx")
    batches = [[f"{text} {i}" for text in TEXTS] * 5 for i in range(6)]
    expected = [student.predict_logits(batch) for batch in batches]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = student.predict_logits(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, logits in enumerate(expected):
        np.testing.assert_array_equal(results[i], logits)
    assert len(vocab._KIWI) == 1  # one Kiwi analyser for the whole process


def test_a_kiwi_folder_without_kiwipiepy_is_a_one_line_error(students, monkeypatch, capsys):
    folder = students["kiwi"] / "student"
    monkeypatch.setitem(sys.modules, "kiwipiepy", None)  # import kiwipiepy now fails
    with pytest.raises(vocab.MissingPackageError) as err:
        Student.from_pretrained(folder)
    assert "pip install kiwipiepy" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SystemExit):
        distil.main(["predict", "--student", str(folder), "좋아요"])
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and "kiwipiepy is not installed" in stderr and stderr.count("\n") == 1
    Student.from_pretrained(students["wordpiece"] / "student").predict("좋아요")  # other kinds need no Kiwi


def test_the_table_tool_reads_finished_runs(students, data_dir, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("tokenizer_table", ROOT / "tools" / "tokenizer_table.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    runs = students["kiwi"].parents[1]
    options = ["--sample", "40", "--repeats", "1", "--out", str(tmp_path)]
    result = tool.main(["--data-dir", str(data_dir), "--runs", str(runs), *options])
    rows = {row["kind"]: row for row in result["rows"]}
    assert list(rows) == list(KINDS) and {(r["vocab_size"], r["size"]) for r in rows.values()} == {
        (300, "tiny")
    }
    for row in rows.values():
        metrics = json.loads((runs / "nsmc" / row["run"] / "metrics.json").read_text(encoding="utf-8"))
        assert row["test_accuracy"] == metrics["test_accuracy"] and row["sentences_per_s"] > 0
        assert (
            row["unk_rate"] == 0 and row["tokens_per_review"] > 1
        )  # the test reviews' words were trained on
        assert row["speed_vs_wordpiece_base"] is None  # no WordPiece base run to compare with
    assert len(result["missing"]) == 16  # the planned grid: vocab 3000 and 9000
    assert json.loads((tmp_path / "tokenizers.json").read_text(encoding="utf-8"))["rows"] == result["rows"]
    table = (tmp_path / "tokenizers.md").read_text(encoding="utf-8")
    assert "| kiwi | 300 | tiny |" in table and "Not finished" in table
    assert capsys.readouterr().out.startswith("machine: ")


def test_a_run_saved_before_tokenizer_kinds_is_reused(students, data_dir):
    run_dir = students["wordpiece"]
    cfg = RunConfig(alpha=1.0, size="tiny", vocab_size=300, epochs=2, lr=1e-2, batch_size=32)
    assert run_dir.name == cfg.run_name()
    for name in ("config.json", "metrics.json"):  # as a run finished before the setting existed wrote them
        record = json.loads((run_dir / name).read_text(encoding="utf-8"))
        del record["tokenizer"]
        (run_dir / name).write_text(json.dumps(record), encoding="utf-8")
    weights = run_dir / "student" / model.WEIGHTS_NAME
    stamp = weights.stat().st_mtime_ns
    root = run_dir.parents[2]
    paths = Paths(str(data_dir), str(root / "data"), str(root / "tok"), str(root / "t"), str(root / "runs"))
    metrics = train_student(dataclasses.replace(cfg), paths, device="cpu")
    assert weights.stat().st_mtime_ns == stamp and "tokenizer" not in metrics


def test_kiwi_splits_many_texts_behind_a_progress_bar(monkeypatch):
    bars = []

    def recording_bar(iterable, **kwargs):
        bars.append(kwargs)
        return iterable

    monkeypatch.setattr(vocab, "tqdm", recording_bar)
    monkeypatch.setattr(vocab, "PROGRESS_TEXTS", 3)
    spec = vocab.kiwi_spec()
    assert vocab.kiwi_morphemes(["재밌었어요"] * 3, spec) == ["재밌 었 어요"] * 3
    assert vocab.kiwi_morphemes(["좋다"], spec) == ["좋 다"]
    assert [(bar["total"], bar["disable"]) for bar in bars] == [(3, None), (1, True)]  # None: on a terminal
