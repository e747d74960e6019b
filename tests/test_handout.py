"""The handout page (`comparison.handout`), built by the command line and read in Chromium.

The page is built once, by ``functional-fit lecture --out DIR`` on a small data set (so the
torch loops are short), and then:
- read as text: self-contained (no http, no external script, style or font), every step's code
  is its function's source as `inspect` reads it, highlighted; the lecture's torch model is
  shown beside the jaxpr of its export, and that jaxpr computes the model;
- loaded headless in a real Chromium (Debian's ``chromium``, driven by playwright): no network
  request, no console error, every step with a torch and a JAX code block and its figures
  drawn; a screenshot is kept in ``tests/artifacts/`` for a person to look at.

Where no Chromium can be had, the browser tests are skipped with a message saying how to get
one; on CI (``CI=true``) they fail instead.
"""

from __future__ import annotations

import html as html_text
import inspect
import json
import re
from pathlib import Path

import pytest

import functional_fit as ff
from functional_fit_cli import main
from comparison import figures, handout, lecture
from functional_fit import explorer
from parity import export
from tests import browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: Flags for a headless Chromium on a machine like CI's: no sandbox (root), no GPU, and no
#: background traffic of the browser's own that a network check would count.


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``lecture --out DIR --html FILE`` on 30 synthetic points: (DIR, FILE, the JSON printed)."""
    out = tmp_path_factory.mktemp("handout")
    page = out / "alone" / "page.html"
    page.parent.mkdir()  # an output's folder must exist (checked by the parser, before any work)
    with pytest.MonkeyPatch.context() as mp:
        import io
        import sys

        buf = io.StringIO()
        mp.setattr(sys, "stdout", buf)
        assert main(["lecture", "--n", "30", "--out", str(out / "dir"), "--html", str(page),
                     "--json"]) == 0
    return out / "dir", page, json.loads(buf.getvalue())


def test_out_writes_the_page_and_html_writes_only_the_page(built):
    out, page, doc = built
    assert (out / "index.html").is_file() and (out / "results.json").is_file()
    assert sorted(p.name for p in page.parent.iterdir()) == ["page.html"]
    a, b = (p.read_text(encoding="utf-8") for p in (out / "index.html", page))
    strip = re.compile(r"<dt>made</dt><dd>[^<]*</dd>")  # the time it was made
    assert strip.sub("", a) == strip.sub("", b)


def test_the_page_is_self_contained(built):
    text = (built[0] / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", text)  # scripts inline only
    assert text.count("<script") == 4  # the explorer's data and script, the page's data and script
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)  # only data: URLs and anchors
    assert not re.search(r"https?://|@import|url\(", text.split("<body>")[0])  # the <head>, CSS
    assert "@media print" in text
    assert text.count('src="data:image/png;base64,') == len(figures.ORDER)


def test_every_step_has_both_codes_from_the_source(built):
    text = (built[0] / "index.html").read_text(encoding="utf-8")
    sections = re.findall(r'<section class="step" id="step-(\w+)"', text)
    assert sections == list(lecture.STEPS)
    for name in lecture.STEPS:
        part = handout.CODE[name]
        assert part.torch and part.jax
        for dotted in (*part.torch, *part.jax):
            assert f'data-name="{dotted}"' in text
            src = inspect.getsource(handout.resolve(dotted))
            first = src.splitlines()[0].strip()  # "def l1(y_hat, y):" and the like
            name_only = re.match(r"(?:def|class) (\w+)", first).group(1)
            assert name_only in re.sub(r"<[^>]+>", "", text)  # highlighted: tags between tokens
    assert '<div class="hl">' in text  # pygments' output


def test_the_code_table_covers_every_step_and_figure():
    assert set(handout.CODE) == set(lecture.STEPS)
    shown = [f for part in handout.CODE.values() for f in part.figures] + list(handout.INTRO_FIGURES)
    assert sorted(shown) == sorted(figures.ORDER)  # each figure once
    assert set(handout.CAPTIONS) == set(figures.ORDER)
    for part in handout.CODE.values():
        for dotted in part.torch:
            assert dotted.startswith("parity.")
        for dotted in part.jax:
            assert dotted.startswith("functional_fit.")


def _export_section(text: str) -> str:
    start = text.index('<section class="export" id="export"')
    return text[start:text.index("</section>", start)]


def test_the_torch_model_is_shown_beside_the_jaxpr_of_its_export(built):
    text = (built[0] / "index.html").read_text(encoding="utf-8")
    section = _export_section(text)
    assert text.index('id="step-adam_abs_poly12"') < text.index('id="export"')  # after the steps
    assert f'data-model="{handout.EXPORTED_MODEL}"' in section
    shown = handout.exported()  # the export of the class the page names, made again
    plain = html_text.unescape(re.sub(r"<[^>]+>", "", section))  # highlighted: tags between tokens
    assert shown.code[0] == handout.EXPORTED_MODEL
    for dotted in shown.code:
        assert f'data-side="torch" data-name="{dotted}"' in section
        assert inspect.getsource(handout.resolve(dotted)) in plain
    assert '<div class="code" data-side="jax" data-name="jaxpr">' in section
    assert html_text.escape(shown.jaxpr) in section and shown.aten in plain
    assert shown.jaxpr.startswith("{ lambda ")
    assert re.search(r"= mul ", shown.jaxpr) and re.search(r"= add ", shown.jaxpr)
    assert "torch.ops.aten.mul.Tensor" in shown.aten and "aten.mul.Tensor" in shown.ops


def test_the_jaxpr_shown_computes_the_torch_model_shown():
    """The page's jaxpr, traced from the module class it names, run on that module's own
    parameters, gives the module's output: it is the export of the model shown."""
    import jax
    import torch
    from jax.extend.core import jaxpr_as_fun

    model = handout.resolve(handout.EXPORTED_MODEL)(w=[0.5, -2.0], dtype=torch.float32)
    x = torch.linspace(-3.0, 3.0, handout.EXAMPLE_POINTS)  # (n,)
    fn, params = export.to_jax(model, x)
    closed = jax.make_jaxpr(fn)(params, x.numpy())
    assert str(closed) == handout.exported().jaxpr  # the jaxpr does not depend on w's values
    (out,) = jaxpr_as_fun(closed)(*jax.tree.leaves((params, x.numpy())))
    want = model(x).detach().numpy()
    assert out.shape == want.shape == (handout.EXAMPLE_POINTS,)
    assert float(abs(out - want).max()) <= export.FORWARD["float32"] * float(abs(want).max())


