"""Text surfaces: normalisation, term matching, term lists, text items through the queue, highlighting."""

import json
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from cases.models import Case
from cases.routing import TEXT
from detection import termlists
from detection.admin import TextTermForm
from detection.detectors.text import (
    MAX_CHARS,
    PATTERN,
    SUBSTRING,
    WORD,
    Term,
    check_pattern,
    highlight_pieces,
    match_terms,
    normalise,
    score,
)
from detection.models import Account, Group, Item, Signal, TextTerm
from tests.conftest import drain, verify_2fa

SEND_PICS = Term("send pics", "solicitation", WORD, 0.6)
AGE = Term(r"\b1[0-5] ?(yo|y/o|years old)\b", "age", PATTERN, 0.3)


def found(text, terms=(SEND_PICS,)):
    """The original substrings that were hit: exactly what the user typed."""
    return [text[h["start"]:h["end"]] for h in match_terms(text, list(terms))]


@pytest.fixture(autouse=True)
def _fresh_terms():
    termlists.forget_terms()
    yield
    termlists.forget_terms()


# ---- normalisation tricks -------------------------------------------------------------------


@pytest.mark.parametrize("typed, trick", [
    ("ѕеnd рісѕ", "lookalikes"),                     # Cyrillic lookalikes in Latin text
    ("ЅЕND РIСЅ", "lookalikes"),                      # Cyrillic capitals
    ("s3nd p1cs", "leetspeak"),
    ("$3nd p!cs", "leetspeak"),
    ("s e n d  p i c s", "spacing"),
    ("s.e.n.d p.i.c.s", "spacing"),
    ("s-e-n-d p-i-c-s", "spacing"),
    ("s_e_n_d_p_i_c_s", "spacing"),
    ("se\u200bnd pi\u200dcs", "invisible"),          # zero-width space and joiner inside words
    ("se\u00adnd pics", "invisible"),                # soft hyphen
    ("sennnnnd piiiiics", "stretching"),
    ("ｓｅｎｄ ｐｉｃｓ", None),                        # fullwidth
    ("𝐬𝐞𝐧𝐝 𝓅𝒾𝒸𝓈", None),                           # mathematical bold and script
    ("ⓢⓔⓝⓓ ⓟⓘⓒⓢ", None),                              # circled
    ("🅂🄴🄽🄳 🄿🄸🄲🅂", None),                              # squared
    ("ꜱᴇɴᴅ ᴘɪᴄꜱ", "lookalikes"),                       # small capitals
    ("séñd pícs", None),                               # accents
    ("s̷e̷n̷d̷ p̷i̷c̷s̷", None),                          # combining strokes
    ("SEND PICS", None),
])
def test_each_trick_is_undone_and_the_hit_is_what_the_user_typed(typed, trick):
    hits = match_terms(f"hey {typed}!", [SEND_PICS])
    assert [h["text"] for h in hits] == [typed]
    assert (hits[0]["start"], hits[0]["end"]) == (4, 4 + len(typed))
    if trick:
        assert trick in normalise(typed).tricks


def test_emoji_stand_for_words():
    terms = [Term("send pics", "solicitation", WORD, 0.5), Term("our secret", "grooming", WORD, 0.5),
             Term("18+", "other", WORD, 0.2)]
    text = "send 📸 it is our 🤫 🔞"
    assert found(text, terms) == ["send 📸", "our 🤫", "🔞"]


def test_leetspeak_folds_only_inside_words_and_ages_keep_their_digits():
    norm = normalise("s3nd me 13 pics, I am 14yo")
    assert "send me 13 pics" in norm.folded.text
    assert "14yo" in norm.digits.text
    assert found("I am 14yo", [AGE]) == ["14yo"]
    assert found("i'm 13 years old", [AGE]) == ["13 years old"]
    assert found("born in 2013, 130 years old", [AGE]) == []


def test_a_trailing_exclamation_mark_is_not_a_letter():
    assert normalise("hi!!").folded.text == "hi!!"
    assert normalise("p!cs").folded.text == "pics"


