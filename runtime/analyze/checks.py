"""Pure measurements of a dataset before it is prepared: duplicates, languages, conversation shape, and the
thresholds that turn them into warnings. Input: normalised samples (prepare's `Example`) and their tokens.

Near duplicates use datasketch's MinHash + LSH (word 3-gram shingles, Jaccard ≥ NEAR_JACCARD); languages
use py3langid, whose model ships inside the package (nothing is downloaded). Both are imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

NEAR_JACCARD = 0.8
NUM_PERM = 64
SHORT_CHARS = 8  # a message shorter than this (stripped) is "very short"
LONG_CHARS = 16_000  # a message longer than this is "very long"
LANG_CHARS = 1_000  # characters of a sample given to the language identifier
LANG_MIN_WORDS = 4  # below this a language guess is noise: counted as "und" (undetermined)
# share of samples above which a finding is a warning
THRESHOLDS = {"exact_duplicates": 0.01, "near_duplicates": 0.05, "empty_messages": 0.0, "very_short_messages": 0.05,
              "very_long_messages": 0.01, "assistant_without_end_of_turn": 0.0, "over_max_length": 0.05,
              "minority_language": 0.05, "bad_samples": 0.0}
WORD = re.compile(r"\w+", re.UNICODE)


def sample_text(messages: list[dict[str, Any]] | None, segments: list[tuple[str, bool]] | None) -> str:
    if messages is not None:
        return "\n".join(str(m.get("content") or "") for m in messages)
    return "".join(t for t, _ in segments or [])


def exact_duplicates(keys: Sequence[str]) -> tuple[int, list[list[int]]]:
    """(samples that repeat an earlier one, groups of indices sharing one content); keys are canonical texts."""
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(hashlib.sha256(k.encode()).hexdigest(), []).append(i)
    dup = [g for g in groups.values() if len(g) > 1]
    return sum(len(g) - 1 for g in dup), dup


def canonical(messages: list[dict[str, Any]] | None, segments: list[tuple[str, bool]] | None) -> str:
    return json.dumps(messages if messages is not None else segments, sort_keys=True, ensure_ascii=False)


def near_duplicates(texts: Sequence[str], skip: set[int] | None = None, threshold: float = NEAR_JACCARD
                    ) -> tuple[int, list[tuple[int, int]]]:
    """(samples with a near duplicate earlier in the list, example pairs (earlier, later)). `skip`: indices
    already counted as exact duplicates."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    # one set of permutations for every sample: drawing them per MinHash costs ~1 ms, 20x the hashing
    proto = MinHash(num_perm=NUM_PERM, seed=1)
    skip = skip or set()
    count, pairs = 0, list[tuple[int, int]]()
    for i, text in enumerate(texts):
        words = WORD.findall(text.lower())
        shingles = {" ".join(words[j:j + 3]).encode() for j in range(max(1, len(words) - 2))}
        if not words:
            continue
        mh = MinHash(num_perm=NUM_PERM, seed=1, permutations=proto.permutations, scheme=proto.scheme)
        mh.update_batch(list(shingles))
        if i not in skip:
            hits = lsh.query(mh)
            if hits:
                count += 1
                if len(pairs) < 10:
                    pairs.append((min(int(h) for h in hits), i))
        lsh.insert(str(i), mh)
    return count, pairs


def languages(texts: Sequence[str]) -> Counter[str]:
    import py3langid

    out: Counter[str] = Counter()
    for text in texts:
        text = text[:LANG_CHARS].strip()
        if not text:
            out["none"] += 1
        elif len(WORD.findall(text)) < LANG_MIN_WORDS:
            out["und"] += 1
        else:
            out[py3langid.classify(text)[0]] += 1
    return out


