import json

from rosie_pipeline.ingest.books import BookOptions, GutenbergReader
from rosie_pipeline.ingest.records import Rejected, Row
from tests.fixtures import gutenberg_book

CHAPTERS = [
    ["It was a bright cold day in the little town, and the clocks were striking nine as Rosie woke.",
     "She stretched, yawned, and wondered what the day would bring her this time around."],
    ["The second chapter began with tea, which is how all the best chapters begin in this house."],
]


def _read(path, **options):
    items = list(GutenbergReader(BookOptions(**options)).read(path))
    return [i.values for i in items if isinstance(i, Row)], [i for i in items if isinstance(i, Rejected)]


def test_header_footer_stripped_and_paragraphs_unwrapped(tmp_path):
    path = tmp_path / "pg1.txt"
    path.write_text(gutenberg_book("A Day With Rosie", "Jane Doe", CHAPTERS), encoding="utf-8")
    docs, rejected = _read(path)
    assert rejected == [] and len(docs) == 1
    doc = docs[0]
    assert doc["title"] == "A Day With Rosie" and doc["source"] == "books"
    meta = json.loads(doc["meta"])
    assert meta["author"] == "Jane Doe" and meta["language"] == "English" and meta["gutenberg_markers"]
    paragraphs = doc["text"].split("\n\n")
    assert paragraphs == ["CHAPTER 1", CHAPTERS[0][0], CHAPTERS[0][1], "CHAPTER 2", CHAPTERS[1][0]]
    assert "Project Gutenberg" not in doc["text"] and "LICENSE" not in doc["text"]


def test_latin1_book(tmp_path):
    path = tmp_path / "old.txt"
    path.write_bytes(gutenberg_book("Les Misérables", "Victor Hugo", [["Déjà vu, à côté de la fenêtre."]])
                     .encode("latin-1"))
    docs, _ = _read(path)
    assert docs[0]["title"] == "Les Misérables" and "Déjà vu, à côté de la fenêtre." in docs[0]["text"]


def test_long_book_split_at_paragraphs_and_ids_stable(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text(gutenberg_book("Long", "A", [[f"Paragraph number {i} " * 10 for i in range(50)]]))
    docs, _ = _read(path, max_doc_chars=2_000)
    assert len(docs) > 3 and all(len(d["text"]) <= 2_300 for d in docs)
    assert [json.loads(d["meta"])["part"] for d in docs] == list(range(len(docs)))
    again, _ = _read(path, max_doc_chars=2_000)
    assert [d["id"] for d in docs] == [d["id"] for d in again]


def test_plain_text_without_markers_and_bad_files(tmp_path):
    (tmp_path / "notes.txt").write_text("Just some text\nwrapped here.\n\nSecond paragraph.\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blob.txt").write_text("x" * 3_000 + "\n\nA real paragraph.\n")
    items = list(GutenbergReader(BookOptions(max_line_chars=2_000)).read_directory(tmp_path))
    reasons = sorted(i.reason for i in items if isinstance(i, Rejected))
    texts = sorted(i.values["text"] for i in items if isinstance(i, Row))
    assert reasons == ["empty_file", "oversized_line"]
    assert texts == ["A real paragraph.", "Just some text wrapped here.\n\nSecond paragraph."]
