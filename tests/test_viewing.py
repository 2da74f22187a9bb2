"""Reviewer-protecting renditions: filters, per-category preferences, the warning screen."""

import io

import pytest
from PIL import Image, ImageFilter, ImageStat

from cases.models import ViewingPreference
from cases.renditions import revealed
from reviewconsole.audit.models import AuditEvent
from tests.factories import case_with_match

pytestmark = pytest.mark.django_db


def image(response):
    assert response.status_code == 200 and response["Cache-Control"].startswith("no-store")
    return Image.open(io.BytesIO(response.content))


def sharpness(img):
    edges = img.convert("L").filter(ImageFilter.FIND_EDGES)
    return ImageStat.Stat(edges.crop((2, 2, edges.width - 2, edges.height - 2))).var[0]  # PIL leaves borders


@pytest.fixture
def world(users, client):
    case, item = case_with_match()
    client.force_login(users["reviewer"])
    return case, item


def thumb(client, case, item):
    return image(client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}"))


def prefer(user, category="", **values):
    ViewingPreference.objects.update_or_create(user=user, category=category, defaults=values)


def test_the_default_is_strong_blur_in_greyscale(client, world):
    img = thumb(client, *world)
    assert img.mode == "L" and max(img.size) <= 320


def test_light_blur_is_sharper_than_strong_but_still_blurred(client, users, world):
    case, item = world
    strong = sharpness(thumb(client, case, item))
    prefer(users["reviewer"], blur="light")
    light = sharpness(thumb(client, case, item))
    revealed_like = sharpness(Image.open(io.BytesIO(revealed(item))))
    assert strong < light < revealed_like


def test_sepia_and_colour_tones(client, users, world):
    case, item = world
    prefer(users["reviewer"], tone="sepia")
    sepia = thumb(client, case, item).convert("RGB")
    r, g, b = ImageStat.Stat(sepia).mean
    assert r > g > b
    prefer(users["reviewer"], tone="colour")
    assert thumb(client, case, item).mode == "RGB"


def test_reduced_detail_has_few_colours(client, users, world):
    from cases.renditions import reduce_detail
    from reviewconsole.devtools import synthetic
    original = synthetic.make_image(1).resize((320, 240))
    assert len(reduce_detail(original).getcolors(1 << 24)) <= 65 < len(original.getcolors(1 << 24))
    case, item = world
    prefer(users["reviewer"], tone="colour", detail="reduced", blur="light")
    reduced = client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}").content
    prefer(users["reviewer"], tone="colour", detail="full", blur="light")
    assert client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}").content != reduced


def test_the_warning_screen_shows_what_was_found_not_the_image(client, users, world, settings, image_bytes):
    case, item = world
    prefer(users["reviewer"], warning_screen=True)
    card = client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}").content
    # Whatever the evidence looks like, the card is the same: no pixel of it is sent.
    (settings.EVIDENCE_ROOT / item.storage_path).write_bytes(image_bytes(99))
    assert client.get(f"/evidence/{item.pk}/blurred.jpg?case={case.pk}").content == card
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "Content warning for item" in page
    assert AuditEvent.objects.filter(action="evidence.viewed_blurred").count() == 2


def test_preferences_resolve_from_specific_to_general(users):
    user = users["reviewer"]
    assert ViewingPreference.for_user(user, "known-material").blur == "strong"  # built-in default
    ViewingPreference.objects.create(user=None, category="", tone="sepia")
    assert ViewingPreference.for_user(user, "known-material").tone == "sepia"  # organisation default
    ViewingPreference.objects.create(user=None, category="known-material", warning_screen=True)
    assert ViewingPreference.for_user(user, "known-material").warning_screen
    prefer(user, "", blur="light")
    assert ViewingPreference.for_user(user, "known-material").blur == "light"  # own beats organisation
    prefer(user, "known-material", blur="strong", warning_screen=False)
    pref = ViewingPreference.for_user(user, "known-material")
    assert pref.blur == "strong" and not pref.warning_screen
    assert ViewingPreference.for_user(user, "user-reports").blur == "light"


def test_the_preferences_page_saves_and_validates(client, users):
    client.force_login(users["reviewer"])
    assert client.get("/account/viewing/").status_code == 200
    form = {"all-blur": "light", "all-tone": "sepia", "all-detail": "full",
            "known-material-mode": "own", "known-material-blur": "strong", "known-material-tone": "greyscale",
            "known-material-detail": "reduced", "known-material-warning": "on"}
    for slug in ("new-content", "text-surfaces", "user-reports"):
        form.update({f"{slug}-mode": "inherit", f"{slug}-blur": "strong", f"{slug}-tone": "greyscale",
                     f"{slug}-detail": "full"})
    client.post("/account/viewing/", form)
    own = ViewingPreference.for_user(users["reviewer"], "known-material")
    assert own.warning_screen and own.detail == "reduced"
    assert ViewingPreference.for_user(users["reviewer"], "new-content").tone == "sepia"
    form["all-blur"] = "none"  # not offered: an unblurred default would defeat the filter
    client.post("/account/viewing/", form)
    assert ViewingPreference.objects.get(user=users["reviewer"], category="").blur == "light"
    client.force_login(users["nobody"])
    assert client.get("/account/viewing/").status_code == 403


def test_no_blur_is_only_for_cleared_reviewers_and_never_without_a_filter(client, users):
    base = {"all-blur": "none", "all-tone": "greyscale", "all-detail": "full"}
    for slug in ("known-material", "new-content", "text-surfaces", "user-reports"):
        base.update({f"{slug}-mode": "inherit", f"{slug}-blur": "strong", f"{slug}-tone": "greyscale",
                     f"{slug}-detail": "full"})
    client.force_login(users["reviewer"])
    client.post("/account/viewing/", base)
    assert not ViewingPreference.objects.filter(user=users["reviewer"], blur="none").exists()
    client.force_login(users["specialist"])
    client.post("/account/viewing/", {**base, "all-tone": "colour"})
    assert not ViewingPreference.objects.filter(user=users["specialist"], blur="none").exists()
    client.post("/account/viewing/", base)
    assert ViewingPreference.for_user(users["specialist"], "").blur == "none"
