// Case page, "Hearings": copy a participant's personal link. Without this file the link stays in
// a read-only field the user can select and copy by hand; the "Copy" buttons stay hidden.

function copyByHand(field) {
  field.focus();
  field.select();
  try {
    // Plain-HTTP pages have no navigator.clipboard; this older API still works there.
    return document.execCommand("copy");
  } catch {
    return false;
  }
}

async function copy(field) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(field.value);
      return true;
    } catch {
      // Permission refused: fall back below.
    }
  }
  return copyByHand(field);
}

for (const button of document.querySelectorAll("button[data-copy]")) {
  const field = document.getElementById(button.dataset.copy);
  if (!field) {
    continue;
  }
  const label = button.textContent;
  let timer = 0;
  button.hidden = false;
  button.addEventListener("click", async () => {
    const done = await copy(field);
    // The texts come from the page, already translated.
    button.textContent = done ? button.dataset.copied : button.dataset.copyFailed;
    clearTimeout(timer);
    timer = setTimeout(() => {
      button.textContent = label;
    }, 2500);
  });
}

for (const field of document.querySelectorAll("input[data-link]")) {
  field.addEventListener("focus", () => field.select());
}
