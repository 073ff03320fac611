import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rosie_pipeline.curate.filters import (
    C4Quality,
    Doc,
    FineWebQuality,
    GopherQuality,
    GopherRepetition,
    LanguageFilter,
    PIIRedactor,
    SafetyFilter,
    _NGramIndex,
)
from rosie_pipeline.curate.pipeline import Curator, RuleSet
from rosie_pipeline.curate.text import normalize_text, split_words
from rosie_pipeline.documents import make_document
from rosie_pipeline.ingest.records import Rejected, Row
from tests.fixtures import PROSE, prose_document


def test_normalize_text():
    assert normalize_text("Cafe\u0301\r\n\tis  open \x00\n\n\n\nyes ") == "Café\nis open\n\nyes"


def test_split_words_follows_the_reference_tokenizer():
    text = "Don't panic: it's 3.5 km to the U.S. border... e-mail hi@x.org or see https://x.org/a?b=1 (now)!"
    assert split_words(text) == [
        "Do", "n't", "panic", ":", "it", "'s", "3.5", "km", "to", "the", "U.S.", "border", "...", "e", "-", "mail",
        "hi@x.org", "or", "see", "https://x.org/a?b=1", "(", "now", ")", "!",
    ]


def _run(filter_, text, url=None):
    doc = Doc(text, "web", url)
    return filter_(doc), doc


def test_gopher_quality():
    good = prose_document()
    assert _run(GopherQuality(), good)[0] is None
    assert _run(GopherQuality(), "Too short to be a document.")[0] == "gopher_short_doc"
    assert _run(GopherQuality(), good + " #tag" * 80)[0] == "gopher_too_many_hashes"
    assert _run(GopherQuality(), "\n".join(f"- {p}" for p in PROSE * 3))[0] == "gopher_too_many_bullets"
    no_stop_words = " ".join(["Rosie likes green apples very much"] * 20)
    assert _run(GopherQuality(), no_stop_words)[0] == "gopher_few_stop_words"
    assert _run(GopherQuality(), " ".join(["1234 5678 90"] * 40) + " " + good)[0] == "gopher_below_alpha_ratio"


def test_gopher_repetition():
    assert _run(GopherRepetition(), prose_document())[0] is None
    assert _run(GopherRepetition(), "\n".join([PROSE[0]] * 5 + PROSE[1:3]))[0] == "dup_line_frac"
    spam = " ".join(["buy cheap pills now"] * 30) + " " + PROSE[0]
    assert _run(GopherRepetition(), spam)[0] in {"top_2_gram", "top_3_gram", "top_4_gram"}


def test_c4_keeps_sentence_lines_and_page_rules():
    text = "Menu\nHome | About\n" + prose_document() + "\nEnable javascript to see this page properly.\nShare"
    reason, doc = _run(C4Quality(), text)
    assert reason is None
    assert doc.text.startswith(PROSE[0]) and "Menu" not in doc.text and "javascript" not in doc.text
    assert _run(C4Quality(), prose_document() + "\nLorem ipsum dolor sit amet, consectetur.")[0] == "lorem_ipsum"
    assert _run(C4Quality(), prose_document() + "\nThe code is { x = 1 } here.")[0] == "curly_bracket"
    assert _run(C4Quality(), "One sentence here.\nAnother one there.")[0] == "too_few_sentences"


def test_fineweb_quality():
    assert _run(FineWebQuality(), prose_document())[0] is None
    assert _run(FineWebQuality(), "\n".join(["Short line"] * 5 + [PROSE[0]]))[0] == "short_line_ratio"
    assert _run(FineWebQuality(), "\n".join(f"item {i} without ending" for i in range(30)))[0] == "line_punct_ratio"


def test_language_filter_sets_language():
    reason, doc = _run(LanguageFilter(), prose_document(2))
    assert reason is None and doc.lang == "en" and doc.lang_score > 0.65
    french = "Le petit chat dort sur le canapé pendant que la pluie tombe doucement sur la ville endormie."
    assert _run(LanguageFilter(), french)[0] == "language_not_wanted"


def test_pii_is_redacted_and_counted():
    text = "Write to jane.doe@mail.example.org or call (555) 123-4567 or +1 555 987 6543; server 192.168.1.20."
    reason, doc = _run(PIIRedactor(), text)
    assert reason is None
    assert "jane.doe" not in doc.text and "123-4567" not in doc.text and "192.168.1.20" not in doc.text
    assert dict(doc.redactions) == {"email": 1, "phone": 2, "ip": 1}


#: (country or kind, text that must not survive) — the redaction table.
PII_FORMATS = [
    ("US", "(555) 123-4567"), ("US", "555-123-4567"), ("US", "+1 555 987 6543"), ("US", "555.123.4567"),
    ("UK", "+44 20 7946 0958"), ("UK", "0044 20 7946 0958"), ("UK", "020 7946 0958"), ("UK", "+44 7700 900123"),
    ("Germany", "+49 30 1234567"), ("Germany", "+49 (0)30 12345678"), ("Germany", "030 12345678"),
    ("France", "+33 1 42 68 53 00"), ("France", "01 42 68 53 00"), ("France", "+33 6 12 34 56 78"),
    ("India", "+91 98765 43210"), ("India", "098765 43210"), ("Japan", "+81 3-1234-5678"), ("Japan", "03-1234-5678"),
    ("Australia", "+61 2 9876 5432"), ("Australia", "(02) 9876 5432"), ("Brazil", "+55 11 91234-5678"),
    ("IPv4", "192.168.1.20"), ("IPv6", "2001:db8:85a3::8a2e:370:7334"), ("IPv6", "fe80::1ff:fe23:4567:890a"),
    ("IPv6", "2001:0db8:0000:0000:0000:ff00:0042:8329"), ("e-mail", "jane.doe@mail.example.org"),
    ("Reddit user", "u/throwaway_123"), ("Reddit user", "/u/SomeUser"),
]
#: Text that looks a little like PII and must stay.
NOT_PII = ["version 1.2.3.4", "v2.0.1.3", "at 12:30:45 today", "in 2024 we had 1500 visitors", "the year 1999",
           "it costs 12.50 euros", "chapter 3.2.1", "r/cats is great", "call me at noon"]


