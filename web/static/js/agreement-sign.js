// A signer's page: shows the issued PDF with pdf.js (fetched with the link token in a header,
// so it also works where a phone cannot show a PDF inline), then code → drawing → sign.
import * as pdfjs from "/static/vendor/pdf.min.mjs";
import { signaturePad } from "/static/js/agreement-pad.js";

pdfjs.GlobalWorkerOptions.workerSrc = "/static/vendor/pdf.worker.min.mjs";

const root = document.querySelector("[data-sign]");
const texts = JSON.parse(root.dataset.texts);
const api = `/api/v1/agreements/${root.dataset.agreement}`;
const headers = { "X-Signing-Token": root.dataset.token };
const csrf = root.dataset.csrf;
if (csrf) headers["X-CSRF-Token"] = csrf;

function format(text, values) {
  return text.replace(/%\((\w+)\)s/g, (_m, key) => values[key] ?? "");
}

function say(selector, message, ok = true) {
  const box = root.querySelector(selector);
  if (!box) return;
  box.hidden = !message;
  box.className = ok ? "alert alert-success" : "alert alert-error";
  box.textContent = message;
}

async function call(path, body) {
  const options = { method: "POST", headers: { ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(api + path, options);
  let data = {};
  try {
    data = await response.json();
  } catch {
    data = { error: { message: texts.error } };
  }
  return { ok: response.ok, data };
}

async function showDocument() {
  const pages = root.querySelector("[data-pages]");
  say("[data-doc-status]", texts.loading);
  const response = await fetch(`${api}/document`, { headers, credentials: "same-origin" });
  if (!response.ok) {
    say("[data-doc-status]", texts.error, false);
    return;
  }
  const bytes = await response.arrayBuffer();
  const download = root.querySelector("[data-download]");
  download.href = URL.createObjectURL(new Blob([bytes], { type: "application/pdf" }));
  download.hidden = false;
  const pdf = await pdfjs.getDocument({ data: new Uint8Array(bytes) }).promise;
  for (let n = 1; n <= pdf.numPages; n += 1) {
    const page = await pdf.getPage(n);
    const viewport = page.getViewport({ scale: 2 });
    const canvas = document.createElement("canvas");
    canvas.width = viewport.width;
    canvas.height = viewport.height;
    canvas.setAttribute("aria-label", format(texts.page_of, { page: n, pages: pdf.numPages }));
    await page.render({ canvasContext: canvas.getContext("2d"), viewport }).promise;
    pages.append(canvas);
  }
  say("[data-doc-status]", "");
  await call("/signing/view");
}

showDocument().catch(() => say("[data-doc-status]", texts.error, false));

const codeButton = root.querySelector("[data-send-code]");
if (codeButton) {
  codeButton.addEventListener("click", async () => {
    codeButton.disabled = true;
    const { ok, data } = await call("/signing/code");
    codeButton.disabled = false;
    say("[data-code-status]", ok ? data.message : data.error.message, ok);
    if (ok) root.querySelector("[data-code-form]").hidden = false;
  });
}

const codeForm = root.querySelector("[data-code-form]");
if (codeForm) {
  codeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { ok, data } = await call("/signing/code/verify", { code: codeForm.elements.code.value });
    say("[data-code-status]", ok ? texts.verified : data.error.message, ok);
    if (ok) {
      root.querySelector("[data-draw]").hidden = false;
      padReady();
    }
  });
}

let pad = null;
function padReady() {
  if (!pad) pad = signaturePad(root.querySelector("[data-draw] canvas"));
}

const clear = root.querySelector("[data-clear]");
if (clear) clear.addEventListener("click", () => pad && pad.clear());

const signButton = root.querySelector("[data-sign-button]");
if (signButton) {
  signButton.addEventListener("click", async () => {
    const png = pad ? pad.png() : "";
    const typedField = root.querySelector("[data-typed-name]");
    const typed = typedField ? typedField.value.trim() : "";
    if (!png && !typed) {
      say("[data-sign-status]", texts.empty, false);
      return;
    }
    signButton.disabled = true;
    say("[data-sign-status]", texts.signing);
    const body = png ? { drawing: png } : { typed_name: typed };
    const { ok, data } = await call("/signing/signature", body);
    if (ok) {
      say("[data-sign-status]", texts.signed);
      root.querySelector("[data-steps]").hidden = true;
    } else {
      signButton.disabled = false;
      say("[data-sign-status]", data.error.message, false);
    }
  });
}

const commentForm = root.querySelector("[data-comment-form]");
if (commentForm) {
  commentForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { ok, data } = await call("/comments", { text: commentForm.elements.text.value });
    say("[data-comment-status]", ok ? texts.comment_sent : data.error.message, ok);
    if (ok) commentForm.reset();
  });
}
