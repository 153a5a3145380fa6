// Reelbatch console: live batch progress without reloading the page. Any element with
// data-progress-url and data-live="true" (a batch page, a row of open batches) is a live root: this
// polls its progress endpoint (same origin, the session cookie) and updates, inside the root, the
// elements marked data-live-field="<field>" and the progress bar, until the batch is settled.
(function () {
  "use strict";
  var POLL_MS = 1500;
  var FIELDS = ["status", "settlement_status", "done", "total_count", "success_count", "failed_count",
    "cancelled_count", "pending_count", "frozen_credits", "credits_spent", "refunded_credits", "net_spent"];

  function setText(root, field, value) {
    var nodes = root.querySelectorAll('[data-live-field="' + field + '"]');
    for (var i = 0; i < nodes.length; i++) {
      var badge = nodes[i].querySelector(".badge");
      if (badge) {
        badge.textContent = value;
        badge.className = "badge badge-" + value;
      } else {
        nodes[i].textContent = typeof value === "number" ? value.toLocaleString("en-US") : value;
      }
    }
  }

  function setBar(root, progress) {
    var bar = root.querySelector(".progress");
    if (!bar) { return; }
    bar.setAttribute("aria-valuenow", String(progress.done));
    bar.setAttribute("title", progress.done + " of " + progress.total_count + " finished");
    while (bar.firstChild) { bar.removeChild(bar.firstChild); }
    progress.segments.forEach(function (segment) {
      var part = document.createElement("span");
      part.className = "bar bar-" + segment.kind;
      part.style.width = segment.width + "%";
      bar.appendChild(part);
    });
  }

  function poll(root) {
    fetch(root.getAttribute("data-progress-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (progress) {
        if (progress === null) { return; }
        FIELDS.forEach(function (field) { setText(root, field, progress[field]); });
        setBar(root, progress);
        root.setAttribute("data-live", progress.live ? "true" : "false");
        if (progress.live) {
          window.setTimeout(function () { poll(root); }, POLL_MS);
        } else {
          var marker = root.querySelector("[data-live-marker]");
          if (marker) { marker.textContent = "✓ up to date"; }
        }
      })
      .catch(function () { window.setTimeout(function () { poll(root); }, POLL_MS * 2); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var roots = document.querySelectorAll('[data-progress-url][data-live="true"]');
    for (var i = 0; i < roots.length; i++) {
      (function (root) { window.setTimeout(function () { poll(root); }, POLL_MS); })(roots[i]);
    }
  });
})();
