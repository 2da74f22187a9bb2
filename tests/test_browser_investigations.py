"""An investigation in a real headless Chromium: an analyst searches for a picture's hash by keyboard, opens
the account that sent it, follows "who else shared this" to a second account, and a senior tags that account
so nobody actions it without a senior; every page blurred-only and without serious axe findings."""

import pytest

from tests.test_accessibility import check
from tests.test_browser import SHOTS, browser, playwright, verify_second_factor  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def sign_in(page, live_server, username, lands_on):
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pw-{username}")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}{lands_on}")


def test_search_subject_pivot_and_tag(browser, live_server, users):  # noqa: F811
    from cases.models import SubjectTag
    from reviewconsole.audit.models import AuditEvent
    from tests.factories import case_with_match, encoded, scanned_item

    case, item = case_with_match(seed=61, account="acct-first")
    again = scanned_item(encoded(61, "watermarked"), account="acct-second", group="grp-trades")
    assert again.md5 == item.md5
    SHOTS.mkdir(parents=True, exist_ok=True)

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    sign_in(page, live_server, "ana", "/search/")  # an analyst starts from the search box
    page.locator("main h1").click()  # focus anywhere but a field: "/" jumps to the box
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "site-search"
    page.keyboard.type(item.md5)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/search/?q={item.md5}")
    assert page.locator(f"img[src*='/evidence/{item.pk}/blurred.jpg']").count() == 1
    assert page.locator("[data-reveal], form[action*='reveal']").count() == 0
    check(page, "investigation-search")

    page.click(f"a[href='/accounts/{item.account_id}/']")
    page.wait_for_url(f"{live_server.url}/accounts/{item.account_id}/")
    assert "acct-first" in page.inner_text("h1")
    check(page, "investigation-account")

    page.click(f"a[href='/items/{item.pk}/similar/']")
    page.wait_for_url(f"{live_server.url}/items/{item.pk}/similar/")
    body = page.inner_text("main")
    assert "acct-second" in body and "grp-trades" in body
    check(page, "investigation-pivot")
    page.click(f"a[href='/accounts/{again.account_id}/']")
    page.wait_for_url(f"{live_server.url}/accounts/{again.account_id}/")
    assert AuditEvent.objects.filter(actor=users["analyst"], action="subject.pivot_viewed").count() == 1
    page.close()

    # A senior marks the second account: nobody below a senior actions it.
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    sign_in(page, live_server, "sena", "/queue/")
    verify_second_factor(page, live_server, users["senior"])
    page.goto(f"{live_server.url}/accounts/{again.account_id}/")
    page.focus("select[name=tag]")
    page.select_option("select[name=tag]", "senior_only")
    page.keyboard.press("Tab")
    page.keyboard.type("Coordinating with the liaison on a police request")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Do not action without a senior")
    tag = SubjectTag.objects.get(account_id=again.account_id)
    assert tag.tag == "senior_only" and tag.set_by == users["senior"]
    check(page, "investigation-tagged")
    page.close()



def test_pivot_to_cluster_case_preview_proposal_and_second_senior(browser, live_server, users, redis_conn):  # noqa: F811
    """A reviewer opens a cluster case from "who else shared this", previews a policy member by member
    (a possible child victim is left out), proposes it; a senior approves with the second factor; a real
    worker decides each member on its own case."""
    from cases.actions.tags import tag_subject
    from cases.models import ClusterAction, Decision
    from detection.models import Account, SubjectStatus
    from tests.conftest import drain
    from tests.factories import case_with_match, encoded, scanned_item, triage_all

    case, item = case_with_match(seed=62, account="acct-one")
    for name in ("acct-two", "acct-three"):
        scanned_item(encoded(62, "watermarked"), account=name)
    triage_all()
    tag_subject(users["senior"], Account.objects.get(external_id="acct-three"), "possible_minor_victim", "age")

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    sign_in(page, live_server, "rita", "/queue/")
    page.goto(f"{live_server.url}/items/{item.pk}/similar/")
    page.fill("#cluster-title", "Ring sharing item")
    page.click("text=Open cluster case")
    page.wait_for_selector("h1:has-text('Cluster #')")
    assert page.locator("tr[data-member]").count() == 3
    page.focus("#policy")
    page.select_option("#policy", "csam-known")
    page.click("button:has-text('Preview')")
    page.wait_for_selector("[data-preview]")
    left_out = page.inner_text("[data-preview-member='account:acct-three']")
    assert "Left out" in left_out and "possible minor victim" in left_out
    assert "bans the account" in page.inner_text("[data-preview-member='account:acct-two']").lower()
    check(page, "cluster-preview")
    page.fill("#propose-note", "All three sent the same known picture within an hour.")
    page.click("text=Propose to a senior")
    page.wait_for_selector("text=a different senior must approve it")
    assert not Decision.objects.filter(options__has_key="cluster").exists()
    page.close()

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    sign_in(page, live_server, "sena", "/queue/")
    verify_second_factor(page, live_server, users["senior"])
    action = ClusterAction.objects.get()
    page.goto(f"{live_server.url}/clusters/{action.cluster_id}/")
    check(page, "cluster-approval")
    page.click("button:has-text('Approve and carry out')")
    page.wait_for_selector("text=each member is being decided now")
    drain()
    page.reload()
    page.wait_for_selector("text=Carried out")
    body = page.inner_text("#actions")
    assert "decided on case" in body and "left out" in body
    check(page, "cluster-done")
    assert {a.external_id for a in Account.objects.filter(status=SubjectStatus.BANNED)} == {"acct-one", "acct-two"}
    assert Decision.objects.filter(options__cluster_action=action.pk, second_reviewer=users["senior"]).count() == 2
    page.close()
