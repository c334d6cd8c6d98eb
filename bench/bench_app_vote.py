"""Vote click -> next query painted, in a real browser, while other readers vote in the background: the instant voting
area (next queries held in the browser) and the plain Streamlit loop (one rerun per vote), measured in one run.

    python bench/bench_app_vote.py                     # both UIs, 1 browser reader + 19 background readers, SQLite
    python bench/bench_app_vote.py --ui instant        # one UI only
    python bench/bench_app_vote.py --background 0      # the browser reader alone
    python bench/bench_app_vote.py --json out/bench_app_vote.json

Setup, per UI: a temp SQLite study (overlap allocation, every reader gets every case) whose cases are 512-px
Hannover X-rays from R2C_DATA when present (else small generated images), rendered by the synthetic renderer (the
rendering does not matter here, the PNG sizes do). The app runs as in production (``streamlit run``, headless)
in its own process, with ``R2C_VOTE_UI`` set to the UI measured. The browser reader is headless Chromium
(Playwright): each sample clicks "Choose k" from inside the page and stops the clock when the next query's five
images are in the grid, loaded, and a frame has been painted after that (two ``requestAnimationFrame`` callbacks;
``performance.now()`` in the page). The reader waits 0.3-0.8 s between votes; with the plain loop it also waits
for the rerun to finish (it cannot do otherwise), with the instant area it does not, and the time from the click
until the server has acknowledged the vote is reported beside it. Background readers are threads in this
process that go through the study functions like the app does: next query, the five rendition PNGs, then a vote
after a random think time (``--think`` seconds on average), until the run ends.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MEASURE_JS = """
async ([label, instant]) => {
  const sel = instant ? '.r2c-iv-grid img.r2c-iv-img' : '.st-key-r2c-grid [data-testid="stImage"] img';
  const grid = () => Array.from(document.querySelectorAll(sel));
  const key = () => grid().map((i) => i.src).join('|');
  const before = key();
  const scope = instant ? '.r2c-iv-grid button' : 'button';
  const button = Array.from(document.querySelectorAll(scope)).find((b) => b.innerText.trim().startsWith(label));
  if (!button) throw new Error('no button ' + label);
  const t0 = performance.now();
  button.click();
  if (instant) {  // when the server acknowledges the vote (the page's queue is empty again), in the background
    const status = document.querySelector('.r2c-iv-status');
    const watch = () => {
      if (status.dataset.pending === '0') (window.__r2cAcks = window.__r2cAcks || []).push(performance.now() - t0);
      else setTimeout(watch, 2);
    };
    setTimeout(watch, 0);
  }
  await new Promise((resolve, reject) => {
    const limit = setTimeout(() => reject(new Error('timeout')), 30000);
    const check = () => {
      const imgs = grid();
      const done = document.body.innerText.includes('All done');
      if (done || (imgs.length && key() !== before && imgs.every((i) => i.complete && i.naturalWidth > 0))) {
        clearTimeout(limit);
        requestAnimationFrame(() => requestAnimationFrame(resolve));
        return;
      }
      requestAnimationFrame(check);
    };
    check();
  });
  return performance.now() - t0;
}
"""


def _pct(times: list[float], q: float) -> float:
    times = sorted(times)
    return times[min(len(times) - 1, int(round(q * (len(times) - 1))))]


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(times), 1), "p95_ms": round(_pct(times, 0.95), 1),
            "min_ms": round(min(times), 1), "max_ms": round(max(times), 1), "samples": len(times)}


def build(root: Path, n_cases: int, n_readers: int) -> tuple[dict[str, str], dict[str, str], int, str]:
    """A study with ``n_readers`` readers; returns (app env, codes, study id, what the case images are)."""
    import pandas as pd

    from r2c_core.paths import data_dir, has_data
    from study.accounts import add_reader
    from study.builder import StudySpec, build_study
    from study.db import connect
    from study.render import SyntheticRenderer
    from study.simstudy import write_synthetic_manifest

    url = f"sqlite:///{root / 'study.db'}"
    env = {"R2C_DB_URL": url, "R2C_ASSETS": str(root / "assets"), "R2C_WEIGHTS": str(root / "weights"),
           "R2C_DEMO_DB": "0", "R2C_MIN_DWELL_S": "0"}  # the benchmark clicks as soon as a query is painted
    if has_data():
        m = pd.read_csv(data_dir() / "MANIFEST.csv", dtype=str, keep_default_na=False)
        part = m[m["source"] == "mhh"].copy()
        part["file"] = [str(data_dir() / f) for f in part["file"]]
        manifest = root / "manifest.csv"
        part.to_csv(manifest, index=False)
        images, split = "512-px Hannover X-rays (PNG renditions ~100-200 kB each)", None
    else:
        manifest = write_synthetic_manifest(root / "data", n_cases, 0)
        images, split = "generated 48x40 images (no R2C_DATA)", "test"
    factory = connect(url, migrate=True)
    codes = {}
    with factory.begin() as s:
        for i in range(n_readers):
            codes[f"reader-{i:02d}"] = add_reader(s, f"reader-{i:02d}", "reader")[1]
    spec = StudySpec(name="bench", manifest=manifest, split=split, n_cases=n_cases, seed=0, allocation="overlap")
    sid = build_study(factory, spec, SyntheticRenderer("restoration", working_size=256), assets=env["R2C_ASSETS"],
                      show_bar=False)
    return env, codes, sid, images


class Background:
    """Readers voting through the study functions in threads, until stopped."""

    def __init__(self, url: str, assets: str, names: list[str], think: float) -> None:
        from study.db import connect

        self.factory, self.assets, self.names, self.think = connect(url), assets, names, think
        self.stop = threading.Event()
        self.votes = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n, i), daemon=True) for i, n in enumerate(names)]

    def _run(self, name: str, seed: int) -> None:
        from sqlalchemy import select

        from study.accounts import start_sitting
        from study.models import Reader
        from study.voting import display_pngs, next_query, submit_vote

        rng = random.Random(seed)
        with self.factory.begin() as s:
            rid = s.scalar(select(Reader.id).where(Reader.name == name))
            sitting = start_sitting(s, rid).id
        while not self.stop.is_set():
            try:
                with self.factory.begin() as s:
                    view = next_query(s, rid, sitting_id=sitting)
                if view is None:
                    return
                with self.factory.begin() as s:  # what the voting page fetches: the padded display images
                    display_pngs(s, rid, view.query_token, assets=self.assets)
                if self.stop.wait(rng.uniform(0.2, 1.8) * self.think):
                    return
                with self.factory.begin() as s:
                    submit_vote(s, rid, view.query_token, rng.randint(1, view.n_slots), sitting_id=sitting)
                with self.lock:
                    self.votes += 1
            except Exception as exc:  # keep going; report at the end
                self.errors.append(f"{name}: {exc}")
                time.sleep(0.2)

    def __enter__(self) -> "Background":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def measure(ui: str, args: argparse.Namespace) -> dict:
    """One UI: its own study, app server, background readers and browser reader."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.harness import launch, run_app, sign_in, wait_app_idle

    instant = ui == "instant"
    root = Path(tempfile.mkdtemp(prefix=f"bench-vote-{ui}-"))
    n_cases = args.warmup + args.samples + 2
    env, codes, _sid, images = build(root, n_cases, args.background + 1)
    env["R2C_VOTE_UI"] = ui
    names = sorted(codes)
    times: list[float] = []
    with run_app(env) as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.set_default_timeout(60_000)
        page.goto(url)
        wait_app_idle(page)
        sign_in(page, codes[names[0]])
        page.get_by_role("button", name="Choose 1").wait_for()
        wait_app_idle(page)
        with Background(env["R2C_DB_URL"], env["R2C_ASSETS"], names[1:], args.think) as bg:
            time.sleep(min(3.0, args.think * 2))  # let the background readers get going
            rng = random.Random(0)
            for i in range(args.warmup + args.samples):
                page.wait_for_timeout(int(rng.uniform(0.3, 0.8) * 1000))  # a (fast) reader looks first
                ms = page.evaluate(MEASURE_JS, [f"Choose {rng.randint(1, 5)}", instant])
                if not instant:
                    wait_app_idle(page)
                if i >= args.warmup:
                    times.append(float(ms))
            if instant:
                page.wait_for_selector('.r2c-iv-status[data-pending="0"]', state="attached")
            acks = page.evaluate("() => window.__r2cAcks || []")[args.warmup:] if instant else []
            bg_votes, bg_errors = bg.votes, list(bg.errors)
        browser.close()
    out = {"ui": ui, **_summary(times), "background_votes": bg_votes, "background_errors": bg_errors[:5],
           "images": images}
    if acks:
        out["vote_acknowledged"] = _summary(acks)
    return out


