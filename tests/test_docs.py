"""The documentation: built with Sphinx without a warning, and rendered in a browser.

One test, ``test_docs_build_and_render``, so that pytest-xdist never builds
the documentation twice. It copies ``docs/`` and ``examples/`` to a temporary
folder (no build output lands in the repository), runs
``sphinx-build -W --keep-going -b html`` on them (warnings are errors; the
gallery runs the examples, on random weights where ImageNet weights cannot
be had, which each example then says), checks that every public
object has its API page at the URL the estimators' HTML repr links to, then
opens the home page and every gallery example that draws a figure in
headless Chromium, through a local HTTP server, and checks that they
render: the right title, visible content, no broken image, a gallery figure
on the example page, a screenshot that is not blank, no request leaving the
machine, no script error, no missing file.

Marked ``docs`` and left out of the unit tests (``pyproject.toml`` deselects
the marker): run it with ``python -m pytest -m docs``; ``.ci/run`` runs it
after the unit tests. Needs the ``docs`` extra and Debian's Chromium at
``/usr/bin/chromium`` (``apt-get install chromium``; never ``playwright
install``). Without Chromium the rendering half is skipped, unless
``SKPTM_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which makes it a failure.
"""

from __future__ import annotations

import functools
import http.server
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Build outputs sphinx-build and sphinx-gallery write into the source folder.
BUILD_OUTPUTS = ("_build", "generated", "auto_examples", "sg_execution_times.rst", "__pycache__")
#: The classes sphinx-gallery gives the figures an example draws.
GALLERY_IMAGE_CLASSES = ("sphx-glr-single-img", "sphx-glr-multi-img")
BUILD_TIMEOUT_S = 1800
PAGE_TIMEOUT_MS = 60_000


def _require_browser() -> bool:
    return os.environ.get("SKPTM_REQUIRE_BROWSER") == "1"


def _skip_or_fail(reason: str):
    if _require_browser():
        pytest.fail(f"{reason} (SKPTM_REQUIRE_BROWSER=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory):
    """The HTML documentation, built once from a copy of docs/ and examples/."""
    for module in ("sphinx", "pydata_sphinx_theme", "numpydoc", "sphinx_gallery", "myst_parser"):
        try:
            __import__(module)
        except ImportError:
            _skip_or_fail(f'{module} is not installed: pip install -e ".[docs]"')

    work = tmp_path_factory.mktemp("docs-build")
    ignore = shutil.ignore_patterns(*BUILD_OUTPUTS)
    shutil.copytree(ROOT / "docs", work / "docs", ignore=ignore)
    shutil.copytree(ROOT / "examples", work / "examples", ignore=ignore)
    html = work / "html"

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="agg")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", str(html)]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, check=False, cwd=work, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or "") + (exc.stderr or "")
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        pytest.fail(f"sphinx-build ran past {BUILD_TIMEOUT_S} s:\n{output[-6000:]}")
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        warnings = [
            line
            for line in done.stderr.splitlines()
            if ("WARNING" in line or "ERROR" in line) and "absl::" not in line  # TensorFlow's start-up
        ]
        pytest.fail(
            f"sphinx-build failed (exit {done.returncode}, warnings are errors) after {seconds:.0f} s.\n"
            "Warnings and errors:\n"
            + "\n".join(warnings[-60:])
            + "\n\nLast output:\n"
            + (done.stdout[-3000:] + "\n" + done.stderr[-6000:])
        )
    print(f"sphinx-build: {seconds:.1f} s")
    return html