def test_lone_letters_join_only_with_a_consistent_separator():
    assert normalise("s e n d  p i c s").folded.text == "send pics"
    assert normalise("a b").folded.text == "a b"  # two lone letters are just two words


def test_words_in_other_scripts_are_not_called_a_trick():
    assert "lookalikes" not in normalise("привет как дела").tricks


def test_bidi_overrides_are_removed_and_flagged():
    typed = "send \u202escip\u202c"
    norm = normalise(typed)
    assert "bidi_override" in norm.tricks
    assert "\u202e" not in norm.folded.text


def test_null_bytes_controls_and_unpaired_surrogates_do_not_break_matching():
    typed = json.loads('"se\\u0000nd\\u0007 pi\\ud800cs \\udfff"')
    assert found(typed) == [typed[:typed.index("cs") + 2]]
    assert score(match_terms(typed, [SEND_PICS])) == 0.6


def test_offsets_map_back_through_expansions_and_collapses():
    typed = "ﬁne: plzzzzz send  pics"
    hits = match_terms(typed, [Term("plz", "other", WORD, 0.1), SEND_PICS, Term("fine", "other", WORD, 0.1)])
    assert [h["text"] for h in hits] == ["ﬁne", "plzzzzz", "send  pics"]


# ---- matching -------------------------------------------------------------------------------


def test_whole_words_do_not_match_inside_words_but_substrings_do():
    word = Term("ass", "other", WORD, 0.5)
    assert found("an assessment of the class", [word]) == []
    assert found("you ass.", [word]) == ["ass"]
    substring = Term("pics", "other", SUBSTRING, 0.5)
    assert found("mypicsfolder", [substring]) == ["pics"]


def test_a_phrase_matches_run_together_or_with_punctuation():
    assert found("sendpics") == ["sendpics"]
    assert found("send-pics") == ["send-pics"]
    assert found("send pictures") == []


def test_score_counts_each_term_once_and_combines_independent_terms():
    hits = match_terms("send pics send pics", [SEND_PICS])
    assert len(hits) == 2 and score(hits) == 0.6
    hits = match_terms("send pics, 14yo", [SEND_PICS, AGE])
    assert score(hits) == round(1 - 0.4 * 0.7, 3)


def test_a_term_list_with_a_broken_row_still_matches_the_others():
    broken = Term("(a)\\1", "other", PATTERN, 0.5)  # a back-reference: RE2 refuses it
    assert found("send pics", [broken, SEND_PICS]) == ["send pics"]


@pytest.mark.parametrize("pattern, message", [
    ("(a|b)\\1", "back-references"),
    ("(?<!x)ab", "look-ahead and look-behind"),
    ("a*", "matches empty text"),
    ("[unclosed", "not a valid regular expression"),
    ("x" * 400, "limited to"),
])
def test_unsafe_patterns_are_refused(pattern, message):
    with pytest.raises(ValueError, match=message):
        check_pattern(pattern)


def test_safe_patterns_are_accepted():
    check_pattern(r"\b(add|find) me on (snap|kik)\b")
    check_pattern(r"\b1[0-5] ?(yo|y/o)\b")
    check_pattern(r"(ab){1,3}c")


def test_a_megabyte_of_text_is_capped_and_handled():
    terms = termlists.text.compile_terms(
        [Term(r"\b\w{1,20} ?pics\b", "other", PATTERN, 0.5), SEND_PICS, AGE])
    assert len(terms) == 3
    text = ("a" * 5000 + " s e n d " + "1" * 300 + " ") * 200 + "send pics"
    assert len(text) > 1_000_000
    norm = normalise(text)
    assert norm.truncated and len(norm.original) == MAX_CHARS
    assert match_terms(text, terms) == []  # the hit lies beyond the cap
    early = "send pics " + text
    assert [h["text"] for h in match_terms(early, terms)][:1] == ["send pics"]


def test_highlight_pieces_merge_overlaps_and_clip():
    assert highlight_pieces("abcdef", [(1, 3), (2, 4), (5, 99), (9, 2)]) == [
        ("a", False), ("bcd", True), ("e", False), ("f", True)]


