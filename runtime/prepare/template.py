"""Render chats with the bundle's template, tokenize in batches, and compute the loss mask.

Two mask sources, picked per dataset:

* `generation` (tagged template, roles_to_train == [assistant]): one `apply_chat_template(batch,
  tokenize=True, return_dict=True, return_assistant_tokens_mask=True)` call per batch: rendering,
  batched fast tokenization and the assistant mask in one pass.
* `prefix` (untagged template, plan `template.mask: prefix`, or roles other than assistant trained):
  render the whole chat once, tokenize it once (with offsets), and find each message's character span
  by rendering the message prefixes (messages[:i], with the generation prompt before an assistant
  turn): the `compute_assistant_mask_from_messages` approach, costing one extra render per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from loft.runtime.prepare.errors import BadSample
from loft.runtime.prepare.formats import DatasetSpec, Example
from loft.runtime.prepare.mask import IGNORE, labels_for, runs_of, turns_from_runs
from loft.runtime.prepare.render import SpanRenderer

# Templates that print today's date (Llama 3.x `strftime_now`) get this fixed one instead, so prepared data
# and its cache do not change with the calendar; `plan.template.date_string` overrides it. This is the
# date the Llama 3.x templates themselves use when no clock is available.
DEFAULT_DATE = "26 Jul 2024"
TRAIN_FLAG = "training"  # a message's own trained flag (Axolotl's message_field_training, normalised by formats)


def template_variables(template_plan: dict[str, Any] | None) -> dict[str, Any]:
    """The extra variables every render of the bundle's template gets: prepare's samples, the inspector's
    preview and the eval stage's prompts, so a prompt renders as training rendered it (the frozen date)."""
    return {"date_string": (template_plan or {}).get("date_string") or DEFAULT_DATE}

SUB_BATCH = 64  # chats per render/encode step of the pipeline
# Rust encodes in flight (GIL released): the encode of a chat costs about what its rendering, parsing and
# labels cost in Python, so one encode thread keeps pace with the Python thread, and a second one takes the
# time the Python thread spends waiting (measured on 2 cores: the Python thread waited 0.8-2.8 s of 2.3-5.8 s)
ENCODE_THREADS = 2


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    complete: bool
    text: str = ""  # the rendered text (kept only for the inspector)


def eot_token_ids(tokenizer: Any, end_of_turn: str | None) -> frozenset[int]:
    """Ids that end a turn: the template's end-of-turn token and the tokenizer's eos."""
    ids = set()
    for tok in (end_of_turn, tokenizer.eos_token):
        if tok:
            tid = tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id:
                ids.add(tid)
    return frozenset(ids)


