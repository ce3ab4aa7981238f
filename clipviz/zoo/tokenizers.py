"""Train small tokenizers offline, each in its model family's own format.

The bundled shapes models must load with nothing but ``transformers``, exactly like a Hub
checkpoint, so each one carries the tokenizer kind its family uses in the real world:

* CLIP (Radford et al., 2021): byte-level BPE with a ``</w>`` end-of-word suffix, lower-cased,
  ``<|startoftext|>`` / ``<|endoftext|>``; padding with ``<|endoftext|>`` as openai checkpoints do.
* Chinese-CLIP (Yang et al., 2022): BERT WordPiece (``vocab.txt``) with ``[CLS]``/``[SEP]``/
  ``[PAD]``/``[UNK]``/``[MASK]``; every Chinese character is its own word (``tokenize_chinese_chars``).
* AltCLIP (Chen et al., 2022): XLM-R's sentencepiece-style unigram model with ``<s>``, ``<pad>``,
  ``</s>``, ``<unk>``, ``<mask>`` in fairseq order (unk at id 3, mask last).

The vocabularies are learned from a caller-supplied corpus with the ``tokenizers`` trainers, using
the very normaliser and pre-tokeniser the transformers class installs, so that the trained merges /
pieces agree with how the class splits text at inference time.
"""

from __future__ import annotations

import json

FAMILIES = ("clip", "chinese_clip", "altclip")

_CLIP_BOS, _CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] first: BertConfig.pad_token_id == 0
_XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # fairseq order; XLMRobertaTokenizer expects unk id 3


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")


def build_tokenizer(family: str, corpus: list[str], vocab_size: int = 1024, model_max_length: int = 32):
    """Learn a tokenizer of ``family``'s kind from ``corpus`` and return the transformers class.

    The result round-trips through ``save_pretrained`` / ``AutoTokenizer.from_pretrained``.
    ``vocab_size`` is an upper bound: a small corpus yields fewer tokens (CLIP's byte-level BPE
    always keeps its 512 byte symbols, so any text stays encodable).
    """
    _check_family(family)
    corpus = [str(text) for text in corpus]
    if not corpus:
        raise ValueError("corpus must contain at least one text")
    builders = {"clip": _build_clip, "chinese_clip": _build_chinese_clip, "altclip": _build_altclip}
    return builders[family](corpus, vocab_size, model_max_length)


def _trained_model_json(template_backend, model, trainer, corpus: list[str]) -> dict:
    """Train ``model`` with the template's normaliser/pre-tokeniser; return the model's JSON."""
    from tokenizers import Tokenizer

    backend = Tokenizer(model)
    backend.normalizer = template_backend.normalizer
    backend.pre_tokenizer = template_backend.pre_tokenizer
    backend.train_from_iterator(corpus, trainer=trainer)
    return json.loads(backend.to_str())["model"]


def _build_clip(corpus, vocab_size, model_max_length):
    from tokenizers import pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import CLIPTokenizer

    byte_alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[_CLIP_BOS, _CLIP_EOS],
        initial_alphabet=byte_alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    learned = _trained_model_json(
        CLIPTokenizer().backend_tokenizer, BPE(end_of_word_suffix="</w>"), trainer, corpus
    )
    # CLIP's vocabulary holds every byte symbol both inside and at the end of a word, so text
    # never seen in training still encodes (no unknown tokens), as with openai's 49408 vocab.
    vocab = dict(learned["vocab"])
    for symbol in byte_alphabet + [s + "</w>" for s in byte_alphabet]:
        vocab.setdefault(symbol, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _build_chinese_clip(corpus, vocab_size, model_max_length):
    from tokenizers import trainers
    from tokenizers.models import WordPiece
    from transformers import BertTokenizer

    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=_BERT_SPECIALS,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    learned = _trained_model_json(
        BertTokenizer().backend_tokenizer, WordPiece(unk_token="[UNK]"), trainer, corpus
    )
    return BertTokenizer(vocab=dict(learned["vocab"]), model_max_length=model_max_length)


def _build_altclip(corpus, vocab_size, model_max_length):
    from tokenizers import trainers
    from tokenizers.models import Unigram
    from transformers import XLMRobertaTokenizer

    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=_XLMR_SPECIALS,
        unk_token="<unk>",
        show_progress=False,
    )
    learned = _trained_model_json(XLMRobertaTokenizer().backend_tokenizer, Unigram(), trainer, corpus)
    pieces = [(piece, float(score)) for piece, score in learned["vocab"]]
    if [p for p, _ in pieces[:4]] != _XLMR_SPECIALS:
        raise RuntimeError("unigram trainer did not put the XLM-R special tokens first")
    pieces.append(("<mask>", 0.0))  # XLM-R keeps <mask> as the last id
    return XLMRobertaTokenizer(vocab=pieces, model_max_length=model_max_length)


def build_image_processor(family: str, image_size: int):
    """The family's image processor (PIL backend): resize the short side, then centre-crop."""
    _check_family(family)
    from transformers import ChineseCLIPImageProcessorPil, CLIPImageProcessorPil

    cls = ChineseCLIPImageProcessorPil if family == "chinese_clip" else CLIPImageProcessorPil
    return cls(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )


def build_processor(family: str, tokenizer, image_size: int):
    """Pair ``tokenizer`` with the family's image processor in the family's processor class.

    CLIP → ``CLIPProcessor``, Chinese-CLIP → ``ChineseCLIPProcessor``, AltCLIP →
    ``AltCLIPProcessor``; all resize the short side to ``image_size`` then centre-crop a square.
    """
    _check_family(family)
    from transformers import AltCLIPProcessor, ChineseCLIPProcessor, CLIPProcessor

    cls = {"clip": CLIPProcessor, "chinese_clip": ChineseCLIPProcessor, "altclip": AltCLIPProcessor}[family]
    return cls(image_processor=build_image_processor(family, image_size), tokenizer=tokenizer)


def write_vocab_files(tokenizer, directory) -> list[str]:
    """Write the classic, human-readable vocabulary files next to ``tokenizer.json``.

    transformers 5 saves only ``tokenizer.json``; Hub checkpoints of CLIP also carry
    ``vocab.json`` + ``merges.txt`` and those of Chinese-CLIP ``vocab.txt``. Writing them too keeps
    the bundled models readable by older tools and by a curious student. (AltCLIP's unigram
    pieces and scores live in ``tokenizer.json``.) Returns the paths written.
    """
    from pathlib import Path

    directory = Path(directory)
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    written = []
    if model["type"] == "BPE":
        vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
        vocab_path.write_text(json.dumps(model["vocab"], ensure_ascii=False) + "\n", encoding="utf-8")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        merges_path.write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
        written += [str(vocab_path), str(merges_path)]
    elif model["type"] == "WordPiece":
        vocab_path = directory / "vocab.txt"
        by_id = sorted(model["vocab"].items(), key=lambda item: item[1])
        vocab_path.write_text("".join(token + "\n" for token, _ in by_id), encoding="utf-8")
        written.append(str(vocab_path))
    return written
