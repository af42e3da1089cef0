// Big photos are shrunk in the browser before they are uploaded.
//
// Why: Pixtral sees at most 1024 px on the longest side, yet a phone photo is
// 12 MP and 3-6 MB. Sending it whole costs the person upload time and costs the
// app's two cores most of its work per photo (reading the multipart upload,
// copying it into history, decoding it): with a team uploading at once, that
// work queues and everyone's answer starts later (docs/benchmarks.md, "Load").
// Shrunk here to 2048 px — twice what the model sees, so the app still makes
// the final resize and its own format choice — a photo is ~10x smaller.
//
// Only JPEG and WebP photos larger than 2048 px are touched. PNGs are left
// whole (screenshots: resampling here would blur the text the app keeps
// crisp), and so is whatever this browser cannot decode (HEIC, a damaged or
// disguised file): the app checks and refuses those itself, by their content.
// The photo is drawn upright (EXIF orientation applied), and its metadata,
// location included, is not uploaded.
//
// How: Chainlit 2.12 uploads each attachment with XMLHttpRequest, a FormData
// with a "file" field, POSTed to /project/file. We wrap that one request; if
// anything goes wrong the original file goes as it would have.
(() => {
  "use strict";

  const MAX_SIDE = 2048;
  const QUALITY = { "image/jpeg": 0.92, "image/webp": 0.92 };
  const UPLOAD = /\/project\/file(\?|$)/;

  async function shrink(file) {
    if (!(file instanceof File) || !(file.type in QUALITY)) return null;
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch {
      return null; // not decodable here: the app will say what is wrong with it
    }
    try {
      const scale = MAX_SIDE / Math.max(bitmap.width, bitmap.height);
      if (scale >= 1) return null;
      const width = Math.max(1, Math.round(bitmap.width * scale));
      const height = Math.max(1, Math.round(bitmap.height * scale));
      const canvas = new OffscreenCanvas(width, height);
      const context = canvas.getContext("2d");
      context.imageSmoothingEnabled = true;
      context.imageSmoothingQuality = "high";
      context.drawImage(bitmap, 0, 0, width, height);
      const blob = await canvas.convertToBlob({ type: file.type, quality: QUALITY[file.type] });
      if (blob.type !== file.type || blob.size >= file.size) return null;
      return new File([blob], file.name, { type: file.type, lastModified: file.lastModified });
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
    if (!(file instanceof File) || !(file.type in QUALITY)) return send.call(this, body);
    shrink(file).then((smaller) => {
      if (this.shrinkAborted || this.readyState !== XMLHttpRequest.OPENED) return;
      send.call(this, smaller ? withFile(body, smaller) : body);
    });
  };
})();
