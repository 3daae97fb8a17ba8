// Staff agreement page: live preview of the draft as the mediator types (the server renders
// the same template the PDF uses), and the mediator's signature pad.
import { signaturePad } from "/static/js/agreement-pad.js";

const editor = document.querySelector("[data-agreement-editor]");
if (editor) {
  const preview = document.querySelector("[data-preview]");
  const csrf = editor.querySelector("input[name=csrf_token]").value;
  let timer = null;

  function terms() {
    const value = (name) => (editor.elements[name] ? editor.elements[name].value : "");
    return {
      facts: value("facts"),
      dispute: value("dispute"),
      responsibilities: value("responsibilities"),
      items: value("items").split("\n").filter((line) => line.trim()),
      performance_manner: value("performance_manner"),
      performance_place: value("performance_place"),
      performance_deadline: value("performance_deadline"),
      copies: parseInt(value("copies") || "0", 10) || 0,
      extra: value("extra"),
    };
  }

  function show(text) {
    preview.replaceChildren();
    let clause = 0;
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line) continue;
      let node;
      if (line.startsWith("## ")) {
        node = document.createElement("h4");
        node.textContent = line.slice(3);
      } else if (line.startsWith("# ")) {
        node = document.createElement("h3");
        node.textContent = line.slice(2);
      } else if (line.startsWith("= ")) {
        node = document.createElement("p");
        node.className = "centred";
        node.textContent = line.slice(2);
      } else if (line.startsWith("- ")) {
        clause += 1;
        node = document.createElement("p");
        node.textContent = `${clause}. ${line.slice(2)}`;
      } else {
        node = document.createElement("p");
        node.textContent = line;
      }
      // The template escaped the text for the PDF; show it as text again.
      node.textContent = new DOMParser().parseFromString(node.textContent, "text/html").documentElement.textContent;
      preview.append(node);
    }
  }

  async function refresh() {
    const response = await fetch(editor.dataset.previewUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(terms()),
      credentials: "same-origin",
    });
    const data = await response.json();
    if (response.ok) {
      show(data.text);
    } else {
      preview.dataset.error = data.error.message;
    }
  }

  editor.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  });
  refresh();
}

for (const form of document.querySelectorAll("[data-sign-form]")) {
  const pad = signaturePad(form.querySelector("canvas"));
  form.querySelector("[data-clear]").addEventListener("click", () => pad.clear());
  form.addEventListener("submit", (event) => {
    const png = pad.png();
    if (!png) {
      event.preventDefault();
      form.querySelector("[data-pad-error]").hidden = false;
      return;
    }
    form.elements.drawing.value = png;
  });
}

// The signed copy's scan goes straight to the API (streamed; a phone photo is larger than an
// ordinary form may be). Without this script the form posts as usual.
for (const form of document.querySelectorAll("[data-postal-form]")) {
  form.addEventListener("submit", async (event) => {
    const file = form.elements.scan.files[0];
    if (!event.submitter || event.submitter.value !== "return" || !file) return;
    event.preventDefault();
    const query = new URLSearchParams({
      carrier: form.elements.carrier.value,
      tracking_number: form.elements.tracking_number.value,
      returned_on: form.elements.date.value,
      filename: file.name,
    });
    const response = await fetch(`${form.dataset.returnUrl}?${query}`, {
      method: "POST",
      headers: {
        "Content-Type": file.type || "application/octet-stream",
        "X-CSRF-Token": form.elements.csrf_token.value,
      },
      body: file,
      credentials: "same-origin",
    });
    if (response.ok) {
      window.location.reload();
      return;
    }
    const box = form.querySelector("[data-postal-error]");
    try {
      box.textContent = (await response.json()).error.message;
    } catch {
      box.textContent = response.statusText;
    }
    box.hidden = false;
  });
}
