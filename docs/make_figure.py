"""Draw docs/v2l.png, the README's overview diagram (Pillow only; no data-set images are embedded)."""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent / "v2l.png"


def font(size):
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    return ImageFont.load_default()


def box(d, xy, text, fill, f):
    d.rounded_rectangle(xy, radius=14, fill=fill, outline=(60, 60, 60), width=2)
    x0, y0, x1, y1 = xy
    lines = text.split("\n")
    h = sum(f.getbbox(s)[3] for s in lines) + 6 * (len(lines) - 1)
    y = (y0 + y1 - h) / 2
    for s in lines:
        w = f.getlength(s)
        d.text(((x0 + x1 - w) / 2, y), s, fill=(20, 20, 20), font=f)
        y += f.getbbox(s)[3] + 6


def arrow(d, a, b):
    d.line([a, b], fill=(60, 60, 60), width=3)
    x, y = b
    d.polygon([(x, y), (x - 12, y - 7), (x - 12, y + 7)], fill=(60, 60, 60))


def main():
    img = Image.new("RGB", (1200, 420), "white")
    d = ImageDraw.Draw(img)
    f, fs, fb = font(20), font(16), font(26)
    d.text((30, 18), "v2l: an image becomes words of a frozen LLM's own vocabulary", fill=(0, 0, 0), font=fb)
    # a stylised image: a grid of coloured cells
    for i in range(8):
        for j in range(8):
            c = (70 + 20 * i, 120 + 12 * j, 200 - 15 * i)
            d.rectangle([40 + 20 * j, 140 + 20 * i, 58 + 20 * j, 158 + 20 * i], fill=c)
    d.text((60, 310), "image", fill=(0, 0, 0), font=f)
    box(d, (260, 80, 500, 190), "frozen VL model\n(CLIP / ConSE)", (220, 235, 255), f)
    box(d, (260, 250, 500, 360), "CNN encoder +\nlocal quantizer", (255, 235, 210), f)
    box(d, (560, 80, 860, 190), "global tokens (K_g)\n'tabby', 'kitten', ...", (225, 250, 225), f)
    box(d, (560, 250, 860, 360), "16×16 local tokens\nfrom the LLM vocabulary", (225, 250, 225), f)
    llm_text = "frozen LLM\nin-context learning:\nclassify, caption,\nVQA, restore"
    box(d, (920, 150, 1170, 290), llm_text, (245, 225, 245), f)
    arrow(d, (210, 200), (255, 135))
    arrow(d, (210, 220), (255, 305))
    arrow(d, (500, 135), (555, 135))
    arrow(d, (500, 305), (555, 305))
    arrow(d, (860, 135), (915, 200))
    arrow(d, (860, 305), (915, 240))
    caption = "global codebook: LLM words + bigrams + trigrams, filtered by images;  local codebook: every LLM token"
    d.text((260, 380), caption, fill=(80, 80, 80), font=fs)
    OUT.parent.mkdir(exist_ok=True)
    img.save(OUT, optimize=True)
    print(OUT)


if __name__ == "__main__":
    main()
