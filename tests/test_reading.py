"""Reading and chunking: every chunk's offsets index the document's extracted text exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.reading.formats import UnreadableFile, discover, load, split

from .conftest import SEED_FILE


@pytest.fixture(scope="module")
def splitter():
    from qa.embedding import load_embedder, token_counter
    from qa.reading.formats import make_splitter

    return make_splitter(120, 20, token_counter(load_embedder("all-MiniLM-L6-v2")))


def _check_offsets(path: Path, splitter) -> list:
    source = load(path)
    chunks = split(source, splitter)
    assert chunks, f"no chunks from {path.name}"
    for c in chunks:
        assert source.text[c.start:c.end] == c.text
    return chunks


def test_seed_article_chunks_match_file_text(splitter) -> None:
    chunks = _check_offsets(SEED_FILE, splitter)
    text = SEED_FILE.read_text(encoding="utf-8")
    assert len(chunks) > 3
    for c in chunks:
        assert text[c.start:c.end] == c.text
    # Together the chunks cover every sentence of the article.
    covered = " ".join(c.text for c in chunks)
    assert "Vietnam on June 19-20" in covered and "Vladimir Putin, in a letter" in covered


def test_markdown_html_docx_pdf(tmp_path: Path, splitter) -> None:
    (tmp_path / "a.md").write_text("# Title\n\nThe **quick** fox jumps over the lazy dog.\n", encoding="utf-8")
    (tmp_path / "b.html").write_text(
        "<html><body><h1>Report</h1><p>The river Zorn floods every spring.</p><script>x=1</script></body></html>",
        encoding="utf-8")
    import docx

    d = docx.Document()
    d.add_paragraph("The lighthouse at Korsvik was built in 1891.")
    d.save(tmp_path / "c.docx")
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(tmp_path / "d.pdf"))
    c.drawString(72, 720, "Page one says the bridge opened in 1932.")
    c.showPage()
    c.drawString(72, 720, "Page two says the tunnel opened in 1955.")
    c.save()
    for name, fact in [("a.md", "quick"), ("b.html", "Zorn"), ("c.docx", "Korsvik"), ("d.pdf", "tunnel")]:
        chunks = _check_offsets(tmp_path / name, splitter)
        assert any(fact in ch.text for ch in chunks), name
    pdf = load(tmp_path / "d.pdf")
    assert len(pdf.pages) == 2 and "tunnel" in pdf.text[pdf.pages[1]:]


def test_encodings(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("Café crème in Zürich.".encode("latin-1"))
    (tmp_path / "utf16.txt").write_bytes("Ünïcode in UTF-16 text.".encode("utf-16"))
    (tmp_path / "crlf.txt").write_bytes(b"line one\r\nline two\r\n")
    assert load(tmp_path / "latin1.txt").text == "Café crème in Zürich."
    assert load(tmp_path / "utf16.txt").text == "Ünïcode in UTF-16 text."
    assert load(tmp_path / "crlf.txt").text == open(tmp_path / "crlf.txt", encoding="utf-8").read()


@pytest.mark.parametrize("text,encoding", [
    ("Новосибирский театр оперы и балета открылся в 1945 году. Это самое большое здание.", "cp1251"),
    ("富士山の標高は３７７６メートルで、日本で最も高い山だ。最後の噴火は１７０７年である。", "shift_jis"),
    ("长城东起山海关，西至嘉峪关。明长城的总长度约为八千八百公里。", "gbk"),
    ("Ο Παρθενώνας χτίστηκε μεταξύ 447 και 438 π.Χ. στην Ακρόπολη της Αθήνας.", "cp1253"),
    ("הטכניון נוסד בחיפה בשנת 1912 והלימודים בו החלו בשנת 1924.", "cp1255"),
    ("Der Fernsehturm ist mit 368 Metern das höchste Bauwerk Deutschlands. „Größe“ – 5 €.", "utf-16-le"),
    # Western European text stays Windows-1252 / Latin-1: a detector guesses another code page on so little
    ("Une recette simple: mélangez la crème fraîche et le beurre à feu doux. Voilà, c'est prêt.", "latin-1"),
    ("Café prices rose 5% – the naïve estimate was “wrong”.", "cp1252"),
    ("Il Colosseo è il più grande anfiteatro. Così fu costruito, perché la città voleva giochi.", "cp1252"),
    ("Reykjavík er höfuðborg Íslands. Þar búa um það bil hundrað og þrjátíu þúsund manns.", "cp1252"),
    ("The English name comes from Old Norse Norðmaðr; a tank of 5 m³ cost £30, Contrecœur said.", "cp1252"),
    # Central European and Turkish code pages, which Windows-1252 read as "zosta³" and "Ýstanbul"
    ("Pražský hrad je největší hradní komplex na světě. Jeho stavba začala v devátém století.", "cp1250"),
    ("Wieliczka to kopalnia soli w pobliżu Krakowa. Wydobycie prowadzono tam od trzynastego wieku.", "cp1250"),
    ("Bratislavský hrad stojí na kopci nad Dunajom a ľudia ho navštevujú často.", "cp1250"),
    ("Az Országház Steindl Imre tervei alapján épült; ő tervezte, gyönyörű.", "cp1250"),
    ("Galata Kulesi İstanbul'un en eski yapılarından biridir ve şehrin simgesi oldu.", "cp1254"),
])
def test_a_legacy_encoding_of_another_script_is_detected(tmp_path: Path, text: str, encoding: str) -> None:
    """Windows-1252 read Cyrillic, Greek, Hebrew, Chinese and Japanese files as accented Latin letters without a
    word of warning ("Íîâîñèáèðñê"), refused Shift-JIS and UTF-16 without a BOM as binary, and read Czech,
    Polish, Slovak, Hungarian and Turkish files with wrong letters ("svìtì", "zosta³", "Ýstanbul")."""
    (tmp_path / "doc.txt").write_bytes(text.encode(encoding))
    assert load(tmp_path / "doc.txt").text == text


def test_a_stray_byte_in_utf8_does_not_garble_the_whole_file(tmp_path: Path) -> None:
    (tmp_path / "mixed.txt").write_bytes("René Müller lives in Zürich.\n".encode() + b"\xa0stray byte.\n")
    (tmp_path / "cp1252.txt").write_bytes("Café “quoted” in Zürich.".encode("cp1252"))
    assert load(tmp_path / "mixed.txt").text == "René Müller lives in Zürich.\n\ufffdstray byte.\n"
    assert load(tmp_path / "cp1252.txt").text == "Café “quoted” in Zürich."


@pytest.mark.parametrize("name,data,reason", [
    ("empty.txt", b"", "empty file"),
    ("blank.md", b"  \n\n ", "no text"),
    ("binary.txt", b"\x00\x01\x02ELF\x00" * 100, "binary"),
    ("nonul.txt", bytes(range(1, 256)) * 40, "binary"),  # binary with no NUL byte: a tenth are controls
    ("broken.pdf", b"%PDF-1.4\n1 0 obj <<", "cannot parse"),
])
def test_bad_files_have_one_line_reasons(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(UnreadableFile) as e:
        load(tmp_path / name)
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_a_pipe_or_a_device_is_skipped_not_read_forever(tmp_path: Path) -> None:
    import os

    (tmp_path / "normal.txt").write_text("Herons stand still in the shallows.")
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    files, skipped = discover([tmp_path])
    assert [f.name for f in files] == ["normal.txt"]
    assert sorted((p.name, r.split(" (")[0]) for p, r in skipped) == [
        ("pipe.txt", "not a regular file"), ("zero.txt", "not a regular file")]
    files, skipped = discover([tmp_path / "pipe.txt"])  # named on its own
    assert files == [] and "not a regular file" in skipped[0][1]


def test_links_of_the_user_qa_runs_as_are_followed(tmp_path: Path) -> None:
    """Linking files and folders into one's documents works (another user's links do not: tests/test_watch.py)."""
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    (tmp_path / "elsewhere" / "deep" / "kites.md").write_text("Red kites nest in tall oaks.")
    (tmp_path / "elsewhere" / "gulls.txt").write_text("Gulls follow the ferries.")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "birds").symlink_to(tmp_path / "elsewhere" / "deep", target_is_directory=True)
    (docs / "gulls.txt").symlink_to(tmp_path / "elsewhere" / "gulls.txt")
    files, skipped = discover([docs])
    assert files == [docs / "birds" / "kites.md", docs / "gulls.txt"] and skipped == []


def test_a_path_with_dots_names_the_same_document(tmp_path: Path) -> None:
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "whale.txt").write_text("The blue whale can weigh 190 tonnes.")
    files, _ = discover([tmp_path / "small" / ".." / "small" / "." / "whale.txt"])
    assert files == [tmp_path / "small" / "whale.txt"]


def test_discover_recurses_and_skips_unsupported(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "x.txt").write_text("hello there world")
    (tmp_path / "y.md").write_text("hello")
    (tmp_path / "archive.zip").write_bytes(b"PK\x03\x04")  # images are read (OCR); archives are not
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    files, skipped = discover([tmp_path, tmp_path / "missing"])
    assert [f.name for f in files] == ["x.txt", "y.md"]
    assert any("no such file" in r for _, r in skipped)


def test_html_reads_as_a_browser_lays_it_out(tmp_path: Path) -> None:
    """Source lines wrapped inside a paragraph are one line of text, blocks are apart. LlamaIndex's HTMLTagReader
    kept both as single newlines: a sentence broke where its source line did ("The cif in ffi_cif stands
    for" / "Call InterFace."), and a term ran on into its definition."""
    from qa.reading.html import html_text

    page = ("<html><head><title>libffi</title><style>p{}</style></head><body>\n<h2>2.1 The Basics</h2>\n"
            "<p>The cif in ffi_cif stands for\nCall InterFace.  To prepare a call interface object, use the\n"
            "function <code>ffi_prep_cif</code>.</p>\n<dl><dt>Function: ffi_status ffi_prep_cif (ffi_cif *cif)</dt>"
            "<dd>This initializes <em>cif</em> according to the given parameters.</dd></dl>\n"
            "<table><tr><th>Parameter</th><th>Value</th></tr><tr><td>Weight</td><td>1.1 kg</td></tr></table>\n"
            "<div class='literallayout'><p>Julian Seward was the original founder<br>\nof Valgrind.</p></div>\n"
            "<pre>$ pip install -e .\n$ pytest</pre><script>var x = 1;</script><!-- a comment --></body></html>")
    assert html_text(page) == (
        "2.1 The Basics\n\n"
        "The cif in ffi_cif stands for Call InterFace. To prepare a call interface object, use the function "
        "ffi_prep_cif.\n\n"
        "Function: ffi_status ffi_prep_cif (ffi_cif *cif)\n\nThis initializes cif according to the given parameters.\n\n"
        "Parameter | Value\n\nWeight | 1.1 kg\n\n"
        "Julian Seward was the original founder\nof Valgrind.\n\n"
        "$ pip install -e .\n$ pytest")
    (tmp_path / "basics.html").write_text(page.replace("<html>", "<html lang='de'>"), encoding="cp1252")
    assert "Call InterFace" in load(tmp_path / "basics.html").text  # read with qa's own decoding, not UTF-8 only


def _docx_bomb(path: Path, parts: dict[str, int]) -> None:
    """A .docx whose named parts each unpack to about that many bytes of WordprocessingML (a few KB packed)."""
    import zipfile

    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    para = b"<w:p><w:r><w:t>a</w:t></w:r></w:p>" * 4096
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        for name, size in parts.items():
            with z.open(name, "w") as f:
                f.write(f"<w:document {w}><w:body>".encode())
                for _ in range(size // len(para) + 1):
                    f.write(para)
                f.write(b"</w:body></w:document>")


def test_a_docx_that_unpacks_to_too_much_text_is_refused_unread(tmp_path: Path) -> None:
    """A .docx's text parts are parsed whole (about 15 times their size in memory): a 300 KB file unpacking to
    100 MB took 1.5 GB, so a zip bomb of a few MB could take the server down. Refused from the zip's sizes."""
    from qa.reading.formats import MAX_DOCX_XML_BYTES

    third = MAX_DOCX_XML_BYTES // 3 + 1
    for name, parts in [("one.docx", {"word/document.xml": MAX_DOCX_XML_BYTES + 1}),
                        ("spread.docx", {"word/document.xml": third, "word/header1.xml": third,
                                         "word/footer2.xml": third})]:
        _docx_bomb(tmp_path / name, parts)
        assert (tmp_path / name).stat().st_size < 1_000_000
        with pytest.raises(UnreadableFile, match=r"unpacks to 3\d MB of XML, more than qa reads from a \.docx"):
            load(tmp_path / name)
    _docx_bomb(tmp_path / "fine.docx", {"word/document.xml": 1_000_000})  # a long document is read as before
    assert load(tmp_path / "fine.docx").text.startswith("a\n")


def test_chunks_end_at_the_sentences_answers_quote_without_importing_nltk() -> None:
    """LlamaIndex's default sentences (nltk's Punkt) imported nltk, scikit-learn, SciPy and pandas (115 MB,
    1.5 s of an ingest) and ran Chinese sentences together; chunks now end where qa's sentences do."""
    import json
    import subprocess
    import sys

    zh = "北京是中华人民共和国的首都。" * 30 + "上海是中国最大的城市。" * 30
    code = ("import json, sys; from qa.embedding import load_embedder, token_counter; "
            "from qa.reading.formats import load, make_splitter, split, SourceText; from pathlib import Path; "
            "s = make_splitter(120, 20, token_counter(load_embedder('all-MiniLM-L6-v2', backend='onnx', precision='int8'))); "
            "c = [(x.start, x.end) for x in split(load(Path(sys.argv[1])), s)]; "
            "z = [x.text for x in split(SourceText(path='zh.txt', text=sys.argv[2], digest='d'), s)]; "
            "print(json.dumps([c, z, sorted(m for m in ('nltk', 'sklearn', 'scipy', 'pandas') if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code, str(SEED_FILE), zh], capture_output=True, text=True,
                         cwd=SEED_FILE.parent.parent, timeout=120)
    assert out.returncode == 0, out.stderr
    chunks, zh_chunks, imported = json.loads(out.stdout)
    text = SEED_FILE.read_text(encoding="utf-8")
    assert imported == [] and len(chunks) > 3
    assert all(text[e - 1] in ".!?\"'”’)\n" or e == len(text) for _, e in chunks[:-1]), \
        [text[e - 20:e] for _, e in chunks]
    assert len(zh_chunks) > 1 and all(c.endswith("。") for c in zh_chunks)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_sentence_sizes_taken_from_one_tokenization_are_each_sentences_own(backend: str) -> None:
    """The counter measures a paragraph's sentences from where the paragraph's word pieces start
    (qa.embedding.TokenCounter): the chunks must be those of counting each sentence alone."""
    from qa.answering import sentence_cuts
    from qa.embedding import load_embedder, token_counter
    from qa.reading.formats import SourceText, make_splitter

    model = load_embedder("all-MiniLM-L6-v2", backend=backend, precision="int8")
    if backend == "onnx":
        count = model.count_tokens
    else:  # the same word pieces, counted by transformers' tokenizer
        def count(t: str) -> int:
            return len(model._model.tokenizer.encode(t, add_special_tokens=False))
    text = SEED_FILE.read_text(encoding="utf-8") + (
        "\n\nDr. Müller-Lüdenscheidt (b. 1921) met Mr. O'Neil at 9:30 a.m. in São Paulo; cf. [1], [2-4].\n"
        "東京は日本の首都です。人口は約1400万人です。Ça coûte 3,50 € — naïve café résumé!\n"
        "Visit https://example.org/a_b?c=d&e=f or e-mail x.y@z.com. #hashtags, @mentions, 1.5e-3 mg/kg…\n"
        "Straße über Ölfeld. Καλημέρα κόσμε. Привет, мир! مرحبا بالعالم. नमस्ते दुनिया।") * 2
    counter = token_counter(model)
    counter(text)
    cuts = sentence_cuts(text)
    counter.pieces(text, cuts)
    for a, b in zip(cuts, cuts[1:]):
        assert len(counter(text[a:b])) == count(text[a:b]), text[a:b]

    def each_alone(t: str) -> range:
        return range(count(t))

    doc = SourceText("mixed.txt", text, "digest")
    for size, overlap in ((30, 6), (80, 16), (160, 30)):
        fast = [(c.start, c.end) for c in split(doc, make_splitter(size, overlap, token_counter(model)))]
        assert len(fast) > 2 and fast == [(c.start, c.end) for c in split(doc, make_splitter(size, overlap, each_alone))]


def test_a_chunks_word_pieces_taken_from_its_document_are_those_of_tokenizing_it_alone() -> None:
    """The splitter's tokenization of a document gives each chunk its word pieces (Chunk.token_ids), which the
    model then takes instead of tokenizing the chunk again: they must be what tokenizing it alone gives, in
    every script, and a chunk cut inside a word (a word too long for a chunk) is tokenized again."""
    import numpy as np

    from qa.embedding import load_embedder, token_counter
    from qa.reading.formats import SourceText, make_splitter

    model = load_embedder("all-MiniLM-L6-v2", backend="onnx", precision="int8")
    encoder = model._encoder
    text = SEED_FILE.read_text(encoding="utf-8") + (
        "\n\nDr. Müller-Lüdenscheidt (b. 1921) met Mr. O'Neil at 9:30 a.m. in São Paulo; cf. [1], [2-4].\n"
        "東京は日本の首都です。人口は約1400万人です。Ça coûte 3,50 € — naïve café résumé e\u0301t\u00e9!\n"
        "Straße über Ölfeld. Καλημέρα κόσμε. Привет, мир! مرحبا بالعالم. नमस्ते दुनिया।\n"
        + " ".join(["qxzjkvqxzjkvzzqxjkvqzxjvkqzjxvkqzxjv" * 2] * 6) + ".") * 2
    doc = SourceText("mixed.txt", text, "digest")
    for size, overlap in ((16, 4), (80, 16), (160, 30)):
        chunks = split(doc, make_splitter(size, overlap, token_counter(model)))
        given = [c for c in chunks if c.token_ids is not None]
        for c in given:
            assert encoder._rows([c.text], [c.token_ids])[0] == encoder._tokenizer.encode(c.text).ids, c.text
        cut_in_words = [c for c in chunks if c.token_ids is None]
        assert all(c.text[0].isalnum() and text[c.start - 1].isalnum() or c.text[-1].isalnum()
                   and text[c.end:c.end + 1].isalnum() for c in cut_in_words)
        assert (len(cut_in_words) > 0) == (size == 16), (size, len(cut_in_words))
        texts = [c.text for c in chunks]  # those cut inside a word (None) are tokenized beside the others
        np.testing.assert_array_equal(model.encode(texts, pieces=[c.token_ids for c in chunks]), model.encode(texts))


def test_a_tokenizer_without_offsets_still_sizes_chunks_like_the_model() -> None:
    """A tokenizer that gives no offsets (transformers' pure-Python ones; none ships with transformers 5, so one
    stands in here): the counter then counts each text itself, and the chunks are the same."""
    from types import SimpleNamespace

    from qa.embedding import load_embedder, token_counter
    from qa.reading.formats import SourceText, make_splitter

    onnx = load_embedder("all-MiniLM-L6-v2", backend="onnx", precision="int8")
    slow = SimpleNamespace(is_fast=False, encode=lambda text, add_special_tokens: onnx._encoder._counter.encode(
        text, add_special_tokens=add_special_tokens).ids)
    doc = SourceText("seed.txt", SEED_FILE.read_text(encoding="utf-8"), "digest")
    chunks = [[(c.start, c.end) for c in split(doc, make_splitter(80, 16, token_counter(model)))]
              for model in (SimpleNamespace(_model=SimpleNamespace(tokenizer=slow)), onnx)]
    assert len(chunks[0]) > 3 and chunks[0] == chunks[1]