def test_results_match_the_json(built):
    _, _, doc = built
    text = (built[0] / "index.html").read_text(encoding="utf-8")
    gd = doc["steps"]["gd_abs_linear"]
    assert f"{gd['jax']['loss']:.10g}" in text and f"{gd['torch']['loss']:.10g}" in text
    assert f"{gd['max_abs_diff']:.2e}" in text
    assert "n = 30, seed 42" in text and "the lecture printed" not in text  # not its data


def test_the_lecture_printed_numbers_on_the_lecture_data(lecture_xy):
    x, y = lecture_xy
    steps = ("ols", "gd_abs_linear", "sgd_abs_quad")
    result = lecture.run(x, y, data_meta={"source": "synthetic", "n": 100, "seed": 42,
                                          "noise": 0.7, "lecture": True}, steps=steps)
    text = handout.html(result, {})
    assert "the lecture printed" in text and "1.208946183" in text  # cell 49's loss
    assert "0.7305556363 *" in text  # SGD: another batch order, flagged


def test_two_processes_give_the_numbers_and_figures_of_one():
    """`lecture.run(second_process=True)` and `run_with_figures` (JAX in a second process)
    give the numbers and PNGs of `lecture.run` and `lecture_figures` in this one, byte for byte."""
    x, y = ff.lecture_data(n=20, seed=3)
    result, pngs = figures.run_with_figures(x, y, second_process=True)
    again = lecture.run(x, y, second_process=False)
    assert json.dumps(result.to_json()) == json.dumps(again.to_json())
    assert json.dumps(lecture.run(x, y, second_process=True).to_json()) == json.dumps(again.to_json())
    assert list(pngs) == list(figures.ORDER)
    for name, fig in figures.lecture_figures(again).items():
        assert figures.png(fig) == pngs[name], name


