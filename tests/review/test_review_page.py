"""The review page in headless Chromium: keyboard and click labels, undo, reload, database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from review_helpers import queue_with_photos

from browser_helpers import chromium, serving
from scones.dashboard.app import DashboardConfig, create_app
from scones.monitor.runner import MonitorOptions
from scones.review.api import ReviewService, review_router
from scones.review.queue import ReviewQueue

CLASSES = ("bicycle", "motorcycle")


@pytest.fixture
def browser(tmp_path) -> Iterator[object]:
    with chromium(tmp_path / "chromium-profile", window=(1280, 1000)) as driver:
        yield driver


@pytest.mark.browser
def test_in_the_dashboard_label_with_keys_and_a_click_undo_one_and_reload(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    db = tmp_path / "scones.db"
    queue_with_photos(db, tmp_path / "store", 6).close()
    with ReviewQueue(db, classes=CLASSES) as queue:
        order = [item.item_id for item in queue.items()]
    service = ReviewService(db, classes=CLASSES, reviewer="pat")
    wait = WebDriverWait(browser, 20)

    def shown_key() -> str:
        return browser.find_element(By.ID, "photo").get_attribute("data-key")

    def progress() -> str:
        return browser.find_element(By.ID, "progress").text

    def wait_progress(labelled: int) -> None:
        wait.until(lambda d: progress().startswith(f"{labelled} of 6 labelled"))

    (tmp_path / "capture").mkdir()
    dashboard = create_app(  # the review page as `scones dashboard` mounts it
        DashboardConfig(
            monitor=MonitorOptions(
                capture_uri=str(tmp_path / "capture"), endpoint_name="scones-endpoint"
            ),
            db_path=db,
            window=None,
            routers=(review_router(service),),
        )
    )
    with serving(dashboard) as url:
        browser.get(url + "/review")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        assert progress() == "0 of 6 labelled (6 pending)"
        photo = browser.find_element(By.ID, "photo")
        assert photo.value_of_css_property("image-rendering") == "pixelated"
        assert photo.size["width"] >= 256  # a 32x32 photo, shown large enough to judge
        wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", photo) == 32)
        assert "Model's guess: bicycle" in browser.find_element(By.ID, "guess").text

        body = browser.find_element(By.TAG_NAME, "body")
        for labelled, key in enumerate(["b", "m", "n"], start=1):
            body.send_keys(key)
            wait_progress(labelled)
        assert shown_key() == order[3]
        body.send_keys("s")  # skip the fourth: it stays pending
        wait.until(lambda d: shown_key() == order[4])
        browser.find_element(By.ID, "label-motorcycle").click()
        wait_progress(4)
        body.send_keys("u")  # undo the click
        wait_progress(3)
        assert shown_key() == order[4]

        browser.refresh()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        assert progress() == "3 of 6 labelled (3 pending)"
        assert shown_key() == order[3]  # the skipped one is first again
        errors = [
            e
            for e in browser.get_log("browser")
            if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]
        ]
        assert errors == []
    service.close()

    with ReviewQueue(db, classes=CLASSES) as queue:
        labels = {item.item_id: item.label for item in queue.items()}
        assert [labels[key] for key in order] == [
            "bicycle",
            "motorcycle",
            "neither",
            None,
            None,
            None,
        ]
        assert {queue.get(order[0]).labelled_by} == {"pat"}
        [event] = queue.history(order[4])
        assert (event.label, event.undone_by) == ("motorcycle", "pat")
