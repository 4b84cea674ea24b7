"""An ordinary OpenAI Images script: nothing in it knows about pixelmill except the two settings
every OpenAI client has. Run it against `make run`:

    OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=pm_... python examples/openai_images.py
"""

from __future__ import annotations

import base64
import io

from openai import OpenAI
from PIL import Image

client = OpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY

# Generate: a URL, as dall-e models answer.
result = client.images.generate(model="dall-e-3", prompt="a red bicycle leaning on a wall", size="1024x1024")
print("generate:", result.data[0].url)
print("  revised_prompt:", result.data[0].revised_prompt)

# Generate: base64, as gpt-image models answer; two images.
result = client.images.generate(model="gpt-image-1", prompt="a lemon tree in a pot", n=2, size="1536x1024")
for item in result.data:
    picture = Image.open(io.BytesIO(base64.b64decode(item.b64_json or "")))
    print("generate b64:", picture.format, picture.size)

# Edit with a mask: repaint the transparent middle of a picture.
source = io.BytesIO()
Image.new("RGB", (512, 512), (40, 90, 160)).save(source, format="PNG")
mask = Image.new("RGBA", (512, 512), (0, 0, 0, 255))
mask.paste((0, 0, 0, 0), (128, 128, 384, 384))
mask_png = io.BytesIO()
mask.save(mask_png, format="PNG")
edit = client.images.edit(image=("room.png", source.getvalue(), "image/png"), mask=("mask.png", mask_png.getvalue(), "image/png"),
                          prompt="a green sofa", response_format="url")
print("edit:", edit.data[0].url)

# Stream: partial images from the engine's previews, then the final image.
for event in client.images.generate(model="gpt-image-1", prompt="a lantern at night", stream=True, partial_images=2):
    size = len(base64.b64decode(event.b64_json))
    print("stream:", event.type, f"{size} bytes")