@pytest.fixture(scope="module")
def served_docs(built_docs):
    """The built HTML, served over HTTP on 127.0.0.1 (a free port) in a thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(built_docs))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _check_api_pages(html: Path):
    """Each public object has a page at generated/<module>.<name>.html."""
    import skptm
    import skptm.dask
    import skptm.plot

    names = [f"skptm.{name}" for name in skptm.__all__]
    names += [f"skptm.plot.{name}" for name in skptm.plot.__all__]
    names += [f"skptm.dask.{name}" for name in skptm.dask.__all__]
    missing = [name for name in names if not (html / "generated" / f"{name}.html").is_file()]
    assert not missing, f"no API page generated/<name>.html for: {missing}"
    page = (html / "generated" / "skptm.PretrainedFeatureTransformer.html").read_text(encoding="utf-8")
    # The anchor the estimators' HTML repr can link to, and numpydoc's sections.
    assert 'id="skptm.PretrainedFeatureTransformer"' in page
    assert "Parameters" in page and "Examples" in page

    # Each estimator's HTML representation links to its page in this site.
    from skptm._doc_links import DOCS_URL

    for estimator in (skptm.PretrainedFeatureTransformer(), skptm.FineTunedClassifier(), skptm.FineTunedRegressor()):
        link = estimator._get_doc_link()
        assert link.startswith(DOCS_URL) and link in estimator._repr_html_inner()
        assert (html / link[len(DOCS_URL) :]).is_file(), f"{link} has no page in the built site"


def _is_blank(png: bytes) -> str | None:
    """Why a screenshot looks blank, or None when it shows something."""
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("RGB")
    spread = max(ImageStat.Stat(image).stddev)
    colours = image.getcolors(maxcolors=1 << 16)
    n_colours = len(colours) if colours is not None else 1 << 16
    if spread < 8 or n_colours < 16:
        return f"pixel standard deviation {spread:.1f}, {n_colours} distinct colours"
    return None


def _open(context, url, *, title_part, errors):
    """Open ``url``; check title, visible content and images. Returns the page."""
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{url}: script error: {exc}"))
    page.on(
        "response",
        lambda response: (
            errors.append(f"{url}: HTTP {response.status} for {response.url}") if response.status >= 400 else None
        ),
    )
    response = page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_MS)
    assert response is not None and response.ok, f"{url}: {response and response.status}"
    assert title_part in page.title(), f"{url}: title {page.title()!r} lacks {title_part!r}"
    article = page.locator("main article, main .bd-article, main").first
    article.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    assert article.inner_text().strip(), f"{url}: the main content is empty"
    # Load lazy images too, then every <img> must have decoded.
    page.evaluate("for (const img of document.images) img.loading = 'eager';")
    page.wait_for_function("Array.from(document.images).every(img => img.complete)", timeout=PAGE_TIMEOUT_MS)
    broken = page.evaluate(
        "Array.from(document.images).filter(img => !(img.complete && img.naturalWidth > 0))"
        ".map(img => img.currentSrc || img.src || img.outerHTML)"
    )
    assert not broken, f"{url}: broken images {broken}"
    blank = _is_blank(page.screenshot(full_page=False))
    assert blank is None, f"{url}: the screenshot looks blank ({blank})"
    return page


def test_docs_build_and_render(built_docs, served_docs):
    """The docs build without warnings, and their pages render in Chromium."""
    html = built_docs
    assert (html / "index.html").is_file()
    _check_api_pages(html)
    examples = sorted((html / "auto_examples").glob("plot_*.html"))
    assert examples, "the gallery has no example page (auto_examples/plot_*.html)"
    # The first example that draws a figure (not every example does).
    with_figures = [
        page for page in examples if any(name in page.read_text(encoding="utf-8") for name in GALLERY_IMAGE_CLASSES)
    ]
    assert with_figures, f"no gallery example shows a figure: {[page.name for page in examples]}"
    # An example that ran without ImageNet weights says so in its output.
    for page in examples:
        text = page.read_text(encoding="utf-8")
        if "weights=None" in text:
            assert "random weights: ImageNet weights could not be had here" in text, page.name

    if not CHROMIUM.exists():
        _skip_or_fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail('playwright is not installed: pip install -e ".[docs]"')

    base = served_docs
    outside, errors = [], []

    def only_local(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", only_local)

            home = _open(context, base + "index.html", title_part="skptm", errors=errors)
            assert home.get_by_role("link", name="API reference").count() > 0, "no link to the API reference"

            # Every example that draws: the comparison plot, the heat-map
            # grid, montages, maps and histories all render.
            for page in with_figures:
                example_url = base + "auto_examples/" + page.name
                example = _open(context, example_url, title_part="skptm", errors=errors)
                figures = example.locator(", ".join(f"img.{name}" for name in GALLERY_IMAGE_CLASSES))
                assert figures.count() > 0, f"{example_url}: no gallery figure"
                figures.first.scroll_into_view_if_needed()
                blank = _is_blank(figures.first.screenshot())
                assert blank is None, f"{example_url}: the first figure looks blank ({blank})"
                example.close()
        finally:
            browser.close()

    assert not outside, f"pages tried to reach outside the machine: {sorted(set(outside))}"
    assert not errors, "\n".join(errors)
