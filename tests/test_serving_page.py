"""The demo page at `/` in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium; nothing is downloaded): against a real `shoprec serve` process on a free
loopback port, over the tiny shop with a promoted model (the fixtures of test_serving), it loads,
picking a user shows their recommendations with reasons, and clicking an item posts a view and
changes the list. The page's screenshot lands in the test's tmp dir and in reports/serving-page.png
of the serving home and of the caller's SHOPREC_HOME (`make test`: .shoprec/reports/)."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from shoprec.config import Settings
from tests import test_serving

# The module-scoped server of test_serving (its own home, trained and promoted for this module).
serving_homes = test_serving.serving_homes
sqlite_server = test_serving.sqlite_server

WAIT_S = 60  # a loaded 2-core machine: scoring + a Feast lookup per render, a browser besides
SETUP = "run `make setup` (it installs Debian's chromium and chromium-driver, and selenium)"
# The caller's SHOPREC_HOME (`make test`: .shoprec), read before any test patches it: the
# screenshot is copied to its reports/ too, a place that does not move with pytest's --basetemp.
CALLER_HOME = os.environ.get("SHOPREC_HOME")


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """The system browser and its driver; missing ones fail in one line (never a silent skip:
    CI installs them in `make setup`)."""
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver))
               if path is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found on PATH: {SETUP}", pytrace=False)
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail(f"selenium is not installed: {SETUP}", pytrace=False)
    return browser, driver


@pytest.fixture
def browser(chromium):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1200", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # Selenium Manager, should it ever run: no downloads
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def rendered(driver) -> list[dict]:
    """The recommendation list as the page shows it."""
    return [{"item_id": li.get_attribute("data-item-id"),
             "title": li.find_element("css selector", ".title").text,
             "reason": li.find_element("css selector", ".reason").text}
            for li in driver.find_elements("css selector", "#items li.item")]


def status_for(user: str):
    """The page rendered `user`'s answer: the status line names them and the list is filled."""
    def ready(driver) -> bool:
        status = driver.find_element("id", "status").text
        return f" for {user}," in status and bool(
            driver.find_elements("css selector", "#items li.item"))
    return ready


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])


def test_the_demo_page_shows_recommendations_and_a_click_changes_them(
        chromium, sqlite_server, browser, tmp_path):
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    server, s, (version, _) = sqlite_server
    wait = WebDriverWait(browser, WAIT_S)
    users = test_serving.known_users(server, 2)

    browser.get(server.url + "/")
    assert browser.title.startswith("Shoprec")
    # the sample users are listed and the first one is shown once the page has loaded
    wait.until(lambda d: len(d.find_elements("css selector", "#samples button")) >= 2)
    samples = [b.text for b in browser.find_elements("css selector", "#samples button")]
    assert samples == server.get("/users/sample").json()["users"]
    wait.until(status_for(users[0]))

    # pick another user: their recommendations, each with a reason, from the promoted model
    user = users[1]
    first = browser.find_element("css selector", "#items li.item")
    next(b for b in browser.find_elements("css selector", "#samples button")
         if b.text == user).click()
    wait.until(ec.staleness_of(first))
    wait.until(status_for(user))
    assert browser.find_element("id", "user").get_attribute("value") == user
    assert browser.find_element("id", "strategy").text == "personalized"
    assert f"model {version}" in browser.find_element("id", "status").text
    before = rendered(browser)
    assert [i["item_id"] for i in before] == test_serving.expected(s, user, 10)[1]
    assert all(i["title"] and i["reason"] for i in before), before
    assert browser.find_element("id", "error").text == ""

    # click an item: the page posts a view for that user and renders their new list
    clicked = browser.find_elements("css selector", "#items li.item")[-1]
    item = clicked.get_attribute("data-item-id")
    clicked.click()
    wait.until(ec.staleness_of(clicked))
    wait.until(status_for(user))
    assert browser.find_element("id", "error").text == ""
    after = rendered(browser)
    assert [i["item_id"] for i in after] != [i["item_id"] for i in before], after
    _, want, live = test_serving.expected(s, user, 10)
    assert live.items[-1] == item  # the view reached the online store's live sequence
    assert [i["item_id"] for i in after] == want
    assert all(i["title"] and i["reason"] for i in after), after
    assert 'shoprec_events_total{outcome="accepted"} 1.0' in server.get("/metrics").text

    shot = tmp_path / "serving-page.png"
    assert browser.save_screenshot(str(shot))
    width, height = png_size(shot)
    assert (width, height) >= (800, 600) and shot.stat().st_size > 20_000, (width, height)
    homes = [s.home] + ([Path(CALLER_HOME)] if CALLER_HOME else [])
    for home in homes:
        report = Settings(home=home).reports_dir / "serving-page.png"
        report.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, report)
        assert report.read_bytes() == shot.read_bytes()
        print(f"screenshot: {report}")