def _spans_to_runs(spans: list[tuple[int, int]], offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Char spans (sorted, disjoint) → token runs [first, last + 1): the tokens overlapping each span, one run
    per span, so that two trained messages in a row stay two turns (each ends on its own end-of-turn)."""
    runs: list[tuple[int, int]] = []
    t, n = 0, len(offsets)
    for s, e in spans:
        while t < n and offsets[t][1] <= s:
            t += 1
        u = t
        while u < n and offsets[u][0] < e:
            u += 1
        if u > t:
            runs.append((t, u))
    return runs


def _span_to_tokens(enc: Any, start: int, end: int) -> tuple[int, int] | None:
    """Char span [start, end) → token run [first, last + 1) of the tokens it overlaps.

    A boundary char that no token covers (whitespace that the tokenizer's offsets leave out) makes
    `char_to_token` return None; older transformers then ran the mask to the end of the sequence.
    Here the search moves inward to the nearest covered char instead."""
    first = next((t for c in range(start, end) if (t := enc.char_to_token(c)) is not None), None)
    if first is None:
        return None
    last = next((t for c in range(end - 1, start - 1, -1) if (t := enc.char_to_token(c)) is not None), first)
    return (first, last + 1)


class Encoder:
    """Picklable callable state for `Dataset.map` workers: tokenizer, template and mask settings."""

    def __init__(self, tokenizer: Any, template_text: str, mask_mode: str, end_of_turn: str | None,
                 spec: DatasetSpec, train_on_incomplete: bool = False, keep_text: bool = False,
                 template_vars: dict[str, Any] | None = None) -> None:
        self.tokenizer = tokenizer
        self.template_vars = {"date_string": DEFAULT_DATE, **(template_vars or {})}
        self.template = template_text
        self.spec = spec
        self.eot_ids = eot_token_ids(tokenizer, end_of_turn)
        self.train_on_incomplete = train_on_incomplete
        self.keep_text = keep_text
        self._checked = False
        self._renderer: SpanRenderer | bool | None = None  # False: unavailable
        self.fast = True  # False when the fast path disagrees with apply_chat_template for this tokenizer
        self.mask_mode = "generation" if mask_mode == "generation" and tuple(spec.roles_to_train) == ("assistant",) \
            and not spec.message_field_training \
            else "prefix"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_renderer": None}  # compiled per process (its extension class is local)

    # -- chats ---------------------------------------------------------------------------------
    def encode(self, examples: Sequence[Example]) -> list[Encoded | BadSample]:
        """Encode a batch; a sample the template rejects comes back as BadSample('template_error')."""
        out: list[Encoded | BadSample | None] = [None] * len(examples)
        chats = [(i, e) for i, e in enumerate(examples) if e.messages is not None]
        plain = [(i, e) for i, e in enumerate(examples) if e.segments is not None]
        if chats:
            enc = self._encode_generation if self.mask_mode == "generation" else self._encode_prefix
            for (i, _), result in zip(chats, enc([e for _, e in chats]), strict=True):
                out[i] = result
        if plain:
            for (i, _), result in zip(plain, self._encode_segments([e for _, e in plain]), strict=True):
                out[i] = result
        return [r if r is not None else BadSample("bad_type") for r in out]

    def encode_stream(self, chunks: Iterable[tuple[Any, Sequence[Example]]]
                      ) -> Iterator[tuple[Any, list[Encoded | BadSample]]]:
        """(key, examples) chunks in → (key, results) out, in order. Chats under the generation mask are
        pipelined across chunks: the Rust encodes of chunks i and i - 1 (GIL released) run in helper threads
        while this thread prepares chunk i + 1 (the caller's lazy parsing and normalising included, since
        `chunks` is consumed one chunk at a time) and builds the labels of chunk i - 2."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        pending: deque[tuple[Any, list[Example], Any, Any]] = deque()
        with ThreadPoolExecutor(max_workers=ENCODE_THREADS, thread_name_prefix="loft-encode") as pool:
            for key, examples in chunks:
                chunk = list(examples)
                plain = not (self.mask_mode == "generation" and self._checked and self.fast and chunk
                             and all(e.messages is not None for e in chunk))
                if plain:
                    while pending:
                        done = pending.popleft()
                        yield done[0], self._labels_chunk(*done[1:])
                    yield key, self.encode(chunk)
                    continue
                rendered = self._render_chunk(chunk)
                job = pool.submit(self._backend_encode, rendered[0]) if rendered is not None else None
                pending.append((key, chunk, rendered, job))
                if len(pending) > ENCODE_THREADS:
                    done = pending.popleft()
                    yield done[0], self._labels_chunk(*done[1:])
            while pending:
                done = pending.popleft()
                yield done[0], self._labels_chunk(*done[1:])

    def _render_ok(self, examples: Sequence[Example]) -> tuple[list[int], dict[int, BadSample]]:
        """Indices whose chat renders (templates may raise on e.g. bad role order), and the failures."""
        ok, bad = [], {}
        for i, e in enumerate(examples):
            try:
                self.tokenizer.apply_chat_template(e.messages, chat_template=self.template, tokenize=False,
                                                **self.template_vars)
                ok.append(i)
            except Exception as err:  # jinja TemplateError / raise_exception in the template
                bad[i] = BadSample("template_error", str(err)[:200])
        return ok, bad

    def _encode_generation(self, examples: Sequence[Example]) -> list[Encoded | BadSample]:
        """Render with generation tracking, batch-encode with the Rust tokenizer, map the char spans to tokens.

        This is what `apply_chat_template(batch, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True)` does, without its per-token Python loop over offsets and its
        BatchEncoding conversion; `_check_equivalence` compares both on the first batch of every dataset.

        Pipelined: the Rust encode of one sub-batch (which releases the GIL) runs in a helper thread while
        Python renders the next sub-batch and builds the labels of the previous one."""
        from concurrent.futures import ThreadPoolExecutor

        chunks = [list(examples[i:i + SUB_BATCH]) for i in range(0, len(examples), SUB_BATCH)]
        if not self._checked and chunks:
            first = self._encode_chunk(chunks[0], self._backend_encode)
            return first + (self._encode_generation([e for c in chunks[1:] for e in c]) if len(chunks) > 1 else [])
        if not self.fast:
            return self._encode_reference(examples)
        results: list[Encoded | BadSample] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="loft-encode") as pool:
            pending = None
            for chunk in chunks:
                rendered = self._render_chunk(chunk)
                job = pool.submit(self._backend_encode, rendered[0]) if rendered is not None else None
                if pending is not None:
                    results += self._labels_chunk(*pending)
                pending = (chunk, rendered, job)
            if pending is not None:
                results += self._labels_chunk(*pending)
        return results

    def _render_chunk(self, chunk: list[Example]) -> tuple[list[str], list[list[tuple[int, int]]]] | None:
        try:
            return self._render_tracked([e.messages for e in chunk])
        except Exception:  # one bad chat fails the whole render: handled per sample in _labels_chunk
            return None

    def _labels_chunk(self, chunk: list[Example], rendered: Any, job: Any) -> list[Encoded | BadSample]:
        if rendered is None:
            return self._encode_chunk(chunk, self._backend_encode)
        return self._finish_chunk(chunk, rendered[0], rendered[1], job.result())

    def _encode_chunk(self, chunk: list[Example], encode: Any) -> list[Encoded | BadSample]:
        """One sub-batch without pipelining (first batch: equivalence check; batches with a bad chat)."""
        rendered = self._render_chunk(chunk)
        if rendered is None:  # find the chats the template rejects, encode the rest
            ok, bad = self._render_ok(chunk)
            good = self._encode_chunk([chunk[i] for i in ok], encode) if ok else []
            merged: list[Encoded | BadSample] = [bad.get(i, BadSample("bad_type")) for i in range(len(chunk))]
            for i, r in zip(ok, good, strict=True):
                merged[i] = r
            return merged
        texts, spans = rendered
        encodings = encode(texts)
        if not self._checked:
            self._check_equivalence([e.messages for e in chunk[:8]], encodings[:8])
        if not self.fast:
            return self._encode_reference(chunk)
        return self._finish_chunk(chunk, texts, spans, encodings)

    def _finish_chunk(self, chunk: list[Example], texts: list[str], spans: list[list[tuple[int, int]]],
                      encodings: list[Any]) -> list[Encoded | BadSample]:
        results: list[Encoded | BadSample] = []
        eot_ids, finish, keep = self.eot_ids, self._finish, self.keep_text
        for enc, char_spans, e, text in zip(encodings, spans, chunk, texts, strict=True):
            ids = enc.ids
            char_to_token = enc.char_to_token
            runs = []
            for s, t in char_spans:
                # both boundary chars covered (the usual case): two lookups; else search inward
                first = char_to_token(s) if t > s else None
                last = char_to_token(t - 1) if first is not None else None
                run = (first, last + 1) if first is not None and last is not None else _span_to_tokens(enc, s, t)
                if run is not None:
                    runs.append(run)
            results.append(finish(ids, turns_from_runs(ids, runs, eot_ids), e.complete, text if keep else ""))
        return results

    def _render_tracked(self, convs: Sequence[Any]) -> tuple[list[str], list[list[tuple[int, int]]]]:
        """Texts and generation char spans: the compiled-marks renderer (render.py), transformers'
        `render_jinja_template` for the chats it hands back."""
        if self._renderer is None:
            try:
                self._renderer = SpanRenderer(self.template, self._render_vars())
            except Exception:  # e.g. transformers moved the helpers render.py borrows: its renderer for all
                self._renderer = False
        texts: list[str] = []
        spans: list[list[tuple[int, int]]] = []
        renderer = self._renderer if isinstance(self._renderer, SpanRenderer) else None
        render = renderer.render if renderer is not None else (lambda _conv: None)
        for conv in convs:
            done = render(conv)
            if done is None:
                done = self._render_reference(conv)
            texts.append(done[0])
            spans.append(done[1])
        return texts, spans

    def _render_vars(self) -> dict[str, Any]:
        return {**self.tokenizer.special_tokens_map, **self.template_vars}

    def _render_reference(self, conv: Any) -> tuple[str, list[tuple[int, int]]]:
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered: Any = render_jinja_template(conversations=[conv], chat_template=self.template,
                                              return_assistant_tokens_mask=True, **self._render_vars())
        return rendered[0][0], [tuple(s) for s in rendered[1][0]]

    def _backend_encode(self, texts: list[str]) -> list[Any]:
        backend = self.tokenizer.backend_tokenizer
        if backend.encode_special_tokens != bool(getattr(self.tokenizer, "split_special_tokens", False)):
            backend.encode_special_tokens = bool(getattr(self.tokenizer, "split_special_tokens", False))
        return list(backend.encode_batch(texts, add_special_tokens=False))

    def _check_equivalence(self, convs: Sequence[Any], encodings: list[Any]) -> None:
        """The fast path must give apply_chat_template's ids and mask; if not, use apply_chat_template."""
        self._checked = True
        if not convs:
            return
        ref = self.tokenizer.apply_chat_template(list(convs), chat_template=self.template, tokenize=True,
                                                 return_dict=True, return_assistant_tokens_mask=True,
                                                 **self.template_vars)
        _, spans = self._render_tracked(convs)
        for n, enc in enumerate(encodings):
            mask = [0] * len(enc.ids)
            for s, e in spans[n]:
                r = _span_to_tokens(enc, s, e)
                if r is not None:
                    mask[r[0]:r[1]] = [1] * (r[1] - r[0])
            if list(ref["input_ids"][n]) != list(enc.ids) or list(ref["assistant_masks"][n]) != mask:
                self.fast = False

    def _encode_reference(self, examples: Sequence[Example]) -> list[Encoded | BadSample]:
        """The plain transformers path: batched apply_chat_template with return_assistant_tokens_mask."""
        out = self.tokenizer.apply_chat_template([e.messages for e in examples], chat_template=self.template,
                                                 tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                                 **self.template_vars)
        results: list[Encoded | BadSample] = []
        for ids, amask, e in zip(out["input_ids"], out["assistant_masks"], examples, strict=True):
            turns = turns_from_runs(ids, runs_of(amask), self.eot_ids)
            text = self._texts([e.messages])[0] if self.keep_text else ""
            results.append(self._finish(list(ids), turns, e.complete, text))
        return results

    def _texts(self, convs: Sequence[Any]) -> list[str]:
        return [self.tokenizer.apply_chat_template(c, chat_template=self.template, tokenize=False,
                                                **self.template_vars) for c in convs]

    def _encode_prefix(self, examples: Sequence[Example]) -> list[Encoded | BadSample]:
        ok, bad = self._render_ok(examples)
        texts = self._texts([examples[i].messages for i in ok])
        enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        results: list[Encoded | BadSample] = [bad.get(i, BadSample("bad_type")) for i in range(len(examples))]
        for n, i in enumerate(ok):
            e = examples[i]
            assert e.messages is not None
            text, ids, offsets = texts[n], enc["input_ids"][n], enc["offset_mapping"][n]
            runs = _spans_to_runs(self._message_spans(e.messages, text), offsets)
            turns = turns_from_runs(ids, runs, self.eot_ids)
            results[i] = self._finish(ids, turns, e.complete, text if self.keep_text else "")
        return results

    def trains(self, message: dict[str, Any]) -> bool:
        """Axolotl's rule: a message's own training flag (message_field_training) wins, else its role."""
        flag = message.get(TRAIN_FLAG)
        return bool(flag) if flag is not None else message["role"] in self.spec.roles_to_train

    def _message_spans(self, messages: list[dict[str, Any]], full: str) -> list[tuple[int, int]]:
        """Character spans of the trained messages' content (never their role headers), one per message.

        A message's block is the text its rendering adds to the prefix before it (with the generation
        prompt before an assistant turn, so the assistant header is outside); its content is found inside
        that block. A template that rewrites the content (strips it) is matched on the stripped text; one
        that transforms it beyond that trains the whole block after the header."""
        spans = []
        for i, m in enumerate(messages):
            if not self.trains(m):
                continue
            start = self._prefix_len(messages[:i], full, gen_prompt=m["role"] == "assistant") if i else 0
            end = self._prefix_len(messages[: i + 1], full, gen_prompt=False)
            raw = m.get("content")
            content = raw if isinstance(raw, str) else ""
            for needle in (content, content.strip()):
                at = full.find(needle, start, end) if needle else -1
                if at >= 0:
                    start, end = at, at + len(needle)
                    break
            else:
                if not content.strip():
                    continue  # an empty turn: nothing to train (Axolotl skips it too)
            if end > start:
                spans.append((start, end))
        return spans

    def _prefix_len(self, messages: list[dict[str, Any]], full: str, gen_prompt: bool) -> int:
        try:
            prefix = self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=False,
                                                        add_generation_prompt=gen_prompt, **self.template_vars)
        except Exception:
            return 0
        if full.startswith(prefix):
            return len(prefix)
        common = 0  # templates that rewrite earlier turns: fall back to the common prefix
        for a, b in zip(prefix, full, strict=False):
            if a != b:
                break
            common += 1
        return common

    def _finish(self, ids: list[int], turns: list[tuple[int, int, int | None]], complete: bool, text: str
                ) -> Encoded | BadSample:
        labels = labels_for(ids, turns, self.eot_ids, self.spec.train_on_eos, complete, self.train_on_incomplete)
        if labels.count(IGNORE) == len(labels):
            return BadSample("no_trainable_tokens", "the loss mask is empty")
        return Encoded(ids, labels, complete, text)

    # -- template-free segments -----------------------------------------------------------------
    def _encode_segments(self, examples: Sequence[Example]) -> list[Encoded | BadSample]:
        """Template-free rows. `special_tokens` says what wraps the segments: template = bos first, eos
        last (trained with the text); tokenizer = each segment tokenized with the tokenizer's own special
        tokens, a leading bos dropped after the first, eos appended once (Axolotl's instruction and
        completion strategies; a trained segment's labels are all its ids); none = the text alone
        (Axolotl's input_output)."""
        tok, mode = self.tokenizer, self.spec.special_tokens
        flat = [text for e in examples for text, _ in (e.segments or [])]
        enc = tok(flat, add_special_tokens=(mode == "tokenizer"))["input_ids"] if flat else []
        bos, eos = tok.bos_token_id, tok.eos_token_id
        results: list[Encoded | BadSample] = []
        k = 0
        for e in examples:
            segs = e.segments or []
            ids: list[int] = [bos] if bos is not None and mode == "template" else []
            labels: list[int] = [IGNORE] * len(ids)
            for n, (text, trained) in enumerate(segs):
                piece = list(enc[k]) if text or mode != "tokenizer" else []
                k += 1
                if mode == "tokenizer" and n and piece and piece[0] == bos:
                    piece = piece[1:]
                ids += piece
                labels += piece if trained else [IGNORE] * len(piece)
            wants_eos = (mode == "template" and self.spec.train_on_eos != "none") or \
                (mode == "tokenizer" and (not ids or ids[-1] != eos))
            if eos is not None and wants_eos and e.complete:
                ids.append(eos)  # a cut text never had its end: no eos appended
                labels.append(eos if mode == "template" or (segs and segs[-1][1]) else IGNORE)
            if not e.complete and not self.train_on_incomplete:
                labels = [IGNORE] * len(ids)
            text = "".join(t for t, _ in segs) if self.keep_text else ""
            if all(v == IGNORE for v in labels):
                results.append(BadSample("no_trainable_tokens", "the loss mask is empty"))
            else:
                results.append(Encoded(ids, labels, e.complete, text))
        return results
