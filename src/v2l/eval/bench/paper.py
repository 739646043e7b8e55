"""The paper's numbers, as data (V2L, CVPR 2024): what the report sets beside ours. Each table keeps the paper's
rows; the report says how the settings differ."""

PAPER_NOTE = (
    "The paper's numbers use LLaMA-2 (7B–70B), CLIP ViT-L/14, ImageNet-1K training at 128×128 and "
    "Mini-ImageNet / ImageNet val; ours use the LLM named below, the `conse` VL stand-in (EfficientNet-Lite0 "
    "+ MiniLM), Tiny-ImageNet at 64×64 and the image counts given per table. Compare orders, not digits."
)


PAPER_TABLE3 = {
    "V2L (256 local tokens)": (3.41, 0.08, 23.56),
    "VQ-GAN + LLaMA-2 codebook": (9.51, 0.17, 21.48),
    "SPAE (597 tokens)": (4.41, 0.12, None),
}
PAPER_TABLE1 = {
    (5, 2): [34.2, 73.1, 89.0, 93.4, 79.6, 80.6, 79.1],
    (5, 5): [36.2, 54.6, 88.6, 91.1, 70.7, 72.8, 74.4],
    (21, 2): [36.5, 76.3, 91.2, 95.3, 84.0, 84.4, 83.7],
    (21, 5): [37.1, 44.8, 91.8, 94.0, 73.9, 82.2, 85.3],
}
PAPER_TABLE4 = {  # LLaMA-2 7B: (FID, LPIPS) for inpainting, outpainting, deblurring, rotation, shift
    "V2L": {
        "inpaint": (13.13, 0.1219),
        "outpaint": (15.28, 0.1442),
        "deblur": (10.09, 0.1033),
        "rotate": (10.64, 0.1064),
        "shift": (10.53, 0.1058),
    },
    "SPAE*": {
        "inpaint": (14.89, 0.1211),
        "outpaint": (16.10, 0.1363),
        "deblur": (15.89, 0.1299),
        "rotate": (16.25, 0.1318),
        "shift": (16.55, 0.1333),
    },
    "VQ-GAN*": {
        "inpaint": (16.44, 0.1404),
        "outpaint": (18.22, 0.1571),
        "deblur": (13.79, 0.1252),
        "rotate": (14.08, 0.1285),
        "shift": (13.91, 0.1270),
    },
    "LQAE*": {
        "inpaint": (18.77, 0.1736),
        "outpaint": (19.61, 0.1833),
        "deblur": (18.09, 0.1711),
        "rotate": (18.18, 0.1725),
        "shift": (18.26, 0.1722),
    },
}
PAPER_TABLE5 = {"subword": 65.6, "bigram": 83.1, "trigram": 87.1}  # LLaMA-2 70B, 5-way 1-shot with induction, K_g 5
PAPER_TABLE6 = {
    "LLaMA-2 embeddings": (9.51, 0.17, 21.48),
    "CLIP text embeddings": (4.58, 0.11, 23.58),
    "P-LLaMA-2 (projected)": (3.41, 0.08, 23.56),
}


PAPER_TABLE2_CLIP_SCORE = {"V2L": 0.2576, "SPAE": 0.1868}  # CLIP ViT-L/14 score of the words at K_g = 5

# SEED v1 (seed-2023), for the `seed` stage's report: not comparable (EVA-CLIP ViT-G, OPT-2.7B, 5M pairs, Stable
# Diffusion; COCO 5K test). Table 1, COCO: (image → text R@1, R@5, R@10, text → image R@1, R@5, R@10).
PAPER_SEED_TABLE1 = {
    "causal embedding": (71.9, 91.1, 95.9, 56.7, 80.7, 87.7),
    "causal code": (65.7, 88.1, 93.8, 52.5, 78.0, 86.0),
}
PAPER_SEED_TABLE2_COCO = 68.23  # CLIP similarity (×100) of images generated from COCO images' codes
# Table 3, COCO Karpathy test, SEED-OPT2.7B, in the order the paper's table prints them (B@4, METEOR, ROUGE-L, CIDEr,
# SPICE); its column headers are garbled in our copy.
PAPER_SEED_TABLE3_COCO = {"bleu4": 34.6, "meteor": 28.4, "rouge_l": 56.4, "cider": 119.0, "spice": 22.0}
