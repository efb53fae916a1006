"""The admin console in a real browser: Debian's headless Chromium driven by Selenium
through chromedriver, against `rewards serve` and a real worker.

One browser for the module (starting Chromium costs about a second). `console_browser`
hands a test the browser signed in to the module's tenant, whatever the test before it
did (signing out included), so tests here can be added in any order. Screenshots of the
overview and of a participant page (phone width) are written to docs/ for the README.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import TenantKeys, WorkerProcess

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parent.parent / "docs"
DESKTOP = (1280, 860)
PHONE = (390, 1500)
WAIT_SECONDS = 20


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium; the driver path is given, so Selenium Manager never downloads."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: install Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def console_tenant(make_session_tenant: object) -> TenantKeys:
    return make_session_tenant("Console browser")  # type: ignore[operator,no-any-return]


def wait_for(driver: WebDriver, condition: object) -> object:
    return WebDriverWait(driver, WAIT_SECONDS).until(condition)  # type: ignore[arg-type]


def sign_in_with(driver: WebDriver, base: str, key: str) -> None:
    driver.get(f"{base}/console/login")
    field = driver.find_element(By.ID, "f-api_key")
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, expected_conditions.staleness_of(field))


@pytest.fixture
def console_browser(browser: WebDriver, live_api: str, console_tenant: TenantKeys) -> WebDriver:
    """The module's browser, signed in with the tenant's live admin key, at desktop size."""
    browser.set_window_size(*DESKTOP)
    browser.get(f"{live_api}/console/")
    if "/console/login" in browser.current_url:
        sign_in_with(browser, live_api, console_tenant.admin_key)
    assert browser.current_url == f"{live_api}/console/", browser.current_url
    return browser


def test_sign_in_shows_the_overview_with_the_tenant(
    console_browser: WebDriver, console_tenant: TenantKeys
) -> None:
    assert console_browser.title.startswith("Overview")
    assert str(console_tenant.tenant_id) in console_browser.find_element(By.TAG_NAME, "header").text
    nav = console_browser.find_element(By.CSS_SELECTOR, "nav[aria-label]")
    assert "Rewards" in nav.text and "Participants" in nav.text and "Audit log" in nav.text


def test_create_a_reward_then_upload_codes_and_see_the_count(
    console_browser: WebDriver, live_api: str, tmp_path: Path
) -> None:
    driver = console_browser
    driver.get(f"{live_api}/console/rewards/new")
    driver.find_element(By.ID, "f-name").send_keys("Browser coupon")
    Select(driver.find_element(By.ID, "f-type")).select_by_value("coupon")
    driver.find_element(By.ID, "f-points_cost").send_keys("100")
    driver.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    wait_for(driver, expected_conditions.url_contains("saved=created"))
    assert driver.title.startswith("Reward: Browser coupon")

    codes = tmp_path / "codes.csv"
    codes.write_text("code\n" + "".join(f"BROWSER-{n}\n" for n in range(250)) + "BROWSER-1\n")
    driver.find_element(By.ID, "f-codes_file").send_keys(str(codes))
    driver.find_element(By.CSS_SELECTOR, "form[data-progress] button[type=submit]").click()
    answer = wait_for(
        driver, expected_conditions.visibility_of_element_located((By.ID, "codes-answer"))
    )

    assert "250 codes added" in answer.text  # type: ignore[attr-defined]
    assert "1 duplicate skipped" in answer.text  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, "codes-progress").get_attribute("value") == "100"
    driver.get(driver.current_url)
    assert "250" in driver.find_element(By.CSS_SELECTOR, "dd.big").text


def test_award_points_and_see_the_balance_and_the_ledger_line(
    console_browser: WebDriver, live_api: str, worker: WorkerProcess
) -> None:
    driver = console_browser
    participant_id = f"browser-{uuid.uuid4().hex[:6]}"
    driver.get(f"{live_api}/console/participants")
    driver.find_element(By.ID, "f-participant_id").send_keys(participant_id)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait_for(driver, expected_conditions.title_contains(participant_id))

    driver.find_element(By.ID, "f-amount").send_keys("350")
    driver.find_element(By.ID, "f-reason").send_keys("Welcome gift")
    driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=points-heading] button").click()
    balance = wait_for(
        driver, expected_conditions.visibility_of_element_located((By.ID, "new-balance"))
    )

    assert balance.text == "350"  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, "balance").text == "350"
    rows = driver.find_elements(By.CSS_SELECTOR, "#ledger tbody tr")
    assert len(rows) == 1
    assert "Welcome gift" in rows[0].text and "+350" in rows[0].text

    driver.set_window_size(*PHONE)
    driver.get(f"{live_api}/console/participants/view?participant_id={participant_id}")
    # On a phone the page fits the width: only the tables scroll sideways, in their box.
    page_width = driver.execute_script("return document.documentElement.scrollWidth")
    assert page_width <= PHONE[0]
    driver.save_screenshot(str(DOCS / "console-participant.png"))


def test_run_a_bulk_job_to_the_end_and_see_its_error_count(
    console_browser: WebDriver, live_api: str, worker: WorkerProcess, tmp_path: Path
) -> None:
    driver = console_browser
    # Awarding to 5,000 new participants takes about a second (measured here: 1.0 s from
    # the upload to the job's end), many times what showing the job page after the upload
    # takes: the page is shown before the job ends, so only the polling can show the end.
    rows = 5_000
    awards = tmp_path / "awards.csv"
    awards.write_text(
        "participant_id,amount,reason\n"
        + "".join(f"bulk-{n},{n % 50 + 1},browser bulk\n" for n in range(rows - 1))
        + "bulk-bad,lots,typo\n"
    )
    driver.get(f"{live_api}/console/bulk")
    driver.find_element(By.ID, "f-file").send_keys(str(awards))
    driver.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    wait_for(driver, expected_conditions.title_contains("Bulk job"))
    first_shown = driver.find_element(By.ID, "job-progress")
    assert first_shown.get_attribute("data-status") in ("queued", "processing")

    # htmx swaps the progress section in every second until the job says it is done.
    wait_for(driver, expected_conditions.staleness_of(first_shown))
    wait_for(
        driver,
        expected_conditions.text_to_be_present_in_element_attribute(
            (By.ID, "job-progress"), "data-status", "succeeded"
        ),
    )
    bar = driver.find_element(By.ID, "job-bar")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == (str(rows), str(rows))
    assert driver.find_element(By.ID, "job-awarded").text == str(rows - 1)
    assert driver.find_element(By.ID, "job-failed").text == "1"
    link = driver.find_element(By.ID, "error-csv")
    assert (link.get_attribute("href") or "").endswith("/errors.csv")


def test_rotate_a_webhook_secret_and_see_the_new_one(
    console_browser: WebDriver, live_api: str
) -> None:
    driver = console_browser
    driver.get(f"{live_api}/console/webhooks/new")
    driver.find_element(By.ID, "f-url").send_keys("http://127.0.0.1:9/browser-hooks")
    driver.find_element(By.CSS_SELECTOR, "input[name=events][value='points.awarded']").click()
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    first = wait_for(
        driver, expected_conditions.visibility_of_element_located((By.ID, "new-secret"))
    ).text  # type: ignore[attr-defined]
    driver.find_element(By.LINK_TEXT, "Go to the endpoint").click()
    wait_for(driver, expected_conditions.title_contains("Webhook: http://127.0.0.1:9/"))

    driver.find_element(By.CSS_SELECTOR, "form[aria-labelledby=rotate-heading] button").click()
    wait_for(driver, expected_conditions.title_contains("Signing secret rotated"))

    rotated = driver.find_element(By.ID, "new-secret").text
    assert rotated.startswith("whsec_") and rotated != first
    assert "previous secret also signs" in driver.find_element(By.TAG_NAME, "main").text


def test_the_overview_counts_the_writes_made_above(
    console_browser: WebDriver, live_api: str
) -> None:
    """The award and the bulk job above are on the overview's last hour (and in its
    screenshot for the README)."""
    driver = console_browser
    driver.get(f"{live_api}/console/")
    total = driver.find_element(By.ID, "writes-hour-total").text
    assert int(total) >= 2, total
    # A bar (legend swatches carry no title) for the writes of this last hour.
    assert driver.find_elements(By.CSS_SELECTOR, ".overview-charts svg.chart rect > title")
    DOCS.mkdir(exist_ok=True)
    driver.save_screenshot(str(DOCS / "console-overview.png"))


def test_a_post_without_the_csrf_token_is_refused_and_does_nothing(
    console_browser: WebDriver, live_api: str
) -> None:
    cookie = console_browser.get_cookie("rewards_console")
    assert cookie is not None and cookie.get("httpOnly") is True
    assert cookie.get("sameSite") == "Lax"
    request = urllib.request.Request(
        f"{live_api}/console/logout",
        method="POST",
        data=b"",
        headers={"Cookie": f"rewards_console={cookie['value']}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 400

    console_browser.get(f"{live_api}/console/")
    assert console_browser.current_url == f"{live_api}/console/"  # still signed in


def test_a_participant_key_is_refused(
    browser: WebDriver, live_api: str, console_tenant: TenantKeys
) -> None:
    browser.delete_all_cookies()
    sign_in_with(browser, live_api, console_tenant.participant_key)

    assert "/console/login" in browser.current_url
    error = browser.find_element(By.ID, "error-api_key")
    assert "not admin-scoped" in error.text
    assert browser.find_element(By.ID, "f-api_key").get_attribute("aria-describedby") == (
        "error-api_key"
    )


def test_sign_out_ends_the_session(console_browser: WebDriver, live_api: str) -> None:
    console_browser.find_element(By.CSS_SELECTOR, "nav form button").click()
    wait_for(console_browser, expected_conditions.url_contains("/console/login"))

    console_browser.get(f"{live_api}/console/rewards")
    assert "/console/login" in console_browser.current_url
