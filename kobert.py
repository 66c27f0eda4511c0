"""KoBERT's SentencePiece tokenizer, read from the files KoBERT checkpoints ship (``teacher.load_classifier``
uses it for any BERT or DistilBERT folder that has them)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

import sentencepiece as spm
from transformers import PretrainedConfig, PreTrainedTokenizer

_KOBERT_SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


class KoBertTokenizer(PreTrainedTokenizer):
    """KoBERT's SentencePiece tokenizer, read from the files KoBERT checkpoints ship.

    * monologg/kobert, monologg/distilkobert: ``tokenizer_78b3253a26.model`` + ``vocab.txt``; token ids come
      from vocab.txt. Their own ``KoBertTokenizer`` (a file to copy) fails on transformers >= 4.34 with
      ``'token2idx'`` errors; ``AutoTokenizer`` reads vocab.txt as WordPiece, so Korean words become [UNK].
    * skt/kobert-base-v1: ``spiece.model``; token ids are the SentencePiece ids. Its tokenizer_config names
      ``XLNetTokenizer``, which ``AutoTokenizer`` builds with XLNet's ``<sep> <cls>`` ending and left padding;
      the working ``kobert_tokenizer`` package must be installed from git.

    Sequences are ``[CLS] text [SEP]``, as KoBERT was pre-trained; no other package is needed.
    """

    vocab_files_names: ClassVar[dict[str, str]] = {"sp_model_file": "spiece.model", "vocab_txt": "vocab.txt"}
    model_input_names: ClassVar[list[str]] = ["input_ids", "token_type_ids", "attention_mask"]

    def __init__(self, sp_model_file: str | Path, vocab_txt: str | Path | None = None, **kwargs):
        self.sp_model_file = Path(sp_model_file)
        self.vocab_txt = Path(vocab_txt) if vocab_txt is not None else None
        self.sp_model = spm.SentencePieceProcessor(model_file=str(self.sp_model_file))
        if self.vocab_txt is not None:
            self.pieces = [line.strip() for line in self.vocab_txt.read_text(encoding="utf-8").splitlines()]
        else:
            self.pieces = [self.sp_model.id_to_piece(i) for i in range(self.sp_model.get_piece_size())]
        self.piece_ids = {piece: i for i, piece in enumerate(self.pieces)}
        super().__init__(special_tokens_pattern="cls_sep", **{**_KOBERT_SPECIAL_TOKENS, **kwargs})

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def get_vocab(self) -> dict[str, int]:
        return {**self.piece_ids, **self._added_tokens_encoder}

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def _convert_token_to_id(self, token: str) -> int:
        return self.piece_ids.get(token, self.unk_token_id)

    def _convert_id_to_token(self, index: int) -> str:
        return self.pieces[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self.sp_model.decode_pieces(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Copy the SentencePiece model (and vocab.txt) under their original names: the same layout loads
        again."""
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        saved = [Path(save_directory) / f"{prefix}{self.sp_model_file.name}"]
        shutil.copyfile(self.sp_model_file, saved[0])
        if self.vocab_txt is not None:
            saved.append(Path(save_directory) / f"{prefix}vocab.txt")
            saved[-1].write_text("".join(piece + "\n" for piece in self.pieces), encoding="utf-8")
        return tuple(str(p) for p in saved)


def kobert_files(model_dir: Path, config: PretrainedConfig) -> tuple[Path, Path | None] | None:
    """(SentencePiece model, vocab.txt or None) when ``model_dir`` is a BERT with KoBERT's tokenizer files."""
    if config.model_type not in ("bert", "distilbert"):
        return None
    sp_models = sorted(model_dir.glob("*.model"))
    if len(sp_models) != 1:
        return None
    vocab_txt = model_dir / "vocab.txt"
    return sp_models[0], vocab_txt if vocab_txt.is_file() else None
