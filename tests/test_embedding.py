"""Embedding backends: ONNX Runtime (the default) against torch, the query path's imports, mixed vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from qa import Assistant, EmbeddingMismatchError

from .conftest import ROOT, SEEDS
from .test_answering import SEED_QUESTIONS

HEAVY = ("torch", "transformers", "sentence_transformers")


@pytest.fixture(scope="module")
def torch_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """seeds/ indexed by the torch backend (sentence-transformers)."""
    index = tmp_path_factory.mktemp("torch") / "index"
    Assistant(index_dir=index, embed_backend="torch").ingest(SEEDS)
    return index


def test_onnx_int8_is_the_default_and_close_to_torch(seeded) -> None:
    """A new index gets ONNX int8 vectors (cosine >= 0.98 to torch's); an fp32 export gives torch's own."""
    from qa.embedding import encode, load_embedder

    assert seeded.status().embed_model == "all-MiniLM-L6-v2 (ONNX int8)"
    texts = [q for q, _ in SEED_QUESTIONS] + [SEEDS.joinpath(p).read_text()[:2000] for p in os.listdir(SEEDS)]
    int8 = encode(seeded.embedder, texts)
    fp32 = encode(load_embedder("all-MiniLM-L6-v2", backend="onnx", precision="fp32"), texts)
    torch = encode(load_embedder("all-MiniLM-L6-v2", backend="torch"), texts)
    assert int8.shape == fp32.shape == torch.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1, atol=1e-5)
    assert float((fp32 * torch).sum(1).min()) > 0.9999  # what lets the two share an index
    assert 0.98 < float((int8 * torch).sum(1).min()) < 0.9999  # close, yet not the same vectors: an index of its own


def test_batches_run_side_by_side_give_the_vectors_of_one_at_a_time(seeded, monkeypatch) -> None:
    """encode() runs a batch per core at once (one-thread sessions): each text gets the vector it gets
    when the batches run one after the other, in its own row; a run that fails raises in the caller."""
    from qa.onnx_encoder import single_thread

    encoder = seeded.embedder._encoder
    seed = " ".join(SEEDS.joinpath(p).read_text() for p in sorted(os.listdir(SEEDS)))
    texts = [seed[i:i + 100 + 37 * (i % 13)] for i in range(0, len(seed), max(1, len(seed) // 60))]
    with single_thread():  # one batch at a time, as before
        alone = encoder.encode(texts)
    monkeypatch.setattr("qa.onnx_encoder.cores", lambda: 2)
    session, threads = encoder._session(1), set()

    class Recording:
        def run(self, *args):
            threads.add(threading.current_thread().name)
            return session.run(*args)

    monkeypatch.setattr(encoder, "_session", lambda n: Recording() if n == 1 else pytest.fail("a 2-thread run"))
    side_by_side = encoder.encode(texts)
    assert len(threads) >= 2  # runs in more than one thread, each on a one-thread session
    monkeypatch.undo()
    assert len(texts) > 40 and side_by_side.shape == alone.shape == (len(texts), 384)
    assert float((side_by_side * alone).sum(1).min()) > 0.99999  # same batches, same rows
    # Reversed, ties of length meet other batch mates (int8 activations are quantized per run), yet
    # every row is still its own text's vector.
    reversed_ = encoder.encode(texts[::-1])[::-1]
    assert list((reversed_ @ alone.T).argmax(1)) == list(range(len(texts)))

    calls = []

    class Failing:
        def run(self, *args):  # the fourth run fails, in whichever thread it lands
            calls.append(1)
            if len(calls) == 4:
                raise RuntimeError("out of memory in a run")
            return session.run(*args)

    monkeypatch.setattr(encoder, "_session", lambda threads: Failing())
    with pytest.raises(RuntimeError, match="out of memory in a run"):
        encoder.encode(texts)


def test_onnx_answers_like_torch_on_the_seed_questions(seeded, torch_index: Path) -> None:
    """int8 (the default, on its own index): the same best passage, 4 of the same 5, and answers
    citing the sentence that holds the fact, as torch's do;
    fp32 ONNX on the torch-built index: the very same passages, in the same order."""
    torch = Assistant(index_dir=torch_index, embed_backend="torch")
    fp32 = Assistant(index_dir=torch_index)  # "auto" keeps the precision the index was built with
    for question, fact in SEED_QUESTIONS:
        theirs = [(p.source, p.start) for p in torch.retriever().retrieve(question, 5)]
        assert [(p.source, p.start) for p in fp32.retriever().retrieve(question, 5)] == theirs, question
        ours = [(p.source, p.start) for p in seeded.retriever().retrieve(question, 5)]
        assert ours[0] == theirs[0] and len(set(ours) & set(theirs)) >= 4, question
        a, b = seeded.ask(question), torch.ask(question)
        assert fact in a.answer and fact in b.answer, question
        holds_fact = {(c.start, c.end) for c in b.citations if fact in c.text}
        assert holds_fact and holds_fact <= {(c.start, c.end) for c in a.citations}, question
    assert fp32.status().embed_model == "all-MiniLM-L6-v2 (ONNX fp32)"


def test_torch_and_onnx_fp32_share_an_index_but_int8_does_not(torch_index: Path) -> None:
    ans = Assistant(index_dir=torch_index, embed_backend="onnx").ask("Who denied the arms transfers?")
    assert "Moscow and Pyongyang" in ans.answer  # an index made before int8 was the default still answers
    with pytest.raises(EmbeddingMismatchError) as err:
        Assistant(index_dir=torch_index, embed_precision="int8").ask("Who denied the arms transfers?")
    assert "QA_EMBED_PRECISION=fp32" in str(err.value) and "re-ingest" in str(err.value)


@pytest.mark.slow  # makes the plain int8 export on first run
def test_an_index_of_plain_int8_vectors_keeps_them_and_smoothed_int8_is_closer_to_fp32(seeded, tmp_path: Path) -> None:
    """Indexes built before int8 was smoothed recorded "<model> int8": "auto" answers them with the plain
    export they were built with, asking for the smoothed one says how to go back or rebuild, and a rebuild
    with it upgrades the index. The smoothed export is the closer of the two to fp32."""
    from qa.embedding import encode, load_embedder

    index = tmp_path / "plain"
    Assistant(index_dir=index, embed_precision="int8-v1").ingest(SEEDS)
    old = Assistant(index_dir=index)
    assert "Moscow and Pyongyang" in old.ask("Who denied the arms transfers?").answer
    assert old.status().embed_model == "all-MiniLM-L6-v2 (ONNX int8-v1)"
    with pytest.raises(EmbeddingMismatchError) as err:
        Assistant(index_dir=index, embed_precision="int8").ask("Who denied the arms transfers?")
    assert "QA_EMBED_PRECISION=int8-v1" in str(err.value) and "qa ingest --rebuild" in str(err.value)
    upgraded = Assistant(index_dir=index, embed_precision="int8")
    upgraded.rebuild()
    again = Assistant(index_dir=index)
    assert again.status().embed_model == "all-MiniLM-L6-v2 (ONNX int8)"
    assert "Moscow and Pyongyang" in again.ask("Who denied the arms transfers?").answer

    seed = " ".join(SEEDS.joinpath(p).read_text() for p in sorted(os.listdir(SEEDS)))
    texts = [q for q, _ in SEED_QUESTIONS] + [seed[i:i + 600] for i in range(0, len(seed), 300)]
    fp32 = encode(load_embedder("all-MiniLM-L6-v2", backend="onnx", precision="fp32"), texts)
    plain = (encode(old.embedder, texts) * fp32).sum(1)
    smoothed = (encode(seeded.embedder, texts) * fp32).sum(1)
    assert float(smoothed.mean()) > float(plain.mean()) + 0.001, (smoothed.mean(), plain.mean())
    assert float((smoothed - plain).min()) > -0.003  # no text much further from fp32 than before


@pytest.mark.slow  # makes the int8 export on first run
def test_int8_index_refuses_fp32_questions_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "QA_INDEX_DIR": str(tmp_path / "i8"), "QA_EMBED_PRECISION": "int8"}
    run = [sys.executable, "-m", "qa"]
    r = subprocess.run([*run, "ingest", str(SEEDS), "--quiet"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*run, "ask", "--json", "Who denied the arms transfers?"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "Moscow and Pyongyang" in json.loads(r.stdout)["answer"], r.stderr
    env["QA_EMBED_PRECISION"] = "fp32"
    r = subprocess.run([*run, "ask", "Who denied the arms transfers?"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "QA_EMBED_PRECISION=int8" in r.stderr, r.stderr


def test_asking_loads_neither_torch_nor_transformers(seeded_index: Path, tmp_path: Path) -> None:
    """A whole `qa ask` (CLI, retrieval, answer) in a fresh process, then a look at what it imported."""
    code = ("import sys; from qa.cli import main\n"
            "try:\n    main(['ask', 'Where will Putin travel after North Korea?'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            f"print('LOADED', sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
    env = {**os.environ, "QA_INDEX_DIR": str(seeded_index)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "Vietnam" in r.stdout
    assert "LOADED []" in r.stdout, r.stdout


@pytest.mark.slow  # a model build
def test_export_is_made_once_into_the_named_cache(tmp_path: Path) -> None:
    """A fresh cache gets an export on first use (in a child process); the next embedder reuses it."""
    from qa.embedding import load_embedder, resolve_model_path
    from qa.onnx_embedding import export_dir

    cache = tmp_path / "onnx"
    emb = load_embedder("all-MiniLM-L6-v2", backend="onnx", cache=cache)
    folder = export_dir(resolve_model_path("all-MiniLM-L6-v2"), cache, "fp32")
    assert (folder / "model.onnx").exists()
    made = (folder / "model.onnx").stat().st_mtime
    again = load_embedder("all-MiniLM-L6-v2", backend="onnx", cache=cache)
    assert (folder / "model.onnx").stat().st_mtime == made
    assert np.allclose(emb.encode(["a question"]), again.encode(["a question"]))
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [folder.name]


def test_batches_pad_little_and_keep_to_the_word_piece_limit() -> None:
    """Texts of mixed lengths (an ingest's round of chunks) go to the model in batches that pad them by
    under 1% (filling every batch to the limit padded such a round 1-3%), each within TOKENS_PER_BATCH
    word pieces and the batch size, every text once, the first of each batch its longest."""
    import random

    from qa.onnx_encoder import TOKENS_PER_BATCH, _batches

    rng = random.Random(7)
    for n, size in ((256, 64), (64, 64), (300, 4), (5, 64), (1, 64), (0, 64)):
        lengths = [rng.choice((rng.randint(8, 60), rng.randint(60, 258), 700)) for _ in range(n)]
        batches = _batches(lengths, size)
        assert sorted(i for b in batches for i in b) == list(range(n))
        for b in batches:
            assert len(b) <= size and lengths[b[0]] == max(lengths[i] for i in b)
            assert len(b) == 1 or len(b) * lengths[b[0]] <= TOKENS_PER_BATCH
        padded = sum(len(b) * lengths[b[0]] for b in batches)
        assert padded <= 1.01 * sum(lengths) or size < 64, (n, padded / max(sum(lengths), 1))
