// Exception queue: keyboard shortcuts, group expand, the bulk bar's selection count (a static file: the
// Content-Security-Policy allows no inline script).
//   j / k  next / previous row        x  select the row          Enter / o  open it      e  expand a group
//   r      retry selected (or row)    a  assign selected (or row) to me                 /  search    ?  help
"use strict";
(() => {
  const table = document.getElementById("exception-table");
  const form = document.getElementById("bulk-form");
  if (!table || !form) return;
  const rows = () => [...table.querySelectorAll("tr[data-row]")];
  let current = -1;

  const boxOf = (tr) => tr && tr.querySelector("input[name=ids], input[name=groups]");
  const selected = () => [...form.querySelectorAll("input[name=ids]:checked, input[name=groups]:checked")];
  const count = document.getElementById("selected-count");
  const refresh = () => { if (count) count.textContent = String(selected().length); };
  form.addEventListener("change", refresh);
  refresh();

  const move = (step) => {
    const all = rows();
    if (!all.length) return;
    if (current >= 0 && all[current]) all[current].classList.remove("current");
    current = Math.max(0, Math.min(all.length - 1, current + step));
    all[current].classList.add("current");
    all[current].scrollIntoView({ block: "nearest" });
  };
  const row = () => rows()[current];

  const expand = (button) => {
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    button.textContent = button.textContent.replace(open ? /show$/ : /hide$/, open ? "hide" : "show");
    table.querySelectorAll(`tr[data-child-of="${button.dataset.expand}"]`).forEach((tr) => { tr.hidden = !open; });
  };
  table.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-expand]");
    if (button) expand(button);
  });

  const canAct = Boolean(document.getElementById("bulk-bar"));  // roles that may act (ops, admin) get the bar
  const submit = (action) => {
    if (!canAct) return;
    const picked = selected();
    if (!picked.length) {
      const box = boxOf(row());
      if (!box) return;
      box.checked = true;
    }
    form.querySelector("[name=action]").value = action;
    refresh();
    form.requestSubmit();
  };

  const help = document.getElementById("shortcut-help");
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const t = event.target;
    if (t && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName))) {
      if (event.key === "Escape") t.blur();
      return;
    }
    const key = event.key;
    if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (key === "x") { const box = boxOf(row()); if (box) { box.checked = !box.checked; refresh(); } }
    else if (key === "Enter" || key === "o") { const a = row() && row().querySelector("a[data-open]"); if (a) a.click(); else return; }
    else if (key === "e") { const b = row() && row().querySelector("button[data-expand]"); if (b) expand(b); }
    else if (key === "r") { if (form.querySelector("[name=action] option[value=retry]")) submit("retry"); }
    else if (key === "a") submit("assign_me");
    else if (key === "/") { const q = document.querySelector("[data-queue-search]"); if (q) q.focus(); }
    else if (key === "?") { if (help) help.hidden = !help.hidden; }
    else if (key === "Escape") { if (help) help.hidden = true; }
    else return;
    event.preventDefault();
  });
})();