def test_no_explorer_leaves_the_explorer_out_and_keeps_the_rest(tmp_path, capsys):
    page = tmp_path / "page.html"
    assert main(["lecture", "--n", "12", "--html", str(page), "--no-explorer", "--json"]) == 0
    capsys.readouterr()
    text = page.read_text(encoding="utf-8")
    assert 'id="explorer"' not in text and "explorer-data" not in text
    assert 'name="codeview"' in text and 'data-surface="mse_surface"' in text


def test_more_data_than_the_explorer_takes_leaves_it_out_and_says_so(tmp_path, capsys,
                                                                    monkeypatch):
    from comparison import explorer as page_explorer

    monkeypatch.setattr(page_explorer, "MAX_POINTS", 11)
    page = tmp_path / "page.html"
    assert main(["lecture", "--n", "12", "--html", str(page), "--json"]) == 0
    err = capsys.readouterr().err
    assert "leaves the optimizer explorer out: 12 data points, more than 11" in err
    assert len(err.strip().splitlines()) == 1
    assert 'id="explorer"' not in page.read_text(encoding="utf-8")


def test_the_explorer_is_in_the_page(built):
    text = (built[0] / "index.html").read_text(encoding="utf-8")
    assert text.index('id="step-adam_abs_poly12"') < text.index('id="explorer"') < text.index(
        'id="export"')
    data = json.loads(text.split('id="explorer-data">')[1].split("</script>")[0])
    assert [o["name"] for o in data["optimizers"]] == list(explorer.OPTIMIZERS)
    assert data["lrCount"] >= 24 and 100 <= data["steps"] <= 500 and len(data["starts"]) >= 3


# --------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser_page(built, tmp_path_factory):
    """The page loaded in headless Chromium: (page, requests made, console errors)."""
    url = (built[0] / "index.html").resolve().as_uri()
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with browser.loaded(url, profile) as (page, requests, errors):
        yield page, url, requests, errors


def test_browser_makes_no_network_request(browser_page):
    page, url, requests, _ = browser_page
    page.wait_for_load_state("networkidle")
    assert [r for r in requests if r != url and not r.startswith("data:")] == []


def test_browser_every_step_has_two_code_blocks_and_its_figures(browser_page):
    page = browser_page[0]
    ids = page.eval_on_selector_all("section.step", "els => els.map(e => e.id)")
    assert ids == [f"step-{n}" for n in lecture.STEPS]
    for name in lecture.STEPS:
        section = page.locator(f"section#step-{name}")
        for side in ("torch", "jax"):
            blocks = section.locator(f'.code[data-side="{side}"] pre')
            assert blocks.count() == len(getattr(handout.CODE[name], side))
            assert all(blocks.nth(i).inner_text().lstrip().startswith(("def ", "class ", "@"))
                       for i in range(blocks.count()))
            assert blocks.first.is_visible()
        for fig in handout.CODE[name].figures:
            img = section.locator(f'figure[data-figure="{fig}"] img')
            assert img.count() == 1, (name, fig)
            width = img.evaluate("el => el.complete ? el.naturalWidth : 0")
            assert width >= 900, (name, fig, width)  # decoded: the PNG is 960 px or wider