# ---- the shipped default list and the CSV loader ---------------------------------------------


def test_every_default_term_is_valid():
    path = termlists.__file__.replace("termlists.py", "data/default_terms.csv")
    with open(path, encoding="utf-8") as handle:
        result = termlists.read_csv(handle)
    assert result.errors == [] and len(result.rows) >= 20


@pytest.mark.django_db
def test_the_migration_loads_the_defaults_and_they_catch_common_phrases():
    from importlib import import_module

    from django.apps import apps

    # Other files' transactional tests flush the table, so the migration's function is run here again.
    migration = import_module("detection.migrations.0003_default_terms")
    TextTerm.objects.all().delete()
    mine = TextTerm.objects.create(category="other", term="added by an admin", weight=0.1)
    migration.load_defaults(apps, None)
    migration.load_defaults(apps, None)
    assert TextTerm.objects.count() == len(list(migration._rows())) + 1
    terms = termlists.active_terms(force=True)
    hits = match_terms("dont tell ur mum, its our little secret. s3nd me a p1c. add me on snap", terms)
    assert {h["category"] for h in hits} >= {"grooming", "solicitation", "off_platform"}
    assert match_terms("Photographer. Hiking, dogs, coffee. Sending love to all my friends", terms) == []
    migration.remove_defaults(apps, None)
    assert list(TextTerm.objects.all()) == [mine]


@pytest.mark.django_db
def test_load_terms_reports_bad_rows_with_line_numbers_and_loads_the_rest(tmp_path, capsys):
    TextTerm.objects.all().delete()
    path = tmp_path / "terms.csv"
    path.write_text(
        "category,term,match,weight,note\n"
        "grooming,meet in secret,word,0.4,ok\n"
        "nonsense,x y z,word,0.4,\n"
        "grooming,(a)\\1,pattern,0.4,\n"
        "grooming,\u200b,word,0.4,\n"
        "grooming,too heavy,word,1.5,\n"
        "age,\\b1[0-5]yo\\b,pattern,0.3,\n"
        "grooming,a,b,c,d,e,f\n",
        encoding="utf-8")
    call_command("load_terms", str(path), verbosity=0)
    err = capsys.readouterr().err
    for line, words in [(3, "unknown category"), (4, "back-references"), (5, "empty once normalised"),
                        (6, "outside 0..1"), (8, "too many columns")]:
        assert f"line {line}: " in err and words in err
    assert sorted(TextTerm.objects.values_list("term", flat=True)) == ["\\b1[0-5]yo\\b", "meet in secret"]
    call_command("load_terms", str(path), verbosity=0)  # idempotent
    assert TextTerm.objects.count() == 2
    with pytest.raises(CommandError, match="bad rows"):
        call_command("load_terms", str(path), "--strict", verbosity=0)


@pytest.mark.django_db
def test_load_terms_updates_and_replaces_a_category(tmp_path):
    TextTerm.objects.all().delete()
    TextTerm.objects.create(category="grooming", term="old phrase", match="word", weight=0.2)
    TextTerm.objects.create(category="age", term="kept phrase", match="word", weight=0.2)
    path = tmp_path / "terms.csv"
    path.write_text("category,term,match,weight\ngrooming,new phrase,word,0.5\nage,kept phrase,word,0.9\n")
    call_command("load_terms", str(path), "--replace-category", "grooming", verbosity=0)
    assert dict(TextTerm.objects.values_list("term", "weight")) == {"new phrase": 0.5, "kept phrase": 0.9}


@pytest.mark.django_db
def test_load_terms_refuses_a_file_without_the_header(tmp_path, capsys):
    path = tmp_path / "terms.csv"
    path.write_bytes(b"\xff\xfe garbage\n")
    with pytest.raises(CommandError, match="no valid term"):
        call_command("load_terms", str(path), verbosity=0)
    assert "line 1: the header" in capsys.readouterr().err
    with pytest.raises(CommandError, match="no such file"):
        call_command("load_terms", str(tmp_path / "missing.csv"))


