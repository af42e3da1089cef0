// Big photos are shrunk in the browser before they are uploaded.
//
// Why: Pixtral sees at most 1024 px on the longest side, yet a phone photo is
// 12 MP and 3-6 MB. Sending it whole costs the person upload time and costs the
// app's two cores most of its work per photo (reading the multipart upload,
// copying it into history, decoding it): with a team uploading at once, that
// work queues and everyone's answer starts later (docs/benchmarks.md, "Load").
// Shrunk here to 2048 px — twice what the model sees, so the app still makes
// the final resize and its own format choice — a 12 MP photo is 3-5x smaller.
//
// Only photos larger than 2048 px are touched: JPEG and WebP, and PNGs that
// are photos (more than a byte a pixel, e.g. a photo copied and pasted; they
// become JPEG, on white where transparent, as the app would flatten them), and
// HEIC where this browser decodes it (Safari does; Chromium and Firefox refuse
// it in createImageBitmap, so it goes whole, as before): it becomes a JPEG.
// Not tested here: no WebKit runs on the build machine.
// Screenshots and drawings are left whole, since resampling here would blur
// the text the app keeps crisp, and so is whatever this browser cannot decode
// (HEIC, a damaged or disguised file): the app checks and refuses those itself,
// by their content. The photo is drawn upright (EXIF orientation applied), and
// its metadata, location included, is not uploaded.
//
// How: Chainlit 2.12 uploads each attachment with XMLHttpRequest, a FormData
// with a "file" field, POSTed to /project/file. We wrap that one request; if
// anything goes wrong the original file goes as it would have.
(() => {
  "use strict";

  const MAX_SIDE = 2048;
  const QUALITY = 0.92;
  const PHOTO_PNG_BYTES_PER_PIXEL = 1.0; // screenshots: ~0.05-0.5; photos: ~1.5-2
  const TYPES = ["image/jpeg", "image/webp", "image/png", "image/heic", "image/heif"];
  const HEIF = /\.(heic|heif)$/i;
  const UPLOAD = /\/project\/file(\?|$)/;

  // What the shrunk photo is saved as, or null to upload the file whole.
  function output(file, width, height) {
    if (file.type === "image/heic" || file.type === "image/heif") {
      return { type: "image/jpeg", name: file.name.replace(HEIF, "") + ".jpg" };
    }
    if (file.type !== "image/png") return { type: file.type, name: file.name };
    if (file.size / (width * height) < PHOTO_PNG_BYTES_PER_PIXEL) return null;
    return { type: "image/jpeg", name: file.name.replace(/\.png$/i, "") + ".jpg" };
  }

  // A PNG's size from its header, to leave screenshots alone without decoding them.
  async function pngSize(file) {
    const head = new DataView(await file.slice(0, 24).arrayBuffer());
    if (head.byteLength < 24 || head.getUint32(12) !== 0x49484452) return null; // "IHDR"
    return [head.getUint32(16), head.getUint32(20)];
  }

  async function shrink(file) {
    if (!(file instanceof File) || !TYPES.includes(file.type)) return null;
    if (file.type === "image/png") {
      const size = await pngSize(file).catch(() => null);
      if (!size || !output(file, ...size)) return null;
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch {
      return null; // not decodable here: the app will say what is wrong with it
    }
    try {
      const scale = MAX_SIDE / Math.max(bitmap.width, bitmap.height);
      const saved = output(file, bitmap.width, bitmap.height);
      if (scale >= 1 || !saved) return null;
      const width = Math.max(1, Math.round(bitmap.width * scale));
      const height = Math.max(1, Math.round(bitmap.height * scale));
      const canvas = new OffscreenCanvas(width, height);
      const context = canvas.getContext("2d");
      context.fillStyle = "#fff"; // under transparent parts, which JPEG cannot keep
      context.fillRect(0, 0, width, height);
      context.imageSmoothingEnabled = true;
      context.imageSmoothingQuality = "high";
      context.drawImage(bitmap, 0, 0, width, height);
      const blob = await canvas.convertToBlob({ type: saved.type, quality: QUALITY });
      if (blob.type !== saved.type || blob.size >= file.size) return null;
      return new File([blob], saved.name, { type: saved.type, lastModified: file.lastModified });
    } catch {
      return null;
    } finally {
      bitmap.close();
    }
  }

  function withFile(form, file) {
    const copy = new FormData();
    for (const [name, value] of form.entries()) {
      if (name === "file") copy.append(name, file);
      else copy.append(name, value);
    }
    return copy;
  }

  const open = XMLHttpRequest.prototype.open;
  const send = XMLHttpRequest.prototype.send;
  const abort = XMLHttpRequest.prototype.abort;

  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    this.shrinkPhoto = String(method).toUpperCase() === "POST" && UPLOAD.test(String(url));
    this.shrinkAborted = false;
    return open.call(this, method, url, ...rest);
  };

  XMLHttpRequest.prototype.abort = function () {
    this.shrinkAborted = true; // an attachment removed while it was being shrunk
    return abort.call(this);
  };

  XMLHttpRequest.prototype.send = function (body) {
    const file = this.shrinkPhoto && body instanceof FormData ? body.get("file") : null;
    if (!(file instanceof File) || !TYPES.includes(file.type)) return send.call(this, body);
    shrink(file).then((smaller) => {
      if (this.shrinkAborted || this.readyState !== XMLHttpRequest.OPENED) return;
      send.call(this, smaller ? withFile(body, smaller) : body);
    });
  };
})();
