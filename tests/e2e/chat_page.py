"""The chat as a person sees it in the browser: a small page object over Playwright.

Owns the selectors (checked against Chainlit 2.12's built frontend) and the
waits that make driving the page reliable without fixed sleeps:

- the chat is ready once the app's settings button is there: Chainlit renders
  it only when `on_chat_start` has sent the chat settings over the socket;
- an upload is finished when the send button is enabled again (Chainlit
  disables it while any attachment is still uploading);
- a turn is over when the stop button has given way to the send button.

Knows nothing of the fake server or of what the answers should say.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Locator, Page, expect

READY = "#chat-settings-open-modal"
COMMANDS = "#command-button"  # the composer's menu of / commands (the presets)
COMPOSER = "#chat-input"
SEND = "#chat-submit"
STOP = "#stop-button"  # replaces the send button while a task runs
FILE_INPUT = "#upload-button-input"  # the hidden input[type=file] behind the paperclip
ATTACHMENTS = "#attachments > *"  # one thumbnail per file waiting in the composer
QUESTIONS = '[data-step-type="user_message"]'
ANSWERS = '[data-step-type="assistant_message"]'  # answers, notices, errors
ERROR_ICON = ".lucide-circle-alert"  # the avatar of an ErrorMessage

# Generous: two cores may be busy with the app, the browser and the fake at once.
TIMEOUT_MS = 20_000


class ChatPage:
    def __init__(self, page: Page, artifacts: Path) -> None:
        self.page = page
        self._artifacts = artifacts

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.wait_until_ready()

    def wait_until_ready(self) -> None:
        expect(self.page.locator(READY)).to_be_visible(timeout=TIMEOUT_MS)

    @property
    def answers(self) -> Locator:
        return self.page.locator(ANSWERS)

    @property
    def last_answer(self) -> Locator:
        return self.answers.last

    def answer_texts(self) -> list[str]:
        return [text.strip() for text in self.answers.all_inner_texts()]

    def attach(self, *files: Path) -> None:
        self.page.set_input_files(FILE_INPUT, [str(path) for path in files])
        expect(self.page.locator(ATTACHMENTS)).to_have_count(len(files), timeout=TIMEOUT_MS)

    def ask(self, text: str, *files: Path) -> None:
        """Type a question (with files, if any), send it, and wait until it shows in the thread."""
        asked = self.page.locator(QUESTIONS).count()
        if files:
            self.attach(*files)
        self.page.fill(COMPOSER, text)
        send = self.page.locator(SEND)
        expect(send).to_be_enabled(timeout=TIMEOUT_MS)
        send.click()
        expect(self.page.locator(QUESTIONS)).to_have_count(asked + 1, timeout=TIMEOUT_MS)

    def choose_command(self, description: str) -> None:
        """Pick a / command (a preset) by its description, as from the composer's menu."""
        self.page.locator(COMMANDS).click()
        self.page.get_by_role("option").filter(has_text=description).click()

    def wait_for_answer(self, text: str) -> Locator:
        """The newest message, once it contains `text` (streamed text counts as it arrives)."""
        expect(self.last_answer).to_contain_text(text, timeout=TIMEOUT_MS)
        return self.last_answer

    def wait_until_idle(self) -> None:
        expect(self.page.locator(SEND)).to_be_visible(timeout=TIMEOUT_MS)

    def stop(self) -> None:
        self.page.locator(STOP).click()
        self.wait_until_idle()

    def screenshot(self, name: str) -> Path:
        path = self._artifacts / f"{name}.png"
        self.page.screenshot(path=path)
        return path


class LoginPage:
    """Chainlit's password form, shown at /login when the app asks people to sign in."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def sign_in(self, name: str, password: str) -> None:
        expect(self.page.locator("#email")).to_be_visible(timeout=TIMEOUT_MS)
        self.page.fill("#email", name)
        self.page.fill("#password", password)
        self.page.locator("button[type=submit]").click()
