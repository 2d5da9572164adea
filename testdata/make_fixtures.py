"""Regenerates the synthetic test images in this folder (needs Pillow).

The pictures are drawn here (a cartoon face), not photographs of anyone:
test fixtures must never be real biometric data.
"""
from PIL import Image, ImageDraw


def face(w, h):
    im = Image.new("RGB", (w, h), (200, 170, 150))
    d = ImageDraw.Draw(im)
    cx, cy = w // 2, h // 2
    r = min(w, h) // 3
    d.ellipse([cx - r, cy - int(r * 1.25), cx + r, cy + int(r * 1.25)],
              fill=(230, 190, 160), outline=(90, 60, 40), width=3)
    for ex in (cx - r // 2.5, cx + r // 2.5):
        d.ellipse([ex - r // 8, cy - r // 3 - r // 10, ex + r // 8, cy - r // 3 + r // 10],
                  fill=(40, 30, 30))
    d.arc([cx - r // 2, cy + r // 5, cx + r // 2, cy + r // 1.6], 20, 160,
          fill=(120, 40, 40), width=4)
    return im


face(320, 240).save("face-320x240.jpg", quality=85)
face(640, 480).save("face-640x480.jpg", quality=85)
face(320, 240).save("face-320x240.png")
face(320, 240).save("face-320x240.webp", quality=80)
face(320, 240).save("face-320x240-lossless.webp", lossless=True)
alpha = face(320, 240).convert("RGBA")
alpha.putpixel((0, 0), (0, 0, 0, 0))  # one transparent pixel forces the extended (VP8X) layout
alpha.save("face-320x240-alpha.webp", quality=80)
face(256, 256).save("face-256x256.gif")
face(100, 100).save("small-100x100.jpg")
face(9000, 200).save("wide-9000x200.png", optimize=True)
with open("face-320x240.jpg", "rb") as f:
    open("truncated.jpg", "wb").write(f.read()[:20])
open("not-image.txt", "w").write("hello, this is plain text and not an image\n")
open("not-image.pdf", "w").write(
    "%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
