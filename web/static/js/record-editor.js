// Hearing record and case notes: every element with data-record-doc on the page becomes a live
// document (record-sync.js). Editors get a plain textarea bound to the shared Y.Text with a few
// markdown-style buttons (heading, list, bold, speaker labels, time); readers get the same text
// rendered, read-only, updating live. User text is only ever set with textContent.
//
// Why a textarea and not a rich-text framework: the record is prose with speaker labels; a
// textarea works with every phone keyboard and Chinese input method, and markdown-style marks
// ("## ", "- ", "**") stay readable in the frozen PDF. The binding diffs the textarea against
// what it last showed and turns the difference into Y.Text operations (UTF-16 positions, as
// Yjs and the textarea both count); remote changes move the caret through the change's delta.
// While an input method is composing, remote changes are held back and applied right after.
import { Y } from "/static/vendor/yjs-bundle.mjs";
import { NotesConnection } from "./record-sync.js";

const isHigh = (code) => code >= 0xd800 && code <= 0xdbff;
const isLow = (code) => code >= 0xdc00 && code <= 0xdfff;

/** Where position `index` ends up after a Yjs text delta (insertions before it push it on). */
export function mapIndex(index, delta) {
  let pos = 0;
  for (const op of delta) {
    if (pos > index) break;
    if (op.retain !== undefined) {
      pos += op.retain;
    } else if (op.insert !== undefined) {
      const n = typeof op.insert === "string" ? op.insert.length : 1;
      if (pos < index) index += n;
      pos += n;
    } else if (op.delete !== undefined && pos < index) {
      index -= Math.min(op.delete, index - pos);
    }
  }
  return index;
}

/** The single changed range between two strings, never splitting a surrogate pair (emoji). */
export function diff(before, after) {
  let start = 0;
  const shortest = Math.min(before.length, after.length);
  while (start < shortest && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  if (start > 0 && isHigh(before.charCodeAt(start - 1))) start--;
  let endBefore = before.length;
  let endAfter = after.length;
  while (endBefore > start && endAfter > start && before.charCodeAt(endBefore - 1) === after.charCodeAt(endAfter - 1)) {
    endBefore--;
    endAfter--;
  }
  if (endBefore < before.length && isLow(before.charCodeAt(endBefore))) {
    endBefore++;
    endAfter++;
  }
  return { index: start, remove: endBefore - start, insert: after.slice(start, endAfter) };
}

export class TextareaBinding {
  constructor(ytext, textarea) {
    this.ytext = ytext;
    this.el = textarea;
    this.shown = ytext.toString();
    this.el.value = this.shown;
    this.composing = false;
    this.held = []; // remote deltas that arrived while composing
    this.el.addEventListener("compositionstart", () => {
      this.composing = true;
    });
    this.el.addEventListener("compositionend", () => {
      this.composing = false;
      this.commit();
    });
    this.el.addEventListener("input", (event) => {
      if (!this.composing && !event.isComposing) this.commit();
    });
    // Undo and redo take back only this person's own typing (Y.UndoManager), never another
    // editor's; the browser's own undo history is lost whenever a remote change arrives.
    this.undo = new Y.UndoManager(ytext, { trackedOrigins: new Set([this]), captureTimeout: 600 });
    this.el.addEventListener("keydown", (event) => {
      const mod = event.ctrlKey || event.metaKey;
      if (!mod || this.composing) return;
      const key = event.key.toLowerCase();
      if (key === "z" && !event.shiftKey) {
        event.preventDefault();
        this.undo.undo();
      } else if (key === "y" || (key === "z" && event.shiftKey)) {
        event.preventDefault();
        this.undo.redo();
      }
    });
    this.el.addEventListener("beforeinput", (event) => {
      if (event.inputType === "historyUndo" || event.inputType === "historyRedo") {
        event.preventDefault();
        if (event.inputType === "historyUndo") this.undo.undo();
        else this.undo.redo();
      }
    });
    ytext.observe((event, transaction) => {
      if (transaction.origin === this) return;
      if (this.composing) {
        this.held.push(event.delta);
        return;
      }
      this.#render(event.delta);
    });
  }

  /** Turn what the user changed in the textarea into one Yjs transaction. */
  commit() {
    const value = this.el.value;
    const change = diff(this.shown, value);
    let from = change.index;
    let to = change.index + change.remove;
    for (const delta of this.held) {
      from = mapIndex(from, delta);
      to = Math.max(from, mapIndex(to, delta));
    }
    const hadHeld = this.held.length > 0;
    this.held = [];
    if (to > from || change.insert) {
      this.ytext.doc.transact(() => {
        if (to > from) this.ytext.delete(from, to - from);
        if (change.insert) this.ytext.insert(from, change.insert);
      }, this);
    }
    const full = this.ytext.toString();
    if (hadHeld || full !== value) {
      const caret = from + change.insert.length;
      this.el.value = full;
      this.el.setSelectionRange(caret, caret);
    }
    this.shown = full;
  }

  #render(delta) {
    const focused = document.activeElement === this.el;
    const start = mapIndex(this.el.selectionStart, delta);
    const end = mapIndex(this.el.selectionEnd, delta);
    const scroll = this.el.scrollTop;
    this.shown = this.ytext.toString();
    this.el.value = this.shown;
    this.el.scrollTop = scroll;
    if (focused) this.el.setSelectionRange(start, end);
  }

  /** Replace the selection (or insert at the caret) through the same path as typing. */
  edit(transform) {
    const el = this.el;
    const result = transform(el.value, el.selectionStart, el.selectionEnd);
    el.value = result.value;
    el.setSelectionRange(result.start, result.end);
    this.commit();
    el.focus();
  }
}