def shape(messages_list: Sequence[list[dict[str, Any]]]) -> dict[str, Any]:
    """Turns per conversation, messages per role, empty / very short / very long messages."""
    turns = [len(m) for m in messages_list]
    roles: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    empty = short = long = 0
    for msgs in messages_list:
        for m in msgs:
            content = str(m.get("content") or "").strip()
            roles[m["role"]] += 1
            chars[m["role"]] += len(content)
            empty += not content and not m.get("tool_calls")
            short += 0 < len(content) < SHORT_CHARS
            long += len(content) > LONG_CHARS
    last = Counter(m[-1]["role"] for m in messages_list if m)
    return {"conversations": len(turns), "turns": _dist(turns),
            "turns_histogram": dict(sorted(Counter(turns).items())),
            "messages_per_role": dict(sorted(roles.items())),
            "mean_chars_per_role": {r: round(chars[r] / roles[r], 1) for r in sorted(roles)},
            "last_role": dict(sorted(last.items())),
            "empty_messages": empty, "very_short_messages": short, "very_long_messages": long}


def without_end_of_turn(labels_list: Sequence[Sequence[int]], ids_list: Sequence[Sequence[int]],
                        eot_ids: frozenset[int]) -> int:
    """Samples with a trained span (a run of labels != -100) whose last token is not an end-of-turn token:
    the model would learn replies that never stop."""
    n = 0
    for ids, labels in zip(ids_list, labels_list, strict=True):
        for i, lab in enumerate(labels):
            if lab != -100 and (i + 1 == len(labels) or labels[i + 1] == -100) and ids[i] not in eot_ids:
                n += 1
                break
    return n


def _dist(values: Sequence[int]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    import numpy as np

    a = np.asarray(values)
    return {"count": int(a.size), "min": int(a.min()), "mean": round(float(a.mean()), 2),
            "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "max": int(a.max())}


def token_lengths(lengths: Sequence[int], max_length: int | None) -> dict[str, Any]:
    out = _dist(lengths)
    if max_length and lengths:
        out["over_max_length"] = int(sum(1 for x in lengths if x > max_length))
        out["max_length"] = max_length
    return out


def warnings(s: dict[str, Any]) -> list[str]:
    """The findings above their threshold, as sentences ("31% of samples are exact duplicates")."""
    n = max(1, s["samples"])
    found = []

    def check(key: str, count: int, what: str, of: int = n) -> None:
        if count and count / max(1, of) > THRESHOLDS[key]:
            found.append(f"{100 * count / max(1, of):.0f}% {what} ({count} of {of})")

    check("bad_samples", s["bad_total"], "of rows are bad samples and would be skipped", s["rows"])
    check("exact_duplicates", s["exact_duplicates"], "of samples are exact duplicates")
    check("near_duplicates", s["near_duplicates"], f"of samples are near duplicates (Jaccard ≥ {NEAR_JACCARD})")
    msgs = sum(s["shape"].get("messages_per_role", {}).values()) if s.get("shape") else 0
    if msgs:
        check("empty_messages", s["shape"]["empty_messages"], "of messages are empty", msgs)
        check("very_short_messages", s["shape"]["very_short_messages"], f"of messages are under {SHORT_CHARS} characters", msgs)
        check("very_long_messages", s["shape"]["very_long_messages"], f"of messages are over {LONG_CHARS} characters", msgs)
    check("assistant_without_end_of_turn", s["assistant_without_end_of_turn"],
          "of samples have a trained turn that does not end with an end-of-turn token")
    over = s["tokens"].get("over_max_length", 0)
    check("over_max_length", over, f"of samples are longer than max_length {s['tokens'].get('max_length')}")
    langs = {k: v for k, v in s["languages"].items() if k not in ("und", "none")}  # too short to tell
    if langs:
        main = max(langs, key=lambda k: langs[k])
        rest = sum(langs.values()) - langs[main]
        if rest / n > THRESHOLDS["minority_language"]:
            found.append(f"{100 * rest / n:.0f}% of samples are not in the main language {main!r} ({rest} of {n}: "
                         + ", ".join(f"{k} {v}" for k, v in sorted(langs.items(), key=lambda kv: -kv[1]) if k != main)
                         + ")")
    return found