# ---- the cached list follows admin edits -----------------------------------------------------


@pytest.mark.django_db
def test_the_term_cache_reloads_when_terms_change(monkeypatch):
    TextTerm.objects.all().delete()
    term = TextTerm.objects.create(category="grooming", term="meet in secret", match="word", weight=0.5)
    assert [t.term.term for t in termlists.active_terms()] == ["meet in secret"]
    monkeypatch.setattr(termlists, "TERMS_CHECK_SECONDS", 0)
    time.sleep(0.001)
    term.enabled = False
    term.save()
    assert termlists.active_terms() == []


# ---- subject surfaces -------------------------------------------------------------------------


@pytest.mark.django_db
def test_surface_signals_cover_every_field_and_dedupe_on_the_text():
    TextTerm.objects.all().delete()
    TextTerm.objects.create(category="solicitation", term="send pics", match="word", weight=0.6)
    TextTerm.objects.create(category="grooming", term="our little secret", match="word", weight=0.6)
    account = Account.objects.create(external_id="a1", display_name="ѕеnd рісѕ", bio="bio: our little secret 🤫")
    [signal] = termlists.surface_signals(account=account)
    assert signal.kind == "text" and signal.detector == "text_terms" and signal.pk is None
    assert signal.score == round(1 - 0.4 * 0.4, 3)
    assert signal.explanation.startswith("Display name matches 'send pics' (solicitation, 0.6); "
                                         "Bio matches 'our little secret' (grooming, 0.6).")
    assert "lookalike letters" in signal.explanation
    fields = {f["field"]: f for f in signal.details["fields"]}
    assert set(fields) == {"display_name", "bio"}
    span = fields["bio"]["spans"][0]
    assert fields["bio"]["text"][span["start"]:span["end"]] == "our little secret"
    assert signal.details["categories"] == ["grooming", "solicitation"]
    assert termlists.surface_signals(account=account)[0].dedupe_key == signal.dedupe_key
    account.bio = "changed: our little secret"
    assert termlists.surface_signals(account=account)[0].dedupe_key != signal.dedupe_key
    group = Group.objects.create(external_id="g1", name="s3nd p1cs here", description="nothing")
    [group_signal] = termlists.surface_signals(group=group)
    assert group_signal.group == group and group_signal.details["fields"][0]["field"] == "name"
    assert termlists.surface_signals(account=Account(external_id="clean", bio="hello")) == []
    assert termlists.surface_signals() == []


# ---- text items through the real queue, and the case page ------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the roles other tests flush
def test_a_text_item_becomes_a_case_with_highlighted_spans(api, client, users, redis_conn):
    TextTerm.objects.all().delete()
    TextTerm.objects.create(category="solicitation", term="send pics", match="word", weight=0.6)
    typed = "<b>hi</b> \u202eplease s e n d  p i c s <script>alert(1)</script>"
    response = api.post("/api/v1/items", json.dumps({"account": "acct-7", "text": typed}),
                        content_type="application/json")
    assert response.status_code == 202
    drain()
    item = Item.objects.get(pk=response.json()["id"])
    assert item.status == "scanned"
    signal = Signal.objects.get(item=item)
    assert signal.kind == "text" and signal.dedupe_key == f"item:{item.pk}:text"
    span = signal.details["fields"][0]["spans"][0]
    assert typed[span["start"]:span["end"]] == "s e n d  p i c s"
    assert "right-to-left override" in signal.explanation
    case = Case.objects.get(signals=signal)
    assert case.queue.slug == TEXT and case.account.external_id == "acct-7"

    client.defaults.pop("HTTP_AUTHORIZATION", None)
    client.force_login(users["reviewer"])
    verify_2fa(client, users["reviewer"])
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "<mark>s e n d  p i c s</mark>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page


