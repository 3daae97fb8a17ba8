// Intake form: show the referral fields only for court referrals and department assignments,
// and let the clerk add more party rows than the four the page renders without JavaScript.

const REFERRAL_CHANNELS = new Set(["court_referral", "department_assignment"]);
const MAX_ROWS = 50;

function updateReferral() {
  const box = document.querySelector("[data-referral]");
  const checked = document.querySelector("input[data-channel]:checked");
  if (!box) {
    return;
  }
  box.hidden = checked !== null && !REFERRAL_CHANNELS.has(checked.value);
}

for (const radio of document.querySelectorAll("input[data-channel]")) {
  radio.addEventListener("change", updateReferral);
}
updateReferral();

const rowsBox = document.querySelector("[data-party-rows]");
const addButton = document.querySelector("[data-add-party]");

function renumber(row, index) {
  row.dataset.index = String(index);
  const prefix = /^party-\d+-/;
  for (const el of row.querySelectorAll("[name], [id], label[for]")) {
    for (const attr of ["name", "id", "for"]) {
      const value = el.getAttribute(attr);
      if (value && prefix.test(value)) {
        el.setAttribute(attr, value.replace(prefix, `party-${index}-`));
      }
    }
  }
  const number = row.querySelector("[data-party-number]");
  if (number) {
    number.textContent = String(index + 1);
  }
}

function addRow() {
  const rows = rowsBox.querySelectorAll("[data-party-row]");
  if (rows.length === 0 || rows.length >= MAX_ROWS) {
    return;
  }
  const last = rows[rows.length - 1];
  const row = last.cloneNode(true);
  const index = rows.length;
  renumber(row, index);
  for (const input of row.querySelectorAll("input")) {
    input.value = "";
  }
  for (const select of row.querySelectorAll("select")) {
    select.selectedIndex = 0;
  }
  rowsBox.append(row);
  // Every "represents" list offers the new row too; its label is the row's own legend.
  const legend = row.querySelector("legend");
  const text = legend ? legend.textContent.replace(/\s+/g, " ").trim() : String(index + 1);
  for (const select of rowsBox.querySelectorAll("select[data-party-represents]")) {
    const option = document.createElement("option");
    option.value = String(index + 1);
    option.textContent = text;
    select.append(option);
  }
  const first = row.querySelector("select, input");
  if (first) {
    first.focus();
  }
}

if (rowsBox && addButton) {
  addButton.hidden = false;
  addButton.addEventListener("click", addRow);
}
