"""The built site as a reader meets it: every page of _build/html opened in a real browser.

Chromium (Debian's package; Playwright's own browser download needs the internet) loads each page of
the table of contents from a local HTTP server on 127.0.0.1. The scripts the site takes from jsDelivr
(MathJax, RequireJS, the Jupyter widgets HTML manager) are answered from the npm packages installed
in tests/browser/node_modules (`npm ci`), at the versions _config.yml names; every other request
that leaves the local server is blocked and fails the test, so a page that needs the internet shows.

Each page is loaded once at desktop width (1366 px, module-scoped cache) and the tests read what was
recorded. The tests skip when the site is not built or the browser pieces are missing, unless
VGCOURSE_REQUIRE_BROWSER=1 (`make test` sets it after installing them), where a missing piece is a
failure. Screenshots go to _build/screenshots/ for a reviewer: each chapter at desktop width (at its
first figure), at phone width, in dark mode, its explorer in dark mode and at phone width; the first two
chapters as full pages; the phone's open sidebar.

The reader's side: every enabled control of every explorer is moved and the page must show the view the
saved jslinked Stacks hold for it; no Check button is active; the sidebar button works at desktop and
phone width with one search box; every figure has a numbered caption and alt text in words and is shown
at its own width on desktop; wide tables scroll inside the column at desktop and phone width; dark-mode
widget text is light.
VGCOURSE_SITE_DIR points the tests at another build's html folder.
"""

from __future__ import annotations

import functools
import json
import mimetypes
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from book_toc import toc_entries

from vgcourse.chapters import CHAPTERS as REGISTRY

ROOT = Path(__file__).resolve().parents[1]
# VGCOURSE_SITE_DIR: test another build's html folder (e.g. `jupyter-book build --path-output /tmp/b .`
# writes /tmp/b/_build/html); screenshots and reader notebooks are looked for next to it.
SITE = Path(os.environ.get("VGCOURSE_SITE_DIR", ROOT / "_build" / "html")).resolve()
SCREENSHOTS = SITE.parent / "screenshots"
ASSETS = ROOT / "tests" / "browser" / "node_modules"
CHROMIUM = Path(os.environ.get("VGCOURSE_CHROMIUM", "/usr/bin/chromium"))
REQUIRED = os.environ.get("VGCOURSE_REQUIRE_BROWSER") == "1"
# The Colab button opens the reader notebook (_build/colab/<chapter>.ipynb, which publish.yml pushes to
# book/ on the colab branch), not the MyST source on main: _ext/colab_launch.py sets the branch.
COLAB = "https://colab.research.google.com/github/vgcourse/vgcourse/blob/colab/"
READER = SITE.parent / "colab"
JSDELIVR = re.compile(r"^https://cdn\.jsdelivr\.net/npm/((?:@[^/@]+/)?[^/@]+)@([^/]+)/([^?#]*)")
WIDGET_STATE = 'script[type="application/vnd.jupyter.widget-state+json"]'
WIDGET_VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]'
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
TIMEOUT_MS = 90_000  # two busy cores: generous, but a page that never settles still fails

# Flags for a headless Chromium that makes no connection of its own (no sync, updates, field trials).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Uncaught JavaScript errors that are third-party noise, as {substring of the message: why it is
# harmless}. Add an entry only with the reason it cannot be fixed in this repository.
ALLOWED_JS_ERRORS: dict[str, str] = {
    # Jupyter Book 1 with Sphinx 7.4 writes every inline script an extension adds while the build runs
    # twice in each page (sphinx-togglebutton's `var` line is doubled too, harmlessly). sphinx-thebe
    # 0.3.1's inline config declares `const THEBE_JS_URL`, so its second copy throws; the first copy
    # already defined the same values, and the site does not use Thebe (no live-code button).
    "SyntaxError: Identifier 'THEBE_JS_URL' has already been declared": "sphinx-thebe script doubled",
}

# Requests that may leave the machine (blocked all the same, not counted as failures), as
# {URL prefix: why}. Nothing is needed today: the theme ships its fonts and the site has no analytics.
ALLOWED_EXTERNAL: dict[str, str] = {}


PAGES = toc_entries()
CHAPTERS = [c.notebook for c in REGISTRY]  # reading order; the toc numbers exactly these (test_contracts)


