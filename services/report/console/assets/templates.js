// Email Sender console: the template editor's live preview. The editor's
// unsaved content goes to /console/templates/preview (which renders it with
// RenderTemplate) a moment after the last keystroke; the HTML is shown in a
// sandboxed srcdoc iframe (no scripts, no origin, nothing remote).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("template-editor");
  if (!form || !window.fetch) { return; }
  var $ = function (id) { return document.getElementById(id); };
  var state = $("pv-state"), errBox = $("pv-error");
  var timer = null, seq = 0;
  var list = function (el, names) {
    el.textContent = names && names.length ? names.join(", ") : "none";
  };
  var preview = function () {
    var mine = ++seq;
    state.textContent = "rendering…";
    var body = new URLSearchParams(new FormData(form));
    fetch(form.getAttribute("data-preview"), {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRF-Token": form.elements.csrf.value }
    }).then(function (r) { return r.json(); }).then(function (a) {
      if (mine !== seq) { return; } // a newer preview is on its way
      if (a.error) {
        errBox.textContent = a.error;
        errBox.hidden = false;
        state.textContent = "error";
        return;
      }
      errBox.hidden = true;
      errBox.textContent = "";
      $("pv-subject").textContent = a.subject;
      $("pv-text").textContent = a.text;
      $("pv-html").srcdoc = a.htmlDoc || "";
      list($("pv-missing"), a.missing);
      list($("pv-unused"), a.unused);
      state.textContent = "up to date";
    }).catch(function () {
      if (mine === seq) { state.textContent = "preview unavailable"; }
    });
  };
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(preview, 300);
  });
  preview();
});
