"""The built book in a real browser: headless Chromium opens every page with the network cut
and reports what a reader would see (``rsoup book --check`` / ``--check-only``;
``tests/test_browser.py``).

``Chromium`` drives Debian's (or any) Chromium with the DevTools protocol over a pipe
(``--remote-debugging-pipe``), so no websocket library and no open port are needed, and the
network is cut (a proxy that does not exist, host names that resolve to nothing). For each page
``check_in_browser`` records whether every plotly figure drew its SVG, every equation was
typeset by the book's own MathJax, no raw TeX is left in the text, the page logged no JavaScript
error, nothing remote was requested, and every internal link resolves; it saves one screenshot
per chapter for the CI log.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from rsoup_lib.errors import UserError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """$RSOUP_CHROMIUM, or the first Chromium or Chrome on the PATH."""
    if os.environ.get("RSOUP_CHROMIUM"):
        return os.environ["RSOUP_CHROMIUM"]
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


class Chromium:
    """Headless Chromium driven with the DevTools protocol over a pipe (``--remote-debugging-pipe``:
    JSON messages separated by NUL bytes on file descriptors 3 and 4), so no websocket library
    and no open port. The network is cut: every http(s) request goes to a proxy that does not
    exist (file:// pages are unaffected) and host names resolve to nothing."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900):
        executable = executable or find_chromium()
        if not executable:
            raise UserError(
                "no Chromium found (looked for " + ", ".join(CHROMIUM_NAMES) + "); "
                "install it (Debian: apt-get install chromium) or set RSOUP_CHROMIUM"
            )
        self.width, self.height = width, height
        self.profile_dir = tempfile.mkdtemp(prefix="rsoup-chromium-")
        args = [
            executable, "--headless", "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
            f"--user-data-dir={self.profile_dir}", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
            "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={width},{height}", "about:blank",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root (CI containers)
        import fcntl

        def high(fd: int) -> int:  # out of the way of 0-4, close-on-exec like every Python fd
            out = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
            os.close(fd)
            return out

        to_child_r, self._to_child = map(high, os.pipe())
        self._from_child, from_child_w = map(high, os.pipe())

        def child_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        # close_fds=False only lets 3 and 4 through: every other fd Python opened is close-on-exec.
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            close_fds=False, preexec_fn=child_fds,
        )  # fmt: skip
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, dict] = {}
        self._events: list[dict] = []
        self._changed = threading.Condition()
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.version = self.call("Browser.getVersion")["product"]

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._changed:
                    self._replies[-1] = {"error": {"message": "Chromium exited"}}
                    self._changed.notify_all()
                return
            buffer += chunk
            if b"\0" not in chunk:  # a message is still arriving (screenshots run to megabytes)
                continue
            *messages, buffer = buffer.split(b"\0")
            with self._changed:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self._events.append(message)
                self._changed.notify_all()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())
            del self._stderr[:-50]

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = memoryview(json.dumps(message).encode() + b"\0")
        with self._lock:
            while data:
                data = data[os.write(self._to_child, data) :]
        deadline = time.monotonic() + timeout
        with self._changed:
            while ident not in self._replies:
                if -1 in self._replies:
                    raise UserError(f"Chromium exited while answering {method}:\n" + "\n".join(self._stderr[-10:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UserError(f"Chromium did not answer {method} within {timeout:.0f} s")
                self._changed.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise UserError(f"Chromium: {method} failed: {reply['error'].get('message')}")
        return reply.get("result", {})

    def events(self, session: str) -> list[dict]:
        with self._changed:
            return [e for e in self._events if e.get("sessionId") == session]

    def wait_event(self, session: str, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self._events:
                    if event.get("sessionId") == session and event["method"] == method:
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or -1 in self._replies:
                    raise UserError(f"Chromium: no {method} within {timeout:.0f} s")
                self._changed.wait(left)

    def open(self, url: str) -> str:
        """A new tab with the page loading; returns its session."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_event(session, "Page.loadEventFired")
        return session

    def evaluate(self, session: str, expression: str, timeout: float = 60):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session,
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise UserError(f"Chromium: {result['exceptionDetails'].get('text')} in {expression[:60]}...")
        return result["result"].get("value")

    def screenshot(self, session: str, path: Path, max_height: int = 6000) -> None:
        """The page from its top, at most ``max_height`` pixels of it, as a PNG. The viewport is
        made that tall for the capture (``captureBeyondViewport`` drew the book's layout shifted
        off the left edge), then set back."""
        size = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        height = int(min(max(size["height"], 1), max_height))
        metrics = {"width": self.width, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", {**metrics, "height": height}, session=session)
        try:
            self.evaluate(session, "new Promise(r => requestAnimationFrame(() => setTimeout(r, 300)))")
            shot = self.call("Page.captureScreenshot", {"format": "png"}, session=session)
        finally:
            self.call("Emulation.setDeviceMetricsOverride", {**metrics, "height": self.height}, session=session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close_page(self, session: str) -> None:
        self.call("Page.close", session=session)
        with self._changed:
            self._events = [e for e in self._events if e.get("sessionId") != session]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except UserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        os.close(self._to_child)
        if not self._reader.is_alive():
            os.close(self._from_child)
        shutil.rmtree(self.profile_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Run in each page once it has loaded: wait for the figures and MathJax, then describe the page.
_PAGE_REPORT_JS = r"""
(async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const deadline = Date.now() + %(timeout_ms)d;
  const until = async (p) => Promise.race([Promise.resolve(p).catch((e) => String(e)), sleep(Math.max(0, deadline - Date.now()))]);
  const figures = () => Array.from(document.querySelectorAll(".plotly-graph-div"));
  while (Date.now() < deadline && figures().some((gd) => !gd.querySelector(".main-svg"))) await sleep(100);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await until(MathJax.startup.promise);
  if (window.rsoupPlotlyMath) await until(window.rsoupPlotlyMath);
  await sleep(50);
  const TEX = /[$][^$]+[$]/;
  const labels = figures().flatMap((gd) => Array.from(gd.querySelectorAll(".main-svg text[data-unformatted]")));
  const texLabels = labels.filter((t) => TEX.test(t.getAttribute("data-unformatted")));
  // rendered text outside code: raw TeX delimiters there mean an equation was not typeset
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight, .cell_input, .plotly-graph-div";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  const RAW = /\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{/;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(skip) || !el.checkVisibility()) continue;
    const m = node.nodeValue.match(RAW);
    if (m) raw.push(node.nodeValue.slice(Math.max(0, m.index - 40), m.index + 40));
  }
  const math = Array.from(document.querySelectorAll(".math"));
  const samePage = location.href.split("#")[0];
  return {
    title: document.title,
    figures: figures().length,
    drawn: figures().filter((gd) => gd.querySelector(".main-svg")).length,
    equations: math.length,
    typeset: math.filter((m) => m.querySelector("mjx-container")).length,
    mjx: document.querySelectorAll("mjx-container").length,
    tex_labels: texLabels.length,
    // plotly.js hides a TeX label's text once MathJax has drawn it (as an svg beside it)
    tex_labels_typeset: texLabels.filter((t) => getComputedStyle(t).display === "none").length,
    raw_tex: raw,
    links: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href),
    toc_links: Array.from(document.querySelectorAll(".bd-docs-nav a[href], nav.bd-links a[href]")).map((a) => a.href),
    broken_anchors: Array.from(document.querySelectorAll("a[href]"))
      .filter((a) => a.href.split("#")[0] === samePage && a.hash.length > 1)
      .filter((a) => !document.getElementById(decodeURIComponent(a.hash.slice(1))))
      .map((a) => a.getAttribute("href")),
    hidden_inputs: document.querySelectorAll(".tag_hide-input").length,
    hidden_inputs_folded: Array.from(document.querySelectorAll(".tag_hide-input")).filter((c) => {
      const source = c.querySelector(".cell_input");
      const output = c.querySelector(".cell_output");
      return source && !source.checkVisibility() && (!output || output.checkVisibility());
    }).length,
    mathjax_version: window.MathJax && MathJax.version || null,
    waited_ms: %(timeout_ms)d - (deadline - Date.now()),
  };
})()
"""

LOCAL_SCHEMES = ("file", "data", "blob", "about", "chrome", "chrome-extension", "devtools")


@dataclass
class PageReport:
    page: str  # path relative to the HTML folder
    figures: int
    drawn: int
    equations: int  # Sphinx math nodes
    typeset: int  # ... with a MathJax mjx-container inside
    tex_labels: int  # plotly labels holding $...$
    tex_labels_typeset: int
    raw_tex: list[str]  # rendered text with TeX delimiters left in it
    errors: list[str]  # JavaScript exceptions, console errors, resources that failed to load
    remote: list[str]  # URLs the page tried to fetch from the network
    broken_links: list[str]  # internal links to a file that does not exist, or a missing anchor
    links: int
    toc_links: int
    hidden_inputs: int
    hidden_inputs_folded: int
    mathjax_version: str | None
    screenshot: Path | None = None

    def problems(self) -> list[str]:
        out = []
        if self.drawn < self.figures:
            out.append(f"{self.figures - self.drawn} of {self.figures} plotly figures not drawn")
        if self.typeset < self.equations:
            out.append(f"{self.equations - self.typeset} of {self.equations} equations not typeset")
        if self.tex_labels_typeset < self.tex_labels:
            out.append(f"{self.tex_labels - self.tex_labels_typeset} of {self.tex_labels} TeX figure labels not typeset")
        if self.hidden_inputs_folded < self.hidden_inputs:
            out.append(f"{self.hidden_inputs - self.hidden_inputs_folded} hide-input cells show their code")
        out += [f"raw TeX in the text: ...{' '.join(t.split())}..." for t in self.raw_tex]
        out += [f"JavaScript: {e}" for e in self.errors]
        out += [f"remote request: {u}" for u in self.remote]
        out += [f"broken link: {u}" for u in self.broken_links]
        return [f"{self.page}: {p}" for p in out]


@dataclass
class BrowserReport:
    html_dir: Path
    browser: str
    pages: list[PageReport]
    seconds: float

    def problems(self) -> list[str]:
        return [p for page in self.pages for p in page.problems()]

    def summary(self) -> str:
        total = lambda attr: sum(getattr(p, attr) for p in self.pages)  # noqa: E731
        shots = sum(p.screenshot is not None for p in self.pages)
        return (
            f"{len(self.pages)} pages, {total('drawn')}/{total('figures')} figures drawn, "
            f"{total('typeset')}/{total('equations')} equations typeset"
            + (f" (+{total('tex_labels_typeset')}/{total('tex_labels')} TeX figure labels)" if total("tex_labels") else "")
            + f", {total('links')} links checked, {sum(len(p.errors) for p in self.pages)} JavaScript errors, "
            f"{sum(len(p.remote) for p in self.pages)} remote requests, {shots} screenshots "
            f"({self.browser}, {self.seconds:.0f} s)"
        )


def built_pages(html_dir: Path) -> list[Path]:
    """Every HTML page of a built book (not the redirecting index.html)."""
    pages = sorted(p for p in html_dir.rglob("*.html") if not p.relative_to(html_dir).parts[0].startswith("_"))
    return [p for p in pages if p.name != "index.html" or p.parent != html_dir] or pages


def _file_of(url: str) -> Path | None:
    parts = urllib.parse.urlsplit(url)
    return Path(urllib.parse.unquote(parts.path)) if parts.scheme == "file" else None


def _page_problems(browser: Chromium, session: str) -> tuple[list[str], list[str]]:
    """JavaScript errors and remote requests recorded for one page."""
    errors, remote = [], []
    for event in browser.events(session):
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append((details.get("exception") or {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            if urllib.parse.urlsplit(entry.get("url", "")).scheme in LOCAL_SCHEMES + ("",):
                errors.append(f"{entry['text']} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if urllib.parse.urlsplit(url).scheme not in LOCAL_SCHEMES:
                remote.append(url)
    return [e.splitlines()[0][:300] for e in errors], sorted(set(remote))


def check_in_browser(
    html_dir: Path,
    screenshots: Path | None = None,
    pages: list[Path] | None = None,
    executable: str | None = None,
    timeout: float = 30,
    progress: bool = True,
) -> BrowserReport:
    """Open each page of a built book (``pages``, default every page) in headless Chromium
    with the network cut, wait for its figures and MathJax, and report what a reader would see.
    With ``screenshots``, saves ``NAME.png`` there for each notebook page (the chapters)."""
    html_dir = Path(html_dir).resolve()
    if not (html_dir / "index.html").is_file():
        raise UserError(f"no built book in {html_dir}; run `rsoup book` first")
    pages = [Path(p).resolve() for p in (pages or built_pages(html_dir))]
    reports = []
    t0 = time.perf_counter()
    with Chromium(executable) as browser:
        for page in pages:
            rel = page.relative_to(html_dir).as_posix()
            session = browser.open(page.as_uri())
            info = browser.evaluate(session, _PAGE_REPORT_JS % {"timeout_ms": int(timeout * 1000)}, timeout + 30)
            shot = None
            if screenshots is not None and rel.startswith("notebooks/"):
                shot = Path(screenshots) / f"{page.stem}.png"
                browser.screenshot(session, shot)
            errors, remote = _page_problems(browser, session)
            broken = sorted(
                {u for u in info["links"] if (f := _file_of(u)) is not None and not f.exists()}
                | set(info["broken_anchors"])
            )
            browser.close_page(session)
            report = PageReport(
                page=rel, figures=info["figures"], drawn=info["drawn"], equations=info["equations"],
                typeset=info["typeset"], tex_labels=info["tex_labels"], tex_labels_typeset=info["tex_labels_typeset"],
                raw_tex=info["raw_tex"], errors=errors, remote=remote, broken_links=broken,
                links=len(info["links"]), toc_links=len(info["toc_links"]), hidden_inputs=info["hidden_inputs"],
                hidden_inputs_folded=info["hidden_inputs_folded"], mathjax_version=info["mathjax_version"],
                screenshot=shot,
            )  # fmt: skip
            reports.append(report)
            if progress:
                print(
                    f"[rsoup book] {rel}: {report.drawn}/{report.figures} figures drawn, "
                    f"{report.typeset}/{report.equations} equations typeset, {len(errors)} JS errors, "
                    f"{len(remote)} remote requests, {len(broken)} broken links in {report.links}"
                    + (f", screenshot {shot}" if shot else ""),
                    flush=True,
                )
        browser_name = browser.version
    return BrowserReport(html_dir, browser_name, reports, time.perf_counter() - t0)
