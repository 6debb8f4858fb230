// Small behaviours of the staff screens, kept out of the templates so the Content-Security-Policy
// allows no inline script (settings.CONTENT_SECURITY_POLICY).
//   <input type="checkbox" data-select-all="ids">   ticks / unticks every input[name=ids] in its form (names
//                                                    separated by spaces: several)
//   <form data-confirm="Delete …?">                   asks before submitting
"use strict";
document.addEventListener("click", (event) => {
  const box = event.target.closest("input[data-select-all]");
  if (!box) return;
  const scope = box.form || document;
  box.dataset.selectAll.split(" ").filter(Boolean).forEach((name) => {
    scope.querySelectorAll(`input[name="${name}"]`).forEach((c) => { c.checked = box.checked; });
  });
  scope.dispatchEvent(new Event("change", { bubbles: true }));
});
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});
