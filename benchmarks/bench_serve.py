"""`v2l serve` under the default offline models: every operation's latency cold (first request: models load) and warm
(second), throughput under 24 concurrent requests against one at a time in the same run, peak memory; and a headless
Chromium screenshot of each tab of the page (Debian's chromium driven by Playwright) into docs/serve/.

    python benchmarks/bench_serve.py            # needs the shared data (the caption/VQA pool, the classify examples)

Writes benchmarks/results/serve.json and docs/serve/*.png.
"""

from __future__ import annotations

import resource
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from common import write_result

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    import uvicorn

    from v2l.data import WebDatasetShards
    from v2l.serve import Service, create_app
    from v2l.tasks.coco import load_coco

    out = REPO / "docs" / "serve"
    out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/v2l-bench-serve")
    work.mkdir(exist_ok=True)
    photo = work / "photo.jpg"
    load_coco("test", limit=3)[2].image.save(photo)
    ds = WebDatasetShards("tiny-imagenet-200", "train")
    by = {}
    for i in range(len(ds)):
        w = ds.meta(i).get("wnid")
        if w in ("n01443537", "n02123045") and len(by.setdefault(w, [])) < 2:
            by[w].append(i)
    support = []
    for w, idx in by.items():
        for k, i in enumerate(idx):
            p = work / f"{w}-{k}.jpg"
            ds[i].image.save(p)
            support.append((f"class:{w}", p))
    app = create_app(Service(), max_waiting=4)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=7871, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    url = "http://127.0.0.1:7871"
    forms = {
        "words": {},
        "tokenize": {},
        "reconstruct": {},
        "caption": {},
        "vqa": {"question": "What is in the picture?"},
        "classify": {"rule": "rank"},
        "denoise": {"task": "inpaint"},
        "restore": {"mask": "0.3"},
        "seed-caption": {},
    }

    def post(op):
        files = [("image", ("photo.jpg", photo.read_bytes()))]
        if op == "classify":
            files += [(k, (p.name, p.read_bytes())) for k, p in support]
        t0 = time.perf_counter()
        r = httpx.post(f"{url}/api/v1/{op}", data=forms[op], files=files, timeout=600)
        return time.perf_counter() - t0, r

    latency = {}
    for op in forms:
        cold, r1 = post(op)
        warm, r2 = post(op)
        assert r1.status_code == 200 and r2.status_code == 200, (op, r1.text[:200])
        latency[op] = {"cold_s": round(cold, 2), "warm_s": round(warm, 2)}
        print(op, latency[op], file=sys.stderr)
    t_one = time.perf_counter()
    for _ in range(8):
        post("words")
    t_one = time.perf_counter() - t_one
    t0 = time.perf_counter()
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda _: post("words")[1].status_code, range(24)))
    t_conc = time.perf_counter() - t0
    load = {
        "requests": 24,
        "ok": results.count(200),
        "busy_503": results.count(503),
        "other": len(results) - results.count(200) - results.count(503),
        "wall_s": round(t_conc, 2),
        "served_per_s": round(results.count(200) / t_conc, 2),
        "one_at_a_time_per_s": round(8 / t_one, 2),
        "max_waiting": 4,
    }
    shots = screenshots(url, photo, support, out)
    server.should_exit = True
    write_result(
        "serve",
        {
            "latency": latency,
            "load": load,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "screenshots": shots,
        },
    )


def screenshots(url: str, photo: Path, support, out: Path) -> list[str]:
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        print("no chromium: no screenshots (apt-get install chromium)", file=sys.stderr)
        return []
    names = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1150, "height": 900})
        page.goto(url + "/")
        page.set_input_files("#image", str(photo))
        for op, ready in (
            ("words", "#o-words table"),
            ("tokenize", "#tokenmap"),
            ("reconstruct", "#o-reconstruct img"),
            ("classify", "#o-classify table"),
            ("caption", "#o-caption details"),
            ("vqa", "#o-vqa details"),
            ("denoise", "#o-denoise img"),
            ("restore", "#o-restore img"),
            ("seed-caption", "#o-seed-caption p"),
        ):
            page.click(f"button[data-tab={op}]")
            if op == "classify":
                rows = page.locator("#classes > div")
                for k, wnid in enumerate(sorted({key[6:] for key, _ in support})):
                    rows.nth(k).locator(".cname").fill(wnid)
                    rows.nth(k).locator(".cfiles").set_input_files([str(p) for key, p in support if key[6:] == wnid])
            if op == "vqa":
                page.fill("#question", "What is in the picture?")
            page.click(f"button[data-op={op}]")
            page.wait_for_selector(ready, timeout=600_000)
            path = out / f"{op}.png"
            page.screenshot(path=str(path), full_page=True)
            names.append(str(path.relative_to(REPO)))
        browser.close()
    return names


if __name__ == "__main__":
    main()
