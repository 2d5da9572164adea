"""Regenerates the synthetic test images in this folder (needs Pillow).

The pictures are drawn here (a cartoon face), not photographs of anyone:
test fixtures must never be real biometric data.
"""
import struct

from PIL import Image, ImageCms, ImageDraw, PngImagePlugin


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


# Metadata fixtures for lossless stripping (crates/livegate-protect/tests/strip.rs):
# the same drawn face carrying the metadata a phone or an editor would add.
# Every value is made up: the coordinates, names and serial numbers describe
# nobody and nowhere.
def camera_exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "Fixture Maker"  # Make
    exif[0x0110] = "Fixture Cam 1"  # Model
    exif[0x0132] = "2001:02:03 04:05:06"  # DateTime
    exif.get_ifd(0x8769)[0xA431] = "SN-FIXTURE-0001"  # Exif IFD: BodySerialNumber
    gps = exif.get_ifd(0x8825)  # GPS IFD
    gps[1], gps[2] = "N", (12.0, 34.0, 56.0)  # GPSLatitudeRef, GPSLatitude
    gps[3], gps[4] = "E", (1.0, 2.0, 3.0)  # GPSLongitudeRef, GPSLongitude
    return exif


def segment(marker, payload):
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
       b'exif:GPSLatitude="12,34.9N" exif:GPSLongitude="1,2.05E"/>'
       b'</rdf:RDF></x:xmpmeta>')
SRGB = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
SRGB[24:36] = struct.pack(">6H", 2001, 2, 3, 4, 5, 6)  # a fixed creation date: reproducible
SRGB = bytes(SRGB)
# Photoshop IRB with one IPTC caption, and a vendor segment (APP11).
IPTC = b"\x1c\x02\x78\x00\x0fFixture caption"
IRB = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00" + len(IPTC).to_bytes(4, "big") + IPTC + b"\x00"
VENDOR = segment(0xED, IRB) + segment(0xEB, b"FIXTURE-VENDOR\x00camera-private-data")

# Portrait phone photo: orientation 6, GPS, serial, XMP, comment, ICC, IPTC, APP11.
face(320, 240).save("face-320x240-exif-gps.jpg", quality=85, exif=camera_exif(6),
                    xmp=XMP, comment=b"fixture comment", icc_profile=SRGB, extra=VENDOR)
# CMYK (libjpeg adds the Adobe APP14 segment) with upright EXIF and a comment.
face(320, 240).convert("CMYK").save("face-320x240-cmyk-adobe.jpg", quality=85,
                                    exif=camera_exif(1), comment=b"fixture comment")
text = PngImagePlugin.PngInfo()
text.add_text("Author", "Fixture Author")
text.add_text("Comment", "fixture comment " * 8, zip=True)  # zTXt
text.add_itxt("XML:com.adobe.xmp", XMP.decode())
text.add(b"tIME", b"\x07\xd1\x02\x03\x04\x05\x06")
text.add(b"prVW", b"vendor-private-preview")  # an unknown ancillary chunk
face(320, 240).save("face-320x240-meta.png", pnginfo=text, exif=camera_exif(6),
                    icc_profile=SRGB, dpi=(72, 72))
face(320, 240).save("face-320x240-meta.webp", quality=80, exif=camera_exif(6), xmp=XMP,
                    icc_profile=SRGB)
face(320, 240).save("face-320x240-lossless-meta.webp", lossless=True, exif=camera_exif(1),
                    xmp=XMP)
# Progressive: several scans with tables between them, then EXIF to remove.
face(100, 100).save("small-100x100-progressive-exif.jpg", progressive=True, exif=camera_exif(3))


# Billed garbage (issue 20): 253 bytes that pass the header check — a progressive
# JPEG claiming 8192x6103 — whose first scan is cut after 16 bytes: SOI, JFIF,
# the two quantization tables and the first scan's 16 bytes of the progressive
# fixture above, its frame header with the big size, and two small DC tables.
def truncated_progressive():
    src = open("small-100x100-progressive-exif.jpg", "rb").read()
    out, pos, dc_table = bytearray(src[:2]), 2, 0
    while True:
        marker, length = src[pos + 1], int.from_bytes(src[pos + 2:pos + 4], "big")
        seg = bytearray(src[pos:pos + 2 + length])
        pos += 2 + length
        if marker == 0xE1:  # the EXIF
            continue
        if marker == 0xC2:
            seg[5:9] = (6103).to_bytes(2, "big") + (8192).to_bytes(2, "big")
        if marker == 0xC4:  # DC table 0, then 1: one 1-bit and one 2-bit code
            seg = segment(0xC4, bytes([dc_table, 1, 1] + [0] * 14 + [0, 1]))
            dc_table += 1
        out += seg
        if marker == 0xDA:
            return bytes(out + src[pos:pos + 16])


open("truncated-progressive-8192x6103.jpg", "wb").write(truncated_progressive())
