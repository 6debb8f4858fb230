// Small behaviours of the staff screens, kept out of the templates so the Content-Security-Policy
// allows no inline script (settings.CONTENT_SECURITY_POLICY).
//   <input type="checkbox" data-select-all="ids">   ticks / unticks every input[name=ids] in its form
//   <form data-confirm="Delete …?">                   asks before submitting
"use strict";
document.addEventListener("click", (event) => {
  const box = event.target.closest("input[data-select-all]");
  if (!box) return;
  const scope = box.form || document;
  scope.querySelectorAll(`input[name="${box.dataset.selectAll}"]`).forEach((c) => { c.checked = box.checked; });
});
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});