def test_browser_console_has_no_errors_and_a_screenshot_is_kept(browser_page):
    page, _, _, errors = browser_page
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    top, full = ARTIFACTS / "handout-laptop.png", ARTIFACTS / "handout-full.png"
    page.set_viewport_size({"width": 1366, "height": 768})
    page.screenshot(path=str(top))
    page.screenshot(path=str(full), full_page=True)
    print(f"\nhandout screenshots: {top} and {full}")
    assert top.stat().st_size > 10_000 and full.stat().st_size > top.stat().st_size
    # The code columns sit side by side on a laptop screen.
    torch_box = page.locator("section#step-ols .column.torch").bounding_box()
    jax_box = page.locator("section#step-ols .column.jax").bounding_box()
    assert torch_box["x"] + torch_box["width"] <= jax_box["x"] and torch_box["y"] == jax_box["y"]


def test_browser_shows_the_model_beside_its_jaxpr(browser_page):
    page = browser_page[0]
    torch_box = page.locator("section#export .column.torch").bounding_box()
    jax_box = page.locator("section#export .column.jax").bounding_box()
    assert torch_box["x"] + torch_box["width"] <= jax_box["x"] and torch_box["y"] == jax_box["y"]
    jaxpr = page.locator('section#export .code[data-name="jaxpr"] pre')
    assert jaxpr.is_visible() and jaxpr.inner_text().startswith("{ lambda ")
    assert page.locator('section#export .code[data-name="aten"] pre').inner_text().startswith(
        "def forward(")


def test_the_command_line_prints_the_page_to_a_pdf(built, tmp_path, capsys):
    """``functional-fit handout --print DIR/index.html``: a PDF of at least a page per step
    (each step breaks to a new page in print), written beside the page by default."""
    browser.skip_without_chromium()
    page = built[0] / "index.html"
    assert main(["handout", "--print", str(page), "--pdf", str(tmp_path / "h.pdf")]) == 0
    capsys.readouterr()
    pdf = (tmp_path / "h.pdf").read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page(?![a-z])", pdf))
    assert pdf.startswith(b"%PDF-") and pages >= len(lecture.STEPS) + 1  # steps, export


def test_browser_prints(browser_page):
    page = browser_page[0]
    page.emulate_media(media="print")
    try:
        # the print style sheet applies: code wraps instead of scrolling, a step per page
        style = page.eval_on_selector(".hl pre", "el => getComputedStyle(el).whiteSpace")
        assert style == "pre-wrap"
        assert page.eval_on_selector("section.step", "el => getComputedStyle(el).breakBefore") == "page"
        pdf = page.pdf(format="A4")
    finally:
        page.emulate_media(media="screen")
    assert pdf.startswith(b"%PDF") and len(pdf) > 100_000


@pytest.mark.parametrize("html", ["", "{tmp}"])
def test_html_refuses_an_empty_name_or_a_directory(html, tmp_path, capsys):
    try:  # the parser refuses it: argparse's exit status 2, before any work
        status = main(["lecture", "--n", "5", "--html", html.replace("{tmp}", str(tmp_path))])
    except SystemExit as exc:
        status = exc.code
    assert status == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "--html" in err, err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- what a student does


def _pixels(page, selector: str) -> str:
    """What the canvas shows, as a PNG data URL."""
    return page.eval_on_selector(selector, "c => c.toDataURL()")


def _marker(page):
    return page.eval_on_selector("#ex-canvas", "c => [c.dataset.step, c.dataset.markerX, "
                                 "c.dataset.markerY]")


def test_browser_the_learning_rate_slider_changes_the_path(browser_page):
    page = browser_page[0]
    page.wait_for_selector("#explorer.live")
    page.select_option("#ex-optimizer", str(list(explorer.OPTIMIZERS).index("adam")))
    page.select_option("#ex-start", "1")
    before, drawn = page.eval_on_selector("#ex-canvas", "c => c.dataset.path"), _pixels(
        page, "#ex-canvas")
    page.focus("#ex-lr")
    for _ in range(3):
        page.keyboard.press("ArrowRight")  # the keyboard moves the slider
    after = page.eval_on_selector("#ex-canvas", "c => c.dataset.path")
    assert int(after) == int(before) + 3  # three learning rates on
    assert _pixels(page, "#ex-canvas") != drawn
    assert page.inner_text("#ex-lr-value") != ""
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#explorer").screenshot(path=str(ARTIFACTS / "explorer.png"))