def _missing_piece() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (SITE / f"{PAGES[0]}.html").exists():
        return f"the site is not built ({SITE} has no {PAGES[0]}.html): run `make book` first"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (it is in the test extra)"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium chromium-driver)"
    if not ASSETS.is_dir():
        return f"{ASSETS} is missing: run `npm ci` in tests/browser"
    return None


# --- serving the site and the CDN files -------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    """The built site, served over HTTP on a free loopback port for the module's duration."""
    reason = _missing_piece()
    if reason:
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _version_matches(installed: str, requested: str) -> bool:
    """Whether the npm package at `installed` is what jsDelivr serves for `requested` (3, 3.2, 3.2.2)."""
    wanted = requested.lstrip("^~=v").split(".")
    return installed.split(".")[: len(wanted)] == wanted


def _cdn_file(url: str) -> tuple[Path | None, str]:
    """The local file that answers a jsDelivr npm URL, or None and why not."""
    match = JSDELIVR.match(url)
    if not match:
        return None, "not a jsDelivr npm URL"
    package, requested, rest = match.groups()
    manifest = ASSETS / package / "package.json"
    if not manifest.exists():
        return None, f"npm package {package} is not in tests/browser/package.json"
    installed = json.loads(manifest.read_text())["version"]
    if not _version_matches(installed, requested):
        return None, f"the site asks for {package}@{requested}, tests/browser installs {installed}"
    path = (ASSETS / package / unquote(rest)).resolve()
    if not path.is_relative_to(ASSETS.resolve()) or not path.is_file():
        return None, f"{package}@{installed} has no file {rest}"
    return path, ""


