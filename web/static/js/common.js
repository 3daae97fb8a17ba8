// Small enhancements shared by every page. Everything works without this file.

// "Go back" links: use the browser history when we came from one of our own pages;
// otherwise the link's own href (the start page) applies.
for (const link of document.querySelectorAll("[data-history-back]")) {
  link.addEventListener("click", (event) => {
    let sameOrigin = false;
    try {
      sameOrigin = document.referrer !== "" && new URL(document.referrer).origin === location.origin;
    } catch {
      sameOrigin = false;
    }
    if (sameOrigin && history.length > 1) {
      event.preventDefault();
      history.back();
    }
  });
}

// Buttons that change something hard to undo ask first; the question text comes from the page
// (already translated), never from this file.
for (const button of document.querySelectorAll("button[data-confirm]")) {
  button.addEventListener("click", (event) => {
    if (!window.confirm(button.dataset.confirm)) {
      event.preventDefault();
    }
  });
}
