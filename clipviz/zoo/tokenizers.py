"""Train small tokenizers offline, each in its model family's own format.

The bundled shapes models must load with nothing but ``transformers``, exactly like a Hub
checkpoint, so each one carries the tokenizer kind its family uses in the real world:

* CLIP (Radford et al., 2021): byte-level BPE with a ``</w>`` end-of-word suffix, lower-cased,
  ``<|startoftext|>`` / ``<|endoftext|>``; padding with ``<|endoftext|>`` as openai checkpoints do.
* Chinese-CLIP (Yang et al., 2022): BERT WordPiece (``vocab.txt``) with ``[CLS]``/``[SEP]``/
  ``[PAD]``/``[UNK]``/``[MASK]``; every Chinese character is its own word (``tokenize_chinese_chars``).
* AltCLIP (Chen et al., 2022): XLM-R's sentencepiece-style unigram model with ``<s>``, ``<pad>``,
  ``</s>``, ``<unk>``, ``<mask>`` in fairseq order (unk at id 3, mask last).

The vocabularies are learned from a caller-supplied corpus by small deterministic learners (BPE,
WordPiece-style whole words, unigram), using the very normaliser and pre-tokeniser the
transformers class installs, so that the learned merges / pieces agree with how the class splits
text at inference time. The same corpus always gives the same vocabulary.
"""

from __future__ import annotations

import json
import math
import string
from collections import Counter

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


# The ``tokenizers`` trainers break ties between equally frequent pairs in hash-map order, which
# changes from run to run; the small learners below break ties by the text itself, so the same
# corpus always gives the same vocabulary (and a training run stays deterministic in its seed).


def _word_counts(template_backend, corpus: list[str]) -> Counter:
    """Words as the transformers class splits them: its own normaliser, then pre-tokeniser."""
    counts = Counter()
    for text in corpus:
        if template_backend.normalizer is not None:
            text = template_backend.normalizer.normalize_str(text)
        counts.update(piece for piece, _ in template_backend.pre_tokenizer.pre_tokenize_str(text))
    return counts


def _learn_bpe(word_counts: Counter, max_merges: int, suffix: str) -> list[tuple[str, str]]:
    """Byte-pair encoding (Sennrich et al. 2016): repeatedly merge the most frequent pair."""
    words = Counter()
    for word, count in word_counts.items():
        words[tuple(word[:-1]) + (word[-1] + suffix,)] += count
    merges = []
    while len(merges) < max_merges:
        pairs = Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged = Counter()
        for symbols, count in words.items():
            out, i = [], 0
            while i < len(symbols):
                if symbols[i:i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return merges


def _build_clip(corpus, vocab_size, model_max_length):
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    # CLIP's vocabulary holds every byte symbol both inside and at the end of a word, so text
    # never seen in training still encodes (no unknown tokens), as with openai's 49408 vocab.
    byte_alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [_CLIP_BOS, _CLIP_EOS] + byte_alphabet + [b + "</w>" for b in byte_alphabet]
    counts = _word_counts(CLIPTokenizer().backend_tokenizer, corpus)
    merges = _learn_bpe(counts, max(0, vocab_size - len(tokens)), "</w>")
    for a, b in merges:
        if a + b not in tokens:
            tokens.append(a + b)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _build_chinese_clip(corpus, vocab_size, model_max_length):
    from transformers import BertTokenizer

    # Every character, alone and as a "##" continuation, so any word of the corpus's alphabet can
    # be spelled; then whole words by frequency. After BERT's pre-tokenisation each Chinese
    # character already is a word of its own, as in Chinese-CLIP's vocabulary.
    counts = _word_counts(BertTokenizer().backend_tokenizer, corpus)
    chars = sorted({c for word in counts for c in word} | set(string.ascii_lowercase + string.digits))
    tokens = _BERT_SPECIALS + chars + ["##" + c for c in chars]
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(tokens) >= vocab_size:
            break
        if word not in tokens:
            tokens.append(word)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return BertTokenizer(vocab=vocab, model_max_length=model_max_length)


def _build_altclip(corpus, vocab_size, model_max_length):
    from transformers import XLMRobertaTokenizer

    # A unigram language model (Kudo 2018) seeded as sentencepiece seeds it: every character plus
    # the most frequent substrings (weighted by length), each scored by its log frequency;
    # Viterbi segmentation then prefers long, frequent pieces. (Without sentencepiece's EM
    # pruning: the shapes world's corpus is tiny.)
    counts = _word_counts(XLMRobertaTokenizer().backend_tokenizer, corpus)
    char_counts, substring_counts = Counter(), Counter()
    for word, count in counts.items():
        for c in word:
            char_counts[c] += count
        for i in range(len(word)):
            for j in range(i + 2, min(len(word), i + 8) + 1):
                substring_counts[word[i:j]] += count
    budget = max(0, vocab_size - len(_XLMR_SPECIALS) - 1 - len(char_counts))
    frequent = sorted((p for p, c in substring_counts.items() if c >= 2),
                      key=lambda p: (-substring_counts[p] * len(p), p))[:budget]
    piece_counts = dict(char_counts) | {p: substring_counts[p] for p in frequent}
    total = sum(piece_counts.values())
    pieces = [(s, 0.0) for s in _XLMR_SPECIALS]
    pieces += [(p, math.log(c / total)) for p, c in sorted(piece_counts.items(), key=lambda i: (-i[1], i[0]))]
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