def _offline_route(site_url: str, on_blocked: Callable[[str], None] | None = None) -> Callable:
    """A Playwright route handler: the local site as it is, the CDN scripts from the npm packages (with
    jsDelivr's CORS header, which the crossorigin="anonymous" scripts need), anything else blocked and
    passed to ``on_blocked`` as "url (why)"."""

    def route(route: object) -> None:
        url = route.request.url
        if url.startswith(site_url):
            route.continue_()
            return
        path, why = _cdn_file(url)
        if path is None:
            if on_blocked is not None:
                on_blocked(f"{url} ({why})")
            route.abort("blockedbyclient")
            return
        kind = {".js": "application/javascript", ".woff2": "font/woff2", ".woff": "font/woff"}.get(
            path.suffix, mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        route.fulfill(path=path, headers={"Content-Type": kind, "Access-Control-Allow-Origin": "*"})

    return route


@dataclass
class Visit:
    """What one page did in the browser."""

    url: str
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    math_total: int = 0
    math_unrendered: int = 0
    math_errors: list[str] = field(default_factory=list)
    has_widget_state: bool = False
    widget_views: list[dict] = field(default_factory=list)
    widget_wait_error: str = ""
    sliders: list[dict] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    colab_links: list[str] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser(site_url: str) -> Iterator[object]:
    """One headless Chromium (the system one) for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
        )
        try:
            yield instance
        finally:
            instance.close()


_JS_IMAGES = """() => [...document.images].map(img => ({
    src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth}))"""

# Every output image of a notebook cell outside the widgets: its figure's caption and number, its alt
# text, and the width it is shown at against its own CSS width (a high-DPI image's style or width
# attribute, else its pixel width) and the text column's.
_JS_FIGURES = """() => [...document.querySelectorAll('.cell_output img')]
    .filter(img => !img.closest('.jupyter-widgets, .widget-subarea'))
    .map(img => {
        const caption = img.closest('figure')?.querySelector('figcaption');
        return {
            src: img.getAttribute('src'), alt: img.getAttribute('alt') || '',
            link: img.closest('a')?.getAttribute('href') || '',
            caption: caption ? caption.textContent.trim() : '',
            number: caption?.querySelector('.caption-number')?.textContent.trim() || '',
            shown: img.getBoundingClientRect().width,
            own: parseFloat(img.style.width) || parseFloat(img.getAttribute('width')) || img.naturalWidth,
            column: document.querySelector('.bd-article').getBoundingClientRect().width,
        };
    })"""

_JS_MATH = """() => {
    const math = [...document.querySelectorAll('.math')];
    return {
        total: math.length,
        unrendered: math.filter(m => !m.querySelector('mjx-container')).length,
        errors: [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error')
            || e.textContent),
    };
}"""

# html-manager inserts a div.widget-subarea before each view script and renders the widget into it.
_JS_WIDGETS_DONE = f"""() => [...document.querySelectorAll('{WIDGET_VIEW}')].every(s => {{
    const area = s.previousElementSibling;
    return area && area.classList.contains('widget-subarea') && area.childElementCount > 0;
}})"""

_JS_WIDGETS = f"""() => [...document.querySelectorAll('{WIDGET_VIEW}')].map(s => {{
    const area = s.previousElementSibling;
    const rendered = area && area.classList.contains('widget-subarea') ? area : null;
    return {{
        rendered: !!rendered,
        widgets: rendered ? rendered.querySelectorAll('.jupyter-widgets, .lm-Widget').length : 0,
        controls: rendered ? rendered.querySelectorAll(
            '.widget-slider, .widget-dropdown, .widget-button, .widget-toggle-buttons, .widget-checkbox,'
            + ' .widget-radio, .widget-text, .widget-inline-hbox').length : 0,
        text: rendered ? rendered.innerText.slice(0, 400) : '',
    }};
}})"""

# Every rendered slider: its description and the value its readout shows.
_JS_SLIDERS = """() => [...document.querySelectorAll('.widget-slider')].map(s => ({
    description: (s.querySelector('.widget-label')?.textContent || '').trim(),
    readout: (s.querySelector('.widget-readout')?.textContent || '').trim(),
}))"""


@pytest.fixture(scope="module")
def visit(browser: object, site_url: str) -> Iterator[object]:
    """visit(entry) -> Visit: load a page once, wait for math and widgets, record everything."""
    context = browser.new_context(viewport=DESKTOP, service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    cache: dict[str, Visit] = {}
    current: list[Visit] = []
    context.route("**/*", _offline_route(site_url, lambda blocked: current[-1].blocked.append(blocked)))

    def load(entry: str) -> Visit:
        if entry in cache:
            return cache[entry]
        record = Visit(url=f"{site_url}{entry}.html")
        current.append(record)
        page = context.new_page()
        page.on("pageerror", lambda error: record.page_errors.append(f"{error.name}: {error.message}"))
        page.on("console", lambda m: m.type == "error" and record.console_errors.append(m.text[:300]))

        def on_response(response: object) -> None:
            if response.status >= 400:
                record.bad_responses.append(f"{response.status} {response.url}")

        page.on("response", on_response)
        page.goto(record.url, wait_until="load")
        page.evaluate("async () => { if (window.MathJax?.startup?.promise) await MathJax.startup.promise; }")
        record.has_widget_state = page.locator(WIDGET_STATE).count() > 0
        if record.has_widget_state:
            try:
                page.wait_for_function(_JS_WIDGETS_DONE, timeout=TIMEOUT_MS)
            except Exception as error:  # recorded, reported by the widget test
                record.widget_wait_error = str(error).splitlines()[0]
            record.widget_views = page.evaluate(_JS_WIDGETS)
            record.sliders = page.evaluate(_JS_SLIDERS)
        page.evaluate(
            "() => document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')"
        )
        page.wait_for_function("() => [...document.images].every(img => img.complete)")
        record.images = page.evaluate(_JS_IMAGES)
        math = page.evaluate(_JS_MATH)
        record.math_total, record.math_unrendered = math["total"], math["unrendered"]
        record.math_errors = math["errors"]
        record.links = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
        record.colab_links = [link for link in record.links if link.startswith("https://colab.")]
        record.figures = page.evaluate(_JS_FIGURES)
        record.tables = page.evaluate(_JS_TABLES)
        if entry in CHAPTERS:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            if entry in CHAPTERS[:2]:
                page.screenshot(path=SCREENSHOTS / f"{Path(entry).name}.png", full_page=True)
            figure = page.locator(".cell_output figure img, .cell_output img").first
            if figure.count():
                figure.scroll_into_view_if_needed()
            page.screenshot(path=SCREENSHOTS / f"{Path(entry).name}-desktop.png")
        page.close()
        cache[entry] = record
        return record

    if CHAPTERS:
        shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    yield load
    context.close()


# --- the page checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", PAGES)
def test_page_loads_without_javascript_errors(visit: object, entry: str) -> None:
    record = visit(entry)
    errors = [e for e in record.page_errors if not any(known in e for known in ALLOWED_JS_ERRORS)]
    assert not errors, (
        f"{record.url}: uncaught JavaScript errors: {errors} (console: {record.console_errors})"
    )


@pytest.mark.parametrize("entry", PAGES)
def test_page_needs_nothing_from_outside(visit: object, entry: str) -> None:
    record = visit(entry)
    blocked = [url for url in record.blocked if not any(url.startswith(p) for p in ALLOWED_EXTERNAL)]
    assert not blocked, f"{record.url} needs resources that are neither local nor served offline: {blocked}"
    assert not record.bad_responses, f"{record.url}: failed requests: {record.bad_responses}"


@pytest.mark.parametrize("entry", PAGES)
def test_every_image_loads(visit: object, entry: str) -> None:
    record = visit(entry)
    broken = [image["src"][:120] for image in record.images if not image["complete"] or image["width"] == 0]
    assert not broken, f"{record.url}: images that did not load: {broken}"


@pytest.mark.parametrize("entry", PAGES)
def test_math_is_typeset(visit: object, entry: str) -> None:
    record = visit(entry)
    assert record.math_unrendered == 0, (
        f"{record.url}: {record.math_unrendered} of {record.math_total} math elements were not typeset"
    )
    assert not record.math_errors, f"{record.url}: MathJax errors: {record.math_errors}"


@pytest.mark.parametrize("entry", PAGES)
def test_saved_widget_state_renders(visit: object, entry: str) -> None:
    record = visit(entry)
    if not record.has_widget_state:
        assert not record.widget_views, f"{record.url} shows widgets but embeds no widget state"
        return
    assert record.widget_views, f"{record.url} embeds widget state but displays no widget"
    assert not record.widget_wait_error, f"{record.url}: widgets never rendered: {record.widget_wait_error}"
    for view in record.widget_views:
        assert view["rendered"] and view["widgets"] > 0, f"{record.url}: a widget view is empty: {view}"
        assert "Error creating widget" not in view["text"], f"{record.url}: {view['text']}"
        assert "Error displaying widget" not in view["text"], f"{record.url}: {view['text']}"
    assert sum(view["controls"] for view in record.widget_views) > 0, (
        f"{record.url}: the saved widgets render no control (slider, dropdown, button...)"
    )


class _Anchors(HTMLParser):
    """The id and name attributes of a page: what a #fragment can point at."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.anchors.add(value)


@functools.cache
def _anchors(path: Path) -> frozenset[str]:
    parser = _Anchors()
    parser.feed(path.read_text(encoding="utf-8"))
    return frozenset(parser.anchors)


@pytest.mark.parametrize("entry", PAGES)
def test_internal_links_resolve(visit: object, site_url: str, entry: str) -> None:
    record = visit(entry)
    broken = []
    for link in record.links:
        if not link.startswith(site_url):
            continue
        parts = urlsplit(link)
        target = SITE / unquote(parts.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{link} (no file {target.relative_to(SITE)})")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _anchors(target):
            broken.append(f"{link} (no #{parts.fragment} in {target.relative_to(SITE)})")
    assert not broken, f"{record.url}: broken internal links: {sorted(set(broken))}"


@pytest.mark.parametrize("entry", PAGES)
def test_colab_links_open_notebooks_of_this_repository(visit: object, entry: str) -> None:
    record = visit(entry)
    for link in record.colab_links:
        assert link.startswith(COLAB) and link.endswith(".ipynb"), f"{record.url}: odd Colab link {link}"
        path = link.removeprefix(COLAB)
        assert path.startswith("book/") and (ROOT / path).is_file(), f"{link}: not a chapter of the book"
        assert (READER / path.removeprefix("book/")).is_file(), f"{link}: no reader notebook in {READER}"
    if entry in CHAPTERS:
        assert f"{COLAB}{entry}.ipynb" in record.colab_links, (
            f"{record.url}: no Colab launch button for {entry}.ipynb (found {record.colab_links})"
        )


# --- the site as a whole ------------------------------------------------------------------------------


def test_every_built_page_is_in_the_toc_and_tested(site_url: str) -> None:
    skipped = {"genindex.html", "search.html", "index.html"}
    built = {
        path.relative_to(SITE).with_suffix("").as_posix()
        for path in SITE.rglob("*.html")
        if path.name not in skipped and not path.relative_to(SITE).parts[0].startswith(("_", "."))
    }
    assert built == set(PAGES)


def _saved_sliders(entry: str) -> dict[str, list[object]]:
    """From a page's saved widget state: the value each slider was computed with, by description (a
    selection slider's option label)."""
    html = (SITE / f"{entry}.html").read_text()
    found = re.search(
        r'<script type="application/vnd\.jupyter\.widget-state\+json">(.*?)</script>', html, re.S
    )
    values: dict[str, list[object]] = {}
    for model in json.loads(found.group(1))["state"].values() if found else []:
        state = model["state"]
        if model["model_name"] in ("FloatSliderModel", "IntSliderModel", "FloatLogSliderModel"):
            values.setdefault(state.get("description", ""), []).append(float(state["value"]))
        elif model["model_name"] == "SelectionSliderModel":
            values.setdefault(state.get("description", ""), []).append(
                state["_options_labels"][state["index"]]
            )
    return values


def _shows(readout: str, value: object) -> bool:
    """Whether a slider readout is ``value`` as displayed: an option label, or a number within half of
    the readout's last shown digit."""
    if isinstance(value, str):
        return readout == value
    text = readout.replace("\u2212", "-")
    try:
        shown = float(text)
    except ValueError:
        return False
    mantissa, _, exponent = text.lower().partition("e")
    digits = len(mantissa.partition(".")[2])
    return abs(shown - value) <= 0.5 * 10 ** (int(exponent or 0) - digits) * (1 + 1e-9)


@pytest.mark.parametrize("entry", CHAPTERS)
def test_slider_readouts_show_the_values_the_figures_were_computed_for(visit: object, entry: str) -> None:
    # A browser slider snaps to min + k * step; a saved value between two steps would be shown as a
    # value the saved figure was not computed for (s = 1 shown as 0.998).
    # (The saved state also holds the live explorers' sliders, which the page does not display.)
    record = visit(entry)
    saved = _saved_sliders(entry)
    assert len(record.sliders) <= sum(len(v) for v in saved.values()), f"{record.url}: {record.sliders}"
    for slider in record.sliders:
        candidates = saved.get(slider["description"], [])
        assert any(_shows(slider["readout"], value) for value in candidates), (
            f"{record.url}: slider {slider['description']!r} shows {slider['readout']!r}, saved {candidates}"
        )


def test_readout_comparison() -> None:
    assert _shows("0.998", 0.998) and _shows("1.000", 1.0) and _shows("30", 30.0) and _shows("3", "3")
    assert not _shows("0.998", 1.0) and not _shows("3.16", 3.0) and not _shows("3.16", "3")
    assert _shows("\u22120.50", -0.5) and _shows("1.00e-3", 0.001) and not _shows("1.00e-3", 0.0012)


def test_front_page_redirects_to_the_first_page(site_url: str) -> None:
    text = (SITE / "index.html").read_text()
    target = re.search(r'url=([^"\']+)"', text)
    assert target and target.group(1) == f"{PAGES[0]}.html" and (SITE / target.group(1)).is_file()


def test_chapters_show_math_and_widgets(visit: object) -> None:
    """Guards the page checks themselves: if no page had math or widgets, they would pass vacuously."""
    records = [visit(entry) for entry in CHAPTERS]
    assert sum(record.math_total for record in records) > 0, "no chapter page has math to typeset"
    assert any(record.has_widget_state for record in records), "no chapter page embeds widget state"


def test_screenshots_of_two_chapters(visit: object) -> None:
    assert len(CHAPTERS) >= 2, f"screenshots need two chapter pages, the toc has {CHAPTERS}"
    for entry in CHAPTERS[:2]:
        visit(entry)
        shot = SCREENSHOTS / f"{Path(entry).name}.png"
        assert shot.is_file() and shot.stat().st_size > 50_000, f"{shot} is missing or blank"


# --- the page as a reader uses it: explorers, sidebar, Check buttons, tables, dark mode ----------------


@pytest.fixture(scope="module")
def open_page(browser: object, site_url: str) -> Iterator[object]:
    """open_page(entry, **context options) -> a fresh page of the entry, widgets rendered (the CDN
    scripts served offline as in `visit`, anything else from outside blocked)."""
    contexts: list[object] = []
    route = _offline_route(site_url)

    def load(entry: str, **options: object) -> object:
        context = browser.new_context(**{"viewport": DESKTOP, "service_workers": "block", **options})
        context.set_default_timeout(TIMEOUT_MS)
        context.route("**/*", route)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{site_url}{entry}.html", wait_until="load")
        if page.locator(WIDGET_STATE).count():
            page.wait_for_function(_JS_WIDGETS_DONE, timeout=TIMEOUT_MS)
        return page

    yield load
    for context in contexts:
        context.close()


def _widget_state(entry: str) -> dict[str, dict]:
    """The page's saved widget models by id, each {"model_name", "state", "buffers"}."""
    html = (SITE / f"{entry}.html").read_text()
    found = re.search(
        r'<script type="application/vnd\.jupyter\.widget-state\+json">(.*?)</script>', html, re.S
    )
    return json.loads(found.group(1))["state"] if found else {}


def _ref(value: str) -> str:
    return value.removeprefix("IPY_MODEL_")


@dataclass
class PageExplorer:
    """An explorer as the page saved it: its controls (in the order shown), the start index of each,
    which Stack each control's jslink drives, and the figure's root Stack."""

    view_id: str
    controls: list[str]
    root: str
    links: dict[str, str]  # Stack id -> the control id whose index selects its child

    def image(self, models: dict[str, dict], indices: dict[str, int]) -> str:
        """The base64 PNG the page should show when the controls are at ``indices``."""
        node = self.root
        while models[node]["model_name"] == "StackModel":
            control = self.links[node]
            node = _ref(models[node]["state"]["children"][indices[control]])
        image = _ref(models[node]["state"]["children"][0])
        assert models[image]["model_name"] == "ImageModel", models[image]["model_name"]
        return next(b["data"] for b in models[image].get("buffers", []) if b["path"] == ["value"])


def _page_explorers(entry: str) -> list[PageExplorer]:
    """Every displayed explorer page widget (a VBox ending in a Stack) of the page, in page order."""
    models = _widget_state(entry)
    html = (SITE / f"{entry}.html").read_text()
    shown = re.findall(
        r'<script type="application/vnd\.jupyter\.widget-view\+json">(.*?)</script>', html, re.S
    )
    links = {
        _ref(m["state"]["target"][0]): _ref(m["state"]["source"][0])
        for m in models.values()
        if m["model_name"] == "LinkModel" and m["state"]["target"][1] == "selected_index"
    }
    found = []
    for view in shown:
        view_id = json.loads(view)["model_id"]
        children = [_ref(c) for c in models.get(view_id, {}).get("state", {}).get("children", [])]
        if not children or models[children[-1]]["model_name"] != "StackModel":
            continue
        rows = [c for c in children if models[c]["model_name"] == "HBoxModel"]
        controls = [_ref(c) for row in rows for c in models[row]["state"]["children"]]
        found.append(PageExplorer(view_id, controls, children[-1], links))
    return found


_JS_SHOWN_IMAGE = """async (index) => {
    const area = [...document.querySelectorAll('.widget-subarea')][index];
    const images = [...area.querySelectorAll('img')].filter(img => img.offsetParent !== null);
    if (images.length !== 1) return `${images.length} images shown`;
    const bytes = new Uint8Array(await (await fetch(images[0].src)).arrayBuffer());
    let text = '';
    for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
    return btoa(text);
}"""


def _subarea_index(page: object, view_id: str) -> int:
    """Index among the page's .widget-subarea elements of the one that shows model ``view_id``."""
    return page.evaluate(
        f"""(id) => [...document.querySelectorAll('{WIDGET_VIEW}')]
            .filter(s => s.previousElementSibling?.classList.contains('widget-subarea'))
            .findIndex(s => JSON.parse(s.textContent).model_id === id)""",
        view_id,
    )


def _move(page: object, area: object, control: dict, position: int, to: int) -> None:
    """Set page control number ``position`` of an explorer (a widget of ``area``) to option ``to``."""
    element = area.locator(".widget-hbox > .lm-Widget").nth(position)
    kind = control["model_name"]
    if kind == "SelectionSliderModel":
        handle = element.locator(".noUi-handle")
        handle.focus()
        handle.press("ArrowRight" if to > control["state"]["index"] else "ArrowLeft")
    elif kind == "ToggleButtonsModel":
        element.locator("button").nth(to).click()
    elif kind == "DropdownModel":
        element.locator("select").select_option(index=to)
    else:
        raise AssertionError(f"no way to move a {kind}")


@pytest.mark.parametrize("entry", CHAPTERS)
def test_explorers_show_the_view_computed_for_each_control(open_page: object, entry: str) -> None:
    # Each enabled control of each explorer is moved by one step; the page must then show the saved
    # view that the jslinked Stacks select for the new indices (which tests/test_widgets.py checks is
    # the figure computed for those values), and that view must differ from the start for some control.
    explorers = _page_explorers(entry)
    assert explorers, f"{entry}: no precomputed explorer on the page"
    models = _widget_state(entry)
    page = open_page(entry)
    for explorer in explorers:
        index = _subarea_index(page, explorer.view_id)
        area = page.locator(".widget-subarea").nth(index)
        start = {c: models[c]["state"].get("index") for c in explorer.controls}
        first = page.evaluate(_JS_SHOWN_IMAGE, index)
        assert first == explorer.image(models, start), f"{entry}: the page opens on another view"
        changed = 0
        for position, control_id in enumerate(explorer.controls):
            control = models[control_id]
            driven = control_id in explorer.links.values()
            if control["state"].get("disabled"):
                assert not driven, f"{entry}: a disabled control drives the figure"
                continue
            assert driven, f"{entry}: control {control['state'].get('description')!r} drives nothing"
            options = len(control["state"]["_options_labels"])
            to = start[control_id] + 1 if start[control_id] + 1 < options else start[control_id] - 1
            _move(page, area, control, position, to)
            expected = explorer.image(models, {**start, control_id: to})
            page.wait_for_function(
                f"async (i) => ({_JS_SHOWN_IMAGE})(i).then(shown => shown === {json.dumps(expected)})",
                arg=index,
                timeout=10_000,
            )
            changed += expected != first
            _move(
                page,
                area,
                {**control, "state": {**control["state"], "index": to}},
                position,
                start[control_id],
            )
            page.wait_for_function(
                f"async (i) => ({_JS_SHOWN_IMAGE})(i).then(shown => shown === {json.dumps(first)})",
                arg=index,
                timeout=10_000,
            )
        assert changed, f"{entry}: no control changes the figure"
    page.context.close()


@pytest.mark.parametrize("entry", CHAPTERS)
def test_no_check_button_is_active_on_the_page(visit: object, open_page: object, entry: str) -> None:
    page = open_page(entry)
    buttons = page.eval_on_selector_all(
        ".widget-button, .jupyter-button", "els => els.map(b => [b.textContent.trim(), b.disabled])"
    )
    active = [text for text, disabled in buttons if "Check" in text and not disabled]
    assert not active, f"{entry}: Check buttons that need Python are active on the page: {active}"
    text = page.inner_text("main")
    assert "Not yet" not in text, f"{entry}: an executed template's verdict is on the page"
    if any("Check" in t for t, _ in buttons):
        assert "Check in Colab" in text
    page.context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_sidebar_button_works_and_one_search_box(open_page: object, viewport: dict) -> None:
    page = open_page(CHAPTERS[0], viewport=viewport)
    visible = "el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; }"
    searches = [s for s in page.locator("form.bd-search, .search-button-field").all() if s.evaluate(visible)]
    assert len(searches) <= 1, f"{len(searches)} search boxes shown at {viewport}"
    toggles = [t for t in page.locator(".primary-toggle").all() if t.evaluate(visible)]
    assert len(toggles) == 1, f"{len(toggles)} sidebar buttons shown at {viewport}"
    sidebar = page.locator("#pst-primary-sidebar")
    if viewport is PHONE:
        toggles[0].click()
        page.wait_for_function("() => document.getElementById('pst-primary-sidebar-modal').open")
        dialog = page.locator("#pst-primary-sidebar-modal")
        assert dialog.locator("nav a.reference").first.is_visible(), "the chapter list is not shown"
        page.screenshot(path=_screenshot("sidebar-phone"))
    else:
        assert sidebar.evaluate(visible) and sidebar.is_visible()
        toggles[0].click()
        page.wait_for_function(
            "() => getComputedStyle(document.getElementById('pst-primary-sidebar')).visibility === 'hidden'"
        )
        toggles[0].click()
        page.wait_for_function(
            "() => getComputedStyle(document.getElementById('pst-primary-sidebar')).visibility === 'visible'"
        )
    page.context.close()


_JS_TABLES = """() => [...document.querySelectorAll('.cell_output table')].map(t => {
    let box = t.parentElement;
    while (box && !['auto', 'scroll'].includes(getComputedStyle(box).overflowX)) box = box.parentElement;
    const column = document.querySelector('.bd-article').getBoundingClientRect();
    return {width: t.getBoundingClientRect().width, column: column.width,
            scrolls: !!box && box.getBoundingClientRect().width <= column.width + 1};
})"""


def _tables_fit(entry: str, tables: list[dict], where: str) -> None:
    for table in tables:
        assert table["width"] <= table["column"] + 1 or table["scrolls"], f"{entry} at {where}: {table}"


@pytest.mark.parametrize("entry", CHAPTERS)
def test_figures_are_numbered_captioned_described_and_shown_full_size(visit: object, entry: str) -> None:
    # Every static figure has a numbered caption ("Fig. 3.2") and alt text in words (not a file path),
    # opens full size on a click (Sphinx links a scaled image, as the high-DPI figures are, to its file),
    # and at 1366 px it is shown at its own width:
    # vgcourse/plots/figure_check.py keeps every figure within the column and its text at a legible size
    # at that width, so a figure shrunk here would not be.
    record = visit(entry)
    assert record.figures, f"{entry}: no figure found on the page"
    for figure in record.figures:
        name = figure["src"].rsplit("/", 1)[-1][:40]
        assert figure["caption"] and re.match(r"Fig\. \d+\.\d+", figure["number"]), (
            f"{entry}: figure {name} has no numbered caption: {figure}"
        )
        alt = figure["alt"]
        assert len(alt.split()) >= 4 and not re.search(r"[/\\]|\.(png|svg|jpe?g)\b", alt), (
            f"{entry}: figure {name} ({figure['number']}) has no alt text in words: {alt!r}"
        )
        assert figure["shown"] >= 0.97 * min(figure["own"], figure["column"]), (
            f"{entry}: {figure['number']} is shrunk to {figure['shown']:.0f} px of its own "
            f"{figure['own']:.0f} px (column {figure['column']:.0f} px): its text is below the legible size"
        )
        assert figure["link"] == figure["src"], f"{entry}: {figure['number']} does not open full size"
        assert figure["own"] <= figure["column"] + 1, (
            f"{entry}: {figure['number']} is {figure['own']:.0f} px wide, wider than the "
            f"{figure['column']:.0f} px column"
        )


@pytest.mark.parametrize("entry", CHAPTERS)
def test_wide_tables_scroll_inside_the_column_on_desktop(visit: object, entry: str) -> None:
    _tables_fit(entry, visit(entry).tables, "desktop")


def _screenshot(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


def _luminance(css: str) -> float:
    r, g, b = (float(v) / 255 for v in re.findall(r"[\d.]+", css)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("entry", CHAPTERS)
def test_dark_mode_and_phone_width(open_page: object, entry: str) -> None:
    # In dark mode the explorer's text (title, note, readout, labels) is light on the dark page.
    page = open_page(entry, color_scheme="dark")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    colours = page.eval_on_selector_all(
        ".widget-subarea .widget-html-content, .widget-subarea .widget-label",
        "els => els.filter(e => e.offsetParent && e.textContent.trim()).map(e => getComputedStyle(e).color)",
    )
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert colours and _luminance(background) < 0.2
    dim = [c for c in colours if _luminance(c) - _luminance(background) < 0.45]
    assert not dim, f"{entry}: dark-mode widget text too close to the background {background}: {dim}"
    area = page.locator(".widget-subarea").first
    area.scroll_into_view_if_needed()
    area.screenshot(path=_screenshot(f"{Path(entry).name}-explorer-dark"))
    page.screenshot(path=_screenshot(f"{Path(entry).name}-dark"))
    # At phone width: wide tables scroll inside the column; the explorer as a phone reader sees it.
    phone = open_page(entry, viewport=PHONE)
    _tables_fit(entry, phone.evaluate(_JS_TABLES), "phone width")
    phone.screenshot(path=_screenshot(f"{Path(entry).name}-phone"))
    phone.locator(".widget-subarea").first.scroll_into_view_if_needed()
    phone.screenshot(path=_screenshot(f"{Path(entry).name}-explorer-phone"))
    page.context.close()
    phone.context.close()
