"""Drive the playground page in headless Chromium: type a description, press Generate, see candidates.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skipped
with a message when either is missing.
"""

from __future__ import annotations

import pytest

from browser import needs_browser  # the browser fixture comes from tests/conftest.py

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

pytestmark = needs_browser


def test_playground_shows_candidates(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    browser.get(url + "/")
    assert "nl2code playground" in browser.title
    wait = WebDriverWait(browser, 60)
    wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "tiny"))  # /health was fetched

    n = browser.find_element(By.ID, "n")
    n.clear()
    n.send_keys("3")
    tokens = browser.find_element(By.ID, "max_tokens")
    tokens.clear()
    tokens.send_keys("24")
    browser.find_element(By.ID, "prompt").send_keys("Return the sum of a list of numbers.")
    browser.find_element(By.ID, "generate").click()

    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .candidate")) == 3)
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .candidate")
    scores = [float(c.find_element(By.CSS_SELECTOR, ".score").text) for c in cards]
    assert scores == sorted(scores, reverse=True)
    assert all(c.find_element(By.CSS_SELECTOR, "pre code") for c in cards)
    assert "candidate(s)" in browser.find_element(By.ID, "status").text


def test_playground_shows_errors(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    browser.get(url + "/")
    n = browser.find_element(By.ID, "n")
    n.clear()
    n.send_keys("99")  # over the server's limit: the 422 message is shown, not a blank page
    browser.find_element(By.ID, "prompt").send_keys("Sort a list.")
    browser.find_element(By.ID, "generate").click()
    status = WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "status") if "error 422" in d.find_element(By.ID, "status").text else None
    )
    assert "n must be in" in status.text
    assert browser.find_elements(By.CSS_SELECTOR, "#results .candidate") == []


def test_highlighter_marks_python(server, browser):
    url, _ = server
    browser.get(url + "/")
    html = browser.execute_script(
        "return highlight(arguments[0]);", "def f(x):  # note\n    return 'a<b' + 2\n"
    )
    assert '<span class="kw">def</span>' in html and '<span class="fn">f</span>' in html
    assert '<span class="com"># note</span>' in html and '<span class="num">2</span>' in html
    assert "&lt;" in html and "<b" not in html.replace("<span", "")  # text is escaped, never injected
