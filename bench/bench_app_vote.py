"""Vote click -> next query rendered, in a real browser, while other readers vote in the background.

    python bench/bench_app_vote.py                     # 1 browser reader + 19 background readers, SQLite
    python bench/bench_app_vote.py --background 0      # the browser reader alone
    python bench/bench_app_vote.py --json out/bench_app_vote.json

Setup: a temp SQLite study (overlap allocation, every reader gets every case) whose cases are 512-px Hannover
X-rays from R2C_DATA when present (else small generated images), rendered by the synthetic renderer (the
rendering does not matter here, the PNG sizes do). The app runs as in production (``streamlit run``, headless)
in its own process. The browser reader is headless Chromium (Playwright): each sample clicks "Choose k" from
inside the page and stops the clock when the next query's five images are loaded and a frame has been painted
(``performance.now()`` in the page). Background readers are threads in this process that go through the study
functions like the app does: next query, the five rendition PNGs, then a vote after a random think time
(``--think`` seconds on average), until the run ends.
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
async (label) => {
  const grid = () => Array.from(document.querySelectorAll('.st-key-r2c-grid [data-testid="stImage"] img'));
  const key = () => grid().map((i) => i.src).join('|');
  const before = key();
  const button = Array.from(document.querySelectorAll('button')).find((b) => b.innerText.trim().startsWith(label));
  if (!button) throw new Error('no button ' + label);
  const t0 = performance.now();
  button.click();
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


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.e2e.harness import has_chromium, launch, run_app, sign_in, wait_app_idle

    if not has_chromium():
        raise SystemExit("error: /usr/bin/chromium is needed (scripts/setup_system.sh)")
    root = Path(tempfile.mkdtemp(prefix="bench-vote-"))
    n_cases = args.warmup + args.samples + 2
    env, codes, _sid, images = build(root, n_cases, args.background + 1)
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
                ms = page.evaluate(MEASURE_JS, f"Choose {rng.randint(1, 5)}")
                wait_app_idle(page)
                if i >= args.warmup:
                    times.append(float(ms))
            bg_votes, bg_errors = bg.votes, list(bg.errors)
        browser.close()
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return {
        "command": " ".join(["python"] + sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "database": "SQLite (WAL)", "images": images,
        "background_readers": args.background, "think_s": args.think, "background_votes": bg_votes,
        "background_errors": bg_errors[:5], "samples": len(times),
        "median_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1),
        "min_ms": round(times[0], 1), "max_ms": round(times[-1], 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--background", type=int, default=19, help="background readers (default 19)")
    p.add_argument("--think", type=float, default=1.0, help="background readers' mean think time per query, seconds")
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    out = run(args)
    print(f"click -> next query rendered: median {out['median_ms']} ms, p95 {out['p95_ms']} ms "
          f"(min {out['min_ms']}, max {out['max_ms']}; {out['samples']} samples)")
    print(f"{out['background_readers']} background readers cast {out['background_votes']} votes meanwhile "
          f"(think {out['think_s']} s); {out['images']}; {out['machine']}")
    if out["background_errors"]:
        print("background errors:", *out["background_errors"], sep="\n  ")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
