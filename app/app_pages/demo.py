"""The demo page (everyone, no sign-in): upload a chest X-ray or pick one from the data folder, choose a model
(a bundled R2C-GAN generator or a classical comparator) and the number of passes, and see the original and the restored image side by side with the COVID-19
probability and the lung segmentation of each. Bad uploads get one clear message and the app stays up."""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from r2c_core.classical import is_classical
from r2c_core.demo import DemoResult, downsized, run_demo
from r2c_core.errors import ImageLoadError, R2CError
from r2c_core.imageio import read_xray
from r2c_core.methods import CLASSICAL_METHODS, COMPARED_MODELS
from study.errors import StudyError
from study.manifest import read_manifest

from .. import components, services
from ..auth import current_user, md_escape

log = logging.getLogger(__name__)

RESULT = "r2c_demo_result"
#: (image digest, shape, packed bits) of the original's lung mask: reused when only the model or passes change
MASK = "r2c_demo_mask"
MAX_UPLOAD_MB = 64
UPLOAD_TYPES_HELP = "PNG, JPEG, TIFF or DICOM; 8- or 16-bit, gray or colour (converted to gray)"


@st.cache_data(show_spinner=False, max_entries=4)
def _manifest(data_dir: str) -> pd.DataFrame:
    df = read_manifest(Path(data_dir) / "MANIFEST.csv")  # validated, one-line error on a bad file
    order = {"mhh": 0}
    df = df.assign(_o=df["source"].map(lambda s: order.get(s, 1))).sort_values(["_o", "split", "id"])
    return df[["id", "file", "label", "source", "split"]].reset_index(drop=True)


def _pick_from_data() -> tuple[bytes, str] | None:
    cfg = services.settings()
    try:
        df = _manifest(str(cfg.data_dir))
    except StudyError as exc:  # a broken MANIFEST.csv: say so, the upload still works
        st.error(str(exc))
        return None
    labels = {i: f"{r.id} · {r.label} · {r.source}" for i, r in enumerate(df.itertuples())}
    idx = st.selectbox("X-ray from the data folder", options=list(labels), format_func=labels.get, key="demo_pick",
                       help="Hannover (mhh) images first; the data folder is R2C_DATA")
    if idx is None:
        return None
    row = df.iloc[int(idx)]
    path = cfg.data_dir / row["file"]
    try:
        return path.read_bytes(), str(row["id"])
    except OSError as exc:
        st.error(f"{path}: cannot read ({exc.strerror or exc})")
        return None


def _input() -> tuple[bytes, str] | None:
    # the data folder (named study images) only for researchers and admins: readers must not restore study cases
    user = current_user()
    can_pick = services.settings().has_data and user is not None and user.role in ("researcher", "admin")
    options = ["Upload a file"] + (["Pick from the data folder"] if can_pick else [])
    how = st.radio("Image", options, horizontal=True, key="demo_source", label_visibility="collapsed")
    if how == "Upload a file":
        up = st.file_uploader(f"Chest X-ray ({UPLOAD_TYPES_HELP})", key="demo_upload", max_upload_size=MAX_UPLOAD_MB)
        return (up.getvalue(), up.name) if up is not None else None
    return _pick_from_data()


def _controls(models: list[str]) -> tuple[str, int, bool]:
    a, b, c = st.columns([2, 2, 1], vertical_alignment="bottom")
    model = a.selectbox("Restoration model", models + CLASSICAL_METHODS, key="demo_model",
                        help="R2C-GAN generators bundled under weights/r2c-<model>/, HQG-Net under weights/hqg/, then "
                             "the classical comparators (clahe, histeq, gamma, unsharp, nlm; applied once)")
    once = is_classical(model) or model in COMPARED_MODELS  # as in studies: clahe, ..., hqg-x1
    passes = b.slider("Passes", min_value=1, max_value=5, value=3, key="demo_passes", disabled=once,
                      help="How many times the generator is applied (the paper's study uses 3; 1 for cnn). "
                           "A classical method and HQG-Net (an enhancement of one pass) are applied once.")
    outline = c.toggle("Lung outline", value=True, key="demo_outline")
    return model, 1 if once else int(passes), bool(outline)


