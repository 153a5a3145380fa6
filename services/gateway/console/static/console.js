// Reelbatch console: live batch progress without reloading the page. A batch page marks its
// header with data-live="true" while tasks run or settlement is pending; this polls the batch's
// progress endpoint (same origin, the session cookie) and updates the figures and bar in place.
(function () {
  "use strict";
  var POLL_MS = 1500;

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
    var url = root.getAttribute("data-progress-url");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (progress) {
        if (progress === null) { return; }
        ["status", "settlement_status", "done", "total_count", "success_count", "failed_count",
          "cancelled_count", "pending_count", "frozen_credits", "credits_spent", "refunded_credits",
          "net_spent"].forEach(function (field) { setText(document, field, progress[field]); });
        setBar(root, progress);
        root.setAttribute("data-live", progress.live ? "true" : "false");
        if (progress.live) {
          window.setTimeout(function () { poll(root); }, POLL_MS);
        } else {
          var marker = document.getElementById("live-marker");
          if (marker) { marker.textContent = "✓ up to date"; }
        }
      })
      .catch(function () { window.setTimeout(function () { poll(root); }, POLL_MS * 2); });
  }

  // The bar's drawing, shared with the overview's script (overview.js): one way to draw a bar.
  window.ReelbatchConsole = { setBar: setBar };

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("batch-live");
    if (root && root.getAttribute("data-live") === "true") {
      window.setTimeout(function () { poll(root); }, POLL_MS);
    }
  });
})();
