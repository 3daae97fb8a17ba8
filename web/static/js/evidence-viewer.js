// The shared evidence viewer of the hearing room. The mediator or clerk presents an item; the
// server sends everyone in their (sub)room the same "presentation" state (item, page, playing,
// position) with a file address of their own (signaling/presentation.py). Images and PDFs show
// the same page for all (PDF pages drawn by the vendored pdf.js, loaded only when needed); audio
// and video play and pause together: the presenter's player reports play, pause and seeking,
// the others follow. Markup and translated texts: templates/evidence_stage.html.

const PDFJS = "/static/vendor/pdf.min.mjs";
const DRIFT_S = 1.0; // followers jump when they are further off than this

export function attachEvidenceViewer(socket) {
  const stage = document.getElementById("evidence-stage");
  if (!stage) return null;
  const texts = JSON.parse(stage.dataset.texts || "{}");
  const presenter = stage.dataset.staff === "true";
  const $ = (id) => document.getElementById(id);
  const title = $("evidence-stage-title");
  const pageLabel = $("evidence-stage-page");
  const body = $("evidence-stage-body");
  const prev = $("evidence-prev");
  const next = $("evidence-next");
  const stop = $("evidence-stop");
  const picker = $("present-picker");
  const select = $("present-select");
  const go = $("present-go");

  const fmt = (text, params = {}) =>
    String(text || "").replace(/%\((\w+)\)s/g, (_, key) => String(params[key] ?? ""));

  let shown = null; // the last state received
  let pdf = null; // { doc, number } of the loaded document
  let renderTask = null;
  let media = null; // the <audio>/<video> element
  let applying = false; // changing the player ourselves: do not report it back
  let room = null; // "admitted:<subroom>" when last asked

  const control = (change) => socket.emit("present_control", change);

  function clear() {
    if (renderTask) renderTask.cancel();
    renderTask = null;
    if (media) media.pause();
    media = null;
    pdf = null;
    body.replaceChildren();
    pageLabel.textContent = "";
  }

  function fallback(state) {
    const p = document.createElement("p");
    const a = document.createElement("a");
    a.href = state.url;
    a.target = "_blank";
    a.rel = "noopener";
    a.className = "button button-small";
    a.textContent = texts.open_file;
    p.append(texts.cannot_show, " ", a);
    body.replaceChildren(p);
  }

  async function showPdfPage(state) {
    const pdfjs = await import(PDFJS);
    pdfjs.GlobalWorkerOptions.workerSrc = "/static/vendor/pdf.worker.min.mjs";
    if (!pdf || pdf.number !== state.number) {
      const doc = await pdfjs.getDocument({
        url: state.url,
        isEvalSupported: false,
        cMapUrl: "/static/vendor/pdfjs/cmaps/",
        cMapPacked: true,
        standardFontDataUrl: "/static/vendor/pdfjs/standard_fonts/",
      }).promise;
      pdf = { doc, number: state.number };
      const canvas = document.createElement("canvas");
      canvas.setAttribute("aria-label", state.title);
      body.replaceChildren(canvas);
    }
    const canvas = body.querySelector("canvas");
    const number = Math.min(Math.max(1, state.page), pdf.doc.numPages);
    const page = await pdf.doc.getPage(number);
    const ratio = window.devicePixelRatio || 1;
    const natural = page.getViewport({ scale: 1 });
    const fit = Math.min(2, (body.clientWidth || 640) / natural.width);
    const viewport = page.getViewport({ scale: fit * ratio });
    if (renderTask) renderTask.cancel();
    canvas.width = Math.floor(viewport.width);
    canvas.height = Math.floor(viewport.height);
    canvas.style.width = `${Math.floor(viewport.width / ratio)}px`;
    renderTask = page.render({ canvas, canvasContext: canvas.getContext("2d"), viewport });
    try {
      await renderTask.promise;
    } catch (error) {
      if (error?.name !== "RenderingCancelledException") throw error;
    }
    stage.dataset.page = String(number);
    stage.dataset.pages = String(pdf.doc.numPages);
    pageLabel.textContent = fmt(texts.page, { page: number, pages: pdf.doc.numPages });
    if (prev) prev.disabled = number <= 1;
    if (next) next.disabled = number >= pdf.doc.numPages;
  }

  function follow(state) {
    if (!media) return;
    applying = true;
    try {
      if (Math.abs(media.currentTime - state.position) > DRIFT_S) media.currentTime = state.position;
      if (state.playing && media.paused) {
        media.play().catch(() => {
          // The browser wants a tap before playing sound.
          const tap = document.createElement("button");
          tap.type = "button";
          tap.className = "button button-primary";
          tap.textContent = texts.tap_to_play;
          tap.addEventListener("click", () => {
            tap.remove();
            media?.play();
          });
          body.append(tap);
        });
      } else if (!state.playing && !media.paused) {
        media.pause();
      }
    } finally {
      setTimeout(() => {
        applying = false;
      }, 0);
    }
  }

  function showMedia(state) {
    const el = document.createElement(state.kind === "video" ? "video" : "audio");
    el.src = state.url;
    el.preload = "auto";
    el.playsInline = true;
    el.controls = presenter; // the others follow the presenter's player
    if (presenter) {
      const report = () => {
        if (!applying) control({ playing: !el.paused, position: el.currentTime });
      };
      el.addEventListener("play", report);
      el.addEventListener("pause", report);
      el.addEventListener("seeked", report);
    }
    el.addEventListener("error", () => fallback(state));
    media = el;
    body.replaceChildren(el);
  }

  async function render(state) {
    const same = shown && state && shown.number === state.number && shown.kind === state.kind;
    shown = state;
    if (!state) {
      clear();
      stage.hidden = true;
      delete stage.dataset.number;
      return;
    }
    stage.hidden = false;
    stage.dataset.number = String(state.number);
    stage.dataset.kind = state.kind;
    title.textContent = fmt(texts.presented, { number: state.number, title: state.title, name: state.by });
    for (const button of [prev, next]) if (button) button.hidden = state.kind !== "pdf";
    if (!same) {
      clear();
      if (state.kind === "image") {
        const img = document.createElement("img");
        img.src = state.url;
        img.alt = state.title;
        img.addEventListener("error", () => fallback(state));
        body.replaceChildren(img);
      } else if (state.kind === "video" || state.kind === "audio") {
        showMedia(state);
      } else if (state.kind !== "pdf") {
        fallback(state);
      }
    }
    try {
      if (state.kind === "pdf") await showPdfPage(state);
      if (state.kind === "video" || state.kind === "audio") follow(state);
    } catch {
      fallback(state);
    }
  }

  socket.on("presentation", (state) => {
    render(state ?? null);
  });
  // Ask what my room is looking at whenever I (re)enter a room as an admitted participant.
  socket.on("sync", (view) => {
    const you = view?.you;
    const now = you?.state === "admitted" ? `admitted:${you.subroom}` : null;
    if (now && now !== room) socket.emit("present_query", {});
    if (now !== room && shown) render(null);
    room = now;
  });
  socket.on("disconnect", () => {
    room = null;
  });

  if (presenter) {
    prev?.addEventListener("click", () => shown && control({ page: Math.max(1, shown.page - 1) }));
    next?.addEventListener("click", () => shown && control({ page: shown.page + 1 }));
    stop?.addEventListener("click", () => socket.emit("present_stop", {}));
    picker?.addEventListener("toggle", () => {
      if (picker.open) socket.emit("present_list", {});
    });
    socket.on("presentable", ({ items }) => {
      select.replaceChildren();
      for (const item of items) {
        const option = document.createElement("option");
        option.value = String(item.number);
        option.textContent = fmt(texts.item, { number: item.number, title: item.title });
        select.append(option);
      }
      go.disabled = items.length === 0;
      if (!items.length) {
        const option = document.createElement("option");
        option.textContent = texts.none;
        select.append(option);
      }
    });
    go?.addEventListener("click", () => {
      const number = Number(select.value);
      if (number > 0) socket.emit("present", { number });
    });
  }
  return { render };
}