@pytest.mark.parametrize("kind, pii", PII_FORMATS, ids=[f"{k}:{v}" for k, v in PII_FORMATS])
def test_pii_of_every_format_is_redacted(kind, pii):
    _, doc = _run(PIIRedactor(), f"Reach me at {pii} any time, friend.")
    assert pii not in doc.text and sum(doc.redactions.values()) == 1, doc.text


@pytest.mark.parametrize("text", NOT_PII)
def test_lookalikes_are_left_alone(text):
    _, doc = _run(PIIRedactor(), f"Note: {text}.")
    assert text in doc.text and not doc.redactions, doc.text


def test_safety_filter():
    safety = SafetyFilter(blocked_words=frozenset({"badword", "two words"}), blocked_domains=frozenset({"bad.example"}))
    assert _run(safety, prose_document())[0] is None
    assert _run(safety, prose_document(1) + " badword" * 5)[0] == "blocked_words"
    assert _run(safety, prose_document(), "https://www.bad.example/page")[0] == "blocked_domain"
    assert _run(safety, prose_document(), "https://ok.example/badword-page")[0] == "blocked_url_word"
    assert SafetyFilter().blocked_words  # the default list comes from better-profanity


def _curate(rows, **rules):
    curator = Curator({"web": RuleSet(**rules), "books": RuleSet(filters=("gopher_repetition",))})
    items = list(curator.curate(rows))
    kept = [i.values for i in items if isinstance(i, Row) and i.table == "documents"]
    dropped = [i.values for i in items if isinstance(i, Row) and i.table == "dropped"]
    reasons = [i.reason for i in items if isinstance(i, Rejected)]
    return kept, dropped, reasons


def test_curator_per_source_rules_and_audit():
    rows = [
        make_document(source="web", locator="good", text=prose_document() + " Mail me at a.b@example.com today."),
        make_document(source="web", locator="short", text=PROSE[0]),
        make_document(source="books", locator="chapter", text="CHAPTER 1\n\n" + prose_document(1)),
        make_document(source="web", locator="empty", text=""),
        make_document(source="web", locator="huge", text="word " * 300_000),
        make_document(source="web", locator="garbled", text="\ufffd" * 50 + prose_document()),
        make_document(source="martian", locator="x", text="??"),
    ]
    kept, dropped, reasons = _curate(rows)
    assert [json.loads(k["meta"]).get("redactions") for k in kept] == [{"email": 1}, None]
    assert kept[0]["lang"] == "en" and "a.b@example.com" not in kept[0]["text"]
    assert kept[1]["source"] == "books"  # the books rules have no word minimum
    assert sorted(d["dropped_by"] for d in dropped) == ["empty", "gopher_short_doc", "too_long", "undecodable"]
    assert sorted(reasons) == ["empty", "gopher_short_doc", "too_long", "undecodable", "unknown_source"]


def test_the_curator_counts_and_times_each_filter():
    curator = Curator({"web": RuleSet(filters=("language", "gopher_quality"))})
    rows = [make_document(source="web", locator=str(i), text=text)
            for i, text in enumerate([prose_document(), PROSE[0], prose_document(2), "le chat est sur la table " * 40])]
    reasons = [i.reason for i in curator.curate(rows) if isinstance(i, Rejected)]
    language, gopher = curator.filter_stats["language"], curator.filter_stats["gopher_quality"]
    assert language.seen == 4 and gopher.seen == 4 - language.dropped  # a dropped document goes no further
    assert language.dropped + gopher.dropped == len(reasons) > 0
    assert language.seconds > 0 and gopher.docs_per_second > 0


def test_unknown_filter_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown filters"):
        Curator({"web": RuleSet(filters=("gopher_quality", "vibes"))})


def _plain_repeated_chars(words, n):
    seen, total, i = set(), 0, 0
    while i <= len(words) - n:
        gram = tuple(words[i : i + n])
        if gram in seen:
            total += sum(map(len, gram))
            i += n
        else:
            seen.add(gram)
            i += 1
    return total


def _plain_top_chars(words, n):
    if len(words) < n:
        return 0
    gram, times = Counter(zip(*(words[i:] for i in range(n)))).most_common(1)[0]
    return (sum(map(len, gram)) + n - 1) * times


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "bb", "ccc", "d", "ee", "ffff"]), max_size=80), st.integers(1, 10))
def test_vectorised_ngram_statistics_equal_the_plain_definition(words, n):
    index = _NGramIndex(words)
    assert index.repeated_ngram_chars(n) == _plain_repeated_chars(words, n)
    assert index.top_ngram_chars(n) == _plain_top_chars(words, n)
