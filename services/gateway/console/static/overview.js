// Reelbatch console overview: the open batches' progress, updated in place without reloading.
// Each open batch's row names its progress endpoint (same origin, the session cookie); rows are
// polled while their batch runs or awaits settlement. The bar is drawn by console.js (loaded first).
(function () {
  "use strict";
  var POLL_MS = 1500;

  function update(row, progress) {
    var done = row.querySelector('[data-field="done"]');
    if (done) { done.textContent = String(progress.done); }
    var badge = row.querySelector('[data-field="status"] .badge');
    if (badge) {
      badge.textContent = progress.status;
      badge.className = "badge badge-" + progress.status;
    }
    window.ReelbatchConsole.setBar(row, progress);
  }

  function poll(row) {
    fetch(row.getAttribute("data-progress-url"), {
      credentials: "same-origin", headers: { Accept: "application/json" }
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (progress) {
        if (progress === null) { return; }
        update(row, progress);
        row.setAttribute("data-live", progress.live ? "true" : "false");
        if (progress.live) { window.setTimeout(function () { poll(row); }, POLL_MS); }
      })
      .catch(function () { window.setTimeout(function () { poll(row); }, POLL_MS * 2); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var rows = document.querySelectorAll('#open-batches [data-live="true"]');
    for (var i = 0; i < rows.length; i++) {
      (function (row) { window.setTimeout(function () { poll(row); }, POLL_MS); })(rows[i]);
    }
  });
})();