// ---- formatting (markdown-style marks, also understood by the PDF) -------------------------

function lineStart(value, index) {
  return value.lastIndexOf("\n", index - 1) + 1;
}

function toggleLinePrefix(prefix) {
  return (value, start, end) => {
    const from = lineStart(value, start);
    const lines = value.slice(from, end).split("\n");
    const all = lines.every((line) => line.startsWith(prefix));
    const changed = lines.map((line) => (all ? line.slice(prefix.length) : prefix + line.replace(/^(## |- )/, "")));
    const middle = changed.join("\n");
    const after = value.slice(from + lines.join("\n").length);
    const newValue = value.slice(0, from) + middle + after;
    const caret = from + middle.length;
    return { value: newValue, start: caret, end: caret };
  };
}

function wrapBold(value, start, end) {
  const selected = value.slice(start, end);
  const newValue = `${value.slice(0, start)}**${selected}**${value.slice(end)}`;
  return selected
    ? { value: newValue, start: start + 2, end: end + 2 }
    : { value: newValue, start: start + 2, end: start + 2 };
}

function insertOnNewLine(text) {
  return (value, start, end) => {
    const needsBreak = start > 0 && value[start - 1] !== "\n";
    const piece = (needsBreak ? "\n" : "") + text;
    const caret = start + piece.length;
    return { value: value.slice(0, start) + piece + value.slice(end), start: caret, end: caret };
  };
}

function insertHere(text) {
  return (value, start, end) => {
    const caret = start + text.length;
    return { value: value.slice(0, start) + text + value.slice(end), start: caret, end: caret };
  };
}

function clock() {
  const now = new Date();
  return `[${String(now.getHours()).padStart(2, "0")}:${String(now.getMinutes()).padStart(2, "0")}] `;
}

function action(name, speaker, texts) {
  switch (name) {
    case "heading":
      return toggleLinePrefix("## ");
    case "list":
      return toggleLinePrefix("- ");
    case "bold":
      return wrapBold;
    case "speaker":
      return insertOnNewLine((texts.speaker_format || "**%(speaker)s：** ").replace("%(speaker)s", speaker));
    case "time":
      return insertHere(clock());
    default:
      return null;
  }
}

// ---- read-only rendering ------------------------------------------------------------------------

function inline(element, text) {
  const parts = text.split(/\*\*(.+?)\*\*/);
  parts.forEach((part, i) => {
    if (!part) return;
    if (i % 2 === 1) {
      const strong = document.createElement("strong");
      strong.textContent = part;
      element.append(strong);
    } else {
      element.append(document.createTextNode(part));
    }
  });
}

export function renderInto(container, text) {
  const nodes = [];
  let list = null;
  for (const line of text.split("\n")) {
    if (/^#{1,3} /.test(line)) {
      const heading = document.createElement("h3");
      inline(heading, line.replace(/^#{1,3} /, ""));
      nodes.push(heading);
      list = null;
    } else if (line.startsWith("- ")) {
      if (!list) {
        list = document.createElement("ul");
        nodes.push(list);
      }
      const item = document.createElement("li");
      inline(item, line.slice(2));
      list.append(item);
    } else if (line.trim()) {
      const paragraph = document.createElement("p");
      inline(paragraph, line);
      nodes.push(paragraph);
      list = null;
    } else {
      list = null;
    }
  }
  container.replaceChildren(...nodes);
}

// ---- mounting -----------------------------------------------------------------------------------

function readTexts(element) {
  try {
    return JSON.parse(element.dataset.texts || "{}");
  } catch {
    return {};
  }
}

function mount(connection, root) {
  const texts = readTexts(root);
  const key = root.dataset.recordDoc;
  const area = root.querySelector(".record-text");
  const view = root.querySelector(".record-view");
  const toolbar = root.querySelector(".record-toolbar");
  const status = root.querySelector(".record-status");
  const empty = root.querySelector(".record-empty");
  const people = root.querySelector(".record-people");
  const handle = connection.open(key);
  let binding = null;
  let frame = 0;

  const draw = () => {
    frame = 0;
    const text = handle.text.toString();
    const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 40;
    renderInto(view, text);
    if (atBottom) view.scrollTop = view.scrollHeight;
    if (empty) empty.hidden = text.trim() !== "";
  };
  const watch = () =>
    handle.text.observe(() => {
      if (!frame) frame = requestAnimationFrame(draw);
    });
  watch();
  connection.addEventListener("reset", (event) => {
    if (event.detail.key !== key) return;
    watch();
    draw();
  });
  const say = (key, extra) => {
    if (status) status.textContent = extra ? `${texts[key] || key} ${extra}` : texts[key] || key;
    root.dataset.state = key;
  };

  connection.addEventListener("open", (event) => {
    if (event.detail.key !== key) return;
    root.hidden = false;
    root.closest(".record-panel")?.removeAttribute("hidden");
    const writable = event.detail.writable;
    root.dataset.writable = String(writable);
    if (writable && !binding) {
      binding = new TextareaBinding(handle.text, area);
      area.hidden = false;
      area.readOnly = false;
      if (toolbar) toolbar.hidden = false;
      view.hidden = true;
    } else if (!writable) {
      area.hidden = true;
      if (toolbar) toolbar.hidden = true;
      view.hidden = false;
      root.classList.remove("record-previewing"); // frozen while previewing: the plain view
      say(event.detail.frozen ? "frozen" : "read_only");
    }
  });
  // The binding already follows every change through the Y.Text; the view redraws once synced.
  connection.addEventListener("synced", (event) => {
    if (event.detail.key === key) draw();
  });
  connection.addEventListener("refused", (event) => {
    if (event.detail.key && event.detail.key !== key) return;
    if (root.dataset.hideRefused === "true") root.hidden = true;
    say("refused", event.detail.error?.message || "");
  });
  connection.addEventListener("rejected", (event) => {
    if (event.detail.key === key) say("rejected", event.detail.error?.message || "");
  });
  connection.addEventListener("status", (event) => {
    if (root.dataset.writable === "true") say(event.detail.state);
    else if (event.detail.state === "offline") say("offline");
    else if (root.dataset.state === "offline") say("read_only");
  });

  connection.addEventListener("presence", (event) => {
    if (event.detail.key !== key || !people) return;
    const names = connection.writers(key);
    people.textContent = names.length ? `${texts.writing || ""} ${names.join("、")}` : "";
    people.hidden = names.length === 0;
  });

  if (toolbar) {
    // Editors write markdown-style marks; the preview shows below the text what readers see,
    // kept up to date like theirs.
    const preview = toolbar.querySelector(".record-preview-toggle");
    preview?.addEventListener("click", () => {
      const showing = preview.getAttribute("aria-pressed") !== "true";
      preview.setAttribute("aria-pressed", String(showing));
      view.hidden = !showing;
      root.classList.toggle("record-previewing", showing);
      if (showing) draw();
    });
    toolbar.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-format]");
      if (!button || !binding) return;
      const transform = action(button.dataset.format, button.dataset.speaker, texts);
      if (transform) binding.edit(transform);
    });
  }
}

const roots = [...document.querySelectorAll("[data-record-doc]")];
if (roots.length) {
  const token = roots[0].dataset.recordToken || "";
  const connection = new NotesConnection(token, roots[0].dataset.recordName || "");
  window.yuntiaoNotes = connection; // for the browser tests and the console
  for (const root of roots) mount(connection, root);
  // In the hearing room a party can read the record only once admitted: try again when the
  // room's stage appears (hearing-room.js shows it on admission).
  const stage = document.getElementById("stage");
  if (stage) {
    new MutationObserver(() => {
      if (!stage.hidden) connection.retry();
    }).observe(stage, { attributes: true, attributeFilter: ["hidden"] });
  }
}
