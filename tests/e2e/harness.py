"""Driving a Streamlit app in a browser the way Streamlit's own e2e harness waits for it.

After each action: the app is connected, the script run the action started has ended
(`data-test-script-state="notRunning"` on `stApp`), and no skeleton is left. Then the test
asserts the text it expects, with Playwright's retrying `expect`, never with a sleep.

A short run (a widget in a dialog reruns only the dialog, in milliseconds) can start and
end between two renders, so the DOM alone may never show it running. The server says when
a run ends, though: `rerun_after` waits for that message (a `script_finished` ForwardMsg
on the app's websocket), then for the page to settle.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from weakref import WeakKeyDictionary

from google.protobuf.message import DecodeError
from playwright.sync_api import Locator, Page, WebSocket, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 60_000
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

_APP = '[data-testid="stApp"]'
_STREAM = "/_stcore/stream"
# A run that ends to make way for another (st.rerun, a widget changed meanwhile) is not the end.
_FINAL = {
    ForwardMsg.FINISHED_SUCCESSFULLY,
    ForwardMsg.FINISHED_WITH_COMPILE_ERROR,
    ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY,
}
_sockets: WeakKeyDictionary[Page, WebSocket] = WeakKeyDictionary()
# Scroll the element's scrolling ancestor until the element is just below Streamlit's header.
_SCROLL_TO_TOP = """
(element) => {
  let box = element.parentElement;
  while (box && !(box.scrollHeight > box.clientHeight
                  && getComputedStyle(box).overflowY !== "visible")) {
    box = box.parentElement;
  }
  box = box || document.scrollingElement;
  box.scrollTop += element.getBoundingClientRect().top - 80;
}
"""


def watch_script_runs(page: Page) -> None:
    """Keep hold of the app's websocket (the latest one, should it reconnect)."""

    def opened(socket: WebSocket) -> None:
        if socket.url.endswith(_STREAM):
            _sockets[page] = socket

    page.on("websocket", opened)


def _run_ended(payload: str | bytes) -> bool:
    if isinstance(payload, str):
        return False
    message = ForwardMsg()
    try:
        message.ParseFromString(payload)
    except DecodeError:
        return False
    return message.WhichOneof("type") == "script_finished" and message.script_finished in _FINAL


def wait_for_app(page: Page) -> None:
    """Connected, no script running, no skeleton: what Streamlit's harness waits for.
    An exception the script raised fails the test at once, with its traceback."""
    app = page.locator(_APP)
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=TIMEOUT_MS)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=TIMEOUT_MS)
    expect(page.locator('[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]')).to_have_count(
        0, timeout=TIMEOUT_MS
    )
    raised = page.locator('[data-testid="stException"]')
    if raised.count():
        raise AssertionError(f"the script raised: {raised.first.inner_text()}")


@contextmanager
def rerun_after(page: Page) -> Iterator[None]:
    """Wrap an action that makes Streamlit run the script; wait until that run has ended."""
    socket = _sockets.get(page)
    assert socket is not None, "open_app() first: the app's websocket is not open"
    try:
        with socket.expect_event("framereceived", predicate=_run_ended, timeout=TIMEOUT_MS):
            yield
    except PlaywrightTimeoutError:
        state = page.locator(_APP).get_attribute("data-test-script-state")
        raise AssertionError(
            f"no script run ended within {TIMEOUT_MS / 1000:.0f} s of the action "
            f"(script state {state!r})"
        ) from None
    wait_for_app(page)


def open_app(page: Page, path: str = "/") -> None:
    page.goto(path)
    wait_for_app(page)
    expect(page.locator('[data-testid="stSidebarNav"]')).to_be_visible(timeout=TIMEOUT_MS)


def go_to(page: Page, title: str) -> None:
    """Click a page in the sidebar navigation (the session, and its state, carry on)."""
    # By its whole name: "Deploy" is also the start of "Deployments".
    nav = page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True)
    with rerun_after(page):
        nav.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title, timeout=TIMEOUT_MS)


def main(page: Page) -> Locator:
    return page.locator('[data-testid="stMain"]')


def button(scope: Page | Locator, name: str) -> Locator:
    """A button by its visible name (icons are aria-hidden, so they are not part of it)."""
    return scope.get_by_role("button", name=name, exact=True)


def click(page: Page, target: Locator) -> None:
    with rerun_after(page):
        target.click()


def slider(page: Page, label: str) -> Locator:
    # The thumb's own accessible name repeats the label; the group around it has it once.
    return page.get_by_role("group", name=label, exact=True).get_by_role("slider")


def set_slider(page: Page, label: str, value: int) -> None:
    """Move a slider's thumb with the keyboard, as a user would (Home, then ArrowRight)."""
    thumb = slider(page, label)
    current = int(thumb.input_value())
    if current == value:
        return
    with rerun_after(page):
        thumb.focus()
        if value == 0:
            thumb.press("Home")
        else:
            step = "ArrowRight" if value > current else "ArrowLeft"
            for _ in range(abs(value - current)):
                thumb.press(step)
    expect(thumb).to_have_value(str(value), timeout=TIMEOUT_MS)


def choose(page: Page, label: str, option: str) -> None:
    """Pick an option of a selectbox by its label and the option's visible text."""
    box = page.get_by_role("combobox", name=label, exact=True)
    if box.input_value() == option:
        return  # picking the option already shown runs nothing
    box.click()
    listbox = page.get_by_role("listbox", name=label)
    with rerun_after(page):
        listbox.get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option, timeout=TIMEOUT_MS)


def enter(page: Page, field: Locator, text: str) -> None:
    """Type into a text input and press Enter, which sends it to the script.

    Losing focus sends it too (a dialog that has just opened may move the focus), and then
    Enter sends nothing more: so the wait covers typing as well as the key.
    """
    with rerun_after(page):
        field.fill(text)
        field.press("Enter")
    expect(field).to_have_value(text, timeout=TIMEOUT_MS)


def alert(page: Page, text: str | re.Pattern[str]) -> Locator:
    """The st.success/info/warning/error box that holds `text`."""
    return main(page).locator('[data-testid="stAlert"]').filter(has_text=text)


def dialog(page: Page) -> Locator:
    return page.get_by_role("dialog")


def screenshot(page: Page, name: str, *, scroll_to: Locator | None = None) -> Path:
    """Save docs/screenshots/{name}.png at the page's 1280x900 viewport, overwriting it;
    `scroll_to` is brought to the top first, to show what lies below the fold."""
    wait_for_app(page)
    if scroll_to is not None:
        scroll_to.evaluate(_SCROLL_TO_TOP)
    page.mouse.move(0, VIEWPORT["height"] - 1)  # no hover tooltip in the picture
    path = SCREENSHOTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return path
