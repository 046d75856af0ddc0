// tgmonitor dashboard: the only script (CSP allows no inline one). Progressive: every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A filter's drop-down list applies itself as soon as it changes.
  for (const select of document.querySelectorAll("select.autosubmit")) {
    select.addEventListener("change", () => select.form && select.form.requestSubmit());
  }
  // A retry button cannot be pressed twice while its POST is on its way.
  for (const form of document.querySelectorAll("form[method=post]")) {
    form.addEventListener("submit", () => {
      for (const b of form.querySelectorAll("button")) b.disabled = true;
    });
  }
});
