// Evidence upload from the browser over tus 1.0 (core + creation + termination), the protocol
// the server speaks at /api/v1/cases/{id}/evidence/uploads: POST creates the upload, PATCH sends
// the bytes chunk by chunk (XMLHttpRequest, for its upload progress), HEAD asks where the upload
// stands after a dropped connection. The upload's address is kept in localStorage under the
// file's name, size and date, so pressing "Upload" again (even after a reload) continues it.
// Texts come translated from the page (data-texts).

const TUS = { "Tus-Resumable": "1.0.0" };
const CHUNK_BYTES = 8 * 1024 * 1024;
const MAX_RETRIES = 8;

const form = document.getElementById("upload-form");
if (form) {
  const texts = JSON.parse(form.dataset.texts || "{}");
  const endpoint = form.dataset.endpoint;
  const token = form.dataset.token || "";
  const csrf = form.dataset.csrf || "";
  const maxBytes = Number(form.dataset.maxBytes || "0");
  const progressBox = document.getElementById("upload-progress");
  const bar = document.getElementById("upload-bar");
  const statusLine = document.getElementById("upload-status");
  const startButton = document.getElementById("upload-start");
  const cancelButton = document.getElementById("upload-cancel");
  let current = null; // { xhr, url, cancelled }

  const fmt = (text, params = {}) =>
    String(text || "")
      .replace(/%\((\w+)\)s/g, (_, key) => String(params[key] ?? ""))
      .replace(/%%/g, "%");

  const say = (text, kind = "") => {
    progressBox.hidden = false;
    statusLine.textContent = text;
    statusLine.className = "upload-status" + (kind ? ` upload-${kind}` : "");
  };

  const human = (n) => {
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
    if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
    return `${(n / 1024 / 1024 / 1024).toFixed(2)} GB`;
  };

  const headers = (extra = {}) => {
    const h = { ...TUS, ...extra };
    if (token) h["X-Hearing-Token"] = token;
    if (csrf) h["X-CSRF-Token"] = csrf;
    return h;
  };

  const b64 = (value) => {
    let binary = "";
    for (const byte of new TextEncoder().encode(value)) binary += String.fromCharCode(byte);
    return btoa(binary);
  };

  const errorMessage = async (response) => {
    try {
      const body = await response.json();
      return body.error.message;
    } catch {
      return `HTTP ${response.status}`;
    }
  };

  class UploadError extends Error {
    constructor(message, retryable) {
      super(message);
      this.retryable = retryable;
    }
  }

  const retryableStatus = (status) => status === 0 || status === 409 || status === 423 || status >= 500;

  async function create(file, meta) {
    const metadata = Object.entries({ filename: file.name, ...meta })
      .map(([k, v]) => `${k} ${b64(v)}`)
      .join(",");
    const response = await fetch(endpoint, {
      method: "POST",
      headers: headers({ "Upload-Length": String(file.size), "Upload-Metadata": metadata }),
      credentials: "same-origin",
    });
    if (response.status !== 201) throw new UploadError(await errorMessage(response), false);
    return new URL(response.headers.get("Location"), location.href).pathname;
  }

  async function where(url) {
    const response = await fetch(url, { method: "HEAD", headers: headers(), cache: "no-store" });
    if (response.status === 200) return Number(response.headers.get("Upload-Offset"));
    if (response.status === 404 || response.status === 403) return null; // gone: start again
    throw new UploadError(`HTTP ${response.status}`, retryableStatus(response.status));
  }

  function patch(url, offset, blob, total) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      current.xhr = xhr;
      xhr.open("PATCH", url);
      for (const [k, v] of Object.entries(headers({ "Upload-Offset": String(offset) }))) {
        xhr.setRequestHeader(k, v);
      }
      xhr.setRequestHeader("Content-Type", "application/offset+octet-stream");
      xhr.upload.onprogress = (event) => show(offset + event.loaded, total);
      xhr.onload = () => {
        if (xhr.status === 204) {
          resolve({
            offset: Number(xhr.getResponseHeader("Upload-Offset")),
            number: xhr.getResponseHeader("Evidence-Item-Number"),
          });
          return;
        }
        let message = `HTTP ${xhr.status}`;
        try {
          message = JSON.parse(xhr.responseText).error.message;
        } catch {
          /* not JSON */
        }
        reject(new UploadError(message, retryableStatus(xhr.status)));
      };
      xhr.onerror = () => reject(new UploadError("network", true));
      xhr.onabort = () => reject(new UploadError("aborted", false));
      xhr.send(blob);
    });
  }

  function show(done, total) {
    const percent = total ? Math.floor((done / total) * 100) : 100;
    bar.value = percent;
    say(fmt(texts.progress, { done: human(done), total: human(total), percent }));
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function send(file, meta) {
    const key = `yuntiao-upload:${endpoint}:${file.name}:${file.size}:${file.lastModified}`;
    let url = localStorage.getItem(key);
    let offset = null;
    if (url) {
      offset = await where(url).catch(() => null);
      if (offset === null) url = null;
      else say(fmt(texts.resuming, { done: human(offset) }));
    }
    if (!url) {
      say(texts.starting);
      url = await create(file, meta);
      offset = 0;
      localStorage.setItem(key, url);
    }
    current.url = url;
    let failures = 0;
    let number = null;
    while (offset < file.size || (file.size === 0 && number === null)) {
      if (current.cancelled) throw new UploadError(texts.cancelled, false);
      const end = Math.min(offset + CHUNK_BYTES, file.size);
      try {
        const result = await patch(url, offset, file.slice(offset, end), file.size);
        offset = result.offset;
        number = result.number || number;
        failures = 0;
        if (file.size === 0) break;
      } catch (error) {
        if (current.cancelled) throw new UploadError(texts.cancelled, false);
        if (!error.retryable) throw error;
        failures += 1;
        if (failures > MAX_RETRIES) throw new UploadError(texts.gave_up, false);
        say(texts.retrying, "warn");
        await sleep(Math.min(500 * 2 ** (failures - 1), 15000));
        const at = await where(url).catch((e) => (e.retryable ? undefined : null));
        if (at === null) {
          localStorage.removeItem(key);
          throw new UploadError(texts.gave_up, false);
        }
        if (at !== undefined) offset = at;
      }
    }
    localStorage.removeItem(key);
    return number;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (current) return;
    const file = form.elements.file.files[0];
    const meta = {
      title: form.elements.title.value.trim(),
      category: form.elements.category.value,
      purpose: form.elements.purpose.value.trim(),
    };
    const missing = !file
      ? texts.choose_file
      : !meta.title
        ? texts.title_required
        : !meta.category
          ? texts.category_required
          : !meta.purpose
            ? texts.purpose_required
            : "";
    if (missing) {
      say(missing, "error");
      return;
    }
    current = { xhr: null, url: null, cancelled: false };
    startButton.disabled = true;
    cancelButton.hidden = false;
    bar.value = 0;
    try {
      if (maxBytes && file.size > maxBytes) throw new UploadError(`${human(file.size)} > ${human(maxBytes)}`, false);
      const number = await send(file, meta);
      bar.value = 100;
      say(fmt(texts.done, { number }), "done");
      form.dataset.done = String(number);
      setTimeout(() => {
        location.assign(`${location.pathname}?done=uploaded#item-${number}`);
      }, 800);
    } catch (error) {
      say(error.message === texts.cancelled || error.message === texts.gave_up ? error.message : fmt(texts.failed, { message: error.message }), "error");
    } finally {
      current = null;
      startButton.disabled = false;
      cancelButton.hidden = true;
    }
  });

  cancelButton.addEventListener("click", async () => {
    if (!current) return;
    current.cancelled = true;
    const url = current.url;
    if (current.xhr) current.xhr.abort();
    if (url) {
      await fetch(url, { method: "DELETE", headers: headers() }).catch(() => {});
      for (const key of Object.keys(localStorage)) {
        if (key.startsWith("yuntiao-upload:") && localStorage.getItem(key) === url) localStorage.removeItem(key);
      }
    }
  });
}
