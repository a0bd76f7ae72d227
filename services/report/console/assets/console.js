// Email Sender console: live events (Server-Sent Events) and confirmations.
// No remote requests; no inline scripts (the CSP forbids them).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var live = document.querySelector("[data-events]");
  if (live && window.EventSource) {
    var list = live.querySelector("ol");
    var state = live.querySelector(".live-state");
    var es = new EventSource(live.getAttribute("data-events"));
    es.onopen = function () { state.textContent = "connected"; };
    es.onerror = function () { state.textContent = "reconnecting…"; };
    es.onmessage = null;
    var show = function (ev) {
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      if (!data.event) { return; }
      var li = document.createElement("li");
      var t = document.createElement("time");
      t.textContent = (data.event.occurredAt || "").replace("T", " ").replace(/\..*|Z$/, "");
      li.appendChild(t);
      li.appendChild(document.createTextNode(" " + data.event.type + " "));
      if (data.messageId) {
        var a = document.createElement("a");
        a.href = "/console/messages/" + encodeURIComponent(data.messageId);
        a.textContent = data.messageId;
        li.appendChild(a);
      }
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 100) { list.removeChild(list.lastChild); }
    };
    ["ACCEPTED", "SCHEDULED", "ATTEMPT_STARTED", "ATTEMPT_INTERRUPTED", "SENT", "RETRY_SCHEDULED", "FAILED", "DELIVERED",
     "BOUNCED", "COMPLAINED", "CANCELED", "SUPPRESSED", "FAILOVER", "WEBHOOK_DISABLED", "REPUTATION_WARNING",
     "REPUTATION_PAUSED", "REPUTATION_RECOVERED", "REPUTATION_RESUMED"].forEach(function (type) {
      es.addEventListener(type, show);
    });
  }
  document.querySelectorAll("button.danger").forEach(function (b) {
    b.form.addEventListener("submit", function (e) {
      if (!window.confirm(b.getAttribute("aria-label") + "?")) { e.preventDefault(); }
    });
  });
});