def _run(data: bytes, name: str, model: str, passes: int) -> DemoResult | None:
    digest = hashlib.sha256(data).hexdigest()
    key = (digest, model, passes)
    cached = st.session_state.get(RESULT)
    if cached is not None and cached[0] == key:
        return cached[1]
    st.session_state.pop(RESULT, None)  # never two results of one session in memory
    packed = st.session_state.get(MASK)
    known_mask = (np.unpackbits(packed[2], count=int(np.prod(packed[1]))).reshape(packed[1]).astype(bool)
                  if packed is not None and packed[0] == digest else None)
    try:
        gray = read_xray(data, name=name)
    except ImageLoadError as exc:  # names the upload, which the visitor chose: literal text, not Markdown
        st.error(md_escape(exc))
        return None
    bar = st.progress(0.0, text="Waiting for the models (one demo runs at a time)…")
    try:
        with services.demo_slot() as got:
            if not got:
                st.warning("The server is busy with other demo images. Please try again in a minute.")
                return None
            restorer = services.restorer(model)
            segmenter = services.segmenter()
            result = run_demo(gray, restorer, segmenter, passes, progress=lambda msg, f: bar.progress(f, text=msg),
                              original_mask=known_mask)
    except R2CError as exc:
        st.error(md_escape(exc))
        return None
    except MemoryError:
        st.error(f"{md_escape(name)}: out of memory while processing this image; try a smaller image")
        return None
    finally:
        bar.empty()
    if result.mask_original is not None:  # an eighth of a byte per pixel
        st.session_state[MASK] = (digest, result.mask_original.shape, np.packbits(result.mask_original))
    result = downsized(result, components.MAX_IMAGE_SIDE)  # the session keeps what the page shows, no more
    st.session_state[RESULT] = (key, result)
    return result


def _show(result: DemoResult, outline: bool) -> None:
    seg = result.overlay_original is not None
    left = result.overlay_original if outline and seg else result.original
    right = result.overlay_restored if outline and seg else result.restored
    if is_classical(result.model):
        restored = f"Enhanced ({result.model})"
        how = "From the first bundled R2C-GAN generator's classification head, run on the enhanced image."
    else:
        restored = f"Restored ({result.model}, {result.passes} pass{'es' if result.passes != 1 else ''})"
        how = "From the restoration model's classification head (first pass)."
    a, b, c = st.columns(3)
    a.metric("COVID-19 probability", "n/a" if math.isnan(result.prob_covid) else f"{100 * result.prob_covid:.1f} %",
             help=how + " Research model, not a diagnosis.")
    if result.lung_fraction is not None:
        b.metric("Lung area, original", f"{100 * result.lung_fraction[0]:.1f} % of image")
        c.metric("Lung area, restored", f"{100 * result.lung_fraction[1]:.1f} % of image")
    else:
        st.info("No lung segmentation weights found (weights/lung-unet/): segmentation is skipped.")
    components.image_pair(left, right, ("Original", restored))
    with st.expander(f"Timing: {result.total_s:.2f} s on {services.device_label()}"):
        st.table(pd.DataFrame({"step": list(result.timings), "seconds": [round(v, 3) for v in result.timings.values()]}))


def render() -> None:
    st.title("Demo: restore and segment a chest X-ray")
    components.research_notice()
    models = services.available_models()
    if not models:
        st.warning("No restoration weights are bundled (expected weights/r2c-<model>/config.json and "
                   "model.safetensors). Add weights or set R2C_WEIGHTS to a folder that has them.")
        return
    model, passes, outline = _controls(models)
    picked = _input()
    if picked is None:
        st.caption("Upload a frontal chest X-ray to start. Files stay in this session only.")
        return
    data, name = picked
    result = _run(data, name, model, passes)
    if result is not None:
        _show(result, outline)
