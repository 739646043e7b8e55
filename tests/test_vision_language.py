import numpy as np
import pytest
import torch
from PIL import Image

from v2l.backbones import HFCLIP, load_vl
from v2l.errors import ModelNotFoundError


def _image(color):
    return Image.fromarray(np.full((40, 50, 3), color, np.uint8))


def test_tiny_clip_encodes_into_one_normalised_space(tiny_clip_dir):
    vl = load_vl(f"hf-clip:{tiny_clip_dir}")
    assert isinstance(vl, HFCLIP) and vl.dim == 16 and vl.image_size == 32
    img = vl.encode_image([_image((255, 0, 0)), _image((0, 0, 255))])
    txt = vl.encode_text(["a photo of a cat", "a dog"])
    assert img.shape == (2, 16) and txt.shape == (2, 16)
    assert torch.allclose(img.norm(dim=-1), torch.ones(2)) and torch.allclose(txt.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(img[0], img[1])
    # Same numbers as calling transformers directly on our preprocessing.
    pix = vl.preprocess([_image((255, 0, 0))])
    direct = vl._features(vl.model.get_image_features(pixel_values=pix))
    assert torch.allclose(img[0], torch.nn.functional.normalize(direct, dim=-1)[0], atol=1e-5)


def test_a_clip_folder_loads_by_path(tiny_clip_dir):
    assert isinstance(load_vl(str(tiny_clip_dir)), HFCLIP)


def test_unknown_vl_and_offline_clip(monkeypatch):
    with pytest.raises(ModelNotFoundError, match="Unknown vision-language model"):
        load_vl("nonsense")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="use --vl conse"):
        load_vl("hf-clip:nobody-v2l/clip")


@pytest.mark.slow
def test_conse_text_tower(conse):
    e = conse.encode_text(["cat", "kitten", "finance"])
    assert e.shape == (3, 384)
    assert float(e[0] @ e[1]) > 0.7 and float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.3


@pytest.mark.slow
def test_conse_zero_shot_on_imagenet_sample(conse, data_root):
    from v2l.data import WebDatasetShards

    ds = WebDatasetShards("imagenet-1k-sample", root=data_root)
    samples = [ds[i] for i in range(0, 1000, 25)]
    img = conse.encode_image([s.image for s in samples])
    assert torch.allclose(img.norm(dim=-1), torch.ones(len(samples)), atol=1e-5)
    labels = sorted({s.label for s in samples})
    txt = conse.encode_text([f"a photo of a {lab}." for lab in labels])
    pred = [labels[i] for i in (img @ txt.T).argmax(1)]
    acc = np.mean([p == s.label for p, s in zip(pred, samples, strict=True)])
    assert acc > 0.6  # chance is 1/40


def test_vl_specs_round_trip_through_fingerprints():
    from v2l.backbones.vision_language import DEFAULT_VL, text_fingerprint, vl_spec

    conse = {
        "name": "conse",
        "image_tower": "efficientnet-lite0",
        "text_tower": "all-MiniLM-L6-v2",
        "top_t": 10,
        "class_template": "a photo of a {}.",
        "dim": 384,
    }
    assert vl_spec(conse) == "conse"  # plain conse is top-T 10, as every artefact built before the option
    assert vl_spec({**conse, "top_t": 3}) == "conse:top_t=3" == DEFAULT_VL
    assert vl_spec({"name": "hf-clip", "path": "/m/clip", "dim": 16}) == "hf-clip:/m/clip"
    # the text embeddings depend on the text tower only: top-T does not change them
    assert (
        text_fingerprint({**conse, "top_t": 3})
        == text_fingerprint(conse)
        != text_fingerprint({**conse, "text_tower": "other"})
    )
    clip = {"name": "hf-clip", "path": "/m/clip", "dim": 16, "config_sha256": "ab"}
    assert text_fingerprint(clip) == clip


def test_bad_conse_options_are_named_before_any_model_loads():
    from v2l.errors import ConfigError

    for spec, must in (
        ("conse:topt=3", "'topt=3' is not an option"),
        ("conse:top_t", "'top_t' is not an option"),
        ("conse:top_t=x", "whole number"),
        ("conse:top_t=0", "top_t 0"),
        ("conse:top_t=1001", "top_t 1001"),
    ):
        with pytest.raises(ConfigError, match=must):
            load_vl(spec)


@pytest.mark.slow
def test_conse_top_t_option_changes_images_not_texts(conse):
    t3 = load_vl("conse:top_t=3")
    assert t3.top_t == 3 and t3.spec == "conse:top_t=3" and conse.spec == "conse"
    assert t3.fingerprint()["top_t"] == 3 and t3.text_fingerprint() == conse.text_fingerprint()
    img = [_image((200, 30, 30)), _image((20, 120, 220))]
    assert torch.equal(t3.encode_text(["cat"]), conse.encode_text(["cat"]))
    a, b = t3.encode_image(img), conse.encode_image(img)
    assert torch.allclose(a.norm(dim=-1), torch.ones(2), atol=1e-5) and not torch.allclose(a, b, atol=1e-3)
    # by hand: the top-3 classes' embeddings weighted by their renormalised probabilities
    p, idx = conse.class_probabilities(conse.preprocess(img)).topk(3, dim=-1)
    want = torch.nn.functional.normalize(
        torch.einsum("nt,ntd->nd", p / p.sum(-1, keepdim=True), conse.class_embeddings[idx]), dim=-1
    )
    assert torch.allclose(a, want, atol=1e-5)


@pytest.mark.slow
def test_conse_micro_batches_equal_one_batch(conse):
    """The CPU micro-batches (a remainder included) give the classifier's logits on the whole batch."""
    pixels = conse.preprocess([_image((40 * i, 255 - 30 * i, 90)) for i in range(conse.CPU_MICRO_BATCH + 3)])
    with torch.inference_mode():
        split = conse.class_logits(pixels)
        whole = conse.classifier(pixels).float()
    assert split.shape == (len(pixels), 1000)
    assert torch.allclose(split, whole, atol=1e-4)
    assert not torch.allclose(split[0], split[1])