def run(args: argparse.Namespace) -> dict:
    from tests.e2e.harness import has_chromium

    if not has_chromium():
        raise SystemExit("error: /usr/bin/chromium is needed (scripts/setup_system.sh)")
    results = {ui: measure(ui, args) for ui in args.ui.split(",")}
    out = {
        "command": " ".join(["python"] + sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "database": "SQLite (WAL)", "background_readers": args.background, "think_s": args.think,
        "results": results,
    }
    if {"instant", "plain"} <= set(results):
        out["p95_speedup"] = round(results["plain"]["p95_ms"] / max(1e-9, results["instant"]["p95_ms"]), 1)
        out["median_speedup"] = round(results["plain"]["median_ms"] / max(1e-9, results["instant"]["median_ms"]), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--background", type=int, default=19, help="background readers (default 19)")
    p.add_argument("--think", type=float, default=1.0, help="background readers' mean think time per query, seconds")
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--ui", default="instant,plain", help="comma list of instant, plain (default both)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    bad = set(args.ui.split(",")) - {"instant", "plain"}
    if bad:
        p.error(f"unknown --ui {sorted(bad)}")
    out = run(args)
    for ui, r in out["results"].items():
        print(f"{ui:8s} click -> next query painted: median {r['median_ms']} ms, p95 {r['p95_ms']} ms "
              f"(min {r['min_ms']}, max {r['max_ms']}; {r['samples']} samples; "
              f"{r['background_votes']} background votes meanwhile)")
        if "vote_acknowledged" in r:
            a = r["vote_acknowledged"]
            print(f"{'':8s} click -> vote acknowledged by the server: median {a['median_ms']} ms, p95 {a['p95_ms']} ms")
        if r["background_errors"]:
            print("background errors:", *r["background_errors"], sep="\n  ")
    if "p95_speedup" in out:
        print(f"instant vs plain: p95 {out['p95_speedup']}x, median {out['median_speedup']}x faster")
    print(f"{out['background_readers']} background readers (think {out['think_s']} s); "
          f"{next(iter(out['results'].values()))['images']}; {out['machine']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