@pytest.mark.django_db
def test_a_text_item_with_null_bytes_is_refused_clearly(api):
    response = api.post("/api/v1/items", '{"account": "a1", "text": "se\\u0000nd pics"}',
                        content_type="application/json")
    assert response.status_code == 400 and "text" in response.json()["fields"]


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "method", "body"), [
    ("/api/v1/items", "post", '{"account": "a1", "text": "send \\ud800 pics"}'),
    ("/api/v1/accounts/a1", "put", '{"bio": "x", "facts": {"note": "\\udfff"}}'),
    ("/api/v1/groups/g1", "put", '{"name": "\\ud83d"}'),
])
def test_text_with_an_unpaired_surrogate_is_refused_clearly(api, url, method, body):
    response = getattr(api, method)(url, body, content_type="application/json")
    assert response.status_code == 400 and "surrogate" in response.json()["error"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the roles other tests flush
def test_a_text_item_without_hits_is_scanned_without_a_signal(api, redis_conn):
    TextTerm.objects.all().delete()
    TextTerm.objects.create(category="solicitation", term="send pics", match="word", weight=0.6)
    response = api.post("/api/v1/items", json.dumps({"account": "acct-8", "text": "lovely weather"}),
                        content_type="application/json")
    drain()
    item = Item.objects.get(pk=response.json()["id"])
    assert item.status == "scanned" and not item.signals.exists()


@pytest.mark.django_db
def test_subject_text_signals_render_escaped_highlights_on_the_case_page(client, users):
    from cases.routing import get_queue

    TextTerm.objects.all().delete()
    TextTerm.objects.create(category="solicitation", term="send pics", match="word", weight=0.6)
    account = Account.objects.create(external_id="a9", bio="<img src=x onerror=alert(1)> send pics &amp;")
    [signal] = termlists.surface_signals(account=account)
    case = Case.objects.create(account=account, queue=get_queue(TEXT), priority=50)
    signal.case = case
    signal.save()
    client.force_login(users["reviewer"])
    verify_2fa(client, users["reviewer"])
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt; <mark>send pics</mark> &amp;amp;" in page
    assert "<img src=x" not in page


# ---- admin -----------------------------------------------------------------------------------


@pytest.mark.parametrize("data, field, message", [
    ({"term": "(a)\\1", "match": "pattern"}, "term", "back-references"),
    ({"term": "[oops", "match": "pattern"}, "term", "not a valid regular expression"),
    ({"term": "\u200b\u200d", "match": "word"}, "term", "empty once normalised"),
    ({"term": "ab", "match": "substring"}, "term", "at least three letters"),
    ({"weight": 1.5}, "weight", "between 0 and 1"),
])
@pytest.mark.django_db
def test_the_admin_form_refuses_bad_terms(data, field, message):
    form = TextTermForm({"category": "grooming", "term": "fine phrase", "match": "word", "weight": 0.5,
                         "enabled": True, **data})
    assert not form.is_valid()
    assert message in " ".join(form.errors[field])


@pytest.mark.django_db
def test_the_admin_lists_adds_and_tests_terms(client, users):
    client.force_login(users["admin"])
    verify_2fa(client, users["admin"])
    assert client.get("/admin/detection/textterm/?category=grooming&match=word&q=secret").status_code == 200
    assert client.get("/admin/detection/textterm/add/").status_code == 200
    response = client.post("/admin/detection/textterm/add/", {
        "category": "solicitation", "term": "  show me ur cam  ", "match": "word", "weight": "0.4",
        "enabled": "on", "note": ""})
    assert response.status_code == 302
    assert TextTerm.objects.filter(term="show me ur cam").exists()
    response = client.post("/admin/detection/textterm/add/", {
        "category": "other", "term": "(x)\\1", "match": "pattern", "weight": "0.4"})
    assert response.status_code == 200 and "back-references" in response.content.decode()
    response = client.post("/admin/detection/textterm/test/", {"text": "<i>Show me ur c4m</i>"})
    body = response.content.decode()
    assert response.status_code == 200 and "<mark>Show me ur c4m</mark>" in body and "&lt;i&gt;" in body
    client.force_login(users["reviewer"])
    assert client.get("/admin/detection/textterm/test/").status_code == 302