def test_browser_stepping_moves_the_marker_forward_and_back(browser_page):
    page = browser_page[0]
    page.wait_for_selector("#explorer.live")
    page.select_option("#ex-optimizer", str(list(explorer.OPTIMIZERS).index("momentum")))
    page.select_option("#ex-start", "2")
    page.click("#ex-first")
    start = _marker(page)
    assert start[0] == "0"
    for _ in range(5):
        page.click("#ex-forward")
    five = _marker(page)
    assert five[0] == "5" and five[1:] != start[1:]
    page.focus("#ex-canvas")
    page.keyboard.press("ArrowLeft")  # the canvas steps with the arrow keys
    assert _marker(page)[0] == "4"
    page.click("#ex-back")
    page.click("#ex-forward")
    assert _marker(page)[0] == "4"
    page.click("#ex-forward")
    assert _marker(page) == five  # the same step draws the same marker
    assert "torch.optim.SGD" in page.inner_text("#ex-agree")


def test_browser_code_tabs_hold_across_a_reload(browser_page):
    page = browser_page[0]
    jax_col, torch_col = (page.locator(f"section#step-ols .column.{side}")
                          for side in ("jax", "torch"))
    assert jax_col.is_visible() and torch_col.is_visible()
    page.check('input[name="codeview"][value="torch"]')
    assert torch_col.is_visible() and not jax_col.is_visible()
    assert not page.locator("section#step-gd_abs_quad .column.jax").is_visible()  # every block
    page.reload(wait_until="load")
    assert page.is_checked('input[name="codeview"][value="torch"]')
    assert torch_col.is_visible() and not jax_col.is_visible()
    page.emulate_media(media="print")
    try:
        assert jax_col.is_visible() and torch_col.is_visible()  # printing shows both
        assert not page.locator("#explorer").is_visible()
        assert not page.locator("canvas.turn").first.is_visible()  # the static figures stay
        assert page.locator('figure[data-figure="mse_surface"] img').is_visible()
    finally:
        page.emulate_media(media="screen")
    page.check('input[name="codeview"][value="jax"]')
    assert jax_col.is_visible() and not torch_col.is_visible()
    page.check('input[name="codeview"][value="both"]')
    page.reload(wait_until="load")
    assert jax_col.is_visible() and torch_col.is_visible()


def test_browser_a_3d_surface_turns(browser_page):
    page = browser_page[0]
    canvas = page.locator('canvas[data-surface="mse_surface"]')
    canvas.scroll_into_view_if_needed()
    view = canvas.evaluate("c => [c.dataset.azimuth, c.dataset.elevation]")
    drawn = _pixels(page, 'canvas[data-surface="mse_surface"]')
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 80, y + 20, steps=5)
    page.mouse.up()
    turned = canvas.evaluate("c => [c.dataset.azimuth, c.dataset.elevation]")
    assert float(turned[0]) == pytest.approx(float(view[0]) + 0.8)
    assert float(turned[1]) == pytest.approx(float(view[1]) + 0.2)
    assert _pixels(page, 'canvas[data-surface="mse_surface"]') != drawn
    canvas.focus()
    page.keyboard.press("ArrowLeft")
    azimuth = float(canvas.evaluate("c => c.dataset.azimuth"))
    assert azimuth == pytest.approx(float(turned[0]) - 0.1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator('figure[data-figure="mse_surface"]').screenshot(
        path=str(ARTIFACTS / "surface-turned.png"))


def test_browser_no_error_and_no_request_after_all_that(browser_page):
    """After the slider, the steps, the tabs, two reloads and the turning (the tests above):
    still no console error, and nothing asked of the network."""
    page, url, requests, errors = browser_page
    assert errors == []
    assert [r for r in requests if r != url and not r.startswith("data:")] == []
