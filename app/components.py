"""Small reusable widgets: the research-use notice, the blinded comparison grid (synchronized zoom, click to
enlarge, choose by click or number key) and the side-by-side demo pair.

The comparison grid shows images as PNG bytes through ``st.image`` (served under content-hash URLs), labels
them only by slot number ("Image 1".."Image 5"), and keys its widgets by slot number, so nothing in the page
reveals which method made which image. Zoom and the enlarged view are added in the browser by a small script
(``st.components.v2``, no iframe) that works on the grid's own ``<img>`` elements: the mouse wheel zooms all
images at the same point, dragging pans them all, a double click resets, a click opens the image large
(arrow keys step through the others at the same zoom, Esc closes). Window/level: a right drag (or shift drag) on any
image, or the presets of the bar above the grid, sets one CSS filter on every image (the enlarged one too), so no
image is favoured; ``out = (x - (L - W/2)) / W`` on the display grey levels, as ``brightness(1 / (W c))
contrast(c)`` with ``c = 1 + 2 (L - W/2) / W``. It stays from one query to the next (a display preference); the
zoom resets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import streamlit as st

NOTICE = "Research use only, not for diagnosis."
GRID_KEY = "r2c-grid"
#: the longest image side the voting page sends: Streamlit's st.image re-encodes anything wider than its maximum
#: content width (1460 px), which would undo the equal-size padding of study.voting.display_pngs
MAX_IMAGE_SIDE = 1460
PREFETCH_KEY = "r2c-prefetch"
_PREFETCH_CSS = ("<style>.st-key-r2c-prefetch{position:absolute!important;left:-10000px;top:0;width:64px;"
                 "height:64px;overflow:hidden;opacity:0;pointer-events:none}</style>")

_ZOOM_JS = r"""
export default function (component) {
  // the plain grid (st.image) and the instant voting area (app/instant_vote.js) alike
  const GRID = '.st-key-r2c-grid, .r2c-iv-grid';
  const GRID_IMGS = '.st-key-r2c-grid [data-testid="stImage"] img, .r2c-iv-grid img.r2c-iv-img';
  const w = window;
  if (!w.__r2cZoom) {
    const Z = { s: 1, tx: 0, ty: 0, drag: null, box: null, idx: 0, W: 1, L: 0.5, wl: null };
    w.__r2cZoom = Z;
    // window/level on the display grey levels (0..1): out = (x - (L - W/2)) / W, clipped; the same for every image
    const PRESETS = { default: [1, 0.5], lung: [0.7, 0.35], mediastinum: [0.7, 0.65], bone: [0.5, 0.7] };
    const wlFilter = () => {
      if (Math.abs(Z.W - 1) < 1e-6 && Math.abs(Z.L - 0.5) < 1e-6) return '';
      const lo = Z.L - Z.W / 2, c = 1 + (2 * lo) / Z.W, b = 1 / (Z.W * c);
      return `brightness(${b.toFixed(4)}) contrast(${c.toFixed(4)})`;
    };
    const gridImgs = () => Array.from(document.querySelectorAll(GRID_IMGS));
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
    const apply = () => {
      Z.W = clamp(Z.W, 0.05, 2);
      Z.L = clamp(Z.L, 0.05, 0.95);
      const filter = wlFilter();
      const readout = document.getElementById('r2c-wl-readout');
      if (readout) readout.textContent = `W ${Math.round(Z.W * 100)} %, L ${Math.round(Z.L * 100)} %`;
      Z.s = clamp(Z.s, 1, 8);
      Z.tx = clamp(Z.tx, 1 - Z.s, 0);
      Z.ty = clamp(Z.ty, 1 - Z.s, 0);
      const imgs = gridImgs();
      if (Z.box) imgs.push(Z.box.querySelector('img'));
      // in fractions of each image's own box (CSS percentages), so panes whose layout widths differ by a
      // pixel still show exactly the same region: the same transform string on every pane
      const pc = (v) => `${(100 * v).toFixed(4)}%`;
      const left = -Z.tx / Z.s, top = -Z.ty / Z.s;
      const right = 1 - (left + 1 / Z.s), bottom = 1 - (top + 1 / Z.s);
      const transform = `translate(${pc(Z.tx)}, ${pc(Z.ty)}) scale(${Z.s.toFixed(5)})`;
      const clip = Z.s > 1 ? `inset(${pc(top)} ${pc(right)} ${pc(bottom)} ${pc(left)})` : '';
      for (const img of imgs) {
        img.style.transformOrigin = '0 0';
        img.style.transform = transform;
        img.style.clipPath = clip;
        img.style.cursor = Z.s > 1 ? 'grab' : 'zoom-in';
        img.style.filter = filter;
        img.draggable = false;
      }
    };
    Z.apply = apply;
    const target = (e) => {
      const img = e.target && e.target.closest ? e.target.closest('img') : null;
      if (!img) return null;
      if (Z.box && Z.box.contains(img)) return img;
      return img.closest(GRID) ? img : null;
    };
    const box0 = (img) => {
      const r = img.getBoundingClientRect(), w0 = img.offsetWidth, h0 = img.offsetHeight;
      return { left: r.left - Z.tx * w0, top: r.top - Z.ty * h0, width: w0, height: h0 };
    };
    const point = (img, e) => {
      const r = box0(img);
      return [(e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height];
    };
    const closeBox = () => { if (Z.box) { Z.box.remove(); Z.box = null; } };
    const openBox = (i) => {
      const imgs = gridImgs();
      if (!imgs.length) return;
      Z.idx = (i + imgs.length) % imgs.length;
      const src = imgs[Z.idx];
      closeBox();
      const box = document.createElement('div');
      box.id = 'r2c-lightbox';
      box.setAttribute('role', 'dialog');
      box.style.cssText = 'position:fixed;inset:0;z-index:2147483000;background:rgba(0,0,0,0.92);display:flex;' +
        'flex-direction:column;align-items:center;justify-content:center;gap:8px';
      const aspect = (src.naturalWidth || 1) / (src.naturalHeight || 1);
      const h = Math.min(window.innerHeight * 0.88, (window.innerWidth * 0.94) / aspect);
      const f = document.createElement('div');
      f.style.cssText = `width:${h * aspect}px;height:${h}px;overflow:hidden;background:#000`;
      const img = document.createElement('img');
      img.src = src.src;
      img.alt = `Image ${Z.idx + 1} enlarged`;
      img.style.cssText = 'width:100%;height:100%;display:block;user-select:none';
      f.appendChild(img);
      const cap = document.createElement('div');
      cap.style.cssText = 'color:#eee;font:14px sans-serif';
      cap.textContent = `Image ${Z.idx + 1} of ${imgs.length} - arrow keys: other images, wheel or drag: zoom and pan, ` +
        'right drag: window/level, double click: reset zoom, number key: choose, Esc: close';
      box.appendChild(f);
      box.appendChild(cap);
      box.addEventListener('mousedown', (e) => { if (e.target === box) closeBox(); });
      document.body.appendChild(box);
      Z.box = box;
      apply();
    };
    Z.closeBox = closeBox;
    document.addEventListener('wheel', (e) => {
      const img = target(e);
      if (!img) return;
      e.preventDefault();
      const [fx, fy] = point(img, e);
      const u = (fx - Z.tx) / Z.s, v = (fy - Z.ty) / Z.s;
      Z.s = clamp(Z.s * Math.exp(-e.deltaY * 0.0015), 1, 8);
      Z.tx = fx - u * Z.s;
      Z.ty = fy - v * Z.s;
      apply();
    }, { passive: false });
    document.addEventListener('contextmenu', (e) => { if (target(e)) e.preventDefault(); });
    document.addEventListener('click', (e) => {
      const b = e.target && e.target.closest ? e.target.closest('[data-r2c-wl]') : null;
      if (!b) return;
      [Z.W, Z.L] = PRESETS[b.dataset.r2cWl] || PRESETS.default;
      apply();
    });
    document.addEventListener('mousedown', (e) => {
      const img = target(e);
      if (img && (e.button === 2 || (e.button === 0 && e.shiftKey))) {  // right drag (or shift drag): window/level
        e.preventDefault();
        Z.wl = { x: e.clientX, y: e.clientY, W: Z.W, L: Z.L };
        return;
      }
      if (!img || e.button !== 0) return;
      e.preventDefault();
      const r = box0(img);
      Z.drag = { x: e.clientX, y: e.clientY, tx: Z.tx, ty: Z.ty, w: r.width, h: r.height, moved: false, img };
    });
    document.addEventListener('mousemove', (e) => {
      if (Z.wl) {  // right: wider window (less contrast), down: higher level (darker)
        Z.W = Z.wl.W * Math.exp((e.clientX - Z.wl.x) * 0.005);
        Z.L = Z.wl.L + (e.clientY - Z.wl.y) * 0.002;
        apply();
        return;
      }
      const d = Z.drag;
      if (!d) return;
      const dx = e.clientX - d.x, dy = e.clientY - d.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) d.moved = true;
      if (d.moved && Z.s > 1) { Z.tx = d.tx + dx / d.w; Z.ty = d.ty + dy / d.h; apply(); }
    });
    document.addEventListener('mouseup', () => {
      if (Z.wl) { Z.wl = null; return; }
      const d = Z.drag;
      Z.drag = null;
      if (!d || d.moved) return;
      if (Z.box && Z.box.contains(d.img)) return;
      const i = gridImgs().indexOf(d.img);
      clearTimeout(Z.clickTimer);  // a single click opens the large view; a double click only resets the zoom
      Z.clickTimer = setTimeout(() => openBox(i), 260);
    });
    document.addEventListener('dblclick', (e) => {
      if (!target(e)) return;
      clearTimeout(Z.clickTimer);
      Z.s = 1; Z.tx = 0; Z.ty = 0; apply();
    });
    document.addEventListener('keydown', (e) => {
      if (!Z.box) return;
      if (e.key === 'Escape') { closeBox(); e.stopPropagation(); e.preventDefault(); }
      else if (e.key === 'ArrowRight') { openBox(Z.idx + 1); e.stopPropagation(); e.preventDefault(); }
      else if (e.key === 'ArrowLeft') { openBox(Z.idx - 1); e.stopPropagation(); e.preventDefault(); }
    }, true);
    Z.srcKey = null;
    const onChange = () => {
      for (const img of document.querySelectorAll('.st-key-r2c-prefetch img')) {
        if (img.dataset.r2cDecoded !== img.src) { img.dataset.r2cDecoded = img.src; img.decode().catch(() => {}); }
      }
      const key = gridImgs().map((i) => i.src).join('|');
      if (key !== Z.srcKey) {  // a new query: start unzoomed, close the enlarged view
        Z.srcKey = key; Z.s = 1; Z.tx = 0; Z.ty = 0; closeBox();
      }
      if (!Z.drag) apply();
    };
    Z.onChange = onChange;
    let queued = false;  // coalesce DOM mutations into at most one update per frame
    const schedule = () => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; onChange(); }); } };
    new MutationObserver(schedule).observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ['src'] });
  }
  w.__r2cZoom.onChange();
}
"""

_zoom_sync = st.components.v2.component("r2c_zoom_sync", js=_ZOOM_JS, isolate_styles=False)

#: the window/level bar above the grid; the zoom script above handles its buttons and the right-drag
WL_HTML = (
    '<div class="r2c-wl" style="display:flex;flex-wrap:wrap;gap:6px;align-items:center;font:13px sans-serif">'
    '<span>Window/level (right drag on an image, or shift drag):</span>'
    + "".join(f'<button type="button" data-r2c-wl="{k}" style="padding:1px 8px">{v}</button>'
              for k, v in (("default", "Reset"), ("lung", "Lung"), ("mediastinum", "Mediastinum"), ("bone", "Bone")))
    + '<span id="r2c-wl-readout" style="opacity:0.7">W 100 %, L 50 %</span></div>'
)
_wl_bar = st.components.v2.component("r2c_wl_bar", html=WL_HTML, isolate_styles=False)


def research_notice(where: Any = st) -> None:
    """The visible research-use notice."""
    where.caption(f":warning: **{NOTICE}**")


def zoom_sync() -> None:
    """Mount the zoom / enlarge script for the grid (it resets the zoom whenever the grid shows new images)."""
    try:
        _zoom_sync(key="r2c-zoom", height=0)
    except Exception:  # the grid stays usable (plain images and buttons) without the script
        pass


def comparison_grid(
    images: Sequence[bytes],
    on_choose: Callable[..., None],
    choose_args: Callable[[int], tuple[Any, ...]],
    *,
    chosen: int | None = None,
    disabled: bool = False,
) -> None:
    """Images 1..n side by side, each with a "Choose k" button (keyboard shortcut: the number key k).

    ``on_choose(*choose_args(k))`` runs when image ``k`` is chosen; ``chosen`` marks an earlier choice."""
    try:
        _wl_bar(key="r2c-wl")
    except Exception:  # the grid stays usable without the bar
        pass
    with st.container(key=GRID_KEY):
        cols = st.columns(len(images), gap="small")
        for k, (col, data) in enumerate(zip(cols, images), start=1):
            with col:
                st.image(data, caption=f"Image {k}", width="stretch", output_format="PNG", alt=f"Image {k}")
                st.button(
                    f"Choose {k}", key=f"choose_{k}", shortcut=str(k), on_click=on_choose, args=choose_args(k),
                    type="primary" if chosen == k else "secondary", width="stretch", disabled=disabled,
                )
    zoom_sync()


def prefetch_images(images: Sequence[bytes]) -> None:
    """Images the page will need next, loaded and decoded by the browser now but not shown."""
    st.html(_PREFETCH_CSS)
    with st.container(key=PREFETCH_KEY):
        for data in images:
            st.image(data, output_format="PNG")  # same bytes as the grid will show: same URL, browser cache hit


def image_pair(left: np.ndarray, right: np.ndarray, captions: tuple[str, str]) -> None:
    """Two images side by side at the same width (lossless PNG)."""
    from r2c_core.demo import display_png

    a, b = st.columns(2, gap="medium")
    a.image(display_png(left), caption=captions[0], width="stretch", output_format="PNG")
    b.image(display_png(right), caption=captions[1], width="stretch", output_format="PNG")
